//! The faults of a campaign, drawn from the seed before the run starts, so a seed names one campaign.

use serde::Serialize;

use crate::rng::Rng;

/// One fault, injected at an instant of the fault window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// SIGKILL of the controller, started again at once on the same database.
    KillController,
    /// SIGKILL of subcloud `site`'s agent, started again at once.
    KillAgent { site: usize },
    /// `kube-rootca-update-strategy abort`.
    Abort,
    /// Subcloud `site`'s workload never gets ready pods from now until the window closes, so its pods
    /// phases fail (its agent restarts with the fault).
    FailPods { site: usize },
    /// The strategy is aborted if it runs, deleted, and a new one created and applied.
    DeleteAndRecreate,
    /// The controller's disk is filled until it stops on a failed write, then space returns and it is
    /// started again.
    DiskFull,
}

impl Fault {
    /// The kind's name in the figures.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::KillController => "kill-controller",
            Fault::KillAgent { .. } => "kill-agent",
            Fault::Abort => "abort",
            Fault::FailPods { .. } => "fail-pods",
            Fault::DeleteAndRecreate => "delete-and-recreate",
            Fault::DiskFull => "disk-full",
        }
    }
}

/// A fault and how long before it the campaign lets the fleet run, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub after_ms: u64,
    pub fault: Fault,
}

/// `faults` faults over `subclouds` subclouds, `disk_full` telling whether the controller's disk can be
/// filled (a tmpfs needs root). Kills and aborts are the common case; a disk-full is rarer, as it
/// stops the controller for a while.
pub fn plan(seed: u64, faults: usize, subclouds: usize, disk_full: bool) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let sites = subclouds.max(1) as u64;
    (0..faults)
        .map(|_| {
            let site = usize::try_from(rng.below(sites)).unwrap_or(0);
            let fault = match rng.below(20) {
                0..=3 => Fault::KillController,
                4..=8 => Fault::KillAgent { site },
                9..=12 => Fault::Abort,
                13..=14 => Fault::FailPods { site },
                15..=17 => Fault::DeleteAndRecreate,
                18 if disk_full => Fault::DiskFull,
                _ => Fault::KillAgent { site },
            };
            Planned {
                after_ms: rng.between(300, 2500),
                fault,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_seed_names_one_plan_and_a_hundred_faults_cover_every_kind() {
        assert_eq!(plan(42, 100, 6, true), plan(42, 100, 6, true));
        assert_ne!(plan(42, 100, 6, true), plan(43, 100, 6, true));
        let kinds: BTreeSet<&str> = plan(42, 100, 6, true)
            .iter()
            .map(|p| p.fault.kind())
            .collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
    }

    #[test]
    fn without_root_there_is_no_disk_full_and_sites_are_in_range() {
        for p in plan(5, 500, 3, false) {
            assert_ne!(p.fault, Fault::DiskFull);
            if let Fault::KillAgent { site } | Fault::FailPods { site } = p.fault {
                assert!(site < 3);
            }
            assert!((300..=2500).contains(&p.after_ms));
        }
    }
}
