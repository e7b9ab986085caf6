//! ConfigMaps and Secrets as far as a root CA update reads them: every namespace's `kube-root-ca.crt`
//! (the bundle the simulated controller-manager publishes) and kubeadm's `kube-public/cluster-info`,
//! which a merge patch of `data.kubeconfig` replaces. The model has no token Secrets: their list is
//! empty, as on a cluster with projected service-account tokens only.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use dc_agent::cluster::Cluster;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::objects::{Epoch, Served, uid};
use super::routes::{Shared, WriteQuery, patch_body};
use super::status::ApiError;
use super::view::ApiView;

/// Where kubeadm keeps its join discovery kubeconfig.
const CLUSTER_INFO: (&str, &str) = ("kube-public", "cluster-info");

fn config_map(namespace: &str, name: &str, key: &str, value: &str, epoch: Epoch) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            uid: Some(uid(&["ConfigMap", namespace, name])),
            creation_timestamp: Some(epoch.time(0)),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..ConfigMap::default()
    }
}

impl Served for ConfigMap {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        let mut maps: Vec<ConfigMap> = view
            .namespaces
            .iter()
            .map(|ns| {
                config_map(
                    ns,
                    "kube-root-ca.crt",
                    "ca.crt",
                    &view.published_bundle,
                    epoch,
                )
            })
            .collect();
        if let Some(kubeconfig) = &view.cluster_info {
            let (ns, name) = CLUSTER_INFO;
            maps.push(config_map(ns, name, "kubeconfig", kubeconfig, epoch));
        }
        maps
    }
}

impl Served for Secret {
    fn from_view(_: &ApiView, _: Epoch) -> Vec<Self> {
        Vec::new()
    }
}

/// A merge patch of `kube-public/cluster-info`'s `data.kubeconfig`; every other write is refused.
pub async fn patch_config_map(
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
    query: web::Query<WriteQuery>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name) = path.into_inner();
    shared.get::<ConfigMap>(Some(&namespace), &name).await?;
    if (namespace.as_str(), name.as_str()) != CLUSTER_INFO {
        return Err(ApiError::MethodNotAllowed);
    }
    let patch = patch_body(&req, &query, &body)?;
    let kubeconfig = patch
        .pointer("/data/kubeconfig")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            ApiError::BadRequest("only data.kubeconfig of cluster-info can be patched".into())
        })?;
    shared.sim.set_cluster_info(kubeconfig).await?;
    Ok(HttpResponse::Ok().json(shared.get::<ConfigMap>(Some(&namespace), &name).await?))
}
