//! The controller-manager's static-pod manifest, edited in place: the update moves its cluster-signing
//! flags to the new CA and back, and must leave the rest of a real host's manifest (image, other flags,
//! probes, volumes, resources) exactly as kubeadm or the operator wrote it.

/// Errors editing the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest has no '- kube-controller-manager' command entry to add the flags after")]
    NoCommand,
}

const SIGNING_CERT: &str = "--cluster-signing-cert-file=";
const SIGNING_KEY: &str = "--cluster-signing-key-file=";

/// `manifest` with `--cluster-signing-cert-file=` and `--cluster-signing-key-file=` set to `cert` and
/// `key`. Existing flags get their values replaced; absent ones are added right after the
/// `- kube-controller-manager` command entry, indented like it. Every other byte is kept.
pub fn set_signing_files(manifest: &str, cert: &str, key: &str) -> Result<String, ManifestError> {
    let mut lines: Vec<String> = manifest.split_inclusive('\n').map(str::to_owned).collect();
    // Flags added so far, so the second goes after the first.
    let mut added = 0;
    for (flag, value) in [(SIGNING_CERT, cert), (SIGNING_KEY, key)] {
        let mut found = false;
        for line in &mut lines {
            if let Some(at) = line.find(flag) {
                let start = at + flag.len();
                let rest = &line[start..];
                // The value ends at a closing quote or the end of the line.
                let end = rest
                    .find(['"', '\'', '\r', '\n'])
                    .map_or(line.len(), |i| start + i);
                line.replace_range(start..end, value);
                found = true;
            }
        }
        if !found {
            let (i, entry) = lines
                .iter()
                .enumerate()
                .find(|(_, l)| {
                    l.trim_start().trim_start_matches("- ").trim_end() == "kube-controller-manager"
                        && l.trim_start().starts_with("- ")
                })
                .ok_or(ManifestError::NoCommand)?;
            let indent = &entry[..entry.len() - entry.trim_start().len()];
            let ending = if entry.ends_with("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let new = format!("{indent}- {flag}{value}{ending}");
            let mut entry = entry.clone();
            if !entry.ends_with('\n') {
                // The command entry was the last line without a newline.
                entry.push('\n');
                lines[i] = entry;
            }
            lines.insert(i + 1 + added, new);
            added += 1;
        }
    }
    Ok(lines.concat())
}

/// The directory the manifest names its PKI files in, from the first of the signing cert, root CA and
/// client CA flags it has: where the controller-manager, inside its container, finds the CA files the
/// update writes beside them. `None` when it names none of them.
pub fn pki_dir(manifest: &str) -> Option<String> {
    [
        "--cluster-signing-cert-file=",
        "--root-ca-file=",
        "--client-ca-file=",
    ]
    .iter()
    .find_map(|flag| {
        let at = manifest.find(flag)? + flag.len();
        let value: &str = manifest[at..].split(['"', '\'', '\r', '\n', ' ']).next()?;
        let (dir, _) = value.rsplit_once('/')?;
        (!dir.is_empty()).then(|| dir.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pki_directory_is_the_one_the_manifest_already_names() {
        assert_eq!(pki_dir(KUBEADM).as_deref(), Some("/etc/kubernetes/pki"));
        let moved = KUBEADM.replace("/etc/kubernetes/pki", "/srv/k8s/pki");
        assert_eq!(pki_dir(&moved).as_deref(), Some("/srv/k8s/pki"));
        // Without signing flags, the root CA flag tells.
        let root_only: String = moved
            .lines()
            .filter(|l| !l.contains("cluster-signing"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(pki_dir(&root_only).as_deref(), Some("/srv/k8s/pki"));
        assert_eq!(pki_dir("kind: Pod\n"), None);
    }

    /// The manifest `kubeadm init` writes (abridged only in the probe and volume lists).
    const KUBEADM: &str = r#"apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: kube-controller-manager
    tier: control-plane
  name: kube-controller-manager
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-controller-manager
    - --allocate-node-cidrs=true
    - --authentication-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --bind-address=127.0.0.1
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --cluster-cidr=10.244.0.0/16
    - --cluster-name=kubernetes
    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt
    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key
    - --controllers=*,bootstrapsigner,tokencleaner
    - --root-ca-file=/etc/kubernetes/pki/ca.crt
    - --use-service-account-credentials=true
    image: registry.k8s.io/kube-controller-manager:v1.33.1
    imagePullPolicy: IfNotPresent
    name: kube-controller-manager
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
  hostNetwork: true
status: {}
"#;

    #[test]
    fn replaces_only_the_signing_values() {
        let edited = set_signing_files(
            KUBEADM,
            "/etc/kubernetes/pki/ca_new.crt",
            "/etc/kubernetes/pki/ca_new.key",
        )
        .unwrap();
        assert_eq!(
            edited,
            KUBEADM
                .replace(
                    "signing-cert-file=/etc/kubernetes/pki/ca.crt",
                    "signing-cert-file=/etc/kubernetes/pki/ca_new.crt"
                )
                .replace(
                    "signing-key-file=/etc/kubernetes/pki/ca.key",
                    "signing-key-file=/etc/kubernetes/pki/ca_new.key"
                )
        );
        // And back, byte for byte.
        let back = set_signing_files(
            &edited,
            "/etc/kubernetes/pki/ca.crt",
            "/etc/kubernetes/pki/ca.key",
        )
        .unwrap();
        assert_eq!(back, KUBEADM);
        // The same values again change nothing.
        assert_eq!(
            set_signing_files(
                &back,
                "/etc/kubernetes/pki/ca.crt",
                "/etc/kubernetes/pki/ca.key"
            )
            .unwrap(),
            KUBEADM
        );
    }

    #[test]
    fn adds_absent_flags_after_the_command() {
        let without: String = KUBEADM
            .lines()
            .filter(|l| !l.contains("cluster-signing"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let edited = set_signing_files(&without, "/p/n.crt", "/p/n.key").unwrap();
        assert!(edited.contains(
            "    - kube-controller-manager\r\n    - --cluster-signing-cert-file=/p/n.crt\r\n    - --cluster-signing-key-file=/p/n.key\r\n    - --allocate-node-cidrs=true\r\n"
        ), "{edited}");
        assert_eq!(edited.len(), without.len() + "    - --cluster-signing-cert-file=/p/n.crt\r\n    - --cluster-signing-key-file=/p/n.key\r\n".len());
    }

    #[test]
    fn quoted_values_keep_their_quotes() {
        let quoted = "    - kube-controller-manager\n    - \"--cluster-signing-cert-file=/a.crt\"\n    - '--cluster-signing-key-file=/a.key'\n";
        assert_eq!(
            set_signing_files(quoted, "/b.crt", "/b.key").unwrap(),
            "    - kube-controller-manager\n    - \"--cluster-signing-cert-file=/b.crt\"\n    - '--cluster-signing-key-file=/b.key'\n"
        );
    }

    #[test]
    fn refuses_a_manifest_without_the_command() {
        assert!(matches!(
            set_signing_files("apiVersion: v1\nkind: Pod\n", "/a", "/b"),
            Err(ManifestError::NoCommand)
        ));
    }
}
