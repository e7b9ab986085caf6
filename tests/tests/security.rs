//! Impostor agents are refused while the rest of the fleet carries on.

mod common;

use common::*;
use dc_test_support::TestPki;
use dc_test_support::fleet::wait_until;

#[test]
fn impostor_and_foreign_ca_agents_are_refused_while_the_fleet_updates() {
    let fleet = start(light(&["sec1", "sec2"]));

    // An agent that presents sec2's valid certificate but says it is sec1.
    let mut claims_sec1 = fleet.sites[0].clone();
    claims_sec1.name = "sec1".to_owned();
    let stolen = fleet.dir.join("impostor-stolen");
    copy_dir(&fleet.dir.join("agents/sec2/tls"), &stolen.join("tls"));
    let _stolen = fleet
        .spawn_agent_with(&claims_sec1, &stolen, "impostor-stolen")
        .unwrap();

    // An agent for sec1 whose certificate comes from a CA the controller does not know.
    let foreign = TestPki::new().unwrap();
    let foreign_tls = foreign.agent("sec1").unwrap();
    let forged = fleet.dir.join("impostor-foreign");
    copy_dir(&foreign_tls, &forged.join("tls"));
    let _forged = fleet
        .spawn_agent_with(&claims_sec1, &forged, "impostor-foreign")
        .unwrap();

    // Both are refused and logged...
    let log = fleet.log("controller");
    wait_until(TIMEOUT, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text.contains("Hello claims another subcloud")
            && text.contains("agent handshake refused"))
    })
    .unwrap_or_else(|e| panic!("{e}; see {}", log.display()));

    // ...while the real agents stay online and update.
    fleet.wait_online(TIMEOUT).unwrap();
    let not_after = create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_new_ca(&fleet, 0, not_after);
    assert_new_ca(&fleet, 1, not_after);
    // The impostors never touched a real subcloud's record: their own data dirs hold no update.
    assert!(!stolen.join("data/update/record.json").exists());
    assert!(!forged.join("data/update/record.json").exists());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
