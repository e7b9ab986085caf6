//! What a campaign reports, as JSON next to the fleet bench's figures.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub seed: u64,
    pub subclouds: usize,
    pub faults_planned: usize,
    /// Faults injected, by kind (a fault that had nothing to act on, e.g. an abort with no strategy
    /// applying, is still counted: the fleet was poked at that instant).
    pub faults_by_kind: BTreeMap<&'static str, usize>,
    /// Strategies created, in all.
    pub strategies: usize,
    /// Strategies the operator needed after the fault window closed to finish every subcloud.
    pub strategies_after_faults: usize,
    pub wall_secs: f64,
    /// Whether every subcloud ended with the new CA alone.
    pub completed: bool,
    /// Broken invariants, each with what was seen; empty on a good run.
    pub violations: Vec<String>,
}
