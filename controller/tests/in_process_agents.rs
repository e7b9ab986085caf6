//! The controller with REAL agents (`dc_agent::run`) on simulated clusters, in this process, over real
//! mutual TLS: a strategy runs to complete across a controller restart (a new actor system on the same
//! database, on the same agent port) and every subcloud's files end with the new CA.

mod common;

use common::{Harness, config};
use dc_agent::config::AgentConfig;
use dc_agent::sim::SimConfig;
use dc_controller::model::StrategyState;
use dc_controller::orchestrator::ApiRequest;
use serde_json::json;

const SUBJECT: &str = "O=in-process CN=in-process-root";

fn agent_config(h: &Harness, name: &str, agents_addr: &str, slow: bool) -> AgentConfig {
    let tls = h.pki.agent(name).expect("agent certificate");
    let mut cluster = serde_json::to_value(SimConfig::light()).expect("sim config");
    cluster["kind"] = json!("simulated");
    cluster["root_ca_expiry_days"] = json!(10);
    if slow {
        // Long enough to be caught mid-phase by the restart below.
        cluster["faults"]["slow_phase"] = json!({"phase": "pods-trust-both-cas", "delay_ms": 2000});
    }
    serde_json::from_value(json!({
        "subcloud": name,
        "data_dir": h.pki.root().join("agents").join(name).join("data"),
        "controller": {"address": agents_addr},
        "tls": {"ca": tls.join("ca.crt"), "cert": tls.join("agent.crt"), "key": tls.join("agent.key")},
        "reconnect": {"initial_secs": 0.05, "max_secs": 0.5},
        "pods": {"poll_ms": 10},
        "cluster": cluster,
    }))
    .expect("agent config")
}

#[actix_web::test]
async fn real_agents_complete_a_strategy_across_a_controller_restart() {
    let mut h = Harness::new(600).await;
    let names = ["sim1", "sim2", "sim3"];
    for n in names {
        h.register(n).await;
    }
    let agents_addr = h.ctl().agents_addr.to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agents: Vec<_> = names
        .iter()
        .map(|n| {
            let config = agent_config(&h, n, &agents_addr, *n == "sim3");
            let mut stopped = stopped.clone();
            actix_rt::spawn(dc_agent::run(config, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        })
        .collect();
    h.wait_status(|s| s.reporting == names.len()).await;

    let expiry = dc_certs::ExpiryDate::of(dc_certs::now() + 400 * 86400).expect("date");
    h.api(ApiRequest::CreateStrategy(common::body(json!({
        "type": "kube-rootca-update", "max-parallel-subclouds": 2,
        "subject": SUBJECT, "expiry-date": expiry.to_string(),
    }))))
    .await
    .expect("create");
    h.api(ApiRequest::Action(common::body(json!({"action": "apply"}))))
        .await
        .expect("apply");

    // sim1 and sim2 finish; sim3 then runs, slowed in pods trust-both-cas: restart the controller there.
    h.wait_status(|s| s.finished_steps >= 2).await;
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
    let mut again = config(&h.pki, &h.db, 600);
    again.agents.listen = agents_addr.clone();
    h.controller = Some(dc_controller::start(again).await.expect("restart"));

    let done = h
        .wait_status(|s| s.strategy == Some(StrategyState::Complete))
        .await;
    assert_eq!(done.finished_steps, 3);
    let steps = h.steps().await;
    for n in names {
        assert_eq!(steps[n]["state"], "complete", "{n}: {}", steps[n]);
        let ca_crt = h
            .pki
            .root()
            .join("agents")
            .join(n)
            .join("data/cluster/hosts/controller-0/etc/kubernetes/pki/ca.crt");
        let pem = std::fs::read_to_string(&ca_crt).expect("ca.crt");
        let certs = dc_certs::pem_certificates(&pem).expect("pem");
        assert_eq!(certs.len(), 1, "{n}: only the new CA is trusted");
        let ca = dc_certs::inspect::CertSummary::from_der(&certs[0]).expect("cert");
        assert_eq!(ca.subject, SUBJECT, "{n}");
        assert_eq!(ca.not_after, expiry.not_after(), "{n}");
    }

    stop.send_replace(true);
    for a in agents {
        a.await.expect("agent task").expect("agent ended cleanly");
    }
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}
