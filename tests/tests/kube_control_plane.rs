//! The real-control-plane tier: the agent's `kubernetes` backend against a REAL Kubernetes 1.20
//! control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from Debian's
//! `kubernetes` source package, Node,RBAC authorization, NodeRestriction, leader election on),
//! started from kubeadm-style static-pod manifests in a kubeadm-like host under a temporary directory,
//! with a stand-in kubelet per host that authenticates with `kubelet.conf`
//! (`dc_test_support::control_plane`). What the served API over a simulated cluster
//! (`kube_backend.rs`) cannot show, this shows: what the real components do with the files the
//! update writes.
//!
//! Run it alone with
//! `cargo build --bins && cargo test -p dc-tests --test kube_control_plane`; the first run on a
//! machine builds the Kubernetes binaries (`tests/kubeadm/build-control-plane.sh`, about 4 minutes on
//! two cores) into `~/.cache/dc-rootca`, or point `DC_KUBE_BIN` at a directory holding them.

mod common;
mod control_plane;

use common::*;
use control_plane::*;
use dc_protocol::Phase;
use dc_test_support::fleet::wait_until;

/// Also shows, by watching the API throughout, that each pods phase restarted the workloads only once
/// the controller-manager had published that phase's bundle in every namespace: restarted earlier,
/// pods mount the previous bundle (the old CA alone in pods-trust-both-cas, pods that stop trusting
/// the API server after update-certs).
#[test]
fn the_whole_update_on_a_real_control_plane_leaves_the_new_ca_alone_everywhere() {
    let Started { plane, fleet, .. } = &start_with_workloads(|_| {});
    let before = Before::capture(plane);
    let not_after = create_and_apply(fleet, &[]);
    let (state, sightings) = observing_restarts(plane, || final_state(plane, fleet));
    assert_state(plane, fleet, &state, "complete");
    let mut wrong = end_state_violations(plane, &before, not_after);
    wrong.extend(restart_order_violations(
        &sightings,
        &before,
        &new_ca_pem(plane),
    ));
    assert_nothing_wrong(plane, fleet, &wrong);
}

/// A flag kube-scheduler refuses ("unknown flag"), as a mistaken edit of its manifest would add.
const BAD_FLAG: &str = "--no-such-flag";

/// A restarted component that does not come back fails the host phase within the component timeout,
/// naming the host, the component and what its health check last answered, with the API server
/// still serving; once the operator repairs the manifest, a new strategy resumes the update where it
/// failed and completes it.
#[test]
fn a_component_that_does_not_come_back_fails_the_host_phase_and_a_new_strategy_finishes_after_the_repair()
 {
    // A short component timeout: the failure is seen in 30 s, while rollouts keep their long phase
    // timeout.
    let Started { plane, fleet, .. } =
        &start_with_workloads(|site| site.component_timeout_secs = 30);
    let before = Before::capture(plane);
    // The running scheduler keeps running; the first restart reads the broken manifest.
    let manifest = plane
        .host("controller-0")
        .manifests()
        .join("kube-scheduler.yaml");
    let good = std::fs::read_to_string(&manifest).expect("kube-scheduler.yaml");
    let command = "    - kube-scheduler\n";
    assert!(good.contains(command), "{good}");
    std::fs::write(
        &manifest,
        good.replace(command, &format!("{command}    - {BAD_FLAG}\n")),
    )
    .expect("break kube-scheduler.yaml");

    let not_after = create_and_apply(fleet, &[]);
    let state = final_state(plane, fleet);
    let steps = steps(fleet);
    assert_eq!(state, "failed", "{steps:#?}\n{}", logs(plane, fleet));
    let details = steps[0]["details"].as_str().unwrap_or_default();
    let last_output = format!(
        "curl: (7) Failed to connect to 127.0.0.1 port {}",
        plane.ports.scheduler
    );
    for part in [
        "hosts trust-both-cas",
        "controller-0",
        "scheduler did not come back within 30s",
        &plane.health_command("kube-scheduler"),
        &last_output,
    ] {
        assert!(
            details.contains(part),
            "the failure names {part:?}: {details}\n{}",
            logs(plane, fleet)
        );
    }
    let scheduler_log =
        std::fs::read_to_string(plane.log("controller-0", "kube-scheduler")).unwrap_or_default();
    assert!(
        scheduler_log.contains(&format!("unknown flag: {BAD_FLAG}")),
        "the scheduler stopped for the broken manifest:\n{}",
        tail(&plane.log("controller-0", "kube-scheduler"), 20)
    );
    assert!(
        plane.healthy("kube-apiserver", "controller-0"),
        "the API server still serves\n{}",
        logs(plane, fleet)
    );

    // The operator repairs the manifest and starts nothing by hand: a new strategy resumes the
    // failed phase, whose restarts bring the scheduler back.
    std::fs::write(&manifest, &good).expect("repair kube-scheduler.yaml");
    delete_strategy(fleet);
    create_with_and_apply(fleet, &[]);
    assert_completed(plane, fleet, &before, not_after);
}

/// SIGKILLed once in each phase after start, as soon as the controller shows the phase running, and
/// started again each time, the agent resumes every phase and the update completes with every
/// workload restarted once per pods phase (which `end_state_violations` counts). The new-root-CA and
/// complete phases take tens of milliseconds and run no command a test could hold them in, so the
/// controller's API never shows them running: the kills that must land are in the five host and pods
/// phases.
#[test]
fn an_agent_killed_in_every_phase_resumes_each_and_completes_the_update() {
    let mut started = start_with_workloads(|_| {});
    let before = Before::capture(&started.plane);
    let not_after = create_and_apply(&started.fleet, &[]);
    let Started { plane, fleet, .. } = &mut started;
    let mut killed = Vec::new();
    wait_until(UPDATE_TIMEOUT, || {
        let Some(step) = steps(fleet).into_iter().next() else {
            return Ok(false);
        };
        if ["complete", "failed", "aborted"].contains(&step["state"].as_str().unwrap_or_default()) {
            return Ok(true);
        }
        if let Some(phase) =
            running_phase(&step).filter(|p| *p != Phase::Start && !killed.contains(p))
        {
            fleet.kill_agent(0);
            fleet.restart_agent(0)?;
            killed.push(phase);
        }
        Ok(false)
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", steps(fleet), logs(plane, fleet)));
    assert_completed(plane, fleet, &before, not_after);
    let mut long = Phase::ALL
        .into_iter()
        .filter(|p| p.is_host_phase() || p.is_pods_phase());
    assert!(
        long.all(|p| killed.contains(&p)) && killed.is_sorted(),
        "killed once in each host and pods phase, in order: {killed:?}\n{}",
        logs(plane, fleet)
    );
}
