//! The Kubernetes API served over a simulated cluster, driven by the real kubectl and by kube-rs: the
//! clients the operators and the agent's Kubernetes backend use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dc_agent::cluster::{RESTARTED_AT_ANNOTATION, UpdateStrategy, WorkloadKind};
use dc_agent::sim::{SimCluster, SimConfig, SimState, WorkloadSpec};
use dc_test_support::kube_api::KubeApi;
use dc_test_support::kubectl;
use serde_json::Value;

const ROLLING: UpdateStrategy = UpdateStrategy::RollingUpdate {
    max_unavailable: 1,
    max_surge: 0,
};

fn spec(
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    replicas: u32,
    strategy: UpdateStrategy,
    labels: &[(&str, &str)],
) -> WorkloadSpec {
    let mut spec = WorkloadSpec::new(kind, namespace, name, replicas, strategy);
    spec.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    spec
}

/// Every kind with both strategies; `web`, `api` and `cache` pods share labels only in part.
fn config() -> SimConfig {
    use WorkloadKind::*;
    SimConfig {
        controllers: 1,
        workers: 1,
        pod_ready_ms: 100,
        workloads: vec![
            spec(
                Deployment,
                "default",
                "web",
                3,
                UpdateStrategy::RollingUpdate {
                    max_unavailable: 0,
                    max_surge: 1,
                },
                &[("app", "web"), ("tier", "a")],
            ),
            spec(
                Deployment,
                "default",
                "api",
                2,
                ROLLING,
                &[("app", "api"), ("tier", "b")],
            ),
            spec(
                DaemonSet,
                "kube-system",
                "proxy",
                1,
                ROLLING,
                &[("app", "proxy")],
            ),
            spec(
                DaemonSet,
                "monitoring",
                "exporter",
                1,
                UpdateStrategy::OnDelete,
                &[("app", "exporter")],
            ),
            spec(
                StatefulSet,
                "default",
                "cache",
                2,
                ROLLING,
                &[("app", "web"), ("tier", "c")],
            ),
            spec(
                StatefulSet,
                "db",
                "pg",
                2,
                UpdateStrategy::OnDelete,
                &[("app", "pg")],
            ),
        ],
        ..SimConfig::light()
    }
}

/// A served simulated cluster and a kubeconfig for it.
struct Served {
    api: KubeApi,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(SimCluster::open(dir.path(), &config()).unwrap());
    let api = KubeApi::start(sim).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    Served {
        api,
        kubeconfig,
        _dir: dir,
    }
}

impl Served {
    /// Runs kubectl; fails the test when it is missing (never a silent pass).
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        kubectl(&self.kubeconfig, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs kubectl and returns its stdout, failing the test when kubectl fails.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, expects it to fail, and returns its stderr.
    fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    fn state(&self) -> SimState {
        self.api.sim().snapshot().unwrap()
    }
}

fn workload<'a>(state: &'a SimState, name: &str) -> &'a dc_agent::sim::SimWorkload {
    state
        .workloads
        .iter()
        .find(|w| w.spec.name == name)
        .unwrap()
}

#[test]
fn kubectl_lists_every_workload_as_json() {
    let s = serve();
    let out = s.kubectl_ok(&[
        "get",
        "deployments,daemonsets,statefulsets",
        "-A",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut found: Vec<(String, String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["metadata"]["namespace"].as_str().unwrap().to_owned(),
                i["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let mut expected: Vec<(String, String, String)> = config()
        .workloads
        .iter()
        .map(|w| (format!("{:?}", w.kind), w.namespace.clone(), w.name.clone()))
        .collect();
    expected.sort();
    assert_eq!(found, expected);

    let web: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "default",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(web["spec"]["selector"]["matchLabels"]["tier"], "a");
    assert_eq!(web["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    assert_eq!(web["status"]["availableReplicas"], 3);

    let namespaces = s.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["namespace/db", "namespace/default", "namespace/kube-system"] {
        assert!(namespaces.lines().any(|l| l == ns), "{namespaces}");
    }
}

#[test]
fn kubectl_rollout_restart_and_status_follow_the_model() {
    let s = serve();
    for (kind, namespace, name) in [
        ("deployment", "default", "web"),
        ("daemonset", "kube-system", "proxy"),
        ("statefulset", "default", "cache"),
    ] {
        let target = format!("{kind}/{name}");
        let out = s.kubectl_ok(&["rollout", "restart", &target, "-n", namespace]);
        assert!(out.contains("restarted"), "{out}");
        let state = s.state();
        let w = workload(&state, name);
        assert_eq!(w.restarts, 1, "{target}: the sim recorded the restart");
        assert!(w.template_annotations.contains_key(RESTARTED_AT_ANNOTATION));

        let out = s.kubectl_ok(&[
            "rollout",
            "status",
            &target,
            "-n",
            namespace,
            "--timeout=60s",
        ]);
        assert!(
            // A RollingUpdate StatefulSet (partition 0, as the API server defaults it) reports a
            // "partitioned roll out".
            out.contains("successfully rolled out") || out.contains("roll out complete"),
            "{target}: {out}"
        );
        let state = s.state();
        let w = workload(&state, name);
        assert!(
            w.pods.iter().all(|p| p.revision == w.revision),
            "{target}: every pod runs the new template when kubectl says complete"
        );
    }
}

#[test]
fn kubectl_selects_pods_by_label_expressions() {
    let s = serve();
    let names = |selector: &str| -> Vec<String> {
        let out = s.kubectl_ok(&["get", "pods", "-A", "-l", selector, "-o", "json"]);
        let list: Value = serde_json::from_str(&out).unwrap();
        let mut names: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let pods_of = |workloads: &[&str]| -> Vec<String> {
        let mut names: Vec<String> = s
            .state()
            .workloads
            .iter()
            .filter(|w| workloads.contains(&w.spec.name.as_str()))
            .flat_map(|w| w.pods.iter().map(|p| p.name.clone()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("app=web,tier in (a,b)"), pods_of(&["web"]));
    assert_eq!(names("tier in (a,b)"), pods_of(&["web", "api"]));
    assert_eq!(names("app=web,tier!=a"), pods_of(&["cache"]));
    assert_eq!(names("tier,app notin (web)"), pods_of(&["api"]));
    assert_eq!(names("!tier"), pods_of(&["proxy", "exporter", "pg"]));

    let err = s.kubectl_err(&["get", "pods", "-A", "-l", "tier in (a"]);
    assert!(!err.is_empty());
}

#[test]
fn kubectl_delete_pod_of_an_on_delete_workload_gets_it_replaced() {
    let s = serve();
    s.kubectl_ok(&["rollout", "restart", "statefulset/pg", "-n", "db"]);
    let state = s.state();
    let before = workload(&state, "pg");
    assert!(
        before.pods.iter().all(|p| p.revision == 1),
        "OnDelete waits for deletions"
    );

    let out = s.kubectl_ok(&["delete", "pod", "pg-1", "-n", "db"]);
    assert!(out.contains("pod \"pg-1\" deleted"), "{out}");
    let state = s.state();
    let after = workload(&state, "pg");
    assert_eq!(after.pods_deleted, 1);
    let replaced = after.pods.iter().find(|p| p.name == "pg-1").unwrap();
    assert_eq!(
        replaced.revision, after.revision,
        "recreated from the new template"
    );

    let err = s.kubectl_err(&["delete", "pod", "pg-7", "-n", "db"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn requests_without_the_token_are_unauthorized() {
    let s = serve();
    let err = s.kubectl_err(&["--token", "wrong", "get", "pods", "-A"]);
    // kubectl's wording of a 401.
    assert!(err.contains("provide credentials"), "{err}");
}

#[test]
fn patches_beyond_template_annotations_are_refused() {
    let s = serve();
    let err = s.kubectl_err(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "default",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    assert!(
        err.contains("is invalid") && err.contains("spec.replicas"),
        "{err}"
    );
    let err = s.kubectl_err(&[
        "patch",
        "deployment",
        "web",
        "-n",
        "default",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
    ]);
    assert!(err.contains("unknown format"), "{err}");
    assert_eq!(workload(&s.state(), "web").generation, 1, "nothing applied");

    // Writes the model cannot take are refused too.
    let err = s.kubectl_err(&[
        "replace",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web",
        "-f",
        "/dev/null",
    ]);
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allow"),
        "{err}"
    );

    // Writes the model cannot take are refused too.
    let err = s.kubectl_err(&[
        "replace",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web",
        "-f",
        "/dev/null",
    ]);
    assert!(err.contains("does not allow this method"), "{err}");

    let err = s.kubectl_err(&[
        "patch",
        "deployment",
        "nope",
        "-n",
        "default",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"a":"b"}}}}}"#,
    ]);
    assert!(err.contains("not found"), "{err}");
}

mod kube_rs {
    use super::*;
    use futures::TryStreamExt;
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::runtime::wait::await_condition;
    use kube::runtime::watcher;
    use serde_json::json;

    async fn config(api: &KubeApi) -> kube::Config {
        dc_protocol::tls::install_default_provider();
        let kubeconfig = Kubeconfig::from_yaml(&api.kubeconfig()).unwrap();
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap()
    }

    async fn client(api: &KubeApi) -> kube::Client {
        kube::Client::try_from(config(api).await).unwrap()
    }

    #[tokio::test]
    async fn kube_client_without_the_token_is_unauthorized() {
        let s = serve();
        let mut config = config(&s.api).await;
        config.auth_info.token = None;
        let pods: Api<Pod> = Api::all(kube::Client::try_from(config).unwrap());
        match pods.list(&ListParams::default()).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 401);
                assert_eq!(e.reason, "Unauthorized");
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    fn annotation(d: &Deployment) -> Option<String> {
        d.spec
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(RESTARTED_AT_ANNOTATION)
            .cloned()
    }

    #[tokio::test]
    async fn kube_client_lists_patches_watches_and_deletes() {
        let s = serve();
        let client = client(&s.api).await;

        let all: Api<Deployment> = Api::all(client.clone());
        let names: Vec<String> = all
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect();
        assert_eq!(names, ["web", "api"]);
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "db");
        assert_eq!(
            sets.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
        let daemons: Api<DaemonSet> = Api::all(client.clone());
        assert_eq!(
            daemons
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            2
        );

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let patched = deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"metadata": {"annotations": {
                    RESTARTED_AT_ANNOTATION: "strategic"}}}}})),
            )
            .await
            .unwrap();
        assert_eq!(annotation(&patched).as_deref(), Some("strategic"));
        assert_eq!(patched.metadata.generation, Some(2));
        let patched = deployments
            .patch(
                "api",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                    RESTARTED_AT_ANNOTATION: "merge"}}}}})),
            )
            .await
            .unwrap();
        assert_eq!(annotation(&patched).as_deref(), Some("merge"));
        assert_eq!(workload(&s.state(), "api").restarts, 1);

        // The watch behind await_condition sees the rollout complete.
        let complete = |d: Option<&Deployment>| {
            d.and_then(|d| {
                let status = d.status.as_ref()?;
                let replicas = d.spec.replicas?;
                Some(
                    status.observed_generation >= d.metadata.generation
                        && status.updated_replicas == Some(replicas)
                        && status.replicas == Some(replicas)
                        && status.available_replicas == Some(replicas),
                )
            })
            .unwrap_or(false)
        };
        let done = tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(deployments.clone(), "web", complete),
        )
        .await
        .expect("the rollout completes")
        .unwrap()
        .unwrap();
        assert_eq!(done.status.unwrap().updated_replicas, Some(3));
        let state = s.state();
        let web = workload(&state, "web");
        assert!(web.pods.iter().all(|p| p.revision == web.revision));

        let pods: Api<Pod> = Api::all(client.clone());
        let selected = pods
            .list(&ListParams::default().labels("app=web,tier in (a,b)"))
            .await
            .unwrap();
        assert_eq!(selected.items.len(), 3);
        assert!(
            selected
                .items
                .iter()
                .all(|p| p.metadata.labels.as_ref().unwrap()["tier"] == "a")
        );

        let db_pods: Api<Pod> = Api::namespaced(client.clone(), "db");
        let deleted = db_pods
            .delete("pg-0", &DeleteParams::default())
            .await
            .unwrap();
        let gone = deleted.left().expect("the deleted pod is returned");
        let replaced = db_pods.get("pg-0").await.unwrap();
        assert_ne!(replaced.metadata.uid, gone.metadata.uid, "a new pod");
        assert_eq!(workload(&s.state(), "pg").pods_deleted, 1);

        // A watcher's initial listing sees every pod, whether it lists then watches or asks the
        // watch for initial events (sendInitialEvents).
        for config in [
            watcher::Config::default(),
            watcher::Config::default().streaming_lists(),
        ] {
            let initial = watcher(db_pods.clone(), config)
                .try_take_while(|e| std::future::ready(Ok(!matches!(e, watcher::Event::InitDone))))
                .try_collect::<Vec<_>>()
                .await
                .unwrap();
            let listed = initial
                .iter()
                .filter(|e| matches!(e, watcher::Event::InitApply(_)))
                .count();
            assert_eq!(listed, 2);
        }

        match deployments.get("nope").await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 404);
                assert_eq!(e.reason, "NotFound");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        match deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": true}})),
            )
            .await
        {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
