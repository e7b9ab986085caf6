//! The pods phases (trust-both-cas and trust-new-ca): every workload is restarted the way `kubectl
//! rollout restart` does it, so each pod mounts the trust bundle the controller-manager publishes now,
//! and the phase waits for each rollout. OnDelete workloads have their old pods deleted by the whole
//! selector.
//!
//! Safe to repeat: the restartedAt value is recorded before any patch, patching the same value again
//! changes nothing, and OnDelete pods are deleted only while they still run the old revision.

use dc_protocol::Phase;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, info_span, warn};

use crate::cluster::{Cluster, RESTARTED_AT_ANNOTATION, UpdateStrategy, Workload};
use crate::rollout::{Pending, on_delete_complete, rollout_complete};

use super::context::{Backoff, PhaseContext, PhaseError, percent_of};
use super::new_ca;
use super::plan::{Bundle, pods_bundle};
use super::published;

/// Runs a pods phase: once the phase's bundle is published, restarts every workload.
pub async fn restart_all<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    phase: Phase,
) -> Result<(), PhaseError> {
    let bundle = pods_bundle(phase)
        .ok_or_else(|| PhaseError::Refused(format!("{phase} is not a pods phase")))?;
    restart_with(cx, bundle).await
}

/// Restarts every workload once `bundle` is published, so its pods mount it: a pods phase, or the
/// rollback's pods step (the old CA alone).
pub async fn restart_with<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    bundle: Bundle,
) -> Result<(), PhaseError> {
    let old_pem = cx.record()?.old_ca_pem.unwrap_or_default();
    let new_ca = new_ca::load(cx.journal)?;
    published::wait(cx, &bundle.pem(&old_pem, new_ca.cert_pem())).await?;
    let restarted_at = match cx.record()?.restarted_at {
        Some(value) => value,
        None => {
            let value = restart_stamp();
            cx.journal
                .update(|r| r.restarted_at = Some(value.clone()), |_, _| None)?;
            value
        }
    };
    let deadline = Instant::now() + cx.settings.phase_timeout;
    let workloads = cx
        .cluster
        .list_workloads(&cx.settings.exclude_namespaces)
        .await?;
    let total = workloads.len();
    let mut results = futures::stream::iter(workloads)
        .map(|w| {
            let span = info_span!("workload", workload = %w.id);
            restart_workload(cx, w, &restarted_at, deadline).instrument(span)
        })
        .buffer_unordered(cx.settings.concurrency.max(1));
    let mut done = 0;
    while let Some(result) = results.next().await {
        let outcome = result?;
        done += 1;
        cx.check_trust().await?;
        let percent = percent_of(done, total);
        cx.journal.progress(
            None,
            percent,
            format!("restarted {done} of {total} workloads ({outcome})"),
        )?;
    }
    Ok(())
}

/// Restarts one workload (idempotently) and waits for its rollout. Returns what to report.
async fn restart_workload<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    workload: Workload,
    restarted_at: &str,
    deadline: Instant,
) -> Result<String, PhaseError> {
    let id = workload.id.clone();
    if workload.paused {
        // `kubectl rollout restart` refuses paused Deployments too; resuming one is the
        // operator's decision, so it is skipped and reported.
        warn!(workload = %id, "paused: skipped; its pods keep the trust bundle they mounted");
        return Ok(format!(
            "{id} skipped: its rollout is paused (resume it and restart it by hand)"
        ));
    }
    if workload
        .template_annotations
        .get(RESTARTED_AT_ANNOTATION)
        .map(String::as_str)
        != Some(restarted_at)
    {
        cx.cluster
            .patch_template_annotation(&id, RESTARTED_AT_ANNOTATION, restarted_at)
            .await?;
    }
    let on_delete = workload.strategy == UpdateStrategy::OnDelete;
    let mut deleted = false;
    let mut backoff = Backoff::new(cx.settings.poll);
    loop {
        let current = cx.cluster.get_workload(&id).await?;
        let verdict = if on_delete {
            // The whole selector, not just the `app` label, so no other workload's pod is touched.
            let pods = cx
                .cluster
                .list_pods(&id.namespace, &current.selector)
                .await?;
            // Once the controller has observed the new template, delete every pod of another
            // revision (once; a resumed phase deletes only what still runs the old template).
            if let Some(update_revision) = current
                .status
                .update_revision
                .as_deref()
                .filter(|_| current.status.observed_generation >= current.status.generation)
                .filter(|_| !deleted)
            {
                for pod in pods.iter().filter(|p| p.revision != update_revision) {
                    cx.cluster.delete_pod(&pod.namespace, &pod.name).await?;
                }
                deleted = true;
                continue;
            }
            on_delete_complete(&current.status, &pods)
        } else {
            rollout_complete(&current.status)
        };
        let waiting = match verdict {
            Ok(()) => return Ok(format!("{id} rolled out")),
            Err(Pending::Failed(reason)) => {
                return Err(PhaseError::RolloutFailed {
                    workload: id.to_string(),
                    reason,
                });
            }
            Err(Pending::Waiting(waiting)) => waiting,
        };
        if Instant::now() >= deadline {
            return Err(PhaseError::RolloutTimeout {
                workload: id.to_string(),
                timeout: cx.settings.phase_timeout,
                waiting,
            });
        }
        backoff.sleep(deadline).await;
    }
}

/// The current time in RFC 3339, as `kubectl rollout restart` writes it, with sub-second precision so
/// two pods phases never pick the same value (which would restart nothing the second time).
fn restart_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp_nanos().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimConfig, SimState};
    use crate::update::hosts;
    use crate::update::tests::Fixture;

    /// The fixture after hosts-trust-both-cas, where pods-trust-both-cas starts from.
    async fn hosts_trust_both_cas(change: impl FnOnce(&mut SimConfig)) -> Fixture {
        let f = Fixture::with(change).await;
        hosts::run(&f.context(), Phase::HostsTrustBothCas)
            .await
            .unwrap();
        f
    }

    fn restarts(state: &SimState) -> Vec<(String, u32, u32)> {
        state
            .workloads
            .iter()
            .map(|w| (w.spec.key(), w.restarts, w.pods_deleted))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_pods_phase_restarts_and_deletes_nothing_twice() {
        let f = hosts_trust_both_cas(|_| {}).await;
        restart_all(&f.context(), Phase::PodsTrustBothCas)
            .await
            .unwrap();
        let once = restarts(&f.sim.snapshot().unwrap());
        for (workload, restarted, _) in &once {
            assert_eq!(*restarted, 1, "{workload}");
        }
        let pg = once.iter().find(|(w, _, _)| w == "db/pg-replica").unwrap();
        assert_eq!(pg.2, 2, "each OnDelete pod deleted once");
        // A resumed phase (the agent killed after its last rollout) changes nothing.
        restart_all(&f.context(), Phase::PodsTrustBothCas)
            .await
            .unwrap();
        assert_eq!(restarts(&f.sim.snapshot().unwrap()), once);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollout_that_never_completes_fails_the_phase_at_its_deadline() {
        let f = hosts_trust_both_cas(|c| c.faults.never_ready = vec!["default/web".into()]).await;
        let err = restart_all(&f.context(), Phase::PodsTrustBothCas)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Deployment default/web"), "{err}");
        assert!(err.contains("rollout not complete after 60s"), "{err}");
    }

    /// The controller-manager restarted by the host phase publishes the new bundle only 20 s later:
    /// the pods phase waits for it, so every pod it creates mounts both CAs, never the old one alone.
    #[tokio::test(start_paused = true)]
    async fn pods_restart_only_once_the_phase_bundle_is_published() {
        let f = hosts_trust_both_cas(|c| c.publish_delay_ms = 20_000).await;
        let started = tokio::time::Instant::now();
        restart_all(&f.context(), Phase::PodsTrustBothCas)
            .await
            .unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_secs(19));
        let old = f.journal.record().unwrap().old_ca_pem.unwrap();
        let new = new_ca::load(&f.journal).unwrap();
        let both = format!("{old}{}", new.cert_pem());
        for w in f.sim.snapshot().unwrap().workloads {
            assert_eq!(w.restarts, 1, "{}", w.spec.key());
            for pod in w.pods {
                assert_eq!(pod.trust_bundle, both, "{} {}", w.spec.key(), pod.name);
            }
        }
    }

    /// A controller-manager that never publishes fails the phase before any workload restarts.
    #[tokio::test(start_paused = true)]
    async fn a_bundle_never_published_fails_the_phase_before_any_restart() {
        let f = hosts_trust_both_cas(|c| c.publish_delay_ms = 3_600_000).await;
        let e = restart_all(&f.context(), Phase::PodsTrustBothCas)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("did not publish the trust bundle within 30s"),
            "{e}"
        );
        assert!(e.contains("ConfigMap db/kube-root-ca.crt"), "{e}");
        for w in f.sim.snapshot().unwrap().workloads {
            assert_eq!(w.restarts, 0, "{}", w.spec.key());
        }
    }

    #[test]
    fn the_restart_stamp_is_rfc3339_with_sub_second_precision() {
        let stamp = restart_stamp();
        let parsed =
            time::OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(stamp.contains('.'), "{stamp}");
        assert_eq!(parsed.offset(), time::UtcOffset::UTC);
    }
}
