//! What StarlingX dcmanager's own timing rules would make of the same fleet: the work traces this run
//! measured, replayed under dcmanager's loops and polls (shared/reference/dcmanager-api-and-strategy.md,
//! "Loop and poll timings"). Its orchestration cannot run here, but its timing is in its source:
//! - the manager refills the window of max-parallel-subclouds on a 30 s loop, so a freed slot waits
//!   for the next tick;
//! - a step first polls the subcloud's VIM strategy build after 10 s, then applies it and polls the
//!   apply every 60 s, so a subcloud's end is seen at the first apply poll after it;
//! - progress reaches the step's details only through those 60 s apply polls.
//!
//! Assumptions, generous to dcmanager: the subcloud's own work is the same as here (the VIM's phases
//! are the same phases), the build is done by the first build poll, the worker's own loop (at most 1 s
//! at 600 subclouds and more) and the REST and database costs are left out.

use std::time::Duration;

use crate::schedule::list_schedule;

/// dcmanager's loop and poll periods.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `ORCHESTRATION_STRATEGY_MONITORING_INTERVAL`: the manager's loop, which starts steps.
    pub manager_loop: Duration,
    /// `DEFAULT_SLEEP_DURATION` of the VIM build poll.
    pub build_poll: Duration,
    /// `KUBE_ROOTCA_UPDATE_WAIT_INTERVAL`: the VIM apply poll.
    pub apply_poll: Duration,
}

impl Rules {
    pub const DCMANAGER: Rules = Rules {
        manager_loop: Duration::from_secs(30),
        build_poll: Duration::from_secs(10),
        apply_poll: Duration::from_secs(60),
    };

    /// How long a step whose subcloud works `work` lasts: the first build poll, then apply polls
    /// until one sees the work done.
    pub fn step_time(&self, work: Duration) -> Duration {
        self.build_poll + first_poll_at_or_after(work, self.apply_poll)
    }

    /// How long after it is written a message `offset` into its subcloud's work is shown: at the
    /// first apply poll at or after it.
    pub fn progress_delay(&self, offset: Duration) -> Duration {
        first_poll_at_or_after(offset, self.apply_poll) - offset
    }

    /// The strategy's wall time: the steps in order, each started at the manager's first tick after
    /// a slot frees (the first wave at once), each lasting [`Self::step_time`].
    pub fn wall(&self, work: &[Duration], slots: usize) -> Duration {
        list_schedule(
            work,
            slots,
            |free| next_tick(free, self.manager_loop),
            |w| self.step_time(w),
        )
    }
}

/// The first of the polls at `period`, 2 × `period`, ... that comes at or after `t`.
fn first_poll_at_or_after(t: Duration, period: Duration) -> Duration {
    let n = t.as_nanos().div_ceil(period.as_nanos()).max(1);
    period * u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first tick of a loop running every `period` since 0 at or after `t`.
fn next_tick(t: Duration, period: Duration) -> Duration {
    let n = t.as_nanos().div_ceil(period.as_nanos());
    period * u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    #[test]
    fn a_step_lasts_the_build_poll_and_whole_apply_polls() {
        let r = Rules::DCMANAGER;
        assert_eq!(r.step_time(Duration::from_millis(3500)), s(70));
        assert_eq!(r.step_time(s(60)), s(70));
        assert_eq!(r.step_time(s(61)), s(130));
    }

    #[test]
    fn progress_waits_for_the_next_apply_poll() {
        let r = Rules::DCMANAGER;
        assert_eq!(r.progress_delay(Duration::ZERO), s(60));
        assert_eq!(r.progress_delay(s(45)), s(15));
        assert_eq!(r.progress_delay(s(60)), Duration::ZERO);
    }

    #[test]
    fn freed_slots_wait_for_the_managers_tick() {
        let r = Rules::DCMANAGER;
        // Two slots, three 5 s steps: two end at 70 s, the third starts at the 90 s tick, ends at 160.
        assert_eq!(r.wall(&[s(5), s(5), s(5)], 2), s(160));
        // Enough slots: one step's time.
        assert_eq!(r.wall(&[s(5), s(5), s(5)], 3), s(70));
        assert_eq!(r.wall(&[], 3), Duration::ZERO);
    }
}
