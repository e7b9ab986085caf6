//! Every example at the end of a `dcmanager` command's help, taken from the real binary's `--help`
//! and run by `sh` as an operator pasting it would, against a real controller and agents named like
//! the demo's (`subcloud1`…): each succeeds and does what it says.

mod common;

use std::process::Command;

use common::*;
use dc_test_support::fleet::{ADMIN_TOKEN, Fleet};
use dc_test_support::process::bin_path;

/// The example lines of `dcmanager <command> --help`.
fn examples(fleet: &Fleet, command: &[&str]) -> Vec<String> {
    let mut args = command.to_vec();
    args.push("--help");
    let help = fleet.dcmanager_ok(&args).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<String> = help
        .lines()
        .filter(|l| l.starts_with("  dcmanager "))
        .map(|l| l.trim().to_owned())
        .collect();
    assert!(
        !lines.is_empty(),
        "no example in {command:?}'s help:\n{help}"
    );
    lines
}

/// Runs `command`'s examples in a shell pointed at the fleet; returns their stdout. Each must exit 0.
fn run_examples(fleet: &Fleet, command: &[&str]) -> String {
    let bin = bin_path("dcmanager");
    let dir = bin.parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut stdout = String::new();
    for example in examples(fleet, command) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&example)
            .env("PATH", &path)
            .env("DCMANAGER_URL", format!("http://{}/v1.0", fleet.api))
            .env("OS_AUTH_TOKEN", ADMIN_TOKEN)
            .env_remove("CLI_CONFIRMATIONS")
            .output()
            .expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{example}` failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout += &text;
    }
    stdout
}

#[test]
fn every_help_example_works_against_a_real_controller() {
    let mut sites = light(&["subcloud1", "subcloud2", "subcloud3"]);
    for s in &mut sites {
        s.slow_pods_ms = 1500;
    }
    let fleet = start(sites);

    run_examples(&fleet, &["subcloud-group", "add"]);
    assert!(run_examples(&fleet, &["subcloud-group", "list"]).contains("edge"));
    assert!(run_examples(&fleet, &["subcloud-group", "show"]).contains("serial"));
    assert!(run_examples(&fleet, &["subcloud-group", "update"]).contains("| 8 "));
    let updated = run_examples(&fleet, &["subcloud", "update"]);
    assert!(
        updated.contains("Ottawa Site") && updated.contains("YOW"),
        "{updated}"
    );
    let members = run_examples(&fleet, &["subcloud-group", "list-subclouds"]);
    assert!(
        members.contains("subcloud1") && !members.contains("subcloud2"),
        "{members}"
    );
    assert!(run_examples(&fleet, &["subcloud", "list"]).contains("subcloud3"));
    assert_eq!(
        run_examples(&fleet, &["subcloud", "show"]).trim(),
        "out-of-sync"
    );
    run_examples(&fleet, &["subcloud", "errors"]);
    assert!(run_examples(&fleet, &["subcloud", "unmanage"]).contains("unmanaged"));
    run_examples(&fleet, &["subcloud", "manage"]);
    assert!(run_examples(&fleet, &["subcloud", "add"]).contains("subcloud9"));
    run_examples(&fleet, &["subcloud", "delete"]);

    // Options: subcloud1's own and the defaults; the strategy below runs with them.
    let set = run_examples(&fleet, &["strategy-config", "update"]);
    assert!(
        set.contains("subcloud1") && set.contains("all clouds default"),
        "{set}"
    );
    let shown = run_examples(&fleet, &["strategy-config", "show"]);
    assert!(shown.contains("| 4 "), "{shown}");
    let listed = run_examples(&fleet, &["strategy-config", "list"]);
    assert!(
        listed.contains("| 8 ") && listed.contains("subcloud1"),
        "{listed}"
    );

    // A strategy applied then aborted while its subclouds are in the slow pods phase, deleted, and
    // made again: the update resumes and completes.
    run_examples(&fleet, &["kube-rootca-update-strategy", "create"]);
    run_examples(&fleet, &["kube-rootca-update-strategy", "apply"]);
    run_examples(&fleet, &["kube-rootca-update-strategy", "abort"]);
    fleet
        .wait_strategy(&["aborted"], TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    run_examples(&fleet, &["kube-rootca-update-strategy", "delete"]);
    wait_gone(&fleet);
    run_examples(&fleet, &["kube-rootca-update-strategy", "create"]);
    run_examples(&fleet, &["kube-rootca-update-strategy", "apply"]);
    let watched = run_examples(&fleet, &["kube-rootca-update-strategy", "show"]);
    assert!(
        watched.trim_end().ends_with("strategy complete"),
        "{watched}"
    );
    assert!(
        run_examples(&fleet, &["strategy-step", "list"])
            .trim_end()
            .ends_with("strategy complete")
    );
    let step = run_examples(&fleet, &["strategy-step", "show"]);
    assert!(
        step.contains("complete")
            && step.contains("options: worker-apply-type parallel, max-parallel-workers 4"),
        "{step}"
    );
    run_examples(&fleet, &["strategy-config", "delete"]);
    assert!(!run_examples(&fleet, &["strategy-config", "list"]).contains("subcloud1"));

    // The group's example deletes it: it must be empty first.
    fleet
        .dcmanager_ok(&["subcloud", "update", "subcloud1", "--group", "Default"])
        .unwrap_or_else(|e| panic!("{e}"));
    run_examples(&fleet, &["subcloud-group", "delete"]);
    assert!(!run_examples(&fleet, &["subcloud-group", "list"]).contains("edge"));
}

fn wait_gone(fleet: &Fleet) {
    dc_test_support::fleet::wait_until(TIMEOUT, || {
        let out = fleet.dcmanager_output(&["kube-rootca-update-strategy", "show"])?;
        Ok(!out.status.success())
    })
    .unwrap_or_else(|e| panic!("the strategy is not gone: {e}"));
}
