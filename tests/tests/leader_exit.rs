//! A leading `dc-controller` process whose database stops accepting it (its role refused, its sessions
//! ended) exits non-zero, so that its supervisor restarts it; restarted once the database takes it
//! again, it leads and an update runs to the end, the subcloud on the new CA alone.

mod common;

use common::*;
use dc_test_support::fleet::{Fleet, wait_until};
use dc_test_support::postgres::TestPostgres;

#[test]
fn a_leader_cut_off_from_the_database_exits_non_zero_and_restarted_finishes_an_update() {
    let pg = TestPostgres::start().expect("postgresql");
    let url = pg.create_database("dc").expect("database");
    pg.psql("CREATE ROLE leader_a LOGIN SUPERUSER")
        .expect("role");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fleet = Fleet::prepare(dir.path(), light(&["x1"])).unwrap_or_else(|e| panic!("{e}"));
    fleet.database = url
        .replace("postgresql://dc@", "postgresql://leader_a@")
        .into();
    fleet.database_ca = Some(pg.ca());
    fleet.launch().unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));

    pg.psql("ALTER ROLE leader_a NOLOGIN").expect("alter");
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'leader_a'")
        .expect("terminate");
    wait_until(TIMEOUT, || Ok(fleet.controller_exit().is_some()))
        .unwrap_or_else(|e| panic!("the cut-off leader still runs: {e}"));
    let status = fleet.controller_exit().expect("exited");
    let log = std::fs::read_to_string(fleet.log("controller")).unwrap_or_default();
    assert!(
        !status.success(),
        "a leader that lost its database exited {status}: {log}"
    );
    assert!(
        log.contains("lost the leadership") || log.contains("the store cannot write"),
        "the exit says why: {log}"
    );

    // The database takes it again: restarted, it leads and an update completes.
    pg.psql("ALTER ROLE leader_a LOGIN").expect("alter");
    fleet.start_controller().unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let not_after = create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_new_ca(&fleet, 0, not_after);
}
