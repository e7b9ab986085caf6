//! Whole updates on simulated clusters, checked from the files: the phases, their order's safety,
//! crashes at every step, abort and resume, and injected faults. The clock is paused, so pod readiness
//! and rollout polling cost no wall time.

mod common;

use common::*;

#[tokio::test(start_paused = true)]
async fn whole_update_on_a_typical_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::typical());
    assert_eq!(
        updater.start("u1", params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    let messages = drain(&updater);
    assert_eq!(failures(&messages), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    assert_eq!(record(&updater).state(), "update-completed");
    // Messages are numbered in order, every phase reported its success, in order.
    let seqs: Vec<u64> = messages.iter().filter_map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let succeeded: Vec<Phase> = messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::PhaseResult(r) if r.outcome == PhaseOutcome::Succeeded => Some(r.phase),
            _ => None,
        })
        .collect();
    assert_eq!(succeeded, Phase::ALL);
    let state = sim(&updater).snapshot().unwrap();
    assert_updated(sim(&updater), &state);
    // Host phases went controllers first, one host at a time.
    let hosts: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Progress(p) if p.phase == Phase::HostsTrustBothCas => p.host.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        hosts,
        ["controller-0", "controller-1", "worker-0", "worker-1"]
    );
    // A second start of the completed update only repeats its result.
    assert_eq!(
        updater.start("u1", params(), false).await.unwrap(),
        StartDecision::AlreadyCompleted
    );
}

/// The controller-manager republishes the bundle 18 s after each restart, as a real one does after its
/// leader election: both pods phases wait for it, say so, and the update ends with every pod on the
/// new CA and the trust invariants held throughout.
#[tokio::test(start_paused = true)]
async fn whole_update_waits_for_each_bundle_to_be_published_before_restarting_pods() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::typical();
    config.publish_delay_ms = 18_000;
    let updater = open(dir.path(), &config);
    updater.start("u1", params(), false).await.unwrap();
    updater.run().await.unwrap();
    let messages = drain(&updater);
    assert_eq!(failures(&messages), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    let waits: Vec<Phase> = messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Progress(p)
                if p.details
                    .starts_with("waiting for the controller-manager to publish") =>
            {
                Some(p.phase)
            }
            _ => None,
        })
        .collect();
    assert_eq!(waits, [Phase::PodsTrustBothCas, Phase::PodsTrustNewCa]);
    assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
}

fn seq(m: &AgentMessage) -> Option<u64> {
    match m {
        AgentMessage::Progress(p) => Some(p.seq),
        AgentMessage::PhaseResult(r) => Some(r.seq),
        AgentMessage::Stopped(s) => Some(s.seq),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn wrong_phase_order_is_caught_by_the_trust_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::typical());
    updater.start("u1", params(), false).await.unwrap();
    // Run until the hosts trust both CAs, then skip the pods phase: update-certs would re-issue the
    // apiserver's certificate from a CA the pods do not trust yet.
    let mut status = updater.journal().status();
    tokio::select! {
        _ = updater.run() => panic!("the update should have been stopped before the pods phase"),
        _ = status.wait_for(|s| s.as_ref().is_some_and(|s| s.phase == Phase::PodsTrustBothCas)) => {}
    }
    updater
        .journal()
        .update(|r| r.phase = Phase::HostsUpdateCerts, |_, _| None)
        .unwrap();
    updater.run().await.unwrap();
    let RunState::Failed { phase, reason } = record(&updater).run else {
        panic!("update-certs must fail");
    };
    assert_eq!(phase, Phase::HostsUpdateCerts);
    assert!(reason.contains("trust invariant violated"), "{reason}");
    assert!(
        reason.contains("cannot verify the apiserver of controller-0"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn killed_in_every_phase_the_update_still_finishes_without_harmful_repeats() {
    for target in Phase::ALL {
        // The target phase begins with a delay, so the kill lands in it: a phase passed without an
        // await point (a fast key generation on a loaded machine) is never seen by the killer.
        let mut config = SimConfig::typical();
        config.faults.slow_phase = Some(SlowPhase {
            phase: target,
            delay_ms: 1000,
        });
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), &config)
            .start("u1", params(), false)
            .await
            .unwrap();
        let mut kills = 0;
        // Kill the agent (drop its future) as the phase begins, then a few recorded transitions and
        // await points into it: in the middle of a host, of a rollout, between a transition and the
        // action it announces. A fresh agent on the same data dir resumes each time, as after a crash.
        for (transitions, yields) in [(0, 0), (1, 3), (2, 1), (4, 7), (0, 0)] {
            let updater = open(dir.path(), &config);
            if record(&updater).phase > target || record(&updater).run == RunState::Completed {
                break;
            }
            assert!(updater.should_resume());
            let mut status = updater.journal().status();
            tokio::select! {
                result = updater.run() => result.unwrap(),
                _ = async {
                    status.wait_for(|s| s.as_ref().is_some_and(|s| s.phase == target)).await.unwrap();
                    for _ in 0..transitions {
                        status.changed().await.unwrap();
                    }
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                } => {
                    if record(&updater).phase == target {
                        kills += 1;
                    }
                }
            }
            assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
        }
        assert!(kills > 0, "never killed in {target}");
        // The agent comes back with the update recorded as running, and a later strategy's start
        // arrives before it resumed on its own: it takes the update over (or, before any host changed,
        // replaces it) and finishes the cluster.
        let updater = open(dir.path(), &config);
        let touched = record(&updater).hosts_touched();
        // (Killed as it completed, there is nothing left to take over: a later start is a new update.)
        if record(&updater).run != RunState::Completed {
            assert_eq!(
                updater.start("u2", other_params(), false).await.unwrap(),
                StartDecision::Run
            );
        }
        updater.run().await.unwrap();
        assert_eq!(
            failures(&drain(&updater)),
            Vec::<String>::new(),
            "killed in {target}"
        );
        assert_eq!(
            record(&updater).run,
            RunState::Completed,
            "killed in {target}"
        );
        if touched {
            let state = sim(&updater).snapshot().unwrap();
            assert_updated(sim(&updater), &state);
        } else {
            let ca = dc_agent::facts::root_ca(updater.cluster()).await.unwrap();
            assert!(
                ca.subject.ends_with("CN=OTHER"),
                "killed in {target}: {}",
                ca.subject
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn abort_in_a_pods_phase_stops_after_it_and_start_resumes_at_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::typical());
    updater.start("u1", params(), false).await.unwrap();
    let mut status = updater.journal().status();
    let (result, ()) = tokio::join!(updater.run(), async {
        status
            .wait_for(|s| {
                s.as_ref()
                    .is_some_and(|s| s.phase == Phase::PodsTrustBothCas)
            })
            .await
            .unwrap();
        updater.request_abort();
    });
    result.unwrap();
    assert_eq!(
        record(&updater).run,
        RunState::Aborted {
            next: Phase::HostsUpdateCerts
        }
    );
    let messages = drain(&updater);
    assert!(matches!(
        messages.last(),
        Some(AgentMessage::Stopped(s)) if s.next == Phase::HostsUpdateCerts
    ));
    // The pods phase in progress was finished.
    assert!(messages.iter().any(|m| matches!(m,
        AgentMessage::PhaseResult(r) if r.phase == Phase::PodsTrustBothCas && r.outcome == PhaseOutcome::Succeeded)));
    assert_eq!(
        updater.start("u1", params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    let resumed = drain(&updater);
    assert!(matches!(
        resumed.first(),
        Some(AgentMessage::Progress(p)) if p.phase == Phase::HostsUpdateCerts
    ));
    assert_eq!(record(&updater).run, RunState::Completed);
    assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
}

/// Runs `u1` until `phase` is reached, then aborts it: it stops after that phase. The phase must take
/// time (a slow phase, a rollout) for the abort to land in it: a status the run passes through without
/// an await point is never seen.
async fn abort_at(updater: &Updater<Backend>, phase: Phase) {
    updater.start("u1", params(), false).await.unwrap();
    let mut status = updater.journal().status();
    let (result, ()) = tokio::join!(updater.run(), async {
        status
            .wait_for(|s| s.as_ref().is_some_and(|s| s.phase == phase))
            .await
            .unwrap();
        updater.request_abort();
    });
    result.unwrap();
    assert!(matches!(record(updater).run, RunState::Aborted { .. }));
}

/// A pod run by hand during the update, mounting the old CA alone, stops it before update-certs changes
/// any host (that phase re-issues the API server's certificate, which the pod could not verify); a
/// later strategy that says to proceed takes the update over and finishes it, and the completion
/// carries the warning, also when the controller learns of it from the agent's status.
#[tokio::test(start_paused = true)]
async fn a_pod_nothing_restarts_stops_the_update_before_update_certs_until_a_strategy_proceeds() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::typical());
    abort_at(&updater, Phase::PodsTrustBothCas).await;
    let old = record(&updater).old_ca_pem.unwrap();
    sim(&updater)
        .add_bare_pod("default", "debug", &old)
        .unwrap();
    let before = sim(&updater).snapshot().unwrap();
    drain(&updater);

    updater.start("u2", params(), false).await.unwrap();
    updater.run().await.unwrap();
    let RunState::Failed { phase, reason } = record(&updater).run else {
        panic!("must be refused: {:?}", record(&updater).run);
    };
    assert_eq!(phase, Phase::HostsUpdateCerts);
    assert!(
        reason.contains("stop trusting the API server at update-certs")
            && reason.contains("create the strategy with proceed-with-stranded-pods"),
        "{reason}"
    );
    assert!(
        reason.contains("default/debug (a bare pod: no controller recreates it)"),
        "{reason}"
    );
    let after = sim(&updater).snapshot().unwrap();
    assert_eq!(
        before.component_restarts, after.component_restarts,
        "update-certs changed no host"
    );

    let proceed = UpdateParams {
        proceed_with_stranded_pods: true,
        ..params()
    };
    updater.start("u3", proceed, false).await.unwrap();
    updater.run().await.unwrap();
    assert_eq!(record(&updater).run, RunState::Completed);
    let warnings = record(&updater).warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("default/debug"), "{warnings:?}");
    let completed = drain(&updater).into_iter().find_map(|m| match m {
        AgentMessage::PhaseResult(r) if r.phase == Phase::Complete => Some(r),
        _ => None,
    });
    assert_eq!(completed.expect("a completion").warnings, warnings);
    assert_eq!(
        updater
            .journal()
            .status()
            .borrow()
            .as_ref()
            .unwrap()
            .warnings,
        warnings
    );
}

#[tokio::test(start_paused = true)]
async fn a_later_update_takes_over_one_stopped_after_its_hosts_changed_and_finishes_it_with_its_ca()
{
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::typical());
    abort_at(&updater, Phase::PodsTrustBothCas).await;
    drain(&updater);
    let new_ca = record(&updater).new_ca.expect("the new CA is recorded");
    assert_eq!(new_ca.subject, SUBJECT);

    assert_eq!(
        updater.start("u2", other_params(), false).await.unwrap(),
        StartDecision::Run
    );
    let r = record(&updater);
    assert_eq!((r.update_id.as_str(), &r.run), ("u2", &RunState::Running));
    updater.run().await.unwrap();
    let messages = drain(&updater);
    let Some(AgentMessage::Progress(note)) = messages.first() else {
        panic!("the take-over is reported first: {messages:?}");
    };
    assert_eq!(note.update_id, "u2");
    for part in [
        "finishing unfinished update u1 from hosts update-certs",
        SUBJECT,
        "do not apply",
    ] {
        assert!(note.details.contains(part), "{} lacks {part}", note.details);
    }
    assert_eq!(failures(&messages), Vec::<String>::new());
    assert_eq!(record(&updater).run, RunState::Completed);
    // Finished with the CA the first update generated, not the second one's subject.
    assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_later_update_replaces_one_stopped_before_any_host_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::typical();
    config.faults.slow_phase = Some(SlowPhase {
        phase: Phase::NewRootCa,
        delay_ms: 1000,
    });
    let updater = open(dir.path(), &config);
    abort_at(&updater, Phase::NewRootCa).await;
    assert_eq!(
        record(&updater).run,
        RunState::Aborted {
            next: Phase::HostsTrustBothCas
        }
    );
    assert_eq!(
        updater.start("u2", other_params(), false).await.unwrap(),
        StartDecision::Run
    );
    updater.run().await.unwrap();
    assert_eq!(record(&updater).run, RunState::Completed);
    let ca = dc_agent::facts::root_ca(updater.cluster()).await.unwrap();
    assert!(ca.subject.ends_with("CN=OTHER"), "{}", ca.subject);
}

#[tokio::test(start_paused = true)]
async fn a_start_for_another_update_while_one_runs_takes_it_over_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::typical());
    updater.start("u1", params(), false).await.unwrap();
    let mut status = updater.journal().status();
    let (result, decision) = tokio::join!(updater.run(), async {
        status
            .wait_for(|s| {
                s.as_ref()
                    .is_some_and(|s| s.phase == Phase::HostsUpdateCerts)
            })
            .await
            .unwrap();
        updater.start("u2", params(), true).await.unwrap()
    });
    result.unwrap();
    assert_eq!(decision, StartDecision::Running);
    let r = record(&updater);
    assert_eq!((r.update_id.as_str(), &r.run), ("u2", &RunState::Completed));
    assert_eq!(failures(&drain(&updater)), Vec::<String>::new());
    assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
}

/// Runs `u1` on a cluster with `faulty`, expects `phase` to fail with a reason containing `expect`, then
/// restarts the agent with the fault removed and expects the update to complete: resumed by the same
/// update (a controller re-driving its step), and, on a second cluster, by a later strategy's update
/// asking for another subject (finished with u1's CA once a host trusts it, else replaced).
async fn fault_then_resume(faulty: SimConfig, phase: Phase, expect: &[&str]) {
    for (later, later_params) in [("u1", params()), ("u2", other_params())] {
        let dir = tempfile::tempdir().unwrap();
        let updater = open(dir.path(), &faulty);
        updater.start("u1", params(), false).await.unwrap();
        updater.run().await.unwrap();
        let RunState::Failed {
            phase: failed,
            reason,
        } = record(&updater).run
        else {
            panic!("the update must fail: {:?}", record(&updater).run);
        };
        assert_eq!(failed, phase, "{reason}");
        for e in expect {
            assert!(reason.contains(e), "{reason} lacks {e}");
        }
        assert!(
            record(&updater).state().ends_with("-failed"),
            "{}",
            record(&updater).state()
        );
        let touched = record(&updater).hosts_touched();
        drop(updater);
        let mut fixed = faulty.clone();
        fixed.faults = Default::default();
        let updater = open(dir.path(), &fixed);
        assert_eq!(
            updater.start(later, later_params, false).await.unwrap(),
            StartDecision::Run
        );
        updater.run().await.unwrap();
        assert_eq!(record(&updater).run, RunState::Completed, "{later}");
        if later == "u1" || touched {
            assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
        } else {
            let ca = dc_agent::facts::root_ca(updater.cluster()).await.unwrap();
            assert!(ca.subject.ends_with("CN=OTHER"), "{}", ca.subject);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn aborted_after_any_phase_a_later_update_finishes_the_cluster() {
    for phase in Phase::ALL {
        if phase == Phase::Complete {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimConfig::light();
        config.faults.slow_phase = Some(SlowPhase {
            phase,
            delay_ms: 1000,
        });
        let updater = open(dir.path(), &config);
        abort_at(&updater, phase).await;
        let touched = record(&updater).hosts_touched();
        assert_eq!(
            updater.start("u2", other_params(), false).await.unwrap(),
            StartDecision::Run,
            "after {phase}"
        );
        updater.run().await.unwrap();
        assert_eq!(
            failures(&drain(&updater)),
            Vec::<String>::new(),
            "after {phase}"
        );
        assert_eq!(record(&updater).run, RunState::Completed, "after {phase}");
        let state = sim(&updater).snapshot().unwrap();
        if touched {
            assert_updated(sim(&updater), &state);
        } else {
            let ca = dc_agent::facts::root_ca(updater.cluster()).await.unwrap();
            assert!(
                ca.subject.ends_with("CN=OTHER"),
                "after {phase}: {}",
                ca.subject
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn new_pods_that_never_become_ready_fail_the_pods_phase() {
    let mut config = SimConfig::typical();
    config.faults.never_ready = vec!["default/web".into()];
    fault_then_resume(
        config,
        Phase::PodsTrustBothCas,
        &["Deployment default/web", "rollout not complete after 60s"],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_component_restart_fails_the_host_phase() {
    let mut config = SimConfig::typical();
    config.faults.restart_fails = vec!["worker-1".into()];
    fault_then_resume(
        config,
        Phase::HostsTrustBothCas,
        &["restarting Kubelet on worker-1 failed"],
    )
    .await;
}

/// A controller-manager that crash-loops after its restart (a manifest naming a file that is not there,
/// say) fails the phase after the component timeout, naming the host, the component and what its
/// health check last said, instead of a rollout timing out later for a reason that misleads.
#[tokio::test(start_paused = true)]
async fn a_component_that_does_not_come_back_fails_the_host_phase_naming_it() {
    let mut config = SimConfig::typical();
    config.faults.unhealthy = vec!["controller-1/controller-manager".into()];
    fault_then_resume(
        config,
        Phase::HostsTrustBothCas,
        &[
            "controller-1: controller-manager did not come back within 45s after its restart",
            "connection refused",
        ],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_host_is_refused_at_start() {
    let mut config = SimConfig::light();
    config.faults.unreachable = vec!["controller-0".into()];
    fault_then_resume(
        config,
        Phase::Start,
        &["host controller-0 is not reachable"],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_phase_takes_its_extra_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::light();
    config.faults.slow_phase = Some(SlowPhase {
        phase: Phase::NewRootCa,
        delay_ms: 30_000,
    });
    let updater = open(dir.path(), &config);
    updater.start("u1", params(), false).await.unwrap();
    let started = tokio::time::Instant::now();
    updater.run().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(record(&updater).run, RunState::Completed);
}

#[tokio::test(start_paused = true)]
async fn invalid_parameters_are_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::light());
    let before = sim(&updater).snapshot().unwrap();
    let bad = UpdateParams {
        subject: Some("O=WR".into()),
        ..UpdateParams::default()
    };
    updater.start("u1", bad, false).await.unwrap();
    updater.run().await.unwrap();
    let RunState::Failed { phase, reason } = record(&updater).run else {
        panic!("must be refused");
    };
    assert_eq!(phase, Phase::Start);
    assert!(reason.contains("invalid subject"), "{reason}");
    let after = sim(&updater).snapshot().unwrap();
    assert_eq!(before.workloads, after.workloads);
    // Another update may start instead, since the refused one never touched the cluster.
    assert_eq!(
        updater.start("u2", params(), false).await.unwrap(),
        StartDecision::Run
    );
}

#[tokio::test(start_paused = true)]
async fn an_uploaded_cert_file_is_used_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let updater = open(dir.path(), &SimConfig::light());
    let now = dc_certs::now();
    let ca = dc_certs::authority::NewRootCa {
        subject: Some(dc_certs::Subject::parse("CN=uploaded").unwrap()),
        expiry: None,
    }
    .generate(90 * 86400, now)
    .unwrap();
    let file = format!("{}{}", ca.cert_pem(), ca.key_pem());
    updater
        .start(
            "u1",
            UpdateParams {
                cert_file: Some(file),
                ..UpdateParams::default()
            },
            false,
        )
        .await
        .unwrap();
    updater.run().await.unwrap();
    assert_eq!(record(&updater).run, RunState::Completed);
    let messages = drain(&updater);
    assert!(messages.iter().any(|m| matches!(m,
        AgentMessage::PhaseResult(r) if r.state == "update-new-rootca-cert-uploaded")));
    let host = &sim(&updater).snapshot().unwrap().hosts[0].name;
    assert_eq!(
        host_file(sim(&updater), host, HostFile::CaCert),
        ca.cert_pem()
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_root_ca_raises_its_alarm_and_is_still_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::light();
    config.root_ca_expiry_days = -2;
    let updater = open(dir.path(), &config);
    let now = dc_certs::now();
    let current = dc_agent::facts::root_ca(updater.cluster()).await.unwrap();
    assert!(current.not_after < now);
    let alarms = dc_agent::facts::alarms(current.not_after, now, 30);
    assert_eq!(alarms[0].id, dc_protocol::ALARM_ROOT_CA_EXPIRED);
    updater.start("u1", params(), false).await.unwrap();
    updater.run().await.unwrap();
    assert_eq!(record(&updater).run, RunState::Completed);
    let new = dc_agent::facts::root_ca(updater.cluster()).await.unwrap();
    assert_eq!(new.subject, SUBJECT);
    assert!(dc_agent::facts::alarms(new.not_after, now, 30).is_empty());
}
