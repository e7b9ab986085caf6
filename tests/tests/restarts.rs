//! SIGKILL of the controller mid-apply and of an agent mid-phase: the update still completes.

mod common;

use common::*;
use dc_test_support::fleet::wait_until;

fn in_pods_phase(fleet: &dc_test_support::fleet::Fleet, cloud: &str) -> bool {
    steps(fleet).iter().any(|s| {
        s["cloud"] == cloud
            && s["state"]
                .as_str()
                .unwrap_or_default()
                .contains("pods-trust-both-cas")
    })
}

#[test]
fn controller_killed_mid_apply_resumes_and_completes() {
    let mut sites = light(&["k1", "k2", "k3"]);
    for s in &mut sites {
        s.slow_pods_ms = 2000;
    }
    let mut fleet = start(sites);
    let (date, not_after) = expiry();
    fleet
        .dcmanager_ok(&[
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            SUBJECT,
            "--expiry-date",
            &date,
            "--max-parallel-subclouds",
            "3",
        ])
        .unwrap();
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap();
    wait_until(TIMEOUT, || Ok(in_pods_phase(&fleet, "k1"))).unwrap();

    fleet.kill_controller();
    fleet.start_controller().unwrap();

    let strategy = fleet
        .wait_strategy(&["complete", "failed", "aborted"], TIMEOUT)
        .unwrap();
    let steps = steps(&fleet);
    assert_eq!(strategy["state"], "complete", "{steps:#?}");
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["state"] == "complete"), "{steps:#?}");
    for i in 0..3 {
        fleet
            .verify_site(i, Some((SUBJECT, not_after)), SUBJECT)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn agent_killed_mid_phase_resumes_and_completes() {
    let mut sites = light(&["r1", "r2"]);
    sites[0].slow_pods_ms = 2000;
    let mut fleet = start(sites);
    let (date, not_after) = expiry();
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
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap();
    wait_until(TIMEOUT, || Ok(in_pods_phase(&fleet, "r1"))).unwrap();

    fleet.kill_agent(0);
    fleet.restart_agent(0).unwrap();

    let strategy = fleet
        .wait_strategy(&["complete", "failed", "aborted"], TIMEOUT)
        .unwrap();
    let steps = steps(&fleet);
    assert_eq!(strategy["state"], "complete", "{steps:#?}");
    for i in 0..2 {
        fleet
            .verify_site(i, Some((SUBJECT, not_after)), SUBJECT)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
