//! The event stream (`GET /v1.0/sw-update-strategy/events`) over a real fleet: a raw Server-Sent
//! Events client sees the snapshot, then every change through to `complete` with strictly increasing
//! ids, and what it ends with is what the REST API lists; a client that disconnects mid-update and
//! reconnects with `Last-Event-ID` gets exactly the events it missed; an unknown id gets a snapshot;
//! no token gets 401.

mod common;

use std::collections::BTreeMap;

use common::*;
use dc_test_support::fleet::{ADMIN_TOKEN, Fleet, READER_TOKEN};
use futures::StreamExt;
use serde_json::Value;

/// One event as received.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: String,
    name: String,
    data: Value,
}

impl Event {
    /// The sequence number of the id (`<epoch>-<seq>`).
    fn seq(&self) -> u64 {
        self.id
            .rsplit_once('-')
            .and_then(|(_, s)| s.parse().ok())
            .unwrap_or_else(|| panic!("id {:?} is not <epoch>-<seq>", self.id))
    }

    fn epoch(&self) -> &str {
        self.id.rsplit_once('-').map_or("", |(e, _)| e)
    }
}

/// A raw SSE client: the HTTP response's bytes, cut into events.
struct Stream {
    body: awc::ClientResponse,
    parser: dc_sse::Parser,
    ready: std::collections::VecDeque<dc_sse::Event>,
}

fn client() -> awc::Client {
    // awc's request timeout would also cut the stream's body; each read has its own timeout.
    awc::Client::builder().disable_timeout().finish()
}

/// Opens the stream; answers the status, and the stream when it is 200.
async fn open(fleet: &Fleet, token: Option<&str>, last: Option<&str>) -> (u16, Option<Stream>) {
    let mut req = client().get(format!(
        "http://{}/v1.0/sw-update-strategy/events",
        fleet.api
    ));
    if let Some(t) = token {
        req = req.insert_header(("X-Auth-Token", t));
    }
    if let Some(id) = last {
        req = req.insert_header(("Last-Event-ID", id));
    }
    let body = req.send().await.expect("the stream answers");
    let status = body.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let kind = body
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(kind, "text/event-stream");
    (
        status,
        Some(Stream {
            body,
            parser: dc_sse::Parser::default(),
            ready: Default::default(),
        }),
    )
}

impl Stream {
    /// The next event (keep-alive comments skipped); fails the test after [`TIMEOUT`].
    async fn next(&mut self) -> Event {
        loop {
            if let Some(e) = self.ready.pop_front() {
                let id =
                    e.id.unwrap_or_else(|| panic!("event {} without an id", e.name));
                let data = serde_json::from_str(&e.data)
                    .unwrap_or_else(|err| panic!("event {id} {}: {err}: {}", e.name, e.data));
                return Event {
                    id,
                    name: e.name,
                    data,
                };
            }
            let chunk = tokio_timeout(self.body.next())
                .await
                .expect("an event within the timeout")
                .expect("the stream stays open")
                .expect("the stream reads");
            self.ready.extend(self.parser.push(&chunk));
        }
    }

    /// Events up to and including the strategy's `complete`.
    async fn until_complete(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let e = self.next().await;
            let done = e.name == "strategy" && e.data["state"] == "complete";
            events.push(e);
            if done {
                return events;
            }
        }
    }
}

async fn tokio_timeout<F: std::future::Future>(f: F) -> Option<F::Output> {
    actix_rt::time::timeout(TIMEOUT, f).await.ok()
}

/// The steps' states by cloud after applying `events` to what `snapshot` showed.
fn steps_after(snapshot: &Event, events: &[Event]) -> BTreeMap<String, String> {
    let mut steps: BTreeMap<String, String> = BTreeMap::new();
    for s in snapshot.data["strategy-steps"].as_array().expect("steps") {
        steps.insert(
            s["cloud"].as_str().unwrap().into(),
            s["state"].as_str().unwrap().into(),
        );
    }
    for e in events {
        match e.name.as_str() {
            "step" => {
                steps.insert(
                    e.data["cloud"].as_str().unwrap().into(),
                    e.data["state"].as_str().unwrap().into(),
                );
            }
            "strategy" if e.data.is_null() => steps.clear(),
            _ => {}
        }
    }
    steps
}

/// The steps' states by cloud as the REST steps list gives them.
async fn rest_steps(fleet: &Fleet) -> BTreeMap<String, String> {
    let mut resp = client()
        .get(format!(
            "http://{}/v1.0/sw-update-strategy/steps",
            fleet.api
        ))
        .insert_header(("X-Auth-Token", READER_TOKEN))
        .send()
        .await
        .expect("steps list");
    let list: Value = resp.json().limit(64 << 20).await.expect("steps JSON");
    list["strategy-steps"]
        .as_array()
        .expect("strategy-steps")
        .iter()
        .map(|s| {
            (
                s["cloud"].as_str().unwrap().into(),
                s["state"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Each subcloud's (availability, sync, root CA expiry) after applying `events` to `snapshot`.
fn subclouds_after(snapshot: &Event, events: &[Event]) -> BTreeMap<String, [Value; 3]> {
    let status = |s: &Value| {
        [
            s["availability-status"].clone(),
            s["sync_status"].clone(),
            s["kube-rootca-expiry"].clone(),
        ]
    };
    let mut subclouds: BTreeMap<String, [Value; 3]> = snapshot.data["subclouds"]
        .as_array()
        .expect("subclouds")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().into(), status(s)))
        .collect();
    for e in events.iter().filter(|e| e.name == "subcloud") {
        subclouds.insert(e.data["name"].as_str().unwrap().into(), status(&e.data));
    }
    subclouds
}

/// The same, as the REST subcloud list gives them.
async fn rest_subclouds(fleet: &Fleet) -> BTreeMap<String, [Value; 3]> {
    let mut resp = client()
        .get(format!("http://{}/v1.0/subclouds", fleet.api))
        .insert_header(("X-Auth-Token", READER_TOKEN))
        .send()
        .await
        .expect("subcloud list");
    let list: Value = resp.json().limit(64 << 20).await.expect("subclouds JSON");
    list["subclouds"]
        .as_array()
        .expect("subclouds")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                [
                    s["availability-status"].clone(),
                    s["sync_status"].clone(),
                    s["kube-rootca-expiry"].clone(),
                ],
            )
        })
        .collect()
}

fn assert_strictly_increasing(events: &[Event]) {
    for pair in events.windows(2) {
        assert_eq!(pair[0].epoch(), pair[1].epoch(), "{pair:?}");
        assert!(
            pair[0].seq() < pair[1].seq(),
            "ids not increasing: {pair:?}"
        );
    }
}

#[test]
fn the_stream_shows_a_snapshot_then_every_change_through_to_complete() {
    let fleet = start(light(&["e1", "e2", "e3"]));
    actix_rt::System::new().block_on(async {
        let (status, _) = open(&fleet, None, None).await;
        assert_eq!(status, 401, "no token");
        let (status, _) = open(&fleet, Some("not-a-token"), None).await;
        assert_eq!(status, 401, "a wrong token");

        // A reader token suffices.
        let (_, stream) = open(&fleet, Some(READER_TOKEN), None).await;
        let mut stream = stream.expect("the stream opens for a reader");
        let snapshot = stream.next().await;
        assert_eq!(snapshot.name, "snapshot");
        assert!(snapshot.data["strategy"].is_null(), "{snapshot:?}");
        assert_eq!(snapshot.data["strategy-steps"], Value::Array(vec![]));
        let subclouds = snapshot.data["subclouds"].as_array().expect("subclouds");
        assert_eq!(subclouds.len(), 3, "{subclouds:?}");
        for s in subclouds {
            assert_eq!(s["availability-status"], "online", "{s}");
            assert_eq!(s["sync_status"], "out-of-sync", "{s}");
            assert!(s["kube-rootca-expiry"].is_string(), "{s}");
        }

        create_and_apply(&fleet, &["--max-parallel-subclouds", "2"]);
        let events = stream.until_complete().await;
        let mut all = vec![snapshot.clone()];
        all.extend(events.iter().cloned());
        assert_strictly_increasing(&all);

        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let strategy_states: Vec<&str> = events
            .iter()
            .filter(|e| e.name == "strategy")
            .filter_map(|e| e.data["state"].as_str())
            .collect();
        assert_eq!(
            strategy_states.first(),
            Some(&"initial"),
            "{strategy_states:?}"
        );
        assert!(strategy_states.contains(&"applying"), "{strategy_states:?}");
        assert_eq!(strategy_states.last(), Some(&"complete"));
        for cloud in ["e1", "e2", "e3"] {
            let states: Vec<&str> = events
                .iter()
                .filter(|e| e.name == "step" && e.data["cloud"] == cloud)
                .filter_map(|e| e.data["state"].as_str())
                .collect();
            assert!(states.len() >= 3, "{cloud}: {states:?}");
            assert_eq!(states.last(), Some(&"complete"), "{cloud}: {states:?}");
            assert!(
                events.iter().any(|e| e.name == "step"
                    && e.data["cloud"] == cloud
                    && e.data["details"]
                        .as_str()
                        .is_some_and(|d| d.contains("% complete"))),
                "{cloud}: progress in the details"
            );
        }
        assert!(
            names.contains(&"subcloud"),
            "sync status changes: {names:?}"
        );

        let seen = steps_after(&snapshot, &events);
        assert_eq!(seen, rest_steps(&fleet).await);
        assert!(seen.values().all(|s| s == "complete"), "{seen:?}");

        // The subclouds' sync follows their agents' next reports: the events carry each one to
        // in-sync with the new CA's expiry, as the subcloud list shows it.
        let mut events = events;
        loop {
            let now = subclouds_after(&snapshot, &events);
            if now == rest_subclouds(&fleet).await
                && now
                    .values()
                    .all(|[a, s, _]| a == "online" && s == "in-sync")
            {
                let before = subclouds_after(&snapshot, &[]);
                assert!(
                    now.iter()
                        .all(|(name, [_, _, expiry])| *expiry != before[name][2]),
                    "the new CA's expiry: {before:?} then {now:?}"
                );
                break;
            }
            events.push(stream.next().await);
        }
    });
}

#[test]
fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let mut sites = light(&["r1", "r2"]);
    for s in &mut sites {
        s.slow_pods_ms = 1500;
    }
    let fleet = start(sites);
    actix_rt::System::new().block_on(async {
        // The reference client stays connected throughout.
        let (_, whole) = open(&fleet, Some(ADMIN_TOKEN), None).await;
        let mut whole = whole.expect("stream");
        let (_, broken) = open(&fleet, Some(ADMIN_TOKEN), None).await;
        let mut broken = broken.expect("stream");
        assert_eq!(whole.next().await.name, "snapshot");
        assert_eq!(broken.next().await.name, "snapshot");

        create_and_apply(&fleet, &["--max-parallel-subclouds", "1"]);
        // Mid-update: a step is running; then the connection breaks.
        let last = loop {
            let e = broken.next().await;
            if e.name == "step" && e.data["state"] != "initial" && e.data["state"] != "complete" {
                break e;
            }
        };
        drop(broken);

        let reference = whole.until_complete().await;
        let missed: Vec<Event> = reference
            .iter()
            .filter(|e| e.seq() > last.seq())
            .cloned()
            .collect();
        assert!(
            missed.len() > 5,
            "the update went on after the break: {missed:?}"
        );

        let (_, resumed) = open(&fleet, Some(ADMIN_TOKEN), Some(&last.id)).await;
        let mut resumed = resumed.expect("stream");
        let got = resumed.until_complete().await;
        assert_eq!(got.first().map(Event::seq), Some(last.seq() + 1), "no gap");
        assert_eq!(
            got, missed,
            "exactly the missed events, in order, no duplicate"
        );

        // An id of another process, or one this stream never gave, gets a snapshot of now.
        let future = format!("{}-{}", last.epoch(), last.seq() + 1_000_000);
        for unknown in ["0-5", "garbage", future.as_str()] {
            let (_, s) = open(&fleet, Some(ADMIN_TOKEN), Some(unknown)).await;
            let snapshot = s.expect("stream").next().await;
            assert_eq!(snapshot.name, "snapshot", "{unknown}");
            assert_eq!(snapshot.data["strategy"]["state"], "complete", "{unknown}");
            // As of the newest event: at least the last one this client saw (a heartbeat may have
            // published a subcloud's change since).
            assert!(
                snapshot.seq() >= got.last().map_or(0, Event::seq),
                "the snapshot is as of the newest event"
            );
            let states = steps_after(&snapshot, &[]);
            assert_eq!(states, rest_steps(&fleet).await);
        }
    });
}

/// The watch process, killed if the test fails before it exits.
struct Watch(std::process::Child);

impl Drop for Watch {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_cli_watch_follows_the_stream_to_complete() {
    let fleet = start(light(&["w1", "w2"]));
    let (date, _) = expiry();
    fleet
        .dcmanager_ok(&[
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            SUBJECT,
            "--expiry-date",
            &date,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let out = fleet.dir.join("watch.out");
    let err = fleet.dir.join("watch.err");
    // An hour between redraws: a polling watch would poll once and sleep past the test's timeout; the
    // stream's watch draws at once when the strategy ends.
    let mut watch = Watch(
        fleet
            .dcmanager(&["strategy-step", "list", "--watch", "--interval", "3600"])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("dcmanager starts"),
    );
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap_or_else(|e| panic!("{e}"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut status = None;
    dc_test_support::fleet::wait_until(TIMEOUT, || {
        status = watch.0.try_wait().map_err(|e| {
            dc_test_support::fleet::FleetError(format!("waiting for the watch: {e}"))
        })?;
        Ok(status.is_some())
    })
    .unwrap_or_else(|e| panic!("{e}; watch printed {:?} {:?}", read(&out), read(&err)));
    let (stdout, stderr) = (read(&out), read(&err));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.trim_end().ends_with(" strategy complete"),
        "{stdout}"
    );
    assert!(
        stdout.contains(" w1 complete") && stdout.contains(" w2 complete"),
        "{stdout}"
    );
}
