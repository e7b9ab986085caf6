//! SIGKILL of the controller mid-apply and of an agent mid-phase: the update still completes.

mod common;

use common::*;
use dc_test_support::fleet::wait_until;

#[test]
fn controller_killed_mid_apply_resumes_and_completes() {
    let mut sites = light(&["k1", "k2", "k3"]);
    for s in &mut sites {
        s.slow_pods_ms = 2000;
    }
    let mut fleet = start(sites);
    let not_after = create_and_apply(&fleet, &["--max-parallel-subclouds", "3"]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "k1", "pods-trust-both-cas"))
    })
    .unwrap();

    fleet.kill_controller();
    fleet.start_controller().unwrap();

    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["state"] == "complete"), "{steps:#?}");
    for i in 0..3 {
        assert_new_ca(&fleet, i, not_after);
    }
}

#[test]
fn agent_killed_mid_phase_resumes_and_completes() {
    let mut sites = light(&["r1", "r2"]);
    sites[0].slow_pods_ms = 2000;
    let mut fleet = start(sites);
    let not_after = create_and_apply(&fleet, &[]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "r1", "pods-trust-both-cas"))
    })
    .unwrap();

    fleet.kill_agent(0);
    fleet.restart_agent(0).unwrap();

    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    for i in 0..2 {
        assert_new_ca(&fleet, i, not_after);
    }
}
