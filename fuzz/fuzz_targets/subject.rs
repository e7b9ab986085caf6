//! dcmanager's subject form, as an operator (or an API client) types it. A subject that parses prints
//! to a form that parses back to the same subject, keeps every value within the X.509 bounds and free
//! of control characters, and a certificate made with it reads back (as the heartbeat and the API show
//! it) exactly as printed: what the operator sees is what the CA carries.
#![no_main]

use std::sync::OnceLock;

use dc_certs::Subject;
use dc_certs::inspect::CertSummary;
use libfuzzer_sys::fuzz_target;
use rcgen::{CertificateParams, KeyPair};

/// One key for every certificate: generating a key per input would make key generation, not
/// parsing, what is fuzzed.
fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap())
}

fuzz_target!(|input: &str| {
    let Ok(subject) = Subject::parse(input) else {
        return;
    };
    let printed = subject.to_string();
    assert_eq!(
        Subject::parse(&printed).as_ref(),
        Ok(&subject),
        "printed form {printed:?} does not parse back"
    );
    assert!(subject.get("CN").is_some());
    for (_, value) in subject.parts() {
        assert!(
            !value.is_empty() && value.chars().count() <= 64,
            "{value:?}"
        );
        assert!(!value.chars().any(char::is_control), "{value:?}");
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = subject.distinguished_name();
    let cert = params
        .self_signed(key())
        .expect("a parsed subject makes a certificate");
    let summary = CertSummary::from_der(cert.der()).expect("the certificate parses");
    assert_eq!(
        summary.subject, printed,
        "the certificate's subject reads differently"
    );
    assert_eq!(summary.common_name.as_deref(), Some(subject.common_name()));
});
