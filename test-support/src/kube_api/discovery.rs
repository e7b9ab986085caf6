//! API discovery: what kubectl and kube-rs read to map `deployments`, `deploy` or `pods` onto URLs.
//!
//! Only the legacy (unaggregated) documents are served. kubectl asks for aggregated discovery in its
//! Accept header but takes a plain `application/json` answer as "not supported" and falls back to
//! `/api/v1` and `/apis/apps/v1`.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use k8s_openapi::apimachinery::pkg::version::Info;

/// The Kubernetes version the server claims: the one whose clients the tests use.
pub fn version() -> Info {
    Info {
        major: "1".to_owned(),
        minor: "32".to_owned(),
        git_version: "v1.32.0-dc-sim".to_owned(),
        git_commit: "0000000000000000000000000000000000000000".to_owned(),
        git_tree_state: "clean".to_owned(),
        build_date: "2026-01-01T00:00:00Z".to_owned(),
        go_version: "go1.23".to_owned(),
        compiler: "gc".to_owned(),
        platform: "linux/amd64".to_owned(),
        ..Info::default()
    }
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> APIVersions {
    APIVersions {
        versions: vec!["v1".to_owned()],
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".to_owned(),
            server_address: server_address.to_owned(),
        }],
    }
}

/// `/apis`: the named groups (only `apps`).
pub fn groups() -> APIGroupList {
    let apps_v1 = GroupVersionForDiscovery {
        group_version: "apps/v1".to_owned(),
        version: "v1".to_owned(),
    };
    APIGroupList {
        groups: vec![APIGroup {
            name: "apps".to_owned(),
            versions: vec![apps_v1.clone()],
            preferred_version: Some(apps_v1),
            server_address_by_client_cidrs: None,
        }],
    }
}

fn resource<K: Resource>(
    singular: &str,
    namespaced: bool,
    verbs: &[&str],
    short_names: &[&str],
) -> APIResource {
    let strings = |s: &[&str]| s.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
    APIResource {
        name: K::URL_PATH_SEGMENT.to_owned(),
        singular_name: singular.to_owned(),
        namespaced,
        kind: K::KIND.to_owned(),
        verbs: strings(verbs),
        short_names: (!short_names.is_empty()).then(|| strings(short_names)),
        categories: namespaced.then(|| vec!["all".to_owned()]),
        ..APIResource::default()
    }
}

/// `/api/v1`.
pub fn core_v1() -> APIResourceList {
    APIResourceList {
        group_version: "v1".to_owned(),
        resources: vec![
            resource::<ConfigMap>(
                "configmap",
                true,
                &["get", "list", "patch", "watch"],
                &["cm"],
            ),
            resource::<Namespace>("namespace", false, &["get", "list", "watch"], &["ns"]),
            resource::<Node>("node", false, &["get", "list"], &["no"]),
            resource::<Pod>("pod", true, &["delete", "get", "list", "watch"], &["po"]),
            resource::<Secret>("secret", true, &["list"], &[]),
        ],
    }
}

/// `/apis/apps/v1`.
pub fn apps_v1() -> APIResourceList {
    let verbs = ["get", "list", "patch", "watch"];
    APIResourceList {
        group_version: "apps/v1".to_owned(),
        resources: vec![
            resource::<DaemonSet>("daemonset", true, &verbs, &["ds"]),
            resource::<Deployment>("deployment", true, &verbs, &["deploy"]),
            resource::<StatefulSet>("statefulset", true, &verbs, &["sts"]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_kinds_and_resources() {
        let apps = serde_json::to_value(apps_v1()).unwrap();
        assert_eq!(apps["kind"], "APIResourceList");
        assert_eq!(apps["groupVersion"], "apps/v1");
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["daemonsets", "deployments", "statefulsets"]);
        let groups = serde_json::to_value(groups()).unwrap();
        assert_eq!(groups["kind"], "APIGroupList");
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        let core = serde_json::to_value(core_v1()).unwrap();
        let kinds: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Namespace", "Node", "Pod", "Secret"]);
        assert_eq!(core["resources"][1]["namespaced"], false);
    }
}
