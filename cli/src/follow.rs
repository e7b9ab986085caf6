//! `--watch`'s loop: polls the strategy and its steps until the strategy reaches a final state, and
//! rides out a controller that restarts or cannot be reached for a while (an update of thousands of
//! subclouds outlives many a controller upgrade): it says since when it is reconnecting, backs off,
//! and picks up where it was. What it draws is decided in `watch` and `summary`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::format::{self, FormatError, ListFormat, OneFormat};
use crate::summary::{self, Layout};
use crate::views;
use crate::watch::{self, Outcome, Snapshot};

/// What `--watch` redraws in a terminal.
#[derive(Clone, Copy)]
pub enum View<'a> {
    /// `kube-rootca-update-strategy show --watch`, with its `-c` columns.
    Strategy(&'a [String]),
    /// `strategy-step list --watch`, with its `-c` columns.
    Steps(&'a [String]),
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("cannot write the watch: {0}")]
    Output(#[from] std::io::Error),
}

/// Since when polls fail, and how many reconnect attempts were made.
struct Outage {
    since: u64,
    attempt: u32,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The terminal's lines and columns; `LINES`/`COLUMNS`, then 24×80, when it cannot be asked.
fn terminal_size() -> (usize, usize) {
    if let Some((terminal_size::Width(w), terminal_size::Height(h))) =
        terminal_size::terminal_size()
    {
        return (usize::from(h), usize::from(w));
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (env("LINES", 24), env("COLUMNS", 80))
}

async fn poll(client: &Client) -> Result<(Value, Value), ClientError> {
    let strategy = client.get(&crate::strategy_path()).await?;
    let steps = client.get(crate::STEPS_PATH).await?;
    Ok((strategy, steps))
}

/// One terminal screen: today's table and bars while they fit, the summary past that.
fn screen(
    strategy: &Value,
    steps: &Value,
    now: &Snapshot,
    view: View<'_>,
) -> Result<String, FormatError> {
    let table = match view {
        View::Strategy(columns) => format::render_one(
            &views::record(strategy, views::STRATEGY),
            OneFormat::Table,
            columns,
        )?,
        View::Steps(columns) => format::render_list(
            &views::listing(steps.get("strategy-steps"), views::STEP_LIST),
            ListFormat::Table,
            columns,
        )?,
    };
    let drawn = format!("{table}\n{}", watch::progress_lines(now));
    let (height, width) = terminal_size();
    Ok(
        match summary::layout(drawn.lines().count(), now.steps.len(), height) {
            Layout::Table => drawn,
            Layout::Summary => summary::summary(now, height, width),
        },
    )
}

/// Follows the strategy until it completes, fails or is aborted and returns the exit code that
/// says which (see [`Outcome`]). In a terminal the screen is redrawn in place; otherwise one line
/// per change, so logs and CI output stay readable, and the reconnect notes go to stderr. Only an
/// error that retrying cannot cure (a 4xx: a bad token, the strategy deleted) ends it early.
pub async fn follow(
    client: &Client,
    interval: Duration,
    view: View<'_>,
) -> Result<u8, FollowError> {
    let terminal = std::io::stdout().is_terminal();
    let mut before: Option<Snapshot> = None;
    let mut drawn = String::new();
    let mut outage: Option<Outage> = None;
    loop {
        let (strategy, steps) = match poll(client).await {
            Ok(answers) => answers,
            Err(error) if error.is_transient() => {
                let now = unix_now();
                let down = outage.get_or_insert(Outage {
                    since: now,
                    attempt: 0,
                });
                let line = watch::reconnecting(down.since, now, &error.to_string());
                if terminal {
                    println!("{}{drawn}{line}", watch::CLEAR);
                    std::io::stdout().flush()?;
                } else if down.attempt == 0 {
                    eprintln!("{line}");
                }
                actix_rt::time::sleep(watch::backoff(down.attempt)).await;
                down.attempt = down.attempt.saturating_add(1);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(down) = outage.take()
            && !terminal
        {
            eprintln!("{}", watch::reconnected(down.since, unix_now()));
        }
        let now = Snapshot::from_json(&strategy, &steps);
        if terminal {
            drawn = screen(&strategy, &steps, &now, view)?;
            print!("{}{drawn}", watch::CLEAR);
        } else {
            for line in watch::changes(before.as_ref(), &now) {
                println!("{line}");
            }
        }
        std::io::stdout().flush()?;
        if let Some(outcome) = Outcome::of(&now.state) {
            return Ok(outcome.exit_code());
        }
        before = Some(now);
        actix_rt::time::sleep(interval).await;
    }
}
