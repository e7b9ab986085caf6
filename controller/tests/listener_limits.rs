//! The agent listener bounds unauthenticated peers: a connection that never completes its mutual-TLS
//! handshake is closed after `handshake_timeout_secs`, and handshakes beyond `max_handshakes` are
//! closed at once, while agents that do authenticate keep working.

mod common;

use std::time::Duration;

use common::config;
use dc_test_support::pki::TestPki;
use tokio::io::AsyncReadExt;

#[actix_web::test]
async fn a_silent_peer_is_disconnected_after_the_handshake_timeout_and_extra_ones_at_once() {
    let pki = TestPki::new().expect("pki");
    let mut c = config(&pki, &pki.root().join("controller.sqlite"), 600);
    c.agents.handshake_timeout_secs = 5;
    c.agents.max_handshakes = 1;
    let ctl = dc_controller::start(c).await.expect("start");

    // The first silent peer holds the only handshake slot until its timeout closes it.
    let mut silent = tokio::net::TcpStream::connect(ctl.agents_addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    // A second one, beyond the limit, is closed without waiting.
    let mut extra = tokio::net::TcpStream::connect(ctl.agents_addr)
        .await
        .expect("connect");
    let closed = tokio::time::timeout(Duration::from_secs(4), extra.read(&mut buf))
        .await
        .expect("the peer beyond the limit is closed before the first one times out");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let closed = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("the silent peer is closed after its handshake timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    ctl.stop().await;
}
