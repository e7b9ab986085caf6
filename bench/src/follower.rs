//! The step follower: reads the controller's event stream (`GET /v1.0/sw-update-strategy/events`)
//! and records each subcloud's view changes with the instant their event arrived, for the
//! progress-latency figures (agent write -> event received).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dc_test_support::fleet::ADMIN_TOKEN;
use serde::Deserialize;
use serde_json::Value;

use crate::http::BodyStream;
use crate::latency::{Change, View};

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

/// How long the stream may stay silent (the controller sends a keep-alive every 15 s).
const SILENCE: Duration = Duration::from_secs(45);

/// Follows the event stream on its own thread (so the agents' load does not delay its reading) until
/// the strategy ends or `stop` is set. Says on `first` once the snapshot is in.
pub fn follow_steps(
    api: &str,
    stop: &AtomicBool,
    first: &std::sync::mpsc::Sender<()>,
) -> anyhow::Result<Followed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut stream =
            BodyStream::open(api, ADMIN_TOKEN, "/v1.0/sw-update-strategy/events").await?;
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
                    Ok(chunk) => chunk?,
                };
            heard = Instant::now();
            let Some(chunk) = chunk else {
                anyhow::bail!("the controller ended the event stream");
            };
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

fn state_of(strategy: &Value) -> String {
    strategy["state"].as_str().unwrap_or_default().to_owned()
}

/// Each subcloud's latest step row.
#[derive(Default)]
struct Steps {
    rows: HashMap<String, StepRow>,
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
        if seen.as_ref() != Some(&view) {
            changes
                .entry(row.cloud.clone())
                .or_default()
                .push(Change { at, view });
        }
        self.rows.insert(row.cloud.clone(), row);
    }
}
