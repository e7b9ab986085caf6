//! No interrupted update is a dead end: after an abort or a failure and the strategy deleted, the
//! subclouds whose update is unfinished show `out-of-sync` with the reason, and one more strategy
//! finishes them: with a plain `create`, and with `create --force` asking for another subject (which
//! does not apply to an update whose hosts already trust its CA).

mod common;

use common::*;
use dc_test_support::fleet::wait_until;
use serde_json::Value;

fn subclouds(fleet: &TestFleet) -> Vec<Value> {
    fleet
        .dcmanager_json(&["subcloud", "list"])
        .unwrap_or_else(|e| panic!("{e}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sync_of(fleet: &TestFleet, name: &str) -> String {
    subclouds(fleet)
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["sync"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// One field of `subcloud show NAME`.
fn shown(fleet: &TestFleet, name: &str, column: &str) -> String {
    fleet
        .dcmanager_ok(&["subcloud", "show", name, "-f", "value", "-c", column])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

fn last_heartbeat(fleet: &TestFleet, name: &str) -> String {
    shown(fleet, name, "last_heartbeat_at")
}

/// The one-line summary of an unfinished update (`None` when there is none).
fn unfinished(fleet: &TestFleet, name: &str) -> String {
    shown(fleet, name, "kube-rootca_update")
}

/// Three in-sync subclouds updated together with `--force`, aborted while each restarts its pods to trust
/// both CAs, the strategy deleted; then `second` (create flags) and apply must finish all three with the
/// first strategy's CA.
fn abort_then_finish_with(second: &[&str]) {
    let names = ["r1", "r2", "r3"];
    let mut sites = light(&names);
    for site in &mut sites {
        site.ca_days = 400;
        site.slow_pods_ms = 3000;
    }
    let fleet = start(sites);
    for name in names {
        assert_eq!(sync_of(&fleet, name), "in-sync");
    }
    let not_after = create_and_apply(&fleet, &["--force", "--max-parallel-subclouds", "3"]);
    wait_until(TIMEOUT, || {
        Ok(names
            .iter()
            .all(|n| in_phase(&fleet, n, "pods-trust-both-cas")))
    })
    .unwrap_or_else(|e| panic!("{e}: {:#?}", steps(&fleet)));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "abort"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "aborted", "{steps:#?}");
    delete_strategy(&fleet);

    // The truth is visible: half-way subclouds are out-of-sync, and show says where and with which CA.
    for name in names {
        wait_until(TIMEOUT, || Ok(sync_of(&fleet, name) == "out-of-sync"))
            .unwrap_or_else(|e| panic!("{name} must be out-of-sync: {e}"));
        let why = unfinished(&fleet, name);
        assert!(
            why.contains(" aborted before ") && why.contains(SUBJECT),
            "{name}: {why}"
        );
    }

    create_with_and_apply(&fleet, second);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_eq!(steps.len(), names.len(), "{steps:#?}");
    for (i, name) in names.iter().enumerate() {
        // Finished with the CA the first strategy generated there.
        assert_new_ca(&fleet, i, not_after);
        wait_until(TIMEOUT, || Ok(sync_of(&fleet, name) == "in-sync"))
            .unwrap_or_else(|e| panic!("{name} must be in-sync once finished: {e}"));
        assert_eq!(unfinished(&fleet, name), "None");
    }
}

#[test]
fn an_aborted_update_is_out_of_sync_and_a_plain_create_finishes_it() {
    abort_then_finish_with(&[]);
}

#[test]
fn an_aborted_update_is_finished_with_its_own_ca_by_a_forced_create_asking_for_another() {
    abort_then_finish_with(&["--force", "--subject", "C=CA O=WR CN=another"]);
}

#[test]
fn a_failed_update_is_explained_and_finished_by_the_next_strategy_once_fixed() {
    let mut sites = light(&["f1"]);
    // f1's web Deployment never gets ready pods: pods trust-both-cas fails at its timeout, after the
    // hosts already trust both CAs.
    sites[0].never_ready = vec!["default/web".to_owned()];
    let mut fleet = start(sites);
    let not_after = create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "failed", "{steps:#?}");
    let errors = fleet
        .dcmanager_ok(&["subcloud", "errors", "f1"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        errors.contains("pods trust-both-cas") && errors.contains("web"),
        "subcloud errors names the phase and the workload: {errors}"
    );
    delete_strategy(&fleet);
    wait_until(TIMEOUT, || {
        Ok(sync_of(&fleet, "f1") == "out-of-sync"
            && unfinished(&fleet, "f1").contains(" failed at pods trust-both-cas"))
    })
    .unwrap_or_else(|e| panic!("{e}: {}", unfinished(&fleet, "f1")));

    // The operator fixes the workload; the next strategy finishes the update once the restarted agent
    // has reported (a heartbeat newer than the last one of the killed agent).
    fleet.sites[0].never_ready.clear();
    fleet.restart_agent(0).unwrap_or_else(|e| panic!("{e}"));
    let before = last_heartbeat(&fleet, "f1");
    wait_until(TIMEOUT, || {
        Ok(last_heartbeat(&fleet, "f1") != before && sync_of(&fleet, "f1") == "out-of-sync")
    })
    .unwrap_or_else(|e| panic!("the restarted agent reports its unfinished update: {e}"));
    create_with_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_new_ca(&fleet, 0, not_after);
    assert_eq!(
        fleet
            .dcmanager_ok(&["subcloud", "errors", "f1"])
            .unwrap_or_else(|e| panic!("{e}"))
            .trim(),
        "No errors present"
    );
}
