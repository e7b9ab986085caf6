//! The kubeadm PKI of a simulated cluster, created once at first start from a generated "current" root
//! CA: real certificate files on disk, laid out as on a real host.

use std::net::IpAddr;

use dc_certs::leaf::{IssuedLeaf, LeafSpec};
use dc_certs::{CertifiedCa, KeyAlgorithm, UnixTime};

use crate::cluster::{Host, HostFile, HostRole, KubeconfigFile};

use super::error::SimError;

/// The client identity kubeadm gives each kubeconfig's user (CN and organisations).
pub fn client_identity(file: KubeconfigFile, host: &str) -> (String, Vec<&'static str>) {
    match file {
        KubeconfigFile::Admin => (
            "kubernetes-admin".to_owned(),
            vec!["kubeadm:cluster-admins"],
        ),
        KubeconfigFile::SuperAdmin => ("kubernetes-super-admin".to_owned(), vec!["system:masters"]),
        KubeconfigFile::ControllerManager => ("system:kube-controller-manager".to_owned(), vec![]),
        KubeconfigFile::Scheduler => ("system:kube-scheduler".to_owned(), vec![]),
        KubeconfigFile::Kubelet => (format!("system:node:{host}"), vec!["system:nodes"]),
    }
}

/// The controller-manager manifest with its cluster-signing flags pointing at `cert`/`key`.
pub fn controller_manager_manifest(cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - kube-controller-manager\n    - --cluster-signing-cert-file={cert}\n    - --cluster-signing-key-file={key}\n    - --root-ca-file=/etc/kubernetes/pki/ca.crt\n    image: registry.k8s.io/kube-controller-manager\n    name: kube-controller-manager\n"
    )
}

fn err(e: impl std::fmt::Display) -> SimError {
    SimError::Certificate(e.to_string())
}

fn issue(spec: &LeafSpec, ca: &CertifiedCa, now: UnixTime) -> Result<IssuedLeaf, SimError> {
    // P-256 for the simulated "current" generation: cheap to create for thousands of simulated
    // subclouds; the update re-issues every leaf as P-384.
    spec.issue(
        ca,
        now + dc_certs::leaf::MAX_LEAF_VALIDITY_SECS,
        now,
        KeyAlgorithm::EcdsaP256,
    )
    .map_err(err)
}

/// The files of one host, as `(file, contents)`; the front-proxy CA key is returned separately since it
/// has no [`HostFile`] (the update never touches it).
pub fn host_files(
    host: &Host,
    index: usize,
    ca: &CertifiedCa,
    front_proxy: &CertifiedCa,
    now: UnixTime,
) -> Result<Vec<(HostFile, String)>, SimError> {
    let mut files = vec![(HostFile::CaCert, ca.cert_pem().to_owned())];
    let server = format!("https://192.168.206.{}:6443", index + 2);
    if host.role == HostRole::Controller {
        files.push((HostFile::CaKey, ca.key_pem()));
        let ips: Vec<IpAddr> = vec![
            IpAddr::from([10, 96, 0, 1]),
            IpAddr::from([192, 168, 206, u8::try_from(index + 2).unwrap_or(255)]),
        ];
        let apiserver = issue(
            &LeafSpec::server(
                "kube-apiserver",
                &[
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    &host.name,
                ],
                &ips,
            ),
            ca,
            now,
        )?;
        files.push((HostFile::ApiserverCert, apiserver.cert_pem));
        files.push((HostFile::ApiserverKey, apiserver.key_pem));
        let kubelet_client = issue(
            &LeafSpec::client("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"]),
            ca,
            now,
        )?;
        files.push((
            HostFile::ApiserverKubeletClientCert,
            kubelet_client.cert_pem,
        ));
        files.push((HostFile::ApiserverKubeletClientKey, kubelet_client.key_pem));
        files.push((
            HostFile::FrontProxyCaCert,
            front_proxy.cert_pem().to_owned(),
        ));
        files.push((
            HostFile::ControllerManagerManifest,
            controller_manager_manifest("/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key"),
        ));
    }
    // kubeadm writes super-admin.conf on the first control-plane host only.
    let kubeconfigs = KubeconfigFile::of_role(host.role)
        .iter()
        .filter(|f| !f.optional() || index == 0);
    for &file in kubeconfigs {
        let (cn, orgs) = client_identity(file, &host.name);
        let leaf = issue(&LeafSpec::client(&cn, &orgs), ca, now)?;
        let text =
            crate::kubeconfig::render(&server, &cn, ca.cert_pem(), &leaf.cert_pem, &leaf.key_pem);
        files.push((HostFile::Kubeconfig(file), text));
    }
    Ok(files)
}

/// A certificate named after `path` that ends a week and half a day after `now` (the `expiring`
/// fault: seven whole days left whenever it is looked at that day).
pub fn expiring_soon(path: &str, now: UnixTime) -> Result<String, SimError> {
    let dn = dc_certs::Subject::parse(&format!("CN={path}"))
        .map(|s| s.distinguished_name())
        .map_err(err)?;
    let cert = CertifiedCa::generate(
        dn,
        now - 86400,
        now + 7 * 86400 + 43200,
        KeyAlgorithm::EcdsaP256,
    )
    .map_err(err)?;
    Ok(cert.cert_pem().to_owned())
}

/// Generates the current root CA (expiring `expiry_days` from now, possibly in the past) and the
/// front-proxy CA.
pub fn current_cas(
    expiry_days: i64,
    now: UnixTime,
) -> Result<(CertifiedCa, CertifiedCa), SimError> {
    let not_after = now + expiry_days * 86400;
    let not_before = not_after.min(now) - 10 * 365 * 86400;
    let dn = |subject: &str| {
        dc_certs::Subject::parse(subject)
            .map(|s| s.distinguished_name())
            .map_err(err)
    };
    let ca = CertifiedCa::generate(
        dn("CN=kubernetes")?,
        not_before,
        not_after,
        KeyAlgorithm::EcdsaP256,
    )
    .map_err(err)?;
    let front = CertifiedCa::generate(
        dn("CN=front-proxy-ca")?,
        now - 86400,
        now + 10 * 365 * 86400,
        KeyAlgorithm::EcdsaP256,
    )
    .map_err(err)?;
    Ok((ca, front))
}
