//! Client timeouts on the REST API, over real TCP: a body that stalls or trickles is answered 408 and
//! its connection closed once `api.body_timeout_secs` has passed (actix-web bounds only a request's
//! head), a head that stalls is closed after `api.request_timeout_secs`, and an unauthenticated body is
//! refused at once without being waited for.

mod common;

use std::time::{Duration, Instant};

use common::config;
use dc_controller::config::{Role, TokenConfig};
use dc_test_support::pki::TestPki;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "an-admin-token-for-the-timeout-tests";
/// The configured bounds are 1 s; a connection still open after this has no bound.
const NEVER: Duration = Duration::from_secs(15);

/// Reads until the server closes the connection (or resets it while the client still writes) and
/// answers what arrived.
async fn until_closed(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until a whole response has arrived (its head and `content-length` bytes of body), or the
/// connection ended.
async fn until_answered(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Some(len) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
            && body.len() >= len
        {
            return got;
        }
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and JSON body of a response that arrived whole.
fn response(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

fn head(token: Option<&str>, framing: &str) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("X-Auth-Token: {t}\r\n"));
    format!(
        "POST /v1.0/subclouds HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
    .into_bytes()
}

/// Sends a POST's head with `framing`, then a byte of body every 100 ms from a task.
async fn trickle(
    ctl: &dc_controller::RunningController,
    framing: &str,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let s = TcpStream::connect(ctl.api_addr).await.expect("connect");
    let (r, mut w) = s.into_split();
    w.write_all(&head(Some(ADMIN), framing))
        .await
        .expect("head");
    let piece: &'static [u8] = if framing.contains("chunked") {
        b"1\r\n \r\n"
    } else {
        b" "
    };
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..4000 {
            tick.tick().await;
            if w.write_all(piece).await.is_err() {
                return;
            }
        }
    });
    (r, writer)
}

#[actix_web::test]
async fn slow_bodies_and_heads_are_cut_off_at_the_configured_bound() {
    let pki = TestPki::new().expect("pki");
    let mut c = config(&pki, &pki.root().join("controller.sqlite"), 600);
    c.api.body_timeout_secs = 1;
    c.api.request_timeout_secs = 1;
    c.auth.tokens = vec![TokenConfig {
        token: ADMIN.into(),
        role: Role::Admin,
    }];
    let ctl = dc_controller::start(c).await.expect("start");
    let bound = Duration::from_secs(1);

    // A body that stalls: 100 bytes announced, 9 sent, then nothing.
    let mut s = TcpStream::connect(ctl.api_addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(&head(Some(ADMIN), "Content-Length: 100"))
        .await
        .expect("head");
    s.write_all(b"{\"name\": ").await.expect("some body");
    let got = tokio::time::timeout(NEVER, until_closed(&mut s))
        .await
        .expect("a stalled body is cut off");
    let waited = start.elapsed();
    let (status, body) = response(&got);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], 408, "{body}");
    assert_eq!(
        body["message"], "The request body did not arrive within 1 s",
        "{body}"
    );
    assert!(
        waited >= bound,
        "answered after {waited:?}, before the bound"
    );

    // A body that trickles: a byte every 100 ms would take minutes, and the bound is on the whole
    // body, not between bytes. With a length, the connection is closed after the 408.
    let (mut r, writer) = trickle(&ctl, "Content-Length: 4000").await;
    let start = Instant::now();
    let got = tokio::time::timeout(NEVER, until_closed(&mut r))
        .await
        .expect("a trickled body is cut off");
    let waited = start.elapsed();
    writer.abort();
    assert!(waited >= bound, "closed after {waited:?}");
    // The server answers 408 then closes; a reset while the client still writes may discard the
    // answer, but never before the bound.
    if !got.is_empty() {
        assert_eq!(response(&got).0, 408);
    }
    // Chunked, the 408 arrives at the bound too. (actix-http then drains a chunked body it was
    // answered before reading, for as long as the client sends: see the README's hardening notes.)
    let (mut r, writer) = trickle(&ctl, "Transfer-Encoding: chunked").await;
    let start = Instant::now();
    let got = tokio::time::timeout(NEVER, until_answered(&mut r))
        .await
        .expect("a trickled chunked body is answered");
    writer.abort();
    assert!(start.elapsed() >= bound, "took {:?}", start.elapsed());
    let (status, body) = response(&got);
    assert_eq!(status, 408, "{body}");

    // Without a token the body is not waited for: 401 at once, and the connection closed.
    let mut s = TcpStream::connect(ctl.api_addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(&head(None, "Content-Length: 100"))
        .await
        .expect("head");
    let got = tokio::time::timeout(NEVER, until_closed(&mut s))
        .await
        .expect("an unauthenticated body is refused");
    assert!(start.elapsed() < bound, "took {:?}", start.elapsed());
    assert_eq!(response(&got).0, 401);

    // A head that stalls is closed after `request_timeout_secs` (by actix-http, before any request
    // exists: its 408 has no body).
    let mut s = TcpStream::connect(ctl.api_addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"POST /v1.0/subclouds HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("part of a head");
    let got = tokio::time::timeout(NEVER, until_closed(&mut s))
        .await
        .expect("a stalled head is cut off");
    // actix-http's timer counts from the accept, on a coarse clock.
    assert!(start.elapsed() >= bound / 2, "took {:?}", start.elapsed());
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );

    // The API still answers.
    let mut s = TcpStream::connect(ctl.api_addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    assert_eq!(response(&until_closed(&mut s).await).0, 200);
    ctl.stop().await;
}
