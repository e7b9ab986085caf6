//! A host the agent was writing when it stopped is checked before its phase resumes there: a file
//! whose content no longer decodes (a transfer cut short by an older agent, a disk that lost a write)
//! is put back from the backup kept before the update first replaced it, and the phase's actions,
//! which only ever bring files forward, write it anew. Without this, the phase would re-issue from a
//! file that does not parse and fail on every retry.

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tracing::warn;

use crate::cluster::{Cluster, Host, HostFile, KubeconfigFile};
use crate::kubeconfig::Kubeconfig;

use super::context::{PhaseContext, PhaseError};

/// The files a host phase may have been writing on a host of this role: the CA files, the leaves it
/// re-issues, the kubeconfigs whose trust or credentials it sets, and the kubelet's client file.
fn files_written(host: &Host) -> Vec<HostFile> {
    let mut files = vec![
        HostFile::CaCert,
        HostFile::CaKey,
        HostFile::CaNewCert,
        HostFile::CaNewKey,
        HostFile::ApiserverCert,
        HostFile::ApiserverKey,
        HostFile::ApiserverKubeletClientCert,
        HostFile::ApiserverKubeletClientKey,
        HostFile::KubeletClientCurrent,
    ];
    files.extend(
        KubeconfigFile::of_role(host.role)
            .iter()
            .map(|&f| HostFile::Kubeconfig(f)),
    );
    files
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
        | HostFile::ApiserverCert
        | HostFile::ApiserverKubeletClientCert
        | HostFile::FrontProxyCaCert => certificates(),
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
/// stopped. A damaged file without a whole backup fails the phase, naming the file and the way out.
pub async fn damaged_files<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    host: &Host,
) -> Result<(), PhaseError> {
    for file in files_written(host) {
        let Some(text) = cx.cluster.read_file(&host.name, file).await? else {
            continue;
        };
        if intact(file, &text) {
            continue;
        }
        match cx.cluster.read_backup(&host.name, file).await? {
            Some(original) if intact(file, &original) => {
                warn!(host = %host.name, file = file.path(), "damaged file put back from its backup");
                cx.cluster.write_file(&host.name, file, &original).await?;
            }
            _ => {
                return Err(PhaseError::Certificate {
                    host: host.name.clone(),
                    file: file.path(),
                    reason: "damaged (it does not decode) and no whole backup of it exists; \
                             restore it from the host's own backups, then retry the strategy"
                        .to_owned(),
                });
            }
        }
    }
    Ok(())
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
