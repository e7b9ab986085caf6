//! The certificate subject in dcmanager's form: `'C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER'`.
//!
//! Operators already type this string into `dcmanager kube-rootca-update-strategy create --subject`, so
//! the syntax is kept: space-separated `KEY=VALUE` pairs over the keys C, ST, L, O, OU and CN, values may
//! contain spaces (`L=San Francisco`), and CN is required. Beyond the original, every bad form is caught at
//! create time with a message naming what is wrong (the original let a bad country code through to
//! certificate generation on the subcloud).

use std::fmt;

/// The keys the original accepts, in the order a subject is printed.
pub const KEYS: [&str; 6] = ["C", "ST", "L", "O", "OU", "CN"];

/// Longest value X.509 allows for any of these attributes (RFC 5280 upper bounds; CN is 64).
const MAX_VALUE_LEN: usize = 64;

/// What is wrong with a subject string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject is empty; it has to be in the format of {FORMAT}")]
    Empty,
    #[error("subject part '{0}' is not KEY=VALUE; it has to be in the format of {FORMAT}")]
    NotKeyValue(String),
    #[error(
        "subject key '{0}' is not supported; the supported keys are C, ST, L, O, OU and CN, in the format of {FORMAT}"
    )]
    UnsupportedKey(String),
    #[error("subject key '{0}' is given more than once")]
    DuplicateKey(&'static str),
    #[error("subject key '{0}' has an empty value")]
    EmptyValue(&'static str),
    #[error("subject value for '{0}' must not contain '='")]
    ValueHasEquals(&'static str),
    #[error(
        "subject value for '{0}' contains a control or bidirectional-override character (U+{1:04X}); it would show differently from what it is"
    )]
    ControlCharacter(&'static str, u32),
    #[error(
        "subject value for '{key}' is {len} characters long; at most {MAX_VALUE_LEN} are allowed"
    )]
    ValueTooLong { key: &'static str, len: usize },
    #[error("subject C='{0}' is not a two-letter country code")]
    BadCountry(String),
    #[error("The CN=<commonName> parameter is required to be specified in subject argument")]
    MissingCommonName,
}

const FORMAT: &str = "'C=<Country> ST=<State/Province> L=<Locality> O=<Organization> OU=<OrganizationUnit> CN=<commonName>'";

/// A validated subject. Keys are stored upper-case in [`KEYS`] order, whatever order they were given in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    parts: Vec<(&'static str, String)>,
}

impl Subject {
    /// The default subject of a generated root CA when none is given, as in the original.
    pub fn kubernetes_default() -> Self {
        Self {
            parts: vec![("CN", "kubernetes".to_owned())],
        }
    }

    /// Parses dcmanager's subject form. Keys are accepted in any letter case.
    pub fn parse(input: &str) -> Result<Self, SubjectError> {
        let mut pairs: Vec<(&'static str, String)> = Vec::new();
        for word in input.split_whitespace() {
            match word.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    let key = KEYS
                        .iter()
                        .copied()
                        .find(|k| k.eq_ignore_ascii_case(key))
                        .ok_or_else(|| SubjectError::UnsupportedKey(key.to_owned()))?;
                    if pairs.iter().any(|(k, _)| *k == key) {
                        return Err(SubjectError::DuplicateKey(key));
                    }
                    pairs.push((key, value.to_owned()));
                }
                // A word without '=' continues the previous value: values may contain spaces.
                None => match pairs.last_mut() {
                    Some((_, value)) => {
                        value.push(' ');
                        value.push_str(word);
                    }
                    None => return Err(SubjectError::NotKeyValue(word.to_owned())),
                },
                Some(_) => return Err(SubjectError::NotKeyValue(word.to_owned())),
            }
        }
        if pairs.is_empty() {
            return Err(SubjectError::Empty);
        }
        for (key, value) in &pairs {
            if value.is_empty() {
                return Err(SubjectError::EmptyValue(key));
            }
            if value.contains('=') {
                return Err(SubjectError::ValueHasEquals(key));
            }
            if let Some(c) = value.chars().find(|c| misleading(*c)) {
                return Err(SubjectError::ControlCharacter(key, u32::from(c)));
            }
            let len = value.chars().count();
            if len > MAX_VALUE_LEN {
                return Err(SubjectError::ValueTooLong { key, len });
            }
            if *key == "C" && !(len == 2 && value.chars().all(|c| c.is_ascii_alphabetic())) {
                return Err(SubjectError::BadCountry(value.clone()));
            }
        }
        if !pairs.iter().any(|(k, _)| *k == "CN") {
            return Err(SubjectError::MissingCommonName);
        }
        pairs.sort_by_key(|(k, _)| KEYS.iter().position(|x| x == k));
        Ok(Self { parts: pairs })
    }

    /// The value of one key, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The common name (always present).
    pub fn common_name(&self) -> &str {
        self.get("CN").unwrap_or("kubernetes")
    }

    /// The pairs in print order.
    pub fn parts(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.parts.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The subject as an X.509 distinguished name.
    pub fn distinguished_name(&self) -> rcgen::DistinguishedName {
        let mut dn = rcgen::DistinguishedName::new();
        for (key, value) in self.parts() {
            dn.push(dn_type(key), value);
        }
        dn
    }
}

fn dn_type(key: &str) -> rcgen::DnType {
    match key {
        "C" => rcgen::DnType::CountryName,
        "ST" => rcgen::DnType::StateOrProvinceName,
        "L" => rcgen::DnType::LocalityName,
        "O" => rcgen::DnType::OrganizationName,
        "OU" => rcgen::DnType::OrganizationalUnitName,
        _ => rcgen::DnType::CommonName,
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.parts().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Subject {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Characters that make a subject display as something it is not: control characters (NUL, ESC for
/// terminal escapes, DEL, C1) and the bidirectional overrides and isolates (U+202A-U+202E,
/// U+2066-U+2069).
fn misleading(c: char) -> bool {
    c.is_control()
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_override_characters_are_refused() {
        for (bad, code) in [
            ("CN=a\u{0}b", 0),
            ("CN=a\u{1b}[31mred", 0x1b),
            ("CN=evil\u{202E}gnp.exe", 0x202e),
            ("CN=a\u{2066}b", 0x2066),
            ("CN=a\u{7f}", 0x7f),
        ] {
            assert!(
                matches!(Subject::parse(bad), Err(SubjectError::ControlCharacter("CN", c)) if c == code),
                "{bad:?}"
            );
        }
        assert!(Subject::parse("CN=Zoë Müller-Ångström").is_ok());
    }

    #[test]
    fn parses_the_documented_example() {
        let s = Subject::parse("C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER").unwrap();
        assert_eq!(s.get("C"), Some("CA"));
        assert_eq!(s.get("ST"), Some("ON"));
        assert_eq!(s.get("L"), Some("OTT"));
        assert_eq!(s.get("O"), Some("WR"));
        assert_eq!(s.get("OU"), Some("STX"));
        assert_eq!(s.common_name(), "OTHER");
        assert_eq!(s.to_string(), "C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER");
    }

    #[test]
    fn values_may_contain_spaces_and_keys_any_order_or_case() {
        let s = Subject::parse("cn=my root  ca L=San Francisco c=us").unwrap();
        assert_eq!(s.common_name(), "my root ca");
        assert_eq!(s.get("L"), Some("San Francisco"));
        assert_eq!(s.to_string(), "C=us L=San Francisco CN=my root ca");
    }

    #[test]
    fn cn_alone_is_enough() {
        assert_eq!(Subject::parse("CN=x").unwrap().to_string(), "CN=x");
    }

    #[test]
    fn rejects_every_bad_form() {
        use SubjectError::*;
        let cases: &[(&str, SubjectError)] = &[
            ("", Empty),
            ("   ", Empty),
            ("kubernetes", NotKeyValue("kubernetes".into())),
            ("=x CN=a", NotKeyValue("=x".into())),
            ("E=a@b CN=a", UnsupportedKey("E".into())),
            ("CN=a CN=b", DuplicateKey("CN")),
            ("CN= O=x", EmptyValue("CN")),
            ("CN=a=b", ValueHasEquals("CN")),
            ("C=CAN CN=a", BadCountry("CAN".into())),
            ("C=1A CN=a", BadCountry("1A".into())),
            ("O=WR OU=STX", MissingCommonName),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Subject::parse(input).unwrap_err(),
                *expected,
                "input {input:?}"
            );
        }
        let long = format!("CN={}", "x".repeat(65));
        assert_eq!(
            Subject::parse(&long).unwrap_err(),
            ValueTooLong { key: "CN", len: 65 }
        );
    }

    #[test]
    fn messages_name_the_problem() {
        let msg = Subject::parse("O=WR").unwrap_err().to_string();
        assert_eq!(
            msg,
            "The CN=<commonName> parameter is required to be specified in subject argument"
        );
        let msg = Subject::parse("X=1 CN=a").unwrap_err().to_string();
        assert!(msg.contains("'X' is not supported"), "{msg}");
    }
}
