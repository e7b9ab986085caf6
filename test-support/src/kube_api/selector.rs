//! The `labelSelector` and `fieldSelector` query strings of list and watch requests, parsed into the
//! simulated cluster's [`LabelSelector`] and a small field filter.
//!
//! The label syntax is Kubernetes' (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
//! comma-separated, all must hold), so `kubectl get -l` and kube-rs `ListParams::labels` select the same
//! pods here as on a real API server.

use dc_agent::cluster::{LabelExpression, LabelOperator, LabelSelector};

/// A selector the server cannot parse (answered with 400 BadRequest, as the real API server does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse requirement '{0}': {1}")]
    Label(String, &'static str),
    #[error(
        "invalid field selector '{0}': expected <field>=<value>, <field>==<value> or <field>!=<value>"
    )]
    FieldSyntax(String),
    #[error("field label not supported: {0}")]
    FieldLabel(String),
}

/// Parses a label selector; the empty string selects everything.
pub fn parse_labels(input: &str) -> Result<LabelSelector, SelectorError> {
    let mut selector = LabelSelector::default();
    for term in split_terms(input) {
        let term = term.trim();
        if term.is_empty() {
            return Err(SelectorError::Label(input.to_owned(), "empty requirement"));
        }
        let bad = |why| SelectorError::Label(term.to_owned(), why);
        let expression = |key: &str, operator, values: Vec<String>| -> Result<_, SelectorError> {
            let key = key.trim();
            if !valid_key(key) {
                return Err(bad("invalid label key"));
            }
            if !values.iter().all(|v| valid_value(v)) {
                return Err(bad("invalid label value"));
            }
            Ok(LabelExpression {
                key: key.to_owned(),
                operator,
                values,
            })
        };
        let e = if let Some(key) = term.strip_prefix('!') {
            expression(key, LabelOperator::DoesNotExist, Vec::new())?
        } else if let Some((key, value)) = term.split_once("!=") {
            expression(key, LabelOperator::NotIn, vec![value.trim().to_owned()])?
        } else if let Some((key, value)) = term.split_once('=') {
            let value = value.strip_prefix('=').unwrap_or(value).trim();
            let e = expression(key, LabelOperator::In, vec![value.to_owned()])?;
            // Two equalities on one key must both hold: only the first can be a matchLabels entry.
            match selector.match_labels.entry(e.key.clone()) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(value.to_owned());
                    continue;
                }
                std::collections::btree_map::Entry::Occupied(_) => e,
            }
        } else if let Some((key, values)) = set_term(term, "notin") {
            expression(key, LabelOperator::NotIn, values.map_err(bad)?)?
        } else if let Some((key, values)) = set_term(term, "in") {
            expression(key, LabelOperator::In, values.map_err(bad)?)?
        } else {
            expression(term, LabelOperator::Exists, Vec::new())?
        };
        selector.match_expressions.push(e);
    }
    Ok(selector)
}

/// Splits on the commas between requirements, not those inside `in (x,y)`.
fn split_terms(input: &str) -> Vec<&str> {
    if input.trim().is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&input[start..]);
    terms
}

/// `key <op> (v1,v2)`: the key and the values, or `None` when the term has no such operator.
fn set_term<'a>(
    term: &'a str,
    operator: &str,
) -> Option<(&'a str, Result<Vec<String>, &'static str>)> {
    let open = term.find('(')?;
    let head = term[..open].trim_end();
    let key = head.strip_suffix(operator)?;
    // The operator is a word of its own: `tier in (a)`, not `domain(a)`.
    if !key.ends_with(char::is_whitespace) {
        return None;
    }
    let values = term[open + 1..]
        .trim_end()
        .strip_suffix(')')
        .ok_or("missing ')'")
        // As the API server reads a set: `()` is the empty value alone, and an empty item of a list is
        // the empty value too (apimachinery's `parseValues`), so a set is never empty.
        .map(|inner| inner.split(',').map(|v| v.trim().to_owned()).collect());
    Some((key.trim(), values))
}

/// `[prefix/]name`: a DNS subdomain prefix and a name of at most 63 alphanumerics, `-`, `_`, `.`.
fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    });
    prefix_ok && !name.is_empty() && valid_value(name)
}

/// At most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric (or empty).
fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

/// A `fieldSelector`: the object fields every list supports (`metadata.name`, `metadata.namespace`),
/// and a Secret's `type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: Field,
    value: String,
    equal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
    /// A Secret's `type`: no object the server holds has one (it serves no Secrets), so `type=x`
    /// selects nothing.
    Type,
}

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`; the empty string selects everything.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in input.split(',').filter(|t| !t.trim().is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v.strip_prefix('=').unwrap_or(v), true)
            } else {
                return Err(SelectorError::FieldSyntax(term.to_owned()));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                "type" => Field::Type,
                other => return Err(SelectorError::FieldLabel(other.to_owned())),
            };
            terms.push(FieldTerm {
                field,
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(Self { terms })
    }

    /// Whether an object with this name and namespace is selected.
    pub fn matches(&self, name: &str, namespace: Option<&str>) -> bool {
        self.terms.iter().all(|t| {
            let actual = match t.field {
                Field::Name => name,
                Field::Namespace => namespace.unwrap_or(""),
                Field::Type => "",
            };
            (actual == t.value) == t.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn expr(key: &str, operator: LabelOperator, values: &[&str]) -> LabelExpression {
        LabelExpression {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn every_operator_of_the_kubernetes_syntax() {
        let s = parse_labels(
            "app=web, tier in (a, b),zone notin (x),env!=prod,canary,!legacy,app.kubernetes.io/name==db",
        )
        .unwrap();
        assert_eq!(
            s.match_labels,
            BTreeMap::from([
                ("app".to_owned(), "web".to_owned()),
                ("app.kubernetes.io/name".to_owned(), "db".to_owned()),
            ])
        );
        assert_eq!(
            s.match_expressions,
            vec![
                expr("tier", LabelOperator::In, &["a", "b"]),
                expr("zone", LabelOperator::NotIn, &["x"]),
                expr("env", LabelOperator::NotIn, &["prod"]),
                expr("canary", LabelOperator::Exists, &[]),
                expr("legacy", LabelOperator::DoesNotExist, &[]),
            ]
        );
    }

    #[test]
    fn empty_selects_everything_and_repeated_keys_all_hold() {
        assert_eq!(parse_labels("").unwrap(), LabelSelector::default());
        let s = parse_labels("app=a,app=b").unwrap();
        assert_eq!(s.match_labels["app"], "a");
        assert_eq!(
            s.match_expressions,
            vec![expr("app", LabelOperator::In, &["b"])]
        );
        // An empty value is a valid label value.
        assert_eq!(parse_labels("app=").unwrap().match_labels["app"], "");
    }

    #[test]
    fn empty_set_values_are_the_empty_label_value() {
        // As the API server's parser (apimachinery `parseValues`) reads them: `()` is the set of the empty
        // value, and an empty item of a list is the empty value too. The agent sends `k notin ()` for a
        // workload whose selector says `NotIn [""]` (found by the label_selector fuzz target).
        assert_eq!(
            parse_labels("tier in ()").unwrap().match_expressions,
            vec![expr("tier", LabelOperator::In, &[""])]
        );
        assert_eq!(
            parse_labels("tier notin (,a)").unwrap().match_expressions,
            vec![expr("tier", LabelOperator::NotIn, &["", "a"])]
        );
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in [
            "app=web,",
            "tier in (a,b",
            "a b=c",
            "app=we b",
            "-app=x",
            "Bad_Prefix/app=x",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
        // `in` as part of a longer word is a plain key, which a '(' makes invalid.
        assert!(parse_labels("domain(a)").is_err());
    }

    #[test]
    fn field_selector_on_name_and_namespace() {
        let s =
            FieldSelector::parse("metadata.name=web-0,metadata.namespace!=kube-system").unwrap();
        assert!(s.matches("web-0", Some("default")));
        assert!(!s.matches("web-1", Some("default")));
        assert!(!s.matches("web-0", Some("kube-system")));
        assert!(
            FieldSelector::parse("metadata.name==x")
                .unwrap()
                .matches("x", None)
        );
        assert!(FieldSelector::parse("").unwrap().matches("any", None));
        assert_eq!(
            FieldSelector::parse("spec.nodeName=n1"),
            Err(SelectorError::FieldLabel("spec.nodeName".into()))
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
