//! The health gate at start under `alarm-restriction-type`: each kind of finding injected into the
//! simulated cluster refuses a strict start before anything changes, and is reported by a relaxed one
//! with every phase result while the update goes on; the strict refusal's way on (the finding
//! repaired) finishes the update.

mod common;

use common::*;
use dc_agent::sim::WorkloadSpec;
use dc_protocol::{AlarmRestrictionType, PhaseResult, SubcloudOptions};

fn with(alarm_restriction_type: AlarmRestrictionType) -> UpdateParams {
    UpdateParams {
        options: SubcloudOptions {
            alarm_restriction_type,
            ..SubcloudOptions::default()
        },
        ..params()
    }
}

/// Each kind of finding, as a fault of the typical cluster (with a system DaemonSet that can
/// crash-loop), and the line that reports it.
fn faults() -> Vec<(&'static str, SimConfig, &'static str)> {
    let base = || {
        let mut config = SimConfig::typical();
        config.workloads.push(WorkloadSpec::new(
            WorkloadKind::DaemonSet,
            "kube-system",
            "calico-node",
            1,
            UpdateStrategy::OnDelete,
        ));
        config
    };
    let mut not_ready = base();
    not_ready.faults.not_ready = vec!["worker-1".into()];
    let mut cordoned = base();
    cordoned.faults.cordoned = vec!["worker-0".into()];
    let mut crash_looping = base();
    crash_looping.faults.crash_looping = vec!["kube-system/calico-node".into()];
    let mut expiring = base();
    expiring.faults.expiring = vec!["controller-1/pki/front-proxy-ca.crt".into()];
    vec![
        ("not ready", not_ready, "node worker-1 is not Ready"),
        ("cordoned", cordoned, "node worker-0 is cordoned"),
        (
            "crash-looping",
            crash_looping,
            "pod kube-system/calico-node-controller-0 is in CrashLoopBackOff",
        ),
        (
            "expiring",
            expiring,
            "controller-1: pki/front-proxy-ca.crt expires in 7 day(s) (the update does not replace it)",
        ),
    ]
}

fn results(messages: &[AgentMessage]) -> Vec<&PhaseResult> {
    messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::PhaseResult(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn strict_refuses_each_finding_before_anything_changes_and_the_repaired_cluster_finishes() {
    for (kind, faulty, line) in faults() {
        let dir = tempfile::tempdir().unwrap();
        let updater = open(dir.path(), &faulty);
        updater
            .start("u1", with(AlarmRestrictionType::Strict), false)
            .await
            .unwrap();
        updater.run().await.unwrap();
        let RunState::Failed { phase, reason } = record(&updater).run else {
            panic!("{kind}: strict must refuse: {:?}", record(&updater).run);
        };
        assert_eq!(phase, Phase::Start, "{kind}");
        assert!(
            reason.starts_with("start: health gate (alarm-restriction-type strict): ")
                && reason.contains(line)
                && reason.contains("set alarm-restriction-type relaxed"),
            "{kind}: {reason}"
        );
        assert!(!record(&updater).hosts_touched(), "{kind}: nothing changed");
        drop(updater);
        // The way on: the finding repaired, the same update starts again and finishes.
        let mut repaired = faulty.clone();
        repaired.faults = Default::default();
        let updater = open(dir.path(), &repaired);
        if kind == "expiring" {
            // What `kubeadm certs renew` does for the operator: a certificate with years left.
            let renewed = dc_certs::CertifiedCa::generate(
                dc_certs::Subject::parse("CN=front-proxy-ca")
                    .unwrap()
                    .distinguished_name(),
                dc_certs::now() - 60,
                dc_certs::now() + 3650 * 86400,
                dc_certs::KeyAlgorithm::EcdsaP256,
            )
            .unwrap();
            std::fs::write(
                sim(&updater)
                    .host_dir("controller-1")
                    .join("pki/front-proxy-ca.crt"),
                renewed.cert_pem(),
            )
            .unwrap();
        }
        updater
            .start("u1", with(AlarmRestrictionType::Strict), false)
            .await
            .unwrap();
        updater.run().await.unwrap();
        assert_eq!(record(&updater).run, RunState::Completed, "{kind}");
        assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
    }
}

#[tokio::test(start_paused = true)]
async fn relaxed_reports_each_finding_with_every_phase_result_and_the_update_finishes() {
    for (kind, faulty, line) in faults() {
        let dir = tempfile::tempdir().unwrap();
        let updater = open(dir.path(), &faulty);
        updater
            .start("u1", with(AlarmRestrictionType::Relaxed), false)
            .await
            .unwrap();
        updater.run().await.unwrap();
        let messages = drain(&updater);
        assert_eq!(failures(&messages), Vec::<String>::new(), "{kind}");
        assert_eq!(record(&updater).run, RunState::Completed, "{kind}");
        let expected = format!("health gate (relaxed): {line}");
        let all = results(&messages);
        assert_eq!(all.len(), Phase::ALL.len(), "{kind}");
        for result in all {
            assert!(
                result.warnings.contains(&expected)
                    && result
                        .warnings
                        .iter()
                        .all(|w| w.starts_with("health gate (relaxed): ")),
                "{kind}: {:?}: {:?}",
                result.phase,
                result.warnings
            );
        }
        assert_updated(sim(&updater), &sim(&updater).snapshot().unwrap());
    }
}
