//! One leader at a time among controllers that share a PostgreSQL database: a lease row with an epoch.
//!
//! Why a lease row rather than an advisory lock held on a session: a lock lives as long as the server
//! keeps its session, and when the network between the leader and the database breaks, the server keeps
//! the dead session (and the lock) until its TCP keepalives give up, minutes by default, while the
//! leader cannot know when that will be. With a lease both sides reason about one length, each on its
//! OWN monotonic clock, so a wall-clock step anywhere (the server's, a controller's) changes nothing:
//! the leader stops leading a fifth of the lease before any standby could take over
//! ([`Timing::lead_until`], counted from when it *sent* its last confirmed renewal), and a standby takes
//! over only once it has seen the row unchanged (same epoch, same renewal mark) for a whole lease
//! ([`Watch::may_take_over`]); the `UPDATE` is a compare-and-set on that row. The server's
//! `expires_at` is written for operators (and older controllers) to read, never trusted for a takeover.
//! The epoch, bumped at every takeover, fences what is left: every write of the leader's store checks it
//! in the same transaction (`PostgresStore::connect_leading`), so a deposed leader's late writes fail
//! instead of landing.
//!
//! The lease has its own session (async, so a renewal that hangs on a cut network is abandoned at the
//! deadline), apart from the store's, and it is renewed by a task of its own from the moment
//! [`Lease::acquire`] returns: however long the new leader takes to load its state, it keeps the lease.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::store::postgres::Session;

/// The lease row, created by the first controller that waits for it (under the migration lock).
/// `expires_at` of the epoch (1970) means nobody leads (released); PostgreSQL 15 has no infinite
/// intervals to subtract.
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

    /// Until when a leader whose last confirmed renewal was sent at `sent` may lead: a standby first
    /// sees that renewal after `sent` and takes over no sooner than a whole lease later, so leading
    /// stops a fifth of a lease before that, which leaves that much for the two clocks' rates to differ
    /// and for the step-down itself.
    pub fn lead_until(self, sent: Instant) -> Instant {
        sent + self.lease - self.lease / 5
    }

    /// The longest a standby waits after the leader's last renewal: one look to see it, then the lease.
    pub fn takeover_within(self) -> Duration {
        self.lease + self.renew_every()
    }
}

/// The leadership a store writes under: the epoch it is fenced with, and the lease length its session's
/// server-side bounds derive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
    pub timing: Timing,
}

/// The lease row as a standby reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub epoch: i64,
    pub holder: String,
    /// What the last renewal wrote (`expires_at`, as text): it changes at every renewal, so the same
    /// mark seen twice means nobody renewed in between. Compared, never read as a time.
    pub mark: String,
    /// Released by a leader that stopped (or never taken): free at once.
    pub released: bool,
}

/// A standby's memory of the lease row: which row it saw, and since when by its own monotonic clock.
#[derive(Debug, Default)]
pub struct Watch {
    since: Option<((i64, String), Instant)>,
}

impl Watch {
    /// Whether a standby that sees `seen` at `now` may try to take the lease: at once when it was
    /// released, else only once it has seen that very row (same epoch, same renewal mark) for a whole
    /// lease. A renewal, or another standby's takeover, starts the count again. The take is a
    /// compare-and-set on the epoch and the mark, so of two standbys only one wins, and a renewal that
    /// landed in between wins over both.
    pub fn may_take_over(&mut self, seen: &Seen, now: Instant, timing: Timing) -> bool {
        if seen.released {
            return true;
        }
        let row = (seen.epoch, seen.mark.clone());
        match &self.since {
            Some((same, since)) if *same == row => now.duration_since(*since) >= timing.lease,
            _ => {
                self.since = Some((row, now));
                false
            }
        }
    }
}

/// The default holder name: which process leads, for operators and the logs.
pub fn default_holder(api_listen: &str) -> String {
    format!("dc-controller pid {} api {api_listen}", std::process::id())
}

/// A lease this controller holds, renewed by a task of its own until [`Lease::keep`] is told to stop,
/// or until the lease is dropped (a start that failed after taking it): either way the task releases it,
/// so a standby leads at its next look instead of a whole lease later.
pub struct Lease {
    /// The epoch this controller leads at; the store fences its writes with it.
    pub epoch: i64,
    timing: Timing,
    renewing: Renewing,
}

/// The renewal task, and what tells it to release the lease and end (sent, or dropped).
struct Renewing {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// The renewal task's side: the session and what a renewal writes.
struct Holder {
    client: tokio_postgres::Client,
    url: String,
    ca: Option<PathBuf>,
    holder: String,
    timing: Timing,
    epoch: i64,
}

async fn connect(
    url: &str,
    ca: Option<&Path>,
    timing: Timing,
) -> Result<tokio_postgres::Client, LeaseError> {
    let config = crate::store::postgres::session_config(url, timing, Session::Lease)?;
    let (client, connection) = config.connect(crate::store::postgres::tls(ca)?).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "leadership lease session ended");
        }
    });
    Ok(client)
}

/// Creates the lease row when it is missing, under the migration lock (two controllers starting on a
/// new database would otherwise race on `CREATE TABLE`).
async fn create(client: &tokio_postgres::Client) -> Result<(), LeaseError> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); {TABLE} COMMIT;",
            crate::store::postgres::MIGRATION_LOCK
        ))
        .await?;
    Ok(())
}

async fn look(client: &tokio_postgres::Client) -> Result<Seen, LeaseError> {
    let row = client
        .query_one(
            "SELECT epoch, holder, expires_at::text, expires_at = 'epoch' FROM leader_lease WHERE id = 1",
            &[],
        )
        .await?;
    Ok(Seen {
        epoch: row.try_get(0)?,
        holder: row.try_get(1)?,
        mark: row.try_get(2)?,
        released: row.try_get(3)?,
    })
}

/// Whether the server gave up waiting for a row lock (`lock_timeout`): the row is busy for an instant
/// (a store's fence, a renewal), so the caller tries again at its next turn.
fn lock_busy(e: &LeaseError) -> bool {
    matches!(e, LeaseError::Postgres(m) if m.ends_with("(55P03)"))
}

/// Takes the lease if `watch` says it may; answers the new epoch and when the take was sent.
async fn take(
    client: &tokio_postgres::Client,
    holder: &str,
    api_url: &str,
    timing: Timing,
    watch: &mut Watch,
) -> Result<Option<(i64, Instant)>, LeaseError> {
    let seen = look(client).await?;
    if !watch.may_take_over(&seen, Instant::now(), timing) {
        return Ok(None);
    }
    let sent = Instant::now();
    let taken = client
        .query_opt(
            "UPDATE leader_lease SET epoch = epoch + 1, holder = $3,
               expires_at = clock_timestamp() + make_interval(secs => $4), api_url = $5
             WHERE id = 1 AND epoch = $1 AND expires_at::text = $2 RETURNING epoch",
            &[
                &seen.epoch,
                &seen.mark,
                &holder,
                &timing.lease.as_secs_f64(),
                &api_url,
            ],
        )
        .await;
    let taken = match taken.map_err(LeaseError::from) {
        Err(e) if lock_busy(&e) => return Ok(None),
        taken => taken?,
    };
    if taken.is_some() && !seen.released {
        tracing::warn!(previous = %seen.holder, "the leader's lease was not renewed for a whole lease: taking over");
    }
    Ok(taken
        .map(|r| r.try_get(0))
        .transpose()?
        .map(|epoch| (epoch, sent)))
}

impl Lease {
    /// Waits as a standby until this controller leads: looks at the lease every
    /// [`Timing::renew_every`] and takes it once [`Watch::may_take_over`] says so; from then on a task
    /// renews it. A database that cannot be reached is retried (a standby never gives up); only a URL
    /// or a CA file that can never work is an error. The take records `api_url` (`[api]
    /// advertise_url`), which standbys name in their 503s, in the same statement: no moment of a new
    /// epoch with the old leader's URL.
    pub async fn acquire(
        url: &str,
        ca: Option<&Path>,
        holder: &str,
        api_url: &str,
        timing: Timing,
    ) -> Result<Self, LeaseError> {
        crate::store::postgres::session_config(url, timing, Session::Lease)?;
        crate::store::postgres::tls(ca)?;
        let mut announced = false;
        let mut watch = Watch::default();
        loop {
            match connect(url, ca, timing).await {
                Err(e) => tracing::warn!(error = %e, "standby: cannot reach the leadership lease"),
                Ok(client) => {
                    if let Err(e) = create(&client).await {
                        tracing::warn!(error = %e, "standby: cannot create the leadership lease");
                    }
                    loop {
                        match take(&client, holder, api_url, timing, &mut watch).await {
                            Ok(Some((epoch, sent))) => {
                                tracing::info!(epoch, %holder, "leading");
                                let held = Holder {
                                    client,
                                    url: url.to_owned(),
                                    ca: ca.map(Path::to_owned),
                                    holder: holder.to_owned(),
                                    timing,
                                    epoch,
                                };
                                let (stop, stopped) = oneshot::channel();
                                let task = tokio::spawn(held.keep(sent, stopped));
                                return Ok(Self {
                                    epoch,
                                    timing,
                                    renewing: Renewing {
                                        stop: Some(stop),
                                        task,
                                    },
                                });
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
                    }
                }
            }
            tokio::time::sleep(timing.renew_every()).await;
        }
    }

    /// Stops renewing without releasing, as a leader cut off from the database would.
    #[cfg(test)]
    fn abandon(self) {
        self.renewing.task.abort();
    }

    /// What the leader's store is fenced with.
    pub fn fence(&self) -> Fence {
        Fence {
            epoch: self.epoch,
            timing: self.timing,
        }
    }

    /// Releases the lease now (a start that failed after taking it), so a standby leads at its next
    /// look instead of a lease later; returns once the release was sent.
    pub async fn release(self) {
        let (_, stopped) = oneshot::channel();
        let _ = self.keep(stopped).await;
    }

    /// Waits until `stop` (then the lease is released, so a standby takes over at its next look) or
    /// until leadership is lost: answers why, no later than [`Timing::lead_until`] of the last
    /// confirmed renewal. The renewals themselves run since [`Self::acquire`] returned.
    pub async fn keep(self, stop: oneshot::Receiver<()>) -> Result<(), String> {
        let mut renewing = self.renewing;
        tokio::select! {
            kept = &mut renewing.task => {
                kept.unwrap_or_else(|e| Err(format!("the lease's renewal task failed: {e}")))
            }
            _ = stop => {
                if let Some(stop) = renewing.stop.take() {
                    let _ = stop.send(());
                }
                let _ = (&mut renewing.task).await;
                Ok(())
            }
        }
    }
}

impl Holder {
    /// Renews every [`Timing::renew_every`] until `stop` (then releases the lease) or until leadership
    /// is lost: answers why, no later than [`Timing::lead_until`] of the last confirmed renewal (the
    /// take, sent at `taken`, is the first). A session that broke is reopened within that time.
    async fn keep(mut self, taken: Instant, mut stop: oneshot::Receiver<()>) -> Result<(), String> {
        let (timing, epoch) = (self.timing, self.epoch);
        let mut until = timing.lead_until(taken);
        let mut sent = taken;
        loop {
            let next = (sent + timing.renew_every()).min(until);
            tokio::select! {
                _ = &mut stop => {
                    self.release().await;
                    return Ok(());
                }
                () = tokio::time::sleep_until(next) => {}
            }
            sent = Instant::now();
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
        }
    }

    /// Extends the lease (a new mark, so standbys count again); `false` when another controller has
    /// taken it.
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

    /// [`Self::renew`], on a new session when the last one broke.
    async fn renew_on_session(&mut self) -> Result<bool, LeaseError> {
        if self.client.is_closed() {
            self.client = connect(&self.url, self.ca.as_deref(), self.timing).await?;
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
            tracing::warn!(error = %e, "cannot release the leadership lease; a standby takes over when it goes unrenewed");
        }
        tracing::info!(holder = %self.holder, "released the leadership lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Group;
    use crate::store::{Op, PostgresStore, Store, StoreError};

    const SHORT: Timing = Timing {
        lease: Duration::from_secs(1),
    };

    fn seen(epoch: i64, mark: &str) -> Seen {
        Seen {
            epoch,
            holder: "a".into(),
            mark: mark.into(),
            released: false,
        }
    }

    /// The rule on a paused clock: only the standby's own monotonic time counts, so whatever the
    /// database's wall clock says (the marks are opaque), a live leader (whose mark changes at every
    /// renewal) is never taken over, and a silent one is after exactly a whole lease.
    #[tokio::test(start_paused = true)]
    async fn a_standby_takes_over_only_after_seeing_the_same_row_for_a_whole_lease_on_its_own_clock()
     {
        let t = Timing {
            lease: Duration::from_secs(5),
        };
        let mut watch = Watch::default();
        assert!(!watch.may_take_over(&seen(3, "10:00:05"), Instant::now(), t));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!watch.may_take_over(&seen(3, "10:00:05"), Instant::now(), t));
        // A renewal, even one whose expiry went backwards (the server's clock stepped), starts the
        // count again.
        assert!(!watch.may_take_over(&seen(3, "09:00:00"), Instant::now(), t));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!watch.may_take_over(&seen(3, "09:00:00"), Instant::now(), t));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(watch.may_take_over(&seen(3, "09:00:00"), Instant::now(), t));
        // Another standby took it meanwhile: a new epoch is a new row to watch.
        assert!(!watch.may_take_over(&seen(4, "09:00:00"), Instant::now(), t));
        // A released lease is free at once.
        let released = Seen {
            released: true,
            ..seen(4, "1970-01-01 00:00:00+00")
        };
        assert!(Watch::default().may_take_over(&released, Instant::now(), t));
    }

    #[test]
    fn a_leader_stops_a_fifth_of_a_lease_before_anyone_may_take_over() {
        let t = Timing {
            lease: Duration::from_secs(5),
        };
        let sent = Instant::now();
        assert_eq!(t.lead_until(sent), sent + Duration::from_secs(4));
        assert_eq!(t.renew_every(), Duration::from_secs(1));
        // The standby's bound: one look, then the lease; under the 10 s target with the default.
        assert_eq!(t.takeover_within(), Duration::from_secs(6));
        // The earliest takeover (a standby sees the renewal after `sent`, then waits a whole lease)
        // comes after the leader stopped.
        assert!(t.lead_until(sent) < sent + t.lease);
    }

    async fn open(db: &crate::store::suite::OnPostgres, fence: Fence) -> PostgresStore {
        let (url, ca) = (db.url.clone(), db.server.ca());
        tokio::task::spawn_blocking(move || {
            PostgresStore::connect_leading(&url, Some(&ca), fence).unwrap()
        })
        .await
        .unwrap()
    }

    async fn apply(
        mut store: PostgresStore,
        ops: Vec<Op>,
    ) -> (PostgresStore, Result<(), StoreError>) {
        tokio::task::spawn_blocking(move || {
            let r = store.apply(&ops);
            (store, r)
        })
        .await
        .unwrap()
    }

    async fn groups(mut store: PostgresStore) -> Vec<Group> {
        tokio::task::spawn_blocking(move || store.load().unwrap().groups)
            .await
            .unwrap()
    }

    /// Two standbys that both may take the lease race for it: the compare-and-set lets exactly one win,
    /// whatever the order. The first leader's store is then fenced: its late write fails and lands
    /// nothing, while the winner's lands.
    #[actix_rt::test]
    async fn of_two_racing_standbys_one_takes_the_lease_and_the_deposed_leaders_late_write_lands_nothing()
     {
        let db = crate::store::suite::OnPostgres::new();
        let ca = db.server.ca();
        let first = Lease::acquire(&db.url, Some(&ca), "first", "", SHORT)
            .await
            .unwrap();
        let old = open(&db, first.fence()).await;
        let group = Group::default_group();
        let (old, written) = apply(old, vec![Op::PutGroup(group.clone())]).await;
        written.unwrap();
        // `first` stops and releases its lease: both standbys may take it at their next look.
        let (stop, stopped) = oneshot::channel();
        let keeping = tokio::spawn(first.keep(stopped));
        stop.send(()).unwrap();
        keeping.await.unwrap().unwrap();
        let (a, b) = (
            connect(&db.url, Some(&ca), SHORT).await.unwrap(),
            connect(&db.url, Some(&ca), SHORT).await.unwrap(),
        );
        let (mut wa, mut wb) = (Watch::default(), Watch::default());
        let (ta, tb) = tokio::join!(
            take(&a, "second", "", SHORT, &mut wa),
            take(&b, "third", "", SHORT, &mut wb)
        );
        let won: Vec<i64> = [ta.unwrap(), tb.unwrap()]
            .into_iter()
            .flatten()
            .map(|(epoch, _)| epoch)
            .collect();
        assert_eq!(
            won,
            vec![2],
            "exactly one standby takes the lease, at the next epoch"
        );
        let mut late = group.clone();
        late.description = "a late write".into();
        let (old, result) = apply(old, vec![Op::PutGroup(late)]).await;
        assert!(
            matches!(
                result,
                Err(StoreError::Deposed {
                    mine: 1,
                    current: 2
                })
            ),
            "{result:?}"
        );
        assert_eq!(groups(old).await, vec![group.clone()]);
    }

    /// M1: the new leader keeps its lease from the moment it took it, however long it takes before it
    /// runs (loading a large state): a standby that watches meanwhile sees it renewed and never takes
    /// over; once the leader stops, it releases the lease and the standby leads.
    #[actix_rt::test]
    async fn a_new_leader_keeps_its_lease_while_it_loads_and_a_standby_leads_once_it_stops() {
        let db = crate::store::suite::OnPostgres::new();
        let ca = db.server.ca();
        let first = Lease::acquire(&db.url, Some(&ca), "first", "", SHORT)
            .await
            .unwrap();
        // A load of three leases, during which a standby waits in vain.
        let waited = tokio::time::timeout(
            SHORT.lease * 3,
            Lease::acquire(&db.url, Some(&ca), "second", "", SHORT),
        )
        .await;
        assert!(
            waited.is_err(),
            "the standby took a lease that was being renewed"
        );
        let (stop, stopped) = oneshot::channel();
        let keeping = tokio::spawn(first.keep(stopped));
        stop.send(()).unwrap();
        keeping.await.unwrap().unwrap();
        let second = Lease::acquire(&db.url, Some(&ca), "second", "", SHORT)
            .await
            .unwrap();
        assert_eq!(second.epoch, 2);
    }

    /// A controller that took the lease and then failed to start (its store would not open) drops the
    /// lease, which releases it: with a minute-long lease, a standby leads well within that minute.
    #[actix_rt::test]
    async fn a_lease_dropped_by_a_start_that_failed_is_released_and_a_standby_leads_at_once() {
        let db = crate::store::suite::OnPostgres::new();
        let ca = db.server.ca();
        let long = Timing {
            lease: Duration::from_secs(60),
        };
        let first = Lease::acquire(&db.url, Some(&ca), "first", "", long)
            .await
            .unwrap();
        drop(first);
        let second = tokio::time::timeout(
            Duration::from_secs(30),
            Lease::acquire(&db.url, Some(&ca), "second", "", long),
        )
        .await
        .expect("a released lease is taken at the next look, not a lease later")
        .unwrap();
        assert_eq!(second.epoch, 2);
    }

    /// H1: a leader cut off in the middle of a store transaction, right after its fence took the lease
    /// row's lock, leaves a session that is idle in that transaction. The server ends it after a lease
    /// (`idle_in_transaction_session_timeout`), so the standby's takeover waits about one lease more,
    /// not until TCP keepalive notices (hours); and the new leader writes.
    #[actix_rt::test]
    async fn a_transaction_left_open_by_a_cut_off_leader_holds_the_takeover_back_no_longer_than_a_lease()
     {
        let db = crate::store::suite::OnPostgres::new();
        let ca = db.server.ca();
        let first = Lease::acquire(&db.url, Some(&ca), "first", "", SHORT)
            .await
            .unwrap();
        let epoch = first.epoch;
        // The cut-off leader's store session, with the bounds every store session has, holding the lock.
        let config =
            crate::store::postgres::session_config(&db.url, SHORT, Session::Store).unwrap();
        let (cut, connection) = config
            .connect(crate::store::postgres::tls(Some(&ca)).unwrap())
            .await
            .unwrap();
        let session = tokio::spawn(connection);
        cut.batch_execute("BEGIN; SELECT epoch FROM leader_lease WHERE id = 1 FOR SHARE")
            .await
            .unwrap();
        // ...and then it says nothing more, and renews no more.
        first.abandon();
        let second = tokio::time::timeout(
            Duration::from_secs(60),
            Lease::acquire(&db.url, Some(&ca), "second", "", SHORT),
        )
        .await
        .expect("the standby takes over once the server ends the silent transaction")
        .unwrap();
        assert_eq!(second.epoch, epoch + 1);
        // The server ended the silent session (which is how the lock went).
        let ended = session.await.unwrap();
        assert!(ended.is_err(), "the server ends an idle transaction");
        let group = Group::default_group();
        let (store, written) = apply(
            open(&db, second.fence()).await,
            vec![Op::PutGroup(group.clone())],
        )
        .await;
        written.unwrap();
        assert_eq!(groups(store).await, vec![group]);
    }
}
