//! `dcmanager strategy-step list --watch` outlives a controller restart: the real CLI follows a real
//! strategy, the controller is SIGKILLed mid-apply, the watch says it is reconnecting instead of
//! exiting, the controller comes back on the same database and port, and the watch resumes and ends
//! with the strategy's final state and its exit code.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::*;
use dc_test_support::fleet::wait_until;

/// The watch process, killed if the test fails before it exits.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn watch_reconnects_across_a_controller_restart_and_ends_with_the_final_state() {
    let mut sites = light(&["w1", "w2"]);
    for s in &mut sites {
        s.slow_pods_ms = 3000;
    }
    let mut fleet = start(sites);
    let not_after = create_and_apply(&fleet, &["--max-parallel-subclouds", "2"]);

    let out_path = fleet.dir.join("watch.out");
    let err_path = fleet.dir.join("watch.err");
    let mut watch = Watch(
        fleet
            .dcmanager(&["strategy-step", "list", "--watch", "--interval", "0.2"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("dcmanager starts"),
    );
    // The watch is following (it printed the strategy) and a subcloud is mid-phase.
    wait_until(TIMEOUT, || {
        Ok(read(&out_path).contains(" strategy applying")
            && in_phase(&fleet, "w1", "pods-trust-both-cas"))
    })
    .unwrap_or_else(|e| panic!("{e}; watch printed {:?}", read(&out_path)));

    fleet.kill_controller();
    wait_until(TIMEOUT, || {
        Ok(read(&err_path).contains("reconnecting since"))
    })
    .unwrap_or_else(|e| panic!("{e}; watch stderr {:?}", read(&err_path)));
    assert!(
        matches!(watch.0.try_wait(), Ok(None)),
        "the watch exited while the controller was down: {:?}\n{}",
        watch.0.try_wait(),
        read(&err_path)
    );

    let api_before = fleet.api.clone();
    fleet.start_controller().unwrap();
    assert_eq!(
        fleet.api, api_before,
        "the controller came back on its port"
    );

    let mut status = None;
    wait_until(TIMEOUT, || {
        status = watch.0.try_wait().map_err(|e| {
            dc_test_support::fleet::FleetError(format!("waiting for the watch: {e}"))
        })?;
        Ok(status.is_some())
    })
    .unwrap_or_else(|e| panic!("{e}; watch printed {:?}", read(&out_path)));
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.trim_end().ends_with(" strategy complete"),
        "{stdout}"
    );
    assert!(
        stdout.contains(" w1 complete") && stdout.contains(" w2 complete"),
        "{stdout}"
    );
    let reconnecting = stderr.find("reconnecting since").unwrap();
    let reconnected = stderr
        .find("reconnected at")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(reconnecting < reconnected, "{stderr}");

    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    for i in 0..2 {
        assert_new_ca(&fleet, i, not_after);
    }
}
