//! `dc-stand-in-kubelet run --kubeconfig kubelet.conf --node-name NAME --state DIR`: a node for the
//! real-control-plane tests that runs no containers (see `dc_test_support::stand_in_kubelet`).
//! `dc-stand-in-kubelet rotate --kubeconfig kubelet.conf --node-name NAME`: renews its client
//! certificate once, as client-go's certificate manager does, and prints the new certificate's issuer.
#![allow(
    clippy::print_stdout,
    reason = "rotate reports the new certificate's issuer on stdout, for the test that runs it"
)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dc_test_support::stand_in_kubelet::{Credentials, node, pods::PodSync, rotate};
use tokio::time::Instant;

/// How often the node's pods are looked at.
const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How often the node posts its status (the node lifecycle controller's grace period is 40 s).
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Register the node, keep it Ready, start and delete its pods.
    Run {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        node_name: String,
        #[arg(long)]
        state: PathBuf,
    },
    /// Renew the client certificate once; prints its issuer.
    Rotate {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        node_name: String,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    dc_config::logging::init(&dc_config::logging::LogArgs::default(), "info,kube=warn")?;
    match Args::parse().command {
        Cmd::Run {
            kubeconfig,
            node_name,
            state,
        } => run(&kubeconfig, &node_name, &state).await,
        Cmd::Rotate {
            kubeconfig,
            node_name,
            timeout_secs,
        } => {
            let pem =
                rotate::rotate(&kubeconfig, &node_name, Duration::from_secs(timeout_secs)).await?;
            let summary =
                dc_certs::inspect::CertSummary::from_pem(&pem).context("the issued certificate")?;
            println!("{}", summary.issuer);
            Ok(())
        }
    }
}

/// Runs until killed; every failure (the API server restarting, credentials being replaced) is
/// logged and tried again on the next pass.
async fn run(
    kubeconfig: &std::path::Path,
    node_name: &str,
    state: &std::path::Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| state.display().to_string())?;
    let mut credentials = Credentials::new(kubeconfig);
    let mut pods = PodSync::new(node_name, state)?;
    let mut registered = false;
    let mut next_heartbeat = Instant::now();
    loop {
        let pass = async {
            let client = credentials.client().await?;
            if !registered {
                node::register(client.clone(), node_name).await?;
                registered = true;
            }
            if Instant::now() >= next_heartbeat {
                node::heartbeat(client.clone(), node_name).await?;
                next_heartbeat = Instant::now() + HEARTBEAT_PERIOD;
            }
            pods.sync(client).await
        };
        if let Err(e) = pass.await {
            tracing::warn!(error = %e, "pass failed; trying again");
        }
        tokio::time::sleep(SYNC_PERIOD).await;
    }
}
