//! `dc-certs`: bootstrap the system PKI that the controller and the agents authenticate each other with.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool reports to its user on stdout"
)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dc_certs::pki;

#[derive(Parser)]
#[command(name = "dc-certs", version, about = "dc-rootca system PKI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the system CA and the controller's server certificate.
    Init {
        /// Directory to write ca.crt, ca.key, controller.crt and controller.key into.
        #[arg(long)]
        out: PathBuf,
        /// DNS names and IP addresses the controller serves (localhost, 127.0.0.1 and ::1 are always in).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Replace an existing system CA (every agent certificate must then be issued again).
        #[arg(long)]
        force: bool,
    },
    /// Issue a subcloud agent's client certificate.
    IssueAgent {
        /// The PKI directory made by `init`.
        #[arg(long)]
        ca: PathBuf,
        /// The subcloud name: the certificate's identity.
        #[arg(long)]
        name: String,
        /// Directory to write ca.crt, agent.crt and agent.key into.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let now = dc_certs::now();
    match cli.command {
        Command::Init { out, sans, force } => {
            pki::init(&out, &sans, force, now).context("dc-certs init")?;
            println!(
                "system CA and controller certificate written to {}",
                out.display()
            );
        }
        Command::IssueAgent { ca, name, out } => {
            let authority = pki::load_ca(&ca).context("loading the system CA")?;
            pki::write_agent(&authority, &name, &out, now).context("dc-certs issue-agent")?;
            println!(
                "agent certificate for subcloud '{name}' written to {}",
                out.display()
            );
        }
    }
    Ok(())
}
