//! Bad input through the real dcmanager CLI gets the clear error and changes nothing.

mod common;

use common::*;

#[test]
fn bad_inputs_are_refused_with_a_clear_error_and_change_nothing() {
    let fleet = start(light(&["b1", "b2"]));
    let no_strategy = |fleet: &dc_test_support::fleet::Fleet| {
        let err = failing(fleet, &["kube-rootca-update-strategy", "show"]);
        assert!(err.contains("not found"), "{err}");
    };

    let err = failing(
        &fleet,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            "O=WR OU=STX",
        ],
    );
    assert!(err.contains("CN=<commonName>"), "{err}");
    let err = failing(
        &fleet,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            "CN=x E=a@b",
        ],
    );
    assert!(err.contains("'E' is not supported"), "{err}");
    let err = failing(
        &fleet,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--expiry-date",
            "2020-01-01",
        ],
    );
    assert!(err.contains("24 hours"), "{err}");
    let err = failing(
        &fleet,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--expiry-date",
            "2030/01/01",
        ],
    );
    assert!(err.contains("YYYY-MM-DD"), "{err}");

    // A cert-file holding a leaf certificate, not a CA.
    let ca = dc_certs::authority::NewRootCa::default()
        .generate(86400 * 30, dc_certs::now())
        .unwrap();
    let leaf = dc_certs::leaf::LeafSpec::server("x", &["x"], &[])
        .issue(
            &ca,
            dc_certs::now() + 86400 * 10,
            dc_certs::now(),
            dc_certs::KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
    let file = fleet.dir.join("leaf.pem");
    std::fs::write(&file, format!("{}{}", leaf.cert_pem, leaf.key_pem)).unwrap();
    let err = failing(
        &fleet,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--cert-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(err.contains("not a CA"), "{err}");
    no_strategy(&fleet);

    // A good strategy, then a second one and a double apply.
    let (date, _) = expiry();
    fleet
        .dcmanager_ok(&[
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            SUBJECT,
            "--expiry-date",
            &date,
        ])
        .unwrap();
    let before = fleet
        .dcmanager_json(&["kube-rootca-update-strategy", "show"])
        .unwrap();
    let err = failing(&fleet, &["kube-rootca-update-strategy", "create"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        fleet
            .dcmanager_json(&["kube-rootca-update-strategy", "show"])
            .unwrap(),
        before
    );

    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap();
    let err = failing(&fleet, &["kube-rootca-update-strategy", "apply"]);
    assert!(err.contains("cannot be applied"), "{err}");
    let strategy = fleet
        .wait_strategy(&["complete", "failed", "aborted"], TIMEOUT)
        .unwrap();
    assert_eq!(strategy["state"], "complete");
}
