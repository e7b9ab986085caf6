//! What is deleted stays deleted, across restarts: a deleted subcloud's agent certificate is revoked
//! (the name added again needs a new certificate), and no new subcloud, group or strategy takes the
//! id of a deleted one. What is no longer needed is not kept: an uploaded CA's private key leaves the
//! database files once every subcloud has its new CA.

mod common;

use common::{Event, Harness, apply_request, body, create_request};
use dc_controller::model::StrategyState;
use dc_controller::orchestrator::ApiRequest;
use dc_controller::requests::GroupRef;
use dc_protocol::ErrorCode;
use serde_json::json;

#[actix_web::test]
async fn a_deleted_subclouds_certificate_is_refused_until_a_new_one_is_issued() {
    let mut h = Harness::new(600).await;
    h.register("s1").await;
    let _a = h.agent("s1");
    h.wait_event("s1", Event::Connected).await;
    // Another certificate for the subcloud, issued later and never presented: a copy the controller
    // never saw is revoked too.
    let old = h.pki.root().join("old-s1");
    dc_certs::pki::write_agent(h.pki.ca(), "s1", &old, dc_certs::now() + 1).expect("issue");

    h.api(ApiRequest::DeleteSubcloud("s1".into()))
        .await
        .expect("delete");
    h.wait_event("s1", Event::Refused(ErrorCode::UnknownSubcloud))
        .await;

    // Added again under the same name, the old certificate no longer gets in, before or after a
    // restart of the controller.
    h.register("s1").await;
    let _b = h.agent_with(&old, "s1", None);
    h.wait_event("s1", Event::Refused(ErrorCode::Revoked)).await;
    h.restart().await;
    let _c = h.agent_with(&old, "s1", None);
    h.wait_event("s1", Event::Refused(ErrorCode::Revoked)).await;

    // A certificate issued after the deletion does.
    let new = h.pki.root().join("new-s1");
    // (Deletion revokes up to a second ahead, as renewals are dated.)
    dc_certs::pki::write_agent(h.pki.ca(), "s1", &new, dc_certs::now() + 2).expect("issue");
    let _d = h.agent_with(&new, "s1", None);
    h.wait_event("s1", Event::Connected).await;
}

#[actix_web::test]
async fn ids_of_deleted_records_are_never_given_again() {
    let mut h = Harness::new(600).await;
    let (first, _a1) = one_of_each(&h, 1).await;
    h.api(ApiRequest::DeleteStrategy).await.expect("delete");
    h.api(ApiRequest::DeleteSubcloud("s1".into()))
        .await
        .expect("delete");
    h.api(ApiRequest::DeleteGroup(GroupRef::Id(first.group)))
        .await
        .expect("delete group");
    h.restart().await;

    let (second, _a2) = one_of_each(&h, 2).await;
    assert_eq!(second.subcloud, first.subcloud + 1, "subcloud");
    assert_eq!(second.group, first.group + 1, "group");
    assert_eq!(second.strategy, first.strategy + 1, "strategy");
}

/// The ids [`one_of_each`] was given.
struct Ids {
    subcloud: i64,
    group: i64,
    strategy: i64,
}

/// Adds subcloud `s<n>` (with an agent that reports, which a strategy needs), group `g<n>` and a
/// strategy, and returns their ids and the agent.
async fn one_of_each(h: &Harness, n: u32) -> (Ids, common::FakeAgent) {
    let id = |v: serde_json::Value| v["id"].as_i64().expect("id");
    let name = format!("s{n}");
    let subcloud = id(h
        .api(ApiRequest::AddSubcloud(body(json!({"name": name}))))
        .await
        .expect("add"));
    let group = id(h
        .api(ApiRequest::AddGroup(body(json!({"name": format!("g{n}")}))))
        .await
        .expect("add group"));
    let agent = h.agent(&name);
    h.wait_status(|s| s.reporting == 1).await;
    let expiry = dc_certs::ExpiryDate::parse("2036-01-01").expect("expiry");
    let strategy = id(h
        .api(create_request("CN=ids", &expiry))
        .await
        .expect("create"));
    (
        Ids {
            subcloud,
            group,
            strategy,
        },
        agent,
    )
}

#[actix_web::test]
async fn an_uploaded_ca_key_leaves_the_database_once_the_strategy_completes() {
    let mut h = Harness::new(600).await;
    h.register("s1").await;
    let agent = h.agent("s1");
    h.wait_status(|s| s.reporting == 1).await;
    let ca = dc_certs::authority::NewRootCa::default()
        .generate(86_400 * 365, dc_certs::now())
        .expect("ca");
    let key = ca.key_pem();
    // A line from the middle of the key's base64: the key itself, not only its PEM label.
    let secret = key.lines().nth(2).expect("key body").to_owned();
    h.api(ApiRequest::CreateStrategy(body(json!({
        "type": "kube-rootca-update",
        "cert-file": format!("{}{key}", ca.cert_pem()),
    }))))
    .await
    .expect("create");
    h.api(apply_request()).await.expect("apply");
    h.wait_event("s1", Event::Started).await;
    assert!(
        holds(&h, &secret),
        "the key is kept while the strategy may need it"
    );

    agent.allow(100);
    h.wait_status(|s| s.strategy == Some(StrategyState::Complete))
        .await;
    assert!(
        !holds(&h, &secret),
        "the key is still in the database files"
    );
    let shown = h.api(ApiRequest::ShowStrategy).await.expect("show");
    assert_eq!(shown["extra-args"]["cert-file"], "uploaded", "{shown}");
    h.restart().await;
    assert!(!holds(&h, &secret));
}

/// Whether the database or its write-ahead log holds `text`.
fn holds(h: &Harness, text: &str) -> bool {
    ["", "-wal"].iter().any(|suffix| {
        let mut path = h.db.clone().into_os_string();
        path.push(suffix);
        std::fs::read(&path)
            .map(|bytes| bytes.windows(text.len()).any(|w| w == text.as_bytes()))
            .unwrap_or(false)
    })
}
