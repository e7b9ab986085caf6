//! `dc-demo`: a whole local fleet on the embedded defaults, updated end to end.
//!
//! A system PKI in a fresh state directory, a real `dc-controller` with SQLite, N real `dc-agent`
//! processes with simulated clusters of varied shapes (root CAs expired, about to expire, and one still
//! good), driven by the real `dcmanager` CLI exactly as an operator would: register the subclouds, look at
//! their sync status, create and apply a kube-rootca-update strategy, watch it, and show the result.
//! Then every subcloud's files are checked: the new CA alone in each host's ca.crt, with the requested
//! subject and expiry, and the in-sync subcloud untouched. Exits 0 only if all of that holds.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a demo talks to its user"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Parser;
use dc_test_support::fleet::{Fleet, Shape, Site};

#[derive(Parser)]
#[command(
    name = "dc-demo",
    about = "A local dc-rootca fleet, updated end to end"
)]
struct Args {
    /// Subclouds in the fleet (one of them stays in-sync and is left alone).
    #[arg(long, default_value_t = 6)]
    subclouds: u32,
    /// max-parallel-subclouds of the strategy.
    #[arg(long, default_value_t = 3)]
    max_parallel: u32,
    /// Where the fleet's state goes (default: a fresh directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Wide subclouds (2 controllers and 50 workers whose restarted components take a second to serve
    /// again), updated with `worker-apply-type parallel` and `max-parallel-workers 10`, set with
    /// `dcmanager strategy-config` as the fleet's default.
    #[arg(long)]
    wide: bool,
    /// Keep the controller and agents up after the update, and print the dashboard's URL and the admin
    /// token to paste into it, until Ctrl-C.
    #[arg(long)]
    ui: bool,
}

const SUBJECT: &str = "C=CA ST=ON L=OTT O=WR OU=STX CN=demo-root-ca";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.subclouds >= 2, "--subclouds must be at least 2");
    let state = match args.state_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("dc-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    println!("dc-demo: state directory {}", state.display());
    println!("dc-demo: building dc-controller, dc-agent and dcmanager");
    dc_test_support::process::build_workspace_binaries(&[
        "dc-controller",
        "dc-agent",
        "dcmanager",
    ])?;

    let result = run(
        &state,
        fleet(args.subclouds, args.wide),
        args.max_parallel,
        args.ui,
    );
    println!("dc-demo: logs and state are in {}", state.display());
    result
}

/// `n` subclouds: alternately typical and light, or all wide.
fn fleet(n: u32, wide: bool) -> Vec<Site> {
    (1..=n)
        .map(|i| {
            let shape = if wide {
                Shape::Wide
            } else if i % 2 == 1 {
                Shape::Typical
            } else {
                Shape::Light
            };
            let mut site = Site::new(&format!("subcloud{i}"), shape);
            if wide {
                // Fifty-two hosts restart in each host phase: far longer than a small cluster's phase.
                site.phase_timeout_secs = 600;
            }
            // The last one stays in-sync; the others are expired or expire within the 30-day threshold.
            site.ca_days = if i == n {
                3650
            } else {
                [-3, 5, 12, 20, 29][(i as usize - 1) % 5]
            };
            site
        })
        .collect()
}

fn run(state: &Path, sites: Vec<Site>, max_parallel: u32, ui: bool) -> anyhow::Result<()> {
    let wide = sites.iter().any(|s| s.shape == Shape::Wide);
    let fleet = Fleet::start(state, sites)?;
    println!(
        "dc-demo: controller API on http://{}/v1.0, agents on {}; {} agents started",
        fleet.api,
        fleet.agents_addr,
        fleet.sites.len()
    );
    if ui {
        print_dashboard(&fleet);
    }

    println!("\n$ dcmanager subcloud list   (once every agent has reported)");
    fleet.wait_online(Duration::from_secs(60))?;
    show(&fleet, &["subcloud", "list"])?;

    if wide {
        let options = [
            "strategy-config",
            "update",
            "--worker-apply-type",
            "parallel",
            "--max-parallel-workers",
            "10",
        ];
        println!("\n$ dcmanager {}", options.join(" "));
        show(&fleet, &options)?;
    }

    let expiry = dc_certs::ExpiryDate::of(dc_certs::now() + 2 * 365 * 86400)
        .context("date")?
        .to_string();
    let parallel = max_parallel.to_string();
    let create = [
        "kube-rootca-update-strategy",
        "create",
        "--subject",
        SUBJECT,
        "--expiry-date",
        &expiry,
        "--max-parallel-subclouds",
        &parallel,
    ];
    println!(
        "\n$ dcmanager kube-rootca-update-strategy create --subject '{SUBJECT}' --expiry-date {expiry} --max-parallel-subclouds {parallel}"
    );
    show(&fleet, &create)?;
    println!("\n$ dcmanager kube-rootca-update-strategy apply");
    show(&fleet, &["kube-rootca-update-strategy", "apply", "--yes"])?;
    println!("\n$ dcmanager strategy-step list --watch");
    let completed = fleet
        .dcmanager(&["strategy-step", "list", "--watch", "--interval", "0.5"])
        .status()?
        .success();

    println!("\n$ dcmanager kube-rootca-update-strategy show");
    show(&fleet, &["kube-rootca-update-strategy", "show"])?;
    println!("\n$ dcmanager strategy-step list");
    show(&fleet, &["strategy-step", "list"])?;
    ensure!(completed, "the strategy did not complete");

    println!("\ndc-demo: checking every subcloud's files");
    let not_after = dc_certs::ExpiryDate::parse(&expiry)?.not_after();
    for (i, site) in fleet.sites.iter().enumerate() {
        let expected = (!site.in_sync()).then_some((SUBJECT, not_after));
        let hosts = fleet.verify_site(i, expected, SUBJECT)?;
        println!(
            "  {:<12} {hosts} host(s): {}",
            site.name,
            if site.in_sync() {
                "in-sync, not targeted: its CA is untouched"
            } else {
                "the new root CA alone in ca.crt, with the requested subject and expiry"
            }
        );
    }
    println!("\ndc-demo: every targeted subcloud trusts only the new root CA");
    if ui {
        print_dashboard(&fleet);
        println!("dc-demo: the fleet stays up for the dashboard; Ctrl-C (or SIGTERM) stops it");
        // Waited for, not left to kill this process: returning drops the fleet, which stops the
        // controller and every agent even when the signal reached this process alone (`kill PID`).
        // Only this thread runs now, so blocking them here leaves no thread to die of them.
        use nix::sys::signal::{SigSet, Signal};
        let mut signals = SigSet::empty();
        signals.add(Signal::SIGINT);
        signals.add(Signal::SIGTERM);
        signals.thread_block()?;
        let signal = signals.wait()?;
        println!("\ndc-demo: {signal} received: stopping the fleet");
    }
    Ok(())
}

/// Where the dashboard is and the token to paste into its token field.
fn print_dashboard(fleet: &Fleet) {
    println!(
        "dc-demo: dashboard on http://{}/ui — paste the admin token {}",
        fleet.api,
        dc_test_support::fleet::ADMIN_TOKEN
    );
}

/// Runs dcmanager with its output on the terminal; fails on a non-zero exit.
fn show(fleet: &Fleet, args: &[&str]) -> anyhow::Result<()> {
    ensure!(
        fleet.dcmanager(args).status()?.success(),
        "dcmanager {} failed",
        args.join(" ")
    );
    Ok(())
}
