//! `--watch`: what changed between two polls of the strategy and its steps, how to draw it, and
//! how to wait while the controller cannot be reached. Pure functions; the polling loop is
//! `follow`.

use std::time::Duration;

use serde_json::Value;

use crate::format::{display_width, pad, text};

/// How a watched strategy ended, and the exit code that tells a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    Failed,
    Aborted,
}

impl Outcome {
    /// The final strategy states; every other state is still moving.
    pub fn of(state: &str) -> Option<Outcome> {
        match state {
            "complete" => Some(Outcome::Complete),
            "failed" => Some(Outcome::Failed),
            "aborted" => Some(Outcome::Aborted),
            _ => None,
        }
    }

    /// 0 complete, 2 failed, 3 aborted (1 stays for errors of the CLI itself).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Complete => 0,
            Outcome::Failed => 2,
            Outcome::Aborted => 3,
        }
    }
}

/// The part of a step that a watcher follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub cloud: String,
    pub state: String,
    pub details: String,
    /// When the step last changed, `YYYY-MM-DD HH:MM:SS`.
    pub at: String,
}

/// One poll: the strategy's state and its steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub state: String,
    pub at: String,
    pub steps: Vec<Step>,
}

/// The most recent of an object's timestamps, to the second (`updated-at` is null until the
/// first change).
fn stamp(object: &Value) -> String {
    ["updated-at", "finished-at", "started-at", "created-at"]
        .iter()
        .find_map(|key| object.get(key).and_then(Value::as_str))
        .map_or_else(|| "-".to_owned(), |s| s.chars().take(19).collect())
}

fn field(object: &Value, key: &str) -> String {
    object.get(key).map(text).unwrap_or_default()
}

impl Snapshot {
    /// From the strategy JSON and the `{"strategy-steps": [...]}` answer.
    pub fn from_json(strategy: &Value, steps: &Value) -> Snapshot {
        let steps = steps
            .get("strategy-steps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| Step {
                cloud: field(s, "cloud"),
                state: field(s, "state"),
                details: field(s, "details"),
                at: stamp(s),
            })
            .collect();
        Snapshot {
            state: field(strategy, "state"),
            at: stamp(strategy),
            steps,
        }
    }
}

/// One line per change since `before` (everything on the first poll), for a non-terminal:
/// `2026-11-28 10:00:01 subcloud3 updating-pods-trust-both-cas pods trust-both-cas: ...`.
pub fn changes(before: Option<&Snapshot>, now: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    for step in &now.steps {
        let known = before.and_then(|b| b.steps.iter().find(|s| s.cloud == step.cloud));
        if known.is_some_and(|k| k.state == step.state && k.details == step.details) {
            continue;
        }
        let line = format!("{} {} {} {}", step.at, step.cloud, step.state, step.details);
        lines.push(line.trim_end().to_owned());
    }
    if before.is_none_or(|b| b.state != now.state) {
        lines.push(format!("{} strategy {}", now.at, now.state));
    }
    lines
}

/// The percentage in a step's details, from "... update 45% complete" (or the original's
/// "apply phase is 0% complete").
pub fn percent(details: &str) -> Option<u8> {
    let end = details.find("% complete")?;
    let digits = &details[..end];
    let start = digits
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    digits[start..].parse::<u8>().ok().map(|p| p.min(100))
}

const BAR_WIDTH: usize = 30;

/// `[#############-----------------]  45%`.
pub fn progress_bar(percent: u8) -> String {
    let filled = usize::from(percent.min(100)) * BAR_WIDTH / 100;
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled)
    )
}

/// A step that is neither waiting nor finished.
pub fn running(step: &Step) -> bool {
    !matches!(
        step.state.as_str(),
        "initial" | "complete" | "failed" | "aborted"
    )
}

/// Below the table in a terminal: the strategy state and one bar per running subcloud.
pub fn progress_lines(now: &Snapshot) -> String {
    let width = now
        .steps
        .iter()
        .map(|s| display_width(&s.cloud))
        .max()
        .unwrap_or(0);
    let mut out = format!("strategy {}\n", now.state);
    for step in now.steps.iter().filter(|s| running(s)) {
        let bar = progress_bar(percent(&step.details).unwrap_or(0));
        out += &format!("{}  {bar}  {}\n", pad(&step.cloud, width), step.state);
    }
    out
}

/// The wait before reconnect attempt `attempt` (0 first): 250 ms doubling up to 5 s, so a restarted
/// controller is found again within seconds while one that stays down is not hammered.
pub fn backoff(attempt: u32) -> Duration {
    let millis = 250u64.saturating_mul(1 << attempt.min(16));
    Duration::from_millis(millis.min(5_000))
}

/// `HH:MM:SS` (UTC) of a Unix time.
pub fn clock(unix_secs: u64) -> String {
    let day = unix_secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// What the watch shows while it cannot poll: since when, for how long, and the last error.
pub fn reconnecting(since_unix: u64, now_unix: u64, reason: &str) -> String {
    format!(
        "reconnecting since {} UTC ({}s): {reason}",
        clock(since_unix),
        now_unix.saturating_sub(since_unix)
    )
}

/// What the watch says when polling works again.
pub fn reconnected(since_unix: u64, now_unix: u64) -> String {
    format!(
        "reconnected at {} UTC after {}s",
        clock(now_unix),
        now_unix.saturating_sub(since_unix)
    )
}

/// ANSI: clear the screen and home the cursor, so each poll redraws in place.
pub const CLEAR: &str = "\x1b[2J\x1b[H";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(state: &str, steps: &[(&str, &str, &str)]) -> Snapshot {
        let steps: Vec<Value> = steps
            .iter()
            .map(|(cloud, state, details)| {
                json!({"cloud": cloud, "state": state, "details": details,
                    "updated-at": "2026-11-28 10:00:01.123456", "created-at": "2026-11-28 09:00:00.000000"})
            })
            .collect();
        Snapshot::from_json(
            &json!({"state": state, "updated-at": null, "created-at": "2026-11-28 09:59:59.000000"}),
            &json!({ "strategy-steps": steps }),
        )
    }

    #[test]
    fn first_poll_reports_everything_then_only_changes() {
        let first = snapshot(
            "applying",
            &[
                ("subcloud1", "initial", ""),
                ("subcloud3", "update-started", ""),
            ],
        );
        assert_eq!(
            changes(None, &first),
            [
                "2026-11-28 10:00:01 subcloud1 initial",
                "2026-11-28 10:00:01 subcloud3 update-started",
                "2026-11-28 09:59:59 strategy applying"
            ]
        );
        let details = "pods trust-both-cas: 3 of 8 workloads restarted; update 45% complete";
        let second = snapshot(
            "applying",
            &[
                ("subcloud1", "initial", ""),
                ("subcloud3", "updating-pods-trust-both-cas", details),
            ],
        );
        assert_eq!(
            changes(Some(&first), &second),
            [
                "2026-11-28 10:00:01 subcloud3 updating-pods-trust-both-cas pods trust-both-cas: 3 of 8 workloads restarted; update 45% complete"
            ]
        );
        assert!(changes(Some(&second), &second).is_empty());
        let done = snapshot(
            "complete",
            &[
                ("subcloud1", "initial", ""),
                ("subcloud3", "updating-pods-trust-both-cas", details),
            ],
        );
        assert_eq!(
            changes(Some(&second), &done),
            ["2026-11-28 09:59:59 strategy complete"]
        );
    }

    #[test]
    fn percent_is_read_from_details() {
        assert_eq!(
            percent("pods trust-both-cas: 3 of 8 workloads restarted; update 45% complete"),
            Some(45)
        );
        assert_eq!(percent("apply phase is 0% complete"), Some(0));
        assert_eq!(percent("update 100% complete"), Some(100));
        assert_eq!(percent("waiting for the agent"), None);
        assert_eq!(percent("% complete"), None);
    }

    #[test]
    fn bars_for_running_subclouds_only() {
        assert_eq!(progress_bar(0), "[------------------------------]   0%");
        assert_eq!(progress_bar(50), "[###############---------------]  50%");
        assert_eq!(progress_bar(100), "[##############################] 100%");
        let now = snapshot(
            "applying",
            &[
                ("subcloud1", "complete", ""),
                ("sc2", "updating-host-trust-both-cas", "update 10% complete"),
            ],
        );
        assert_eq!(
            progress_lines(&now),
            "strategy applying\nsc2        [###---------------------------]  10%  updating-host-trust-both-cas\n"
        );
    }

    #[test]
    fn reconnecting_backs_off_and_says_since_when() {
        let waits: Vec<u64> = (0..8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
        // 2026-12-05 20:45:03 UTC
        let since = 1_796_503_503;
        assert_eq!(clock(since), "20:45:03");
        assert_eq!(
            reconnecting(since, since + 12, "Connection refused"),
            "reconnecting since 20:45:03 UTC (12s): Connection refused"
        );
        assert_eq!(
            reconnected(since, since + 15),
            "reconnected at 20:45:18 UTC after 15s"
        );
    }

    #[test]
    fn bars_line_up_under_wide_names() {
        let now = snapshot(
            "applying",
            &[
                ("東京", "update-started", "update 0% complete"),
                ("ottawa", "update-started", "update 0% complete"),
            ],
        );
        let lines: Vec<String> = progress_lines(&now)
            .lines()
            .skip(1)
            .map(String::from)
            .collect();
        assert_eq!(
            lines
                .iter()
                .map(|l| display_width(l.split('[').next().unwrap()))
                .collect::<Vec<_>>(),
            [8, 8]
        );
    }

    #[test]
    fn outcomes_and_exit_codes() {
        assert_eq!(Outcome::of("complete").map(Outcome::exit_code), Some(0));
        assert_eq!(Outcome::of("failed").map(Outcome::exit_code), Some(2));
        assert_eq!(Outcome::of("aborted").map(Outcome::exit_code), Some(3));
        assert_eq!(Outcome::of("abort requested"), None);
    }
}
