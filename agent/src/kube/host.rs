//! A real host's files and component restarts: the agent's own host directly, other hosts through a
//! command prefix (ssh, typically) that runs one shell command line there.
//!
//! Every write is atomic on the host it lands on (a temporary file in the same directory, fsynced,
//! renamed over the target) and first keeps the file it replaces as `<file>.dc-rootca-backup` when no
//! such backup exists yet, so a resumed phase never overwrites the original with an updated copy.
//!
//! A target that is a symlink stays one: the new content goes to a new dated file beside it and the
//! link is swapped to it atomically, as the kubelet rotates `kubelet-client-current.pem` itself. Its
//! certificate store refuses to rotate a link that became a regular file, and the node would go
//! NotReady when the certificate nears its end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dc_certs::files::{PRIVATE, PUBLIC, write_atomic};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::cluster::{HostDir, HostFile, HostRole};

use super::config::HostConfig;

/// The suffix of the copy kept of each file the update replaces.
pub const BACKUP_SUFFIX: &str = ".dc-rootca-backup";

/// Errors acting on a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("host {host}: {path}: {source}")]
    Io {
        host: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("host {host}: `{command}` failed ({status}): {stderr}")]
    Command {
        host: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("host {host}: `{command}` did not finish within {timeout:?}")]
    Timeout {
        host: String,
        command: String,
        timeout: Duration,
    },
    #[error("host {host}: cannot run `{command}`: {source}")]
    Spawn {
        host: String,
        command: String,
        source: std::io::Error,
    },
    #[error("host {host}: {path} is not valid UTF-8")]
    Encoding { host: String, path: PathBuf },
}

/// Exit status a remote read uses for "no such file", so it is told apart from a failure to reach
/// the host (ssh's own errors exit 255).
const ABSENT: i32 = 44;

/// One host of the subcloud and how to reach it.
#[derive(Debug, Clone)]
pub struct HostAccess {
    pub name: String,
    pub role: HostRole,
    via: Vec<String>,
    kubernetes_dir: PathBuf,
    kubelet_pki_dir: PathBuf,
    timeout: Duration,
}

/// A path as a single-quoted shell word.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

impl HostAccess {
    pub fn new(config: &HostConfig, timeout: Duration) -> Self {
        Self {
            name: config.name.clone(),
            role: config.role,
            via: config.via.clone(),
            kubernetes_dir: config.kubernetes_dir.clone(),
            kubelet_pki_dir: config.kubelet_pki_dir.clone(),
            timeout,
        }
    }

    /// Where `file` is on this host.
    pub fn path(&self, file: HostFile) -> PathBuf {
        match file.dir() {
            HostDir::Kubernetes => &self.kubernetes_dir,
            HostDir::KubeletPki => &self.kubelet_pki_dir,
        }
        .join(file.path())
    }

    fn local(&self) -> bool {
        self.via.is_empty()
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
        let path = path.to_owned();
        move |source| HostError::Io {
            host: self.name.clone(),
            path,
            source,
        }
    }

    /// Runs one shell command line on the host (locally through `sh -c`), with `stdin` fed to it.
    /// Returns the exit code and stdout; a command that cannot start or outlives the timeout fails.
    async fn shell(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
    ) -> Result<(i32, Vec<u8>, String), HostError> {
        let mut command = if self.local() {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        } else {
            let mut c = Command::new(&self.via[0]);
            c.args(&self.via[1..]);
            c
        };
        command
            .arg(script)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = if self.local() {
            script.to_owned()
        } else {
            format!("{} {script}", self.via.join(" "))
        };
        let mut child = command.spawn().map_err(|source| HostError::Spawn {
            host: self.name.clone(),
            command: shown.clone(),
            source,
        })?;
        let run = async {
            let mut fed = Ok(());
            if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
                fed = pipe.write_all(bytes).await;
                drop(pipe);
            }
            child.wait_with_output().await.map(|output| (output, fed))
        };
        let (output, fed) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| HostError::Timeout {
                host: self.name.clone(),
                command: shown.clone(),
                timeout: self.timeout,
            })?
            .map_err(|source| HostError::Spawn {
                host: self.name.clone(),
                command: shown.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if let (Err(e), Some(0)) = (&fed, output.status.code()) {
            // It succeeded without all of its input: never taken for a success.
            return Err(HostError::Command {
                host: self.name.clone(),
                command: shown,
                status: "exit status 0".to_owned(),
                stderr: format!("{stderr}; its input could not all be sent: {e}"),
            });
        }
        match output.status.code() {
            Some(code) => Ok((code, output.stdout, stderr)),
            None => Err(HostError::Command {
                host: self.name.clone(),
                command: shown,
                status: output.status.to_string(),
                stderr,
            }),
        }
    }

    /// Runs a command that must succeed.
    async fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<Vec<u8>, HostError> {
        match self.shell(script, stdin).await? {
            (0, stdout, _) => Ok(stdout),
            (code, _, stderr) => Err(HostError::Command {
                host: self.name.clone(),
                command: script.to_owned(),
                status: format!("exit status {code}"),
                stderr,
            }),
        }
    }

    /// Fails when the host cannot be reached or has no kubeadm directory.
    pub async fn check(&self) -> Result<(), HostError> {
        let dir = &self.kubernetes_dir;
        if self.local() {
            return match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(self.io(dir)(std::io::Error::other("not a directory"))),
                Err(e) => Err(self.io(dir)(e)),
            };
        }
        self.run(&format!("test -d {}", quote(dir)), None)
            .await
            .map(drop)
    }

    pub async fn read(&self, file: HostFile) -> Result<Option<String>, HostError> {
        self.read_path(self.path(file)).await
    }

    /// The backup kept before the file was first replaced, if there is one.
    pub async fn read_backup(&self, file: HostFile) -> Result<Option<String>, HostError> {
        self.read_path(backup_path(&self.path(file))).await
    }

    async fn read_path(&self, path: PathBuf) -> Result<Option<String>, HostError> {
        let bytes = if self.local() {
            match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.io(&path)(e)),
            }
        } else {
            let p = quote(&path);
            let script = format!("if [ -e {p} ]; then cat -- {p}; else exit {ABSENT}; fi");
            match self.shell(&script, None).await? {
                (0, stdout, _) => stdout,
                (ABSENT, _, _) => return Ok(None),
                (code, _, stderr) => {
                    return Err(HostError::Command {
                        host: self.name.clone(),
                        command: script,
                        status: format!("exit status {code}"),
                        stderr,
                    });
                }
            }
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| HostError::Encoding {
                host: self.name.clone(),
                path,
            })
    }

    /// Writes `contents` atomically, keeping the replaced file as a backup once.
    pub async fn write(&self, file: HostFile, contents: &str) -> Result<(), HostError> {
        let path = self.path(file);
        let mode = if file.is_private() { PRIVATE } else { PUBLIC };
        if self.local() {
            let (host, contents) = (self.name.clone(), contents.to_owned());
            return tokio::task::spawn_blocking(move || write_local(&path, &contents, mode))
                .await
                .map_err(|e| HostError::Io {
                    host: host.clone(),
                    path: self.path(file),
                    source: std::io::Error::other(e),
                })?
                .map_err(|(path, source)| HostError::Io { host, path, source });
        }
        self.run(
            &write_script(&path, mode, contents.as_bytes()),
            Some(contents.as_bytes()),
        )
        .await
        .map(drop)
    }

    pub async fn remove(&self, file: HostFile) -> Result<(), HostError> {
        self.remove_path(self.path(file)).await
    }

    /// Removes the file's backup; absent is fine.
    pub async fn remove_backup(&self, file: HostFile) -> Result<(), HostError> {
        self.remove_path(backup_path(&self.path(file))).await
    }

    async fn remove_path(&self, path: PathBuf) -> Result<(), HostError> {
        if self.local() {
            return match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(&path)(e)),
                _ => Ok(()),
            };
        }
        self.run(&format!("rm -f -- {}", quote(&path)), None)
            .await
            .map(drop)
    }

    /// Runs a configured command line (a restart or a health check) on the host.
    pub async fn run_command(&self, command: &str) -> Result<(), HostError> {
        self.run(command, None).await.map(drop)
    }
}

/// The backup of `path`.
pub fn backup_path(path: &Path) -> PathBuf {
    with_suffix(path, BACKUP_SUFFIX)
}

fn write_local(path: &Path, contents: &str, mode: u32) -> Result<(), (PathBuf, std::io::Error)> {
    use std::os::unix::fs::PermissionsExt;
    let backup = backup_path(path);
    if path.exists() && !backup.exists() {
        // The content (through a symlink such as kubelet-client-current.pem) and the mode bits,
        // written like every other file: a backup exists whole or not at all.
        let kept = std::fs::read(path)
            .and_then(|bytes| {
                Ok((
                    bytes,
                    std::fs::metadata(path)?.permissions().mode() & 0o7777,
                ))
            })
            .map_err(|e| (path.to_owned(), e))?;
        write_atomic(&backup, &kept.0, kept.1).map_err(|e| (backup.clone(), e))?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| (parent.to_owned(), e))?;
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return write_atomic(path, contents.as_bytes(), mode).map_err(|e| (path.to_owned(), e));
    }
    let dated = dated_path(path, time::OffsetDateTime::now_utc());
    write_atomic(&dated, contents.as_bytes(), mode).map_err(|e| (dated.clone(), e))?;
    let link_tmp = with_suffix(path, ".dc-rootca-link-tmp");
    match std::fs::remove_file(&link_tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err((link_tmp, e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&dated, &link_tmp).map_err(|e| (link_tmp.clone(), e))?;
    std::fs::rename(&link_tmp, path).map_err(|e| (path.to_owned(), e))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| (parent.to_owned(), e))?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The dated file a symlinked `path` is pointed at, named as the kubelet names its rotations:
/// `kubelet-client-current.pem` → `kubelet-client-2026-12-05-14-35-00.pem`.
fn dated_path(path: &Path, at: time::OffsetDateTime) -> PathBuf {
    let stamp = format!(
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dated = match name.strip_suffix("-current.pem") {
        Some(stem) => format!("{stem}-{stamp}.pem"),
        None => format!("{name}-{stamp}"),
    };
    path.with_file_name(dated)
}

/// The shell script writing its standard input to `path` on a remote host: the same sequence as
/// [`write_atomic`] plus the backup, in POSIX sh and coreutils. What arrived is checked against the
/// length and SHA-256 of `contents` before it goes live: a transfer cut short (the agent killed, the
/// timeout, the link) leaves the old file in place, never half a certificate. The backup goes through
/// a temporary name too, so it exists whole or not at all and is redone when it does not.
fn write_script(path: &Path, mode: u32, contents: &[u8]) -> String {
    let f = quote(path);
    let dir = quote(path.parent().unwrap_or(Path::new("/")));
    let backup = quote(&backup_path(path));
    let backup_tmp = quote(&with_suffix(path, ".dc-rootca-backup-tmp"));
    let tmp = quote(&with_suffix(path, ".dc-rootca-tmp"));
    let dated = quote(&dated_path(path, time::OffsetDateTime::now_utc()));
    let link_tmp = quote(&with_suffix(path, ".dc-rootca-link-tmp"));
    let len = contents.len();
    let sha = sha256_hex(contents);
    format!(
        "set -e; umask 077; mkdir -p {dir}; \
         if [ -e {f} ] && [ ! -e {backup} ]; then cp -p -- {f} {backup_tmp}; \
         sync {backup_tmp} 2>/dev/null || sync; mv -f -- {backup_tmp} {backup}; fi; \
         cat > {tmp}; \
         if [ \"$(wc -c < {tmp})\" -ne {len} ] || ! printf '%s  %s\\n' {sha} {tmp} | sha256sum -c --status; then \
         rm -f -- {tmp}; echo \"dc-rootca: {f} arrived incomplete or altered; the old file stays\" >&2; exit 3; fi; \
         chmod {mode:o} {tmp}; sync {tmp} 2>/dev/null || sync; \
         if [ -L {f} ]; then mv -f -- {tmp} {dated}; rm -f -- {link_tmp}; \
         ln -s -- {dated} {link_tmp}; mv -Tf -- {link_tmp} {f}; \
         else mv -f -- {tmp} {f}; fi; sync {dir} 2>/dev/null || sync"
    )
}

/// Lower-case hex SHA-256, as `sha256sum` prints it.
fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path, via: &[&str]) -> HostAccess {
        HostAccess::new(
            &HostConfig {
                name: "controller-1".into(),
                role: HostRole::Controller,
                via: via.iter().map(|s| (*s).to_owned()).collect(),
                kubernetes_dir: dir.join("etc/kubernetes"),
                kubelet_pki_dir: dir.join("var/lib/kubelet/pki"),
            },
            Duration::from_secs(30),
        )
    }

    async fn writes_atomically_with_one_backup(h: &HostAccess, root: &Path) {
        let ca = root.join("etc/kubernetes/pki/ca.crt");
        std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
        std::fs::write(&ca, "original").unwrap();
        h.check().await.unwrap();
        assert_eq!(h.read(HostFile::CaCert).await.unwrap().unwrap(), "original");
        assert_eq!(h.read(HostFile::CaNewCert).await.unwrap(), None);
        h.write(HostFile::CaCert, "first's update").await.unwrap();
        h.write(HostFile::CaCert, "second's update").await.unwrap();
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "second's update");
        assert_eq!(
            std::fs::read_to_string(backup_path(&ca)).unwrap(),
            "original",
            "a later write keeps the first backup"
        );
        h.write(HostFile::KubeletClientCurrent, "pem")
            .await
            .unwrap();
        let pem = root.join("var/lib/kubelet/pki/kubelet-client-current.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            !backup_path(&pem).exists(),
            "nothing replaced, nothing kept"
        );
        h.remove(HostFile::KubeletClientCurrent).await.unwrap();
        h.remove(HostFile::KubeletClientCurrent).await.unwrap();
        assert!(!pem.exists());
        let leftovers: Vec<_> = std::fs::read_dir(ca.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    /// kubeadm's layout: `kubelet-client-current.pem` links to a dated file. A write leaves it a link,
    /// to a new dated file, and the old dated file and a backup of its content in place.
    async fn keeps_a_symlink_a_symlink(h: &HostAccess, root: &Path) {
        let dir = root.join("var/lib/kubelet/pki");
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("kubelet-client-2020-01-01-00-00-00.pem");
        std::fs::write(&old, "old pem").unwrap();
        let current = dir.join("kubelet-client-current.pem");
        std::os::unix::fs::symlink(&old, &current).unwrap();
        h.write(HostFile::KubeletClientCurrent, "new pem")
            .await
            .unwrap();
        let target = std::fs::read_link(&current).expect("still a symlink");
        assert_ne!(target, old);
        assert_eq!(target.parent(), Some(dir.as_path()));
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("kubelet-client-2") && name.ends_with(".pem"),
            "{name}"
        );
        assert_eq!(std::fs::read_to_string(&current).unwrap(), "new pem");
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "old pem");
        assert_eq!(
            std::fs::read_to_string(backup_path(&current)).unwrap(),
            "old pem"
        );
        assert!(!with_suffix(&current, ".dc-rootca-link-tmp").exists());
    }

    #[test]
    fn a_rotated_file_is_named_as_the_kubelet_names_them() {
        let at = time::macros::datetime!(2026-12-05 14:03:09 UTC);
        let dir = Path::new("/var/lib/kubelet/pki");
        assert_eq!(
            dated_path(&dir.join("kubelet-client-current.pem"), at),
            dir.join("kubelet-client-2026-12-05-14-03-09.pem")
        );
        assert_eq!(
            dated_path(&dir.join("other.pem"), at),
            dir.join("other.pem-2026-12-05-14-03-09")
        );
    }

    #[tokio::test]
    async fn local_host_files() {
        let dir = tempfile::tempdir().unwrap();
        writes_atomically_with_one_backup(&host(dir.path(), &[]), dir.path()).await;
        keeps_a_symlink_a_symlink(&host(dir.path(), &[]), dir.path()).await;
    }

    #[tokio::test]
    async fn remote_host_files_through_a_shell_prefix() {
        let dir = tempfile::tempdir().unwrap();
        // `sh -c` stands for ssh: both run the last argument as a shell command line.
        let path = dir.path().join("it's here");
        writes_atomically_with_one_backup(&host(&path, &["sh", "-c"]), &path).await;
        keeps_a_symlink_a_symlink(&host(&path, &["sh", "-c"]), &path).await;
    }

    #[tokio::test]
    async fn a_transfer_cut_short_leaves_the_old_file_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("etc/kubernetes/pki/ca.crt");
        std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
        std::fs::write(&ca, "original").unwrap();
        // The link delivers only the first 20 bytes of the input, then the command runs: as when the
        // agent dies or the timeout fires mid-transfer.
        let cut = host(
            dir.path(),
            &["sh", "-c", "head -c 20 | sh -c \"$1\"", "cut"],
        );
        let new = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
        let e = cut
            .write(HostFile::CaCert, new)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("arrived incomplete or altered"), "{e}");
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "original");
        let leftovers: Vec<_> = std::fs::read_dir(ca.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            leftovers.iter().all(|n| !n.contains("dc-rootca-tmp")),
            "{leftovers:?}"
        );
        // The whole transfer goes live.
        let whole = host(dir.path(), &["sh", "-c"]);
        whole.write(HostFile::CaCert, new).await.unwrap();
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), new);
        assert_eq!(
            std::fs::read_to_string(backup_path(&ca)).unwrap(),
            "original"
        );
    }

    #[test]
    fn sha256_is_what_sha256sum_prints() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn unreachable_hosts_and_failing_restarts_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let gone = host(
            dir.path(),
            &[
                "sh",
                "-c",
                "echo 'ssh: connect to host controller-1: No route to host' >&2; exit 255",
            ],
        );
        let e = gone.check().await.unwrap_err().to_string();
        assert!(e.contains("No route to host") && e.contains("255"), "{e}");
        assert!(gone.read(HostFile::CaCert).await.is_err());
        let local = host(dir.path(), &[]);
        assert!(
            local
                .check()
                .await
                .unwrap_err()
                .to_string()
                .contains("etc/kubernetes")
        );
        let log = dir.path().join("restarts.log");
        local
            .run_command(&format!("echo kubelet >> {}", quote(&log)))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "kubelet\n");
        let e = local
            .run_command("echo nope >&2; exit 3")
            .await
            .unwrap_err();
        assert!(e.to_string().ends_with("(exit status 3): nope"), "{e}");
        let slow = HostAccess {
            timeout: Duration::from_millis(100),
            ..local
        };
        assert!(matches!(
            slow.run_command("sleep 5").await,
            Err(HostError::Timeout { .. })
        ));
    }
}
