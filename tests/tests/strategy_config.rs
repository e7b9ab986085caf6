//! `dcmanager strategy-config` reaching the agents: per-subcloud options set with the CLI are read
//! when each subcloud's step starts, named in its step, and the agents run their workers with them
//! (seen in each simulated cluster: the most hosts restarting at once).

mod common;

use common::*;
use dc_agent::sim::{SimState, layout};
use dc_test_support::fleet::{Fleet, Shape, Site};

/// The simulated cluster of site `i` as its agent last saved it.
fn sim_state(fleet: &Fleet, i: usize) -> SimState {
    let path = layout::state_file(&layout::cluster_dir(&fleet.agent_data(i)));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn serial_and_parallel_workers_set_per_subcloud_reach_their_agents() {
    // One controller and six workers each; a restarted component takes 300 ms to serve again, so
    // workers updated at once overlap.
    let shape = Shape::Workers {
        workers: 6,
        restart_ms: 300,
    };
    let fleet = start(vec![
        Site::new("subcloud1", shape),
        Site::new("subcloud2", shape),
    ]);
    let set = |args: &[&str]| {
        let mut all = vec!["strategy-config", "update"];
        all.extend_from_slice(args);
        fleet.dcmanager_json(&all).unwrap_or_else(|e| panic!("{e}"))
    };
    let one = set(&["--worker-apply-type", "serial", "subcloud1"]);
    assert_eq!(
        (one["cloud"].as_str(), one["worker apply type"].as_str()),
        (Some("subcloud1"), Some("serial")),
        "{one}"
    );
    let two = set(&[
        "--worker-apply-type",
        "parallel",
        "--max-parallel-workers",
        "4",
        "subcloud2",
    ]);
    assert_eq!(two["max parallel workers"], 4, "{two}");
    // The list: upstream's defaults, then each subcloud's own.
    let list = fleet
        .dcmanager_json(&["strategy-config", "list"])
        .unwrap_or_else(|e| panic!("{e}"));
    let clouds: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["cloud"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        clouds,
        ["all clouds default", "subcloud1", "subcloud2"],
        "{list}"
    );

    let not_after = create_and_apply(&fleet, &["--max-parallel-subclouds", "2"]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");

    // Each step says which options it ran with.
    for (cloud, options) in [
        (
            "subcloud1",
            "options: worker-apply-type serial, alarm-restriction-type relaxed",
        ),
        (
            "subcloud2",
            "options: worker-apply-type parallel, max-parallel-workers 4, alarm-restriction-type relaxed",
        ),
    ] {
        let step = fleet
            .dcmanager_json(&["strategy-step", "show", cloud])
            .unwrap_or_else(|e| panic!("{e}"));
        let details = step["details"].as_str().unwrap_or_default();
        assert!(details.contains(options), "{cloud}: {details}");
    }

    // And the agents ran with them: one host at a time for serial, four workers at once for
    // parallel 4; every host of both holds the new CA.
    assert_eq!(sim_state(&fleet, 0).peak_hosts_restarting, 1);
    assert_eq!(sim_state(&fleet, 1).peak_hosts_restarting, 4);
    for i in 0..2 {
        assert_new_ca(&fleet, i, not_after);
    }
}
