//! The controller-manager's static-pod manifest, edited in place: the update moves its cluster-signing
//! flags to the new CA and back, and must leave the rest of a real host's manifest (image, other flags,
//! probes, volumes, resources) exactly as kubeadm or the operator wrote it.

/// Errors editing the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest has no '- kube-controller-manager' command entry to add the flags after")]
    NoCommand,
    #[error(
        "a signing flag sits in a quoted value that goes on past its line; edit the manifest's \
         signing flags by hand"
    )]
    MultiLineValue,
}

const SIGNING_CERT: &str = "--cluster-signing-cert-file=";
const SIGNING_KEY: &str = "--cluster-signing-key-file=";

/// `manifest` with `--cluster-signing-cert-file=` and `--cluster-signing-key-file=` set to `cert` and
/// `key`. Existing flags get their values replaced; absent ones are added right after the
/// `- kube-controller-manager` command entry, indented like it. Every other byte is kept.
pub fn set_signing_files(manifest: &str, cert: &str, key: &str) -> Result<String, ManifestError> {
    // A line editor cannot tell what a quoted value that continues on the next line holds: refuse
    // rather than edit text YAML reads as something else.
    if manifest
        .lines()
        .filter(|l| l.contains(SIGNING_CERT) || l.contains(SIGNING_KEY))
        .any(opens_an_unclosed_quote)
    {
        return Err(ManifestError::MultiLineValue);
    }
    let mut lines: Vec<String> = manifest.split_inclusive('\n').map(str::to_owned).collect();
    // Flags added so far, so the second goes after the first.
    let mut added = 0;
    for (flag, value) in [(SIGNING_CERT, cert), (SIGNING_KEY, key)] {
        let mut found = false;
        for line in &mut lines {
            if let Some(range) = flag_value(line, flag) {
                line.replace_range(range, value);
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

/// The files the `--cluster-signing-*-file` flags name, when both are set.
pub fn signing_files(manifest: &str) -> Option<(String, String)> {
    let value = |flag: &str| {
        manifest
            .lines()
            .find_map(|line| flag_value(line, flag).map(|range| line[range].to_owned()))
    };
    Some((value(SIGNING_CERT)?, value(SIGNING_KEY)?))
}

/// The directory the manifest names its PKI files in, from the first of the signing cert, root CA and
/// client CA flags it has: where the controller-manager, inside its container, finds the CA files the
/// update writes beside them. `None` when it names none of them.
pub fn pki_dir(manifest: &str) -> Option<String> {
    [SIGNING_CERT, "--root-ca-file=", "--client-ca-file="]
        .iter()
        .find_map(|flag| {
            let value = manifest
                .lines()
                .find_map(|line| flag_value(line, flag).map(|range| &line[range]))?;
            let (dir, _) = value.rsplit_once('/')?;
            (!dir.is_empty()).then(|| dir.to_owned())
        })
}

/// Where the value of `flag` lies on `line`, when the flag begins one of its arguments ([`flag_at`]).
/// The value ends where the argument does: at the quote that opened it, at the next item of a flow
/// list, or at the end of the line (a quote inside a plain value is the value's).
fn flag_value(line: &str, flag: &str) -> Option<std::ops::Range<usize>> {
    let at = flag_at(line, flag)?;
    let start = at + flag.len();
    let terminators: &[char] = match line[..at].trim_end().chars().next_back() {
        Some('"') => &['"', '\r', '\n'],
        Some('\'') => &['\'', '\r', '\n'],
        Some('[' | ',') => &[',', ']', '\r', '\n'],
        _ => &['\r', '\n'],
    };
    let end = line[start..]
        .find(terminators)
        .map_or(line.len(), |i| start + i);
    Some(start..end)
}

/// Whether `line` opens a quoted value it does not close: a quote where a value begins (after `- `,
/// `: `, `[` or `,`) with no closing quote after it on the line (`''` is an escaped single quote, `\"`
/// an escaped double one). A quote inside a plain value is only a character.
fn opens_an_unclosed_quote(line: &str) -> bool {
    let line = line.trim_end_matches('\r');
    line.char_indices()
        .filter(|&(_, c)| c == '\'' || c == '"')
        .filter(|&(at, _)| {
            let before = &line[..at];
            let lead = before.trim_end();
            lead.ends_with('[')
                || lead.ends_with(',')
                || (before.ends_with(' ') && (lead.ends_with(':') || item_marker(before)))
        })
        .any(|(at, quote)| !closes(&line[at + 1..], quote))
}

/// Whether a `quote`d value that began just before `rest` ends on this line.
fn closes(rest: &str, quote: char) -> bool {
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quote == '"' => {
                chars.next();
            }
            '\'' if quote == '\'' && chars.peek() == Some(&'\'') => {
                chars.next();
            }
            c if c == quote => return true,
            _ => {}
        }
    }
    false
}

/// Where `flag` begins an argument of `line`: the whole item of a block list (`- --flag=`), or a quoted
/// or flow-list item (`- "--flag=`, `[kube-controller-manager, --flag=`). Text that merely contains the
/// flag is not that flag: inside another flag's value (`--key-file=/k--cert-file=`, `--key-file=/k
/// --cert-file=`, one argument either way) its edit would be overwritten by the other flag's and leave the
/// manifest without it; in a comment it is not in effect.
fn flag_at(line: &str, flag: &str) -> Option<usize> {
    line.match_indices(flag)
        .map(|(at, _)| at)
        .find(|&at| starts_argument(&line[..at]))
}

/// Whether what precedes a position on a line ends where a command argument begins: a block-list item's
/// `- ` (the space is YAML's: `-x` is a plain value), or a flow list's `[` or `,`, either followed by one
/// opening quote.
fn starts_argument(before: &str) -> bool {
    let before = before.strip_suffix(['"', '\'']).unwrap_or(before);
    // A bare line is a mapping key or a scalar's continuation in YAML, never an item.
    let flow = before.trim_end();
    item_marker(before) || ((flow.ends_with('[') || flow.ends_with(',')) && in_flow_list(flow))
}

/// Whether `text` is a block-list item's dash and its space, after the indentation.
fn item_marker(text: &str) -> bool {
    let item = text.trim_start();
    item.len() > 1 && item.starts_with('-') && item[1..].trim().is_empty()
}

/// Whether a flow list is open at the end of `before`: a `[` that begins a value (`command: [`, `- [`,
/// with YAML's space) and no `]` after it. A `[` inside a plain value (`name: a[b`, `-[`) opens nothing.
fn in_flow_list(before: &str) -> bool {
    before.find('[').is_some_and(|open| {
        let lead = &before[..open];
        let begins_value = lead.ends_with(char::is_whitespace)
            && (lead.trim_end().ends_with(':') || item_marker(lead));
        begins_value && !before[open..].contains(']')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_in_a_quoted_value_that_goes_on_past_its_line_is_not_edited() {
        // Found by fuzzing: the key flag's single-quoted value runs on to the next line, and a `[`
        // inside it was taken for a flow list holding the cert flag.
        let manifest = "    - kube-controller-manager\n    - '--cluster-signing-key-file=/a.k kind: [[--cluster-signing-cert-file=[t\"\n    - '--other=/a'\n";
        assert!(matches!(
            set_signing_files(manifest, "/c", "/k"),
            Err(ManifestError::MultiLineValue)
        ));
        // Quotes closed on their line, escaped ones included, are fine.
        let closed = "    - kube-controller-manager\n    - '--cluster-signing-cert-file=/it''s'\n    - \"--cluster-signing-key-file=/a\\\"b\"\n";
        assert!(set_signing_files(closed, "/c", "/k").is_ok());
        assert!(set_signing_files(KUBEADM, "/c", "/k").is_ok());
    }

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

    #[test]
    fn the_signing_files_are_read_back_as_set() {
        assert_eq!(
            signing_files(KUBEADM),
            Some((
                "/etc/kubernetes/pki/ca.crt".to_owned(),
                "/etc/kubernetes/pki/ca.key".to_owned()
            ))
        );
        let moved = set_signing_files(KUBEADM, "/p/ca_old.crt", "/p/ca.key").unwrap();
        assert_eq!(
            signing_files(&moved),
            Some(("/p/ca_old.crt".to_owned(), "/p/ca.key".to_owned()))
        );
        assert_eq!(signing_files("kind: Pod\n"), None);
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
    fn a_flag_inside_another_value_is_not_the_flag() {
        // Each case: what the manifest holds, and what the edit to /b.crt and /b.key makes of it.
        let cases = [
            // Found by the manifest fuzz target: the key flag's value held the cert flag's text, the cert
            // "flag" there was edited, then the key flag's edit overwrote it, and the manifest was left
            // without --cluster-signing-cert-file at all.
            (
                "odd",
                "    - kube-controller-manager\n    - --cluster-signing-key-file=/k--cluster-signing-cert-file=x\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --cluster-signing-key-file=/b.key\n",
            ),
            (
                "spaced",
                "    - kube-controller-manager\n    - --cluster-signing-key-file=/k --cluster-signing-cert-file=x\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --cluster-signing-key-file=/b.key\n",
            ),
            // A quote inside a plain value is part of it; a flow list's value ends at its next item.
            (
                "quote",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/a'b.crt\n    - --cluster-signing-key-file=/a.key\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --cluster-signing-key-file=/b.key\n",
            ),
            (
                "flow",
                "    command: [kube-controller-manager, --cluster-signing-cert-file=/a.crt, --cluster-signing-key-file=/a.key]\n",
                "    command: [kube-controller-manager, --cluster-signing-cert-file=/b.crt, --cluster-signing-key-file=/b.key]\n",
            ),
            // A flag in a comment is not in effect: the flag is added.
            (
                "quoted_inside",
                "    - kube-controller-manager\n    - --cluster-signing-key-file=/k \"--cluster-signing-cert-file=x\"\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --cluster-signing-key-file=/b.key\n",
            ),
            // At the start of a line it is a mapping key, not an argument: the flag is added.
            (
                "key",
                "    - kube-controller-manager\n  --cluster-signing-cert-file=x: y\n    - --cluster-signing-key-file=/a.key\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n  --cluster-signing-cert-file=x: y\n    - --cluster-signing-key-file=/b.key\n",
            ),
            // Inside a quoted string that starts otherwise, it is that string's text.
            (
                "nested",
                "    - kube-controller-manager\n    - \"'--cluster-signing-cert-file=/a.crt\"\n    - --cluster-signing-key-file=/a.key\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - \"'--cluster-signing-cert-file=/a.crt\"\n    - --cluster-signing-key-file=/b.key\n",
            ),
            // A `[` inside a plain value opens no list.
            (
                "bracket",
                "    - kube-controller-manager\n    - --x[--cluster-signing-cert-file=/a.crt\n    - --cluster-signing-key-file=/a.key\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --x[--cluster-signing-cert-file=/a.crt\n    - --cluster-signing-key-file=/b.key\n",
            ),
            // `-"..."` without the space is a plain value, not an item.
            (
                "no_space",
                "    - kube-controller-manager\n    -\"--cluster-signing-key-file=/a.key\"\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --cluster-signing-key-file=/b.key\n    -\"--cluster-signing-key-file=/a.key\"\n",
            ),
            // Nor does `-[` open a flow list.
            (
                "no_space_flow",
                "    - kube-controller-manager\n    -[ --cluster-signing-key-file=/a.key\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    - --cluster-signing-key-file=/b.key\n    -[ --cluster-signing-key-file=/a.key\n",
            ),
            (
                "commented",
                "    - kube-controller-manager\n    # - --cluster-signing-cert-file=/a.crt\n    - --cluster-signing-key-file=/a.key\n",
                "    - kube-controller-manager\n    - --cluster-signing-cert-file=/b.crt\n    # - --cluster-signing-cert-file=/a.crt\n    - --cluster-signing-key-file=/b.key\n",
            ),
        ];
        for (name, manifest, edited) in cases {
            assert_eq!(
                set_signing_files(manifest, "/b.crt", "/b.key").unwrap(),
                edited,
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_a_manifest_without_the_command() {
        assert!(matches!(
            set_signing_files("apiVersion: v1\nkind: Pod\n", "/a", "/b"),
            Err(ManifestError::NoCommand)
        ));
    }
}
