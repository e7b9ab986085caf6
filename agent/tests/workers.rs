//! Workers under `worker-apply-type`: in parallel up to `max-parallel-workers`, resumed after a kill
//! with several in flight, stopped by a failing one, and `ignore` refused where it would strand
//! workers; each fault followed through to a finished update. Paused clock: a kubelet restart takes
//! a second of simulated time, which is what parallel workers save.

mod common;

use common::*;
use dc_agent::cluster::Component;
use dc_protocol::{PhaseState, SubcloudOptions, WorkerApplyType};

/// One controller and `workers` workers whose restarted components take a second to serve again.
fn wide(workers: u32) -> SimConfig {
    let mut config = SimConfig::light();
    config.workers = workers;
    config.restart_ms = 1000;
    config
}

fn with(worker_apply_type: WorkerApplyType, max_parallel_workers: u16) -> UpdateParams {
    UpdateParams {
        options: SubcloudOptions {
            worker_apply_type,
            max_parallel_workers,
            ..SubcloudOptions::default()
        },
        ..params()
    }
}

fn kubelet_restarts(state: &SimState, host: &str) -> u32 {
    state
        .component_restarts
        .get(host)
        .and_then(|r| r.get(&Component::Kubelet))
        .copied()
        .unwrap_or(0)
}

/// Runs a whole update and returns how long it took on the simulated clock and the most hosts that
/// restarted at once.
async fn update(config: &SimConfig, params: UpdateParams) -> (Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), config);
    updater.start("u1", params, false).await.unwrap();
    let began = tokio::time::Instant::now();
    updater.run().await.unwrap();
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    let state = sim(&updater).snapshot().unwrap();
    assert_updated(sim(&updater), &state);
    (began.elapsed(), state.peak_hosts_restarting)
}

#[tokio::test(start_paused = true)]
async fn parallel_workers_are_bounded_by_max_parallel_workers_and_serial_takes_one_at_a_time() {
    let config = wide(12);
    let (parallel, peak) = update(&config, with(WorkerApplyType::Parallel, 4)).await;
    assert_eq!(
        peak, 4,
        "at most, and at some point exactly, 4 workers at once"
    );
    let (serial, peak) = update(&config, with(WorkerApplyType::Serial, 4)).await;
    assert_eq!(peak, 1, "serial: one host at a time");
    // Three host phases restart each worker's kubelet (1 s each): 36 s one after another, 9 s in
    // waves of four.
    assert!(
        serial - parallel >= Duration::from_secs(27),
        "serial {serial:?}, parallel {parallel:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn killed_with_workers_in_flight_a_resume_redoes_only_the_unfinished_ones() {
    let config = wide(8);
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &config);
    updater
        .start("u1", with(WorkerApplyType::Parallel, 3), false)
        .await
        .unwrap();
    let mut status = updater.journal().status();
    // Killed (its future dropped) once hosts trust-both-cas has finished some workers and has
    // others in flight.
    let in_flight = |r: &UpdateRecord| {
        r.phase == Phase::HostsTrustBothCas
            && r.hosts
                .iter()
                .any(|(h, s)| h.starts_with("worker") && *s == PhaseState::Done)
            && r.hosts
                .values()
                .filter(|s| **s == PhaseState::InProgress)
                .count()
                >= 2
    };
    tokio::select! {
        result = updater.run() => panic!("the update ended before the kill: {result:?}"),
        _ = async {
            while !in_flight(&record(&updater)) {
                status.changed().await.unwrap();
            }
        } => {}
    }
    let at_kill = record(&updater).hosts;
    let before = sim(&updater).snapshot().unwrap();
    drop(updater);

    let updater = open(dir.path(), &config);
    assert!(updater.should_resume());
    updater.run().await.unwrap();
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    let after = sim(&updater).snapshot().unwrap();
    assert_updated(sim(&updater), &after);
    // Three host phases restart each worker's kubelet once; only the workers in flight at the kill
    // may have restarted once more in trust-both-cas.
    for host in after.hosts.iter().filter(|h| h.name.starts_with("worker")) {
        let restarts = kubelet_restarts(&after, &host.name);
        match at_kill.get(&host.name) {
            Some(PhaseState::InProgress) => assert!(
                (3..=4).contains(&restarts),
                "{}: {restarts} restarts (in flight at the kill, {} before it)",
                host.name,
                kubelet_restarts(&before, &host.name)
            ),
            done_or_not_begun => assert_eq!(
                restarts, 3,
                "{} ({done_or_not_begun:?} at the kill) restarted again",
                host.name
            ),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_worker_starts_no_new_worker_lets_those_in_flight_finish_and_fails_naming_it() {
    let mut config = wide(8);
    config.faults.restart_fails = vec!["worker-1".into()];
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &config);
    updater
        .start("u1", with(WorkerApplyType::Parallel, 3), false)
        .await
        .unwrap();
    updater.run().await.unwrap();
    let RunState::Failed { phase, reason } = record(&updater).run else {
        panic!("the update must fail: {:?}", record(&updater).run);
    };
    assert_eq!(phase, Phase::HostsTrustBothCas);
    assert_eq!(
        reason,
        "hosts trust-both-cas: worker-1 failed: restarting Kubelet on worker-1 failed (injected fault)"
    );
    // worker-0 and worker-2 were in flight with it and finished; no worker after them began.
    let hosts = record(&updater).hosts;
    for done in ["controller-0", "worker-0", "worker-2"] {
        assert_eq!(
            hosts.get(done),
            Some(&PhaseState::Done),
            "{done}: {hosts:?}"
        );
    }
    assert_eq!(hosts.get("worker-1"), Some(&PhaseState::InProgress));
    for never in 3..8 {
        assert_eq!(hosts.get(&format!("worker-{never}")), None, "{hosts:?}");
    }
    drop(updater);

    // The way on: the fault repaired, the same update resumes and finishes.
    config.faults = Default::default();
    let updater = open(dir.path(), &config);
    updater
        .start("u1", with(WorkerApplyType::Parallel, 3), false)
        .await
        .unwrap();
    updater.run().await.unwrap();
    assert_eq!(record(&updater).run, RunState::Completed);
    assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
}

#[tokio::test(start_paused = true)]
async fn ignore_is_refused_where_there_are_workers_and_a_later_strategy_with_serial_finishes() {
    let config = wide(2);
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &config);
    updater
        .start("u1", with(WorkerApplyType::Ignore, 10), false)
        .await
        .unwrap();
    updater.run().await.unwrap();
    let RunState::Failed { phase, reason } = record(&updater).run else {
        panic!("the update must be refused: {:?}", record(&updater).run);
    };
    assert_eq!(phase, Phase::Start);
    assert!(
        reason.starts_with(
            "start: worker-apply-type ignore would leave 2 worker(s) (worker-0, worker-1) with kubelets trusting the old root CA alone"
        ),
        "{reason}"
    );
    assert!(!record(&updater).hosts_touched(), "nothing changed");
    updater
        .start("u2", with(WorkerApplyType::Serial, 10), false)
        .await
        .unwrap();
    updater.run().await.unwrap();
    assert_eq!(record(&updater).run, RunState::Completed);
    assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());

    // Without workers there is nothing to leave behind: ignore runs.
    let (_, peak) = update(&wide(0), with(WorkerApplyType::Ignore, 10)).await;
    assert_eq!(peak, 1);
}
