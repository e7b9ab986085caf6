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
//! machine builds the Kubernetes binaries (`tests/kubeadm/build-control-plane.sh`, about 12 minutes on
//! two cores) into `~/.cache/dc-rootca`, or point `DC_KUBE_BIN` at a directory holding them.

mod common;
mod control_plane;

use common::*;
use control_plane::*;

#[test]
fn the_whole_update_on_a_real_control_plane_leaves_the_new_ca_alone_everywhere() {
    let (plane, fleet, _dir) = start_with_workloads();
    let before = Before::capture(&plane);
    let not_after = create_and_apply(&fleet, &[]);
    let strategy = fleet
        .wait_strategy(&["complete", "failed", "aborted"], UPDATE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&plane, &fleet)));
    assert_eq!(
        strategy["state"],
        "complete",
        "{:#?}\n{}",
        steps(&fleet),
        logs(&plane, &fleet)
    );
    let wrong = end_state_violations(&plane, &before, not_after);
    assert!(
        wrong.is_empty(),
        "after the update:\n- {}\n{}",
        wrong.join("\n- "),
        logs(&plane, &fleet)
    );
}
