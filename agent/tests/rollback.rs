//! Rollbacks on simulated clusters, checked from the files: from every phase before the point of no
//! return (stopped in the middle of it, and stopped after it) back to the old root CA alone everywhere,
//! with the trust invariants checked after every host and workload of every step, and a fresh update
//! completing afterwards; an agent killed at every step of a rollback; abort and resume of a rollback;
//! the refusal past the point of no return. The clock is paused.

mod common;

use common::*;
use dc_agent::cluster::Cluster;
use dc_agent::journal::RollbackStep;
use dc_agent::update::admit::ROLLBACK_WITHOUT_OLD_KEY;
use dc_agent::update::rollback::ROLLBACK_OF_COMPLETED_UPDATE;
use dc_protocol::{PhaseState, ROLLBACK_PAST_POINT_OF_NO_RETURN, ROLLING_BACK, STATE_ROLLED_BACK};

fn rollback_params() -> UpdateParams {
    UpdateParams {
        rollback: true,
        ..UpdateParams::default()
    }
}

/// A cluster whose `target` phase takes a second, so a stop lands in it.
fn slow_in(target: Phase) -> SimConfig {
    let mut config = SimConfig::typical();
    config.faults.slow_phase = Some(SlowPhase {
        phase: target,
        delay_ms: 1000,
    });
    config
}

/// Starts `u1` and kills the agent (drops its run) `transitions` recorded changes into `target`.
async fn kill_update_in(dir: &Path, config: &SimConfig, target: Phase, transitions: usize) {
    let updater = open(dir, config);
    updater.start("u1", params(), false).await.unwrap();
    let mut status = updater.journal().status();
    tokio::select! {
        result = updater.run() => panic!("the update ended before it was killed in {target}: {result:?}"),
        _ = async {
            status.wait_for(|s| s.as_ref().is_some_and(|s| s.phase == target)).await.unwrap();
            for _ in 0..transitions {
                status.changed().await.unwrap();
            }
        } => {}
    }
    // A short phase may have ended within the transitions: still before the point of no return.
    let r = record(&updater);
    assert!(
        r.phase >= target && r.phase <= Phase::HostsTrustNewCa,
        "killed in {target}: {:?}",
        r.phase
    );
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
}

/// Runs `u1` and aborts it in `target`: it stops after that phase.
async fn abort_update_in(dir: &Path, config: &SimConfig, target: Phase) {
    let updater = open(dir, config);
    updater.start("u1", params(), false).await.unwrap();
    let mut status = updater.journal().status();
    let (result, ()) = tokio::join!(updater.run(), async {
        status
            .wait_for(|s| s.as_ref().is_some_and(|s| s.phase == target))
            .await
            .unwrap();
        updater.request_abort();
    });
    result.unwrap();
    assert!(
        matches!(record(&updater).run, RunState::Aborted { .. }),
        "aborted in {target}"
    );
}

/// Rolls back with a fresh agent, then checks the old CA alone everywhere and the new CA gone from the
/// data dir, and that every progress message said it was rolling back.
async fn roll_back_and_check(
    dir: &Path,
    config: &SimConfig,
    old_ca: &str,
    context: &str,
) -> Updater<Backend> {
    let updater = open(dir, config);
    drain(&updater);
    assert_eq!(
        updater.start("r1", rollback_params(), false).await.unwrap(),
        StartDecision::Run,
        "{context}"
    );
    updater.run().await.unwrap();
    assert_rolled_back(&updater, Vec::new(), old_ca, context);
    updater
}

/// Checks a completed rollback from its messages (`messages`, or what the agent queued) and the files.
fn assert_rolled_back(
    updater: &Updater<Backend>,
    mut messages: Vec<AgentMessage>,
    old_ca: &str,
    context: &str,
) {
    messages.extend(drain(updater));
    assert_eq!(failures(&messages), Vec::<String>::new(), "{context}");
    let r = record(updater);
    assert_eq!(r.run, RunState::Completed, "{context}");
    assert_eq!(r.state(), STATE_ROLLED_BACK, "{context}");
    for m in &messages {
        if let AgentMessage::Progress(p) = m {
            assert!(p.details.starts_with(ROLLING_BACK), "{context}: {p:?}");
            assert_eq!(p.update_id, "r1", "{context}");
        }
    }
    assert!(
        matches!(messages.last(), Some(AgentMessage::PhaseResult(r))
            if r.outcome == PhaseOutcome::Succeeded && r.state == STATE_ROLLED_BACK),
        "{context}: {:?}",
        messages.last()
    );
    let sim = sim(updater);
    assert_on_ca_alone(sim, &sim.snapshot().unwrap(), old_ca);
    for kept in ["new-ca.crt", "new-ca.key", "old-ca.key"] {
        assert!(
            !updater.journal().dir().join(kept).exists(),
            "{context}: {kept} left"
        );
    }
}

/// After a rollback, a fresh update of the same cluster by the same agent completes: the new CA alone
/// everywhere. (The same agent: a simulated cluster reopened resumes its clock from its last save, and
/// the start phase would find the pods the rollback just restarted not ready yet.)
async fn fresh_update_completes(updater: &Updater<Backend>, context: &str) {
    assert_eq!(
        updater.start("u2", params(), false).await.unwrap(),
        StartDecision::Run,
        "{context}"
    );
    updater.run().await.unwrap();
    assert_eq!(failures(&drain(updater)), Vec::<String>::new(), "{context}");
    assert_eq!(record(updater).run, RunState::Completed, "{context}");
    let state = sim(updater).snapshot().unwrap();
    let ca = host_file(sim(updater), &state.hosts[0].name, HostFile::CaCert);
    assert_eq!(
        CertSummary::from_pem(&ca).unwrap().subject,
        SUBJECT,
        "{context}"
    );
    assert_on_ca_alone(sim(updater), &state, &ca);
}

/// The phases a rollback must always be possible from.
const BEFORE_THE_POINT_OF_NO_RETURN: [Phase; 6] = [
    Phase::Start,
    Phase::NewRootCa,
    Phase::HostsTrustBothCas,
    Phase::PodsTrustBothCas,
    Phase::HostsUpdateCerts,
    Phase::HostsTrustNewCa,
];

#[tokio::test(start_paused = true)]
async fn killed_in_the_middle_of_every_phase_before_the_point_of_no_return_it_rolls_back() {
    for target in BEFORE_THE_POINT_OF_NO_RETURN {
        // In a host phase, two transitions in: the first host done or under way.
        for transitions in [0, 2] {
            let context = format!("killed {transitions} transitions into {target}");
            let config = slow_in(target);
            let dir = tempfile::tempdir().unwrap();
            let old_ca = host_file(
                sim(&open(dir.path(), &config)),
                "controller-0",
                HostFile::CaCert,
            );
            kill_update_in(dir.path(), &config, target, transitions).await;
            let updater = roll_back_and_check(dir.path(), &config, &old_ca, &context).await;
            fresh_update_completes(&updater, &context).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn aborted_after_every_phase_before_the_point_of_no_return_it_rolls_back() {
    // Aborted in a phase, the update stops after it: hosts trust-new-ca done is past the point.
    for target in &BEFORE_THE_POINT_OF_NO_RETURN[..5] {
        let context = format!("aborted in {target}");
        let config = slow_in(*target);
        let dir = tempfile::tempdir().unwrap();
        let old_ca = host_file(
            sim(&open(dir.path(), &config)),
            "controller-0",
            HostFile::CaCert,
        );
        abort_update_in(dir.path(), &config, *target).await;
        let updater = roll_back_and_check(dir.path(), &config, &old_ca, &context).await;
        fresh_update_completes(&updater, &context).await;
    }
}

/// Past the point of no return the rollback is refused with the exact message, the update is left as
/// it was, and a later update finishes it.
#[tokio::test(start_paused = true)]
async fn after_hosts_trust_new_ca_a_rollback_is_refused_and_the_update_can_still_finish() {
    let config = slow_in(Phase::HostsTrustNewCa);
    let dir = tempfile::tempdir().unwrap();
    abort_update_in(dir.path(), &config, Phase::HostsTrustNewCa).await;
    let updater = open(dir.path(), &config);
    let before = record(&updater);
    assert_eq!(before.phase, Phase::PodsTrustNewCa);
    assert_eq!(
        updater.start("r1", rollback_params(), false).await.unwrap(),
        StartDecision::Refused
    );
    let messages = drain(&updater);
    assert!(
        matches!(&messages[..], [AgentMessage::PhaseResult(r)]
            if r.update_id == "r1"
                && r.outcome == PhaseOutcome::Failed { reason: ROLLBACK_PAST_POINT_OF_NO_RETURN.into() }),
        "{messages:?}"
    );
    let after = record(&updater);
    assert_eq!(
        (after.phase, &after.run, after.rollback.is_none()),
        (before.phase, &before.run, true)
    );
    assert_eq!(
        updater.start("u2", other_params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    // A completed update is not rolled back either: that is a new update now, and it says so.
    assert_eq!(
        updater.start("r2", rollback_params(), false).await.unwrap(),
        StartDecision::Refused
    );
    assert!(
        matches!(&drain(&updater)[..], [AgentMessage::PhaseResult(r)]
            if r.outcome == PhaseOutcome::Failed { reason: ROLLBACK_OF_COMPLETED_UPDATE.into() })
    );
}

/// The longest rollback (from the middle of hosts trust-new-ca, six steps), its agent killed in every
/// step, at its start and a few transitions in: each fresh agent resumes it on its own and the last
/// one finishes it.
#[tokio::test(start_paused = true)]
async fn a_rollback_killed_in_every_step_resumes_and_finishes() {
    let config = slow_in(Phase::HostsTrustNewCa);
    let dir = tempfile::tempdir().unwrap();
    let old_ca = host_file(
        sim(&open(dir.path(), &config)),
        "controller-0",
        HostFile::CaCert,
    );
    kill_update_in(dir.path(), &config, Phase::HostsTrustNewCa, 2).await;
    let updater = open(dir.path(), &config);
    updater.start("r1", rollback_params(), false).await.unwrap();
    let steps = record(&updater).rollback.unwrap().steps;
    assert_eq!(steps.len(), 6, "{steps:?}");
    let mut messages = drain(&updater);
    drop(updater);
    // The step each kill landed in, read back from the journal the killed agent left.
    let mut killed_in = std::collections::BTreeSet::new();
    for index in 0..steps.len() {
        for transitions in [0, 3] {
            let updater = open(dir.path(), &config);
            if record(&updater).run == RunState::Completed {
                break;
            }
            assert!(updater.should_resume(), "a running rollback resumes");
            let mut status = updater.journal().status();
            let killed = tokio::select! {
                result = updater.run() => { result.unwrap(); false }
                _ = async {
                    while record(&updater).rollback.is_none_or(|b| b.step < index) {
                        status.changed().await.unwrap();
                    }
                    for _ in 0..transitions {
                        status.changed().await.unwrap();
                    }
                } => true,
            };
            if killed {
                let r = record(&updater);
                assert_eq!(r.run, RunState::Running, "killed inside the rollback");
                killed_in.insert(r.rollback.unwrap().step);
            }
            messages.extend(drain(&updater));
        }
    }
    assert_eq!(
        killed_in,
        (0..steps.len()).collect(),
        "the agent was killed inside every step of {steps:?}"
    );
    let updater = open(dir.path(), &config);
    updater.run().await.unwrap();
    assert_rolled_back(&updater, messages, &old_ca, "killed in every step");
    // The pods an earlier agent restarted became ready after the cluster's last save, and a reopened
    // simulated cluster resumes its clock from that save: let them become ready again (paused clock,
    // no wall time) before the start phase checks every workload's health.
    tokio::time::sleep(Duration::from_secs(5)).await;
    fresh_update_completes(&updater, "killed in every step").await;
}

/// An abort stops a rollback after its step in progress; the same rollback started again resumes it.
#[tokio::test(start_paused = true)]
async fn an_aborted_rollback_resumes_at_its_next_step() {
    let config = slow_in(Phase::HostsUpdateCerts);
    let dir = tempfile::tempdir().unwrap();
    let old_ca = host_file(
        sim(&open(dir.path(), &config)),
        "controller-0",
        HostFile::CaCert,
    );
    abort_update_in(dir.path(), &config, Phase::HostsUpdateCerts).await;
    let updater = open(dir.path(), &config);
    updater.start("r1", rollback_params(), false).await.unwrap();
    let mut status = updater.journal().status();
    let (result, ()) = tokio::join!(updater.run(), async {
        status
            .wait_for(|s| {
                s.as_ref()
                    .is_some_and(|s| s.rollback && s.phase == Phase::HostsTrustBothCas)
            })
            .await
            .unwrap();
        updater.request_abort();
    });
    result.unwrap();
    assert_eq!(
        record(&updater).run,
        RunState::Aborted {
            next: Phase::PodsTrustBothCas
        }
    );
    assert!(matches!(
        drain(&updater).last(),
        Some(AgentMessage::Stopped(s)) if s.update_id == "r1"
    ));
    // An update is refused over the unfinished rollback, naming the way out.
    assert_eq!(
        updater.start("u2", params(), false).await.unwrap(),
        StartDecision::Refused
    );
    assert!(
        matches!(&drain(&updater)[..], [AgentMessage::PhaseResult(r)]
            if matches!(&r.outcome, PhaseOutcome::Failed { reason } if reason.contains("create --rollback")))
    );
    assert_eq!(
        updater.start("r1", rollback_params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    assert_rolled_back(&updater, Vec::new(), &old_ca, "aborted rollback");
    fresh_update_completes(&updater, "aborted rollback").await;
}

/// Starts `u1` and kills the agent once the first controller finished hosts trust-new-ca: its
/// apiserver presents a certificate from the new CA, and the bundle published for pods is the new CA
/// alone.
async fn kill_update_after_the_first_host_of_trust_new_ca(dir: &Path, config: &SimConfig) {
    let updater = open(dir, config);
    updater.start("u1", params(), false).await.unwrap();
    let mut status = updater.journal().status();
    tokio::select! {
        result = updater.run() => panic!("the update ended before it was killed: {result:?}"),
        _ = async {
            loop {
                let r = record(&updater);
                if r.phase == Phase::HostsTrustNewCa
                    && r.hosts.get("controller-0") == Some(&PhaseState::Done)
                {
                    break;
                }
                status.changed().await.unwrap();
            }
        } => {}
    }
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
}

/// The review's F1: a workload's pod replaced while hosts trust-new-ca ran (an eviction, a crash)
/// mounted the new CA alone. The rollback restarts the workloads once both CAs are published again,
/// before any apiserver certificate goes back to the old CA, so that pod never loses trust (the
/// invariants are checked after every host and workload), and the subcloud ends on the old CA alone.
#[tokio::test(start_paused = true)]
async fn a_pod_created_during_hosts_trust_new_ca_keeps_trust_through_the_rollback() {
    let config = slow_in(Phase::HostsTrustNewCa);
    let dir = tempfile::tempdir().unwrap();
    let old_ca = host_file(
        sim(&open(dir.path(), &config)),
        "controller-0",
        HostFile::CaCert,
    );
    kill_update_after_the_first_host_of_trust_new_ca(dir.path(), &config).await;
    {
        let updater = open(dir.path(), &config);
        let cluster = sim(&updater);
        let new_alone = host_file(cluster, "controller-0", HostFile::CaCert);
        assert_ne!(new_alone, old_ca);
        let state = cluster.snapshot().unwrap();
        let w = state
            .workloads
            .iter()
            .find(|w| w.spec.kind == WorkloadKind::Deployment && !w.pods.is_empty())
            .unwrap();
        cluster
            .delete_pod(&w.spec.namespace, &w.pods[0].name)
            .await
            .unwrap();
        let state = cluster.snapshot().unwrap();
        assert!(
            state
                .workloads
                .iter()
                .flat_map(|w| &w.pods)
                .any(|p| p.trust_bundle == new_alone),
            "the replacement pod mounts the new CA alone"
        );
    }
    let context = "a pod created in hosts trust-new-ca";
    let updater = roll_back_and_check(dir.path(), &config, &old_ca, context).await;
    let steps = record(&updater).rollback.unwrap().steps;
    assert_eq!(
        steps[..3],
        [
            RollbackStep::HostsTrustBothCasAgain,
            RollbackStep::PodsTrustBothCasAgain,
            RollbackStep::HostsReissueFromOldCa
        ]
    );
    fresh_update_completes(&updater, context).await;
}

/// The stranded-pods check mirrored for the rollback: a bare pod run while hosts trust-new-ca ran
/// mounted the new CA alone, and nothing the rollback does restarts it. The rollback stops before any
/// host's certificate goes back to the old CA, naming it; once the operator deleted it, the same
/// rollback resumes and finishes on the old CA alone.
#[tokio::test(start_paused = true)]
async fn a_bare_pod_on_the_new_ca_alone_stops_the_rollback_before_any_reissue_until_it_is_gone() {
    let config = slow_in(Phase::HostsTrustNewCa);
    let dir = tempfile::tempdir().unwrap();
    let old_ca = host_file(
        sim(&open(dir.path(), &config)),
        "controller-0",
        HostFile::CaCert,
    );
    kill_update_after_the_first_host_of_trust_new_ca(dir.path(), &config).await;
    let updater = open(dir.path(), &config);
    let cluster = sim(&updater);
    let new_alone = host_file(cluster, "controller-0", HostFile::CaCert);
    cluster.add_bare_pod("demo", "debug", &new_alone).unwrap();
    let apiserver = host_file(cluster, "controller-0", HostFile::ApiserverCert);
    assert_eq!(
        updater.start("r1", rollback_params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    let failed = failures(&drain(&updater));
    assert!(
        matches!(&failed[..], [reason]
            if reason.starts_with("rolling back: hosts re-issue certificates from the old CA: 1 running pod(s) may have mounted the new root CA alone")
                && reason.contains("demo/debug (a bare pod: no controller recreates it)")),
        "{failed:?}"
    );
    let r = record(&updater);
    assert!(r.hosts.is_empty(), "no host re-issued: {:?}", r.hosts);
    assert_eq!(
        host_file(cluster, "controller-0", HostFile::ApiserverCert),
        apiserver
    );
    cluster.delete_pod("demo", "debug").await.unwrap();
    assert_eq!(
        updater.start("r1", rollback_params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    assert_rolled_back(&updater, Vec::new(), &old_ca, "bare pod deleted");
    fresh_update_completes(&updater, "bare pod deleted").await;
}

/// The review's F2 (a): where the old key cannot be kept (here its path in the data dir is taken),
/// hosts trust-new-ca fails before any host changes, so every controller still holds the old key and
/// the rollback promised before the point of no return finishes.
#[tokio::test(start_paused = true)]
async fn an_old_key_that_cannot_be_kept_fails_trust_new_ca_before_any_host_and_the_rollback_finishes()
 {
    let config = SimConfig::typical();
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &config);
    let old_ca = host_file(sim(&updater), "controller-0", HostFile::CaCert);
    let old_key = host_file(sim(&updater), "controller-0", HostFile::CaKey);
    let taken = updater.journal().dir().join("old-ca.key");
    std::fs::create_dir_all(taken.join("taken")).unwrap();
    updater.start("u1", params(), false).await.unwrap();
    updater.run().await.unwrap();
    let failed = failures(&drain(&updater));
    assert!(
        matches!(&failed[..], [reason]
            if reason.starts_with("hosts trust-new-ca: cannot keep a copy of the old root CA's key")
                && reason.contains("no host was changed")),
        "{failed:?}"
    );
    let r = record(&updater);
    assert_eq!(
        (r.phase, r.hosts.is_empty()),
        (Phase::HostsTrustNewCa, true)
    );
    for controller in ["controller-0", "controller-1"] {
        assert_eq!(
            host_file(sim(&updater), controller, HostFile::CaKey),
            old_key
        );
    }
    std::fs::remove_dir_all(&taken).unwrap();
    drop(updater);
    let updater = roll_back_and_check(dir.path(), &config, &old_ca, "old key not kept").await;
    fresh_update_completes(&updater, "old key not kept").await;
}

/// The review's F2 (b): without the old CA's key on any controller (a kubeadm cluster with an external
/// CA has no ca.key), a rollback could not re-issue anything: it is refused at its start with the
/// exact reason, nothing changes, and a plain strategy finishes the update.
#[tokio::test(start_paused = true)]
async fn a_rollback_that_could_not_finish_without_the_old_key_is_refused_and_the_update_finishes() {
    let config = slow_in(Phase::HostsUpdateCerts);
    let dir = tempfile::tempdir().unwrap();
    abort_update_in(dir.path(), &config, Phase::HostsUpdateCerts).await;
    let updater = open(dir.path(), &config);
    drain(&updater);
    for controller in ["controller-0", "controller-1"] {
        std::fs::remove_file(
            sim(&updater)
                .host_dir(controller)
                .join(HostFile::CaKey.path()),
        )
        .unwrap();
    }
    let before = record(&updater);
    assert_eq!(
        updater.start("r1", rollback_params(), false).await.unwrap(),
        StartDecision::Refused
    );
    let messages = drain(&updater);
    assert!(
        matches!(&messages[..], [AgentMessage::PhaseResult(r)]
            if r.update_id == "r1"
                && matches!(&r.outcome, PhaseOutcome::Failed { reason }
                    if reason.starts_with(ROLLBACK_WITHOUT_OLD_KEY)
                        && reason.contains("the old root CA's key is on no controller"))),
        "{messages:?}"
    );
    let after = record(&updater);
    assert_eq!(
        (
            after.phase,
            &after.run,
            &after.hosts,
            after.rollback.is_none()
        ),
        (before.phase, &before.run, &before.hosts, true)
    );
    assert_eq!(
        updater.start("u2", other_params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    let state = sim(&updater).snapshot().unwrap();
    let ca = host_file(sim(&updater), "controller-0", HostFile::CaCert);
    assert_eq!(CertSummary::from_pem(&ca).unwrap().subject, SUBJECT);
    assert_on_ca_alone(sim(&updater), &state, &ca);
}

/// The review's F3: once a controller re-issued its leaves from the old CA, its controller-manager
/// signs with the old CA again (its certificate alone), so a kubelet client certificate rotated in the
/// rest of the rollback (here the agent is killed inside the re-issue step, and controller-0's kubelet
/// rotates meanwhile) is still trusted when the hosts trust the old CA alone; the rollback resumes
/// and finishes on the old CA alone everywhere.
#[tokio::test(start_paused = true)]
async fn a_kubelet_certificate_signed_while_leaves_go_back_to_the_old_ca_is_trusted_after_the_rollback()
 {
    let config = slow_in(Phase::HostsUpdateCerts);
    let dir = tempfile::tempdir().unwrap();
    let old_ca = host_file(
        sim(&open(dir.path(), &config)),
        "controller-0",
        HostFile::CaCert,
    );
    abort_update_in(dir.path(), &config, Phase::HostsUpdateCerts).await;
    let updater = open(dir.path(), &config);
    drain(&updater);
    updater.start("r1", rollback_params(), false).await.unwrap();
    let mut status = updater.journal().status();
    tokio::select! {
        result = updater.run() => panic!("the rollback ended before it was killed: {result:?}"),
        _ = async {
            loop {
                let r = record(&updater);
                let step = r.rollback.as_ref().and_then(|b| b.current());
                if step == Some(RollbackStep::HostsReissueFromOldCa)
                    && r.hosts.get("controller-0") == Some(&PhaseState::Done)
                {
                    break;
                }
                status.changed().await.unwrap();
            }
        } => {}
    }
    sim(&updater).rotate_kubelet_client("controller-0").unwrap();
    let kubelet = Kubeconfig::parse(&host_file(
        sim(&updater),
        "controller-0",
        HostFile::Kubeconfig(KubeconfigFile::Kubelet),
    ))
    .unwrap();
    let ClientCredentials::Embedded { cert_pem, .. } = kubelet.client() else {
        panic!("embedded");
    };
    dc_agent::trust::trusts(cert_pem, &old_ca, Usage::Client)
        .expect("the controller-manager signed the rotation with the old CA");
    let messages = drain(&updater);
    drop(updater);
    let updater = open(dir.path(), &config);
    assert!(updater.should_resume());
    updater.run().await.unwrap();
    assert_rolled_back(&updater, messages, &old_ca, "kubelet rotated");
    fresh_update_completes(&updater, "kubelet rotated").await;
}
