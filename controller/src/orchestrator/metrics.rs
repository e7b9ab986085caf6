//! `/metrics` in the Prometheus text format (0.0.4) through `prometheus-client`, the official client:
//! typed families, escaped label values, `_total` on counters. The registry is built afresh for each
//! scrape from plain figures — the orchestrator's (strategy, agents, subclouds), the progress writer's
//! (steps by state, phase durations), the process's and the build's — so [`render`] does no I/O and
//! its tests need no server.

use std::collections::BTreeMap;

use dc_protocol::Phase;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::model::StrategyState;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// One label, `name="value"`; the value is escaped by the encoder.
type Labels = Vec<(&'static str, String)>;

/// What the orchestrator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetFigures {
    pub strategy: Option<StrategyState>,
    pub connected_agents: usize,
    pub online_subclouds: usize,
    pub subclouds: usize,
}

/// The durations of succeeded phases since the controller started, by phase: a histogram the progress
/// writer observes into (a clone shares its counts).
pub type PhaseDurations = Family<Labels, Histogram, fn() -> Histogram>;

/// A phase takes from a fraction of a second (simulated) to many minutes (a large cluster's pods):
/// 0.25 s to about 17 min, doubling.
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 13))
}

/// An empty [`PhaseDurations`].
pub fn phase_durations() -> PhaseDurations {
    Family::new_with_constructor(phase_histogram)
}

/// Records that `phase` succeeded after `secs` seconds.
pub fn observe_phase(durations: &PhaseDurations, phase: Phase, secs: f64) {
    durations
        .get_or_create(&vec![("phase", phase.label().to_owned())])
        .observe(secs);
}

/// What the progress writer knows.
#[derive(Debug, Clone)]
pub struct StepFigures {
    pub steps_by_state: BTreeMap<String, usize>,
    pub phase_durations: PhaseDurations,
}

impl Default for StepFigures {
    fn default() -> Self {
        Self {
            steps_by_state: BTreeMap::new(),
            phase_durations: phase_durations(),
        }
    }
}

/// The controller process's own figures (the `process_*` families every Prometheus client exports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessFigures {
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub cpu_seconds: f64,
    /// `None` where the process's descriptors cannot be counted.
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: u64,
}

impl ProcessFigures {
    /// Reads this process's figures (from `/proc`, through `sysinfo`); zeros where it cannot.
    pub fn of_this_process() -> Self {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
        let (Ok(pid), Ok(mut system)) = (sysinfo::get_current_pid(), System::new()) else {
            return Self::default();
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let Some(p) = system.process(pid) else {
            return Self::default();
        };
        Self {
            resident_memory_bytes: p.memory(),
            virtual_memory_bytes: p.virtual_memory(),
            cpu_seconds: p.accumulated_cpu_time() as f64 / 1000.0,
            open_fds: p.open_files().map(|n| n as u64),
            max_fds: p.open_files_limit().map(|n| n as u64),
            start_time_seconds: p.start_time(),
        }
    }
}

/// What was built: `dc_rootca_build_info{version, commit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    /// The git commit the binary was built from, `unknown` when the build had none (a source tarball).
    pub commit: &'static str,
}

impl BuildInfo {
    /// This binary's: the crate version, and the commit `build.rs` found.
    pub const CURRENT: Self = Self {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("DC_ROOTCA_GIT_COMMIT"),
    };
}

fn gauge(value: usize) -> ConstGauge {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

fn state_gauges<'a>(counts: impl IntoIterator<Item = (&'a str, i64)>) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for (state, n) in counts {
        family
            .get_or_create(&vec![("state", state.to_owned())])
            .set(n);
    }
    family
}

/// Every family, from the figures.
pub fn registry(
    fleet: &FleetFigures,
    steps: &StepFigures,
    process: &ProcessFigures,
    build: BuildInfo,
) -> Registry {
    let mut r = Registry::default();
    r.register(
        "dc_strategies",
        "Strategies by state",
        state_gauges(
            StrategyState::ALL
                .iter()
                .map(|st| (st.as_str(), i64::from(fleet.strategy == Some(*st)))),
        ),
    );
    r.register(
        "dc_steps",
        "Strategy steps by state",
        state_gauges(
            steps
                .steps_by_state
                .iter()
                .map(|(s, n)| (s.as_str(), i64::try_from(*n).unwrap_or(i64::MAX))),
        ),
    );
    r.register(
        "dc_connected_agents",
        "Agents with an open session",
        gauge(fleet.connected_agents),
    );
    r.register(
        "dc_online_subclouds",
        "Subclouds whose agent is connected and heartbeating",
        gauge(fleet.online_subclouds),
    );
    r.register(
        "dc_subclouds",
        "Registered subclouds",
        gauge(fleet.subclouds),
    );
    r.register_with_unit(
        "dc_phase_duration",
        "Duration of succeeded update phases",
        Unit::Seconds,
        steps.phase_durations.clone(),
    );
    r.register(
        "dc_rootca_build",
        "The controller's version and the git commit it was built from",
        Info::new(vec![
            ("version", build.version.to_owned()),
            ("commit", build.commit.to_owned()),
        ]),
    );
    r.register_with_unit(
        "process_resident_memory",
        "Resident memory size",
        Unit::Bytes,
        ConstGauge::new(i64::try_from(process.resident_memory_bytes).unwrap_or(i64::MAX)),
    );
    r.register_with_unit(
        "process_virtual_memory",
        "Virtual memory size",
        Unit::Bytes,
        ConstGauge::new(i64::try_from(process.virtual_memory_bytes).unwrap_or(i64::MAX)),
    );
    r.register_with_unit(
        "process_cpu",
        "User and system CPU time spent",
        Unit::Seconds,
        ConstCounter::new(process.cpu_seconds),
    );
    r.register_with_unit(
        "process_start_time",
        "Start time of the process since the Unix epoch",
        Unit::Seconds,
        ConstGauge::new(i64::try_from(process.start_time_seconds).unwrap_or(i64::MAX)),
    );
    if let Some(n) = process.open_fds {
        r.register(
            "process_open_fds",
            "Open file descriptors",
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
        );
    }
    if let Some(n) = process.max_fds {
        r.register(
            "process_max_fds",
            "Most open file descriptors allowed",
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
        );
    }
    r
}

/// The Prometheus text of `/metrics`.
pub fn render(
    fleet: &FleetFigures,
    steps: &StepFigures,
    process: &ProcessFigures,
    build: BuildInfo,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error would only cut the text short.
    if let Err(e) = prometheus_text::encode(&mut out, &registry(fleet, steps, process, build)) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> (FleetFigures, StepFigures, ProcessFigures) {
        let fleet = FleetFigures {
            strategy: Some(StrategyState::Applying),
            connected_agents: 3,
            online_subclouds: 2,
            subclouds: 4,
        };
        let steps = StepFigures {
            steps_by_state: [
                ("complete".to_owned(), 2),
                // A step state comes from an agent: it must not end its label or start a line.
                ("x\"} 1\ninjected_metric{by=\"agent\"} 666\\".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
            ..StepFigures::default()
        };
        observe_phase(&steps.phase_durations, Phase::Start, 1.0);
        observe_phase(&steps.phase_durations, Phase::Start, 0.5);
        let process = ProcessFigures {
            resident_memory_bytes: 1 << 20,
            virtual_memory_bytes: 1 << 30,
            cpu_seconds: 1.25,
            open_fds: Some(12),
            max_fds: Some(1024),
            start_time_seconds: 1_700_000_000,
        };
        (fleet, steps, process)
    }

    #[test]
    fn every_family_is_rendered_typed_with_its_figures() {
        let (fleet, steps, process) = figures();
        let build = BuildInfo {
            version: "1.2.3",
            commit: "abc123",
        };
        let text = render(&fleet, &steps, &process, build);
        for line in [
            "# TYPE dc_strategies gauge",
            "dc_strategies{state=\"applying\"} 1",
            "dc_strategies{state=\"initial\"} 0",
            "dc_steps{state=\"complete\"} 2",
            "dc_connected_agents 3",
            "dc_online_subclouds 2",
            "dc_subclouds 4",
            "# TYPE dc_phase_duration_seconds histogram",
            "dc_phase_duration_seconds_count{phase=\"start\"} 2",
            "dc_phase_duration_seconds_sum{phase=\"start\"} 1.5",
            "dc_phase_duration_seconds_bucket{phase=\"start\",le=\"0.5\"} 1",
            "dc_phase_duration_seconds_bucket{phase=\"start\",le=\"+Inf\"} 2",
            "# TYPE dc_rootca_build_info gauge",
            "dc_rootca_build_info{version=\"1.2.3\",commit=\"abc123\"} 1",
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 1.25",
            "process_resident_memory_bytes 1048576",
            "process_open_fds 12",
            "process_max_fds 1024",
            "process_start_time_seconds 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn label_values_cannot_end_their_label_or_start_a_line() {
        let (fleet, steps, process) = figures();
        let text = render(&fleet, &steps, &process, BuildInfo::CURRENT);
        assert!(
            text.lines().any(|l| l
                == "dc_steps{state=\"x\\\"} 1\\ninjected_metric{by=\\\"agent\\\"} 666\\\\\"} 1"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("injected_metric")));
    }

    #[test]
    fn unknown_descriptor_counts_are_left_out() {
        let (fleet, steps, _) = figures();
        let text = render(
            &fleet,
            &steps,
            &ProcessFigures::default(),
            BuildInfo::CURRENT,
        );
        assert!(!text.contains("process_open_fds"), "{text}");
        assert!(text.contains("process_resident_memory_bytes 0"), "{text}");
    }
}
