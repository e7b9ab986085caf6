//! CI's smoke test of the benchmark: a tiny fleet, run as a user would, finishes and writes its figures.
//! (The figures themselves come from release runs; nothing here is timed.)

use std::process::Command;

#[test]
fn a_three_subcloud_run_completes_and_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("figures.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dc-fleet-bench"))
        .args(["--subclouds", "3", "--max-parallel", "2", "--state-dir"])
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
        "dc-fleet-bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("overhead wall / ideal"), "{stdout}");
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(figures["subclouds"], 3);
    assert_eq!(figures["max_parallel"], 2);
    assert_eq!(figures["shape"], "light");
    assert_eq!(figures["strategy"]["completed"], true);
    assert_eq!(figures["strategy"]["steps_complete"], 3);
    for (section, field) in [
        ("strategy", "wall_secs"),
        ("strategy", "ideal_secs"),
        ("strategy", "overhead"),
        ("controller", "peak_rss_mib"),
        ("controller", "rss_per_subcloud_kib"),
        ("controller", "cpu_secs_strategy"),
        ("progress_latency", "sample_period_ms"),
        ("connections", "connect_secs"),
        ("connections", "reconnect_storm_secs"),
    ] {
        assert!(
            figures[section][field].as_f64().is_some_and(f64::is_finite),
            "{section}.{field}: {}",
            figures[section]
        );
    }
    assert!(figures["progress_latency"]["summary"]["p99_ms"].is_number());
}
