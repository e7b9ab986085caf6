//! The stand-in kubelet's Node: registered as a kubelet registers it (NodeRestriction lets a node
//! create only its own), with room for the scheduler to place pods, and kept Ready by status
//! heartbeats well inside the node lifecycle controller's 40 s grace period.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{KubeletError, api, now_rfc3339};

/// Creates the Node unless it exists.
pub async fn register(client: Client, name: &str) -> Result<(), KubeletError> {
    let labels = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ];
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match Api::<Node>::all(client)
        .create(&PostParams::default(), &node)
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        other => other
            .map(drop)
            .map_err(api(format!("register node {name}"))),
    }
}

/// Posts the Node's status: capacity, addresses and a Ready condition with a fresh heartbeat.
pub async fn heartbeat(client: Client, name: &str) -> Result<(), KubeletError> {
    let now = now_rfc3339();
    let resources = json!({"cpu": "8", "memory": "16Gi", "pods": "110"});
    let status = json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "stand-in kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "kubeletVersion": "v1.20.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
    });
    Api::<Node>::all(client)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(status))
        .await
        .map(drop)
        .map_err(api(format!("node {name} status")))
}
