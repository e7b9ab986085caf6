//! One leader at a time among controllers that share a PostgreSQL database: a lease row with an epoch.
//!
//! Why a lease row rather than an advisory lock held on a session: a lock lives as long as the server
//! keeps its session, and when the network between the leader and the database breaks, the server keeps
//! the dead session (and the lock) until its TCP keepalives give up, minutes by default, while the
//! leader cannot know when that will be. With a lease both sides reason about one deadline: the leader
//! stops leading a fifth of the lease before the expiry it last renewed could pass ([`Timing::lead_until`],
//! by its own clock, counted from when it *sent* the renewal), and a standby takes over only once that
//! expiry has passed by the database's clock ([`may_take_over`], and the `UPDATE` checks it again). The
//! epoch, bumped at every takeover, fences what is left: every write of the leader's store checks it in
//! the same transaction (`PostgresStore::lead`), so a deposed leader's late writes fail instead of
//! landing.
//!
//! The lease has its own session (async, so a renewal that hangs on a cut network is abandoned at the
//! deadline), apart from the store's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// The lease row, created with the store's tables (under the migration lock). `expires_at` of the epoch
/// (1970) means nobody leads; PostgreSQL 15 has no infinite intervals to subtract.
pub const TABLE: &str = "
CREATE TABLE IF NOT EXISTS leader_lease (id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL,
  holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
INSERT INTO leader_lease (id, epoch, holder, expires_at) VALUES (1, 0, '', 'epoch') ON CONFLICT (id) DO NOTHING;
ALTER TABLE leader_lease ADD COLUMN IF NOT EXISTS api_url TEXT NOT NULL DEFAULT '';
";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("PostgreSQL (leadership lease): {0}")]
    Postgres(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<tokio_postgres::Error> for LeaseError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(crate::store::describe(&e))
    }
}

/// How long a lease lasts, and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease: Duration,
}

impl Timing {
    /// A leader renews five times per lease, and a standby looks as often.
    pub fn renew_every(self) -> Duration {
        self.lease / 5
    }

    /// Until when a leader whose last confirmed renewal was sent at `sent` may lead: the server set the
    /// expiry to its clock at the renewal (after `sent`) plus the lease, so leading stops a fifth of a
    /// lease before any standby could take over, which leaves that much for the two clocks' rates to
    /// differ and for the step-down itself.
    pub fn lead_until(self, sent: Instant) -> Instant {
        sent + self.lease - self.lease / 5
    }

    /// The longest a standby waits after the leader's last renewal: the lease, then one look.
    pub fn takeover_within(self) -> Duration {
        self.lease + self.renew_every()
    }
}

/// The lease row as a standby reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub epoch: i64,
    pub holder: String,
    /// Seconds until it expires by the database's clock (negative once expired).
    pub remaining_secs: f64,
}

/// Whether a standby may try to take the lease it saw: only once it has expired (never on a value that
/// is not a number). The take is a compare-and-set on the epoch and the expiry, so of two standbys only
/// one wins, and a renewal that landed in between wins over both.
pub fn may_take_over(seen: &Seen) -> bool {
    seen.remaining_secs < 0.0
}

/// The default holder name: which process leads, for operators and the logs.
pub fn default_holder(api_listen: &str) -> String {
    format!("dc-controller pid {} api {api_listen}", std::process::id())
}

/// A lease this controller holds.
pub struct Lease {
    client: tokio_postgres::Client,
    url: String,
    ca: Option<PathBuf>,
    holder: String,
    timing: Timing,
    /// The epoch this controller leads at; the store fences its writes with it.
    pub epoch: i64,
}

async fn connect(url: &str, ca: Option<&Path>) -> Result<tokio_postgres::Client, LeaseError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let (client, connection) = config.connect(crate::store::postgres::tls(ca)?).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "leadership lease session ended");
        }
    });
    Ok(client)
}

async fn look(client: &tokio_postgres::Client) -> Result<Seen, LeaseError> {
    let row = client
        .query_one(
            "SELECT epoch, holder, EXTRACT(EPOCH FROM expires_at - clock_timestamp())::float8
             FROM leader_lease WHERE id = 1",
            &[],
        )
        .await?;
    Ok(Seen {
        epoch: row.try_get(0)?,
        holder: row.try_get(1)?,
        remaining_secs: row.try_get(2)?,
    })
}

/// Takes the lease if it has expired; answers the new epoch.
async fn take(
    client: &tokio_postgres::Client,
    holder: &str,
    timing: Timing,
) -> Result<Option<i64>, LeaseError> {
    let seen = look(client).await?;
    if !may_take_over(&seen) {
        return Ok(None);
    }
    let taken = client
        .query_opt(
            "UPDATE leader_lease SET epoch = epoch + 1, holder = $2,
               expires_at = clock_timestamp() + make_interval(secs => $3)
             WHERE id = 1 AND epoch = $1 AND expires_at < clock_timestamp() RETURNING epoch",
            &[&seen.epoch, &holder, &timing.lease.as_secs_f64()],
        )
        .await?;
    if taken.is_some() && !seen.holder.is_empty() {
        tracing::warn!(previous = %seen.holder, "the leader's lease expired: taking over");
    }
    Ok(taken.map(|r| r.try_get(0)).transpose()?)
}

impl Lease {
    /// Waits as a standby until this controller leads: looks at the lease every
    /// [`Timing::renew_every`] and takes it once it has expired. A database that cannot be reached is
    /// retried: a standby never gives up.
    pub async fn acquire(url: &str, ca: Option<&Path>, holder: &str, timing: Timing) -> Self {
        let mut announced = false;
        loop {
            match connect(url, ca).await {
                Err(e) => tracing::warn!(error = %e, "standby: cannot reach the leadership lease"),
                Ok(client) => loop {
                    match take(&client, holder, timing).await {
                        Ok(Some(epoch)) => {
                            tracing::info!(epoch, %holder, "leading");
                            return Self {
                                client,
                                url: url.to_owned(),
                                ca: ca.map(Path::to_owned),
                                holder: holder.to_owned(),
                                timing,
                                epoch,
                            };
                        }
                        Ok(None) if !announced => {
                            announced = true;
                            tracing::info!(%holder, "standby: another controller leads; waiting for its lease to expire");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "standby: cannot read the leadership lease");
                            break;
                        }
                    }
                    tokio::time::sleep(timing.renew_every()).await;
                },
            }
            tokio::time::sleep(timing.renew_every()).await;
        }
    }

    /// Records where this leader's REST API answers (`[api] advertise_url`), for standbys to name in
    /// their 503s; only while this lease's epoch still holds.
    pub async fn advertise(&self, api_url: &str) -> Result<(), LeaseError> {
        self.client
            .execute(
                "UPDATE leader_lease SET api_url = $2 WHERE id = 1 AND epoch = $1",
                &[&self.epoch, &api_url],
            )
            .await?;
        Ok(())
    }

    /// Extends the lease; `false` when another controller has taken it.
    async fn renew(&self) -> Result<bool, LeaseError> {
        let renewed = self
            .client
            .query_opt(
                "UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => $2)
                 WHERE id = 1 AND epoch = $1 RETURNING epoch",
                &[&self.epoch, &self.timing.lease.as_secs_f64()],
            )
            .await?;
        Ok(renewed.is_some())
    }

    /// Renews every [`Timing::renew_every`] until `stop` (then releases the lease, so a standby takes
    /// over at its next look) or until leadership is lost: answers why, no later than
    /// [`Timing::lead_until`] of the last confirmed renewal. A session that broke is reopened within
    /// that time.
    pub async fn keep(mut self, mut stop: oneshot::Receiver<()>) -> Result<(), String> {
        let (timing, epoch) = (self.timing, self.epoch);
        let mut until = timing.lead_until(Instant::now());
        loop {
            let sent = Instant::now();
            let renewed = tokio::select! {
                _ = &mut stop => None,
                r = tokio::time::timeout_at(until, self.renew_on_session()) => Some(r),
            };
            match renewed {
                None => {
                    self.release().await;
                    return Ok(());
                }
                Some(Ok(Ok(true))) => until = timing.lead_until(sent),
                Some(Ok(Ok(false))) => {
                    return Err(format!(
                        "another controller took the lease (this one led at epoch {epoch})"
                    ));
                }
                Some(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "cannot renew the leadership lease");
                    if Instant::now() >= until {
                        return Err(format!("the lease could not be renewed in time ({e})"));
                    }
                }
                Some(Err(_)) => {
                    return Err(
                        "the lease could not be renewed in time (the database did not answer)"
                            .to_owned(),
                    );
                }
            }
            let next = (sent + timing.renew_every()).min(until);
            tokio::select! {
                _ = &mut stop => {
                    self.release().await;
                    return Ok(());
                }
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// [`Self::renew`], on a new session when the last one broke.
    async fn renew_on_session(&mut self) -> Result<bool, LeaseError> {
        if self.client.is_closed() {
            self.client = connect(&self.url, self.ca.as_deref()).await?;
        }
        self.renew().await
    }

    /// Gives the lease up (a controller stopping): a standby takes over at its next look.
    async fn release(&self) {
        let released = self
            .client
            .execute(
                "UPDATE leader_lease SET expires_at = 'epoch' WHERE id = 1 AND epoch = $1",
                &[&self.epoch],
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "cannot release the leadership lease; a standby takes over when it expires");
        }
        tracing::info!(holder = %self.holder, "released the leadership lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(remaining_secs: f64) -> Seen {
        Seen {
            epoch: 3,
            holder: "a".into(),
            remaining_secs,
        }
    }

    #[test]
    fn only_an_expired_lease_may_be_taken_over() {
        assert!(may_take_over(&seen(-0.001)));
        assert!(may_take_over(&seen(-1e9)));
        assert!(!may_take_over(&seen(0.0)));
        assert!(!may_take_over(&seen(4.9)));
        assert!(!may_take_over(&seen(f64::NAN)));
    }

    #[test]
    fn a_leader_stops_a_fifth_of_a_lease_before_anyone_may_take_over() {
        let t = Timing {
            lease: Duration::from_secs(5),
        };
        let sent = Instant::now();
        assert_eq!(t.lead_until(sent), sent + Duration::from_secs(4));
        assert_eq!(t.renew_every(), Duration::from_secs(1));
        // The standby's bound: the lease, then its next look; under the 10 s target with the default.
        assert_eq!(t.takeover_within(), Duration::from_secs(6));
        // The earliest takeover (the server's clock at the renewal, at or after `sent`, plus the lease)
        // comes after the leader stopped.
        assert!(t.lead_until(sent) < sent + t.lease);
    }

    /// Two standbys look at an expired lease at once: one takes it, and the other's later look finds it
    /// held. The first leader's store is then fenced: its late write fails and lands nothing.
    #[actix_rt::test]
    async fn one_standby_takes_an_expired_lease_and_the_deposed_leaders_late_write_lands_nothing() {
        use crate::model::Group;
        use crate::store::{Op, Store, StoreError};
        let db = crate::store::suite::OnPostgres::new();
        let (url, ca) = (db.url.clone(), db.server.ca());
        let mut store = tokio::task::spawn_blocking(move || {
            crate::store::PostgresStore::connect(&url, Some(&ca)).unwrap()
        })
        .await
        .unwrap();
        let timing = Timing {
            lease: Duration::from_millis(500),
        };
        let ca = db.server.ca();
        let first = Lease::acquire(&db.url, Some(&ca), "first", timing).await;
        store.lead(first.epoch);
        let group = Group::default_group();
        let written = group.clone();
        let mut store = tokio::task::spawn_blocking(move || {
            store.apply(&[Op::PutGroup(written)]).unwrap();
            store
        })
        .await
        .unwrap();
        // `first` never renews: its lease expires, and of two standbys exactly one takes it.
        let (a, b) = tokio::join!(
            Lease::acquire(&db.url, Some(&ca), "second", timing),
            async {
                let client = connect(&db.url, Some(&ca)).await.unwrap();
                tokio::time::sleep(timing.lease * 2).await;
                take(&client, "third", timing).await.unwrap()
            }
        );
        let second = a;
        assert_eq!(second.epoch, first.epoch + 1);
        assert_eq!(b, None, "the lease was already taken");
        let mut late = group.clone();
        late.description = "a late write".into();
        let (store, result) = tokio::task::spawn_blocking(move || {
            let r = store.apply(&[Op::PutGroup(late)]);
            (store, r)
        })
        .await
        .unwrap();
        assert!(
            matches!(result, Err(StoreError::Deposed { mine, current }) if mine == first.epoch && current == second.epoch),
            "{result:?}"
        );
        let mut store = store;
        let groups = tokio::task::spawn_blocking(move || store.load().unwrap().groups)
            .await
            .unwrap();
        assert_eq!(groups, vec![group]);
    }
}
