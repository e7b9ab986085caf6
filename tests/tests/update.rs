//! A whole update over real processes: the controller, one agent per subcloud, driven by dcmanager.

mod common;

use common::*;
use dc_test_support::fleet::{Shape, Site};

fn update_all(mut sites: Vec<Site>, create_flags: &[&str], window: usize) {
    // One in-sync subcloud that must not be touched.
    let mut good = Site::new("in-sync-site", Shape::Light);
    good.ca_days = 3650;
    sites.push(good);
    let fleet = start(sites);
    let not_after = create_and_apply(&fleet, create_flags);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "steps: {steps:#?}");

    // Every out-of-sync subcloud had a step and completed it; the in-sync one had none.
    assert_eq!(steps.len(), fleet.sites.len() - 1, "{steps:#?}");
    assert!(steps.iter().all(|s| s["state"] == "complete"), "{steps:#?}");
    assert!(!steps.iter().any(|s| s["cloud"] == "in-sync-site"));
    let overlap = max_concurrent(&steps);
    assert!(
        overlap <= window,
        "{overlap} steps ran at once with max-parallel {window}: {steps:#?}"
    );

    for (i, site) in fleet.sites.iter().enumerate() {
        if site.in_sync() {
            assert_untouched(&fleet, i);
        } else {
            assert_new_ca(&fleet, i, not_after);
        }
    }
}

#[test]
fn parallel_update_respects_max_parallel_and_puts_the_new_ca_in_place() {
    let mut sites = light(&["p1", "p2", "p3"]);
    sites.push(Site::new("p4", Shape::Typical));
    update_all(sites, &["--max-parallel-subclouds", "2"], 2);
}

#[test]
fn serial_update_runs_one_subcloud_at_a_time() {
    update_all(
        light(&["s1", "s2", "s3"]),
        &["--subcloud-apply-type", "serial"],
        1,
    );
}
