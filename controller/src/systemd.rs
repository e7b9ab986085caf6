//! The service manager's readiness and watchdog protocol, for the packaged unit (`Type=notify`,
//! `WatchdogSec=`). Without `NOTIFY_SOCKET` (tests, `dc-demo`, a shell) every call does nothing.
//!
//! Readiness is sent once both listeners are bound, so `systemctl start` returns when agents and
//! operators can connect. The watchdog is pinged only while the orchestrator and the progress writer
//! both answer a message: a wedged actor system stops the pings, and systemd restarts the controller,
//! which resumes from its database.
//!
//! A standby (PostgreSQL, another controller leads) is ready too: its listeners are bound, its API
//! serves reads and names the leader, and it may wait for hours. It reports READY at once, so the
//! unit's start timeout does not kill it, pings the watchdog while it waits, and says in STATUS whom
//! it waits for; once it leads, the status says so ([`ready`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::api::Actors;
use crate::api::standby::Standby;
use crate::orchestrator::Figures;
use crate::orchestrator::persist::Figures as StepFigures;

/// What `systemctl status` shows under the unit once the controller leads.
pub fn status_line(api: SocketAddr, agents: SocketAddr) -> String {
    format!("leading: REST API on {api}, agents on {agents}")
}

/// What `systemctl status` shows while a standby waits: who holds the lease, as the standby last read
/// it (or why it could not).
pub fn standby_line(holder: Result<Option<&str>, &str>) -> String {
    match holder {
        Ok(Some(holder)) => format!("standby: waiting for the lease held by {holder}"),
        Ok(None) => "standby: waiting for the lease (nobody holds it)".to_owned(),
        Err(why) => format!("standby: waiting for the lease (cannot read it: {why})"),
    }
}

/// How often a standby refreshes its status when no watchdog was asked for.
const STANDBY_STATUS_EVERY: Duration = Duration::from_secs(5);

/// How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises, so one slow ping
/// is not yet a restart.
pub fn ping_period(timeout: Duration) -> Duration {
    timeout / 2
}

/// Tells the service manager the controller is ready, and where it listens.
pub fn ready(api: SocketAddr, agents: SocketAddr) {
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(api, agents)),
    ]);
}

/// While a standby waits (abort it once it leads): READY with whom it waits for, then the status
/// again and a watchdog ping every half `WATCHDOG_USEC` (every [`STANDBY_STATUS_EVERY`] without
/// one). Returns at once without a service manager.
pub async fn standby(view: Arc<Standby>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog.map_or(STANDBY_STATUS_EVERY, ping_period);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The status read is bounded by half a ping period, so a database that is slow or gone
        // cannot delay the ping enough to get a waiting standby killed by its watchdog. One datagram
        // per tick: the send blocks when the service manager does not read.
        let seen = tokio::time::timeout(every / 2, view.view()).await;
        let line = standby_line(match &seen {
            Ok(Ok(view)) => Ok(view.holder()),
            Ok(Err(e)) => Err(e.message.as_str()),
            Err(_) => Err("the database did not answer within half a watchdog ping period"),
        });
        let mut state = vec![NotifyState::Ready, NotifyState::Status(&line)];
        if watchdog.is_some() {
            state.push(NotifyState::Watchdog);
        }
        notify(&state);
    }
}

/// Tells the service manager the controller is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog every half `WATCHDOG_USEC` for as long as the actors answer; returns at once when
/// no watchdog was asked for. Spawn it on the controller's actix system, so it runs only while that does.
pub async fn watchdog(actors: Actors) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(ping_period(timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match alive(&actors).await {
            Ok(()) => notify(&[NotifyState::Watchdog]),
            Err(e) => {
                // No ping: systemd restarts the controller once the timeout passes.
                tracing::error!(error = %e, "an actor no longer answers; the watchdog is not pinged");
                return;
            }
        }
    }
}

/// Whether the orchestrator and the progress writer both answer a read: what each watchdog ping stands
/// for.
pub async fn alive(actors: &Actors) -> Result<(), actix::MailboxError> {
    actors.orchestrator.send(Figures).await?;
    actors.persist.send(StepFigures).await?;
    Ok(())
}

fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_timeout() {
        assert_eq!(
            ping_period(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            ping_period(Duration::from_micros(3)),
            Duration::from_nanos(1500)
        );
    }

    #[test]
    fn the_status_names_both_listeners() {
        let line = status_line(
            "127.0.0.1:8119".parse().unwrap(),
            "0.0.0.0:8120".parse().unwrap(),
        );
        assert_eq!(
            line,
            "leading: REST API on 127.0.0.1:8119, agents on 0.0.0.0:8120"
        );
    }

    #[test]
    fn a_standbys_status_names_the_holder_or_why_it_cannot() {
        assert_eq!(
            standby_line(Ok(Some("ctl-a"))),
            "standby: waiting for the lease held by ctl-a"
        );
        assert_eq!(
            standby_line(Ok(None)),
            "standby: waiting for the lease (nobody holds it)"
        );
        assert_eq!(
            standby_line(Err("refused")),
            "standby: waiting for the lease (cannot read it: refused)"
        );
    }
}
