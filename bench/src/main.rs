//! `dc-fleet-bench`: how the orchestration scales, measured.
//!
//! A real `dc-controller` process (SQLite or PostgreSQL, mutual TLS) against N agents running in this
//! process, each with its own TLS connection, certificate and simulated cluster. One kube-rootca-update strategy is
//! applied over all of them; the run reports wall time against the ideal time of the agents' own work,
//! the controller's memory and CPU, progress latency (agent write -> visible in the REST API), and how
//! long N agents take to connect, and to reconnect after the controller is SIGKILLed and restarted.
//! With `--failover` (PostgreSQL) a standby controller waits beside the leader, the agents know both,
//! and the leader is SIGKILLed mid-apply: the run reports how long until the standby leads and every
//! agent is online at it, and checks the strategy completes with no step run twice.
//! Certificates, registration and the simulated clusters are prepared before any clock starts.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports to its user"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use dc_agent::config::ReconnectConfig;
use dc_agent::sim::SimCluster;
use dc_agent::{AgentConfig, ClusterConfig, RunOptions};
use dc_bench::database::{Database, kill_after};
use dc_bench::dcmanager::Rules;
use dc_bench::figures::{
    ConnectionFigures, ControllerFigures, FailoverFigures, Figures, LatencyFigures, ModelFigures,
    Settings, Setup, StrategyFigures,
};
use dc_bench::follower::{StepsPage, follow_steps, restarted};
use dc_bench::http::{Http, gauge};
use dc_bench::latency::{Summary, match_subcloud};
use dc_bench::procstat::{self, ProcSample};
use dc_bench::schedule::makespan;
use dc_bench::work::{AgentWork, emissions};
use dc_controller::config::LeadershipConfig;
use dc_controller::model::step_state::COMPLETE;
use dc_test_support::Child;
use dc_test_support::fleet::{ADMIN_TOKEN, ControllerSettings, Fleet, Shape, Site};
use dc_test_support::postgres::TestPostgres;
use serde_json::json;
use tokio::sync::{mpsc, watch};

#[derive(Parser)]
#[command(
    name = "dc-fleet-bench",
    about = "Runs one kube-rootca-update strategy over N in-process agents against a real controller and reports how it scales"
)]
struct Args {
    /// Subclouds (in-process agents, each with its own connection, certificate and simulated cluster).
    #[arg(long, default_value_t = 100)]
    subclouds: usize,
    /// max-parallel-subclouds of the strategy (default: all subclouds, at most 5000).
    #[arg(long)]
    max_parallel: Option<u32>,
    /// The simulated clusters' shape.
    #[arg(long, value_enum, default_value_t = ShapeArg::Light)]
    shape: ShapeArg,
    /// The subclouds' worker-apply-type (strategy-config's default entry; upstream's default:
    /// parallel).
    #[arg(long, value_parser = ["serial", "parallel"])]
    worker_apply_type: Option<String>,
    /// The subclouds' max-parallel-workers (strategy-config's default entry; upstream's default: 10).
    #[arg(long)]
    max_parallel_workers: Option<u16>,
    /// Where state and logs go (default: a fresh directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Where the figures go as JSON (default: figures.json in the state dir).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Give up on the strategy after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// Seconds the connected fleet is left idle before the strategy, to measure what keeping N agents
    /// connected costs the controller.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Keep the agents' data and the SQLite database (by default only logs and figures stay; a
    /// throwaway PostgreSQL is always removed).
    #[arg(long)]
    keep_state: bool,
    /// The controller's database: "sqlite" (default: a file in the state directory),
    /// "throwaway-postgres" (a PostgreSQL started for the run on loopback, TLS on, removed after it;
    /// Debian's postgresql package) or the postgresql:// URL of an empty database.
    #[arg(long)]
    database: Option<String>,
    /// The CA of the PostgreSQL server's certificate (`database_ca`), with a postgresql:// --database.
    #[arg(long)]
    database_ca: Option<PathBuf>,
    /// A standby controller on the same PostgreSQL beside the leader, the agents given both addresses;
    /// the leader is SIGKILLed mid-apply and the takeover measured.
    #[arg(long)]
    failover: bool,
    /// With --failover: the percentage of steps complete when the leader is killed.
    #[arg(long, default_value_t = 50)]
    failover_at: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShapeArg {
    /// One controller host, two workloads.
    Light,
    /// Two controllers and two workers, four workloads of every kind.
    Typical,
    /// Two controllers and fifty workers whose restarts take a second.
    Wide,
}

const SUBJECT: &str = "C=CA O=bench CN=fleet-bench-root-ca";
/// Production's settings, not the tests' fast ones: heartbeats are a cost that scales with N.
const CONTROLLER: ControllerSettings = ControllerSettings {
    heartbeat_interval_secs: 10,
    offline_after_secs: 35,
    agent_wait_secs: 600,
    progress_flush_ms: 1000,
    handshake_timeout_secs: 10,
    metrics_require_token: false,
};
/// The agents' redial backoff (the default's initial delay and jitter, a lower cap).
const RECONNECT: ReconnectConfig = ReconnectConfig {
    initial_secs: 0.5,
    max_secs: 5.0,
    jitter: 0.5,
};
/// GETs of the whole steps list timed after the strategy completes.
const STEPS_GETS: usize = 20;
/// Generous: with thousands of agents on two cores a phase waits long for CPU.
const PHASE_TIMEOUT_SECS: u64 = 3600;
const ONLINE_TIMEOUT: Duration = Duration::from_secs(600);
/// Descriptors this process needs beside its agents' one connection each: the agents' and simulated
/// clusters' file work runs on tokio's blocking pool (512 threads at most, each with a file and its
/// directory open at once), plus the follower, the HTTP clients and the logs. The controller is a
/// process of its own with its own limit.
const FILES_BESIDE_AGENTS: u64 = 2 * 512 + 256;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.subclouds >= 1, "--subclouds must be at least 1");
    ensure!(args.idle_secs >= 1, "--idle-secs must be at least 1");
    let database = Database::choose(
        args.database.as_deref(),
        args.database_ca.clone(),
        args.failover,
        args.failover_at,
    )?;
    ensure!(
        !args.failover || args.subclouds >= 2,
        "--failover needs at least 2 subclouds (steps complete before the kill and steps after)"
    );
    let max_parallel = args
        .max_parallel
        .unwrap_or_else(|| u32::try_from(args.subclouds.min(5000)).unwrap_or(5000));
    let state = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("dc-fleet-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(state.join("logs"))
        .with_context(|| format!("creating {}", state.display()))?;
    let log = std::fs::File::create(state.join("logs").join("agents.log"))?;
    dc_config::logging::init_to(std::sync::Mutex::new(log), "warn")?;
    let needed = args.subclouds as u64 + FILES_BESIDE_AGENTS;
    let fds = raise_open_files_limit(needed)?;
    ensure!(
        fds >= needed,
        "{} subclouds need about {needed} open files; the limit is {fds} (raising the hard limit \
         needs root or CAP_SYS_RESOURCE)",
        args.subclouds,
    );
    println!("dc-fleet-bench: state directory {}", state.display());
    dc_test_support::process::build_workspace_binaries(&["dc-controller"])?;

    let result = run(&args, &database, &state, max_parallel).and_then(|figures| {
        print!("\n{}", figures.table());
        let json_path = args
            .json
            .clone()
            .unwrap_or_else(|| state.join("figures.json"));
        std::fs::write(&json_path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("writing {}", json_path.display()))?;
        println!("figures: {}", json_path.display());
        Ok(figures)
    });
    if !args.keep_state {
        println!(
            "dc-fleet-bench: removing the agents' data and the database (--keep-state keeps them)"
        );
        let _ = std::fs::remove_dir_all(state.join("agents"));
        for db in [
            "controller.sqlite",
            "controller.sqlite-wal",
            "controller.sqlite-shm",
        ] {
            let _ = std::fs::remove_file(state.join(db));
        }
    }
    let figures = result?;
    ensure!(
        figures.strategy.completed && figures.strategy.steps_complete == args.subclouds,
        "the strategy did not complete on every subcloud"
    );
    if let Some(f) = &figures.failover {
        ensure!(
            f.steps_restarted.is_empty(),
            "steps run twice across the failover: {}",
            f.steps_restarted.join(", ")
        );
    }
    Ok(())
}

/// Thousands of connections need thousands of descriptors: the soft limit goes up to the hard one,
/// and the hard one to `needed` where we may raise it (10,000 subclouds need more than the usual
/// 20,000). The controller, our child, inherits it.
fn raise_open_files_limit(needed: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if hard < needed && setrlimit(Resource::RLIMIT_NOFILE, needed, needed).is_ok() {
        return Ok(needed);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// Times [`STEPS_GETS`] GETs of the whole steps list from a thread and runtime of their own, as the
/// follower reads: on the agents' runtime the client waited behind N agents' tasks, which made the
/// figure partly the bench's (N = 5,000: 35.7-61.7 ms there; 8-18 ms by curl against the same
/// controller and database once the agents were gone).
async fn time_steps_gets(api: String) -> anyhow::Result<Vec<Duration>> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut http = Http::new(&api, ADMIN_TOKEN);
            let mut gets = Vec::with_capacity(STEPS_GETS);
            for _ in 0..STEPS_GETS {
                let t = Instant::now();
                http.request("GET", "/v1.0/sw-update-strategy/steps", None)
                    .await?;
                gets.push(t.elapsed());
            }
            Ok(gets)
        })
    })
    .await?
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn run(
    args: &Args,
    database: &Database,
    state: &Path,
    max_parallel: u32,
) -> anyhow::Result<Figures> {
    let n = args.subclouds;
    let started_at = dc_controller::model::now_string();
    let commit = git_commit();
    let shape = match args.shape {
        ShapeArg::Light => Shape::Light,
        ShapeArg::Typical => Shape::Typical,
        ShapeArg::Wide => Shape::Wide,
    };
    // Every root CA expires within the 30-day threshold: every subcloud is out-of-sync and targeted.
    let sites = (1..=n)
        .map(|i| Site::new(&format!("subcloud{i}"), shape))
        .collect();

    // Declared before the fleet, so dropped (stopped and removed) after every controller.
    let postgres = if *database == Database::Throwaway {
        println!("dc-fleet-bench: starting a throwaway PostgreSQL");
        // Commits flushed to disk, as SQLite's are (synchronous = FULL).
        Some(TestPostgres::start_durable()?)
    } else {
        None
    };
    println!("dc-fleet-bench: issuing {n} agent certificates");
    let t = Instant::now();
    let mut fleet = Fleet::prepare(state, sites)?;
    let certs_secs = secs(t.elapsed());
    fleet.controller_settings = CONTROLLER;
    if let Some(pg) = &postgres {
        fleet.database = pg.create_database("dc")?.into();
        fleet.database_ca = Some(pg.ca());
    }
    if let Database::Server { url, ca } = database {
        fleet.database = url.into();
        fleet.database_ca.clone_from(ca);
    }
    if args.failover {
        // Agents try the leader's address, then the standby's.
        fleet.standby_agent_addresses = vec![free_loopback_address()?];
    }
    fleet.start_controller()?;
    let pid = fleet
        .controller_pid()
        .context("the controller is not running")?;
    let idle = procstat::sample(pid)?;
    let standby = match fleet.standby_agent_addresses.first() {
        Some(agents) => Some(fleet.start_standby("standby", agents)?),
        None => None,
    };

    println!("dc-fleet-bench: creating {n} simulated clusters");
    let t = Instant::now();
    let configs = agent_configs(&fleet)?;
    let sims_secs = secs(t.elapsed());

    let workers = std::thread::available_parallelism().map_or(2, |c| c.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.block_on(measure(
        args,
        &mut fleet,
        pid,
        configs,
        max_parallel,
        Prepared {
            started_at,
            commit,
            database: database.describe(),
            standby,
            idle,
            certs_secs,
            sims_secs,
            cores: workers,
        },
    ))
}

/// What was measured before the runtime started.
struct Prepared {
    started_at: String,
    /// The commit the run started from (HEAD may move while it runs).
    commit: String,
    database: String,
    /// With `--failover`: the standby controller, waiting for the leader's lease.
    standby: Option<Child>,
    idle: ProcSample,
    certs_secs: f64,
    sims_secs: f64,
    cores: usize,
}

/// Each site's agent configuration, its simulated cluster created now (the P-384 keys of its PKI are
/// the sim's cost, not the orchestration's), on every core.
fn agent_configs(fleet: &Fleet) -> anyhow::Result<Vec<AgentConfig>> {
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    let next = AtomicUsize::new(0);
    let configs: Vec<anyhow::Result<Vec<(usize, AgentConfig)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(site) = fleet.sites.get(i) else {
                            return Ok(mine);
                        };
                        let path = fleet.write_agent_config(site, &fleet.agent_dir(i))?;
                        let mut config = AgentConfig::load(&path)?;
                        config.reconnect = RECONNECT;
                        config.phase_timeout_secs = PHASE_TIMEOUT_SECS;
                        dc_certs::files::create_private_dir(&config.data_dir)?;
                        #[allow(
                            unreachable_patterns,
                            reason = "other cluster backends are not benchmarked"
                        )]
                        match &config.cluster {
                            ClusterConfig::Simulated(sim) => {
                                SimCluster::open(&config.data_dir, sim)?;
                            }
                            _ => bail!("the benchmark runs simulated clusters only"),
                        }
                        mine.push((i, config));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a sim thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(fleet.sites.len());
    for part in configs {
        all.extend(part?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, c)| c).collect())
}

async fn measure(
    args: &Args,
    fleet: &mut Fleet,
    pid: u32,
    configs: Vec<AgentConfig>,
    max_parallel: u32,
    mut prepared: Prepared,
) -> anyhow::Result<Figures> {
    let n = configs.len();
    // The follower reads the address of whichever controller leads.
    let api = Arc::new(Mutex::new(fleet.api.clone()));
    let mut http = Http::new(&fleet.api, ADMIN_TOKEN);

    println!("dc-fleet-bench: registering {n} subclouds through the REST API");
    let t = Instant::now();
    register(
        &fleet.api,
        fleet.sites.iter().map(|s| s.name.clone()).collect(),
    )
    .await?;
    let register_secs = secs(t.elapsed());
    let registered = procstat::sample(pid)?;

    println!("dc-fleet-bench: starting {n} agents");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let t = Instant::now();
    let agents: Vec<_> = configs
        .into_iter()
        .map(|config| {
            let mut stop = stop_rx.clone();
            let options = RunOptions {
                observer: Some(events_tx.clone()),
            };
            tokio::spawn(dc_agent::run_with(config, options, async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        })
        .collect();
    drop(events_tx);
    wait_online(&mut http, n).await?;
    let connect_secs = secs(t.elapsed());
    let connected = procstat::sample(pid)?;
    println!(
        "dc-fleet-bench: all {n} online; leaving the fleet idle for {} s",
        args.idle_secs
    );
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idled = procstat::sample(pid)?;

    // The subclouds' options, as an operator sets them before creating the strategy.
    let mut options = serde_json::Map::new();
    if let Some(t) = &args.worker_apply_type {
        options.insert("worker-apply-type".into(), json!(t));
    }
    if let Some(n) = args.max_parallel_workers {
        options.insert("max-parallel-workers".into(), json!(n));
    }
    if !options.is_empty() {
        http.post(
            "/v1.0/sw-update-options/SystemController",
            &serde_json::Value::Object(options),
        )
        .await?;
    }
    let options: serde_json::Value = http.get("/v1.0/sw-update-options/SystemController").await?;
    let worker_options = format!(
        "worker-apply-type {}, max-parallel-workers {}",
        options["worker-apply-type"].as_str().unwrap_or("?"),
        options["max-parallel-workers"]
    );

    let expiry = dc_certs::ExpiryDate::of(dc_certs::now() + 2 * 365 * 86400)
        .context("expiry date")?
        .to_string();
    http.post(
        "/v1.0/sw-update-strategy",
        &json!({
            "type": "kube-rootca-update",
            "subcloud-apply-type": "parallel",
            "max-parallel-subclouds": max_parallel,
            "subject": SUBJECT,
            "expiry-date": expiry,
        }),
    )
    .await?;
    let steps: StepsPage = http.get("/v1.0/sw-update-strategy/steps").await?;
    ensure!(
        steps.steps.len() == n,
        "the strategy targets {} of {n} subclouds",
        steps.steps.len()
    );

    println!(
        "dc-fleet-bench: applying the strategy (max-parallel {max_parallel}); following the event stream"
    );
    let stop_following = Arc::new(AtomicBool::new(false));
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let (complete_tx, complete_rx) = watch::channel(0);
    let follower = {
        let api = api.clone();
        let stop = stop_following.clone();
        std::thread::spawn(move || follow_steps(&api, &stop, &first_tx, &complete_tx))
    };
    tokio::task::spawn_blocking(move || first_rx.recv()).await??;
    let before = procstat::sample(pid)?;
    let applied = Instant::now();
    http.post(
        "/v1.0/sw-update-strategy/actions",
        &json!({"action": "apply"}),
    )
    .await?;
    let deadline = applied + Duration::from_secs(args.timeout_secs);
    let stopper = {
        let stop = stop_following.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let follower = tokio::task::spawn_blocking(move || follower.join());
    let failover = match prepared.standby.take() {
        Some(standby) => {
            let kill_at = kill_after(n, args.failover_at);
            let failed_over =
                fail_over(fleet, &mut http, &api, standby, pid, complete_rx, kill_at).await;
            if failed_over.is_err() {
                // Stops the follower too, so the failover's error is reported now.
                stop_following.store(true, Ordering::Relaxed);
            }
            Some(failed_over)
        }
        None => None,
    };
    let followed = follower
        .await?
        .map_err(|_| anyhow::anyhow!("the follower panicked"))?;
    // The follower's error first: a failover waiting for steps fails when the follower does.
    let followed = followed?;
    let failover = failover.transpose()?;
    stopper.abort();
    let after = procstat::sample(
        fleet
            .controller_pid()
            .context("the controller is not running")?,
    )?;
    // The strategy's CPU and memory across both processes when the leader was replaced (the
    // standby's waiting for the lease included, a few queries).
    let (leader_cpu, leader_peak) = match &failover {
        Some(f) => (
            f.leader_at_kill.cpu_secs - before.cpu_secs,
            f.leader_at_kill.peak_rss,
        ),
        None => (0.0, 0),
    };
    let (cpu_secs_strategy, cpu_secs_total, peak_rss) = match &failover {
        Some(f) => (
            leader_cpu + after.cpu_secs,
            f.leader_at_kill.cpu_secs + after.cpu_secs,
            leader_peak.max(after.peak_rss),
        ),
        None => (
            after.cpu_secs - before.cpu_secs,
            after.cpu_secs,
            after.peak_rss,
        ),
    };
    let failover = match failover {
        Some(f) => {
            let now: StepsPage = http.get("/v1.0/sw-update-strategy/steps").await?;
            Some(FailoverFigures {
                steps_restarted: restarted(&f.before, &now.steps),
                ..f.figures
            })
        }
        None => None,
    };
    // What a client polling the whole list pays, with every step finished.
    let steps_gets = time_steps_gets(fleet.api.clone()).await?;
    let mut events = Vec::new();
    while let Ok(e) = events_rx.try_recv() {
        events.push(e);
    }
    let wall = followed.ended.map(|at| at - applied);
    println!(
        "dc-fleet-bench: strategy {} after {:.2} s; measuring the reconnect storm",
        followed.strategy_state,
        wall.map_or(f64::NAN, secs)
    );

    // The reconnect storm: SIGKILL, a new process on the same database and ports.
    let restart = replace_controller(fleet, &mut http, &api, n, None).await?;

    stop_tx.send_replace(true);
    for agent in agents {
        match tokio::time::timeout(Duration::from_secs(30), agent).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("dc-fleet-bench: an agent failed: {e}"),
            Ok(Err(e)) => eprintln!("dc-fleet-bench: an agent task failed: {e}"),
            Err(_) => eprintln!("dc-fleet-bench: an agent did not stop in time"),
        }
    }

    let work = AgentWork::from_events(&events);
    let order: Vec<&str> = followed.order.iter().map(String::as_str).collect();
    let durations: Vec<Duration> = order
        .iter()
        .map(|s| work.total.get(*s).copied().unwrap_or_default())
        .collect();
    let ideal = makespan(&durations, max_parallel as usize);
    let mut latencies = Vec::new();
    let mut emitted = 0;
    let no_changes = Vec::new();
    let written = emissions(&events);
    for (subcloud, emissions) in &written {
        emitted += emissions.len();
        let changes = followed.changes.get(subcloud).unwrap_or(&no_changes);
        latencies.extend(match_subcloud(emissions, changes));
    }
    let wall_secs = wall.map_or(f64::NAN, secs);
    let rules = Rules::DCMANAGER;
    let modelled = secs(rules.wall(&durations, max_parallel as usize));
    let mut delays: Vec<Duration> = written
        .iter()
        .flat_map(|(subcloud, written)| {
            let start = work.started.get(subcloud).copied();
            written.iter().filter_map(move |e| {
                let offset = e.at.checked_duration_since(start?)?;
                Some(rules.progress_delay(offset))
            })
        })
        .collect();
    let complete = followed
        .last
        .iter()
        .filter(|s| s.state == dc_controller::model::step_state::COMPLETE)
        .count();
    let mut figures = Figures {
        subclouds: n,
        max_parallel,
        shape: match args.shape {
            ShapeArg::Light => "light",
            ShapeArg::Typical => "typical",
            ShapeArg::Wide => "wide",
        }
        .to_owned(),
        database: prepared.database,
        worker_options,
        git_commit: prepared.commit,
        cores: prepared.cores,
        started_at: prepared.started_at,
        finished_at: dc_controller::model::now_string(),
        settings: Settings {
            heartbeat_interval_secs: CONTROLLER.heartbeat_interval_secs,
            offline_after_secs: CONTROLLER.offline_after_secs,
            progress_flush_ms: CONTROLLER.progress_flush_ms,
            reconnect_initial_secs: RECONNECT.initial_secs,
            reconnect_max_secs: RECONNECT.max_secs,
            reconnect_jitter: RECONNECT.jitter,
        },
        setup: Setup {
            certs_secs: prepared.certs_secs,
            register_secs,
            sims_secs: prepared.sims_secs,
        },
        strategy: StrategyFigures {
            completed: followed.strategy_state == "complete",
            steps_complete: complete,
            steps_other: followed.last.len() - complete,
            wall_secs,
            ideal_secs: secs(ideal),
            overhead: wall_secs / secs(ideal),
            agent_work_mean_secs: mean(work.total.values().map(|d| secs(*d))),
            agent_work_max_secs: work.total.values().map(|d| secs(*d)).fold(0.0, f64::max),
            phase_mean_secs: work
                .phases
                .iter()
                .map(|(p, d)| (p.label().to_owned(), mean(d.iter().map(|d| secs(*d)))))
                .collect(),
        },
        controller: ControllerFigures {
            rss_idle_mib: mib(prepared.idle.rss),
            rss_registered_mib: mib(registered.rss),
            rss_connected_mib: mib(connected.rss),
            peak_rss_mib: mib(peak_rss),
            rss_per_subcloud_kib: (connected.rss.saturating_sub(prepared.idle.rss)) as f64
                / 1024.0
                / n as f64,
            cpu_secs_strategy,
            cpu_secs_total,
            cpu_secs_idle: idled.cpu_secs - connected.cpu_secs,
            idle_secs: args.idle_secs as f64,
            cpu_us_per_heartbeat: f64::NAN,
            cpu_ms_per_update: f64::NAN,
        },
        progress_latency: LatencyFigures {
            events: followed.events,
            steps_gets: steps_gets.len(),
            steps_get_mean_ms: mean(steps_gets.iter().map(|d| secs(*d) * 1000.0)),
            steps_get_max_ms: steps_gets
                .iter()
                .map(|d| secs(*d) * 1000.0)
                .fold(0.0, f64::max),
            emitted,
            summary: Summary::of(&mut latencies),
        },
        connections: ConnectionFigures {
            connect_secs,
            restart_ready_secs: restart.leading_secs,
            reconnect_storm_secs: restart.all_online_secs,
        },
        failover,
        dcmanager_model: ModelFigures {
            wall_secs: modelled,
            wall_ratio: modelled / wall_secs,
            progress_delay: Summary::of(&mut delays),
        },
    };
    figures
        .controller
        .split_cpu(n, u64::from(CONTROLLER.heartbeat_interval_secs), wall_secs);
    Ok(figures)
}

/// A controller replaced after a SIGKILL, timed from the kill.
struct Replaced {
    /// To the new one leading (ready: lease taken with PostgreSQL, API and agent listener bound).
    leading_secs: f64,
    /// To every agent online at it.
    all_online_secs: f64,
}

/// SIGKILLs the controller and measures its replacement taking the fleet: `standby`, already waiting
/// on the same PostgreSQL, or (without one) a new process on the same database and ports. `http` and
/// the follower's `api` are pointed at the new controller as soon as it leads.
async fn replace_controller(
    fleet: &mut Fleet,
    http: &mut Http,
    api: &Mutex<String>,
    n: usize,
    standby: Option<Child>,
) -> anyhow::Result<Replaced> {
    let leading = tokio::task::block_in_place(|| match standby {
        Some(standby) => fleet.fail_over(standby, "standby", ONLINE_TIMEOUT),
        None => {
            fleet.kill_controller();
            let t = Instant::now();
            fleet.start_controller().map(|()| t.elapsed())
        }
    })?;
    let led = Instant::now();
    *api.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = fleet.api.clone();
    *http = Http::new(&fleet.api, ADMIN_TOKEN);
    wait_online(http, n).await?;
    Ok(Replaced {
        leading_secs: secs(leading),
        all_online_secs: secs(leading + led.elapsed()),
    })
}

/// A failover measured, and what the strategy's steps were when the leader was killed.
struct FailedOver {
    figures: FailoverFigures,
    before: Vec<dc_bench::follower::StepRow>,
    leader_at_kill: ProcSample,
}

/// Waits until `kill_at` steps are complete (as the follower counts them), notes every step's start,
/// SIGKILLs the leader and measures the standby taking over.
async fn fail_over(
    fleet: &mut Fleet,
    http: &mut Http,
    api: &Mutex<String>,
    mut standby: Child,
    leader: u32,
    mut complete: watch::Receiver<usize>,
    kill_at: usize,
) -> anyhow::Result<FailedOver> {
    complete
        .wait_for(|c| *c >= kill_at)
        .await
        .map_err(|_| anyhow::anyhow!("the event stream ended before {kill_at} steps completed"))?;
    // Else the wait for it to lead would last the whole timeout.
    ensure!(
        standby.is_running(),
        "the standby exited before the failover; see {}",
        fleet.log("standby").display()
    );
    let before: StepsPage = http.get("/v1.0/sw-update-strategy/steps").await?;
    let leader_at_kill = procstat::sample(leader)?;
    let steps_complete_at_kill = before.steps.iter().filter(|s| s.state == COMPLETE).count();
    let steps_started_at_kill = before
        .steps
        .iter()
        .filter(|s| s.started_at.is_some())
        .count();
    println!(
        "dc-fleet-bench: {steps_complete_at_kill} of {} steps complete: SIGKILL to the leader",
        before.steps.len()
    );
    let n = fleet.sites.len();
    let replaced = replace_controller(fleet, http, api, n, Some(standby)).await?;
    println!(
        "dc-fleet-bench: the standby leads after {:.2} s, every agent online at it after {:.2} s",
        replaced.leading_secs, replaced.all_online_secs
    );
    Ok(FailedOver {
        figures: FailoverFigures {
            lease_secs: LeadershipConfig::default().lease_secs,
            steps_complete_at_kill,
            steps_started_at_kill,
            leading_secs: replaced.leading_secs,
            all_online_secs: replaced.all_online_secs,
            steps_restarted: Vec::new(),
        },
        before: before.steps,
        leader_at_kill,
    })
}

/// A loopback address nothing listens on now, for the standby's agent listener.
fn free_loopback_address() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 { 0.0 } else { sum / count as f64 }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// Registers every subcloud through the REST API, a few requests at a time.
async fn register(api: &str, names: Vec<String>) -> anyhow::Result<()> {
    let names = Arc::new(names);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (names, next) = (names.clone(), next.clone());
        let mut http = Http::new(api, ADMIN_TOKEN);
        tasks.spawn(async move {
            while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                http.post(
                    "/v1.0/subclouds",
                    &json!({"name": name, "description": "bench", "location": "lab"}),
                )
                .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Waits until the controller counts `n` subclouds online (connected and heartbeating).
async fn wait_online(http: &mut Http, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + ONLINE_TIMEOUT;
    let mut last = None;
    loop {
        if let Ok(body) = http.request("GET", "/metrics", None).await {
            last = gauge(&String::from_utf8_lossy(&body), "dc_online_subclouds");
            if last == Some(n as f64) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("only {last:?} of {n} subclouds online after {ONLINE_TIMEOUT:?}");
        }
        // The controller is another process: its state is observed through the API.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
