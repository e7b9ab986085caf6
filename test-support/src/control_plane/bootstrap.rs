//! What `kubeadm init` creates in the API that the tests rely on, and the wait for a usable cluster.
//!
//! - `kube-public/cluster-info`: the kubeconfig (CA data and server) that `kubeadm join` discovers the
//!   cluster through, readable by anyone (kubeadm's `kubeadm:bootstrap-signer-clusterinfo` Role and
//!   RoleBinding for `system:anonymous`).
//! - `kubeadm:node-autoapprove-certificate-rotation`: `system:nodes` may have their own client
//!   certificates renewed, which the controller-manager's CSR approver checks before approving.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ControlPlaneError;

fn api_error(what: &str) -> impl FnOnce(kube::Error) -> ControlPlaneError + '_ {
    move |e| ControlPlaneError::Api(format!("{what}: {e}"))
}

/// The `kubeconfig` of kubeadm's `cluster-info`: the cluster alone, no credentials.
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    let ca_data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca_pem);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n"
    )
}

/// Creates `value` (a `K` as JSON) unless an object of that name exists. Retries while the
/// namespace is not there yet (the API server creates `kube-public` a moment after it is ready).
async fn create<K>(api: Api<K>, value: serde_json::Value) -> Result<(), ControlPlaneError>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K =
        serde_json::from_value(value).map_err(|e| ControlPlaneError::Api(e.to_string()))?;
    let what = format!("create {:?}", object.meta().name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 && tokio::time::Instant::now() < deadline => {
            }
            Err(e) => return Err(api_error(&what)(e)),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates kubeadm's objects (see the module documentation).
pub async fn kubeadm_objects(
    client: Client,
    server: &str,
    ca_pem: &str,
) -> Result<(), ControlPlaneError> {
    const CLUSTER_INFO_ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";
    create(
        Api::<ConfigMap>::namespaced(client.clone(), "kube-public"),
        json!({
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": cluster_info_kubeconfig(server, ca_pem)},
        }),
    )
    .await?;
    create(
        Api::<Role>::namespaced(client.clone(), "kube-public"),
        json!({
            "metadata": {"name": CLUSTER_INFO_ROLE, "namespace": "kube-public"},
            "rules": [{
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["cluster-info"],
                "verbs": ["get"],
            }],
        }),
    )
    .await?;
    create(
        Api::<RoleBinding>::namespaced(client.clone(), "kube-public"),
        json!({
            "metadata": {"name": CLUSTER_INFO_ROLE, "namespace": "kube-public"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CLUSTER_INFO_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}],
        }),
    )
    .await?;
    create(
        Api::<ClusterRoleBinding>::all(client),
        json!({
            "metadata": {"name": "kubeadm:node-autoapprove-certificate-rotation"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
        }),
    )
    .await
}

/// Waits until every node in `nodes` is Ready and the controller-manager has made what a pod of the
/// `default` namespace needs: its ServiceAccount, that account's token Secret and `kube-root-ca.crt`.
pub async fn wait_ready(
    client: Client,
    nodes: &[&str],
    timeout: Duration,
) -> Result<(), ControlPlaneError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let missing = match missing_for_ready(client.clone(), nodes).await {
            Ok(None) => return Ok(()),
            Ok(Some(what)) => what,
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(ControlPlaneError::Api(format!(
                "the cluster was not ready within {timeout:?}: {missing}"
            )));
        }
        // The controllers and kubelets are other processes: the API is all there is to watch.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the cluster still lacks to be ready, if anything.
async fn missing_for_ready(client: Client, nodes: &[&str]) -> Result<Option<String>, kube::Error> {
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    for name in nodes {
        let ready = listed.items.iter().any(|n| {
            n.metadata.name.as_deref() == Some(name)
                && n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if !ready {
            return Ok(Some(format!("node {name} is not Ready")));
        }
    }
    let Some(account) = Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .get_opt("default")
        .await?
    else {
        return Ok(Some("no default ServiceAccount yet".to_owned()));
    };
    let has_token = account.secrets.iter().flatten().next().is_some();
    let tokens = Api::<Secret>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields("type=kubernetes.io/service-account-token"))
        .await?;
    if !has_token || tokens.items.is_empty() {
        return Ok(Some("no service-account token Secret yet".to_owned()));
    }
    if Api::<ConfigMap>::namespaced(client, "default")
        .get_opt("kube-root-ca.crt")
        .await?
        .is_none()
    {
        return Ok(Some("no kube-root-ca.crt yet".to_owned()));
    }
    Ok(None)
}
