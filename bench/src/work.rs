//! What the agents measured of their own work, from the link events they recorded: the ideal the
//! orchestration is compared with, and the messages whose arrival in the API the latency figures time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use dc_agent::link::{LinkEvent, Traffic};
use dc_protocol::{AgentMessage, Command, Phase, PhaseOutcome};

use crate::latency::{Emission, Expected};

/// Each agent's work as it measured it: Start received to its last phase result written.
#[derive(Default)]
pub struct AgentWork {
    /// When each agent received its Start.
    pub started: HashMap<String, Instant>,
    pub total: HashMap<String, Duration>,
    pub phases: BTreeMap<Phase, Vec<Duration>>,
}

impl AgentWork {
    pub fn from_events(events: &[LinkEvent]) -> Self {
        let mut work = Self::default();
        let mut since: HashMap<&str, (Instant, Instant)> = HashMap::new();
        for e in events {
            match &e.traffic {
                Traffic::Received(Command::Start { .. }) => {
                    since.entry(&e.subcloud).or_insert((e.at, e.at));
                    work.started.entry(e.subcloud.clone()).or_insert(e.at);
                }
                Traffic::Sent(message) => {
                    let AgentMessage::PhaseResult(r) = message.as_ref() else {
                        continue;
                    };
                    if r.outcome != PhaseOutcome::Succeeded {
                        continue;
                    }
                    let Some((start, phase_start)) = since.get_mut(e.subcloud.as_str()) else {
                        continue;
                    };
                    work.phases
                        .entry(r.phase)
                        .or_default()
                        .push(e.at - *phase_start);
                    *phase_start = e.at;
                    if r.phase == Phase::Complete {
                        work.total.insert(e.subcloud.clone(), e.at - *start);
                    }
                }
                _ => {}
            }
        }
        work
    }
}

/// Each subcloud's messages that change its step's view, in the order written.
pub fn emissions(events: &[LinkEvent]) -> HashMap<String, Vec<Emission>> {
    let mut out: HashMap<String, Vec<Emission>> = HashMap::new();
    for e in events {
        if let Traffic::Sent(message) = &e.traffic
            && let Some(expected) = Expected::of(message)
        {
            out.entry(e.subcloud.clone())
                .or_default()
                .push(Emission { at: e.at, expected });
        }
    }
    out
}
