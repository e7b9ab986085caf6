//! An uploaded `cert-file` (a PEM with the CA certificate, its PKCS#8 key and any issuer chain), as the
//! controller validates it at strategy create and the agent again before use; also the summary the API
//! shows and the chain check, on the same text. No panic; a file that passes is a CA valid at the
//! time, whose certificate is the file's first, and what is kept of it (certificate, key, chain)
//! passes again as the same CA.
#![no_main]

use dc_certs::expiry::MIN_VALIDITY_SECS;
use dc_certs::inspect::CertSummary;
use dc_certs::upload::validate;
use dc_certs::verify::{Usage, verify_chain};
use libfuzzer_sys::fuzz_target;

/// A fixed clock (2027-01-15), inside the validity of the seed certificates, so a run is reproducible.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|text: &str| {
    let _ = CertSummary::from_pem(text);
    let _ = verify_chain(text, text, Usage::Server, NOW);
    let Ok(uploaded) = validate(text, NOW) else {
        return;
    };
    let summary = &uploaded.summary;
    assert!(summary.is_ca);
    assert!(summary.not_before <= NOW && NOW + MIN_VALIDITY_SECS <= summary.not_after);
    let first = dc_certs::pem_certificates(text).expect("validated PEM parses");
    assert_eq!(
        first[0],
        uploaded.ca.cert_der(),
        "the CA is not the file's first certificate"
    );
    let kept = format!(
        "{}{}{}",
        uploaded.ca.cert_pem(),
        uploaded.ca.key_pem(),
        uploaded.chain_pem
    );
    let again = validate(&kept, NOW).expect("what was kept of a valid cert-file validates again");
    assert_eq!(again.ca.cert_der(), uploaded.ca.cert_der());
    assert_eq!(&again.summary, summary);
    assert_eq!(again.chain_pem, uploaded.chain_pem);
});
