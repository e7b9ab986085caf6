//! A host's kubeconfig, edited in place as the host phases do. No panic; after setting the CA (and, for
//! embedded credentials, the client certificate and key) the file reads back with exactly the new values
//! and nothing else changed; every line other than the edited fields is kept byte for byte; and when the
//! original is YAML that a YAML parser reads as the line reader does on every edited field, the edited
//! file is YAML that holds the new values.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dc_agent::kubeconfig::{ClientCredentials, Kubeconfig, KubeconfigError};
use libfuzzer_sys::fuzz_target;
use serde_norway::Value;

const NEW_CA: &str = "-----BEGIN CERTIFICATE-----\nTkVXIENB\n-----END CERTIFICATE-----\n";
const NEW_CERT: &str = "-----BEGIN CERTIFICATE-----\nTkVXIENFUlQ=\n-----END CERTIFICATE-----\n";
const NEW_KEY: &str = "-----BEGIN PRIVATE KEY-----\nTkVXIEtFWQ==\n-----END PRIVATE KEY-----\n";

const EDITED: [&str; 3] = [
    "certificate-authority-data",
    "client-certificate-data",
    "client-key-data",
];

/// Every string value of `key` anywhere in the document.
fn yaml_values(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some(key)
                    && let Some(s) = v.as_str()
                {
                    out.push(s.to_owned());
                }
                yaml_values(v, key, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| yaml_values(v, key, out)),
        Value::Tagged(t) => yaml_values(&t.value, key, out),
        _ => {}
    }
}

fn yaml_field(doc: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    yaml_values(doc, key, &mut out);
    out
}

/// Whether the YAML parser sees exactly one `key`, whose base64 decodes to `expected`.
fn yaml_agrees(doc: &Value, key: &str, expected: &str) -> bool {
    match yaml_field(doc, key).as_slice() {
        [one] => STANDARD.decode(one).ok().as_deref() == Some(expected.as_bytes()),
        _ => false,
    }
}

fn unedited_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !EDITED.iter().any(|k| l.contains(k)))
        .collect()
}

fn embedded(k: &Kubeconfig) -> Option<(String, String)> {
    match k.client() {
        ClientCredentials::Embedded { cert_pem, key_pem } => {
            Some((cert_pem.clone(), key_pem.clone()))
        }
        ClientCredentials::Files { .. } => None,
    }
}

fuzz_target!(|text: &str| {
    let Ok(original) = Kubeconfig::parse(text) else {
        return;
    };
    assert_eq!(original.text(), text);
    let yaml_before = serde_norway::from_str::<Value>(text).ok();
    let mut k = original.clone();

    k.set_ca(NEW_CA);
    let reread = Kubeconfig::parse(k.text()).expect("a kubeconfig with a new CA reads back");
    assert_eq!(reread.ca_pem(), NEW_CA);
    assert_eq!(reread.client(), original.client());
    assert_eq!(reread, k);

    let client_agreed = match (embedded(&original), &yaml_before) {
        (Some((cert, key)), Some(doc)) => {
            yaml_agrees(doc, EDITED[1], &cert) && yaml_agrees(doc, EDITED[2], &key)
        }
        _ => false,
    };
    match k.set_client(NEW_CERT, NEW_KEY) {
        Ok(()) => {
            assert!(embedded(&original).is_some());
            let reread = Kubeconfig::parse(k.text()).expect("new credentials read back");
            assert_eq!(
                reread.client(),
                &ClientCredentials::Embedded {
                    cert_pem: NEW_CERT.into(),
                    key_pem: NEW_KEY.into()
                }
            );
            assert_eq!(reread, k);
        }
        Err(KubeconfigError::NotEmbedded) => assert!(embedded(&original).is_none()),
        Err(e) => panic!("unexpected {e}"),
    }
    assert_eq!(
        unedited_lines(k.text()),
        unedited_lines(text),
        "other lines changed"
    );

    // Only where YAML reads every edited field as the line reader does: a line reader cannot know that
    // a line sits inside a multi-line quoted scalar, say.
    let client_edited = embedded(&original).is_some();
    if let Some(doc) = yaml_before
        && yaml_agrees(&doc, EDITED[0], original.ca_pem())
        && (client_agreed || !client_edited)
    {
        let after: Value = serde_norway::from_str(k.text()).expect("the edited kubeconfig is YAML");
        assert_eq!(yaml_field(&after, EDITED[0]), [STANDARD.encode(NEW_CA)]);
        if client_edited {
            assert_eq!(yaml_field(&after, EDITED[1]), [STANDARD.encode(NEW_CERT)]);
            assert_eq!(yaml_field(&after, EDITED[2]), [STANDARD.encode(NEW_KEY)]);
        }
    }
});
