//! The start phase: checks everything before anything changes (the operator's parameters, every host
//! reachable, the health gate, every workload healthy, no pod left on the old CA unless the strategy allows it, the
//! trust invariants) and records the current root CA, from which
//! the host phases build their trust bundles.

use dc_protocol::{Phase, UpdateParams};

use crate::cluster::{Cluster, Host, HostFile, HostRole};
use crate::kubeconfig::discovery_ca;
use crate::rollout::healthy;

use super::apply_type;
use super::context::{PhaseContext, PhaseError};
use super::health;
use super::new_ca::new_ca_spec;
use super::plan::{HostAction, HostPlan};
use super::stranded;

/// Runs the start phase.
pub async fn precheck<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let record = cx.record()?;
    check_params(&record.params)?;
    let hosts = cx.sorted_hosts().await?;
    if let Some(why) = apply_type::refusal(record.params.options, &hosts) {
        return Err(PhaseError::Refused(why));
    }
    for host in &hosts {
        cx.cluster.check_host(&host.name).await.map_err(|e| {
            PhaseError::Refused(format!("host {} is not reachable: {e}", host.name))
        })?;
    }
    preflight(cx, &hosts).await?;
    health::gate(cx, &hosts).await?;
    for workload in cx
        .cluster
        .list_workloads(&cx.settings.exclude_namespaces)
        .await?
    {
        healthy(&workload).map_err(|why| {
            PhaseError::Refused(format!("workload {} is not healthy: {why}", workload.id))
        })?;
    }
    stranded::check(cx).await?;
    cx.check_trust().await?;
    forget_earlier_backups(cx, &hosts).await?;
    if record.old_ca_pem.is_none() {
        let first = first_controller(&hosts)?;
        let bundle = cx.read(&first.name, HostFile::CaCert).await?;
        let old = first_certificate(&bundle).ok_or_else(|| PhaseError::Certificate {
            host: first.name.clone(),
            file: HostFile::CaCert.path(),
            reason: "no certificate".into(),
        })?;
        cx.journal
            .update(|r| r.old_ca_pem = Some(old), |_, _| None)?;
    }
    Ok(())
}

/// Drops the backups an earlier update kept (a backend keeps one per file and never overwrites it), so
/// the first write of this update keeps each file as this update found it: a rollback of this update
/// puts back what it replaced, never an older copy (a manifest from before a kubeadm upgrade, say).
/// Nothing changed on any host yet, and repeating it is harmless.
async fn forget_earlier_backups<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    hosts: &[Host],
) -> Result<(), PhaseError> {
    for host in hosts {
        for file in HostFile::replaced(host.role) {
            cx.cluster.remove_backup(&host.name, file).await?;
        }
    }
    Ok(())
}

/// Tries once what the host and pods phases will depend on, so a wrong health command, a damaged
/// `cluster-info` or a missing permission is found before anything changes rather than after every host
/// did (and again at every resume).
async fn preflight<C: Cluster>(cx: &PhaseContext<'_, C>, hosts: &[Host]) -> Result<(), PhaseError> {
    let plan = HostPlan::of(Phase::HostsTrustBothCas)
        .ok_or_else(|| PhaseError::Refused("no plan for hosts trust-both-cas".into()))?;
    for host in hosts {
        for action in plan.actions(host.role) {
            let HostAction::Restart(component) = action else {
                continue;
            };
            cx.cluster
                .check_component(&host.name, component)
                .await
                .map_err(|e| {
                    PhaseError::Refused(format!(
                        "{}: the {component} health check fails before anything changed (fix the component or its [cluster.health] command): {e}",
                        host.name
                    ))
                })?;
        }
    }
    if let Some(kubeconfig) = cx.cluster.cluster_info().await? {
        discovery_ca(&kubeconfig).map_err(|e| {
            PhaseError::Refused(format!("kube-public/cluster-info cannot be updated: {e}"))
        })?;
    }
    cx.cluster.published_bundles().await?;
    Ok(())
}

/// Validates the operator's parameters before anything changes.
pub fn check_params(params: &UpdateParams) -> Result<(), PhaseError> {
    match &params.cert_file {
        Some(file) => {
            if params.subject.is_some() || params.expiry_date.is_some() {
                return Err(PhaseError::Refused(
                    "a cert-file excludes subject and expiry-date".into(),
                ));
            }
            dc_certs::upload::validate(file, dc_certs::now())
                .map(|_| ())
                .map_err(|e| PhaseError::Refused(format!("invalid cert-file: {e}")))
        }
        None => new_ca_spec(params).map(|_| ()),
    }
}

fn first_controller(hosts: &[Host]) -> Result<&Host, PhaseError> {
    hosts
        .iter()
        .find(|h| h.role == HostRole::Controller)
        .ok_or_else(|| PhaseError::Refused("the cluster has no controller host".into()))
}

/// The first certificate of a PEM bundle (the current root CA: the bundle holds it alone outside an
/// update).
fn first_certificate(bundle: &str) -> Option<String> {
    let ders = dc_certs::pem_certificates(bundle).ok()?;
    ders.first()
        .map(|d| dc_certs::certificates_pem([d.as_slice()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(
        subject: Option<&str>,
        expiry: Option<&str>,
        cert_file: Option<&str>,
    ) -> UpdateParams {
        UpdateParams {
            subject: subject.map(str::to_owned),
            expiry_date: expiry.map(str::to_owned),
            cert_file: cert_file.map(str::to_owned),
            ..UpdateParams::default()
        }
    }

    #[test]
    fn parameters_are_checked_before_anything_changes() {
        assert!(check_params(&params(Some("CN=new"), Some("2031-06-30"), None)).is_ok());
        assert!(check_params(&params(None, None, None)).is_ok(), "defaults");
        let refused = |p: UpdateParams| check_params(&p).unwrap_err().to_string();
        assert!(refused(params(Some("O=WR"), None, None)).contains("invalid subject"));
        assert!(refused(params(None, Some("2020-01-01"), None)).contains("invalid expiry-date"));
        assert!(
            refused(params(Some("CN=new"), None, Some("pem")))
                .contains("a cert-file excludes subject and expiry-date")
        );
        assert!(refused(params(None, None, Some("not a pem"))).contains("invalid cert-file"));
    }

    #[test]
    fn the_current_root_ca_is_the_first_certificate_of_the_bundle() {
        let now = dc_certs::now();
        let generate = |cn: &str| {
            dc_certs::authority::NewRootCa {
                subject: Some(dc_certs::Subject::parse(&format!("CN={cn}")).unwrap()),
                expiry: None,
            }
            .generate(90 * 86400, now)
            .unwrap()
        };
        let (old, new) = (generate("old"), generate("new"));
        let bundle = format!("{}{}", old.cert_pem(), new.cert_pem());
        let ders = |pem: &str| dc_certs::pem_certificates(pem).unwrap();
        assert_eq!(
            ders(&first_certificate(&bundle).unwrap()),
            ders(old.cert_pem())
        );
        assert_eq!(first_certificate("no certificate here"), None);
        let worker = Host {
            name: "worker-0".into(),
            role: HostRole::Worker,
        };
        assert!(first_controller(&[worker]).is_err());
    }
}
