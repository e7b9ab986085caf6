//! What a kubelet does with static pods, for a control plane without containers: a component's command
//! line is read from its kubeadm manifest (`<manifests>/<component>.yaml`, the first container's
//! `command` and `args`) and run as a detached process, its output appended to `<state>/<component>.log`
//! and its pid kept in `<state>/<component>.pid`. A restart reads the manifest again, as the kubelet
//! does when a manifest changes, so what the agent wrote there is what runs. A process that exits is
//! not started again: a crash-looping component stays visibly dead, its log saying why.
//!
//! The `dc-static-pods` binary is the command line over this module (the agent's restart commands call
//! it); the control-plane harness uses it directly to stop everything when a test ends.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a stopped component has to exit after SIGTERM before it is killed. A kubelet gives a
/// static pod its termination grace period (30 s unless the manifest says otherwise); the API server
/// uses all of it, waiting for its watches to end, and keeps nothing it must flush, so the tests cut
/// it short to keep each restart quick.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors of the static-pod runner; each names the component or file.
#[derive(Debug, thiserror::Error)]
pub enum StaticPodError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a static-pod manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{component}: no executable {path} (its manifest's command[0])")]
    MissingBinary { component: String, path: PathBuf },
    #[error("{component}: cannot start {program}: {source}")]
    Spawn {
        component: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{component} (pid {pid}) did not exit after SIGKILL")]
    Unkillable { component: String, pid: i32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StaticPodError + '_ {
    move |source| StaticPodError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where one host's components are described and where their processes are recorded.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The directory of `<component>.yaml` manifests.
    pub manifests: PathBuf,
    /// Where a relative `command[0]` is found (absolute ones are run as they are).
    pub bin: PathBuf,
    /// `<component>.pid`, `<component>.log` and `<component>.lock`.
    pub state: PathBuf,
}

impl Runner {
    pub fn log(&self, component: &str) -> PathBuf {
        self.state.join(format!("{component}.log"))
    }

    fn pid_file(&self, component: &str) -> PathBuf {
        self.state.join(format!("{component}.pid"))
    }

    /// The component's command line from its manifest: the program to run and its arguments.
    pub fn command_line(&self, component: &str) -> Result<(PathBuf, Vec<String>), StaticPodError> {
        let path = self.manifests.join(format!("{component}.yaml"));
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let bad = |reason: &str| StaticPodError::Manifest {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let pod: serde_norway::Value =
            serde_norway::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        let container = &pod["spec"]["containers"][0];
        let strings = |key: &str| -> Result<Vec<String>, StaticPodError> {
            match &container[key] {
                serde_norway::Value::Null => Ok(Vec::new()),
                serde_norway::Value::Sequence(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(&format!("a non-string in {key}")))
                    })
                    .collect(),
                _ => Err(bad(&format!("{key} is not a list"))),
            }
        };
        let mut words = strings("command")?;
        words.extend(strings("args")?);
        if words.is_empty() {
            return Err(bad("the first container has no command"));
        }
        let first = PathBuf::from(words.remove(0));
        let program = if first.is_absolute() {
            first
        } else {
            self.bin.join(first)
        };
        if !program.is_file() {
            return Err(StaticPodError::MissingBinary {
                component: component.to_owned(),
                path: program,
            });
        }
        Ok((program, words))
    }

    /// The pid of the component's process while it runs.
    pub fn running(&self, component: &str) -> Option<i32> {
        let pid = std::fs::read_to_string(self.pid_file(component))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    /// Holds `<state>/<component>.lock` until dropped: one action on a component at a time, as a
    /// kubelet acts on one pod at a time. An agent killed during a restart leaves its restart command
    /// running while the resumed agent runs another; unserialised, both stopped the old process and
    /// both started a new one, the second failing to bind its port while the first ran on untracked,
    /// answering health checks with the configuration it was started with.
    fn lock(&self, component: &str) -> Result<std::fs::File, StaticPodError> {
        std::fs::create_dir_all(&self.state).map_err(io(&self.state))?;
        let path = self.state.join(format!("{component}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// Starts the component from its manifest unless it already runs; returns its pid.
    pub fn start(&self, component: &str) -> Result<i32, StaticPodError> {
        let _lock = self.lock(component)?;
        self.start_locked(component)
    }

    fn start_locked(&self, component: &str) -> Result<i32, StaticPodError> {
        if let Some(pid) = self.running(component) {
            return Ok(pid);
        }
        let (program, args) = self.command_line(component)?;
        std::fs::create_dir_all(&self.state).map_err(io(&self.state))?;
        let log_path = self.log(component);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let spawn_err = |source| StaticPodError::Spawn {
            component: component.to_owned(),
            program: program.clone(),
            source,
        };
        // Its own process group and no pipe to the caller: the agent's `sh -c` returns at once, and
        // a signal to the caller's group does not reach the component (a kubelet's pods outlive it).
        let child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(spawn_err)?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let pid_path = self.pid_file(component);
        dc_certs::files::write_atomic(&pid_path, pid.to_string().as_bytes(), 0o644)
            .map_err(io(&pid_path))?;
        Ok(pid)
    }

    /// Stops the component: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Not running is fine.
    pub fn stop(&self, component: &str) -> Result<(), StaticPodError> {
        let _lock = self.lock(component)?;
        self.stop_locked(component)
    }

    fn stop_locked(&self, component: &str) -> Result<(), StaticPodError> {
        if let Some(pid) = self.running(component) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if !exits_within(pid, STOP_GRACE) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if !exits_within(pid, STOP_GRACE) {
                    return Err(StaticPodError::Unkillable {
                        component: component.to_owned(),
                        pid,
                    });
                }
            }
        }
        let pid_path = self.pid_file(component);
        match std::fs::remove_file(&pid_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&pid_path)(e)),
            _ => Ok(()),
        }
    }

    /// Stops the component and starts it again from its manifest as it is now.
    pub fn restart(&self, component: &str) -> Result<i32, StaticPodError> {
        let _lock = self.lock(component)?;
        self.stop_locked(component)?;
        self.start_locked(component)
    }

    /// The components with a pid file in the state directory (running or not).
    pub fn recorded(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.state) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".pid").map(str::to_owned)
            })
            .collect()
    }
}

/// Whether `pid` is a live process: a zombie (exited, not yet reaped by whoever adopted it) is not.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may itself hold spaces.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Waits until `pid` has exited, at most `timeout`. The process belongs to no one here (it was
/// started by an earlier runner that has since exited), so there is nothing to await but /proc.
fn exits_within(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(dir: &Path) -> Runner {
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            manifests.join("napper.yaml"),
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - sleep\n    args:\n    - \"600\"\n    name: napper\n",
        )
        .unwrap();
        Runner {
            manifests,
            bin: PathBuf::from("/bin"),
            state: dir.join("state"),
        }
    }

    #[test]
    fn a_component_starts_from_its_manifest_restarts_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(dir.path());
        assert_eq!(
            r.command_line("napper").unwrap(),
            (PathBuf::from("/bin/sleep"), vec!["600".to_owned()])
        );
        let first = r.start("napper").unwrap();
        assert_eq!(r.start("napper").unwrap(), first, "already running");
        let second = r.restart("napper").unwrap();
        assert_ne!(first, second);
        assert!(!alive(first));
        r.stop("napper").unwrap();
        assert!(!alive(second));
        assert_eq!(r.running("napper"), None);
    }

    /// Two restarts at once (a killed agent's and its successor's) run one after the other: the
    /// second stops what the first started, and one process is left, the one recorded.
    #[test]
    fn concurrent_restarts_leave_one_recorded_process() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(dir.path());
        r.start("napper").unwrap();
        let pids: Vec<i32> = std::thread::scope(|s| {
            let restarts: Vec<_> = (0..2).map(|_| s.spawn(|| r.restart("napper"))).collect();
            restarts
                .into_iter()
                .map(|t| t.join().unwrap().unwrap())
                .collect()
        });
        let alive: Vec<i32> = pids.into_iter().filter(|p| alive(*p)).collect();
        assert_eq!(alive.len(), 1, "{alive:?}");
        assert_eq!(r.running("napper"), Some(alive[0]));
        r.stop("napper").unwrap();
    }

    #[test]
    fn a_missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runner {
            bin: dir.path().join("nowhere"),
            ..runner(dir.path())
        };
        let e = r.start("napper").unwrap_err().to_string();
        assert!(e.contains("nowhere/sleep"), "{e}");
    }
}
