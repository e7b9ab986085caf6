//! Two `dc-controller` processes on one real PostgreSQL (a throwaway Debian cluster): the leader
//! SIGKILLed mid-apply, the standby takes over within the bound, the agents (`[controller] addresses`
//! naming both) move to it, and the strategy completes with every step resumed, none lost and none
//! started again; the old leader, restarted, waits as a standby.

mod common;

use std::time::Duration;

use common::*;
use dc_test_support::fleet::{Fleet, wait_until};
use dc_test_support::postgres::TestPostgres;
use serde_json::Value;

/// Each cloud's step start time: a step started again would show a new one.
fn started(steps: &[Value]) -> Vec<(String, Value)> {
    let mut v: Vec<_> = steps
        .iter()
        .map(|s| {
            (
                s["cloud"].as_str().unwrap_or_default().to_owned(),
                s["started-at"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn leader_killed_mid_apply_the_standby_takes_over_and_the_strategy_completes() {
    let pg = TestPostgres::start().expect("postgresql");
    let url = pg.create_database("dc").expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sites = light(&["h1", "h2", "h3"]);
    for s in &mut sites {
        s.slow_pods_ms = 2000;
    }
    let mut fleet = Fleet::prepare(dir.path(), sites).unwrap_or_else(|e| panic!("{e}"));
    fleet.database = url.into();
    fleet.database_ca = Some(pg.ca());
    let standby_agents = free_address();
    fleet.standby_agent_addresses = vec![standby_agents.clone()];
    fleet.launch().unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let standby = fleet
        .start_standby("standby", &standby_agents)
        .expect("standby");
    let old_agents = fleet.agents_addr.clone();

    let not_after = create_and_apply(&fleet, &["--max-parallel-subclouds", "3"]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, "h1", "pods-trust-both-cas"))
    })
    .unwrap();
    let before = started(&steps(&fleet));

    let took = fleet
        .fail_over(standby, "standby", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(took < Duration::from_secs(10), "failover took {took:?}");

    let (state, after) = finish(&fleet);
    assert_eq!(state, "complete", "{after:#?}");
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|s| s["state"] == "complete"), "{after:#?}");
    // Every step that had started was resumed, not started again.
    for (cloud, at) in &before {
        if !at.is_null() {
            let now = started(&after);
            let resumed = now.iter().find(|(c, _)| c == cloud).map(|(_, a)| a);
            assert_eq!(resumed, Some(at), "{cloud} started again");
        }
    }
    for i in 0..3 {
        assert_new_ca(&fleet, i, not_after);
    }
    // Every agent is connected to the new leader.
    assert_eq!(fleet.agents_addr, standby_agents);
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));

    // The old leader, restarted on its old agent address, is a standby: it stays up, and the new
    // leader keeps the lease it took and its agents.
    let holder = || {
        pg.psql_in("dc", "SELECT epoch || ' ' || holder FROM leader_lease")
            .expect("lease")
    };
    let leading = holder();
    let mut back = fleet
        .start_standby("old-leader", &old_agents)
        .expect("old leader");
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < deadline {
        assert!(back.is_running(), "the old leader must wait as a standby");
        assert_eq!(holder(), leading);
        std::thread::sleep(Duration::from_millis(250));
    }
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
}

/// A loopback address nothing listens on (for the standby, whose address the agents are given first).
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}
