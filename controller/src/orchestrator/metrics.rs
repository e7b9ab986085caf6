//! `/metrics` in the Prometheus text format, rendered from plain figures: the orchestrator's (strategy,
//! agents, subclouds) and the progress writer's (steps by state, phase durations).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use dc_protocol::Phase;

use crate::model::StrategyState;

/// What the orchestrator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetFigures {
    pub strategy: Option<StrategyState>,
    pub connected_agents: usize,
    pub online_subclouds: usize,
    pub subclouds: usize,
}

/// What the progress writer knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepFigures {
    pub steps_by_state: BTreeMap<String, usize>,
    /// Sum of seconds and count of each succeeded phase.
    pub phase_durations: BTreeMap<Phase, (f64, u64)>,
}

/// A label value in the text exposition format: backslash, double quote and newline escaped, so no
/// value (a step state comes from an agent) can end its label or start a line of its own.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(fleet: &FleetFigures, steps: &StepFigures) -> String {
    let mut out = String::new();
    family(&mut out, "dc_strategies", "Strategies by state.", "gauge");
    for st in StrategyState::ALL {
        let n = u8::from(fleet.strategy == Some(st));
        let _ = writeln!(out, "dc_strategies{{state=\"{}\"}} {n}", st.as_str());
    }
    family(&mut out, "dc_steps", "Strategy steps by state.", "gauge");
    for (state, n) in &steps.steps_by_state {
        let _ = writeln!(out, "dc_steps{{state=\"{}\"}} {n}", label(state));
    }
    family(
        &mut out,
        "dc_connected_agents",
        "Agents with an open session.",
        "gauge",
    );
    let _ = writeln!(out, "dc_connected_agents {}", fleet.connected_agents);
    family(
        &mut out,
        "dc_online_subclouds",
        "Subclouds whose agent is connected and heartbeating.",
        "gauge",
    );
    let _ = writeln!(out, "dc_online_subclouds {}", fleet.online_subclouds);
    family(&mut out, "dc_subclouds", "Registered subclouds.", "gauge");
    let _ = writeln!(out, "dc_subclouds {}", fleet.subclouds);
    family(
        &mut out,
        "dc_phase_duration_seconds",
        "Duration of succeeded update phases.",
        "summary",
    );
    for (phase, (sum, count)) in &steps.phase_durations {
        let label = phase.label();
        let _ = writeln!(
            out,
            "dc_phase_duration_seconds_sum{{phase=\"{label}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "dc_phase_duration_seconds_count{{phase=\"{label}\"}} {count}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_end_their_label_or_start_a_line() {
        assert_eq!(label("plain-state"), "plain-state");
        assert_eq!(
            label("x\"} 1\ninjected_metric{by=\"agent\"} 666\\"),
            "x\\\"} 1\\ninjected_metric{by=\\\"agent\\\"} 666\\\\"
        );
    }

    #[test]
    fn every_family_is_rendered_with_its_figures() {
        let fleet = FleetFigures {
            strategy: Some(StrategyState::Applying),
            connected_agents: 3,
            online_subclouds: 2,
            subclouds: 4,
        };
        let steps = StepFigures {
            steps_by_state: [("complete".to_owned(), 2)].into_iter().collect(),
            phase_durations: [(Phase::Start, (1.5, 3))].into_iter().collect(),
        };
        let text = render(&fleet, &steps);
        for line in [
            "dc_strategies{state=\"applying\"} 1",
            "dc_strategies{state=\"initial\"} 0",
            "dc_steps{state=\"complete\"} 2",
            "dc_connected_agents 3",
            "dc_online_subclouds 2",
            "dc_subclouds 4",
            "# TYPE dc_phase_duration_seconds summary",
            "dc_phase_duration_seconds_count{phase=\"start\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
