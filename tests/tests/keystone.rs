//! dc-rootca behind a real OpenStack Keystone (the pinned PyPI package, bootstrapped with SQLite and
//! served on loopback by `dc_test_support::keystone`): the controller validates Keystone tokens with its
//! own service user and maps their roles, and the real `dcmanager` CLI logs in from an openrc-style
//! environment and finds the API in the catalog.

mod common;

use std::time::{Duration, Instant};

use common::{SUBJECT, TIMEOUT, expiry, light};
use dc_controller::config::{AuthConfig, AuthKind, KeystoneConfig};
use dc_test_support::bin_path;
use dc_test_support::fleet::{Fleet, Site, wait_until};
use dc_test_support::keystone::{ADMIN_PROJECT, ADMIN_USER, Keystone, REGION, SERVICE_PROJECT};
use serde_json::{Value, json};

/// The controller's service user, as StarlingX has one per service in the `services` project.
const SERVICE_USER: &str = "dcmanager";
const PASSWORD: &str = "Test-password-1";
/// A tenant's project: its admins are not ours.
const TENANT_PROJECT: &str = "tenant-a";
/// How long the controller may take a validated token without asking Keystone again, in these tests.
const CACHE_TTL_SECS: u64 = 3;

/// A Keystone with the controller's service user, a reader and a user without any role, and a
/// controller (and, for the CLI, subclouds) that validates tokens there.
struct Stand {
    keystone: Keystone,
    fleet: Fleet,
    _dir: tempfile::TempDir,
}

fn stand(sites: Vec<Site>) -> Stand {
    let dir = tempfile::tempdir().expect("tempdir");
    let keystone = Keystone::start(&dir.path().join("keystone")).unwrap_or_else(|e| panic!("{e}"));
    let setup = || -> Result<(), dc_test_support::keystone::KeystoneError> {
        keystone.user(SERVICE_USER, PASSWORD, Some(("service", SERVICE_PROJECT)))?;
        keystone.user("operator-reader", PASSWORD, Some(("reader", ADMIN_PROJECT)))?;
        keystone.user("no-role", PASSWORD, None)?;
        keystone.user("tenant-admin", PASSWORD, Some(("admin", TENANT_PROJECT)))?;
        Ok(())
    };
    setup().unwrap_or_else(|e| panic!("{e}; see {}", keystone.log().display()));

    let mut fleet = Fleet::prepare(&dir.path().join("fleet"), sites).expect("fleet");
    fleet.auth = AuthConfig {
        kind: AuthKind::Keystone,
        tokens: Vec::new(),
        keystone: Some(KeystoneConfig {
            auth_url: keystone.auth_url.clone(),
            username: SERVICE_USER.to_owned(),
            password: PASSWORD.to_owned(),
            project_name: SERVICE_PROJECT.to_owned(),
            cache_ttl_secs: CACHE_TTL_SECS,
            ..KeystoneConfig::default()
        }),
    };
    fleet.start_controller().unwrap_or_else(|e| panic!("{e}"));

    // The catalog, as a StarlingX install registers dcmanager: public and internal in RegionOne, and a
    // decoy in another region that nothing serves.
    let url = format!("http://{}/v1.0", fleet.api);
    let catalog = || -> Result<(), dc_test_support::keystone::KeystoneError> {
        keystone.endpoint("dcmanager", "public", REGION, &url)?;
        keystone.endpoint("dcmanager", "internal", REGION, &url)?;
        keystone.region("RegionTwo")?;
        keystone.endpoint(
            "dcmanager",
            "public",
            "RegionTwo",
            "http://127.0.0.1:9/v1.0",
        )
    };
    catalog().unwrap_or_else(|e| panic!("{e}"));
    Stand {
        keystone,
        fleet,
        _dir: dir,
    }
}

/// One request to the controller's API with `token`: the status and the JSON body.
fn api(fleet: &Fleet, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}{path}", fleet.api);
    actix_rt::System::new().block_on(async {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let request = client
            .request(method.parse().expect("method"), &url)
            .insert_header(("X-Auth-Token", token));
        let mut response = match body {
            Some(b) => request.send_json(&b).await,
            None => request.send().await,
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let bytes = response.body().await.expect("body");
        (
            response.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

fn token(keystone: &Keystone, user: &str, project: Option<&str>) -> String {
    keystone
        .token(user, PASSWORD, project)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn keystone_tokens_are_validated_mapped_to_roles_and_revoked_within_the_ttl() {
    let mut stand = stand(Vec::new());
    let (keystone, fleet) = (&stand.keystone, &stand.fleet);

    // The bootstrap admin (admin on the admin project) reads and writes.
    let admin = keystone.admin_token().unwrap();
    let added = api(
        fleet,
        "POST",
        "/v1.0/subclouds",
        &admin,
        Some(json!({"name": "ks-site", "description": "Ottawa", "location": "YOW"})),
    );
    assert_eq!(added.0, 200, "{}", added.1);
    let (status, list) = api(fleet, "GET", "/v1.0/subclouds", &admin, None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["subclouds"][0]["name"], "ks-site", "{list}");

    // A reader reads, and may not write.
    let reader = token(keystone, "operator-reader", Some(ADMIN_PROJECT));
    let (status, list) = api(fleet, "GET", "/v1.0/subclouds", &reader, None);
    assert_eq!(
        (status, list["subclouds"][0]["name"].clone()),
        (200, json!("ks-site"))
    );
    let (status, body) = api(
        fleet,
        "POST",
        "/v1.0/subclouds",
        &reader,
        Some(json!({"name": "not-allowed"})),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["message"],
        "Forbidden: a reader token may not change anything"
    );

    // A valid token without any of our roles is forbidden; a token Keystone does not know is not one.
    let no_role = token(keystone, "no-role", None);
    let (status, body) = api(fleet, "GET", "/v1.0/subclouds", &no_role, None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("none of the roles"),
        "{body}"
    );
    // As dcmanager's policy: an admin of a tenant's project is no admin of the distributed cloud.
    let tenant_admin = token(keystone, "tenant-admin", Some(TENANT_PROJECT));
    let (status, body) = api(fleet, "GET", "/v1.0/subclouds", &tenant_admin, None);
    assert_eq!(status, 403, "{body}");
    for bogus in ["bogus-token", "gAAAAABnot-a-fernet-token-0123456789"] {
        let (status, body) = api(fleet, "GET", "/v1.0/subclouds", bogus, None);
        assert_eq!(status, 401, "{bogus}: {body}");
    }
    let (status, _) = api(fleet, "GET", "/v1.0/subclouds", &admin, None);
    assert_eq!(status, 200, "nothing changed for the admin");

    // A token revoked in Keystone is refused within the cache TTL of its last validation, and an
    // event stream it opened ends within that TTL of the next check (one TTL later at most).
    let revoked = token(keystone, "operator-reader", Some(ADMIN_PROJECT));
    assert_eq!(api(fleet, "GET", "/v1.0/subclouds", &revoked, None).0, 200);
    let mut stream = open_events(fleet, &revoked);
    keystone.revoke(&revoked).unwrap();
    let since = Instant::now();
    let ttl = Duration::from_secs(CACHE_TTL_SECS);
    let streamed = read_to_end_within(&mut stream, 2 * ttl + Duration::from_secs(5));
    assert!(
        streamed.contains("event: snapshot"),
        "the stream was open before the revocation: {streamed}"
    );
    wait_until(ttl + Duration::from_secs(10), || {
        Ok(api(fleet, "GET", "/v1.0/subclouds", &revoked, None).0 == 401)
    })
    .unwrap_or_else(|e| panic!("the revoked token was still taken: {e}"));
    let took = since.elapsed();
    assert!(
        took <= ttl + Duration::from_secs(2),
        "refused {took:?} after the revocation; the TTL is {ttl:?}"
    );

    // Keystone stopped: a token the controller has not validated yet gets a clear 503, and the
    // controller keeps running.
    let unseen = token(keystone, "operator-reader", Some(ADMIN_PROJECT));
    stand.keystone.stop();
    let fleet = &mut stand.fleet;
    let (status, body) = api(fleet, "GET", "/v1.0/subclouds", &unseen, None);
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message
            == "Cannot validate the token: Keystone is unreachable; the controller's log says why",
        "{body}"
    );
    let (status, body) = api(
        fleet,
        "POST",
        "/v1.0/subclouds",
        &unseen,
        Some(json!({"name": "x"})),
    );
    assert_eq!(status, 503, "never an accept: {body}");
    assert!(
        fleet.controller_exit().is_none(),
        "the controller is still running"
    );
}

/// `dcmanager` with an openrc's variables and neither DCMANAGER_URL nor OS_AUTH_TOKEN.
fn dcmanager(
    keystone: &Keystone,
    region: &str,
    password: &str,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(bin_path("dcmanager"))
        .args(args)
        .env_remove("DCMANAGER_URL")
        .env_remove("OS_AUTH_TOKEN")
        .env_remove("OS_INTERFACE")
        .env_remove("OS_CACERT")
        .env_remove("CLI_CONFIRMATIONS")
        .env("OS_AUTH_URL", &keystone.auth_url)
        .env("OS_USERNAME", ADMIN_USER)
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", ADMIN_PROJECT)
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_REGION_NAME", region)
        .env("OS_IDENTITY_API_VERSION", "3")
        .output()
        .expect("run dcmanager")
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "dcmanager failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_dcmanager_cli_logs_in_from_an_openrc_and_finds_the_api_in_the_catalog() {
    let stand = stand(light(&["ks1"]));
    let (keystone, fleet) = (&stand.keystone, &stand.fleet);
    let pw = keystone.admin_password.clone();
    let cli = |args: &[&str]| dcmanager(keystone, REGION, &pw, args);

    ok(&cli(&[
        "subcloud",
        "add",
        "--name",
        "ks1",
        "--description",
        "Ottawa",
        "--location",
        "YOW",
    ]));
    let _agent = fleet
        .spawn_agent_with(&fleet.sites[0], &fleet.agent_dir(0), "ks1")
        .expect("agent");
    let mut last = Value::Null;
    wait_until(TIMEOUT, || {
        last = serde_json::from_str(&ok(&cli(&["subcloud", "list", "-f", "json"])))
            .unwrap_or_default();
        Ok(last[0]["availability"] == "online" && last[0]["sync"] == "out-of-sync")
    })
    .unwrap_or_else(|e| panic!("{e}; last subcloud list: {last}"));

    let (date, _) = expiry();
    ok(&cli(&[
        "kube-rootca-update-strategy",
        "create",
        "--subject",
        SUBJECT,
        "--expiry-date",
        &date,
    ]));
    let strategy: Value = serde_json::from_str(&ok(&cli(&[
        "kube-rootca-update-strategy",
        "show",
        "-f",
        "json",
    ])))
    .expect("json");
    assert_eq!(strategy["state"], "initial", "{strategy}");
    let steps: Value =
        serde_json::from_str(&ok(&cli(&["strategy-step", "list", "-f", "json"]))).expect("json");
    assert_eq!(steps[0]["cloud"], "ks1", "{steps}");

    // The region picks the endpoint: RegionTwo's is the decoy nothing serves.
    let out = dcmanager(keystone, "RegionTwo", &pw, &["subcloud", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("127.0.0.1:9/v1.0"),
        "{err}"
    );
    // A wrong password is Keystone's refusal, said as such.
    let out = dcmanager(keystone, REGION, "wrong", &["subcloud", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Keystone refused the login of user admin on project admin"),
        "{err}"
    );
}

/// The event stream opened with `token` (the connection closes when the stream ends), read up to
/// the end of its response head.
fn open_events(fleet: &Fleet, token: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(fleet.api.as_str()).expect("connect");
    write!(
        stream,
        "GET /v1.0/sw-update-strategy/events HTTP/1.1\r\nHost: {}\r\nX-Auth-Token: {token}\r\nConnection: close\r\n\r\n",
        fleet.api
    )
    .expect("request");
    stream
}

/// Reads `stream` until the server closes it; fails the test if that takes longer than `limit`.
fn read_to_end_within(stream: &mut std::net::TcpStream, limit: Duration) -> String {
    use std::io::Read;
    let deadline = Instant::now() + limit;
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "still streaming {limit:?} later: {}",
            String::from_utf8_lossy(&text)
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the stream: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}
