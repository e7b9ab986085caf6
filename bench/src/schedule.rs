//! The ideal time of a strategy: the agents' own work, scheduled as the controller's window allows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// The makespan of `work` (each step's agent work, in step order) on `slots` parallel slots, each step
/// starting the moment a slot frees (list scheduling, as the sliding window does). With at least as
/// many slots as steps it is the longest step's work.
pub fn makespan(work: &[Duration], slots: usize) -> Duration {
    list_schedule(work, slots, |free| free, |w| w)
}

/// List scheduling of `work` in order on `slots`: the first wave starts at 0; each later step starts
/// at `start_after(t)` of the time `t` a slot frees and lasts `length(w)`. The end of the last one.
pub fn list_schedule(
    work: &[Duration],
    slots: usize,
    start_after: impl Fn(Duration) -> Duration,
    length: impl Fn(Duration) -> Duration,
) -> Duration {
    let mut busy: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
    let mut end = Duration::ZERO;
    for &w in work {
        let start = if busy.len() < slots.max(1) {
            Duration::ZERO
        } else {
            busy.pop()
                .map_or(Duration::ZERO, |Reverse(free)| start_after(free))
        };
        let finish = start + length(w);
        end = end.max(finish);
        busy.push(Reverse(finish));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn enough_slots_is_the_longest_work() {
        assert_eq!(makespan(&ms(&[30, 70, 50]), 3), Duration::from_millis(70));
        assert_eq!(
            makespan(&ms(&[30, 70, 50]), 5000),
            Duration::from_millis(70)
        );
    }

    #[test]
    fn one_slot_is_the_sum() {
        assert_eq!(makespan(&ms(&[30, 70, 50]), 1), Duration::from_millis(150));
    }

    #[test]
    fn steps_take_the_first_free_slot_in_order() {
        // Slots: [0-100], [0-20, 20-60, 60-90, 90-120] -> 120.
        assert_eq!(
            makespan(&ms(&[100, 20, 40, 30, 30]), 2),
            Duration::from_millis(120)
        );
        assert_eq!(makespan(&[], 4), Duration::ZERO);
    }
}
