//! `dc-agent --config FILE`: runs the agent of one subcloud until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The dc-rootca agent of one subcloud.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML configuration file; `DC_AGENT__...` environment variables override it.
    #[arg(long, required_unless_present = "man")]
    config: Option<PathBuf>,
    /// Print the man page (roff) and exit: what the package installs as dc-agent(1).
    #[arg(long, hide = true)]
    man: bool,
    #[command(flatten)]
    log: dc_config::logging::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(path) = cli.config.filter(|_| !cli.man) else {
        use clap::CommandFactory as _;
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        return Ok(());
    };
    dc_config::logging::init(&cli.log, "info")?;
    let config = dc_agent::AgentConfig::load(&path)
        .with_context(|| format!("loading {}", path.display()))?;
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
