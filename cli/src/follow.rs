//! `--watch`'s loop: follows the controller's event stream (polls an older controller without one)
//! until the strategy reaches a final state, and rides out a controller that restarts or cannot be
//! reached for a while (an update of thousands of subclouds outlives many a controller upgrade): it
//! says since when it is reconnecting, backs off, and picks up where it was (`Last-Event-ID`). What
//! it draws is decided in `watch` and `summary`, what the events add up to in `events`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::events::{self, EVENTS_PATH, EventsError, Live, OnRefusal, Parser};
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
    #[error(transparent)]
    Events(#[from] EventsError),
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

async fn poll_once(client: &Client) -> Result<(Value, Value), ClientError> {
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

/// What the watch shows, and how: a terminal is redrawn in place, anything else gets one line per
/// change, and the reconnect notes go to stderr.
struct Screen<'a> {
    terminal: bool,
    view: View<'a>,
    before: Option<Snapshot>,
    drawn: String,
    outage: Option<Outage>,
}

impl<'a> Screen<'a> {
    fn new(view: View<'a>) -> Self {
        Screen {
            terminal: std::io::stdout().is_terminal(),
            view,
            before: None,
            drawn: String::new(),
            outage: None,
        }
    }

    /// Draws the strategy and its steps; the exit code once the strategy is final.
    fn show(&mut self, strategy: &Value, steps: &Value) -> Result<Option<u8>, FollowError> {
        if let Some(down) = self.outage.take()
            && !self.terminal
        {
            eprintln!("{}", watch::reconnected(down.since, unix_now()));
        }
        let now = Snapshot::from_json(strategy, steps);
        if self.terminal {
            self.drawn = screen(strategy, steps, &now, self.view)?;
            print!("{}{}", watch::CLEAR, self.drawn);
        } else {
            for line in watch::changes(self.before.as_ref(), &now) {
                println!("{line}");
            }
        }
        std::io::stdout().flush()?;
        if let Some(outcome) = Outcome::of(&now.state) {
            return Ok(Some(outcome.exit_code()));
        }
        self.before = Some(now);
        Ok(None)
    }

    /// The controller cannot be reached: says since when, and answers how long to wait before the
    /// next attempt.
    fn down(&mut self, error: &ClientError) -> Result<Duration, FollowError> {
        let now = unix_now();
        let down = self.outage.get_or_insert(Outage {
            since: now,
            attempt: 0,
        });
        let line = watch::reconnecting(down.since, now, &error.to_string());
        if self.terminal {
            println!("{}{}{line}", watch::CLEAR, self.drawn);
            std::io::stdout().flush()?;
        } else if down.attempt == 0 {
            eprintln!("{line}");
        }
        let wait = watch::backoff(down.attempt);
        down.attempt = down.attempt.saturating_add(1);
        Ok(wait)
    }
}

/// Follows the strategy until it completes, fails or is aborted and returns the exit code that
/// says which (see [`Outcome`]): over the controller's event stream, resuming it with the last
/// event's id after a break, or by polling a controller that has no stream (404). Only an error that
/// retrying cannot cure (a 4xx: a bad token, the strategy deleted) ends it early.
pub async fn follow(
    client: &Client,
    interval: Duration,
    view: View<'_>,
) -> Result<u8, FollowError> {
    let mut screen = Screen::new(view);
    let mut live = Live::default();
    let mut last_id: Option<String> = None;
    loop {
        let body = match client.open_stream(EVENTS_PATH, last_id.as_deref()).await {
            Ok(body) => body,
            Err(error) => match events::on_refusal(&error) {
                OnRefusal::Poll => return poll(client, interval, screen).await,
                OnRefusal::Retry => {
                    actix_rt::time::sleep(screen.down(&error)?).await;
                    continue;
                }
                OnRefusal::Fail => return Err(error.into()),
            },
        };
        let resumed_from = last_id.clone();
        if let Some(code) =
            read(client, body, &mut live, &mut last_id, &mut screen, interval).await?
        {
            return Ok(code);
        }
        if last_id == resumed_from {
            // A connection that ended without one event (a proxy cutting streams, a controller
            // stopping): back off instead of reopening in a tight loop.
            let error = ClientError::Unreachable {
                url: EVENTS_PATH.to_owned(),
                reason: "the event stream ended without an event".to_owned(),
            };
            actix_rt::time::sleep(screen.down(&error)?).await;
        }
    }
}

/// With no byte for this long (the controller sends a keep-alive every 15 s), the connection is
/// taken for dead and reopened.
const SILENCE: Duration = Duration::from_secs(45);

/// Reads one connection of the stream, drawing at most once per `interval` (at once when the
/// strategy ends); `None` when the connection ends or breaks (the caller reconnects).
async fn read(
    client: &Client,
    mut body: awc::ClientResponse,
    live: &mut Live,
    last_id: &mut Option<String>,
    screen: &mut Screen<'_>,
    interval: Duration,
) -> Result<Option<u8>, FollowError> {
    let mut parser = Parser::default();
    // Back after an outage: redraw at once (clearing the reconnecting note) even if nothing changed.
    let mut dirty = screen.outage.is_some();
    let mut drawn_at: Option<Instant> = None;
    loop {
        let wait = match drawn_at {
            Some(at) if dirty => interval.saturating_sub(at.elapsed()),
            _ => SILENCE,
        };
        match actix_rt::time::timeout(wait, body.next()).await {
            Ok(Some(Ok(bytes))) => {
                for event in parser.push(&bytes) {
                    live.apply(&event)?;
                    if event.id.is_some() {
                        *last_id = event.id;
                    }
                    dirty = true;
                }
            }
            Ok(None | Some(Err(_))) => return Ok(None),
            Err(_) if !dirty => return Ok(None),
            Err(_) => {}
        }
        let ended = Outcome::of(watch_state(&live.strategy)).is_some();
        let due = drawn_at.is_none_or(|at| at.elapsed() >= interval);
        if !(dirty && live.known && (due || ended)) {
            continue;
        }
        if live.strategy.is_null() {
            // No strategy: the same answer as `show` gives (or one created meanwhile).
            match client.get(&crate::strategy_path()).await {
                Ok(_) => continue,
                Err(error) if error.is_transient() => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
        if let Some(code) = screen.show(&live.strategy, &live.steps())? {
            return Ok(Some(code));
        }
        dirty = false;
        drawn_at = Some(Instant::now());
    }
}

fn watch_state(strategy: &Value) -> &str {
    strategy.get("state").and_then(Value::as_str).unwrap_or("")
}

/// `--watch` against a controller without the event stream: polls the strategy and its steps every
/// `interval`, riding out a controller that restarts or cannot be reached for a while.
async fn poll(
    client: &Client,
    interval: Duration,
    mut screen: Screen<'_>,
) -> Result<u8, FollowError> {
    loop {
        let (strategy, steps) = match poll_once(client).await {
            Ok(answers) => answers,
            Err(error) if error.is_transient() => {
                actix_rt::time::sleep(screen.down(&error)?).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(code) = screen.show(&strategy, &steps)? {
            return Ok(code);
        }
        actix_rt::time::sleep(interval).await;
    }
}
