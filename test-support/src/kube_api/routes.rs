//! The actix-web handlers: bearer-token authentication, discovery, and list/get/watch/patch/delete per
//! resource, each reading the simulated cluster afresh (reads advance its rollouts).

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use dc_agent::cluster::{Cluster, LabelSelector};
use dc_agent::rollout::selector_matches;
use dc_agent::sim::SimCluster;
use k8s_openapi::List;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::Deserialize;

use super::config_maps::patch_config_map;
use super::objects::{Epoch, Served, ServedWorkload, workload_ref};
use super::patch::{PatchType, template_annotations};
use super::selector::{FieldSelector, parse_labels};
use super::status::{ApiError, Target};
use super::versions::ResourceVersions;
use super::view::ApiView;
use super::{discovery, watch};

/// The longest a watch stays open; clients re-watch from the last version they saw.
const MAX_WATCH: Duration = Duration::from_secs(60);

/// What every handler shares.
#[derive(Debug)]
pub struct Shared {
    pub sim: Arc<SimCluster>,
    pub epoch: Epoch,
    pub versions: ResourceVersions,
    pub token: String,
    /// `127.0.0.1:PORT`, announced in `/api`.
    pub address: String,
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches<K: Served>(&self, object: &K) -> bool {
        let meta = object.metadata();
        let name = meta.name.as_deref().unwrap_or("");
        let namespace = meta.namespace.as_deref();
        let no_labels = Default::default();
        self.namespace
            .as_deref()
            .is_none_or(|ns| namespace == Some(ns))
            && self.name.as_deref().is_none_or(|n| n == name)
            && self.fields.matches(name, namespace)
            && selector_matches(&self.labels, meta.labels.as_ref().unwrap_or(&no_labels))
    }
}

impl Shared {
    /// The selected objects of a kind, stamped with versions, and the list's version.
    pub async fn list<K: Served>(&self, filter: &Filter) -> Result<(Vec<K>, u64), ApiError> {
        let view = ApiView::read(&self.sim)?;
        let mut objects: Vec<K> = K::from_view(&view, self.epoch)
            .into_iter()
            .filter(|o| filter.matches(o))
            .collect();
        let version = self.versions.stamp(&mut objects);
        Ok((objects, version))
    }

    pub async fn get<K: Served>(&self, namespace: Option<&str>, name: &str) -> Result<K, ApiError> {
        let filter = Filter {
            namespace: namespace.map(str::to_owned),
            name: Some(name.to_owned()),
            ..Filter::default()
        };
        let (objects, _) = self.list::<K>(&filter).await?;
        objects
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::NotFound(target::<K>(name)))
    }
}

fn target<K: Served>(name: &str) -> Target {
    Target {
        resource: K::URL_PATH_SEGMENT,
        group: K::GROUP,
        kind: K::KIND,
        name: name.to_owned(),
    }
}

/// Rejects every request without the server's bearer token, with a 401 `Status`.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let token = req
        .app_data::<web::Data<Shared>>()
        .map(|s| s.token.as_str());
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_none() || presented != token {
        return Err(ApiError::Unauthorized.into());
    }
    next.call(req).await
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/version",
        web::get().to(|| async { HttpResponse::Ok().json(discovery::version()) }),
    )
    .route(
        "/api",
        web::get().to(|s: web::Data<Shared>| async move {
            HttpResponse::Ok().json(discovery::core_versions(&s.address))
        }),
    )
    .route(
        "/apis",
        web::get().to(|| async { HttpResponse::Ok().json(discovery::groups()) }),
    )
    .route(
        "/api/v1",
        web::get().to(|| async { HttpResponse::Ok().json(discovery::core_v1()) }),
    )
    .route(
        "/apis/apps/v1",
        web::get().to(|| async { HttpResponse::Ok().json(discovery::apps_v1()) }),
    )
    .route("/api/v1/nodes", web::get().to(list_all::<Node>))
    .route("/api/v1/nodes/{name}", web::get().to(get_cluster::<Node>))
    .route("/api/v1/namespaces", web::get().to(list_all::<Namespace>))
    .route(
        "/api/v1/namespaces/{name}",
        web::get().to(get_cluster::<Namespace>),
    )
    .route("/api/v1/pods", web::get().to(list_all::<Pod>))
    .route(
        "/api/v1/namespaces/{ns}/pods",
        web::get().to(list_in::<Pod>),
    )
    .service(
        web::resource("/api/v1/namespaces/{ns}/pods/{name}")
            .route(web::get().to(get::<Pod>))
            .route(web::delete().to(delete_pod))
            .default_service(web::to(method_not_allowed)),
    );
    cfg.route("/api/v1/configmaps", web::get().to(list_all::<ConfigMap>))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            web::get().to(list_in::<ConfigMap>),
        )
        .service(
            web::resource("/api/v1/namespaces/{ns}/configmaps/{name}")
                .route(web::get().to(get::<ConfigMap>))
                .route(web::patch().to(patch_config_map))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/api/v1/secrets", web::get().to(list_all::<Secret>));
    workload_routes::<Deployment>(cfg);
    workload_routes::<DaemonSet>(cfg);
    workload_routes::<StatefulSet>(cfg);
    cfg.default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::NoRoute)
    }));
}

/// Writes the model cannot take (PUT, POST, ...): refused with a `Status`, not an empty 405.
async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

fn workload_routes<K: ServedWorkload>(cfg: &mut web::ServiceConfig) {
    let plural = K::URL_PATH_SEGMENT;
    cfg.route(
        &format!("/apis/apps/v1/{plural}"),
        web::get().to(list_all::<K>),
    )
    .route(
        &format!("/apis/apps/v1/namespaces/{{ns}}/{plural}"),
        web::get().to(list_in::<K>),
    )
    .service(
        web::resource(format!("/apis/apps/v1/namespaces/{{ns}}/{plural}/{{name}}"))
            .route(web::get().to(get::<K>))
            .route(web::patch().to(patch::<K>))
            .default_service(web::to(method_not_allowed)),
    );
}

/// The query of a list or watch (other parameters, such as `limit`, are accepted and ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
    field_selector: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
    send_initial_events: Option<String>,
}

fn truthy(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1"))
}

async fn list_all<K: Served>(
    shared: web::Data<Shared>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    list::<K>(shared, None, query.into_inner()).await
}

async fn list_in<K: Served>(
    shared: web::Data<Shared>,
    namespace: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    list::<K>(shared, Some(namespace.into_inner()), query.into_inner()).await
}

async fn list<K: Served>(
    shared: web::Data<Shared>,
    namespace: Option<String>,
    query: ListQuery,
) -> Result<HttpResponse, ApiError> {
    let bad = |e: super::selector::SelectorError| ApiError::BadRequest(e.to_string());
    let filter = Filter {
        namespace,
        name: None,
        labels: parse_labels(query.label_selector.as_deref().unwrap_or("")).map_err(bad)?,
        fields: FieldSelector::parse(query.field_selector.as_deref().unwrap_or("")).map_err(bad)?,
    };
    if truthy(query.watch.as_deref()) {
        let since =
            if truthy(query.send_initial_events.as_deref()) {
                watch::Since::InitialEvents
            } else {
                match query.resource_version.as_deref() {
                    None | Some("" | "0") => watch::Since::Start,
                    Some(v) => watch::Since::Version(v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("invalid resourceVersion {v:?}"))
                    })?),
                }
            };
        let timeout = query
            .timeout_seconds
            .map_or(MAX_WATCH, Duration::from_secs)
            .min(MAX_WATCH);
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .streaming(watch::events::<K>(
                shared.into_inner(),
                filter,
                since,
                timeout,
            )));
    }
    let (items, version) = shared.list::<K>(&filter).await?;
    Ok(HttpResponse::Ok().json(List {
        items,
        metadata: ListMeta {
            resource_version: Some(version.to_string()),
            ..ListMeta::default()
        },
    }))
}

async fn get_cluster<K: Served>(
    shared: web::Data<Shared>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(shared.get::<K>(None, &name).await?))
}

async fn get<K: Served>(
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name) = path.into_inner();
    Ok(HttpResponse::Ok().json(shared.get::<K>(Some(&namespace), &name).await?))
}

/// Query parameters of writes; `dryRun` would need a model that can tell "what if" from "do".
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteQuery {
    dry_run: Option<String>,
}

fn refuse_dry_run(query: &WriteQuery) -> Result<(), ApiError> {
    match &query.dry_run {
        Some(_) => Err(ApiError::BadRequest(
            "dryRun is not supported by the simulated cluster".to_owned(),
        )),
        None => Ok(()),
    }
}

/// A patch's JSON body, once its content type is a patch type the server takes and it is no dry run.
pub fn patch_body(
    req: &HttpRequest,
    query: &WriteQuery,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if PatchType::of_content_type(content_type).is_none() {
        return Err(ApiError::UnsupportedPatch(content_type.to_owned()));
    }
    refuse_dry_run(query)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the patch is not JSON: {e}")))
}

/// Sets pod template annotations (a strategic merge or merge patch) and returns the patched object.
async fn patch<K: ServedWorkload>(
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
    query: web::Query<WriteQuery>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name) = path.into_inner();
    shared.get::<K>(Some(&namespace), &name).await?;
    let patch = patch_body(&req, &query, &body)?;
    let annotations = template_annotations(&patch).map_err(|refusal| ApiError::Invalid {
        target: target::<K>(&name),
        refusal,
    })?;
    let id = workload_ref(K::WORKLOAD, &namespace, &name);
    for (key, value) in &annotations {
        shared
            .sim
            .patch_template_annotation(&id, key, value)
            .await?;
    }
    Ok(HttpResponse::Ok().json(shared.get::<K>(Some(&namespace), &name).await?))
}

/// Deletes a pod (its workload controller replaces it) and returns it as it was.
async fn delete_pod(
    shared: web::Data<Shared>,
    path: web::Path<(String, String)>,
    query: web::Query<WriteQuery>,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name) = path.into_inner();
    let pod = shared.get::<Pod>(Some(&namespace), &name).await?;
    refuse_dry_run(&query)?;
    shared.sim.delete_pod(&namespace, &name).await?;
    Ok(HttpResponse::Ok().json(pod))
}
