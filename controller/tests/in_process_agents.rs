//! The controller with REAL agents (`dc_agent::run`) on simulated clusters, in this process, over real
//! mutual TLS: a strategy runs to complete across a controller restart (a new actor system on the same
//! database, on the same agent port) and every subcloud's files end with the new CA.

mod common;

use common::{Harness, config};
use dc_controller::model::StrategyState;

const SUBJECT: &str = "O=in-process CN=in-process-root";

#[actix_web::test]
async fn real_agents_complete_a_strategy_across_a_controller_restart() {
    let mut h = Harness::new(600).await;
    let names = ["sim1", "sim2", "sim3"];
    for n in names {
        h.register(n).await;
    }
    let agents_addr = h.ctl().agents_addr.to_string();
    let agents = common::spawn_agents(&h, &names, &agents_addr, |n| n == "sim3");
    h.wait_status(|s| s.reporting == names.len()).await;

    let expiry = dc_certs::ExpiryDate::of(dc_certs::now() + 400 * 86400).expect("date");
    h.api(common::create_request(SUBJECT, &expiry))
        .await
        .expect("create");
    h.api(common::apply_request()).await.expect("apply");

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
        common::assert_new_ca(&h, n, SUBJECT, expiry.not_after());
    }

    common::stop_all(&mut h, agents).await;
}
