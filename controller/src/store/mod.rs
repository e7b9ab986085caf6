//! Persistence behind the [`Store`] trait: SQLite (WAL, [`sqlite`]) is the embedded default, PostgreSQL
//! ([`postgres`]) serves controllers that share one database for high availability; the `database`
//! setting chooses ([`Database`]). Every change is a list of whole-row [`Op`]s written in one
//! transaction, so a batch is durable all or nothing, on either backend. Both have the same tables and
//! the same numbered migrations, and one test suite (`suite`) runs against both.
//!
//! The store runs on its own thread ([`StoreActor`] on a `SyncArbiter`), so a slow disk or network never
//! stalls the actors that talk to agents.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};

use crate::model::{Group, Step, Strategy, StrategyState, Subcloud};
use crate::options::OptionsEntry;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The server's own words (its SQLSTATE and message) or the connection's failure.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
    #[error("database holds an invalid value: {0}")]
    Corrupt(String),
    #[error("database file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the store is closed")]
    Closed,
    /// Another controller took the leadership lease: this one's writes must not land.
    #[error(
        "not the leader any more: the lease is at epoch {current}, this controller led at {mine}"
    )]
    Deposed { mine: i64, current: i64 },
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        Self::Postgres(describe(&e))
    }
}

/// A PostgreSQL error in words: `postgres::Error` shows only "db error", the server's message (and its
/// SQLSTATE) is in its source.
pub(crate) fn describe(e: &::postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}

/// One row change.
#[derive(Debug, Clone)]
pub enum Op {
    PutGroup(Group),
    DeleteGroup(i64),
    PutSubcloud(Subcloud),
    DeleteSubcloud(i64),
    PutStrategy(Strategy),
    /// Deletes the strategy and all its steps.
    DeleteStrategy,
    PutStep(Step),
    /// Agent certificates of this subcloud issued at or before this time (Unix seconds) are refused
    /// from now on: written when the subcloud is deleted, so a re-added name needs a new certificate.
    Revoke {
        subcloud: String,
        before: i64,
    },
    /// Creates or replaces the sw-update-options entry of its `subcloud_id` (0: the default entry).
    PutOptions(OptionsEntry),
    /// Deletes the sw-update-options entry of this `subcloud_id`.
    DeleteOptions(i64),
}

/// The highest id each kind of record has ever had, deleted rows included: a new record never takes a
/// deleted one's id, so an id an operator or a script kept can never name something else.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LastIds {
    pub group: i64,
    pub subcloud: i64,
    pub strategy: i64,
}

/// Everything the controller keeps, as loaded at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub groups: Vec<Group>,
    pub subclouds: Vec<Subcloud>,
    pub strategy: Option<Strategy>,
    pub steps: Vec<Step>,
    pub last_ids: LastIds,
    /// Per subcloud name: certificates issued at or before this Unix time are revoked.
    pub revoked: Vec<(String, i64)>,
    /// The sw-update-options entries, the default one included when it was set.
    pub options: Vec<OptionsEntry>,
}

/// A durable store of the controller's records.
pub trait Store: Send + 'static {
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Writes every op in one transaction.
    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError>;
}

/// Which database the `database` setting names: a `postgresql://` (or `postgres://`) URL is a
/// PostgreSQL server, anything else the path of a SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    pub fn of(setting: &Path) -> Self {
        let text = setting.to_string_lossy();
        if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            Self::Postgres(text.into_owned())
        } else {
            Self::Sqlite(setting.to_owned())
        }
    }

    /// Opens (creating or migrating) the database; `ca` is the PEM file of the CA that signs a
    /// PostgreSQL server's certificate (the system's roots without it).
    pub fn open(&self, ca: Option<&Path>) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            Self::Postgres(url) => Box::new(PostgresStore::connect(url, ca)?),
        })
    }
}

/// The op as it is stored: PostgreSQL's TEXT cannot hold a NUL character, and a write that fails makes
/// the leader stop (fail-stop). The API refuses a NUL in what operators send (a 400); the text agents
/// supply (a step's details, a subcloud's error) is stored with each NUL replaced by U+FFFD, on both
/// backends alike, so an agent's odd message can never fail a write.
pub(crate) fn storable(op: &Op) -> Cow<'_, Op> {
    fn clean(text: &str) -> Option<String> {
        text.contains('\0').then(|| text.replace('\0', "\u{fffd}"))
    }
    match op {
        Op::PutStep(step) => match clean(&step.details) {
            Some(details) => Cow::Owned(Op::PutStep(Step {
                details,
                ..step.clone()
            })),
            None => Cow::Borrowed(op),
        },
        Op::PutSubcloud(subcloud) => match subcloud.error_description.as_deref().and_then(clean) {
            Some(error) => Cow::Owned(Op::PutSubcloud(Subcloud {
                error_description: Some(error),
                ..subcloud.clone()
            })),
            None => Cow::Borrowed(op),
        },
        _ => Cow::Borrowed(op),
    }
}

/// Whether this op removes an uploaded CA's private key from the database.
pub(crate) fn drops_a_key(op: &Op) -> bool {
    match op {
        Op::DeleteStrategy => true,
        Op::PutStrategy(s) => s.state == StrategyState::Complete,
        _ => false,
    }
}

/// Writes a batch of ops in one transaction.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Write(pub Vec<Op>);

/// The store's thread.
pub struct StoreActor {
    store: Option<Box<dyn Store>>,
}

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

impl Handler<Write> for StoreActor {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: Write, _: &mut SyncContext<Self>) -> Self::Result {
        let store = self.store.as_mut().ok_or(StoreError::Closed)?;
        store
            .apply(&msg.0)
            .inspect_err(|e| tracing::error!(error = %e, "store write failed"))
    }
}

/// Moves an opened store onto its own thread. The store was opened (and loaded) by the caller, so
/// start-up errors surface before any actor runs.
pub fn start_store(store: Box<dyn Store>) -> Addr<StoreActor> {
    let cell = Arc::new(Mutex::new(Some(store)));
    SyncArbiter::start(1, move || StoreActor {
        store: cell.lock().ok().and_then(|mut s| s.take()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgresql_url_names_a_server_and_anything_else_a_sqlite_file() {
        for url in [
            "postgresql://dc@db:5432/dc?sslmode=require",
            "postgres://db/dc",
        ] {
            assert_eq!(
                Database::of(Path::new(url)),
                Database::Postgres(url.to_owned())
            );
        }
        for path in [
            "/var/lib/dc-rootca/controller.sqlite",
            "state/db",
            "postgresql.sqlite",
        ] {
            assert_eq!(
                Database::of(Path::new(path)),
                Database::Sqlite(PathBuf::from(path))
            );
        }
    }
}
