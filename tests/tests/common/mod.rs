//! What the multi-process tests share: fleets in temporary directories, step-time checks.

#![allow(dead_code, reason = "each test file uses its own subset")]

use std::time::Duration;

pub use dc_config::logging::LogFormat;
use dc_test_support::fleet::{Fleet, Shape, Site, wait_until};
use serde_json::Value;

pub const SUBJECT: &str = "C=CA ST=ON L=OTT O=WR OU=STX CN=fleet-test-ca";
/// Generous: CI has two cores and runs several fleets at once.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// A fleet in a temporary directory that lives as long as the value (logs stay for a failing test's
/// message: every error names the log file).
pub struct TestFleet {
    pub fleet: Fleet,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestFleet {
    type Target = Fleet;
    fn deref(&self) -> &Fleet {
        &self.fleet
    }
}

impl std::ops::DerefMut for TestFleet {
    fn deref_mut(&mut self) -> &mut Fleet {
        &mut self.fleet
    }
}

pub fn start(sites: Vec<Site>) -> TestFleet {
    start_logging(sites, LogFormat::Text)
}

/// [`start`] with the controller and the agents logging in `format`.
pub fn start_logging(sites: Vec<Site>, format: LogFormat) -> TestFleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fleet = Fleet::prepare(dir.path(), sites).unwrap_or_else(|e| panic!("{e}"));
    fleet.log_format = format;
    fleet
        .launch()
        .unwrap_or_else(|e| panic!("fleet did not start: {e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    TestFleet { fleet, _dir: dir }
}

/// The fleet's log files (`logs/*.log`) and their text, each checked free of ANSI escape codes: the
/// processes write to files, never a terminal.
pub fn logs_without_escape_codes(fleet: &Fleet) -> Vec<(String, String)> {
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(fleet.dir.join("logs")).expect("logs/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("log");
        assert!(
            !text.contains('\x1b'),
            "{} carries escape codes:\n{text}",
            path.display()
        );
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        logs.push((name.into_owned(), text));
    }
    logs
}

pub fn light(names: &[&str]) -> Vec<Site> {
    names.iter().map(|n| Site::new(n, Shape::Light)).collect()
}

/// The expiry date two years ahead and its last second.
pub fn expiry() -> (String, i64) {
    let date = dc_certs::ExpiryDate::of(dc_certs::now() + 2 * 365 * 86400).expect("date");
    (date.to_string(), date.not_after())
}

pub fn steps(fleet: &Fleet) -> Vec<Value> {
    fleet
        .dcmanager_json(&["strategy-step", "list"])
        .unwrap_or_else(|e| panic!("{e}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The largest number of steps that were running at the same instant, from their started/finished
/// times (datetime strings sort like the times they name).
pub fn max_concurrent(steps: &[Value]) -> usize {
    let mut events: Vec<(String, i32)> = Vec::new();
    for s in steps {
        if let (Some(a), Some(b)) = (s["started_at"].as_str(), s["finished_at"].as_str()) {
            events.push((a.to_owned(), 1));
            events.push((b.to_owned(), -1));
        }
    }
    // At equal times a finish frees its place before the next start takes it.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max as usize
}

/// Output of a dcmanager command that must fail: (stderr, exit code).
pub fn failing(fleet: &Fleet, args: &[&str]) -> String {
    let out = fleet.dcmanager_output(args).expect("dcmanager runs");
    assert!(
        !out.status.success(),
        "dcmanager {} succeeded",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates the strategy with the test subject, an expiry two years ahead and `flags`, then applies it.
/// Returns the new CA's expected `not_after`.
pub fn create_and_apply(fleet: &Fleet, flags: &[&str]) -> i64 {
    let (date, not_after) = expiry();
    let mut all = vec!["--subject", SUBJECT, "--expiry-date", &date];
    all.extend_from_slice(flags);
    create_with_and_apply(fleet, &all);
    not_after
}

/// Creates the strategy with exactly `flags` (no subject or expiry of its own), then applies it.
pub fn create_with_and_apply(fleet: &Fleet, flags: &[&str]) {
    let mut create = vec!["kube-rootca-update-strategy", "create"];
    create.extend_from_slice(flags);
    fleet
        .dcmanager_ok(&create)
        .unwrap_or_else(|e| panic!("{e}"));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "apply"])
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Deletes the finished strategy and waits until it is gone, so a new one can be created.
pub fn delete_strategy(fleet: &Fleet) {
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "delete", "--yes"])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(TIMEOUT, || {
        let out = fleet.dcmanager_output(&["kube-rootca-update-strategy", "show"])?;
        Ok(!out.status.success())
    })
    .unwrap_or_else(|e| panic!("the strategy is not gone: {e}"));
}

/// Waits for the strategy to end; returns its final state and the steps.
pub fn finish(fleet: &Fleet) -> (String, Vec<Value>) {
    let strategy = fleet
        .wait_strategy(&["complete", "failed", "aborted"], TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    (
        strategy["state"].as_str().unwrap_or_default().to_owned(),
        steps(fleet),
    )
}

/// Whether `cloud`'s step is in a state naming `phase` (e.g. `pods-trust-both-cas`).
pub fn in_phase(fleet: &Fleet, cloud: &str, phase: &str) -> bool {
    steps(fleet)
        .iter()
        .any(|s| s["cloud"] == cloud && s["state"].as_str().unwrap_or_default().contains(phase))
}

/// Checks that site `i` holds the new CA alone, with the test subject and `not_after`.
pub fn assert_new_ca(fleet: &Fleet, i: usize, not_after: i64) {
    fleet
        .verify_site(i, Some((SUBJECT, not_after)), SUBJECT)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Checks that site `i` was not updated.
pub fn assert_untouched(fleet: &Fleet, i: usize) {
    fleet
        .verify_site(i, None, SUBJECT)
        .unwrap_or_else(|e| panic!("{e}"));
}
