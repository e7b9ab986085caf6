//! `--watch` on a large fleet: redrawing a table of thousands of steps every second scrolls the
//! screen and says nothing an operator can read, so past a size the watch draws a summary that fits
//! the terminal instead: counts by state, one overall bar, the running subclouds (phase, percent)
//! and the failed ones (why). Pure functions: the snapshot and the terminal's size in, text out.

use std::cmp::Ordering;

use crate::format::{display_width, pad};
use crate::watch::{Snapshot, Step, percent, progress_bar, running};

/// Past this many steps the summary is shown even in a tall terminal: the table would be too
/// long to read in the second before the next redraw.
pub const SUMMARY_ABOVE_STEPS: usize = 50;

/// What `--watch` draws in a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Today's table with a bar per running subcloud: small fleets.
    Table,
    /// Counts, an overall bar and the running and failed subclouds, cut to the terminal's height.
    Summary,
}

/// The table while it fits (`drawn_lines` of it in a terminal of `height` lines, one kept for the
/// cursor) and the fleet is small; the summary otherwise.
pub fn layout(drawn_lines: usize, steps: usize, height: usize) -> Layout {
    if steps > SUMMARY_ABOVE_STEPS || drawn_lines >= height {
        Layout::Summary
    } else {
        Layout::Table
    }
}

/// Where a state sorts in the counts: waiting, the running phases, then the final states.
fn rank(state: &str) -> u8 {
    match state {
        "initial" => 0,
        "complete" => 2,
        "failed" => 3,
        "aborted" => 4,
        _ => 1,
    }
}

fn finished(step: &Step) -> bool {
    matches!(step.state.as_str(), "complete" | "failed" | "aborted")
}

/// `(state, count)`, in [`rank`] order, then by name.
pub fn counts(steps: &[Step]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for step in steps {
        match counts.iter_mut().find(|(s, _)| *s == step.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((step.state.clone(), 1)),
        }
    }
    counts.sort_by(|(a, _), (b, _)| match rank(a).cmp(&rank(b)) {
        Ordering::Equal => a.cmp(b),
        other => other,
    });
    counts
}

/// The whole fleet's progress: a finished step counts 100%, a running one its reported percent,
/// a waiting one 0.
pub fn overall_percent(steps: &[Step]) -> u8 {
    if steps.is_empty() {
        return 0;
    }
    let done: usize = steps
        .iter()
        .map(|s| {
            if finished(s) {
                100
            } else if running(s) {
                usize::from(percent(&s.details).unwrap_or(0))
            } else {
                0
            }
        })
        .sum();
    u8::try_from(done / steps.len()).unwrap_or(100)
}

/// How many of `budget` lines go to each list (each list's count includes its title line): the
/// failed ones get at least half when both do not fit, the running ones what is left, and a list
/// that needs less leaves the rest to the other.
fn share(budget: usize, running: usize, failed: usize) -> (usize, usize) {
    let need = |n: usize| if n == 0 { 0 } else { n + 1 };
    let (need_running, need_failed) = (need(running), need(failed));
    let failed_lines = need_failed.min((budget / 2).max(budget.saturating_sub(need_running)));
    let running_lines = need_running.min(budget - failed_lines);
    (running_lines, failed_lines)
}

/// A titled list in at most `lines` lines; when it is cut, its last line says how many are left out.
fn section(title: &str, items: Vec<String>, lines: usize) -> Vec<String> {
    if lines == 0 || items.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!("{title} ({}):", items.len())];
    let room = lines - 1;
    if items.len() <= room {
        out.extend(items);
    } else if room > 0 {
        let shown = room - 1;
        let left = items.len() - shown;
        out.extend(items.into_iter().take(shown));
        out.push(format!("  … and {left} more"));
    }
    out
}

/// `line` cut to `width` display columns, with `…` where it was cut.
pub fn fit(line: &str, width: usize) -> String {
    if display_width(line) <= width {
        return line.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in line.chars() {
        let w = display_width(c.encode_utf8(&mut [0; 4]));
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// The summary of a large fleet in at most `height - 1` lines of `width` columns.
pub fn summary(now: &Snapshot, height: usize, width: usize) -> String {
    let total = now.steps.len();
    let done = now.steps.iter().filter(|s| finished(s)).count();
    let counts = counts(&now.steps)
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let mut lines = vec![
        format!("strategy {} · {total} subclouds · {}", now.state, now.at),
        format!(
            "{}  {done} of {total} finished",
            progress_bar(overall_percent(&now.steps))
        ),
        counts,
    ];
    let running: Vec<&Step> = now.steps.iter().filter(|s| running(s)).collect();
    let failed: Vec<&Step> = now.steps.iter().filter(|s| s.state == "failed").collect();
    let name_width = running
        .iter()
        .chain(&failed)
        .map(|s| display_width(&s.cloud))
        .max()
        .unwrap_or(0);
    let running_items = running
        .iter()
        .map(|s| {
            let bar = progress_bar(percent(&s.details).unwrap_or(0));
            format!("  {}  {bar}  {}", pad(&s.cloud, name_width), s.state)
        })
        .collect();
    let failed_items = failed
        .iter()
        .map(|s| format!("  {}  {}", pad(&s.cloud, name_width), s.details))
        .collect();
    let budget = height.saturating_sub(1).saturating_sub(lines.len());
    let (running_lines, failed_lines) = share(budget, running.len(), failed.len());
    lines.extend(section("running", running_items, running_lines));
    lines.extend(section("failed", failed_items, failed_lines));
    lines.truncate(height.saturating_sub(1).max(1));
    lines.iter().map(|l| fit(l, width) + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(cloud: &str, state: &str, details: &str) -> Step {
        Step {
            cloud: cloud.to_owned(),
            state: state.to_owned(),
            details: details.to_owned(),
            at: "2026-12-05 20:00:00".to_owned(),
        }
    }

    /// 5,000 subclouds: 3,000 complete, 40 updating at 50%, 20 failed, the rest waiting.
    fn fleet() -> Snapshot {
        let steps = (0..5000)
            .map(|i| {
                let name = format!("subcloud{i:04}");
                match i {
                    0..3000 => step(&name, "complete", ""),
                    3000..3040 => step(
                        &name,
                        "updating-pods-trust-both-cas",
                        "pods trust-both-cas: 4 of 8 workloads restarted; update 50% complete",
                    ),
                    3040..3060 => step(&name, "failed", "pods trust-both-cas: timed out"),
                    _ => step(&name, "initial", ""),
                }
            })
            .collect();
        Snapshot {
            state: "applying".to_owned(),
            at: "2026-12-05 20:00:01".to_owned(),
            steps,
        }
    }

    #[test]
    fn the_table_only_while_it_fits_and_the_fleet_is_small() {
        assert_eq!(layout(20, 10, 40), Layout::Table);
        assert_eq!(layout(40, 10, 40), Layout::Summary);
        assert_eq!(layout(20, 51, 200), Layout::Summary);
        assert_eq!(layout(20, 50, 200), Layout::Table);
    }

    #[test]
    fn counts_by_state_waiting_running_then_final() {
        let counts = counts(&fleet().steps);
        assert_eq!(
            counts,
            [
                ("initial".to_owned(), 1940),
                ("updating-pods-trust-both-cas".to_owned(), 40),
                ("complete".to_owned(), 3000),
                ("failed".to_owned(), 20),
            ]
        );
    }

    #[test]
    fn overall_progress_counts_finished_and_running_steps() {
        // (3020 finished × 100 + 40 × 50) / 5000 = 60.8
        assert_eq!(overall_percent(&fleet().steps), 60);
        assert_eq!(overall_percent(&[]), 0);
    }

    #[test]
    fn a_large_fleet_fits_the_terminal() {
        let out = summary(&fleet(), 24, 100);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 23, "{out}");
        assert_eq!(
            lines[..3],
            [
                "strategy applying · 5000 subclouds · 2026-12-05 20:00:01",
                "[##################------------]  60%  3020 of 5000 finished",
                "initial 1940 · updating-pods-trust-both-cas 40 · complete 3000 · failed 20",
            ]
        );
        // 20 lines left: 10 for each list, its title and its "more" line included.
        assert_eq!(lines[3], "running (40):");
        assert_eq!(
            lines[4],
            "  subcloud3000  [###############---------------]  50%  updating-pods-trust-both-cas"
        );
        assert_eq!(lines[12], "  … and 32 more");
        assert_eq!(lines[13], "failed (20):");
        assert_eq!(lines[14], "  subcloud3040  pods trust-both-cas: timed out");
        assert_eq!(lines[22], "  … and 12 more");
    }

    #[test]
    fn a_short_list_leaves_its_room_to_the_other() {
        let mut now = fleet();
        now.steps.truncate(3041); // 40 running, 1 failed
        let out = summary(&now, 24, 100);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 23);
        assert_eq!(lines[3], "running (40):");
        assert_eq!(lines[20], "  … and 24 more");
        assert_eq!(
            lines[21..],
            [
                "failed (1):",
                "  subcloud3040  pods trust-both-cas: timed out"
            ]
        );
        // Everything fits: no "more" line.
        now.steps.truncate(3002);
        let out = summary(&now, 24, 100);
        assert!(!out.contains("more"), "{out}");
        assert!(!out.contains("failed ("), "{out}");
    }

    #[test]
    fn lines_are_cut_to_the_terminal_width() {
        let out = summary(&fleet(), 10, 30);
        assert!(out.lines().all(|l| display_width(l) <= 30), "{out}");
        assert_eq!(fit("東京 ottawa", 5), "東京…");
        assert_eq!(fit("short", 5), "short");
        // A tiny terminal still gets the headline.
        assert_eq!(summary(&fleet(), 1, 80).lines().count(), 1);
    }

    #[test]
    fn shares_of_the_lines() {
        assert_eq!(share(20, 40, 20), (10, 10));
        assert_eq!(share(20, 40, 1), (18, 2));
        assert_eq!(share(20, 2, 40), (3, 17));
        assert_eq!(share(20, 0, 0), (0, 0));
        assert_eq!(share(0, 5, 5), (0, 0));
    }
}
