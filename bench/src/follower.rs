//! The step follower: reads the controller's event stream (`GET /v1.0/sw-update-strategy/events`)
//! and records each subcloud's view changes with the instant their event arrived, for the
//! progress-latency figures (agent write -> event received). When the controller goes away (a failover,
//! a restart) it reopens the stream at the controller's current address and carries on from the new
//! snapshot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dc_test_support::fleet::ADMIN_TOKEN;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{BodyStream, HttpError};
use crate::latency::{Change, View};
use dc_controller::model::step_state::COMPLETE;

const EVENTS: &str = "/v1.0/sw-update-strategy/events";

#[derive(Deserialize)]
pub struct StepsPage {
    #[serde(rename = "strategy-steps")]
    pub steps: Vec<StepRow>,
}

#[derive(Clone, Deserialize)]
pub struct StepRow {
    pub cloud: String,
    pub state: String,
    pub details: String,
    /// When the step started (`None` until it has): a step run again would show a new one.
    #[serde(rename = "started-at", default)]
    pub started_at: Option<String>,
}

/// The subclouds whose step had started in `before` and shows another start (or none) in `after`:
/// steps run again instead of resumed.
pub fn restarted(before: &[StepRow], after: &[StepRow]) -> Vec<String> {
    let now: HashMap<&str, &Option<String>> = after
        .iter()
        .map(|s| (s.cloud.as_str(), &s.started_at))
        .collect();
    before
        .iter()
        .filter(|s| s.started_at.is_some())
        .filter(|s| now.get(s.cloud.as_str()) != Some(&&s.started_at))
        .map(|s| s.cloud.clone())
        .collect()
}

/// What the follower saw.
pub struct Followed {
    /// Each subcloud's view changes, in time order.
    pub changes: HashMap<String, Vec<Change>>,
    /// The subclouds in step order.
    pub order: Vec<String>,
    /// The steps at the end.
    pub last: Vec<StepRow>,
    /// Events received (the snapshot included).
    pub events: usize,
    pub strategy_state: String,
    /// When the strategy's end state arrived.
    pub ended: Option<Instant>,
}

/// How long the stream may stay silent, or the controller unreachable (the controller sends a
/// keep-alive every 15 s).
const SILENCE: Duration = Duration::from_secs(45);

/// Follows the event stream on its own thread (so the agents' load does not delay its reading) until
/// the strategy ends or `stop` is set. Says on `first` once the snapshot is in, and on `complete` how
/// many steps are complete as events arrive. `api` is the controller's API address, changed by whoever
/// replaces the controller.
pub fn follow_steps(
    api: &Mutex<String>,
    stop: &AtomicBool,
    first: &std::sync::mpsc::Sender<()>,
    complete: &tokio::sync::watch::Sender<usize>,
) -> anyhow::Result<Followed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut stream = BodyStream::open(&address(api), ADMIN_TOKEN, EVENTS).await?;
        let mut parser = dc_sse::Parser::default();
        let mut steps = Steps::default();
        let mut followed = Followed {
            changes: HashMap::new(),
            order: Vec::new(),
            last: Vec::new(),
            events: 0,
            strategy_state: String::new(),
            ended: None,
        };
        let mut applied = false;
        let mut heard = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let chunk =
                match tokio::time::timeout(Duration::from_secs(1), stream.next_chunk()).await {
                    Err(_) if heard.elapsed() > SILENCE => {
                        anyhow::bail!("the event stream was silent for {SILENCE:?}")
                    }
                    Err(_) => continue, // look at `stop` again
                    Ok(Ok(Some(chunk))) => chunk,
                    Ok(Ok(None) | Err(_)) => {
                        // The controller went away: follow the one that replaces it.
                        match reopen(api, stop).await? {
                            Some(again) => stream = again,
                            None => break,
                        }
                        parser = dc_sse::Parser::default();
                        heard = Instant::now();
                        continue;
                    }
                };
            heard = Instant::now();
            let at = Instant::now();
            for event in parser.push(&chunk) {
                followed.events += 1;
                let data: Value = serde_json::from_str(&event.data)?;
                match event.name.as_str() {
                    "snapshot" => {
                        let rows: Vec<StepRow> =
                            serde_json::from_value(data["strategy-steps"].clone())?;
                        followed.order = rows.iter().map(|r| r.cloud.clone()).collect();
                        for row in rows {
                            steps.see(row, at, &mut followed.changes);
                        }
                        followed.strategy_state = state_of(&data["strategy"]);
                        let _ = first.send(());
                    }
                    "step" => steps.see(serde_json::from_value(data)?, at, &mut followed.changes),
                    "strategy" => followed.strategy_state = state_of(&data),
                    _ => {}
                }
            }
            complete.send_replace(steps.complete);
            applied |= !matches!(followed.strategy_state.as_str(), "initial" | "");
            if applied
                && matches!(
                    followed.strategy_state.as_str(),
                    "complete" | "failed" | "aborted"
                )
            {
                followed.ended = Some(at);
                break;
            }
        }
        followed.last = followed
            .order
            .iter()
            .filter_map(|cloud| steps.rows.get(cloud).cloned())
            .collect();
        Ok(followed)
    })
}

fn address(api: &Mutex<String>) -> String {
    api.lock()
        .map_or_else(|e| e.into_inner().clone(), |a| a.clone())
}

/// Opens the stream again at the controller's current address, trying for up to [`SILENCE`];
/// `None` when `stop` is set meanwhile.
async fn reopen(api: &Mutex<String>, stop: &AtomicBool) -> anyhow::Result<Option<BodyStream>> {
    let deadline = Instant::now() + SILENCE;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let last: HttpError = match BodyStream::open(&address(api), ADMIN_TOKEN, EVENTS).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            anyhow::bail!(
                "the event stream ended and could not be reopened for {SILENCE:?}: {last}"
            );
        }
        // Another process is taking over: there is no event to await.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_of(strategy: &Value) -> String {
    strategy["state"].as_str().unwrap_or_default().to_owned()
}

/// Each subcloud's latest step row.
#[derive(Default)]
struct Steps {
    rows: HashMap<String, StepRow>,
    /// How many of `rows` are complete.
    complete: usize,
}

impl Steps {
    /// Takes `row` as its subcloud's step, recording a change of its view at `at`.
    fn see(&mut self, row: StepRow, at: Instant, changes: &mut HashMap<String, Vec<Change>>) {
        let view = View {
            state: row.state.clone(),
            details: row.details.clone(),
        };
        let seen = self.rows.get(&row.cloud).map(|r| View {
            state: r.state.clone(),
            details: r.details.clone(),
        });
        let was_complete = seen.as_ref().is_some_and(|v| v.state == COMPLETE);
        match (was_complete, view.state == COMPLETE) {
            (false, true) => self.complete += 1,
            (true, false) => self.complete -= 1,
            _ => {}
        }
        if seen.as_ref() != Some(&view) {
            changes
                .entry(row.cloud.clone())
                .or_default()
                .push(Change { at, view });
        }
        self.rows.insert(row.cloud.clone(), row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cloud: &str, state: &str, started_at: Option<&str>) -> StepRow {
        StepRow {
            cloud: cloud.to_owned(),
            state: state.to_owned(),
            details: String::new(),
            started_at: started_at.map(str::to_owned),
        }
    }

    #[test]
    fn a_step_started_again_or_forgotten_is_restarted_and_a_new_start_is_not() {
        let before = [
            row("a", "complete", Some("t1")),
            row("b", "applying", Some("t2")),
            row("c", "initial", None),
            row("d", "applying", Some("t4")),
            row("e", "applying", Some("t5")),
        ];
        let after = [
            row("a", "complete", Some("t1")),
            row("b", "complete", Some("t2")),
            row("c", "complete", Some("t9")),
            row("d", "complete", Some("t8")),
            row("e", "complete", None),
        ];
        assert_eq!(restarted(&before, &after), ["d", "e"]);
        assert!(restarted(&before, &before).is_empty());
    }

    #[test]
    fn completed_steps_are_counted_as_their_rows_change() {
        let mut steps = Steps::default();
        let mut changes = HashMap::new();
        let at = Instant::now();
        steps.see(row("a", "applying", None), at, &mut changes);
        steps.see(row("a", COMPLETE, None), at, &mut changes);
        steps.see(row("a", COMPLETE, None), at, &mut changes);
        steps.see(row("b", COMPLETE, None), at, &mut changes);
        assert_eq!(steps.complete, 2);
        // A new snapshot after a failover shows a step as it is now.
        steps.see(row("b", "applying", None), at, &mut changes);
        assert_eq!(steps.complete, 1);
    }
}
