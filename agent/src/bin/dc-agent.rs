//! `dc-agent --config FILE`: runs the agent of one subcloud until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The dc-rootca agent of one subcloud.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML configuration file; `DC_AGENT__...` environment variables override it.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    log: dc_config::logging::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    dc_config::logging::init(&cli.log, "info")?;
    let config = dc_agent::AgentConfig::load(&cli.config)
        .with_context(|| format!("loading {}", cli.config.display()))?;
    dc_agent::run(config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. If the handlers cannot be installed the agent runs until killed,
/// which its durable record makes safe.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
