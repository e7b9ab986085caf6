//! CI's smoke test of the benchmark: a tiny fleet, run as a user would, finishes and writes its figures.
//! (The figures themselves come from release runs; nothing here is timed.)

use dc_test_support::process::run_for_figures;

#[test]
fn a_three_subcloud_run_completes_and_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, figures) = run_for_figures(
        env!("CARGO_BIN_EXE_dc-fleet-bench"),
        &["--subclouds", "3", "--max-parallel", "2"],
        dir.path(),
    );
    assert!(stdout.contains("overhead wall / ideal"), "{stdout}");
    assert_eq!(figures["subclouds"], 3);
    assert_eq!(figures["max_parallel"], 2);
    assert_eq!(figures["shape"], "light");
    assert_eq!(figures["database"], "sqlite");
    assert!(figures["failover"].is_null());
    assert_eq!(figures["strategy"]["completed"], true);
    assert_eq!(figures["strategy"]["steps_complete"], 3);
    for (section, field) in [
        ("strategy", "wall_secs"),
        ("strategy", "ideal_secs"),
        ("strategy", "overhead"),
        ("controller", "peak_rss_mib"),
        ("controller", "rss_per_subcloud_kib"),
        ("controller", "cpu_secs_strategy"),
        ("progress_latency", "steps_get_mean_ms"),
        ("dcmanager_model", "wall_secs"),
        ("dcmanager_model", "wall_ratio"),
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

/// `--failover` on a throwaway PostgreSQL: the leader is SIGKILLed with steps still to run, the standby
/// takes over, every agent comes back to it, and the strategy completes with no step started twice.
#[test]
fn a_failover_run_kills_the_leader_mid_apply_and_still_completes_every_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, figures) = run_for_figures(
        env!("CARGO_BIN_EXE_dc-fleet-bench"),
        &[
            "--subclouds",
            "4",
            "--idle-secs",
            "1",
            "--database",
            "throwaway-postgres",
            "--failover",
        ],
        dir.path(),
    );
    assert!(
        stdout.contains("failover: killed -> standby leading"),
        "{stdout}"
    );
    assert_eq!(
        figures["database"],
        "postgresql (throwaway-postgres, loopback, TLS, fsync on)"
    );
    assert_eq!(figures["strategy"]["completed"], true);
    assert_eq!(figures["strategy"]["steps_complete"], 4);
    let failover = &figures["failover"];
    let complete_at_kill = failover["steps_complete_at_kill"].as_u64().unwrap();
    assert!((2..4).contains(&complete_at_kill), "{failover}");
    assert_eq!(failover["steps_restarted"], serde_json::json!([]));
    let leading = failover["leading_secs"].as_f64().unwrap();
    let online = failover["all_online_secs"].as_f64().unwrap();
    assert!(leading > 0.0 && online >= leading, "{failover}");
}
