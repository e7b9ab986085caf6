//! Stop-on-failure with an injected fault, and abort in the middle of an update.

mod common;

use common::*;
use dc_test_support::fleet::wait_until;

#[test]
fn stop_on_failure_stops_after_the_faulty_subcloud() {
    let mut sites = light(&["f1", "f2", "f3"]);
    // f1's web Deployment never gets ready pods: its pods trust-both-cas phase fails at its timeout.
    sites[0].never_ready = vec!["default/web".to_owned()];
    let fleet = start(sites);
    create_and_apply(
        &fleet,
        &["--subcloud-apply-type", "serial", "--stop-on-failure"],
    );
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "failed", "{steps:#?}");
    let f1 = steps.iter().find(|s| s["cloud"] == "f1").unwrap();
    assert_eq!(f1["state"], "failed", "{f1:#}");
    let details = f1["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("web"),
        "the failure names the workload: {details}"
    );
    for later in steps.iter().filter(|s| s["cloud"] != "f1") {
        assert_ne!(
            later["state"], "complete",
            "no subcloud starts after a failure: {later:#}"
        );
        assert!(
            !later["details"].as_str().unwrap_or_default().is_empty(),
            "says why: {later:#}"
        );
    }
    // Nothing was changed on the subclouds that never started.
    assert_untouched(&fleet, 1);
    assert_untouched(&fleet, 2);
}

#[test]
fn abort_lets_the_running_subcloud_finish_its_phase_and_stops_the_rest() {
    let mut sites = light(&["a1", "a2", "a3"]);
    // a1 spends long enough in pods trust-both-cas to be caught there.
    sites[0].slow_pods_ms = 3000;
    let fleet = start(sites);
    create_and_apply(&fleet, &["--subcloud-apply-type", "serial"]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "a1", "pods-trust-both-cas"))
    })
    .unwrap();
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "abort"])
        .unwrap();
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "aborted", "{steps:#?}");
    for s in &steps {
        assert_eq!(s["state"], "aborted", "{s:#}");
    }
    // a1 stopped after its pods phase, resumable: its update record is kept, and its hosts still trust
    // both CAs (old + new in ca.crt), which is safe for every pod.
    assert!(
        fleet.agent_data(0).join("update/record.json").exists(),
        "a1 keeps its update record"
    );
    let ca_crt = fleet
        .agent_data(0)
        .join("cluster/hosts/controller-0/etc/kubernetes/pki/ca.crt");
    let bundle = dc_certs::pem_certificates(&std::fs::read_to_string(&ca_crt).unwrap()).unwrap();
    assert_eq!(bundle.len(), 2, "{} trusts both CAs", ca_crt.display());
    assert_untouched(&fleet, 1);
    assert_untouched(&fleet, 2);
}
