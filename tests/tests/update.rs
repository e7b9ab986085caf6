//! A whole update over real processes: the controller, one agent per subcloud, driven by dcmanager.

mod common;

use common::*;
use dc_test_support::fleet::{Fleet, READER_TOKEN, Shape, Site};

fn update_all(mut sites: Vec<Site>, create_flags: &[&str], window: usize) {
    // One in-sync subcloud that must not be touched.
    let mut good = Site::new("in-sync-site", Shape::Light);
    good.ca_days = 3650;
    sites.push(good);
    let fleet = start(sites);
    let not_after = create_and_apply(&fleet, create_flags);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "steps: {steps:#?}");

    // Every out-of-sync subcloud had a step and completed it; the in-sync one had none.
    assert_eq!(steps.len(), fleet.sites.len() - 1, "{steps:#?}");
    assert!(steps.iter().all(|s| s["state"] == "complete"), "{steps:#?}");
    assert!(!steps.iter().any(|s| s["cloud"] == "in-sync-site"));
    let overlap = max_concurrent(&steps);
    assert!(
        overlap <= window,
        "{overlap} steps ran at once with max-parallel {window}: {steps:#?}"
    );

    let logs = logs_without_escape_codes(&fleet);
    assert_eq!(
        logs.len(),
        fleet.sites.len() + 1,
        "the controller's and each agent's"
    );

    for (i, site) in fleet.sites.iter().enumerate() {
        if site.in_sync() {
            assert_untouched(&fleet, i);
        } else {
            assert_new_ca(&fleet, i, not_after);
        }
    }
}

#[test]
fn parallel_update_respects_max_parallel_and_puts_the_new_ca_in_place() {
    let mut sites = light(&["p1", "p2", "p3"]);
    sites.push(Site::new("p4", Shape::Typical));
    update_all(sites, &["--max-parallel-subclouds", "2"], 2);
}

#[test]
fn serial_update_runs_one_subcloud_at_a_time() {
    update_all(
        light(&["s1", "s2", "s3"]),
        &["--subcloud-apply-type", "serial"],
        1,
    );
}

/// One update, watched as an operator's tools would: its JSON log lines, then `/metrics` as Prometheus
/// scrapes it, without and then with `metrics_require_token`.
#[test]
fn an_update_shows_in_json_logs_and_typed_prometheus_metrics() {
    let mut fleet = start_logging(light(&["json-site"]), LogFormat::Json);
    create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "steps: {steps:#?}");
    json_logs_name_the_subcloud_and_phase(&fleet);

    let (status, text) = scrape(&fleet.api, None);
    assert_eq!(status, 200, "{text}");
    typed_metrics_with_build_and_process_figures(&text);

    fleet.kill_controller();
    fleet.controller_settings.metrics_require_token = true;
    fleet.start_controller().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scrape(&fleet.api, None).0, 401);
    assert_eq!(scrape(&fleet.api, Some("not-a-token")).0, 401);
    let (status, text) = scrape(&fleet.api, Some(READER_TOKEN));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("dc_subclouds 1"), "{text}");
}

/// `GET /metrics` over a plain connection; answers the status and the body.
fn scrape(api: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(api).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("X-Auth-Token: {t}\r\n"));
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {api}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    if status == 200 {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    (status, body.to_owned())
}

/// The exposition as Prometheus reads it: every sample belongs to a family with a `# TYPE`, counters
/// end in `_total`, and the figures an operator alerts on are there.
fn typed_metrics_with_build_and_process_figures(text: &str) {
    let mut types = std::collections::BTreeMap::new();
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
            samples.insert(series.to_owned(), value);
        }
    }
    for series in samples.keys() {
        let name = series.split('{').next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "{series} has no # TYPE:\n{text}"
        );
    }
    for (name, kind) in &types {
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
    }
    for (name, kind) in [
        ("dc_subclouds", "gauge"),
        ("dc_steps", "gauge"),
        ("dc_strategies", "gauge"),
        ("dc_phase_duration_seconds", "histogram"),
        ("dc_rootca_build_info", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name}:\n{text}"
        );
    }
    let value = |series: &str| {
        samples
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series}:\n{text}"))
    };
    assert_eq!(value("dc_subclouds"), 1.0);
    assert_eq!(value("dc_strategies{state=\"complete\"}"), 1.0);
    assert_eq!(value("dc_steps{state=\"complete\"}"), 1.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") > 3.0);
    assert!(value("process_cpu_seconds_total") > 0.0);
    let now = dc_certs::now() as f64;
    let started = value("process_start_time_seconds");
    assert!(
        started <= now && started > now - 3600.0,
        "started {started}, now {now}"
    );
    let build = samples
        .iter()
        .find(|(s, _)| s.starts_with("dc_rootca_build_info{"))
        .unwrap_or_else(|| panic!("no build info:\n{text}"));
    assert!(
        build
            .0
            .contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.0.contains("commit=\""),
        "{build:?}"
    );
    assert_eq!(*build.1, 1.0);
    let phases: f64 = samples
        .iter()
        .filter(|(s, _)| s.starts_with("dc_phase_duration_seconds_count{"))
        .map(|(_, v)| v)
        .sum();
    assert!(phases >= 3.0, "every succeeded phase was timed:\n{text}");
}

fn json_logs_name_the_subcloud_and_phase(fleet: &Fleet) {
    let mut phases = std::collections::BTreeSet::new();
    for (name, text) in logs_without_escape_codes(fleet) {
        let mut lines = 0;
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
            for field in ["level", "target", "message", "timestamp"] {
                assert!(v[field].is_string(), "{name}: no {field}: {line}");
            }
            lines += 1;
            // The agent's update runs in its `agent` span (the subcloud) and each `phase` span.
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            let subcloud = spans.iter().find_map(|s| s["subcloud"].as_str());
            let phase = spans.iter().find_map(|s| s["phase"].as_str());
            if let (Some(subcloud), Some(phase)) = (subcloud, phase) {
                assert_eq!(name, "json-site", "{line}");
                assert_eq!(subcloud, "json-site", "{line}");
                assert!(v["span"]["name"].is_string(), "the innermost span: {line}");
                phases.insert(phase.to_owned());
            }
        }
        assert!(lines > 0, "{name} logged nothing");
    }
    assert!(
        phases.len() > 1,
        "the agent's lines name each phase they ran in: {phases:?}"
    );
}
