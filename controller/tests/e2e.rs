//! End to end over real mutual TLS: the controller with scripted fake agents.

mod common;

use common::{Event, Harness};
use dc_controller::model::StrategyState;
use dc_controller::orchestrator::ApiRequest;
use dc_protocol::{ErrorCode, Phase};
use serde_json::json;

async fn setup(h: &mut Harness, names: &[&str]) -> Vec<common::FakeAgent> {
    for n in names {
        h.register(n).await;
    }
    let agents: Vec<_> = names.iter().map(|n| h.agent(n)).collect();
    h.wait_status(|s| s.reporting == names.len()).await;
    agents
}

async fn create_and_apply(h: &Harness, body: serde_json::Value) {
    h.api(ApiRequest::CreateStrategy(common::body(body)))
        .await
        .expect("create");
    let v = h
        .api(ApiRequest::Action(common::body(json!({"action": "apply"}))))
        .await
        .expect("apply");
    assert_eq!(v["state"], "applying");
}

/// Four agents, window of two: never more than two run, each finished one is replaced at once, and
/// all complete; meanwhile an impostor and an unregistered certificate are refused.
#[actix_web::test]
async fn strategy_completes_with_the_window_respected_and_impostors_refused() {
    let mut h = Harness::new(600).await;
    let names = ["s1", "s2", "s3", "s4"];
    let agents = setup(&mut h, &names).await;
    // An agent certified as s1 claiming s2, and a certificate for an unregistered name.
    let _impostor = h.agent_as("s1", "s2", None);
    h.wait_event("s2", Event::Refused(ErrorCode::IdentityMismatch))
        .await;
    let _ghost = h.agent("ghost");
    h.wait_event("ghost", Event::Refused(ErrorCode::UnknownSubcloud))
        .await;

    create_and_apply(
        &h,
        json!({"type": "kube-rootca-update", "max-parallel-subclouds": 2}),
    )
    .await;
    let mut running = 0usize;
    let mut max_running = 0usize;
    let mut completed = 0;
    // The first two start; let every started agent run to its end.
    while completed < names.len() {
        let e = tokio::time::timeout(common::TIMEOUT, h.events.recv())
            .await
            .expect("event")
            .expect("open");
        match e.1 {
            Event::Started => {
                running += 1;
                max_running = max_running.max(running);
                if let Some(a) = agents.iter().find(|a| a.name == e.0) {
                    a.allow(100);
                }
            }
            Event::Completed => {
                running -= 1;
                completed += 1;
            }
            _ => {}
        }
    }
    assert_eq!(max_running, 2);
    h.wait_status(|s| s.strategy == Some(StrategyState::Complete))
        .await;
    let steps = h.steps().await;
    for n in names {
        assert_eq!(steps[n]["state"], "complete", "{n}: {}", steps[n]);
        assert_eq!(steps[n]["stage"], "Complete");
        assert!(steps[n]["finished-at"].is_string());
    }
    for a in &agents {
        assert_eq!(a.played(), Phase::ALL.to_vec(), "{}", a.name);
    }
    // Completed subclouds report a fresh root CA: in-sync.
    let sc = h
        .api(ApiRequest::ShowSubcloud("s1".into()))
        .await
        .expect("show");
    assert_eq!(sc["availability-status"], "online");
    h.ctl();
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}

/// The controller is stopped mid-apply and a new one starts on the same database: the strategy resumes
/// and completes, every step accounted for, no phase played twice.
#[actix_web::test]
async fn restart_mid_apply_resumes_and_completes() {
    let mut h = Harness::new(600).await;
    let names = ["r1", "r2", "r3"];
    let agents = setup(&mut h, &names).await;
    create_and_apply(
        &h,
        json!({"type": "kube-rootca-update", "max-parallel-subclouds": "2"}),
    )
    .await;
    h.wait_event("r1", Event::Started).await;
    agents[0].allow(3);
    h.wait_event("r1", Event::PhaseDone(Phase::HostsTrustBothCas))
        .await;
    h.restart().await;
    // Agents follow to the new controller; r1 carries on where it stands.
    h.wait_status(|s| s.reporting == names.len()).await;
    for a in &agents {
        a.allow(100);
    }
    let done = h
        .wait_status(|s| s.strategy == Some(StrategyState::Complete))
        .await;
    assert_eq!(done.finished_steps, 3);
    let steps = h.steps().await;
    assert_eq!(steps.len(), 3);
    for n in names {
        assert_eq!(steps[n]["state"], "complete", "{n}: {}", steps[n]);
    }
    for a in &agents {
        assert_eq!(a.played(), Phase::ALL.to_vec(), "{}", a.name);
    }
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}

/// Abort: the not-started step is aborted at once, running ones finish their phase and stop.
#[actix_web::test]
async fn abort_stops_running_after_their_phase() {
    let mut h = Harness::new(600).await;
    let names = ["a1", "a2", "a3"];
    let agents = setup(&mut h, &names).await;
    create_and_apply(
        &h,
        json!({"type": "kube-rootca-update", "max-parallel-subclouds": 2}),
    )
    .await;
    h.wait_event("a1", Event::Started).await;
    h.wait_event("a2", Event::Started).await;
    agents[0].allow(1);
    h.wait_event("a1", Event::PhaseDone(Phase::Start)).await;
    let v = h
        .api(ApiRequest::Action(common::body(json!({"action": "abort"}))))
        .await
        .expect("abort");
    assert_eq!(v["state"], "abort requested");
    h.wait_event("a1", Event::AbortReceived).await;
    h.wait_event("a2", Event::AbortReceived).await;
    agents[0].allow(100);
    agents[1].allow(100);
    h.wait_status(|s| s.strategy == Some(StrategyState::Aborted))
        .await;
    let steps = h.steps().await;
    assert_eq!(steps["a3"]["state"], "aborted");
    assert_eq!(steps["a3"]["details"], "aborted before it started");
    assert_eq!(steps["a1"]["state"], "aborted");
    assert_eq!(agents[0].played(), vec![Phase::Start, Phase::NewRootCa]);
    assert_eq!(agents[1].played(), vec![Phase::Start]);
    assert!(
        steps["a1"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("resumable")
    );
    assert!(agents[2].played().is_empty());
    // Aborted strategies may be deleted.
    let v = h.api(ApiRequest::DeleteStrategy).await.expect("delete");
    assert_eq!(v["state"], "deleting");
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}

/// Stop-on-failure: after the first failure nothing new starts, the running one finishes its phase,
/// the strategy ends failed, the never-started step says why.
#[actix_web::test]
async fn stop_on_failure() {
    let mut h = Harness::new(600).await;
    for n in ["f1", "f2", "f3"] {
        h.register(n).await;
    }
    let bad = h.agent_as("f1", "f1", Some(Phase::HostsTrustBothCas));
    let good = h.agent("f2");
    let _idle = h.agent("f3");
    h.wait_status(|s| s.reporting == 3).await;
    create_and_apply(
        &h,
        json!({"type": "kube-rootca-update", "stop-on-failure": true}),
    )
    .await;
    h.wait_event("f1", Event::Started).await;
    bad.allow(100);
    h.wait_event("f2", Event::AbortReceived).await;
    good.allow(100);
    h.wait_status(|s| s.strategy == Some(StrategyState::Failed))
        .await;
    let steps = h.steps().await;
    assert_eq!(steps["f1"]["state"], "failed");
    assert!(
        steps["f1"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("scripted failure")
    );
    assert_eq!(steps["f2"]["state"], "aborted");
    assert_eq!(steps["f3"]["state"], "aborted");
    assert_eq!(
        steps["f3"]["details"],
        "not started: stop-on-failure: subcloud f1 failed"
    );
    assert_eq!(good.played(), vec![Phase::Start]);
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}

/// A dropped agent's step waits, then resumes where the agent stands when it reconnects.
#[actix_web::test]
async fn agent_drop_and_reconnect_resumes() {
    let mut h = Harness::new(600).await;
    let agents = setup(&mut h, &["d1"]).await;
    create_and_apply(&h, json!({"type": "kube-rootca-update"})).await;
    h.wait_event("d1", Event::Started).await;
    agents[0].allow(2);
    h.wait_event("d1", Event::PhaseDone(Phase::NewRootCa)).await;
    // The agent drops and cannot come back yet: the step waits and says so.
    let addr = h.ctl().agents_addr.to_string();
    h.agents_addr.send_replace("127.0.0.1:1".into());
    agents[0].drop_connection();
    h.wait_event("d1", Event::Disconnected).await;
    let step = h
        .wait_step("d1", |s| {
            s["details"]
                .as_str()
                .unwrap_or_default()
                .starts_with("the agent disconnected")
        })
        .await;
    assert_eq!(
        step["details"],
        "the agent disconnected during hosts trust-both-cas; waiting up to 600 s for it to reconnect"
    );
    assert_eq!(step["stage"], "Apply");
    h.agents_addr.send_replace(addr);
    h.wait_event("d1", Event::Connected).await;
    agents[0].allow(100);
    h.wait_status(|s| s.strategy == Some(StrategyState::Complete))
        .await;
    assert_eq!(agents[0].played(), Phase::ALL.to_vec());
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}

/// A dropped agent that does not come back fails its step after the configured wait.
#[actix_web::test]
async fn agent_that_never_returns_fails_its_step() {
    let mut h = Harness::new(1).await;
    h.register("gone").await;
    let agent = h.agent("gone");
    h.wait_status(|s| s.reporting == 1).await;
    create_and_apply(&h, json!({"type": "kube-rootca-update"})).await;
    h.wait_event("gone", Event::Started).await;
    // The controller side goes away from the agent's view: move it to an address where nobody listens.
    h.agents_addr.send_replace("127.0.0.1:1".into());
    agent.drop_connection();
    h.wait_status(|s| s.strategy == Some(StrategyState::Failed))
        .await;
    let steps = h.steps().await;
    assert!(
        steps["gone"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("did not reconnect within 1 s"),
        "{}",
        steps["gone"]
    );
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}
