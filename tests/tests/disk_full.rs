//! A full disk never strands a strategy: the controller's database lives on a small tmpfs the test
//! mounts (so this test needs root, as CI has), the disk fills mid-update, the controller stops
//! (fail-stop, naming why), and once space returns a restart finishes the strategy, which can then be
//! deleted.

mod common;

use common::*;
use dc_test_support::fleet::{Fleet, wait_until};
use dc_test_support::tmpfs::Tmpfs;

#[test]
fn a_full_disk_stops_the_controller_and_a_restart_after_space_returns_finishes_the_strategy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Tmpfs::mount(&dir.path().join("db"), "4m").unwrap_or_else(|e| panic!("{e}"));
    let mut sites = light(&["d1", "d2"]);
    for site in &mut sites {
        site.slow_pods_ms = 2000;
    }
    let mut fleet = Fleet::prepare(dir.path(), sites).unwrap_or_else(|e| panic!("{e}"));
    fleet.database = disk.path().join("controller.sqlite");
    fleet.launch().unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let not_after = create_and_apply(&fleet, &["--max-parallel-subclouds", "2"]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "d1", "pods-trust-both-cas"))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // The disk fills while both subclouds report progress: the next write fails and the controller
    // stops, saying why.
    let filler = disk.fill("filler").expect("the disk fills up");
    wait_until(TIMEOUT, || Ok(fleet.controller_exit().is_some()))
        .unwrap_or_else(|e| panic!("the controller must stop on a failed write: {e}"));
    let status = fleet.controller_exit().expect("exited");
    assert!(
        !status.success(),
        "a failed write is an error exit: {status}"
    );
    let log = std::fs::read_to_string(fleet.log("controller")).expect("controller log");
    assert!(
        log.contains("the store cannot write") && log.contains("full"),
        "the log says why it stopped: {log}"
    );

    // Space returns; the restarted controller recovers from what is durable and finishes.
    std::fs::remove_file(&filler).expect("space returns");
    fleet
        .start_controller()
        .unwrap_or_else(|e| panic!("the controller restarts: {e}"));
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    for i in 0..2 {
        assert_new_ca(&fleet, i, not_after);
    }
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "delete", "--yes"])
        .unwrap_or_else(|e| panic!("the finished strategy can be deleted: {e}"));
}
