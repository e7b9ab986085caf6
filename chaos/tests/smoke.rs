//! CI's short campaign: a fixed seed whose eight faults cover every kind (a disk-full needs root), over
//! three subclouds, run as a user would; it must finish every subcloud with no invariant broken and
//! write its figures. (The 100-fault figures in the README come from a longer run of the same command.)

use std::process::Command;

#[test]
fn a_short_seeded_campaign_finishes_every_subcloud_with_no_violation() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("chaos.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dc-chaos"))
        .args([
            "--seed",
            "78",
            "--subclouds",
            "3",
            "--faults",
            "8",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg("--json")
        .arg(&json)
        // Under `cargo test` the workspace's binaries are built already; a nested build would wait
        // for this run's lock.
        .env_remove("CARGO")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dc-chaos failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("dc-chaos seed 78"), "{stdout}");
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(figures["seed"], 78);
    assert_eq!(figures["faults_planned"], 8);
    assert_eq!(figures["completed"], true);
    assert_eq!(figures["violations"], serde_json::json!([]));
    let injected: u64 = figures["faults_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(injected, 8);
}
