//! The watchdog is pinged only while the controller's actors answer: the liveness check behind each ping
//! holds for a running controller and fails once its orchestrator has stopped (then systemd, seeing no
//! ping within WatchdogSec, restarts the service).

mod common;

use std::time::{Duration, Instant};

use common::config;
use dc_test_support::pki::TestPki;

#[actix_web::test]
async fn the_watchdog_check_holds_while_the_actors_answer_and_fails_once_they_stopped() {
    let pki = TestPki::new().expect("pki");
    let db = pki.root().join("controller.sqlite");
    let running = dc_controller::start(config(&pki, &db, 600))
        .await
        .expect("start");
    let actors = running.actors();
    dc_controller::systemd::alive(&actors)
        .await
        .expect("a running controller answers");

    running.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while dc_controller::systemd::alive(&actors).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "a stopped orchestrator still passes the watchdog check"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
