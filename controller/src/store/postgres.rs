//! The PostgreSQL store: the same tables and the same numbered migrations as [`super::sqlite`], written
//! the same way (each batch of [`Op`]s in one transaction, committed before the caller acts on it), on a
//! server that several controllers share.
//!
//! TLS to the server goes through rustls on ring, like every other connection of the controller: the
//! server's certificate is verified against `database_ca` (a PEM file) or, without it, the system's
//! roots. `sslmode` in the URL says whether plain TCP is acceptable (`disable`) or refused (`require`,
//! what a deployment should say); `prefer` (libpq's default, used when the URL says nothing) is taken
//! as `require`: falling back to plain TCP when TLS fails would let anyone on the path downgrade the
//! connection, so plain TCP must be asked for by name.
//!
//! Every session (the store's and the lease's, [`session_config`]) carries server-side bounds derived
//! from the lease, so the server ends the session of a controller cut off from it within about a lease,
//! and with it any lock it held, instead of after TCP's default keepalive (hours).

use std::path::Path;
use std::time::Duration;

use postgres::{Client, Row, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{LastIds, Op, Snapshot, Store, StoreError, drops_a_key, storable};
use crate::lease::{Fence, Timing};
use crate::model::{ApplyType, Group, Stage, Step, Strategy, StrategyState, Subcloud};
use crate::options::OptionsEntry;

/// The PostgreSQL store: one session, on the store's own thread.
pub struct PostgresStore {
    client: Client,
    /// The leadership epoch this controller writes under ([`Self::connect_leading`]); `None` for a
    /// store used without leadership (tests, tools).
    epoch: Option<i64>,
}

/// Which session [`session_config`] is for: the store's runs transactions of many statements, the
/// lease's single short ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    Store,
    Lease,
}

/// The tables as the first release had them (schema version 0), in PostgreSQL's types: integers are
/// `BIGINT` (SQLite's are 64-bit), flags `BOOLEAN`.
const SCHEMA: &str = "
CREATE TABLE groups (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
  update_apply_type TEXT NOT NULL, max_parallel BIGINT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT);
CREATE TABLE subclouds (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
  location TEXT NOT NULL, group_id BIGINT NOT NULL, managed BOOLEAN NOT NULL, created_at TEXT NOT NULL,
  updated_at TEXT);
CREATE TABLE strategy (id BIGINT PRIMARY KEY, apply_type TEXT NOT NULL, max_parallel BIGINT NOT NULL,
  stop_on_failure BOOLEAN NOT NULL, state TEXT NOT NULL, subject TEXT, expiry_date TEXT, cert_file TEXT,
  created_at TEXT NOT NULL, updated_at TEXT);
CREATE TABLE steps (id BIGINT PRIMARY KEY, subcloud TEXT NOT NULL UNIQUE, update_id TEXT NOT NULL,
  stage TEXT NOT NULL, state TEXT NOT NULL, details TEXT NOT NULL, started_at TEXT, finished_at TEXT,
  created_at TEXT NOT NULL, updated_at TEXT);
";

/// [`super::sqlite::MIGRATIONS`] in PostgreSQL's dialect, entry for entry: version N means the same
/// tables and columns on both backends. Append-only, like SQLite's list, and always together with it
/// (`docs/schema-migrations.md`; a test compares the lengths). The version lives in `schema_version`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: why the last update of a subcloud failed.
    "ALTER TABLE subclouds ADD COLUMN error_description TEXT",
    // 2: ids are never reused; the highest of each kind kept by triggers, seeded from the rows.
    "CREATE TABLE last_ids (kind TEXT PRIMARY KEY, id BIGINT NOT NULL);
     INSERT INTO last_ids SELECT 'group', COALESCE(MAX(id), 0) FROM groups;
     INSERT INTO last_ids SELECT 'subcloud', COALESCE(MAX(id), 0) FROM subclouds;
     INSERT INTO last_ids SELECT 'strategy', COALESCE(MAX(id), 0) FROM strategy;
     CREATE FUNCTION keep_last_id() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN UPDATE last_ids SET id = GREATEST(id, NEW.id) WHERE kind = TG_ARGV[0]; RETURN NULL; END $$;
     CREATE TRIGGER groups_last_id AFTER INSERT ON groups
       FOR EACH ROW EXECUTE FUNCTION keep_last_id('group');
     CREATE TRIGGER subclouds_last_id AFTER INSERT ON subclouds
       FOR EACH ROW EXECUTE FUNCTION keep_last_id('subcloud');
     CREATE TRIGGER strategy_last_id AFTER INSERT ON strategy
       FOR EACH ROW EXECUTE FUNCTION keep_last_id('strategy');",
    // 3: revoked agent certificates.
    "CREATE TABLE revoked (subcloud TEXT PRIMARY KEY, before BIGINT NOT NULL)",
    // 4: going on although pods that nothing restarts keep the old CA alone.
    "ALTER TABLE strategy ADD COLUMN proceed_with_stranded_pods BOOLEAN NOT NULL DEFAULT FALSE",
    // 5: sw-update-options; a subcloud's entry goes with the subcloud.
    "CREATE TABLE sw_update_opts (id BIGINT PRIMARY KEY, subcloud_id BIGINT NOT NULL UNIQUE,
       storage_apply_type TEXT NOT NULL, worker_apply_type TEXT NOT NULL,
       max_parallel_workers BIGINT NOT NULL, alarm_restriction_type TEXT NOT NULL,
       default_instance_action TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT);
     CREATE FUNCTION drop_subcloud_options() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN DELETE FROM sw_update_opts WHERE subcloud_id = OLD.id; RETURN NULL; END $$;
     CREATE TRIGGER subclouds_sw_update_opts AFTER DELETE ON subclouds
       FOR EACH ROW EXECUTE FUNCTION drop_subcloud_options();",
    // 6: a rollback strategy (create --rollback) takes unfinished updates back to the old root CA.
    "ALTER TABLE strategy ADD COLUMN rollback BOOLEAN NOT NULL DEFAULT FALSE",
];

/// The advisory lock migrations (and the lease row's creation) run under: controllers started together
/// against a new database migrate it once, one after the other.
pub(crate) const MIGRATION_LOCK: i64 = 0x6463_726f_6f74_6361;

/// How long connecting may take before the store gives up (a server that does not answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The lease length a store without leadership bounds its session with (the default lease).
const UNLED: Timing = Timing {
    lease: Duration::from_secs(5),
};

/// The settings of a session to the server: the URL's, with `sslmode=prefer` made `require` (see the
/// module's doc), a connect timeout, and bounds derived from the lease so that the server ends the
/// session of a controller that went silent within about a lease, releasing whatever it held:
/// - `idle_in_transaction_session_timeout` = the lease: a leader cut off between two statements of a
///   transaction;
/// - `statement_timeout`: the lease for the lease's session (a renewal that takes longer is useless),
///   six leases for the store's (no statement of it takes seconds; a migration's `ALTER` is metadata);
/// - `lock_timeout` = a renewal interval on the lease's session: a take or renewal that meets the row
///   locked tries again at its next turn instead of queueing;
/// - TCP keepalives every fifth of a lease (three unanswered: gone) and `tcp_user_timeout` = the lease,
///   for a peer that vanished while data was in flight, on both ends: the controller's socket, and the
///   server's through its per-session `tcp_keepalives_*` and `tcp_user_timeout` settings.
pub(crate) fn session_config(
    url: &str,
    timing: Timing,
    session: Session,
) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Prefer {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let ms = |d: Duration| d.as_millis().max(1);
    let lease = timing.lease;
    let probe = timing.renew_every().max(Duration::from_secs(1));
    let mut options = format!(
        "-c idle_in_transaction_session_timeout={} -c tcp_keepalives_idle={} \
         -c tcp_keepalives_interval={} -c tcp_keepalives_count=3 -c tcp_user_timeout={}",
        ms(lease),
        probe.as_secs(),
        probe.as_secs(),
        ms(lease.max(Duration::from_secs(1)))
    );
    match session {
        Session::Store => options.push_str(&format!(" -c statement_timeout={}", ms(lease * 6))),
        Session::Lease => options.push_str(&format!(
            " -c statement_timeout={} -c lock_timeout={}",
            ms(lease),
            ms(timing.renew_every())
        )),
    }
    if let Some(theirs) = config.get_options() {
        options = format!("{theirs} {options}");
    }
    config
        .options(options)
        .keepalives(true)
        .keepalives_idle(probe)
        .keepalives_interval(probe)
        .keepalives_retries(3)
        .tcp_user_timeout(lease.max(Duration::from_secs(1)));
    Ok(config)
}

impl PostgresStore {
    /// Connects without leadership (tests, tools): TLS as `sslmode` says, verified against `ca` or the
    /// system's roots; creates the tables in an empty database and applies the migrations it has not
    /// seen.
    pub fn connect(url: &str, ca: Option<&Path>) -> Result<Self, StoreError> {
        Self::open(url, ca, UNLED, None)
    }

    /// Connects as the leader that holds the lease `fence` was taken with: the migrations it applies and
    /// every later write commit only while the lease row still holds that epoch, so once a standby has
    /// taken over, this controller's late writes fail ([`StoreError::Deposed`]) and land nothing. Only
    /// a leader opens its store (a standby, which holds no epoch, never migrates: see
    /// `docs/schema-migrations.md`).
    pub fn connect_leading(url: &str, ca: Option<&Path>, fence: Fence) -> Result<Self, StoreError> {
        Self::open(url, ca, fence.timing, Some(fence.epoch))
    }

    /// Connects a standby's read-only view (`api::standby`): it loads what the leader wrote and never
    /// migrates (a standby holds no epoch to fence a migration with, and must not change the schema
    /// under a running leader), so it refuses a database at another schema version than its own until
    /// the leader, or this controller once it leads, has migrated it.
    pub fn connect_reading(url: &str, ca: Option<&Path>) -> Result<Self, StoreError> {
        let config = postgres::Config::from(session_config(url, UNLED, Session::Store)?);
        let mut client = config.connect(tls(ca)?)?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        let version: Option<i64> = client
            .query_opt("SELECT version FROM schema_version", &[])
            .ok()
            .flatten()
            .map(|row| row.try_get(0))
            .transpose()?;
        match version {
            Some(v) if v == known => Ok(Self {
                client,
                epoch: None,
            }),
            v => Err(StoreError::Corrupt(format!(
                "the database is at schema version {}, this controller reads version {known}; a \
                 standby shows it once the leader (or this controller, when it leads) has migrated it",
                v.map_or_else(|| "none (empty)".to_owned(), |v| v.to_string())
            ))),
        }
    }

    /// Who leads now, as the lease row says: `None` once its lease has expired or was released.
    pub fn leader(&mut self) -> Result<Option<Leader>, StoreError> {
        let row = self.client.query_opt(
            "SELECT holder, api_url FROM leader_lease WHERE id = 1 AND expires_at > clock_timestamp()",
            &[],
        )?;
        row.map(|r| {
            Ok(Leader {
                holder: r.try_get(0)?,
                api_url: Some(r.try_get::<_, String>(1)?).filter(|u| !u.is_empty()),
            })
        })
        .transpose()
    }

    fn open(
        url: &str,
        ca: Option<&Path>,
        timing: Timing,
        epoch: Option<i64>,
    ) -> Result<Self, StoreError> {
        let config = postgres::Config::from(session_config(url, timing, Session::Store)?);
        let mut client = config.connect(tls(ca)?)?;
        migrate(&mut client, MIGRATIONS, epoch)?;
        Ok(Self { client, epoch })
    }
}

/// The fence: the last statement of every transaction of a leader's store, just before its `COMMIT`.
/// `FOR SHARE`: a takeover (which bumps the epoch) waits for this transaction's commit, or this one
/// reads the epoch the takeover wrote; either way no write of a deposed leader commits. Last, not first,
/// so the lease row is locked for an instant: a leader cut off in the middle of a long transaction
/// holds nothing a takeover or a renewal waits for.
fn fence(tx: &mut Transaction<'_>, epoch: Option<i64>) -> Result<(), StoreError> {
    let Some(mine) = epoch else {
        return Ok(());
    };
    let current: i64 = tx
        .query_one("SELECT epoch FROM leader_lease WHERE id = 1 FOR SHARE", &[])?
        .try_get(0)?;
    if current == mine {
        Ok(())
    } else {
        Err(StoreError::Deposed { mine, current })
    }
}

/// The controller that holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub holder: String,
    /// Its `[api] advertise_url`, once it recorded it.
    pub api_url: Option<String>,
}

/// The TLS connector: rustls on ring, trusting `ca` (PEM) or the system's roots.
pub(crate) fn tls(ca: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let config = match ca {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|source| StoreError::File {
                path: path.to_owned(),
                source,
            })?;
            dc_protocol::tls::https_client_config(&pem)
                .map_err(|e| StoreError::Tls(format!("{}: {e}", path.display())))?
        }
        None => {
            let mut roots = rustls::RootCertStore::empty();
            // Unreadable system certificates are skipped, as every TLS client does.
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(StoreError::Tls(
                    "no system root certificates; set database_ca to the CA of the server's certificate"
                        .to_owned(),
                ));
            }
            std::sync::Arc::new(
                rustls::ClientConfig::builder_with_provider(dc_protocol::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| StoreError::Tls(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    };
    Ok(MakeRustlsConnect::new(std::sync::Arc::unwrap_or_clone(
        config,
    )))
}

/// Applies the migrations the database has not seen, each in its own transaction, under
/// [`MIGRATION_LOCK`] and, for a leader, the [`fence`] of its `epoch`; an empty database first gets
/// [`SCHEMA`] as version 0.
fn migrate(client: &mut Client, migrations: &[&str], epoch: Option<i64>) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = migrate_locked(client, migrations, epoch);
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    result
}

fn migrate_locked(
    client: &mut Client,
    migrations: &[&str],
    epoch: Option<i64>,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let applied: i64 = match tx.query_opt("SELECT version FROM schema_version", &[])? {
        Some(row) => row.try_get(0)?,
        None => {
            tx.batch_execute(SCHEMA)?;
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    fence(&mut tx, epoch)?;
    tx.commit()?;
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {applied}, newer than this controller's {known}; \
             run the controller that wrote it (downgrades are not supported)"
        )));
    }
    for (version, sql) in (1_i64..).zip(migrations).skip_while(|(v, _)| *v <= applied) {
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("UPDATE schema_version SET version = $1", &[&version])?;
        fence(&mut tx, epoch)?;
        tx.commit()?;
    }
    Ok(())
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} '{value}'"))
}

/// A `BIGINT` column into a narrower unsigned field.
fn narrow<T: TryFrom<i64>>(row: &Row, i: usize, what: &str) -> Result<T, StoreError> {
    let v: i64 = row.try_get(i)?;
    T::try_from(v).map_err(|_| corrupt(what, &v.to_string()))
}

fn named<T>(
    row: &Row,
    i: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let v: String = row.try_get(i)?;
    parse(&v).ok_or_else(|| corrupt(what, &v))
}

fn group_row(r: &Row) -> Result<Group, StoreError> {
    Ok(Group {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        update_apply_type: named(r, 3, "apply type", ApplyType::parse)?,
        max_parallel: narrow(r, 4, "max parallel")?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

fn subcloud_row(r: &Row) -> Result<Subcloud, StoreError> {
    Ok(Subcloud {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        location: r.try_get(3)?,
        group_id: r.try_get(4)?,
        managed: r.try_get(5)?,
        created_at: r.try_get(6)?,
        updated_at: r.try_get(7)?,
        error_description: r.try_get(8)?,
    })
}

fn strategy_row(r: &Row) -> Result<Strategy, StoreError> {
    Ok(Strategy {
        id: r.try_get(0)?,
        apply_type: named(r, 1, "apply type", ApplyType::parse)?,
        max_parallel: narrow(r, 2, "max parallel")?,
        stop_on_failure: r.try_get(3)?,
        state: named(r, 4, "strategy state", StrategyState::parse)?,
        subject: r.try_get(5)?,
        expiry_date: r.try_get(6)?,
        cert_file: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        proceed_with_stranded_pods: r.try_get(10)?,
        rollback: r.try_get(11)?,
    })
}

fn step_row(r: &Row) -> Result<Step, StoreError> {
    Ok(Step {
        id: r.try_get(0)?,
        subcloud: r.try_get(1)?,
        update_id: r.try_get(2)?,
        stage: named(r, 3, "stage", Stage::parse)?,
        state: r.try_get(4)?,
        details: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

/// A sw-update-options row, its values by upstream's names.
fn options_row(r: &Row) -> Result<OptionsEntry, StoreError> {
    fn parsed<T: std::str::FromStr>(r: &Row, i: usize) -> Result<T, StoreError> {
        named(r, i, "sw-update option", |v| v.parse().ok())
    }
    Ok(OptionsEntry {
        id: r.try_get(0)?,
        subcloud_id: r.try_get(1)?,
        storage_apply_type: parsed(r, 2)?,
        worker_apply_type: parsed(r, 3)?,
        max_parallel_workers: narrow(r, 4, "max parallel workers")?,
        alarm_restriction_type: parsed(r, 5)?,
        default_instance_action: parsed(r, 6)?,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}

fn rows<T>(
    tx: &mut Transaction<'_>,
    sql: &str,
    row: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    tx.query(sql, &[])?.iter().map(row).collect()
}

/// Writes one op inside the batch's transaction. A put replaces the row with its id (`ON CONFLICT (id)
/// DO UPDATE`), as SQLite's `INSERT OR REPLACE` does.
fn write(tx: &mut Transaction<'_>, op: &Op) -> Result<(), postgres::Error> {
    match op {
        Op::PutGroup(g) => tx.execute(
            "INSERT INTO groups (id,name,description,update_apply_type,max_parallel,created_at,updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (id) DO UPDATE SET name=excluded.name,
             description=excluded.description, update_apply_type=excluded.update_apply_type,
             max_parallel=excluded.max_parallel, created_at=excluded.created_at, updated_at=excluded.updated_at",
            &[
                &g.id,
                &g.name,
                &g.description,
                &g.update_apply_type.as_str(),
                &i64::from(g.max_parallel),
                &g.created_at,
                &g.updated_at,
            ],
        ),
        Op::DeleteGroup(id) => tx.execute("DELETE FROM groups WHERE id=$1", &[id]),
        Op::PutSubcloud(s) => tx.execute(
            "INSERT INTO subclouds (id,name,description,location,group_id,managed,created_at,updated_at,error_description)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO UPDATE SET name=excluded.name,
             description=excluded.description, location=excluded.location, group_id=excluded.group_id,
             managed=excluded.managed, created_at=excluded.created_at, updated_at=excluded.updated_at,
             error_description=excluded.error_description",
            &[
                &s.id,
                &s.name,
                &s.description,
                &s.location,
                &s.group_id,
                &s.managed,
                &s.created_at,
                &s.updated_at,
                &s.error_description,
            ],
        ),
        Op::DeleteSubcloud(id) => tx.execute("DELETE FROM subclouds WHERE id=$1", &[id]),
        Op::PutStrategy(s) => {
            tx.execute("DELETE FROM strategy WHERE id<>$1", &[&s.id])?;
            tx.execute(
                "INSERT INTO strategy (id,apply_type,max_parallel,stop_on_failure,state,subject,expiry_date,cert_file,created_at,updated_at,proceed_with_stranded_pods,rollback)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (id) DO UPDATE SET
                 apply_type=excluded.apply_type, max_parallel=excluded.max_parallel,
                 stop_on_failure=excluded.stop_on_failure, state=excluded.state, subject=excluded.subject,
                 expiry_date=excluded.expiry_date, cert_file=excluded.cert_file,
                 created_at=excluded.created_at, updated_at=excluded.updated_at,
                 proceed_with_stranded_pods=excluded.proceed_with_stranded_pods,
                 rollback=excluded.rollback",
                &[
                    &s.id,
                    &s.apply_type.as_str(),
                    &i64::from(s.max_parallel),
                    &s.stop_on_failure,
                    &s.state.as_str(),
                    &s.subject,
                    &s.expiry_date,
                    &s.cert_file,
                    &s.created_at,
                    &s.updated_at,
                    &s.proceed_with_stranded_pods,
                    &s.rollback,
                ],
            )
        }
        Op::DeleteStrategy => {
            tx.execute("DELETE FROM steps", &[])?;
            tx.execute("DELETE FROM strategy", &[])
        }
        Op::PutStep(s) => tx.execute(
            "INSERT INTO steps (id,subcloud,update_id,stage,state,details,started_at,finished_at,created_at,updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO UPDATE SET
             subcloud=excluded.subcloud, update_id=excluded.update_id, stage=excluded.stage,
             state=excluded.state, details=excluded.details, started_at=excluded.started_at,
             finished_at=excluded.finished_at, created_at=excluded.created_at, updated_at=excluded.updated_at",
            &[
                &s.id,
                &s.subcloud,
                &s.update_id,
                &s.stage.as_str(),
                &s.state,
                &s.details,
                &s.started_at,
                &s.finished_at,
                &s.created_at,
                &s.updated_at,
            ],
        ),
        Op::Revoke { subcloud, before } => tx.execute(
            "INSERT INTO revoked (subcloud,before) VALUES ($1,$2)
             ON CONFLICT (subcloud) DO UPDATE SET before=GREATEST(revoked.before, excluded.before)",
            &[subcloud, before],
        ),
        Op::PutOptions(o) => tx.execute(
            "INSERT INTO sw_update_opts (id,subcloud_id,storage_apply_type,worker_apply_type,max_parallel_workers,alarm_restriction_type,default_instance_action,created_at,updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO UPDATE SET
             subcloud_id=excluded.subcloud_id, storage_apply_type=excluded.storage_apply_type,
             worker_apply_type=excluded.worker_apply_type, max_parallel_workers=excluded.max_parallel_workers,
             alarm_restriction_type=excluded.alarm_restriction_type,
             default_instance_action=excluded.default_instance_action, created_at=excluded.created_at,
             updated_at=excluded.updated_at",
            &[
                &o.id,
                &o.subcloud_id,
                &o.storage_apply_type.as_str(),
                &o.worker_apply_type.as_str(),
                &i64::from(o.max_parallel_workers),
                &o.alarm_restriction_type.as_str(),
                &o.default_instance_action.as_str(),
                &o.created_at,
                &o.updated_at,
            ],
        ),
        Op::DeleteOptions(subcloud_id) => tx.execute(
            "DELETE FROM sw_update_opts WHERE subcloud_id=$1",
            &[subcloud_id],
        ),
    }
    .map(drop)
}

impl Store for PostgresStore {
    /// Everything, read in one repeatable-read transaction: a consistent picture even while another
    /// controller writes.
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let groups = rows(
            &mut tx,
            "SELECT id,name,description,update_apply_type,max_parallel,created_at,updated_at FROM groups ORDER BY id",
            group_row,
        )?;
        let subclouds = rows(
            &mut tx,
            "SELECT id,name,description,location,group_id,managed,created_at,updated_at,error_description FROM subclouds ORDER BY id",
            subcloud_row,
        )?;
        let strategy = rows(
            &mut tx,
            "SELECT id,apply_type,max_parallel,stop_on_failure,state,subject,expiry_date,cert_file,created_at,updated_at,proceed_with_stranded_pods,rollback FROM strategy LIMIT 1",
            strategy_row,
        )?
        .pop();
        let steps = rows(
            &mut tx,
            "SELECT id,subcloud,update_id,stage,state,details,started_at,finished_at,created_at,updated_at FROM steps ORDER BY id",
            step_row,
        )?;
        let mut last = |kind: &str| -> Result<i64, StoreError> {
            Ok(tx
                .query_one("SELECT id FROM last_ids WHERE kind=$1", &[&kind])?
                .try_get(0)?)
        };
        let last_ids = LastIds {
            group: last("group")?,
            subcloud: last("subcloud")?,
            strategy: last("strategy")?,
        };
        let revoked = tx
            .query(
                "SELECT subcloud, before FROM revoked ORDER BY subcloud",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let options = rows(
            &mut tx,
            "SELECT id,subcloud_id,storage_apply_type,worker_apply_type,max_parallel_workers,alarm_restriction_type,default_instance_action,created_at,updated_at FROM sw_update_opts ORDER BY subcloud_id",
            options_row,
        )?;
        tx.commit()?;
        Ok(Snapshot {
            groups,
            subclouds,
            strategy,
            steps,
            last_ids,
            revoked,
            options,
        })
    }

    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;
        for op in ops {
            write(&mut tx, &storable(op))?;
        }
        fence(&mut tx, self.epoch)?;
        tx.commit()?;
        if ops.iter().any(drops_a_key) {
            // Frees the deleted key's row versions for reuse now rather than at the next autovacuum.
            if let Err(e) = self.client.batch_execute("VACUUM strategy") {
                tracing::warn!(error = %e, "cannot vacuum the strategy table after removing a CA key");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::suite::OnPostgres;
    use super::*;

    #[test]
    fn both_backends_have_the_same_numbered_migrations() {
        assert_eq!(MIGRATIONS.len(), super::super::sqlite::MIGRATIONS.len());
    }

    #[test]
    fn plain_tcp_is_refused_by_the_server_and_a_certificate_from_another_ca_by_the_store() {
        let db = OnPostgres::new();
        let plain = db.url.replace("sslmode=require", "sslmode=disable");
        let Err(e) = PostgresStore::connect(&plain, Some(&db.server.ca())) else {
            panic!("the test server takes TCP with TLS only");
        };
        assert!(e.to_string().contains("no pg_hba.conf entry"), "{e}");
        let other = dc_test_support::TestPki::new().unwrap();
        let Err(e) = PostgresStore::connect(&db.url, Some(&other.file("ca.crt"))) else {
            panic!("a server certificate from another CA must be refused");
        };
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
        // And with the right CA, over TLS, it works.
        assert!(db.connect().unwrap().load().unwrap().groups.is_empty());
    }

    /// M3: the schema changes only under the lease: a controller whose epoch is not the lease's (a
    /// deposed leader, or one that never led) migrates nothing, and the leader then migrates forward.
    #[test]
    fn only_the_leaseholder_migrates_and_a_deposed_controller_changes_nothing() {
        let db = OnPostgres::new();
        let config =
            postgres::Config::from(session_config(&db.url, UNLED, Session::Store).unwrap());
        let mut client = config.connect(tls(Some(&db.server.ca())).unwrap()).unwrap();
        client.batch_execute(crate::lease::TABLE).unwrap();
        client
            .batch_execute("UPDATE leader_lease SET epoch = 2")
            .unwrap();
        let older = &MIGRATIONS[..MIGRATIONS.len() - 1];
        migrate(&mut client, older, Some(2)).unwrap();
        let version = || {
            db.server
                .psql_in("dc", "SELECT version FROM schema_version")
                .unwrap()
        };
        let e = migrate(&mut client, MIGRATIONS, Some(1)).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Deposed {
                    mine: 1,
                    current: 2
                }
            ),
            "{e}"
        );
        assert_eq!(version(), older.len().to_string());
        migrate(&mut client, MIGRATIONS, Some(2)).unwrap();
        assert_eq!(version(), MIGRATIONS.len().to_string());
    }

    /// The server holds a store session to the bounds derived from the lease (5 s here).
    #[test]
    fn the_server_bounds_a_store_session_by_the_lease() {
        let db = OnPostgres::new();
        let mut store = db.connect().unwrap();
        let shown: Vec<String> = [
            "idle_in_transaction_session_timeout",
            "statement_timeout",
            "tcp_keepalives_idle",
            "tcp_keepalives_count",
            "tcp_user_timeout",
        ]
        .iter()
        .map(|name| {
            store
                .client
                .query_one(&format!("SHOW {name}"), &[])
                .unwrap()
                .get(0)
        })
        .collect();
        assert_eq!(shown, ["5s", "30s", "1", "3", "5000"]);
    }

    /// `sslmode=prefer` (and no `sslmode`, libpq's default) never falls back to plain TCP.
    #[test]
    fn prefer_is_taken_as_require() {
        use tokio_postgres::config::SslMode;
        for url in [
            "postgresql://dc@db/dc",
            "postgresql://dc@db/dc?sslmode=prefer",
            "postgresql://dc@db/dc?sslmode=require",
        ] {
            let config = session_config(url, UNLED, Session::Store).unwrap();
            assert_eq!(config.get_ssl_mode(), SslMode::Require, "{url}");
        }
        let plain = session_config(
            "postgresql://dc@db/dc?sslmode=disable",
            UNLED,
            Session::Store,
        );
        assert_eq!(plain.unwrap().get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn controllers_opening_a_new_database_together_migrate_it_once_and_a_newer_one_is_refused() {
        let db = OnPostgres::new();
        std::thread::scope(|s| {
            let opening: Vec<_> = (0..3).map(|_| s.spawn(|| db.connect().map(drop))).collect();
            for o in opening {
                o.join().unwrap().unwrap();
            }
        });
        let version = db
            .server
            .psql_in("dc", "SELECT version FROM schema_version")
            .unwrap();
        assert_eq!(version, MIGRATIONS.len().to_string());
        // Opening again applies nothing twice.
        db.connect().unwrap();
        db.server
            .psql_in("dc", "UPDATE schema_version SET version = 99")
            .unwrap();
        let Err(e) = db.connect() else {
            panic!("a newer schema must be refused");
        };
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }
}
