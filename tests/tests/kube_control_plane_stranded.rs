//! The real-control-plane tier (see `kube_control_plane.rs`): pods that no pods phase restarts. A
//! paused Deployment's pod and a bare pod would keep the old CA alone and stop trusting the API
//! server after trust-new-ca; the update refuses to start while they run, names them, changes
//! nothing, and finishes once the operator has dealt with them: the bare pod deleted, the paused
//! Deployment left paused and the strategy told to proceed, which the completed step and the subcloud
//! then say. A test binary of its own, so it never shares the two cores with another control plane.

mod common;
mod control_plane;

use common::*;
use control_plane::*;
use dc_test_support::control_plane::ControlPlane;
use dc_test_support::fleet::{Fleet, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Where the stranded pods run: not the demo namespace, whose pods the end-state check counts.
const OPS: &str = "ops";

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The step's details and the subcloud's error description (`dcmanager subcloud errors`), after the
/// strategy ended in `state`.
fn outcome(plane: &ControlPlane, fleet: &Fleet, state: &str) -> (String, String) {
    assert_state(plane, fleet, &final_state(plane, fleet), state);
    let details = steps(fleet)[0]["details"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let description = fleet
        .dcmanager_ok(&["subcloud", "errors", NAME])
        .unwrap_or_else(|e| panic!("{e}"));
    (details, description.trim().to_owned())
}

#[test]
fn pods_nothing_restarts_refuse_the_start_until_dealt_with_and_a_proceed_is_reported() {
    let Started { plane, fleet, .. } = &start_with_workloads(|_| {});
    let admin = plane.admin_client().expect("admin client");
    let pods = Api::<Pod>::namespaced(admin.clone(), OPS);
    let container = json!([{"name": "main", "image": "k8s.gcr.io/pause:3.2"}]);
    plane.block_on(async {
        create(
            Api::<Namespace>::all(admin.clone()),
            json!({"metadata": {"name": OPS}}),
        )
        .await;
        create(
            Api::<Deployment>::namespaced(admin.clone(), OPS),
            json!({
                "metadata": {"name": "frozen"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "frozen"}},
                    "template": {
                        "metadata": {"labels": {"app": "frozen"}},
                        "spec": {"containers": container},
                    },
                },
            }),
        )
        .await;
    });
    // A pod is admitted only once the admission plugin's cache holds the namespace's service-account
    // token; until then the API server answers ServerTimeout, "retry after the token is automatically
    // created" (seen in CI: the token Secret listed before the plugin saw it), so retry exactly that.
    let debug: Pod = serde_json::from_value(
        json!({"metadata": {"name": "debug"}, "spec": {"containers": container}}),
    )
    .expect("pod JSON");
    wait_until(TIMEOUT, || {
        match plane.block_on(pods.create(&PostParams::default(), &debug)) {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.reason == "ServerTimeout" => Ok(false),
            Err(e) => panic!("create ops/debug: {e}"),
        }
    })
    .unwrap_or_else(|e| panic!("ops/debug never admitted: {e}"));
    let ops_pods = || {
        plane
            .block_on(pods.list(&ListParams::default()))
            .map(|l| l.items)
            .map_err(|e| e.to_string())
    };
    wait_until(TIMEOUT, || {
        Ok(ops_pods().is_ok_and(|items| items.len() == 2 && items.iter().all(running)))
    })
    .unwrap_or_else(|e| panic!("ops pods not running: {e}\n{}", logs(plane, fleet)));
    plane
        .block_on(Api::<Deployment>::namespaced(admin.clone(), OPS).patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        ))
        .expect("pause");
    let before = Before::capture(plane);

    // Refused at start, naming both pods and the way on; nothing changed.
    create_and_apply(fleet, &[]);
    let (details, description) = outcome(plane, fleet, "failed");
    for expected in [
        "start failed",
        "2 running pod(s) would keep the old root CA alone",
        "ops/debug (a bare pod: no controller recreates it)",
        "its Deployment frozen is paused",
        "proceed-with-stranded-pods",
    ] {
        assert!(details.contains(expected), "{expected:?} not in {details}");
    }
    assert!(description.contains("ops/debug"), "{description}");
    assert_eq!(
        certs(&new_ca_pem(plane)),
        certs(&before.ca_pem),
        "the start changed nothing"
    );

    // The operator deletes the bare pod, leaves the Deployment paused and tells the strategy to
    // proceed: the update completes and says what it left behind.
    plane
        .block_on(pods.delete("debug", &DeleteParams::default()))
        .expect("delete the bare pod");
    wait_until(TIMEOUT, || {
        Ok(ops_pods().is_ok_and(|items| items.len() == 1))
    })
    .unwrap_or_else(|e| panic!("the bare pod is not gone: {e}"));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "delete"])
        .unwrap_or_else(|e| panic!("{e}"));
    let not_after = create_and_apply(fleet, &["--proceed-with-stranded-pods"]);
    let (details, description) = outcome(plane, fleet, "complete");
    assert!(
        details.contains("warning: 1 running pod(s) would keep the old root CA alone")
            && details.contains("ops/frozen-")
            && details.contains("its Deployment frozen is paused"),
        "{details}"
    );
    assert!(
        description.starts_with("warning: ") && description.contains("frozen"),
        "{description}"
    );
    assert_nothing_wrong(
        plane,
        fleet,
        &end_state_violations(plane, &before, not_after),
    );
    // The warning is true: the paused Deployment's pod still holds the old CA alone. (The update
    // re-issued admin.conf: a client from its new content.)
    let admin = plane.admin_client().expect("admin client");
    let frozen = plane
        .block_on(Api::<Pod>::namespaced(admin, OPS).list(&ListParams::default()))
        .expect("ops pods")
        .items
        .remove(0);
    let uid = frozen.metadata.uid.clone().unwrap_or_default();
    let record = plane
        .hosts
        .iter()
        .flat_map(|h| plane.pod_records(&h.name).expect("pod records"))
        .rfind(|r| r.uid == uid)
        .expect("the frozen pod was started by a kubelet");
    assert_eq!(
        certs(record.ca_pem.as_deref().unwrap_or_default()),
        certs(&before.ca_pem)
    );
}
