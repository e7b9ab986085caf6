//! The `dc-controller` binary refuses a configuration with an unknown key, naming it.

use std::process::Command;

#[test]
fn an_unknown_section_stops_the_controller_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, "[apii]\nlisten = \"127.0.0.1:0\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_dc-controller"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run dc-controller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with [apii]: {stderr}");
    assert!(stderr.contains("unknown field `apii`"), "{stderr}");
}
