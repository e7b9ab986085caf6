//! The dashboard (`GET /ui`) in a real headless Chromium, over a real fleet: its counts follow the
//! update to `complete` and equal the REST steps list, its failed-step filter and detail panel show an
//! injected failure with its reason, and an abort clicked on the page stops the strategy.
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); fails without them.
#![allow(
    clippy::print_stderr,
    reason = "the test reports what it measured (the frame times at 10,000 subclouds)"
)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use dc_test_support::browser::Browser;
use dc_test_support::fleet::{ADMIN_TOKEN, Fleet, wait_until};
use serde_json::{Value, json};

const STRATEGY_STATE: &str = "return document.getElementById('strategy-state').textContent";
const COUNTS: &str = "return Object.fromEntries([...document.querySelectorAll('#counts tr')]\
    .map(tr => [tr.dataset.state, Number(tr.cells[1].textContent)]))";
const LISTED: &str =
    "return [...document.querySelectorAll('#subclouds tbody tr')].map(tr => tr.dataset.name)";

/// Where test artifacts go: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let bin = dc_test_support::bin_path("dc-controller");
    let dir = bin
        .parent()
        .and_then(|p| p.parent())
        .map(|t| t.join("test-artifacts"))
        .expect("target dir");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// A browser on the fleet's /ui, connected with the admin token, once the snapshot has arrived.
fn open(fleet: &Fleet) -> Browser {
    let browser = Browser::start(&fleet.log("chromedriver")).unwrap_or_else(|e| panic!("{e}"));
    browser
        .goto(&format!("http://{}/ui", fleet.api))
        .unwrap_or_else(|e| panic!("{e}"));
    browser.type_into("#token", ADMIN_TOKEN).unwrap();
    browser.click("#connect").unwrap();
    let n = fleet.sites.len();
    browser
        .wait_for(
            "every subcloud listed from the stream's snapshot",
            TIMEOUT,
            "return document.getElementById('list-count').textContent",
            |v| v.as_str() == Some(&format!("({n} of {n})")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    browser
}

fn wait_page_state(browser: &Browser, states: &[&str]) -> String {
    browser
        .wait_for("the page's strategy state", TIMEOUT, STRATEGY_STATE, |v| {
            states.iter().any(|s| v == *s)
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The REST API's answer to `GET path`, with the admin token.
fn rest_get(fleet: &Fleet, path: &str) -> Value {
    let url = format!("http://{}{path}", fleet.api);
    actix_rt::System::new().block_on(async {
        let mut res = awc::Client::new()
            .get(&url)
            .insert_header(("X-Auth-Token", ADMIN_TOKEN))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(res.status().is_success(), "GET {url}: {}", res.status());
        res.json::<Value>().await.unwrap()
    })
}

/// The id of the newest event: what a fresh stream's snapshot carries.
fn newest_event_id(fleet: &Fleet) -> String {
    use futures::StreamExt as _;
    let url = format!("http://{}/v1.0/sw-update-strategy/events", fleet.api);
    actix_rt::System::new().block_on(async {
        let mut res = awc::Client::new()
            .get(&url)
            .insert_header(("X-Auth-Token", ADMIN_TOKEN))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let mut parser = dc_sse::Parser::default();
        loop {
            let chunk = res.next().await.expect("the snapshot").expect("bytes");
            if let Some(snapshot) = parser.push(&chunk).into_iter().next() {
                return snapshot.id.expect("the snapshot's id");
            }
        }
    })
}

/// A real pointer click on `name`'s cell of the fleet map.
fn click_cell(browser: &Browser, name: &str) {
    let centre = browser
        .execute("return window.dcUi.cellCentre(arguments[0])", json!([name]))
        .unwrap();
    browser
        .click_at(
            "#fleet-map",
            centre["x"].as_f64().unwrap(),
            centre["y"].as_f64().unwrap(),
        )
        .unwrap();
}

fn rest_counts(fleet: &Fleet) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for step in steps(fleet) {
        *counts
            .entry(step["state"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    counts
}

fn page_counts(browser: &Browser) -> BTreeMap<String, u64> {
    serde_json::from_value(browser.execute(COUNTS, json!([])).unwrap()).unwrap()
}

#[test]
fn the_page_creates_and_applies_a_strategy_and_its_counts_follow_it_to_complete() {
    // A few dozen subclouds, some slow in their pods phases so the map is caught mid-update.
    let mut sites = light(
        &(1..=30)
            .map(|i| format!("subcloud{i}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    for (i, site) in sites.iter_mut().enumerate() {
        site.slow_pods_ms = if i % 3 == 0 { 1500 } else { 300 };
    }
    sites[29].ca_days = 3650; // in-sync: no step
    let fleet = start(sites);
    let browser = open(&fleet);
    assert!(
        page_counts(&browser).is_empty(),
        "no strategy yet, no steps"
    );

    let (date, _) = expiry();
    browser.type_into("#create-subject", SUBJECT).unwrap();
    // A date input takes the date as typed in the browser's locale (en-US: month, day, year).
    let (y, rest) = date.split_once('-').unwrap();
    let (m, d) = rest.split_once('-').unwrap();
    browser
        .type_into("#create-expiry", &format!("{m}{d}{y}"))
        .unwrap();
    browser.type_into("#create-max-parallel", "6").unwrap();
    browser.click("#create").unwrap();
    assert_eq!(wait_page_state(&browser, &["initial"]), "initial");
    let strategy = rest_get(&fleet, "/v1.0/sw-update-strategy?type=kube-rootca-update");
    assert_eq!(strategy["max-parallel-subclouds"], 6, "{strategy:#}");
    assert_eq!(strategy["extra-args"]["subject"], SUBJECT, "{strategy:#}");
    assert_eq!(strategy["extra-args"]["expiry-date"], date, "{strategy:#}");
    assert_eq!(page_counts(&browser), rest_counts(&fleet));
    // A refused call shows the API's own error text.
    browser.click("#create").unwrap();
    browser
        .wait_for(
            "the API's refusal of a second strategy",
            TIMEOUT,
            "return document.getElementById('api-error').textContent",
            |v| v.as_str().is_some_and(|t| t.contains("already exists")),
        )
        .unwrap_or_else(|e| panic!("{e}"));

    browser.click("#apply").unwrap();
    // Mid-update: some complete, some still running: the screenshot the README shows.
    browser
        .wait_for("a fleet mid-update", TIMEOUT, COUNTS, |v| {
            v["complete"].as_u64().unwrap_or(0) >= 6 && v["initial"].as_u64().unwrap_or(0) >= 6
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // A click on a running subcloud's cell shows its phase and percent.
    let running = browser
        .execute(
            "const m = window.dcUi.model; return m.order.findLast(n => { const s = m.steps.get(n); \
             return s && s.state.startsWith('updating'); }) || null",
            json!([]),
        )
        .unwrap();
    let running = running.as_str().expect("a running subcloud").to_owned();
    click_cell(&browser, &running);
    let detail = browser
        .wait_for(
            "the clicked subcloud's detail panel",
            TIMEOUT,
            "const t = id => document.getElementById(id).textContent;\
             return {name: t('detail-name'), state: t('detail-state'), phase: t('detail-phase'),\
                     percent: t('detail-percent'), subject: t('detail-subject')}",
            |v| {
                v["name"] == running.as_str()
                    && !v["subject"].as_str().unwrap_or_default().is_empty()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // It may have finished meanwhile; while it runs, its phase and percent show.
    if detail["state"]
        .as_str()
        .unwrap_or_default()
        .starts_with("updating")
    {
        assert!(detail["phase"] != "", "{detail:#}");
    }
    assert!(
        detail["percent"]
            .as_str()
            .unwrap_or_default()
            .ends_with('%'),
        "{detail:#}"
    );
    let dir = artifacts();
    std::fs::write(
        dir.join("ui-fleet-map.png"),
        browser.screenshot("#fleet-map").unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("ui-page.png"), browser.screenshot("body").unwrap()).unwrap();

    assert_eq!(
        wait_page_state(&browser, &["complete", "failed"]),
        "complete"
    );
    let rest = rest_counts(&fleet);
    assert_eq!(rest.get("complete"), Some(&29), "{rest:?}");
    // The page applies every event as it comes: once complete, its counts are the REST list's.
    browser
        .wait_for("the page's counts", TIMEOUT, COUNTS, |v| {
            serde_json::from_value::<BTreeMap<String, u64>>(v.clone()).ok() == Some(rest.clone())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // And it has applied every event: its last id is the newest, the one a fresh snapshot carries.
    let mut newest = String::new();
    browser
        .wait_for(
            "the page at the newest event",
            TIMEOUT,
            "return window.dcUi.model.lastEventId",
            |v| {
                newest = newest_event_id(&fleet);
                *v == newest.as_str()
            },
        )
        .unwrap_or_else(|e| panic!("{e}; newest {newest}"));
    let progress = browser
        .execute(
            "return document.getElementById('progress-text').textContent",
            json!([]),
        )
        .unwrap();
    assert!(
        progress.as_str().unwrap_or_default().starts_with("100%"),
        "{progress}"
    );
}

#[test]
fn the_failed_filter_shows_an_injected_failure_with_its_reason_in_the_detail_panel() {
    let mut sites = light(&["f1", "f2", "f3"]);
    // f1's web Deployment never gets ready pods: its pods trust-both-cas phase fails at its timeout.
    sites[0].never_ready = vec!["default/web".to_owned()];
    let fleet = start(sites);
    let browser = open(&fleet);
    create_and_apply(&fleet, &[]);
    assert_eq!(wait_page_state(&browser, &["failed", "complete"]), "failed");

    browser.click("#filter-failed").unwrap();
    browser
        .wait_for("only the failed subcloud listed", TIMEOUT, LISTED, |v| {
            *v == json!(["f1"])
        })
        .unwrap_or_else(|e| panic!("{e}"));

    // On the map, f1's cell is red and the others dimmed, then hidden.
    let pixels = "const c = document.getElementById('fleet-map');\
        const k = c.width / c.getBoundingClientRect().width;\
        const px = n => { const p = window.dcUi.cellCentre(n);\
          return [...c.getContext('2d').getImageData(Math.floor(p.x * k), Math.floor(p.y * k), 1, 1).data]; };\
        return {f1: px('f1'), f2: px('f2'), f3: px('f3')}";
    let red = json!([217, 48, 37, 255]);
    browser
        .wait_for("f1 red, the others dimmed", TIMEOUT, pixels, |v| {
            v["f1"] == red
                && ["f2", "f3"]
                    .iter()
                    .all(|n| (1..128).contains(&v[n][3].as_u64().unwrap_or(0)))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    browser.click("#filter-mode option[value=hide]").unwrap();
    browser
        .wait_for("f1 red, the others hidden", TIMEOUT, pixels, |v| {
            v["f1"] == red && v["f2"][3] == 0 && v["f3"][3] == 0
        })
        .unwrap_or_else(|e| panic!("{e}"));

    // A real click on f1's cell of the map.
    click_cell(&browser, "f1");
    let detail = browser
        .wait_for(
            "f1's detail panel with its error description",
            TIMEOUT,
            "const t = id => document.getElementById(id).textContent;\
             return {name: t('detail-name'), state: t('detail-state'), details: t('detail-details'),\
                     error: t('detail-error'), expiry: t('detail-expiry'), subject: t('detail-subject')}",
            |v| v["name"] == "f1" && v["error"].as_str().is_some_and(|e| e.contains("web")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(detail["state"], "failed", "{detail:#}");
    let f1 = rest_get(&fleet, "/v1.0/subclouds/f1");
    assert_eq!(
        detail["error"], f1["error-description"],
        "{detail:#} {f1:#}"
    );
    assert_eq!(
        detail["expiry"], f1["kube-rootca-expiry"],
        "{detail:#} {f1:#}"
    );
    assert_eq!(
        detail["subject"], f1["kube-rootca-subject"],
        "{detail:#} {f1:#}"
    );
    let step = steps(&fleet)
        .into_iter()
        .find(|s| s["cloud"] == "f1")
        .unwrap();
    assert_eq!(detail["details"], step["details"], "{detail:#} {step:#}");
}

#[test]
fn an_abort_clicked_on_the_page_takes_effect() {
    let mut sites = light(&["a1", "a2", "a3"]);
    // a1 spends long enough in pods trust-both-cas to be caught there.
    sites[0].slow_pods_ms = 3000;
    let fleet = start(sites);
    let browser = open(&fleet);
    create_and_apply(&fleet, &["--subcloud-apply-type", "serial"]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "a1", "pods-trust-both-cas"))
    })
    .unwrap();

    browser.click("#abort").unwrap();
    let mut seen = Vec::new();
    wait_until(TIMEOUT, || {
        let state = fleet.dcmanager_json(&["kube-rootca-update-strategy", "show"])?["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        Ok(state == "aborted")
    })
    .unwrap_or_else(|e| panic!("{e}; states seen: {seen:?}"));
    assert!(
        seen.iter()
            .any(|s| s == "aborting" || s == "abort requested"),
        "the strategy went aborting before aborted: {seen:?}"
    );
    assert_eq!(
        browser
            .execute(
                "return document.getElementById('api-error').textContent",
                json!([])
            )
            .unwrap(),
        Value::from("")
    );
    assert_eq!(wait_page_state(&browser, &["aborted"]), "aborted");
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "aborted", "{steps:#?}");
}

#[test]
fn the_page_needs_no_token_and_carries_its_security_headers() {
    let fleet = start(light(&["s1"]));
    let browser = open(&fleet);
    // Fetched by the page itself: same origin, no token.
    let answer = browser
        .wait_for(
            "the page's own headers",
            TIMEOUT,
            "if (!window.__h) { window.__h = 'pending'; fetch('/ui').then(r => { window.__h = \
             {status: r.status, csp: r.headers.get('content-security-policy'), \
              nosniff: r.headers.get('x-content-type-options'), frame: r.headers.get('x-frame-options'), \
              referrer: r.headers.get('referrer-policy')}; }); } return window.__h",
            |v| v.is_object(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer["status"], 200, "{answer:#}");
    assert_eq!(answer["nosniff"], "nosniff", "{answer:#}");
    assert_eq!(answer["frame"], "DENY", "{answer:#}");
    assert_eq!(answer["referrer"], "no-referrer", "{answer:#}");
    let csp = answer["csp"].as_str().unwrap_or_default();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    // The data needs the token: a call without it is refused.
    let refused = browser
        .wait_for(
            "the events without a token",
            TIMEOUT,
            "if (!window.__e) { window.__e = 'pending'; \
             fetch('/v1.0/sw-update-strategy/events').then(r => { window.__e = r.status; }); } \
             return window.__e",
            |v| v.is_number(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused, 401);
}

#[test]
fn the_page_at_ten_thousand_subclouds_pages_its_list_and_counts_every_event() {
    let fleet = start(light(&["s1"]));
    let browser = open(&fleet);
    // The page's own event path and frame, fed a snapshot of 10,000 subclouds mid-update, then seven
    // rounds of 200 step events, each round drawn in one frame (requestAnimationFrame batches them).
    let timing = browser
        .execute(
            "return (async () => { const ui = window.dcUi; const n = 10000; const before = ui.model.events; const states = ['complete', 'initial', \
              'updating-pods-trust-both-cas', 'failed'];\
             const subclouds = [], steps = [];\
             for (let i = 1; i <= n; i++) {\
               subclouds.push({id: i, name: 'sc' + i, 'availability-status': i % 97 ? 'online' : 'offline',\
                 sync_status: 'out-of-sync', 'kube-rootca-expiry': '2026-12-16 00:00:00.000000'});\
               steps.push({id: i, cloud: 'sc' + i, state: states[i % 4], details: 'update 40% complete',\
                 'started-at': '2026-12-06 00:00:00.000000'}); }\
             const enc = new TextEncoder();\
             const sse = (id, name, data) => 'id: t-' + id + '\\r\\nevent: ' + name + '\\r\\ndata: ' +\
               JSON.stringify(data) + '\\r\\n\\r\\n';\
             const feed = (text) => { const chunks = [];\
               for (let i = 0; i < text.length; i += 8191) chunks.push(text.slice(i, i + 8191));\
               return ui.readEvents(new ReadableStream({start(c) { for (const x of chunks) c.enqueue(enc.encode(x));\
                 c.close(); }}), new AbortController().signal); };\
             let t = performance.now();\
             await feed(sse(1, 'snapshot', {strategy: {state: 'applying', 'subcloud-apply-type': 'parallel',\
               'max-parallel-subclouds': 500}, 'strategy-steps': steps, subclouds}));\
             ui.draw(); const snapshot = performance.now() - t;\
             const frames = [];\
             for (let round = 0; round < 7; round++) { let text = '';\
               for (let i = 1; i <= 200; i++) { const k = round * 200 + i;\
                 text += sse(1 + k, 'step', {id: k, cloud: 'sc' + k, state: 'complete', details: ''}); }\
               t = performance.now(); await feed(text); ui.draw(); frames.push(performance.now() - t); }\
             frames.sort((a, b) => a - b); const events = frames[3];\
             const counts = Object.fromEntries([...document.querySelectorAll('#counts tr')]\
               .map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)]));\
             const hosts = ['hosts trust-both-cas on controller-1: host 2 of 4; update 25% complete',\
               'pods trust-both-cas: started; update 37% complete',\
               'rolling back: hosts trust-old-ca: host 1 of 2: controller-0; rollback 50% complete',\
               'rolling back: pods trust-old-ca: restarted 1 of 7 workloads; rollback 62% complete']\
               .map((details) => ({...ui.stepPhaseHost({details}), percent: ui.stepPercent({details})}));\
             ui.apply('strategy', {...ui.model.strategy, 'extra-args': {rollback: true}}); ui.draw();\
             const rollbackHeader = document.getElementById('strategy-state').textContent;\
             return {snapshot, events, counts, hosts, rollbackHeader, seen: ui.model.events - before, last: ui.model.lastEventId,\
               rows: document.querySelectorAll('#subclouds tbody tr').length,\
               listed: document.getElementById('list-count').textContent}; })()",
            json!([]),
        )
        .unwrap();
    eprintln!("10,000 subclouds: {timing}");
    // Paged: 50 rows in the DOM, not 10,000.
    assert_eq!(timing["rows"], 50, "{timing}");
    assert_eq!(timing["listed"], "(10000 of 10000)", "{timing}");
    // Every event read through the page's own parser (CRLF line ends, chunks cut anywhere) and
    // counted: sc1..sc1400 complete, of which every fourth already was.
    assert_eq!(
        (timing["seen"].as_u64(), timing["last"].as_str()),
        (Some(1401), Some("t-1401")),
        "{timing}"
    );
    // The phase, host and percent the detail panel shows, from details as the controller writes them:
    // a rollback's step shows as a rollback.
    assert_eq!(
        timing["hosts"],
        json!([
            {"phase": "hosts trust-both-cas", "host": "controller-1", "percent": 25},
            {"phase": "pods trust-both-cas", "host": "", "percent": 37},
            {"phase": "rolling back: hosts trust-old-ca", "host": "controller-0", "percent": 50},
            {"phase": "rolling back: pods trust-old-ca", "host": "", "percent": 62}
        ]),
        "{timing}"
    );
    assert_eq!(timing["rollbackHeader"], "rollback applying", "{timing}");
    assert_eq!(
        timing["counts"],
        json!({"complete": 3550, "failed": 2150, "initial": 2150, "updating-pods-trust-both-cas": 2150}),
        "{timing}"
    );
    // The frame times are a figure for the README (9-10 ms for a round of events on the quiet 2-core
    // machine, a 60 Hz frame being 16.7 ms), printed above, never a pass/fail threshold.
}

#[test]
fn the_page_reconnects_with_last_event_id_after_a_controller_restart_and_follows_to_complete() {
    let mut sites = light(&["r1", "r2", "r3"]);
    sites[0].slow_pods_ms = 2000;
    let mut fleet = start(sites);
    let browser = open(&fleet);
    create_and_apply(&fleet, &["--subcloud-apply-type", "serial"]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "r1", "pods-trust-both-cas"))
    })
    .unwrap();
    let before = browser
        .execute("return window.dcUi.model.lastEventId", json!([]))
        .unwrap();
    assert!(before.is_string(), "{before}");

    fleet.kill_controller();
    fleet.start_controller().unwrap();
    // The page sent the last id it had (the new process answers it with a fresh snapshot: its epoch
    // differs) and follows the resumed update to the end.
    let stream = browser
        .wait_for(
            "the page's second stream",
            TIMEOUT,
            "const m = window.dcUi.model; return {connections: m.connections, resumedFrom: m.resumedFrom}",
            |v| v["connections"].as_u64().unwrap_or(0) >= 2,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stream["resumedFrom"].is_string(), "{stream}");
    assert_eq!(
        wait_page_state(&browser, &["complete", "failed"]),
        "complete"
    );
    let rest = rest_counts(&fleet);
    browser
        .wait_for("the page's counts", TIMEOUT, COUNTS, |v| {
            serde_json::from_value::<BTreeMap<String, u64>>(v.clone()).ok() == Some(rest.clone())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
