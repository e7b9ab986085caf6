//! `dc-controller --config FILE`: runs the controller until SIGINT or SIGTERM.
//! `dc-controller --openapi`: prints the REST API's OpenAPI document (`docs/openapi.json`).
//! Under systemd (`Type=notify`) it reports readiness once both listeners are bound (a standby at
//! once, saying whom it waits for), and pings the watchdog while it waits and, once it leads, while
//! its actors answer (`dc_controller::systemd`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "dc-rootca controller: Kubernetes root CA update orchestration"
)]
struct Cli {
    /// TOML configuration; `DC_CONTROLLER__SECTION__KEY` environment variables override it.
    #[arg(long, required_unless_present_any = ["openapi", "man"])]
    config: Option<PathBuf>,
    /// Print the REST API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
    #[command(flatten)]
    log: dc_config::logging::LogArgs,
    /// Print the man page (roff) and exit: what the package installs as dc-controller(1).
    #[arg(long, hide = true)]
    man: bool,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.man {
        use clap::CommandFactory as _;
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        return Ok(());
    }
    dc_config::logging::init(&cli.log, "info")?;
    let Some(path) = cli.config.filter(|_| !cli.openapi) else {
        // The document is this mode's output, written whole; stdout is the binary's to write.
        use std::io::Write as _;
        std::io::stdout().write_all(dc_controller::api::openapi::document().as_bytes())?;
        return Ok(());
    };
    let config = dc_controller::ControllerConfig::load(&path)?;
    let running = dc_controller::start(config)
        .await
        .context("cannot start the controller")?;
    dc_controller::systemd::ready(running.api_addr, running.agents_addr);
    actix_rt::spawn(dc_controller::systemd::watchdog(running.actors()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut store_failure = running.store_failure();
    let mut leadership_lost = running.leadership_lost();
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
        Ok(failure) = store_failure.wait_for(Option::is_some) => {
            // Fail-stop: nothing that was not written may be acted on; a restart (systemd's
            // Restart=on-failure) recovers from what is durable, once the disk has room again.
            let why = failure.clone().unwrap_or_default();
            anyhow::bail!("the store cannot write ({why}); stopped so that a restart recovers from what is durable");
        }
        Ok(lost) = leadership_lost.wait_for(Option::is_some) => {
            // It already stopped leading; a restart comes back as a standby.
            let why = lost.clone().unwrap_or_default();
            anyhow::bail!("lost the leadership ({why}); stopped so that another controller leads");
        }
    }
    tracing::info!("stopping");
    dc_controller::systemd::stopping();
    running.stop().await;
    Ok(())
}
