//! The pods bound to the stand-in kubelet's node: each new one is "started" (the trust bundle it
//! would mount is read with the node's own credentials and recorded, then the pod is marked Running
//! and Ready through `pods/status`, so Deployments, DaemonSets and StatefulSets roll out), and each
//! one being deleted is confirmed with a zero-grace delete, as a kubelet confirms it once its
//! containers are gone.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::json;

use super::{KubeletError, POD_RECORDS, PodRecord, api, io, now_rfc3339};

/// The key under which both a token Secret and `kube-root-ca.crt` carry the bundle.
const CA_KEY: &str = "ca.crt";

/// The node's pods and the record of those already started.
pub struct PodSync {
    node: String,
    records: PathBuf,
    started: HashSet<String>,
}

impl PodSync {
    /// Picks up the records of an earlier run in `state`, so a restarted kubelet does not start
    /// (and record) its running pods again.
    pub fn new(node: &str, state: &std::path::Path) -> Result<Self, KubeletError> {
        let started = super::read_records(state)?
            .into_iter()
            .map(|r| r.uid)
            .collect();
        Ok(Self {
            node: node.to_owned(),
            records: state.join(POD_RECORDS),
            started,
        })
    }

    /// One pass over the node's pods.
    pub async fn sync(&mut self, client: Client) -> Result<(), KubeletError> {
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let pods = Api::<Pod>::all(client.clone())
            .list(&params)
            .await
            .map_err(api(format!("list pods of node {}", self.node)))?;
        for pod in pods.items {
            // One pod the node may not read yet (the Node authorizer's graph learns of a binding a
            // moment after it happens) must not hold up the others.
            if let Err(e) = self.handle(client.clone(), pod).await {
                tracing::warn!(error = %e, "pod not handled; retried on the next pass");
            }
        }
        Ok(())
    }

    async fn handle(&mut self, client: Client, pod: Pod) -> Result<(), KubeletError> {
        let (Some(ns), Some(name), Some(uid)) = (
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
            pod.metadata.uid.clone(),
        ) else {
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() {
            confirm_deletion(client, &ns, &name, &uid).await?;
        } else if !self.started.contains(&uid) {
            let (source, ca_pem) = trust_bundle(client.clone(), &pod, &ns).await?;
            mark_running(client, &pod, &ns, &name).await?;
            self.record(PodRecord {
                namespace: ns,
                name,
                uid: uid.clone(),
                node: self.node.clone(),
                source,
                ca_pem,
            })?;
            self.started.insert(uid);
        }
        Ok(())
    }

    fn record(&self, record: PodRecord) -> Result<(), KubeletError> {
        tracing::info!(pod = %format!("{}/{}", record.namespace, record.name), source = %record.source, "pod started");
        let mut line = serde_json::to_string(&record).map_err(|e| KubeletError::Io {
            path: self.records.clone(),
            source: e.into(),
        })?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.records)
            .map_err(io(&self.records))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io(&self.records))
    }
}

/// The `ca.crt` the pod would mount: from a Secret volume (the service-account token Secret that
/// Kubernetes 1.20 mounts by default) or a projected ConfigMap (`kube-root-ca.crt`, the default
/// from 1.21). Read with the node's credentials: the Node authorizer allows it only for objects a
/// pod bound to this node references.
async fn trust_bundle(
    client: Client,
    pod: &Pod,
    ns: &str,
) -> Result<(String, Option<String>), KubeletError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in volumes {
        if let Some(name) = volume.secret.and_then(|s| s.secret_name) {
            let secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .map_err(api(format!("secret {ns}/{name}")))?;
            if let Some(ca) = secret.data.and_then(|mut d| d.remove(CA_KEY)) {
                let pem = String::from_utf8_lossy(&ca.0).into_owned();
                return Ok((format!("secret/{name}"), Some(pem)));
            }
        }
        let sources = volume.projected.and_then(|p| p.sources).unwrap_or_default();
        for name in sources
            .into_iter()
            .filter_map(|s| s.config_map?.name.into())
        {
            let map = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .map_err(api(format!("configmap {ns}/{name}")))?;
            if let Some(pem) = map.data.and_then(|mut d| d.remove(CA_KEY)) {
                return Ok((format!("configmap/{name}"), Some(pem)));
            }
        }
    }
    Ok(("none".to_owned(), None))
}

/// What a kubelet reports once the pod's containers run and pass their (absent) readiness probes.
async fn mark_running(client: Client, pod: &Pod, ns: &str, name: &str) -> Result<(), KubeletError> {
    let now = now_rfc3339();
    let containers: Vec<_> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image.unwrap_or_default(),
                "imageID": "",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    let status = json!({
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                condition("Initialized"),
                condition("Ready"),
                condition("ContainersReady"),
                condition("PodScheduled"),
            ],
            "containerStatuses": containers,
        }
    });
    Api::<Pod>::namespaced(client, ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map(drop)
        .map_err(api(format!("pod {ns}/{name} status")))
}

/// Finishes a graceful deletion; a pod already gone is fine.
async fn confirm_deletion(
    client: Client,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<(), KubeletError> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Pod>::namespaced(client, ns)
        .delete(name, &params)
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        other => other
            .map(drop)
            .map_err(api(format!("delete pod {ns}/{name}"))),
    }
}
