//! `dc-chaos`: a seeded fault campaign over a real fleet (a `dc-controller` process, `dc-agent`
//! processes on simulated clusters, `dcmanager` as the operator), then the operator keeps creating and
//! applying strategies until every subcloud is updated. Prints the seed first so any run can be
//! replayed, the figures last, and exits non-zero when an invariant broke.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a campaign reports to its user"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use dc_agent::sim::{SimCluster, SimState};
use dc_chaos::figures::Figures;
use dc_chaos::plan::{Fault, plan};
use dc_test_support::fleet::{Fleet, Shape, Site, wait_until};
use dc_test_support::tmpfs::Tmpfs;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "dc-chaos",
    about = "Injects seeded faults into a real fleet during kube-rootca updates, then finishes every subcloud and checks the invariants"
)]
struct Args {
    /// The campaign's seed (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Subclouds (agent processes, each on a simulated cluster).
    #[arg(long, default_value_t = 6)]
    subclouds: usize,
    /// Faults to inject.
    #[arg(long, default_value_t = 20)]
    faults: usize,
    /// Most strategies the operator may need after the faults stop before the run counts as stuck.
    #[arg(long, default_value_t = 6)]
    max_strategies_after: usize,
    /// Where state and logs go (default: a fresh directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Where the figures go as JSON (default: chaos.json in the state dir).
    #[arg(long)]
    json: Option<PathBuf>,
}

const SUBJECT: &str = "C=CA O=chaos CN=dc-chaos-root-ca";
/// The workload a fail-pods fault keeps unready (the light shape's Deployment).
const FAILING_WORKLOAD: &str = "default/web";
/// How long one strategy may take before the campaign calls it stuck.
const STRATEGY_TIMEOUT: Duration = Duration::from_secs(300);
const TERMINAL: [&str; 3] = ["complete", "failed", "aborted"];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!(
        "dc-chaos seed {seed} (replay: --seed {seed} --subclouds {} --faults {})",
        args.subclouds, args.faults
    );
    dc_test_support::process::build_workspace_binaries(&[
        "dc-controller",
        "dc-agent",
        "dcmanager",
    ])?;
    let dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("dc-chaos-{seed}")));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let mut campaign = Campaign::start(&dir, seed, args.subclouds)?;
    let started = Instant::now();
    let planned = plan(seed, args.faults, args.subclouds, campaign.disk.is_some());
    campaign.operator_turn();
    for (n, p) in planned.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(p.after_ms));
        println!("fault {}/{}: {:?}", n + 1, planned.len(), p.fault);
        campaign.inject(p.fault);
        *campaign
            .figures
            .faults_by_kind
            .entry(p.fault.kind())
            .or_default() += 1;
        campaign.operator_turn();
    }
    println!("fault window closed; finishing every subcloud");
    campaign.finish(args.max_strategies_after);
    campaign.check_end_state();
    campaign.figures.faults_planned = planned.len();
    campaign.figures.wall_secs = started.elapsed().as_secs_f64();

    let json = args.json.unwrap_or_else(|| dir.join("chaos.json"));
    let text = serde_json::to_string_pretty(&campaign.figures)?;
    std::fs::write(&json, &text).with_context(|| format!("writing {}", json.display()))?;
    println!("{text}");
    println!("figures: {}", json.display());
    if !campaign.figures.violations.is_empty() {
        bail!(
            "{} invariant(s) broken with seed {seed}; logs under {}",
            campaign.figures.violations.len(),
            dir.join("logs").display()
        );
    }
    Ok(())
}

struct Campaign {
    fleet: Fleet,
    disk: Option<Tmpfs>,
    /// Subclouds whose pods phases fail until the window closes.
    failing: BTreeSet<usize>,
    /// While faults are injected, strategies are forced, so every subcloud keeps being updated.
    window_open: bool,
    /// Updates seen completing on each subcloud (its steps that ended `complete`).
    completed_updates: Vec<u32>,
    /// The last strategy whose steps were read, so none is counted twice.
    last_read: Option<String>,
    expiry: String,
    not_after: i64,
    figures: Figures,
}

impl Campaign {
    fn start(dir: &Path, seed: u64, subclouds: usize) -> anyhow::Result<Self> {
        // The first pods phase slowed so that an update lasts a few fault intervals: faults land in the
        // middle of updates; and during the window strategies are forced, so the fleet stays busy.
        let slow_pods_ms = 3000;
        let sites: Vec<Site> = (1..=subclouds)
            .map(|i| {
                let mut site = Site::new(&format!("chaos{i}"), Shape::Light);
                site.slow_pods_ms = slow_pods_ms;
                site
            })
            .collect();
        let mut fleet = Fleet::prepare(dir, sites).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The controller's database on a tmpfs the campaign can fill (needs root).
        let disk = match Tmpfs::mount(&dir.join("db"), "8m") {
            Ok(d) => {
                fleet.database = d.path().join("controller.sqlite");
                Some(d)
            }
            Err(e) => {
                println!("{e}: the campaign injects no disk-full");
                None
            }
        };
        fleet.launch().map_err(|e| anyhow::anyhow!("{e}"))?;
        fleet
            .wait_online(Duration::from_secs(120))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let date = dc_certs::ExpiryDate::of(dc_certs::now() + 2 * 365 * 86400)
            .context("an expiry date two years ahead")?;
        Ok(Self {
            fleet,
            disk,
            failing: BTreeSet::new(),
            window_open: true,
            completed_updates: vec![0; subclouds],
            last_read: None,
            expiry: date.to_string(),
            not_after: date.not_after(),
            figures: Figures {
                seed,
                subclouds,
                ..Figures::default()
            },
        })
    }

    fn violation(&mut self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.figures.violations.push(what);
    }

    /// The strategy as `dcmanager` shows it; `None` when there is none (or the controller is away).
    fn strategy(&self) -> Option<Value> {
        self.fleet
            .dcmanager_json(&["kube-rootca-update-strategy", "show"])
            .ok()
    }

    fn state(&self) -> Option<String> {
        self.strategy()
            .and_then(|s| s["state"].as_str().map(str::to_owned))
    }

    fn ensure_controller(&mut self) {
        if self.fleet.controller_pid().is_some() && self.fleet.controller_exit().is_none() {
            return;
        }
        if let Err(e) = self.fleet.start_controller() {
            self.violation(format!("the controller does not start again: {e}"));
        }
    }

    /// What an operator does between faults: a finished strategy is read, deleted and replaced; with
    /// none, one is created; a create that finds nothing to do is fine.
    fn operator_turn(&mut self) {
        self.ensure_controller();
        match self.state() {
            Some(state) if TERMINAL.contains(&state.as_str()) => {
                self.read_steps();
                let _ =
                    self.fleet
                        .dcmanager_ok(&["kube-rootca-update-strategy", "delete", "--yes"]);
                self.create_and_apply();
            }
            Some(_) => {}
            None => self.create_and_apply(),
        }
    }

    fn create_and_apply(&mut self) {
        let mut create = vec![
            "kube-rootca-update-strategy",
            "create",
            "--subject",
            SUBJECT,
            "--expiry-date",
            &self.expiry,
            "--max-parallel-subclouds",
            "10",
        ];
        if self.window_open {
            create.push("--force");
        }
        let created = self.fleet.dcmanager_ok(&create);
        match created {
            Ok(_) => {
                self.figures.strategies += 1;
                let _ = self
                    .fleet
                    .dcmanager_ok(&["kube-rootca-update-strategy", "apply"]);
            }
            Err(e) => println!("  create: {e}"),
        }
    }

    /// Reads a finished strategy's steps once: no step may report a broken trust invariant, and each
    /// complete one is an update finished on its subcloud.
    fn read_steps(&mut self) {
        // The CLI shows no strategy id; its creation time names it.
        let id = self
            .strategy()
            .and_then(|s| s["created_at"].as_str().map(str::to_owned));
        if id.is_none() || id == self.last_read {
            return;
        }
        let Ok(steps) = self.fleet.dcmanager_json(&["strategy-step", "list"]) else {
            return;
        };
        self.last_read = id;
        for step in steps.as_array().into_iter().flatten() {
            let details = step["details"].as_str().unwrap_or_default();
            if details.contains("trust invariant") {
                self.violation(format!("{}: {details}", step["cloud"]));
            }
            let site = self
                .fleet
                .sites
                .iter()
                .position(|s| step["cloud"] == s.name.as_str());
            if let Some(i) = site.filter(|_| step["state"] == "complete") {
                self.completed_updates[i] += 1;
            }
        }
    }

    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::KillController => {
                self.fleet.kill_controller();
                self.ensure_controller();
            }
            Fault::KillAgent { site } => self.restart_agent(site),
            Fault::Abort => {
                let _ = self
                    .fleet
                    .dcmanager_ok(&["kube-rootca-update-strategy", "abort"]);
            }
            Fault::FailPods { site } => {
                self.failing.insert(site);
                self.fleet.sites[site].never_ready = vec![FAILING_WORKLOAD.to_owned()];
                self.restart_agent(site);
            }
            Fault::DeleteAndRecreate => {
                let _ = self
                    .fleet
                    .dcmanager_ok(&["kube-rootca-update-strategy", "abort"]);
                if self.wait_terminal().is_ok() {
                    self.read_steps();
                    let _ = self.fleet.dcmanager_ok(&[
                        "kube-rootca-update-strategy",
                        "delete",
                        "--yes",
                    ]);
                }
                self.create_and_apply();
            }
            Fault::DiskFull => self.fill_disk(),
        }
    }

    fn restart_agent(&mut self, site: usize) {
        if let Err(e) = self.fleet.restart_agent(site) {
            self.violation(format!("agent {site} does not start again: {e}"));
        }
    }

    /// Fills the controller's disk until it stops on a failed write (or a while passes without a write),
    /// then frees the space and starts it again.
    fn fill_disk(&mut self) {
        let Some(disk) = &self.disk else { return };
        let filler = match disk.fill("filler") {
            Ok(filler) => filler,
            Err(e) => {
                return self.violation(format!("the controller's disk could not be filled: {e}"));
            }
        };
        let stopped = wait_until(Duration::from_secs(20), || {
            Ok(self.fleet.controller_exit().is_some())
        });
        if stopped.is_ok() {
            let log = std::fs::read_to_string(self.fleet.log("controller")).unwrap_or_default();
            if !log.contains("the store cannot write") {
                self.violation("the controller stopped on a full disk without saying why".into());
            }
        }
        let _ = std::fs::remove_file(&filler);
        self.ensure_controller();
    }

    fn wait_terminal(&self) -> Result<String, String> {
        let mut last = None;
        wait_until(STRATEGY_TIMEOUT, || {
            last = self.state();
            Ok(last.as_deref().is_none_or(|s| TERMINAL.contains(&s)))
        })
        .map_err(|e| format!("{e}; last state {last:?}"))?;
        Ok(last.unwrap_or_default())
    }

    fn updated(&self, i: usize) -> bool {
        self.fleet
            .verify_site(i, Some((SUBJECT, self.not_after)), SUBJECT)
            .is_ok()
    }

    /// After the window: the faults are removed, and the operator creates and applies strategies until
    /// every subcloud is updated.
    fn finish(&mut self, max_strategies: usize) {
        self.window_open = false;
        for site in std::mem::take(&mut self.failing) {
            self.fleet.sites[site].never_ready.clear();
            self.restart_agent(site);
        }
        self.ensure_controller();
        let _ = self
            .fleet
            .wait_online(Duration::from_secs(120))
            .map_err(|e| self.violation(format!("the fleet does not come back online: {e}")));
        let before = self.figures.strategies;
        loop {
            if let Err(e) = self.wait_terminal() {
                self.violation(format!("a strategy is stuck: {e}"));
                return;
            }
            self.read_steps();
            let all = (0..self.fleet.sites.len()).all(|i| self.updated(i));
            if all {
                break;
            }
            if self.figures.strategies - before >= max_strategies {
                let left: Vec<&str> = (0..self.fleet.sites.len())
                    .filter(|&i| !self.updated(i))
                    .map(|i| self.fleet.sites[i].name.as_str())
                    .collect();
                let what =
                    format!("{max_strategies} strategies after the faults did not finish {left:?}");
                self.violation(what);
                break;
            }
            let _ = self
                .fleet
                .dcmanager_ok(&["kube-rootca-update-strategy", "delete", "--yes"]);
            let _ = wait_until(Duration::from_secs(30), || Ok(self.strategy().is_none()));
            self.create_and_apply();
        }
        self.figures.strategies_after_faults = self.figures.strategies - before;
    }

    /// The end state, read from the subclouds themselves with every process stopped: the new CA alone
    /// on every host, every pod trusting its API server, each workload restarted exactly once per pods
    /// phase, and each agent's journal saying its update completed.
    fn check_end_state(&mut self) {
        let n = self.fleet.sites.len();
        for i in 0..n {
            self.fleet.kill_agent(i);
        }
        self.fleet.kill_controller();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return self.violation(format!("no runtime for the end checks: {e}")),
        };
        let mut completed = true;
        for i in 0..n {
            let name = self.fleet.sites[i].name.clone();
            if let Err(e) = self
                .fleet
                .verify_site(i, Some((SUBJECT, self.not_after)), SUBJECT)
            {
                completed = false;
                self.violation(format!("{name}: {e}"));
            }
            let data = self.fleet.agent_data(i);
            let record = std::fs::read_to_string(data.join("update/record.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            // Completed, or a later attempt that stopped before the host phases changed anything (a
            // forced update refused at start while a fault was on): what the store shows too.
            let run = record.as_ref().map(|r| r["run"]["run"].clone());
            let phase = record.as_ref().map(|r| r["phase"].clone());
            let untouched = [Value::from("start"), Value::from("new-root-ca")];
            if run != Some(Value::from("completed"))
                && !phase.as_ref().is_some_and(|p| untouched.contains(p))
            {
                self.violation(format!(
                    "{name}: the agent's journal says {run:?} at {phase:?}, not completed"
                ));
            }
            let config = self.fleet.sites[i].shape.sim_config();
            match SimCluster::open(&data, &config) {
                Ok(cluster) => {
                    let trust = runtime.block_on(dc_agent::trust::check(
                        &cluster,
                        &dc_agent::trust::Verified::default(),
                    ));
                    if let Err(e) = trust {
                        self.violation(format!("{name}: a pod does not trust its API server: {e}"));
                    }
                    if let Ok(state) = cluster.snapshot() {
                        self.check_restarts(&name, &state, self.completed_updates[i]);
                    }
                }
                Err(e) => self.violation(format!("{name}: cannot open its cluster: {e}")),
            }
        }
        self.figures.completed = completed;
    }

    /// Every update that reaches a pods phase finishes (a later one only takes it over), so each
    /// workload was restarted exactly twice per completed update: once per pods phase.
    fn check_restarts(&mut self, name: &str, state: &SimState, updates: u32) {
        for w in &state.workloads {
            if w.restarts != 2 * updates {
                self.violation(format!(
                    "{name}: {}/{} restarted {} times for {updates} completed updates, not once per pods phase",
                    w.spec.namespace, w.spec.name, w.restarts
                ));
            }
        }
    }
}
