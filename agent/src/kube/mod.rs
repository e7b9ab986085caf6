//! The real-cluster backend: workloads and pods through the Kubernetes API (kube-rs), host files and
//! component restarts on the configured hosts ([`host`]).
//!
//! One agent serves a subcloud (one agent certificate per subcloud): it runs on the first controller,
//! acts on that host's files directly and reaches the other hosts through their `via` command prefix.
//!
//! Every API call is retried with capped exponential backoff while the API server is unreachable or
//! answers 429/5xx (it restarts during the host phases) for at most `api_retry_secs`; the client is
//! rebuilt whenever its kubeconfig changes (the update rewrites admin.conf's CA and credentials).
//! Rollouts are polled by the update at `pods.poll_ms`, never in a tight loop.

pub mod config;
pub mod host;
pub mod objects;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use ::kube::{Client, Resource};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node as KubeNode, Pod as KubePod, Secret};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

pub use config::{HealthCommands, HostConfig, KubernetesConfig, RestartCommands};
pub use host::{HostAccess, HostError};

use crate::cluster::{
    Cluster, ClusterError, Component, Host, HostFile, LabelSelector, Node, Pod, PublishedBundle,
    Workload, WorkloadKind, WorkloadRef,
};
use objects::ObjectError;

/// The field manager the agent's patches are recorded under.
const FIELD_MANAGER: &str = "dc-rootca-agent";
/// Items per list page, so a large cluster never arrives in one response.
const PAGE: u32 = 500;
/// Where kubeadm publishes its join discovery kubeconfig.
const CLUSTER_INFO: (&str, &str) = ("kube-public", "cluster-info");
/// Where the in-cluster service account's CA bundle is mounted (watched like a kubeconfig).
const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Errors of the Kubernetes backend.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("Kubernetes API client: {0}")]
    Client(String),
    #[error("Kubernetes API: {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ::kube::Error,
    },
    #[error("Kubernetes API: {what}: still failing after {waited:?}: {source}")]
    Unavailable {
        what: String,
        waited: Duration,
        #[source]
        source: ::kube::Error,
    },
    #[error("Kubernetes API: {0}")]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("no host {0} in the agent's configuration")]
    UnknownHost(String),
    #[error("the agent's configuration lists no host")]
    NoHosts,
}

/// Whether an API error is worth retrying: the server is unreachable, overloaded or restarting.
fn transient(e: &::kube::Error) -> bool {
    match e {
        ::kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The API client and the file it was built from.
struct CachedClient {
    source: String,
    client: Client,
}

/// A real subcloud.
pub struct KubeCluster {
    kubeconfig: Option<PathBuf>,
    client: Mutex<CachedClient>,
    hosts: Vec<HostAccess>,
    restart: RestartCommands,
    health: HealthCommands,
    api_retry: Duration,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("kubeconfig", &self.kubeconfig)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// Builds the API client and the host accessors; reaches nothing yet (the start precheck does).
    pub async fn connect(config: &KubernetesConfig) -> Result<Self, KubeError> {
        if config.hosts.is_empty() {
            return Err(KubeError::NoHosts);
        }
        let timeout = Duration::from_secs(config.command_timeout_secs.max(1));
        let (source, client) = build_client(config.kubeconfig.as_deref()).await?;
        Ok(Self {
            kubeconfig: config.kubeconfig.clone(),
            client: Mutex::new(CachedClient { source, client }),
            hosts: config
                .hosts
                .iter()
                .map(|h| HostAccess::new(h, timeout))
                .collect(),
            restart: config.restart.clone(),
            health: config.health.clone(),
            api_retry: Duration::from_secs(config.api_retry_secs),
        })
    }

    /// The API client, rebuilt first when its kubeconfig (or in-cluster CA) changed on disk.
    async fn client(&self) -> Result<Client, KubeError> {
        let watched = self
            .kubeconfig
            .clone()
            .unwrap_or_else(|| PathBuf::from(IN_CLUSTER_CA));
        let current = tokio::fs::read_to_string(&watched)
            .await
            .unwrap_or_default();
        {
            let cached = self.client.lock().unwrap_or_else(|p| p.into_inner());
            if cached.source == current {
                return Ok(cached.client.clone());
            }
        }
        info!(file = %watched.display(), "API credentials changed; reconnecting");
        let (source, client) = build_client(self.kubeconfig.as_deref()).await?;
        let mut cached = self.client.lock().unwrap_or_else(|p| p.into_inner());
        *cached = CachedClient {
            source,
            client: client.clone(),
        };
        Ok(client)
    }

    /// Runs an API call, retrying transient failures with capped exponential backoff.
    async fn call<T, F, Fut>(&self, what: impl Fn() -> String, f: F) -> Result<T, KubeError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ::kube::Error>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match f(self.client().await?).await {
                Ok(value) => return Ok(value),
                Err(e) if transient(&e) => {
                    let waited = started.elapsed();
                    if waited >= self.api_retry {
                        return Err(KubeError::Unavailable {
                            what: what(),
                            waited,
                            source: e,
                        });
                    }
                    debug!(what = what(), error = %e, ?delay, "API call failed; retrying");
                    tokio::time::sleep(delay.min(self.api_retry.saturating_sub(waited))).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(source) => {
                    return Err(KubeError::Api {
                        what: what(),
                        source,
                    });
                }
            }
        }
    }

    /// Every object of a kind in every namespace, page by page.
    async fn list_all<K>(&self, what: &str, params: ListParams) -> Result<Vec<K>, KubeError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.list_in(None, what, params).await
    }

    async fn list_in<K>(
        &self,
        namespace: Option<&str>,
        what: &str,
        params: ListParams,
    ) -> Result<Vec<K>, KubeError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page = params.clone().limit(PAGE);
            if let Some(t) = &token {
                page = page.continue_token(t);
            }
            let list = self
                .call(
                    || format!("list {what}"),
                    |client| {
                        let page = page.clone();
                        async move {
                            let api: Api<K> = match namespace {
                                Some(ns) => Api::namespaced(client, ns),
                                None => Api::all(client),
                            };
                            api.list(&page).await
                        }
                    },
                )
                .await?;
            items.extend(list.items);
            token = list.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    fn host(&self, name: &str) -> Result<&HostAccess, KubeError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| KubeError::UnknownHost(name.to_owned()))
    }

    /// One workload as the API has it, `K` being the type of its kind.
    async fn get<K>(&self, id: &WorkloadRef) -> Result<K, KubeError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let (ns, name) = (id.namespace.as_str(), id.name.as_str());
        self.call(
            || format!("get {id}"),
            |c| async move { Api::<K>::namespaced(c, ns).get(name).await },
        )
        .await
    }

    /// Applies `patch` to one workload, `K` being the type of its kind.
    async fn patch<K>(
        &self,
        id: &WorkloadRef,
        patch: &Patch<serde_json::Value>,
    ) -> Result<(), KubeError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let (ns, name, params) = (id.namespace.as_str(), id.name.as_str(), &params);
        self.call(
            || format!("patch {id}"),
            |c| async move {
                Api::<K>::namespaced(c, ns)
                    .patch(name, params, patch)
                    .await
                    .map(drop)
            },
        )
        .await
    }
}

impl From<KubeError> for ClusterError {
    fn from(error: KubeError) -> Self {
        ClusterError::new(error)
    }
}

impl Cluster for KubeCluster {
    async fn hosts(&self) -> Result<Vec<Host>, ClusterError> {
        Ok(self
            .hosts
            .iter()
            .map(|h| Host {
                name: h.name.clone(),
                role: h.role,
            })
            .collect())
    }

    async fn check_host(&self, host: &str) -> Result<(), ClusterError> {
        Ok(self.host(host)?.check().await.map_err(KubeError::from)?)
    }

    async fn read_file(&self, host: &str, file: HostFile) -> Result<Option<String>, ClusterError> {
        Ok(self.host(host)?.read(file).await.map_err(KubeError::from)?)
    }

    async fn read_backup(
        &self,
        host: &str,
        file: HostFile,
    ) -> Result<Option<String>, ClusterError> {
        Ok(self
            .host(host)?
            .read_backup(file)
            .await
            .map_err(KubeError::from)?)
    }

    async fn remove_backup(&self, host: &str, file: HostFile) -> Result<(), ClusterError> {
        Ok(self
            .host(host)?
            .remove_backup(file)
            .await
            .map_err(KubeError::from)?)
    }

    async fn write_file(
        &self,
        host: &str,
        file: HostFile,
        contents: &str,
    ) -> Result<(), ClusterError> {
        let host = self.host(host)?;
        Ok(host.write(file, contents).await.map_err(KubeError::from)?)
    }

    async fn remove_file(&self, host: &str, file: HostFile) -> Result<(), ClusterError> {
        Ok(self
            .host(host)?
            .remove(file)
            .await
            .map_err(KubeError::from)?)
    }

    async fn restart_component(
        &self,
        host: &str,
        component: Component,
    ) -> Result<(), ClusterError> {
        let command = self.restart.of(component);
        info!(host, %component, command, "restarting");
        let host = self.host(host)?;
        Ok(host.run_command(command).await.map_err(KubeError::from)?)
    }

    async fn check_component(&self, host: &str, component: Component) -> Result<(), ClusterError> {
        let command = self.health.of(component);
        let host = self.host(host)?;
        if command.trim().is_empty() {
            return Ok(());
        }
        Ok(host.run_command(command).await.map_err(KubeError::from)?)
    }

    async fn cluster_info(&self) -> Result<Option<String>, ClusterError> {
        let (ns, name) = CLUSTER_INFO;
        let map = self
            .call(
                || format!("get ConfigMap {ns}/{name}"),
                |c| async move { Api::<ConfigMap>::namespaced(c, ns).get_opt(name).await },
            )
            .await?;
        Ok(map
            .and_then(|m| m.data)
            .and_then(|mut data| data.remove("kubeconfig")))
    }

    async fn set_cluster_info(&self, kubeconfig: &str) -> Result<(), ClusterError> {
        let (ns, name) = CLUSTER_INFO;
        let patch = Patch::Merge(serde_json::json!({ "data": { "kubeconfig": kubeconfig } }));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let (patch, params) = (&patch, &params);
        self.call(
            || format!("patch ConfigMap {ns}/{name}"),
            |c| async move {
                Api::<ConfigMap>::namespaced(c, ns)
                    .patch(name, params, patch)
                    .await
                    .map(drop)
            },
        )
        .await?;
        info!("{ns}/{name}: join discovery CA updated");
        Ok(())
    }

    /// Every namespace's `kube-root-ca.crt` and every legacy service-account token Secret's `ca.crt`
    /// (what pods mount before Kubernetes 1.21's projected tokens), selected on the server.
    async fn published_bundles(&self) -> Result<Vec<PublishedBundle>, ClusterError> {
        let maps: Vec<ConfigMap> = self
            .list_all(
                "kube-root-ca.crt ConfigMaps",
                ListParams::default().fields("metadata.name=kube-root-ca.crt"),
            )
            .await?;
        let secrets: Vec<Secret> = self
            .list_all(
                "service-account token Secrets",
                ListParams::default().fields("type=kubernetes.io/service-account-token"),
            )
            .await?;
        let place =
            |kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                format!(
                    "{kind} {}/{}",
                    meta.namespace.as_deref().unwrap_or(""),
                    meta.name.as_deref().unwrap_or("")
                )
            };
        let mut bundles: Vec<PublishedBundle> = maps
            .iter()
            .map(|m| PublishedBundle {
                place: place("ConfigMap", &m.metadata),
                ca_pem: m
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        bundles.extend(secrets.iter().map(|s| {
            PublishedBundle {
                place: place("Secret", &s.metadata),
                ca_pem: s
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default(),
            }
        }));
        Ok(bundles)
    }

    async fn list_workloads(&self, exclude: &[String]) -> Result<Vec<Workload>, ClusterError> {
        let params = ListParams::default();
        let mut workloads = Vec::new();
        for d in self
            .list_all::<Deployment>("deployments", params.clone())
            .await?
        {
            workloads.push(objects::deployment(&d).map_err(KubeError::from)?);
        }
        for ds in self
            .list_all::<DaemonSet>("daemonsets", params.clone())
            .await?
        {
            workloads.push(objects::daemon_set(&ds).map_err(KubeError::from)?);
        }
        for ss in self.list_all::<StatefulSet>("statefulsets", params).await? {
            workloads.push(objects::stateful_set(&ss).map_err(KubeError::from)?);
        }
        workloads.retain(|w| !exclude.contains(&w.id.namespace));
        Ok(workloads)
    }

    async fn get_workload(&self, id: &WorkloadRef) -> Result<Workload, ClusterError> {
        let workload = match id.kind {
            WorkloadKind::Deployment => objects::deployment(&self.get::<Deployment>(id).await?),
            WorkloadKind::DaemonSet => objects::daemon_set(&self.get::<DaemonSet>(id).await?),
            WorkloadKind::StatefulSet => objects::stateful_set(&self.get::<StatefulSet>(id).await?),
        };
        Ok(workload.map_err(KubeError::from)?)
    }

    /// The strategic merge patch `kubectl rollout restart` sends (kube's own `restart()` writes
    /// another annotation key, which operators and kubectl would not recognise).
    async fn patch_template_annotation(
        &self,
        id: &WorkloadRef,
        key: &str,
        value: &str,
    ) -> Result<(), ClusterError> {
        let patch = Patch::Strategic(objects::template_annotation_patch(key, value));
        match id.kind {
            WorkloadKind::Deployment => self.patch::<Deployment>(id, &patch).await?,
            WorkloadKind::DaemonSet => self.patch::<DaemonSet>(id, &patch).await?,
            WorkloadKind::StatefulSet => self.patch::<StatefulSet>(id, &patch).await?,
        }
        info!(workload = %id, key, value, "pod template annotated");
        Ok(())
    }

    async fn list_pods(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Pod>, ClusterError> {
        let params = ListParams::default().labels(&objects::selector_query(selector));
        let pods: Vec<KubePod> = self
            .list_in(Some(namespace), &format!("pods in {namespace}"), params)
            .await?;
        Ok(pods.iter().map(objects::pod).collect())
    }

    /// Deletes a pod; one already gone is fine (a resumed phase may delete it again).
    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let result = self
            .call(
                || format!("delete pod {namespace}/{name}"),
                |c| async move {
                    Api::<KubePod>::namespaced(c, namespace)
                        .delete(name, &DeleteParams::default())
                        .await
                        .map(drop)
                },
            )
            .await;
        match result {
            Err(KubeError::Api {
                source: ::kube::Error::Api(status),
                ..
            }) if status.is_not_found() => {
                warn!(namespace, name, "pod already gone");
                Ok(())
            }
            other => Ok(other?),
        }
    }

    async fn all_pods(&self) -> Result<Vec<Pod>, ClusterError> {
        let pods: Vec<KubePod> = self.list_all("pods", ListParams::default()).await?;
        Ok(pods.iter().map(objects::pod).collect())
    }

    /// One page is enough: a subcloud has tens of nodes, not thousands.
    async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        let nodes = self
            .call(
                || "list nodes".to_owned(),
                |client| async move {
                    Api::<KubeNode>::all(client)
                        .list(&ListParams::default())
                        .await
                },
            )
            .await?;
        Ok(nodes.items.iter().map(objects::node).collect())
    }

    fn phase_delay(&self, _phase: dc_protocol::Phase) -> Duration {
        Duration::ZERO
    }
}

/// Reads the kubeconfig (or the in-cluster configuration) and builds a client. Returns the watched
/// file's text with it, to notice later changes.
async fn build_client(kubeconfig: Option<&std::path::Path>) -> Result<(String, Client), KubeError> {
    let (source, config) = match kubeconfig {
        Some(path) => {
            let err = |reason: String| KubeError::Kubeconfig {
                path: path.to_owned(),
                reason,
            };
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| err(e.to_string()))?;
            let parsed =
                ::kube::config::Kubeconfig::from_yaml(&text).map_err(|e| err(e.to_string()))?;
            let config = ::kube::Config::from_custom_kubeconfig(
                parsed,
                &::kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| err(e.to_string()))?;
            (text, config)
        }
        None => {
            let config =
                ::kube::Config::incluster().map_err(|e| KubeError::InCluster(e.to_string()))?;
            let ca = tokio::fs::read_to_string(IN_CLUSTER_CA)
                .await
                .unwrap_or_default();
            (ca, config)
        }
    };
    let client = Client::try_from(config).map_err(|e| KubeError::Client(e.to_string()))?;
    Ok((source, client))
}
