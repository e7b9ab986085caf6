//! A host the agent was writing when it stopped is checked before its phase resumes there: a file
//! whose content no longer decodes (a transfer cut short by an older agent, a disk that lost a write)
//! is put back from the backup kept before the update first replaced it (a certificate with its key),
//! and the phase's actions, which only ever bring files forward, write it anew; after update-certs the
//! host's leaves are issued again too, since what was put back predates them. Without this, the phase
//! would re-issue from a file that does not parse and fail on every retry.

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tracing::warn;

use crate::cluster::{Cluster, Host, HostFile, KubeconfigFile};
use crate::kubeconfig::Kubeconfig;

use super::context::{PhaseContext, PhaseError};
use super::plan::{HostAction, HostPlan};

/// The files this phase reads back before it rewrites them on `host`, grouped so that a certificate
/// and its key are put back together (a restored certificate with a newer key would not match). Files
/// the phase writes whatever they hold (the CA files, the bundle) need no repair.
fn files_read(plan: &HostPlan, host: &Host) -> Vec<Vec<HostFile>> {
    let kubeconfigs = || {
        KubeconfigFile::of_role(host.role)
            .iter()
            .map(|&f| vec![HostFile::Kubeconfig(f)])
    };
    let mut groups: Vec<Vec<HostFile>> = Vec::new();
    for action in plan.actions(host.role) {
        match action {
            HostAction::ReissueApiserverCerts(_) => groups.extend([
                vec![HostFile::ApiserverCert, HostFile::ApiserverKey],
                vec![
                    HostFile::ApiserverKubeletClientCert,
                    HostFile::ApiserverKubeletClientKey,
                ],
            ]),
            HostAction::ReissueKubeconfigClients(_) => {
                groups.extend(kubeconfigs());
                groups.push(vec![HostFile::KubeletClientCurrent]);
            }
            HostAction::WriteBundle(_) => groups.extend(kubeconfigs()),
            _ => {}
        }
    }
    groups.dedup();
    groups
}

/// Whether `text` is whole for what `file` holds: every certificate decodes, the key decodes, the
/// kubeconfig parses. Manifests are edited in place as text and are not judged here.
pub fn intact(file: HostFile, text: &str) -> bool {
    let certificates = || {
        dc_certs::pem_certificates(text).is_ok_and(|ders| {
            !ders.is_empty()
                && ders
                    .iter()
                    .all(|der| dc_certs::inspect::CertSummary::from_der(der).is_ok())
        })
    };
    let key = || PrivateKeyDer::from_pem_slice(text.as_bytes()).is_ok();
    match file {
        HostFile::CaCert
        | HostFile::CaNewCert
        | HostFile::CaOldCert
        | HostFile::ApiserverCert
        | HostFile::ApiserverKubeletClientCert
        | HostFile::FrontProxyCaCert
        | HostFile::FrontProxyClientCert
        | HostFile::EtcdCaCert
        | HostFile::EtcdServerCert
        | HostFile::EtcdPeerCert
        | HostFile::ApiserverEtcdClientCert => certificates(),
        HostFile::CaKey
        | HostFile::CaNewKey
        | HostFile::ApiserverKey
        | HostFile::ApiserverKubeletClientKey => key(),
        HostFile::KubeletClientCurrent => certificates() && key(),
        HostFile::Kubeconfig(_) => Kubeconfig::parse(text).is_ok(),
        HostFile::ControllerManagerManifest => true,
    }
}

/// Puts back from their backups the damaged files of `host`, the host the phase was in when the agent
/// stopped; a certificate and its key go back together. A damaged file without a whole backup fails
/// the phase, naming the file and the way out. Returns whether anything was put back.
pub async fn damaged_files<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    plan: &HostPlan,
    host: &Host,
) -> Result<bool, PhaseError> {
    let mut restored = false;
    for group in files_read(plan, host) {
        let mut damaged = false;
        for &file in &group {
            if let Some(text) = cx.cluster.read_file(&host.name, file).await? {
                damaged |= !intact(file, &text);
            }
        }
        if !damaged {
            continue;
        }
        let mut originals = Vec::new();
        for &file in &group {
            match cx.cluster.read_backup(&host.name, file).await? {
                Some(original) if intact(file, &original) => originals.push((file, original)),
                _ => {
                    return Err(PhaseError::Certificate {
                        host: host.name.clone(),
                        file: file.path(),
                        reason: "damaged (it, or the certificate or key that goes with it, does not \
                                 decode) and no whole backup of it exists; restore it from the host's \
                                 own backups, then retry the strategy"
                            .to_owned(),
                    });
                }
            }
        }
        for (file, original) in originals {
            warn!(host = %host.name, file = file.path(), "damaged file put back from its backup");
            cx.cluster.write_file(&host.name, file, &original).await?;
            restored = true;
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_certificate_key_or_kubeconfig_is_damaged_and_a_whole_one_is_not() {
        let ca = dc_certs::authority::NewRootCa::default()
            .generate(86_400, dc_certs::now())
            .unwrap();
        let cert = ca.cert_pem().to_owned();
        let key = ca.key_pem();
        let half = |s: &str| s[..s.len() / 2].to_owned();
        assert!(intact(HostFile::ApiserverCert, &cert));
        assert!(!intact(HostFile::ApiserverCert, &half(&cert)));
        assert!(!intact(HostFile::ApiserverCert, ""));
        assert!(intact(HostFile::ApiserverKey, &key));
        assert!(!intact(HostFile::ApiserverKey, &half(&key)));
        let both = format!("{cert}{key}");
        assert!(intact(HostFile::KubeletClientCurrent, &both));
        assert!(!intact(HostFile::KubeletClientCurrent, &cert));
        let kubeconfig = crate::kubeconfig::render("https://h:6443", "admin", &cert, &cert, &key);
        let admin = HostFile::Kubeconfig(KubeconfigFile::Admin);
        assert!(intact(admin, &kubeconfig));
        assert!(!intact(admin, &half(&kubeconfig)));
    }
}
