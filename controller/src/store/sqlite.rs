//! The SQLite store: one file in WAL mode with full sync, the embedded default.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{LastIds, Op, Snapshot, Store, StoreError, drops_a_key, storable};
use crate::model::{ApplyType, Group, Stage, Step, Strategy, StrategyState, Subcloud};
use crate::options::OptionsEntry;

/// The SQLite store.
pub struct SqliteStore {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
  update_apply_type TEXT NOT NULL, max_parallel INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS subclouds (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
  location TEXT NOT NULL, group_id INTEGER NOT NULL, managed INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS strategy (id INTEGER PRIMARY KEY, apply_type TEXT NOT NULL, max_parallel INTEGER NOT NULL,
  stop_on_failure INTEGER NOT NULL, state TEXT NOT NULL, subject TEXT, expiry_date TEXT, cert_file TEXT,
  created_at TEXT NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS steps (id INTEGER PRIMARY KEY, subcloud TEXT NOT NULL UNIQUE, update_id TEXT NOT NULL,
  stage TEXT NOT NULL, state TEXT NOT NULL, details TEXT NOT NULL, started_at TEXT, finished_at TEXT,
  created_at TEXT NOT NULL, updated_at TEXT);
";

/// The database holds an uploaded CA's private key while its strategy exists: its directory is created
/// 0700 when missing, and the file exists with mode 0600 before SQLite opens it, whatever the umask,
/// because SQLite gives its `-wal` and `-shm` files the database file's mode. Files an older controller
/// left wider are narrowed.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        dc_certs::files::create_private_dir(dir)?;
    }
    let private = std::fs::Permissions::from_mode(dc_certs::files::PRIVATE);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(dc_certs::files::PRIVATE)
        .open(path)?
        .set_permissions(private.clone())?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::set_permissions(&side, private.clone()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Schema changes after the first release, in order; `PRAGMA user_version` counts those applied, so a
/// database written by an older controller is brought forward when it is opened and loses nothing.
///
/// The list is append-only: a released entry is never edited, reordered or removed (databases in the
/// field already ran it); a change is a new entry at the end, which [`migrate`] runs in its own
/// transaction with the version bump. Every `INSERT` names its columns, so a column added here never
/// shifts a value into the wrong one. `docs/schema-migrations.md` tells the steps and the tests.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: why the last update of a subcloud failed (dcmanager's error_description).
    "ALTER TABLE subclouds ADD COLUMN error_description TEXT",
    // 2: ids are never reused. The store keeps each kind's highest id itself (triggers), so no writer
    // can forget it; seeded from the rows there are.
    "CREATE TABLE last_ids (kind TEXT PRIMARY KEY, id INTEGER NOT NULL);
     INSERT INTO last_ids SELECT 'group', COALESCE(MAX(id), 0) FROM groups;
     INSERT INTO last_ids SELECT 'subcloud', COALESCE(MAX(id), 0) FROM subclouds;
     INSERT INTO last_ids SELECT 'strategy', COALESCE(MAX(id), 0) FROM strategy;
     CREATE TRIGGER groups_last_id AFTER INSERT ON groups BEGIN
       UPDATE last_ids SET id = MAX(id, NEW.id) WHERE kind = 'group'; END;
     CREATE TRIGGER subclouds_last_id AFTER INSERT ON subclouds BEGIN
       UPDATE last_ids SET id = MAX(id, NEW.id) WHERE kind = 'subcloud'; END;
     CREATE TRIGGER strategy_last_id AFTER INSERT ON strategy BEGIN
       UPDATE last_ids SET id = MAX(id, NEW.id) WHERE kind = 'strategy'; END;",
    // 3: revoked agent certificates, by subcloud name and time of issue.
    "CREATE TABLE revoked (subcloud TEXT PRIMARY KEY, before INTEGER NOT NULL)",
    // 4: the strategy's choice to go on although pods that nothing restarts keep the old CA alone.
    "ALTER TABLE strategy ADD COLUMN proceed_with_stranded_pods INTEGER NOT NULL DEFAULT 0",
    // 5: sw-update-options (strategy-config), dcmanager's sw_update_opts and sw_update_opts_default
    // in one table: subcloud_id 0 is the default entry. A subcloud's entry goes with the subcloud.
    "CREATE TABLE sw_update_opts (id INTEGER PRIMARY KEY, subcloud_id INTEGER NOT NULL UNIQUE,
       storage_apply_type TEXT NOT NULL, worker_apply_type TEXT NOT NULL,
       max_parallel_workers INTEGER NOT NULL, alarm_restriction_type TEXT NOT NULL,
       default_instance_action TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT);
     CREATE TRIGGER subclouds_sw_update_opts AFTER DELETE ON subclouds BEGIN
       DELETE FROM sw_update_opts WHERE subcloud_id = OLD.id; END;",
    // 6: a rollback strategy (create --rollback) takes unfinished updates back to the old root CA.
    "ALTER TABLE strategy ADD COLUMN rollback INTEGER NOT NULL DEFAULT 0",
];

/// Applies the migrations the database has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS)
}

/// [`migrate`] over a given list: the tests add a future migration to a released database.
fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if applied > known {
        // A newer controller wrote it: this one would write rows that database no longer takes.
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {applied}, newer than this controller's {known}; \
             run the controller that wrote it (downgrades are not supported)"
        )));
    }
    for (version, sql) in (1..).zip(migrations).skip_while(|(v, _)| *v <= applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, format!("{what} '{value}'"), rusqlite::types::Type::Text)
}

impl SqliteStore {
    /// Opens (or creates) the database in WAL mode with full sync: a state change reported as written
    /// survives a power cut.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        make_private(path).map_err(|source| StoreError::File {
            path: path.to_owned(),
            source,
        })?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A deleted strategy's CA key is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        Ok(Self { conn })
    }

    fn put_group(tx: &rusqlite::Transaction<'_>, g: &Group) -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT OR REPLACE INTO groups (id,name,description,update_apply_type,max_parallel,created_at,updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![
                g.id,
                g.name,
                g.description,
                g.update_apply_type.as_str(),
                g.max_parallel,
                g.created_at,
                g.updated_at
            ],
        )
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let groups = self
            .conn
            .prepare("SELECT id,name,description,update_apply_type,max_parallel,created_at,updated_at FROM groups ORDER BY id")?
            .query_map([], |r| {
                let t: String = r.get(3)?;
                Ok(Group {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    description: r.get(2)?,
                    update_apply_type: ApplyType::parse(&t).ok_or_else(|| corrupt("apply type", &t))?,
                    max_parallel: r.get(4)?,
                    created_at: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let subclouds = self
            .conn
            .prepare("SELECT id,name,description,location,group_id,managed,created_at,updated_at,error_description FROM subclouds ORDER BY id")?
            .query_map([], |r| {
                Ok(Subcloud {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    description: r.get(2)?,
                    location: r.get(3)?,
                    group_id: r.get(4)?,
                    managed: r.get(5)?,
                    created_at: r.get(6)?,
                    updated_at: r.get(7)?,
                    error_description: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let strategy = self
            .conn
            .query_row(
                "SELECT id,apply_type,max_parallel,stop_on_failure,state,subject,expiry_date,cert_file,created_at,updated_at,proceed_with_stranded_pods,rollback FROM strategy LIMIT 1",
                [],
                |r| {
                    let t: String = r.get(1)?;
                    let s: String = r.get(4)?;
                    Ok(Strategy {
                        id: r.get(0)?,
                        apply_type: ApplyType::parse(&t).ok_or_else(|| corrupt("apply type", &t))?,
                        max_parallel: r.get(2)?,
                        stop_on_failure: r.get(3)?,
                        state: StrategyState::parse(&s).ok_or_else(|| corrupt("strategy state", &s))?,
                        subject: r.get(5)?,
                        expiry_date: r.get(6)?,
                        cert_file: r.get(7)?,
                        created_at: r.get(8)?,
                        updated_at: r.get(9)?,
                        proceed_with_stranded_pods: r.get(10)?,
                        rollback: r.get(11)?,
                    })
                },
            )
            .optional()?;
        let steps = self
            .conn
            .prepare("SELECT id,subcloud,update_id,stage,state,details,started_at,finished_at,created_at,updated_at FROM steps ORDER BY id")?
            .query_map([], |r| {
                let stage: String = r.get(3)?;
                Ok(Step {
                    id: r.get(0)?,
                    subcloud: r.get(1)?,
                    update_id: r.get(2)?,
                    stage: Stage::parse(&stage).ok_or_else(|| corrupt("stage", &stage))?,
                    state: r.get(4)?,
                    details: r.get(5)?,
                    started_at: r.get(6)?,
                    finished_at: r.get(7)?,
                    created_at: r.get(8)?,
                    updated_at: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let last = |kind: &str| -> rusqlite::Result<i64> {
            self.conn
                .query_row("SELECT id FROM last_ids WHERE kind=?1", [kind], |r| {
                    r.get(0)
                })
        };
        let last_ids = LastIds {
            group: last("group")?,
            subcloud: last("subcloud")?,
            strategy: last("strategy")?,
        };
        let revoked = self
            .conn
            .prepare("SELECT subcloud, before FROM revoked ORDER BY subcloud")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let options = self
            .conn
            .prepare("SELECT id,subcloud_id,storage_apply_type,worker_apply_type,max_parallel_workers,alarm_restriction_type,default_instance_action,created_at,updated_at FROM sw_update_opts ORDER BY subcloud_id")?
            .query_map([], options_row)?
            .collect::<Result<Vec<_>, _>>()?;
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
        let tx = self.conn.transaction()?;
        for op in ops {
            match storable(op).as_ref() {
                Op::PutGroup(g) => {
                    Self::put_group(&tx, g)?;
                }
                Op::DeleteGroup(id) => {
                    tx.execute("DELETE FROM groups WHERE id=?1", [id])?;
                }
                Op::PutSubcloud(s) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO subclouds (id,name,description,location,group_id,managed,created_at,updated_at,error_description) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                        params![
                            s.id,
                            s.name,
                            s.description,
                            s.location,
                            s.group_id,
                            s.managed,
                            s.created_at,
                            s.updated_at,
                            s.error_description
                        ],
                    )?;
                }
                Op::DeleteSubcloud(id) => {
                    tx.execute("DELETE FROM subclouds WHERE id=?1", [id])?;
                }
                Op::PutStrategy(s) => {
                    tx.execute("DELETE FROM strategy WHERE id<>?1", [s.id])?;
                    tx.execute(
                        "INSERT OR REPLACE INTO strategy (id,apply_type,max_parallel,stop_on_failure,state,subject,expiry_date,cert_file,created_at,updated_at,proceed_with_stranded_pods,rollback) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                        params![
                            s.id,
                            s.apply_type.as_str(),
                            s.max_parallel,
                            s.stop_on_failure,
                            s.state.as_str(),
                            s.subject,
                            s.expiry_date,
                            s.cert_file,
                            s.created_at,
                            s.updated_at,
                            s.proceed_with_stranded_pods,
                            s.rollback
                        ],
                    )?;
                }
                Op::DeleteStrategy => {
                    tx.execute("DELETE FROM steps", [])?;
                    tx.execute("DELETE FROM strategy", [])?;
                }
                Op::Revoke { subcloud, before } => {
                    tx.execute(
                        "INSERT INTO revoked (subcloud,before) VALUES (?1,?2) ON CONFLICT(subcloud) DO UPDATE SET before=MAX(before, excluded.before)",
                        params![subcloud, before],
                    )?;
                }
                Op::PutOptions(o) => put_options(&tx, o)?,
                Op::DeleteOptions(subcloud_id) => {
                    tx.execute(
                        "DELETE FROM sw_update_opts WHERE subcloud_id=?1",
                        [subcloud_id],
                    )?;
                }
                Op::PutStep(s) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO steps (id,subcloud,update_id,stage,state,details,started_at,finished_at,created_at,updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                        params![
                            s.id,
                            s.subcloud,
                            s.update_id,
                            s.stage.as_str(),
                            s.state,
                            s.details,
                            s.started_at,
                            s.finished_at,
                            s.created_at,
                            s.updated_at
                        ],
                    )?;
                }
            }
        }
        tx.commit()?;
        if ops.iter().any(drops_a_key) {
            // The key's old page images live on in the write-ahead log until it is reset.
            if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                tracing::warn!(error = %e, "cannot reset the write-ahead log after removing a CA key");
            }
        }
        Ok(())
    }
}

/// A sw-update-options row, its values by upstream's names.
fn options_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OptionsEntry> {
    fn named<T: std::str::FromStr>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
        let v: String = r.get(i)?;
        v.parse().map_err(|_| corrupt("sw-update option", &v))
    }
    Ok(OptionsEntry {
        id: r.get(0)?,
        subcloud_id: r.get(1)?,
        storage_apply_type: named(r, 2)?,
        worker_apply_type: named(r, 3)?,
        max_parallel_workers: r.get(4)?,
        alarm_restriction_type: named(r, 5)?,
        default_instance_action: named(r, 6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn put_options(tx: &rusqlite::Transaction<'_>, o: &OptionsEntry) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO sw_update_opts (id,subcloud_id,storage_apply_type,worker_apply_type,max_parallel_workers,alarm_restriction_type,default_instance_action,created_at,updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        params![
            o.id,
            o.subcloud_id,
            o.storage_apply_type.as_str(),
            o.worker_apply_type.as_str(),
            o.max_parallel_workers,
            o.alarm_restriction_type.as_str(),
            o.default_instance_action.as_str(),
            o.created_at,
            o.updated_at
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::suite::{assert_release_records, release_ops, release_records};
    use super::*;
    use crate::model::step_state;

    #[test]
    fn the_database_and_its_wal_are_private_whatever_the_umask_and_its_new_directory_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("db.sqlite");
        let mut store = SqliteStore::open(&path).unwrap();
        store
            .apply(&[Op::PutGroup(Group::default_group())])
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        for file in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
            assert_eq!(mode(&dir.path().join("state").join(file)), 0o600, "{file}");
        }
        // A file an older controller left readable is narrowed on open.
        drop(store);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        SqliteStore::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_database_from_before_the_migrations_is_brought_forward_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute(
            "INSERT INTO subclouds (id,name,description,location,group_id,managed,created_at,updated_at) VALUES (1,'s1','d','l',1,1,'t',NULL)",
            [],
        )
        .unwrap();
        drop(old);
        let mut store = SqliteStore::open(&path).unwrap();
        let mut s1 = store.load().unwrap().subclouds.remove(0);
        assert_eq!((s1.name.as_str(), &s1.error_description), ("s1", &None));
        s1.error_description = Some("hosts update-certs failed: x".into());
        store.apply(&[Op::PutSubcloud(s1.clone())]).unwrap();
        // The id high-water mark starts from the rows an older controller left.
        store.apply(&[Op::DeleteSubcloud(1)]).unwrap();
        assert_eq!(store.load().unwrap().last_ids.subcloud, 1);
        store.apply(&[Op::PutSubcloud(s1.clone())]).unwrap();
        drop(store);
        // Opening again applies nothing twice.
        let snap = SqliteStore::open(&path).unwrap().load().unwrap();
        assert_eq!(snap.subclouds, vec![s1]);
        // A database from a newer controller is refused, not damaged.
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let Err(e) = SqliteStore::open(&path) else {
            panic!("a newer schema must be refused");
        };
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }

    /// The database a 0.1.0 controller writes (schema version 4), committed so every later controller
    /// is tested on opening it. Rewrite it only for a new release, never to make a test pass:
    /// `cargo test -p dc-controller --lib store::sqlite::tests::write_the_release_fixture -- --ignored`.
    const RELEASE_FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/store-0.1.0.sqlite"
    );
    /// The schema version of [`RELEASE_FIXTURE`].
    const RELEASE_FIXTURE_VERSION: i64 = 4;

    #[test]
    #[ignore = "rewrites the committed fixture: only for a new release"]
    fn write_the_release_fixture() {
        let _ = std::fs::remove_file(RELEASE_FIXTURE);
        let mut store = SqliteStore::open(Path::new(RELEASE_FIXTURE)).unwrap();
        store.apply(&release_ops()).unwrap();
        // One self-contained file: the write-ahead log folded in, and no longer used.
        store
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE; VACUUM;")
            .unwrap();
        drop(store);
        assert_release_records(
            &SqliteStore::open(Path::new(RELEASE_FIXTURE))
                .unwrap()
                .load()
                .unwrap(),
        );
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{RELEASE_FIXTURE}{side}"));
        }
    }

    #[test]
    fn a_database_written_by_release_0_1_0_opens_and_migrates_forward_losing_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.sqlite");
        std::fs::copy(RELEASE_FIXTURE, &path).unwrap();
        let version = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            version(&Connection::open(&path).unwrap()),
            RELEASE_FIXTURE_VERSION
        );

        // This controller opens it (applying what came after the release) and finds every record.
        let mut store = SqliteStore::open(&path).unwrap();
        assert_release_records(&store.load().unwrap());
        assert_eq!(
            version(&store.conn),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
        drop(store);

        // A future migration, appended as docs/schema-migrations.md says, runs on it and loses nothing.
        let mut conn = Connection::open(&path).unwrap();
        let future = [
            MIGRATIONS,
            &["ALTER TABLE steps ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1"],
        ]
        .concat();
        migrate_with(&mut conn, &future).unwrap();
        assert_eq!(version(&conn), i64::try_from(future.len()).unwrap());
        let attempts: i64 = conn
            .query_row("SELECT MIN(attempts) FROM steps", [], |r| r.get(0))
            .unwrap();
        assert_eq!(attempts, 1);
        let mut store = SqliteStore { conn };
        assert_release_records(&store.load().unwrap());
        // And the store still writes rows into the widened table.
        let mut step = release_records().steps.remove(0);
        step.state = step_state::COMPLETE.into();
        store.apply(&[Op::PutStep(step.clone())]).unwrap();
        assert_eq!(store.load().unwrap().steps[0], step);
    }
}
