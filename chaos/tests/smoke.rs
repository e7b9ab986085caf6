//! CI's short campaign: a fixed seed whose eight faults cover every kind (a disk-full needs root), over
//! three subclouds, run as a user would; it must finish every subcloud with no invariant broken and
//! write its figures. (The 100-fault figures in the README come from a longer run of the same command.)

use dc_test_support::process::run_for_figures;

#[test]
fn a_short_seeded_campaign_finishes_every_subcloud_with_no_violation() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, figures) = run_for_figures(
        env!("CARGO_BIN_EXE_dc-chaos"),
        &["--seed", "78", "--subclouds", "3", "--faults", "8"],
        dir.path(),
    );
    assert!(stdout.starts_with("dc-chaos seed 78"), "{stdout}");
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
