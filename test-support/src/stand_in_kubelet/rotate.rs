//! What client-go's certificate manager does when the kubelet's client certificate nears its end:
//! a new key, a CertificateSigningRequest for `system:node:<name>` in `system:nodes` (approved by
//! the controller-manager because kubeadm binds `system:nodes` to the selfnodeclient role, signed
//! with `--cluster-signing-cert-file`), and the result written the way its file store writes it: a
//! new dated `kubelet-client-<time>.pem` and the `kubelet-client-current.pem` symlink swapped
//! atomically. A `-current` that is not a symlink is refused with client-go's own words.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use super::{Credentials, KubeletError, api, io};

/// The signer a kubelet's client certificate request names.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Renews the client certificate `kubeconfig` names for node `node`; returns the new certificate's
/// PEM. Waits at most `timeout` for the request to be approved and signed.
pub async fn rotate(
    kubeconfig: &Path,
    node: &str,
    timeout: Duration,
) -> Result<String, KubeletError> {
    let mut credentials = Credentials::new(kubeconfig);
    let current = credentials.client_certificate()?;
    let meta = std::fs::symlink_metadata(&current).map_err(io(&current))?;
    if !meta.file_type().is_symlink() {
        return Err(KubeletError::NotASymlink(current));
    }
    let client = credentials.client().await?;
    let key = dc_certs::KeyAlgorithm::EcdsaP256
        .generate()
        .map_err(|e| KubeletError::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| KubeletError::Certificate(e.to_string()))?;
    let request = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".to_owned()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: KUBELET_CLIENT_SIGNER.to_owned(),
            usages: Some(
                ["digital signature", "key encipherment", "client auth"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let csrs = Api::<CertificateSigningRequest>::all(client);
    let created = csrs
        .create(&PostParams::default(), &request)
        .await
        .map_err(api("create certificate signing request"))?;
    let name = created.metadata.name.unwrap_or_default();
    let cert_pem = issued(&csrs, &name, timeout).await?;
    let dir = current
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dated = dated_client_file(&dir, dc_certs::now())?;
    let pair = format!("{cert_pem}{}", key.serialize_pem());
    dc_certs::files::write_atomic(&dated, pair.as_bytes(), 0o600).map_err(io(&dated))?;
    let updated = dir.join("kubelet-client-updated.pem");
    let _ = std::fs::remove_file(&updated);
    std::os::unix::fs::symlink(&dated, &updated).map_err(io(&updated))?;
    std::fs::rename(&updated, &current).map_err(io(&current))?;
    Ok(cert_pem)
}

/// `<dir>/kubelet-client-YYYY-MM-DD-HH-MM-SS.pem`: the name client-go's file store gives the
/// certificate it wrote at `at` (UTC here).
pub fn dated_client_file(dir: &Path, at: dc_certs::UnixTime) -> Result<PathBuf, KubeletError> {
    let stamp = time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]-[hour]-[minute]-[second]"
            ))
            .ok()
        })
        .ok_or_else(|| KubeletError::Certificate(format!("time {at} cannot be formatted")))?;
    Ok(dir.join(format!("kubelet-client-{stamp}.pem")))
}

/// Waits until the request is approved and its certificate issued; a denial or failure ends it.
async fn issued(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
    timeout: Duration,
) -> Result<String, KubeletError> {
    let deadline = Instant::now() + timeout;
    loop {
        let csr = csrs
            .get(name)
            .await
            .map_err(api(format!("certificate signing request {name}")))?;
        let status = csr.status.unwrap_or_default();
        if let Some(refused) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Denied" || c.type_ == "Failed")
        {
            return Err(KubeletError::Csr {
                name: name.to_owned(),
                reason: format!(
                    "{}: {}",
                    refused.type_,
                    refused.message.clone().unwrap_or_default()
                ),
            });
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(String::from_utf8_lossy(&cert.0).into_owned());
        }
        if Instant::now() > deadline {
            let conditions: Vec<String> = status
                .conditions
                .iter()
                .flatten()
                .map(|c| c.type_.clone())
                .collect();
            return Err(KubeletError::Csr {
                name: name.to_owned(),
                reason: format!("not issued within {timeout:?} (conditions: {conditions:?})"),
            });
        }
        // The approver and the signer are other processes: nothing to await but the object.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the agent left before issue 13's first fix: `-current` a regular file. client-go refuses
    /// before asking the API server anything, and so does the stand-in.
    #[tokio::test]
    async fn a_current_certificate_that_is_a_regular_file_is_refused_as_client_go_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("kubelet-client-current.pem");
        std::fs::write(&current, "not a symlink").unwrap();
        let kubeconfig = dir.path().join("kubelet.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:1\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n    client-certificate: {0}\n    client-key: {0}\n",
                current.display()
            ),
        )
        .unwrap();
        let e = rotate(&kubeconfig, "worker-0", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("expected {current:?} to be a symlink but it is a file")
        );
    }
}
