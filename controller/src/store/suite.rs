//! The store test suite, run against both backends: every test is a function of a [`Backend`], and
//! [`suite!`] makes a `#[test]` of it on SQLite (a file in a temporary directory) and one on PostgreSQL (a
//! database of a real, throwaway server from `dc_test_support::postgres`, over TLS). A behaviour the
//! controller relies on is tested here once, so the backends cannot drift apart.

use dc_test_support::postgres::TestPostgres;

use super::*;
use crate::model::{ApplyType, Stage, step_state};

/// A database a test opens, and opens again as a restarted controller would.
pub(super) trait Backend {
    fn open(&self) -> Box<dyn Store>;
}

pub(super) struct OnSqlite(tempfile::TempDir);

impl OnSqlite {
    pub(super) fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    pub(super) fn path(&self) -> std::path::PathBuf {
        self.0.path().join("db.sqlite")
    }
}

impl Backend for OnSqlite {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.path()).unwrap())
    }
}

pub(crate) struct OnPostgres {
    pub(crate) server: TestPostgres,
    pub(crate) url: String,
}

impl OnPostgres {
    pub(crate) fn new() -> Self {
        let server = TestPostgres::start().unwrap();
        let url = server.create_database("dc").unwrap();
        Self { server, url }
    }

    pub(super) fn connect(&self) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(&self.url, Some(&self.server.ca()))
    }
}

impl Backend for OnPostgres {
    fn open(&self) -> Box<dyn Store> {
        Box::new(self.connect().unwrap())
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $test() {
                super::$test(&super::OnSqlite::new());
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $test() {
                super::$test(&super::OnPostgres::new());
            })*
        }
    };
}

suite!(
    round_trip,
    sw_update_options_round_trip_and_go_with_their_subcloud,
    the_release_records_round_trip,
    agent_text_with_a_nul_is_stored_with_it_replaced,
);

/// M5: PostgreSQL's TEXT refuses a NUL character, and a failed write makes the leader step down. What an
/// agent wrote (a step's details, a subcloud's error) is stored with each NUL replaced, alike on both
/// backends, and the rest of the batch lands.
fn agent_text_with_a_nul_is_stored_with_it_replaced(db: &dyn Backend) {
    let mut records = release_records();
    let mut subcloud = records.subclouds.remove(0);
    subcloud.error_description = Some("kubeadm: \0bad\0".into());
    let mut step = records.steps.remove(0);
    step.details = "apply\0 failed".into();
    let mut store = db.open();
    store
        .apply(&[
            Op::PutGroup(records.groups.remove(0)),
            Op::PutSubcloud(subcloud.clone()),
            Op::PutStep(step.clone()),
        ])
        .unwrap();
    drop(store);
    let snap = db.open().load().unwrap();
    subcloud.error_description = Some("kubeadm: \u{fffd}bad\u{fffd}".into());
    step.details = "apply\u{fffd} failed".into();
    assert_eq!(snap.subclouds, vec![subcloud]);
    assert_eq!(snap.steps, vec![step]);
}

fn round_trip(db: &dyn Backend) {
    let mut store = db.open();
    let strategy = Strategy {
        id: 1,
        apply_type: ApplyType::Parallel,
        max_parallel: 3,
        stop_on_failure: true,
        state: StrategyState::AbortRequested,
        subject: Some("CN=x".into()),
        expiry_date: None,
        cert_file: None,
        proceed_with_stranded_pods: false,
        rollback: false,
        created_at: "t".into(),
        updated_at: None,
    };
    let step = Step {
        id: 7,
        subcloud: "s1".into(),
        update_id: "u".into(),
        stage: Stage::Apply,
        state: step_state::STARTING.into(),
        details: "d".into(),
        started_at: Some("t".into()),
        finished_at: None,
        created_at: "t".into(),
        updated_at: None,
    };
    store
        .apply(&[
            Op::PutGroup(Group::default_group()),
            Op::PutStrategy(strategy.clone()),
            Op::PutStep(step.clone()),
        ])
        .unwrap();
    drop(store);
    let snap = db.open().load().unwrap();
    assert_eq!(snap.strategy, Some(strategy));
    assert_eq!(snap.steps, vec![step]);
    assert_eq!(snap.groups.len(), 1);
    let mut store = db.open();
    store
        .apply(&[
            Op::DeleteStrategy,
            Op::Revoke {
                subcloud: "s1".into(),
                before: 20,
            },
            Op::Revoke {
                subcloud: "s1".into(),
                before: 10,
            },
        ])
        .unwrap();
    let snap = store.load().unwrap();
    assert!(snap.strategy.is_none() && snap.steps.is_empty());
    // The deleted strategy's id stays taken; a revocation only ever moves later.
    assert_eq!(snap.last_ids.strategy, 1);
    assert_eq!(snap.revoked, vec![("s1".to_owned(), 20)]);
}

fn sw_update_options_round_trip_and_go_with_their_subcloud(db: &dyn Backend) {
    use crate::options::OptionsEntry;
    use dc_protocol::{
        AlarmRestrictionType, DefaultInstanceAction, StorageApplyType, WorkerApplyType,
    };
    let mut store = db.open();
    let entry = |id, subcloud_id| OptionsEntry {
        id,
        subcloud_id,
        storage_apply_type: StorageApplyType::Serial,
        worker_apply_type: WorkerApplyType::Serial,
        max_parallel_workers: 4,
        alarm_restriction_type: AlarmRestrictionType::Strict,
        default_instance_action: DefaultInstanceAction::StopStart,
        created_at: "t".into(),
        updated_at: Some("u".into()),
    };
    let s1 = Subcloud {
        id: 1,
        name: "s1".into(),
        description: String::new(),
        location: String::new(),
        group_id: 1,
        managed: true,
        created_at: "t".into(),
        updated_at: None,
        error_description: None,
    };
    store
        .apply(&[
            Op::PutSubcloud(s1),
            Op::PutOptions(entry(1, 0)),
            Op::PutOptions(entry(2, 1)),
        ])
        .unwrap();
    drop(store);
    let mut store = db.open();
    assert_eq!(
        store.load().unwrap().options,
        vec![entry(1, 0), entry(2, 1)]
    );
    store.apply(&[Op::DeleteSubcloud(1)]).unwrap();
    assert_eq!(store.load().unwrap().options, vec![entry(1, 0)]);
    store.apply(&[Op::DeleteOptions(0)]).unwrap();
    assert!(store.load().unwrap().options.is_empty());
}

/// Every kind of record a released controller wrote comes back as written, ids and revocations included.
fn the_release_records_round_trip(db: &dyn Backend) {
    let mut store = db.open();
    store.apply(&release_ops()).unwrap();
    drop(store);
    assert_release_records(&db.open().load().unwrap());
}

/// The ops that write [`release_records`]: a third subcloud, deleted, keeps its id taken and its name
/// revoked.
pub(super) fn release_ops() -> Vec<Op> {
    let r = release_records();
    let mut ops: Vec<Op> = r.groups.into_iter().map(Op::PutGroup).collect();
    ops.extend(r.subclouds.into_iter().map(Op::PutSubcloud));
    let mut gone = release_records().subclouds.remove(0);
    (gone.id, gone.name) = (3, "subcloud3".into());
    ops.extend([Op::PutSubcloud(gone), Op::DeleteSubcloud(3)]);
    ops.extend([Op::Revoke {
        subcloud: "subcloud3".into(),
        before: 1_767_323_045,
    }]);
    ops.extend(r.strategy.map(Op::PutStrategy));
    ops.extend(r.steps.into_iter().map(Op::PutStep));
    ops
}

/// What the release fixture (`sqlite::tests::RELEASE_FIXTURE`) holds: two groups, a subcloud in each, a revoked name, and an applying
/// strategy with a step per subcloud (one running, one complete).
pub(super) fn release_records() -> Snapshot {
    let at = |s: &str| format!("2026-01-02 03:04:{s}.000000");
    let group = |id, name: &str, apply_type| Group {
        id,
        name: name.into(),
        description: format!("{name} group"),
        update_apply_type: apply_type,
        max_parallel: 2,
        created_at: at("05"),
        updated_at: None,
    };
    let subcloud = |id, name: &str, group_id, error: Option<&str>| Subcloud {
        id,
        name: name.into(),
        description: "lab subcloud".into(),
        location: "Ottawa".into(),
        group_id,
        managed: true,
        created_at: at("06"),
        updated_at: Some(at("07")),
        error_description: error.map(Into::into),
    };
    let step = |id, name: &str, state: &str, finished: Option<String>| Step {
        id,
        subcloud: name.into(),
        update_id: format!("update-{name}"),
        stage: Stage::Apply,
        state: state.into(),
        details: format!("{state} on {name}"),
        started_at: Some(at("09")),
        finished_at: finished,
        created_at: at("08"),
        updated_at: Some(at("10")),
    };
    Snapshot {
        groups: vec![
            group(1, "Default", ApplyType::Parallel),
            group(2, "edge", ApplyType::Serial),
        ],
        subclouds: vec![
            subcloud(1, "subcloud1", 1, None),
            subcloud(
                2,
                "subcloud2",
                2,
                Some("hosts update-certs failed: timeout"),
            ),
        ],
        strategy: Some(Strategy {
            id: 1,
            apply_type: ApplyType::Parallel,
            max_parallel: 2,
            stop_on_failure: true,
            state: StrategyState::Applying,
            subject: Some("C=CA O=WR CN=fixture".into()),
            expiry_date: Some("2028-01-01".into()),
            cert_file: None,
            proceed_with_stranded_pods: true,
            rollback: false,
            created_at: at("08"),
            updated_at: Some(at("09")),
        }),
        steps: vec![
            step(1, "subcloud1", step_state::STARTING, None),
            step(2, "subcloud2", step_state::COMPLETE, Some(at("11"))),
        ],
        last_ids: LastIds {
            group: 2,
            subcloud: 3,
            strategy: 1,
        },
        revoked: vec![("subcloud3".into(), 1_767_323_045)],
        // Release 0.1.0 had no sw-update-options.
        options: Vec::new(),
    }
}

pub(super) fn assert_release_records(snap: &Snapshot) {
    let want = release_records();
    assert_eq!(snap.groups, want.groups);
    assert_eq!(snap.subclouds, want.subclouds);
    assert_eq!(snap.strategy, want.strategy);
    assert_eq!(snap.steps, want.steps);
    assert_eq!(snap.last_ids, want.last_ids);
    assert_eq!(snap.revoked, want.revoked);
    assert_eq!(snap.options, want.options);
}
