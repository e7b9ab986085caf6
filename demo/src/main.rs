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
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use dc_certs::inspect::CertSummary;
use dc_test_support::process::wait_for_json;
use dc_test_support::{Child, bin_path};

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
}

const TOKEN: &str = "demo-admin-token";
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
    build_binaries()?;

    let result = run(&state, args.subclouds, args.max_parallel);
    println!("dc-demo: logs and state are in {}", state.display());
    result
}

/// `cargo run --bin dc-demo` builds only the demo; the fleet needs the other binaries of the workspace
/// in the same profile, so build them (a no-op when they are current).
fn build_binaries() -> anyhow::Result<()> {
    let names = ["dc-controller", "dc-agent", "dcmanager"];
    let Ok(cargo) = std::env::var("CARGO") else {
        for name in names {
            ensure!(
                bin_path(name).exists(),
                "{} is missing: build the workspace first (cargo build --release --bins)",
                bin_path(name).display()
            );
        }
        return Ok(());
    };
    println!("dc-demo: building dc-controller, dc-agent and dcmanager");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--bins", "--manifest-path"])
        .arg(manifest);
    if bin_path("dc-demo")
        .parent()
        .is_some_and(|d| d.ends_with("release"))
    {
        build.arg("--release");
    }
    ensure!(
        build.status()?.success(),
        "building the workspace binaries failed"
    );
    Ok(())
}

/// One subcloud of the fleet: its name, the days its current root CA has left, and its shape.
struct Site {
    name: String,
    ca_days: i64,
    typical: bool,
}

fn fleet(n: u32) -> Vec<Site> {
    (1..=n)
        .map(|i| Site {
            name: format!("subcloud{i}"),
            // The last one stays in-sync; the others are expired or expire within the 30-day threshold.
            ca_days: if i == n {
                3650
            } else {
                [-3, 5, 12, 20, 29][(i as usize - 1) % 5]
            },
            typical: i % 2 == 1,
        })
        .collect()
}

fn run(state: &Path, n: u32, max_parallel: u32) -> anyhow::Result<()> {
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs)?;
    let sites = fleet(n);

    // The system PKI: the CA, the controller's certificate, one certificate per agent.
    let pki = state.join("pki");
    let ca = if pki.join(dc_certs::pki::CA_KEY).exists() {
        dc_certs::pki::load_ca(&pki)?
    } else {
        dc_certs::pki::init(&pki, &[], false, dc_certs::now())?
    };
    for site in &sites {
        dc_certs::pki::write_agent(
            &ca,
            &site.name,
            &state.join("agents").join(&site.name).join("tls"),
            dc_certs::now(),
        )?;
    }

    // The controller, on free ports it announces in a ready file.
    let ready = state.join("controller.ready.json");
    let _ = std::fs::remove_file(&ready);
    let controller_toml = state.join("controller.toml");
    std::fs::write(
        &controller_toml,
        format!(
            r#"database = "{db}"
heartbeat_interval_secs = 2
offline_after_secs = 8
ready_file = "{ready}"
[api]
listen = "127.0.0.1:0"
[agents]
listen = "127.0.0.1:0"
[pki]
ca = "{pki}/ca.crt"
cert = "{pki}/controller.crt"
key = "{pki}/controller.key"
[[auth.tokens]]
token = "{TOKEN}"
role = "admin"
"#,
            db = state.join("controller.sqlite").display(),
            ready = ready.display(),
            pki = pki.display(),
        ),
    )?;
    let _controller = Child::spawn(
        &bin_path("dc-controller"),
        ["--config".as_ref(), controller_toml.as_os_str()],
        &logs.join("controller.log"),
    )?;
    let announced =
        wait_for_json(&ready, Duration::from_secs(30)).context("the controller did not start")?;
    let api = announced["api"]
        .as_str()
        .context("ready file without api")?
        .to_owned();
    let agents_addr = announced["agents"]
        .as_str()
        .context("ready file without agents")?
        .to_owned();
    let cli = Cli {
        url: format!("http://{api}/v1.0"),
    };
    println!("dc-demo: controller API on http://{api}/v1.0, agents on {agents_addr}");

    // Register the subclouds first: the controller refuses agents it does not know.
    for site in &sites {
        cli.quiet(&[
            "subcloud",
            "add",
            "--name",
            &site.name,
            "--description",
            "demo site",
            "--location",
            "lab",
        ])?;
    }

    let mut agents = Vec::new();
    for site in &sites {
        let dir = state.join("agents").join(&site.name);
        let config = dir.join("agent.toml");
        std::fs::write(&config, agent_toml(site, &dir, &agents_addr))?;
        agents.push(Child::spawn(
            &bin_path("dc-agent"),
            ["--config".as_ref(), config.as_os_str()],
            &logs.join(format!("{}.log", site.name)),
        )?);
    }

    println!("\n$ dcmanager subcloud list   (waiting for every agent to report)");
    cli.wait_until(Duration::from_secs(60), || {
        let list = cli.json(&["subcloud", "list", "-f", "json"])?;
        let rows = list.as_array().context("subcloud list is not a list")?;
        Ok(rows.len() == sites.len()
            && rows
                .iter()
                .all(|r| r["availability"] == "online" && r["sync"] != "unknown"))
    })?;
    cli.show(&["subcloud", "list"])?;

    let expiry = dc_certs::ExpiryDate::of(dc_certs::now() + 2 * 365 * 86400).context("date")?;
    let expiry = expiry.to_string();
    println!(
        "\n$ dcmanager kube-rootca-update-strategy create --subject '{SUBJECT}' --expiry-date {expiry} --max-parallel-subclouds {max_parallel}"
    );
    cli.show(&[
        "kube-rootca-update-strategy",
        "create",
        "--subject",
        SUBJECT,
        "--expiry-date",
        &expiry,
        "--max-parallel-subclouds",
        &max_parallel.to_string(),
    ])?;
    println!("\n$ dcmanager kube-rootca-update-strategy apply");
    cli.show(&["kube-rootca-update-strategy", "apply", "--yes"])?;
    println!("\n$ dcmanager strategy-step list --watch");
    let watched = cli.status(&["strategy-step", "list", "--watch", "--interval", "0.5"])?;

    println!("\n$ dcmanager kube-rootca-update-strategy show");
    cli.show(&["kube-rootca-update-strategy", "show"])?;
    println!("\n$ dcmanager strategy-step list");
    cli.show(&["strategy-step", "list"])?;
    ensure!(watched, "the strategy did not complete");

    println!("\ndc-demo: checking every subcloud's files");
    let not_after = dc_certs::ExpiryDate::parse(&expiry)?.not_after();
    for site in &sites {
        let in_sync = site.ca_days > 30;
        let hosts = verify_site(
            &state.join("agents").join(&site.name).join("data"),
            in_sync,
            not_after,
        )
        .with_context(|| format!("subcloud {}", site.name))?;
        println!(
            "  {:<12} {} host(s): {}",
            site.name,
            hosts,
            if in_sync {
                "in-sync, left alone (old CA kept)"
            } else {
                "new root CA alone in ca.crt, requested subject and expiry"
            }
        );
    }
    drop(agents);
    println!("\ndc-demo: every targeted subcloud trusts only the new root CA");
    Ok(())
}

fn agent_toml(site: &Site, dir: &Path, controller: &str) -> String {
    let shape = if site.typical {
        r#"controllers = 2
workers = 2
pod_ready_ms = 40
[[cluster.workloads]]
kind = "Deployment"
namespace = "default"
name = "web"
replicas = 3
strategy = { type = "RollingUpdate", max_unavailable = 0, max_surge = 1 }
labels = { app = "web" }
[[cluster.workloads]]
kind = "DaemonSet"
namespace = "kube-system"
name = "kube-proxy"
strategy = { type = "RollingUpdate", max_unavailable = 1 }
labels = { app = "kube-proxy" }
[[cluster.workloads]]
kind = "DaemonSet"
namespace = "monitoring"
name = "node-exporter"
strategy = { type = "OnDelete" }
labels = { app = "node-exporter" }
[[cluster.workloads]]
kind = "StatefulSet"
namespace = "db"
name = "pg"
replicas = 2
strategy = { type = "OnDelete" }
labels = { app = "pg", role = "primary" }
"#
    } else {
        r#"controllers = 1
workers = 0
pod_ready_ms = 20
[[cluster.workloads]]
kind = "Deployment"
namespace = "default"
name = "web"
replicas = 2
strategy = { type = "RollingUpdate", max_unavailable = 1 }
labels = { app = "web" }
[[cluster.workloads]]
kind = "StatefulSet"
namespace = "default"
name = "cache"
replicas = 1
strategy = { type = "RollingUpdate", max_unavailable = 1 }
labels = { app = "cache" }
"#
    };
    format!(
        r#"subcloud = "{name}"
data_dir = "{data}"
[controller]
address = "{controller}"
server_name = "localhost"
[tls]
ca = "{tls}/ca.crt"
cert = "{tls}/agent.crt"
key = "{tls}/agent.key"
[pods]
poll_ms = 50
[cluster]
kind = "simulated"
root_ca_expiry_days = {days}
{shape}"#,
        name = site.name,
        data = dir.join("data").display(),
        tls = dir.join("tls").display(),
        days = site.ca_days,
    )
}

/// Checks each host's `ca.crt`: a single certificate; for an updated subcloud, the new CA with the
/// demo's subject and expiry; for the in-sync one, still the original CA. Returns the number of hosts.
fn verify_site(data: &Path, in_sync: bool, not_after: i64) -> anyhow::Result<usize> {
    let hosts = data.join("cluster").join("hosts");
    let mut count = 0;
    for host in std::fs::read_dir(&hosts).with_context(|| format!("reading {}", hosts.display()))? {
        let host = host?.path();
        let ca_crt = host.join("etc/kubernetes/pki/ca.crt");
        let pem = std::fs::read_to_string(&ca_crt)
            .with_context(|| format!("reading {}", ca_crt.display()))?;
        let certs = dc_certs::pem_certificates(&pem)?;
        ensure!(
            certs.len() == 1,
            "{} holds {} certificates, not one",
            ca_crt.display(),
            certs.len()
        );
        let ca = CertSummary::from_der(&certs[0])?;
        if in_sync {
            ensure!(
                ca.subject != SUBJECT,
                "{} was updated although in-sync",
                ca_crt.display()
            );
        } else {
            ensure!(
                ca.subject == SUBJECT,
                "{} has subject '{}'",
                ca_crt.display(),
                ca.subject
            );
            ensure!(
                ca.not_after == not_after,
                "{} expires at {}",
                ca_crt.display(),
                ca.not_after
            );
        }
        count += 1;
    }
    ensure!(count > 0, "no hosts under {}", hosts.display());
    Ok(count)
}

/// The real dcmanager CLI, pointed at the demo controller.
struct Cli {
    url: String,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path("dcmanager"));
        cmd.args(args)
            .env("DCMANAGER_URL", &self.url)
            .env("OS_AUTH_TOKEN", TOKEN);
        cmd
    }

    /// Runs with the output on the terminal; fails on a non-zero exit.
    fn show(&self, args: &[&str]) -> anyhow::Result<()> {
        ensure!(self.status(args)?, "dcmanager {} failed", args.join(" "));
        Ok(())
    }

    /// Runs with the output on the terminal; returns whether it exited 0.
    fn status(&self, args: &[&str]) -> anyhow::Result<bool> {
        Ok(self
            .command(args)
            .status()
            .context("running dcmanager")?
            .success())
    }

    /// Runs without showing the output; fails with dcmanager's error on a non-zero exit.
    fn quiet(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command(args).output().context("running dcmanager")?;
        if !out.status.success() {
            bail!(
                "dcmanager {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.quiet(args)?)?)
    }

    /// Polls `done` (an API query: the controller is another process) until it holds or `timeout` passes.
    fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if done().unwrap_or(false) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("timed out after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
