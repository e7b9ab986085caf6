//! The real `dc-certs` binary as an operator runs it (and as the package test and the packaging use
//! it): the controller's files laid out for its group away from `ca.key`, an agent's certificate, an
//! existing CA never overwritten, and the man page the package installs. (Also what makes
//! `cargo test --workspace` build the binary those tests take from the target directory.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn dc_certs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dc-certs"))
        .args(args)
        .output()
        .expect("run dc-certs")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn init_keeps_the_ca_key_apart_from_the_controllers_group_readable_files_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, controller, agent) = (
        dir.path().join("pki"),
        dir.path().join("controller"),
        dir.path().join("agent"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let init = [
        "init",
        "--out",
        &s(&pki),
        "--controller-out",
        &s(&controller),
        "--group",
        "root",
        "--san",
        "controller.example.com",
    ];
    let out = dc_certs(&init);
    assert!(out.status.success(), "{out:?}");

    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    assert!(
        !controller.join("ca.key").exists(),
        "the CA key stays apart"
    );
    assert_eq!(mode(&controller), 0o750);
    assert_eq!(mode(&controller.join("controller.key")), 0o640);
    for file in ["ca.crt", "controller.crt"] {
        assert!(controller.join(file).is_file(), "{file}");
    }

    let ca_key = std::fs::read(pki.join("ca.key")).unwrap();
    let again = dc_certs(&init);
    assert!(!again.status.success(), "a second init must refuse");
    assert_eq!(std::fs::read(pki.join("ca.key")).unwrap(), ca_key);

    let out = dc_certs(&[
        "issue-agent",
        "--ca",
        &s(&pki),
        "--name",
        "subcloud1",
        "--out",
        &s(&agent),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&agent.join("agent.key")), 0o600);
    let cert = std::fs::read_to_string(agent.join("agent.crt")).unwrap();
    let summary = dc_certs::inspect::CertSummary::from_pem(&cert).unwrap();
    assert_eq!(summary.common_name.as_deref(), Some("subcloud1"));
}

#[test]
fn the_man_page_is_roff_for_the_package() {
    let out = dc_certs(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH dc-certs"), "{page}");
    assert!(page.contains("issue\\-agent"), "{page}");
}
