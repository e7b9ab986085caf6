//! The step sampler: reads the strategy and every step from the REST API at a fixed rate, recording
//! each subcloud's view changes for the progress-latency figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dc_test_support::fleet::ADMIN_TOKEN;
use serde::Deserialize;

use crate::http::Http;
use crate::latency::{Change, View};

#[derive(Deserialize)]
pub struct StepsPage {
    #[serde(rename = "strategy-steps")]
    pub steps: Vec<StepRow>,
}

#[derive(Deserialize)]
pub struct StepRow {
    pub cloud: String,
    pub state: String,
    pub details: String,
}

#[derive(Deserialize)]
struct StrategyRow {
    state: String,
}

/// What the sampler saw.
pub struct Sampled {
    /// Each subcloud's view changes, in time order.
    pub changes: HashMap<String, Vec<Change>>,
    /// The subclouds in step order.
    pub order: Vec<String>,
    /// The steps at the end.
    pub last: Vec<StepRow>,
    pub request_times: Vec<Duration>,
    pub strategy_state: String,
    /// When the strategy was first seen in its end state.
    pub ended: Option<Instant>,
}

/// Reads the strategy and every step at a fixed rate on its own thread (so the agents' load does not
/// delay it), until the strategy ends or `stop` is set. Says on `first` when the first sample is in.
pub fn sample_steps(
    api: &str,
    period: Duration,
    stop: &AtomicBool,
    first: &std::sync::mpsc::Sender<()>,
) -> anyhow::Result<Sampled> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut http = Http::new(api, ADMIN_TOKEN);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut views: HashMap<String, View> = HashMap::new();
        let mut sampled = Sampled {
            changes: HashMap::new(),
            order: Vec::new(),
            last: Vec::new(),
            request_times: Vec::new(),
            strategy_state: String::new(),
            ended: None,
        };
        let mut applied = false;
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let strategy: StrategyRow = http.get("/v1.0/sw-update-strategy").await?;
            let at_strategy = Instant::now();
            let asked = Instant::now();
            let body = http
                .request("GET", "/v1.0/sw-update-strategy/steps", None)
                .await?;
            let at = Instant::now();
            sampled.request_times.push(at - asked);
            let page: StepsPage = serde_json::from_slice(&body)?;
            for row in &page.steps {
                let view = View {
                    state: row.state.clone(),
                    details: row.details.clone(),
                };
                if views.get(&row.cloud) != Some(&view) {
                    sampled
                        .changes
                        .entry(row.cloud.clone())
                        .or_default()
                        .push(Change {
                            at,
                            view: view.clone(),
                        });
                    views.insert(row.cloud.clone(), view);
                }
            }
            if sampled.order.is_empty() {
                sampled.order = page.steps.iter().map(|s| s.cloud.clone()).collect();
                let _ = first.send(());
            }
            sampled.last = page.steps;
            applied |= strategy.state != "initial";
            sampled.strategy_state = strategy.state;
            if applied
                && matches!(
                    sampled.strategy_state.as_str(),
                    "complete" | "failed" | "aborted"
                )
            {
                sampled.ended = Some(at_strategy);
                break;
            }
        }
        Ok(sampled)
    })
}
