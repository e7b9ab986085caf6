//! `dc-static-pods start|restart|stop|status <component> --manifests DIR --bin DIR --state DIR`: the
//! static-pod part of a kubelet for the real-control-plane tests (see `dc_test_support::static_pods`).
//! The agent's `[cluster.restart]` commands and its health commands call it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use dc_test_support::static_pods::Runner;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Action {
    /// Start from the manifest unless already running.
    Start,
    /// Stop, then start from the manifest as it is now.
    Restart,
    /// SIGTERM, SIGKILL after a bound.
    Stop,
    /// Exit 0 only while the process runs.
    Status,
}

#[derive(Debug, Parser)]
struct Args {
    action: Action,
    /// The manifest's name without `.yaml` (`kube-apiserver`, `kubelet`, ...).
    component: String,
    #[arg(long)]
    manifests: PathBuf,
    /// Where the manifest's `command[0]` is found when it is not an absolute path.
    #[arg(long)]
    bin: PathBuf,
    /// The pid and log files.
    #[arg(long)]
    state: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runner = Runner {
        manifests: args.manifests,
        bin: args.bin,
        state: args.state,
    };
    let component = args.component.as_str();
    match args.action {
        Action::Start => {
            runner.start(component)?;
        }
        Action::Restart => {
            runner.restart(component)?;
        }
        Action::Stop => runner.stop(component)?,
        Action::Status => {
            if runner.running(component).is_none() {
                let log = runner.log(component);
                let text = std::fs::read_to_string(&log)
                    .with_context(|| format!("{component} is not running"))?;
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!(
                    "{component} is not running; the end of {}:\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    Ok(())
}
