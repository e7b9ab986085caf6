//! `kube-rootca-update-strategy create --rollback` through the real CLI, controller and agents: a
//! subcloud whose update was aborted before the point of no return is rolled back to its old root CA
//! (its step details say `rolling back: …` while it runs; an abort stops the rollback resumably and the
//! next rollback strategy finishes it), while a subcloud whose update completed hosts trust-new-ca fails
//! its step with the exact message and is then finished by a plain update.

mod common;

use common::*;
use dc_protocol::{Phase, ROLLBACK_PAST_POINT_OF_NO_RETURN, ROLLING_BACK};
use dc_test_support::fleet::{Shape, Site, wait_until};
use serde_json::Value;

/// Site `i`'s controller `ca.crt`, as its simulated cluster holds it.
fn controller_ca(fleet: &TestFleet, i: usize) -> String {
    let path = fleet
        .agent_data(i)
        .join("cluster/hosts/controller-0/etc/kubernetes/pki/ca.crt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn step_of(fleet: &TestFleet, cloud: &str) -> Value {
    steps(fleet)
        .into_iter()
        .find(|s| s["cloud"] == cloud)
        .unwrap_or_else(|| panic!("no step for {cloud}"))
}

fn details(step: &Value) -> &str {
    step["details"].as_str().unwrap_or_default()
}

fn sync_of(fleet: &TestFleet, name: &str) -> String {
    fleet
        .dcmanager_ok(&[
            "subcloud",
            "show",
            name,
            "-f",
            "value",
            "-c",
            "kube-rootca_sync_status",
        ])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

/// Updates `cloud` alone (in-sync, so `--force`) and aborts it once its step is in `phase`: it stops
/// after that phase. The strategy is deleted afterwards. Returns the new CA's `not_after`.
fn update_and_abort_in(fleet: &TestFleet, cloud: &str, phase: &str) -> i64 {
    let not_after = create_and_apply(fleet, &["--force", cloud]);
    wait_until(TIMEOUT, || Ok(in_phase(fleet, cloud, phase)))
        .unwrap_or_else(|e| panic!("{cloud} never in {phase}: {e}: {:#?}", steps(fleet)));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "abort"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (state, steps) = finish(fleet);
    assert_eq!(state, "aborted", "{steps:#?}");
    delete_strategy(fleet);
    wait_until(TIMEOUT, || Ok(sync_of(fleet, cloud) == "out-of-sync"))
        .unwrap_or_else(|e| panic!("{cloud} must be out-of-sync with its update unfinished: {e}"));
    not_after
}

#[test]
fn a_rollback_strategy_takes_an_aborted_update_back_and_refuses_one_past_the_point_of_no_return() {
    // In-sync subclouds whose restarted components take 0.4 s to serve again, so each step of a
    // rollback lasts long enough to be seen and aborted; each update is slowed in the phase it is
    // aborted in.
    let shape = Shape::Workers {
        workers: 1,
        restart_ms: 400,
    };
    let mut back = Site::new("back", shape);
    back.ca_days = 400;
    back.slow_pods_ms = 3000;
    let mut past = Site::new("past", shape);
    past.ca_days = 400;
    past.slow_pods_ms = 3000;
    past.slow_phase = Phase::PodsTrustNewCa;
    let fleet = start(vec![back, past]);
    let old_ca = controller_ca(&fleet, 0);

    update_and_abort_in(&fleet, "back", "pods-trust-both-cas");
    let past_not_after = update_and_abort_in(&fleet, "past", "pods-trust-new-ca");

    // A rollback asks for no new CA: the CLI refuses the combination before sending anything.
    let refused = failing(
        &fleet,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--rollback",
            "--subject",
            "CN=x",
        ],
    );
    assert!(refused.contains("--subject"), "{refused}");

    // The rollback strategy targets both unfinished updates; `back` is seen rolling back, then the
    // strategy is aborted in the middle of its rollback.
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "create", "--rollback"])
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = fleet
        .dcmanager_json(&["kube-rootca-update-strategy", "show"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown["state"], "initial", "{shown}");
    let targeted: Vec<Value> = steps(&fleet).iter().map(|s| s["cloud"].clone()).collect();
    assert_eq!(targeted, ["back", "past"]);
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(TIMEOUT, || {
        Ok(details(&step_of(&fleet, "back")).starts_with("rolling back: hosts trust-old-ca"))
    })
    .unwrap_or_else(|e| panic!("never seen rolling back: {e}: {:#?}", steps(&fleet)));
    let running = step_of(&fleet, "back");
    assert_eq!(running["state"], "rolling-back", "{running}");
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "abort"])
        .unwrap_or_else(|e| panic!("{e}"));
    // (`past` failed meanwhile, which makes the strategy failed rather than aborted.)
    let (state, steps_after_abort) = finish(&fleet);
    assert_eq!(state, "failed", "{steps_after_abort:#?}");
    let aborted = step_of(&fleet, "back");
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    assert_eq!(
        details(&aborted),
        "aborted: the rollback stopped after its step in progress; a rollback strategy resumes it"
    );
    delete_strategy(&fleet);

    // A second rollback strategy finishes the stopped rollback.
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "create", "--rollback"])
        .unwrap_or_else(|e| panic!("{e}"));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "failed", "{steps:#?}");
    let back = step_of(&fleet, "back");
    assert_eq!(back["state"], "complete", "{back}");
    assert_eq!(
        details(&back),
        "rolled back to the old root CA; rollback 100% complete"
    );
    let past = step_of(&fleet, "past");
    assert_eq!(past["state"], "failed", "{past}");
    assert_eq!(details(&past), ROLLBACK_PAST_POINT_OF_NO_RETURN);

    // `back` holds its old root CA again, byte for byte, alone, and is in-sync with nothing unfinished.
    assert_untouched(&fleet, 0);
    assert_eq!(controller_ca(&fleet, 0), old_ca);
    wait_until(TIMEOUT, || Ok(sync_of(&fleet, "back") == "in-sync"))
        .unwrap_or_else(|e| panic!("back must be in-sync once rolled back: {e}"));
    let unfinished = fleet
        .dcmanager_ok(&[
            "subcloud",
            "show",
            "back",
            "-f",
            "value",
            "-c",
            "kube-rootca_update",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unfinished.trim(), "None");

    // `past` is not lost: a plain update finishes it with its own new CA (and leaves the rolled-back
    // `back` alone).
    delete_strategy(&fleet);
    create_with_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    let targeted: Vec<Value> = steps.iter().map(|s| s["cloud"].clone()).collect();
    assert_eq!(targeted, ["past"]);
    assert!(
        !details(&steps[0]).starts_with(ROLLING_BACK),
        "{:#?}",
        steps[0]
    );
    assert_new_ca(&fleet, 1, past_not_after);
    assert_untouched(&fleet, 0);
}
