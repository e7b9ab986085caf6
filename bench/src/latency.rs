//! Progress latency: from an agent writing a message to the controller, to the step's new state and
//! details arriving in the controller's event stream.
//!
//! The agents report each message they write (with its instant); the follower keeps every change of a
//! step's view the stream brings, with the instant it arrived. A change is matched to the latest not
//! yet matched message of that subcloud sent before it whose expected view it shows. Messages
//! overwritten before the progress writer published them, or that did not change the view, have no
//! change and no latency.

use std::time::{Duration, Instant};

use dc_controller::model::step_state;
use dc_controller::rules::{phase_done_details, progress_details};
use dc_protocol::{AgentMessage, Phase, PhaseOutcome};

/// What a step shows in the API: its state and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub state: String,
    pub details: String,
}

/// What a message should make the step show; `details: None` matches on the state alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub state: String,
    pub details: Option<String>,
}

impl Expected {
    /// The view the controller gives a step for `message`, or `None` when it shows none of its own
    /// (a failure or a stop).
    pub fn of(message: &AgentMessage) -> Option<Self> {
        match message {
            AgentMessage::Progress(p) => Some(Self {
                state: p.state.clone(),
                details: Some(progress_details(p)),
            }),
            AgentMessage::PhaseResult(r) => match r.outcome {
                PhaseOutcome::Succeeded if r.phase == Phase::Complete => Some(Self {
                    state: step_state::COMPLETE.to_owned(),
                    details: None,
                }),
                PhaseOutcome::Succeeded => Some(Self {
                    state: r.state.clone(),
                    details: Some(phase_done_details(r)),
                }),
                PhaseOutcome::Failed { .. } => None,
            },
            _ => None,
        }
    }

    fn shown_by(&self, view: &View) -> bool {
        self.state == view.state && self.details.as_ref().is_none_or(|d| *d == view.details)
    }
}

/// A message an agent wrote, and when.
#[derive(Debug, Clone)]
pub struct Emission {
    pub at: Instant,
    pub expected: Expected,
}

/// A change of a step's view, seen in an event received at `at`.
#[derive(Debug, Clone)]
pub struct Change {
    pub at: Instant,
    pub view: View,
}

/// The latencies of one subcloud's messages (`emissions` and `changes` each in time order).
pub fn match_subcloud(emissions: &[Emission], changes: &[Change]) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut next = 0;
    for change in changes {
        let sent_before = emissions[next..]
            .iter()
            .take_while(|e| e.at <= change.at)
            .count();
        // The newest message sent before the change that it shows; older ones were overwritten.
        if let Some(k) = (next..next + sent_before)
            .rev()
            .find(|&k| emissions[k].expected.shown_by(&change.view))
        {
            out.push(change.at - emissions[k].at);
            next = k + 1;
        }
    }
    out
}

/// p50 / p99 / max of latencies.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(latencies: &mut [Duration]) -> Option<Self> {
        latencies.sort_unstable();
        let max = *latencies.last()?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Some(Self {
            count: latencies.len(),
            p50_ms: ms(percentile(latencies, 50.0)),
            p99_ms: ms(percentile(latencies, 99.0)),
            max_ms: ms(max),
        })
    }
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, details: &str) -> View {
        View {
            state: state.to_owned(),
            details: details.to_owned(),
        }
    }

    fn sent(base: Instant, ms: u64, state: &str, details: &str) -> Emission {
        Emission {
            at: base + Duration::from_millis(ms),
            expected: Expected {
                state: state.to_owned(),
                details: Some(details.to_owned()),
            },
        }
    }

    fn seen(base: Instant, ms: u64, state: &str, details: &str) -> Change {
        Change {
            at: base + Duration::from_millis(ms),
            view: view(state, details),
        }
    }

    #[test]
    fn each_change_is_matched_to_the_message_it_shows() {
        let t = Instant::now();
        let emissions = [sent(t, 0, "a", "1"), sent(t, 100, "b", "2")];
        let changes = [seen(t, 15, "a", "1"), seen(t, 130, "b", "2")];
        assert_eq!(
            match_subcloud(&emissions, &changes),
            [Duration::from_millis(15), Duration::from_millis(30)]
        );
    }

    #[test]
    fn overwritten_messages_have_no_latency_and_late_views_match_their_own_message() {
        let t = Instant::now();
        // "1" is overwritten by "2" before any sample; "3" is sent before the sample that still shows "2".
        let emissions = [
            sent(t, 0, "a", "1"),
            sent(t, 5, "a", "2"),
            sent(t, 18, "a", "3"),
        ];
        let changes = [seen(t, 20, "a", "2"), seen(t, 40, "a", "3")];
        assert_eq!(
            match_subcloud(&emissions, &changes),
            [Duration::from_millis(15), Duration::from_millis(22)]
        );
    }

    #[test]
    fn a_change_before_the_message_is_not_its_latency() {
        let t = Instant::now();
        let emissions = [sent(t, 50, "a", "1")];
        let changes = [seen(t, 20, "a", "1")];
        assert!(match_subcloud(&emissions, &changes).is_empty());
    }

    #[test]
    fn the_last_phase_result_matches_on_the_complete_state() {
        let result = AgentMessage::PhaseResult(dc_protocol::PhaseResult {
            update_id: "u".to_owned(),
            seq: 9,
            phase: Phase::Complete,
            outcome: PhaseOutcome::Succeeded,
            state: "update-completed".to_owned(),
            percent: 100,
            warnings: Vec::new(),
        });
        let expected = Expected::of(&result).unwrap();
        assert!(expected.shown_by(&view("complete", "anything")));
        assert!(!expected.shown_by(&view("update-completed", "")));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!(
            (s.count, s.p50_ms, s.p99_ms, s.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert!(Summary::of(&mut []).is_none());
    }
}
