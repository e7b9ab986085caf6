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
