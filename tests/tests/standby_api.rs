//! Two `dc-controller` processes on one real PostgreSQL: the standby, under a service manager's
//! `NOTIFY_SOCKET`, reports READY at once with whom it waits for and pings the watchdog; its REST API
//! serves reads from the database as the leader shows them and answers changes 503 naming the leader;
//! `dcmanager` given several URLs ([standby, leader], [dead, standby]) follows it to create, apply and
//! list; once the leader is killed, the standby leads and takes changes on the same API, no restart.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Instant;

use common::*;
use dc_test_support::fleet::{ADMIN_TOKEN, Fleet, wait_until};
use dc_test_support::postgres::TestPostgres;
use dc_test_support::process::{Child, bin_path, wait_for_json};
use serde_json::Value;

/// A loopback address nothing listens on.
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// One HTTP exchange with the admin token: (status, `X-Leader-Url`, JSON body or null).
fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Option<String>, Value) {
    actix_rt::System::new().block_on(async {
        let request = awc::Client::new()
            .request(method.parse().expect("method"), url)
            .insert_header(("X-Auth-Token", ADMIN_TOKEN));
        let sent = match body {
            Some(b) => request.send_json(&b).await,
            None => request.send().await,
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let leader = response
            .headers()
            .get("X-Leader-Url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.body().limit(1 << 26).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (response.status().as_u16(), leader, json)
    })
}

/// A GET's status and body.
fn read(base: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = call("GET", &format!("http://{base}{path}"), None);
    (status, body)
}

fn get(base: &str, path: &str) -> Value {
    let (status, body) = read(base, path);
    assert_eq!(status, 200, "GET {base}{path}: {body}");
    body
}

/// A subcloud's JSON without what only the agents' sessions tell (a standby has none, as a restarted
/// controller has none before its agents reconnect).
fn recorded(mut subcloud: Value) -> Value {
    for live in [
        "availability-status",
        "endpoint_sync_status",
        "sync_status",
        "kube-rootca-subject",
        "kube-rootca-serial",
        "kube-rootca-expiry",
        "kube-rootca-alarms",
        "last-heartbeat-at",
        "kube-rootca-update",
    ] {
        subcloud.as_object_mut().expect("object").remove(live);
    }
    subcloud
}

/// `dcmanager` with `urls` as `DCMANAGER_URL`: its stdout, the command having succeeded.
fn dcmanager(fleet: &Fleet, urls: &[&str], args: &[&str]) -> String {
    let list: Vec<String> = urls.iter().map(|u| format!("http://{u}/v1.0")).collect();
    let out = fleet
        .dcmanager(args)
        .env("DCMANAGER_URL", list.join(","))
        .output()
        .expect("dcmanager runs");
    assert!(
        out.status.success(),
        "dcmanager {} via {list:?}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The service manager's side: the datagrams the controller sends, until one satisfies `f`.
fn notified(socket: &UnixDatagram, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no notification {what}");
        socket.set_read_timeout(Some(left)).expect("timeout");
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification {what}: {e}"));
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if f(&message) {
            return message;
        }
    }
}

fn spawn_standby(fleet: &Fleet, api: &str, agents: &str, notify: &Path, ready: &Path) -> Child {
    let config = fleet.dir.join("controller.toml");
    Child::spawn_with_env(
        &bin_path("dc-controller"),
        ["--config".as_ref(), config.as_os_str()],
        &[
            ("NOTIFY_SOCKET", notify.as_os_str()),
            ("WATCHDOG_USEC", "2000000".as_ref()),
            ("DC_CONTROLLER__API__LISTEN", api.as_ref()),
            ("DC_CONTROLLER__AGENTS__LISTEN", agents.as_ref()),
            ("DC_CONTROLLER__READY_FILE", ready.as_os_str()),
        ],
        &fleet.log("standby"),
    )
    .expect("standby")
}

#[test]
fn a_standby_serves_reads_names_the_leader_for_changes_and_the_cli_follows_it() {
    let pg = TestPostgres::start().expect("postgresql");
    let url = pg.create_database("dc").expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fleet =
        Fleet::prepare(dir.path(), light(&["s1", "s2"])).unwrap_or_else(|e| panic!("{e}"));
    fleet.database = url.into();
    fleet.database_ca = Some(pg.ca());
    let standby_agents = free_address();
    fleet.standby_agent_addresses = vec![standby_agents.clone()];
    fleet.launch().unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let leader = fleet.api.clone();

    // The standby, as systemd would start it: READY at once, with whom it waits for, and pings.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let standby_api = free_address();
    let standby_ready = dir.path().join("standby.ready.json");
    let standby = spawn_standby(
        &fleet,
        &standby_api,
        &standby_agents,
        &notify_path,
        &standby_ready,
    );
    let ready = notified(&notify, "READY", |m| m.contains("READY=1"));
    assert!(
        ready.contains("STATUS=standby: waiting for the lease held by dc-controller pid"),
        "{ready}"
    );
    notified(&notify, "WATCHDOG", |m| m.contains("WATCHDOG=1"));
    assert!(
        !standby_ready.exists(),
        "a standby does not announce leading"
    );

    // The CLI: reads from the first URL (the standby), changes followed to the leader it names.
    let (date, not_after) = expiry();
    let both = [standby_api.as_str(), leader.as_str()];
    let dead = free_address();
    let after_dead = [dead.as_str(), standby_api.as_str()];
    let list = dcmanager(&fleet, &both, &["subcloud", "list"]);
    assert!(list.contains("s1") && list.contains("s2"), "{list}");
    dcmanager(
        &fleet,
        &both,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            SUBJECT,
            "--expiry-date",
            &date,
        ],
    );
    dcmanager(
        &fleet,
        &after_dead,
        &["kube-rootca-update-strategy", "apply"],
    );
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    for i in 0..2 {
        assert_new_ca(&fleet, i, not_after);
    }

    // Reads: the leader's JSON (a view may be a second old: wait for it to catch up).
    for path in [
        "/v1.0/sw-update-strategy",
        "/v1.0/sw-update-strategy/steps",
        "/v1.0/sw-update-strategy/steps/s1",
        "/v1.0/subcloud-groups",
        "/v1.0/sw-update-options",
        "/v1.0/openapi.json",
        "/health",
    ] {
        wait_until(TIMEOUT, || {
            let leaders = (200, get(&leader, path));
            Ok(read(&standby_api, path) == leaders)
        })
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let subclouds = |base: &str| -> Vec<Value> {
        let list = read(base, "/v1.0/subclouds").1["subclouds"].clone();
        let list: Vec<Value> = serde_json::from_value(list).unwrap_or_default();
        list.into_iter().map(recorded).collect()
    };
    wait_until(
        TIMEOUT,
        || Ok(subclouds(&standby_api) == subclouds(&leader)),
    )
    .unwrap();
    let shown = get(&standby_api, "/v1.0/subclouds/s1");
    assert_eq!(
        recorded(shown.clone()),
        recorded(get(&leader, "/v1.0/subclouds/s1"))
    );
    assert_eq!(shown["availability-status"], "offline", "{shown}");
    // The CLI lists through the standby (the first URL that connects), the view caught up.
    let listed = dcmanager(&fleet, &after_dead, &["strategy-step", "list"]);
    assert!(
        listed.contains("s1") && listed.contains("complete"),
        "{listed}"
    );

    // Changes: 503, the leader's URL in the header and the body; the event stream too.
    let advertised = format!("http://{leader}");
    let (status, header, body) = call(
        "POST",
        &format!("http://{standby_api}/v1.0/subcloud-groups"),
        Some(serde_json::json!({"name": "g1"})),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(header.as_deref(), Some(advertised.as_str()));
    assert_eq!(body["leader"], advertised.as_str(), "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("standby") && m.contains(&advertised)),
        "{body}"
    );
    let (status, header, _) = call(
        "GET",
        &format!("http://{standby_api}/v1.0/sw-update-strategy/events"),
        None,
    );
    assert_eq!(
        (status, header.as_deref()),
        (503, Some(advertised.as_str()))
    );

    // The leader dies: the standby leads, on the same API, without a restart.
    fleet.kill_controller();
    wait_for_json(&standby_ready, TIMEOUT).expect("the standby leads");
    let leading = notified(&notify, "leading", |m| m.contains("STATUS=leading"));
    assert!(leading.contains(&standby_api), "{leading}");
    dcmanager(
        &fleet,
        &after_dead,
        &["kube-rootca-update-strategy", "delete"],
    );
    let (status, _, body) = call(
        "GET",
        &format!("http://{standby_api}/v1.0/sw-update-strategy"),
        None,
    );
    assert_eq!(
        status, 404,
        "the strategy was deleted by the new leader: {body}"
    );
    drop(standby);
}
