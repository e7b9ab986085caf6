//! Real processes for integration tests: found next to the test executable, killed when dropped, even
//! when the test fails.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The path of a workspace binary (`dc-controller`, `dc-agent`, `dcmanager`, ...) in the same target
/// directory as the running test or tool. `cargo test --workspace` builds every binary first.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> or target/<profile>/<tool>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Errors building the workspace binaries a tool needs.
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// `cargo run --bin TOOL` builds only that tool; a tool that starts other workspace binaries (the demo,
/// the benchmark) builds the ones it names here, in its own profile, so one command works on a fresh
/// machine (a no-op when they are current). Outside cargo (`$CARGO` unset) the binaries must already exist.
pub fn build_workspace_binaries(names: &[&str]) -> Result<(), BuildError> {
    let Ok(cargo) = std::env::var("CARGO") else {
        return match names.iter().map(|n| bin_path(n)).find(|p| !p.exists()) {
            Some(missing) => Err(BuildError(format!(
                "{} is missing: build the workspace first (cargo build --release --bins)",
                missing.display()
            ))),
            None => Ok(()),
        };
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--manifest-path"])
        .arg(manifest);
    // Only the binaries asked for: the workspace's features are already unified with the tool's own
    // build (a virtual workspace resolves them over every member), so this links just these few
    // instead of every tool and test helper in the workspace.
    for name in names {
        build.args(["--bin", name]);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    if exe.parent().is_some_and(|d| d.ends_with("release")) {
        build.arg("--release");
    }
    match build.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(BuildError(format!(
            "building the workspace binaries failed ({status})"
        ))),
        Err(e) => Err(BuildError(format!("cannot run cargo: {e}"))),
    }
}

/// Runs a workspace tool (`exe`, e.g. `env!("CARGO_BIN_EXE_dc-chaos")`) as a user would, with `args`
/// then `--state-dir <dir>/state --json <dir>/figures.json`, and returns its stdout and the figures it
/// wrote. Panics with both outputs when it fails: it serves the tools' smoke tests. Under `cargo test`
/// the workspace's binaries are built already, and a nested build would wait for this run's lock, so
/// the tool is told it runs outside cargo.
pub fn run_for_figures(exe: &str, args: &[&str], dir: &Path) -> (String, serde_json::Value) {
    let json = dir.join("figures.json");
    let out = Command::new(exe)
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--json")
        .arg(&json)
        .env_remove("CARGO")
        .output()
        .unwrap_or_else(|e| panic!("{exe}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{exe} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("{exe} wrote no figures at {}", json.display()));
    (stdout, figures)
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Child {
    name: String,
    inner: std::process::Child,
    /// Started as the leader of its own process group, which is killed with it: what it started
    /// (chromedriver's Chromium) goes too.
    own_group: bool,
}

impl Child {
    /// Starts `program` with `args`, stdout and stderr appended to `log` (so a failing test can show them).
    pub fn spawn<I, S>(program: &Path, args: I, log: &Path) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_with_env(program, args, &[], log)
    }

    /// [`Self::spawn`] with `env` added to the inherited environment.
    pub fn spawn_with_env<I, S>(
        program: &Path,
        args: I,
        env: &[(&str, &OsStr)],
        log: &Path,
    ) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start(program, args, env, log, false)
    }

    /// [`Self::spawn`] as the leader of a process group of its own: killing it kills everything it
    /// started, even what it would have left behind.
    pub fn spawn_in_own_group<I, S>(program: &Path, args: I, log: &Path) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start(program, args, &[], log, true)
    }

    fn start<I, S>(
        program: &Path,
        args: I,
        env: &[(&str, &OsStr)],
        log: &Path,
        own_group: bool,
    ) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::os::unix::process::CommandExt as _;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(program);
        if own_group {
            command.process_group(0);
        }
        let inner = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display()))
            })?;
        Ok(Self {
            name: program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            inner,
            own_group,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Kills the process at once (no chance to clean up), as a crash or power loss would.
    pub fn kill9(&mut self) -> io::Result<ExitStatus> {
        match i32::try_from(self.inner.id()) {
            Ok(pid) if self.own_group => {
                let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            _ => {
                let _ = self.inner.kill();
            }
        }
        self.inner.wait()
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        if let Ok(pid) = i32::try_from(self.inner.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        self.inner.wait()
    }

    /// How it exited, once it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.inner.try_wait().ok().flatten()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.inner.try_wait(), Ok(None))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A group's leader may have exited and left the rest of the group running.
        if self.is_running() || self.own_group {
            let _ = self.kill9();
        }
    }
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.inner.id())
    }
}

/// Waits until `path` holds JSON (written atomically by the process that announces itself there), or
/// `timeout` passes. A process announces its bound ports this way, so tests can bind port 0.
pub fn wait_for_json(path: &Path, timeout: Duration) -> io::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(value) = serde_json::from_str(&text)
        {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not appear within {timeout:?}", path.display()),
            ));
        }
        // The announcing process is another program: there is no in-process event to await.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_is_killed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let child =
            Child::spawn(Path::new("/bin/sleep"), ["600"], &dir.path().join("log")).unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        drop(child);
        // Reaped: signalling the pid now fails.
        assert!(kill(pid, None).is_err());
    }

    #[test]
    fn announced_json_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        dc_certs::files::write_atomic(&path, br#"{"api":"127.0.0.1:1"}"#, 0o644).unwrap();
        let v = wait_for_json(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(v["api"], "127.0.0.1:1");
        assert!(wait_for_json(&dir.path().join("missing"), Duration::from_millis(50)).is_err());
    }
}
