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
        /// Directory to write ca.crt and ca.key into (and the controller's files, without --controller-out).
        #[arg(long)]
        out: PathBuf,
        /// Directory of its own for the controller's ca.crt, controller.crt and controller.key, so the
        /// controller's service can read its key and not the CA's (packages: /etc/dc-rootca/controller).
        #[arg(long, value_name = "DIR")]
        controller_out: Option<PathBuf>,
        /// Group that may read --controller-out and the controller's key (0750, 0640): the service's
        /// group (packages: dc-rootca). Without it they stay owner-only.
        #[arg(long, value_name = "NAME", requires = "controller_out")]
        group: Option<String>,
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
    /// Print the man page (roff): what the package installs as dc-certs(1).
    #[command(hide = true)]
    Man,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let now = dc_certs::now();
    match cli.command {
        Command::Man => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        }
        Command::Init {
            out,
            controller_out,
            group,
            sans,
            force,
        } => {
            let group = group.as_deref().map(group_id).transpose()?;
            let controller = pki::ControllerFiles {
                dir: controller_out.as_deref().unwrap_or(&out),
                group,
            };
            pki::init_with(&out, &sans, force, now, &controller).context("dc-certs init")?;
            println!("system CA written to {}", out.display());
            println!(
                "controller certificate written to {}",
                controller.dir.display()
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

fn group_id(name: &str) -> anyhow::Result<u32> {
    let group = nix::unistd::Group::from_name(name)
        .with_context(|| format!("looking up group '{name}'"))?
        .with_context(|| {
            format!("no group named '{name}' (the dc-controller package creates dc-rootca)")
        })?;
    Ok(group.gid.as_raw())
}
