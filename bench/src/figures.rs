//! Everything one run measured, written as JSON (so runs can be compared) and shown as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::latency::Summary;

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub subclouds: usize,
    pub max_parallel: u32,
    pub shape: String,
    /// The controller's database: `sqlite` or `postgresql (...)`.
    pub database: String,
    /// The subclouds' worker options (strategy-config's default entry).
    pub worker_options: String,
    pub git_commit: String,
    pub cores: usize,
    pub started_at: String,
    pub finished_at: String,
    pub settings: Settings,
    pub setup: Setup,
    pub strategy: StrategyFigures,
    pub controller: ControllerFigures,
    pub progress_latency: LatencyFigures,
    pub connections: ConnectionFigures,
    /// With `--failover`: the leader SIGKILLed mid-apply and a standby taking over.
    pub failover: Option<FailoverFigures>,
    pub dcmanager_model: ModelFigures,
}

/// A leader SIGKILLed mid-apply, a standby on the same PostgreSQL taking over.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverFigures {
    /// `[leadership] lease_secs`: the standby may take over only once the lease expired.
    pub lease_secs: u64,
    /// Steps complete, and started, when the leader was killed.
    pub steps_complete_at_kill: usize,
    pub steps_started_at_kill: usize,
    /// SIGKILL to the standby leading (lease taken, API listening: its ready file).
    pub leading_secs: f64,
    /// SIGKILL to every agent online at the new leader.
    pub all_online_secs: f64,
    /// Steps started before the kill that show another start afterwards (run twice): must be none.
    pub steps_restarted: Vec<String>,
}

/// The same work replayed under dcmanager's loops and polls (`dcmanager::Rules`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelFigures {
    pub wall_secs: f64,
    /// dcmanager's modelled wall time / ours.
    pub wall_ratio: f64,
    /// How long after it is written each message would be shown.
    pub progress_delay: Option<Summary>,
}

/// The settings the figures depend on.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub heartbeat_interval_secs: u32,
    pub offline_after_secs: u64,
    pub progress_flush_ms: u64,
    pub reconnect_initial_secs: f64,
    pub reconnect_max_secs: f64,
    pub reconnect_jitter: f64,
}

/// Preparation, kept out of the measured figures.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Issuing every agent's certificate from the system PKI.
    pub certs_secs: f64,
    /// Registering every subcloud through the REST API.
    pub register_secs: f64,
    /// Creating every simulated cluster (its PKI and hosts).
    pub sims_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyFigures {
    pub completed: bool,
    pub steps_complete: usize,
    pub steps_other: usize,
    /// Apply to the strategy seen complete.
    pub wall_secs: f64,
    /// The agents' own work scheduled in the window: the longest chain the window allows.
    pub ideal_secs: f64,
    pub overhead: f64,
    /// One agent's work: Start received to its last phase result written.
    pub agent_work_mean_secs: f64,
    pub agent_work_max_secs: f64,
    /// Mean duration of each phase on the agents.
    pub phase_mean_secs: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControllerFigures {
    /// Started, nothing registered.
    pub rss_idle_mib: f64,
    /// Every subcloud registered, no agent connected.
    pub rss_registered_mib: f64,
    /// Every agent connected and online.
    pub rss_connected_mib: f64,
    /// The highest RSS up to the strategy's end (VmHWM).
    pub peak_rss_mib: f64,
    /// (RSS connected - RSS idle) / subclouds.
    pub rss_per_subcloud_kib: f64,
    /// CPU (user + system) from apply to complete.
    pub cpu_secs_strategy: f64,
    /// CPU from start to the strategy's end.
    pub cpu_secs_total: f64,
    /// CPU over a window with every agent connected and nothing to do: what keeping N agents
    /// connected costs (their heartbeats and acks, the offline sweep), whatever the strategy does.
    pub cpu_secs_idle: f64,
    pub idle_secs: f64,
    /// `cpu_secs_idle` per heartbeat received in that window.
    pub cpu_us_per_heartbeat: f64,
    /// The strategy's CPU less the connected fleet's cost over the same time, per subcloud: what one
    /// subcloud's update costs the controller. The bench runs N simulated clusters on the same cores,
    /// so its wall time (and the heartbeats in it) grows with N; a real fleet's subclouds work on
    /// their own machines.
    pub cpu_ms_per_update: f64,
}

impl ControllerFigures {
    /// Fills in the per-heartbeat and per-update figures from the measured CPU times.
    pub fn split_cpu(&mut self, subclouds: usize, heartbeat_secs: u64, wall_secs: f64) {
        let heartbeats = subclouds as f64 * self.idle_secs / heartbeat_secs as f64;
        self.cpu_us_per_heartbeat = self.cpu_secs_idle / heartbeats * 1e6;
        let connected = self.cpu_secs_idle / self.idle_secs * wall_secs;
        self.cpu_ms_per_update = (self.cpu_secs_strategy - connected) / subclouds as f64 * 1e3;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyFigures {
    /// Events the follower received from the event stream (the snapshot included).
    pub events: usize,
    /// GETs of the whole steps list once the strategy completed, and what they took.
    pub steps_gets: usize,
    pub steps_get_mean_ms: f64,
    pub steps_get_max_ms: f64,
    /// Messages the agents wrote that change a step's view.
    pub emitted: usize,
    /// Of those, seen in an event (the rest were overwritten before the progress writer's flush).
    pub summary: Option<Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionFigures {
    /// Agents started to all online.
    pub connect_secs: f64,
    /// After SIGKILL, the new controller process started to ready (with PostgreSQL, after the killed
    /// process's lease expired: it may not lead before).
    pub restart_ready_secs: f64,
    /// The new controller process started to all agents online again.
    pub reconnect_storm_secs: f64,
}

impl Figures {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            (
                "subclouds / max-parallel / shape",
                format!(
                    "{} / {} / {}",
                    self.subclouds, self.max_parallel, self.shape
                ),
            ),
            ("subcloud options", self.worker_options.clone()),
            ("database", self.database.clone()),
            (
                "machine",
                format!("{} cores, commit {}", self.cores, self.git_commit),
            ),
            (
                "setup: certs / register / sims",
                format!(
                    "{:.1} s / {:.1} s / {:.1} s",
                    self.setup.certs_secs, self.setup.register_secs, self.setup.sims_secs
                ),
            ),
            (
                "strategy",
                format!(
                    "{} ({} complete, {} other)",
                    if self.strategy.completed {
                        "complete"
                    } else {
                        "NOT complete"
                    },
                    self.strategy.steps_complete,
                    self.strategy.steps_other
                ),
            ),
            (
                "wall time apply -> complete",
                format!("{:.2} s", self.strategy.wall_secs),
            ),
            (
                "ideal time (agents' work in the window)",
                format!("{:.2} s", self.strategy.ideal_secs),
            ),
            (
                "overhead wall / ideal",
                format!("{:.3}x", self.strategy.overhead),
            ),
            (
                "agent work mean / max",
                format!(
                    "{:.2} s / {:.2} s",
                    self.strategy.agent_work_mean_secs, self.strategy.agent_work_max_secs
                ),
            ),
            (
                "controller RSS idle / registered / connected",
                format!(
                    "{:.1} / {:.1} / {:.1} MiB",
                    self.controller.rss_idle_mib,
                    self.controller.rss_registered_mib,
                    self.controller.rss_connected_mib
                ),
            ),
            (
                "controller peak RSS",
                format!("{:.1} MiB", self.controller.peak_rss_mib),
            ),
            (
                "controller RSS per connected subcloud",
                format!("{:.1} KiB", self.controller.rss_per_subcloud_kib),
            ),
            (
                "controller CPU apply -> complete / total",
                format!(
                    "{:.2} s / {:.2} s",
                    self.controller.cpu_secs_strategy, self.controller.cpu_secs_total
                ),
            ),
            (
                "controller CPU connected, idle",
                format!(
                    "{:.2} s in {:.0} s ({:.0} us per heartbeat)",
                    self.controller.cpu_secs_idle,
                    self.controller.idle_secs,
                    self.controller.cpu_us_per_heartbeat
                ),
            ),
            (
                "controller CPU per subcloud update",
                format!(
                    "{:.2} ms (the strategy's CPU less the idle fleet's over its wall time)",
                    self.controller.cpu_ms_per_update
                ),
            ),
        ];
        let l = &self.progress_latency;
        rows.push((
            "progress latency p50 / p99 / max",
            match &l.summary {
                Some(s) => format!(
                    "{:.1} / {:.1} / {:.1} ms ({} of {} messages seen)",
                    s.p50_ms, s.p99_ms, s.max_ms, s.count, l.emitted
                ),
                None => format!("none seen ({} messages)", l.emitted),
            },
        ));
        rows.push(("  events received", l.events.to_string()));
        rows.push((
            "GET of every step: mean / max",
            format!(
                "{:.1} ms / {:.1} ms ({} GETs after complete)",
                l.steps_get_mean_ms, l.steps_get_max_ms, l.steps_gets
            ),
        ));
        let c = &self.connections;
        rows.push((
            "agents started -> all online",
            format!("{:.2} s", c.connect_secs),
        ));
        rows.push((
            "controller SIGKILL: restart -> ready / all online",
            format!(
                "{:.2} s / {:.2} s",
                c.restart_ready_secs, c.reconnect_storm_secs
            ),
        ));
        if let Some(f) = &self.failover {
            rows.push((
                "failover: leader SIGKILLed at",
                format!(
                    "{} of {} steps complete, {} started (lease {} s)",
                    f.steps_complete_at_kill, self.subclouds, f.steps_started_at_kill, f.lease_secs
                ),
            ));
            rows.push((
                "failover: killed -> standby leading / all online",
                format!("{:.2} s / {:.2} s", f.leading_secs, f.all_online_secs),
            ));
            rows.push((
                "failover: steps run twice",
                if f.steps_restarted.is_empty() {
                    "none".to_owned()
                } else {
                    f.steps_restarted.join(", ")
                },
            ));
        }
        let m = &self.dcmanager_model;
        rows.push((
            "dcmanager's rules, same work: wall (ratio)",
            format!("{:.2} s ({:.1}x ours)", m.wall_secs, m.wall_ratio),
        ));
        rows.push((
            "  progress delay p50 / p99 / max",
            match &m.progress_delay {
                Some(s) => format!(
                    "{:.1} / {:.1} / {:.1} s",
                    s.p50_ms / 1000.0,
                    s.p99_ms / 1000.0,
                    s.max_ms / 1000.0
                ),
                None => "no messages".to_owned(),
            },
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connected_fleets_cost_over_the_wall_time_is_taken_out_of_the_update() {
        let mut c = ControllerFigures {
            rss_idle_mib: 0.0,
            rss_registered_mib: 0.0,
            rss_connected_mib: 0.0,
            peak_rss_mib: 0.0,
            rss_per_subcloud_kib: 0.0,
            cpu_secs_strategy: 25.0,
            cpu_secs_total: 30.0,
            cpu_secs_idle: 2.0,
            idle_secs: 20.0,
            cpu_us_per_heartbeat: f64::NAN,
            cpu_ms_per_update: f64::NAN,
        };
        // 1000 subclouds heartbeating every 10 s: 2,000 heartbeats in 20 s for 2 s of CPU.
        c.split_cpu(1000, 10, 100.0);
        assert!((c.cpu_us_per_heartbeat - 1000.0).abs() < 1e-9);
        // 100 s at 0.1 s of CPU a second is 10 s of the 25: 15 ms for each of 1000 updates.
        assert!((c.cpu_ms_per_update - 15.0).abs() < 1e-9);
    }
}
