//! A real, throwaway PostgreSQL server for the tests: Debian's own binaries (`pg_config --bindir`, else the
//! newest `/usr/lib/postgresql/*/bin`, installed by `.ci/run` when missing), a cluster made by `initdb`
//! in a temporary directory, `postgres` on a free loopback port with TLS on, and everything removed when
//! the value is dropped.
//!
//! `initdb` and `postgres` refuse to run as root (CI runs as root), so as root they run as the `postgres`
//! system user the Debian package creates (`setpriv`, which execs: the child is the postmaster itself),
//! and the directory is made theirs. The server listens only on 127.0.0.1 at a port of its own and keeps
//! its socket in its own directory, so a system cluster the package may have started (5432) is never
//! touched.
//!
//! TCP connections must use TLS (`hostssl` only in `pg_hba.conf`): the server's certificate is the
//! test PKI's `controller.crt` (for 127.0.0.1), so a client that trusts [`TestPostgres::ca`] verifies it.
//! The harness itself talks to the server over its Unix socket with `psql`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};

use crate::TestPki;
use crate::process::Child;

/// The role the cluster is initialised with (trusted: the tests need no password).
pub const ROLE: &str = "dc";

/// What went wrong starting or driving the server, with its log when there is one.
#[derive(Debug, thiserror::Error)]
#[error("postgresql: {0}")]
pub struct PostgresError(pub String);

type Result<T> = std::result::Result<T, PostgresError>;

fn err(e: impl std::fmt::Display) -> PostgresError {
    PostgresError(e.to_string())
}

/// Where Debian's PostgreSQL server binaries are: `pg_config --bindir` when it answers with a directory
/// holding `initdb`, else the newest `/usr/lib/postgresql/<major>/bin`.
pub fn bindir() -> Result<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| d.join("initdb").exists()) {
        return Ok(dir);
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| PostgresError(format!("no PostgreSQL server in /usr/lib/postgresql ({e}): install Debian's postgresql package (.ci/run does)")))?;
    newest_bindir(
        versions
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists()),
    )
    .ok_or_else(|| {
        PostgresError(
            "no initdb under /usr/lib/postgresql/*/bin: install Debian's postgresql package (.ci/run does)"
                .into(),
        )
    })
}

/// The `/usr/lib/postgresql/<major>/bin` of the highest major version (numerically: 9.6 < 15).
fn newest_bindir(dirs: impl Iterator<Item = PathBuf>) -> Option<PathBuf> {
    let major = |bin: &PathBuf| -> Vec<u32> {
        bin.parent()
            .and_then(Path::file_name)
            .map(|v| {
                v.to_string_lossy()
                    .split('.')
                    .map(|p| p.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    };
    dirs.max_by_key(major)
}

/// A running throwaway cluster.
pub struct TestPostgres {
    port: u16,
    bindir: PathBuf,
    /// The cluster's directory (`data/`, the socket, `postgres.log`, the server's key).
    dir: tempfile::TempDir,
    pki: TestPki,
    server: Option<Child>,
    /// The user the server runs as when the tests run as root.
    run_as: Option<User>,
    /// Whether commits are flushed to disk (`fsync`, `full_page_writes`), as on a production server.
    durable: bool,
}

impl TestPostgres {
    /// Makes a cluster with `initdb` and starts it on a free loopback port; returns once it takes
    /// connections. Nothing is flushed to disk: throwaway data, fast tests.
    pub fn start() -> Result<Self> {
        Self::start_with(false)
    }

    /// [`Self::start`] with every commit flushed to disk (PostgreSQL's defaults), so what a commit
    /// costs compares with a production server and with SQLite's `synchronous = FULL`: for the
    /// benchmark's figures.
    pub fn start_durable() -> Result<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Result<Self> {
        let bindir = bindir()?;
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(User::from_name("postgres").map_err(err)?.ok_or_else(|| {
                PostgresError(
                    "running as root, and there is no `postgres` user to run the server as \
                     (Debian's postgresql package creates it)"
                        .into(),
                )
            })?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("dc-pg-")
            .tempdir()
            .map_err(err)?;
        let pki = TestPki::new().map_err(err)?;
        let mut pg = Self {
            port: 0,
            bindir,
            dir,
            pki,
            server: None,
            run_as,
            durable,
        };
        pg.own(pg.dir.path())?;
        pg.init()?;
        pg.serve()?;
        Ok(pg)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (PEM file).
    pub fn ca(&self) -> PathBuf {
        self.pki.file("ca.crt")
    }

    /// Creates a database and answers its URL (TLS required, trusted role [`ROLE`]).
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }

    /// The URL of database `name` over TCP, TLS required.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgresql://{ROLE}@127.0.0.1:{}/{name}?sslmode=require",
            self.port
        )
    }

    /// Runs SQL as the superuser over the Unix socket and answers its unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in("postgres", sql)
    }

    /// [`Self::psql`] in database `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        let out = self
            .command(&self.bindir.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                ROLE,
                "-h",
            ])
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-d", database, "-c", sql])
            .output()
            .map_err(err)?;
        if !out.status.success() {
            return Err(PostgresError(format!(
                "psql `{sql}`: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// How to run one of the server's binaries: as the server's user when the tests run as root
    /// (`setpriv` execs it, so the process started is the program itself).
    fn invocation(&self, program: &Path) -> (PathBuf, Vec<OsString>) {
        match &self.run_as {
            Some(user) => (
                PathBuf::from("setpriv"),
                vec![
                    format!("--reuid={}", user.uid).into(),
                    format!("--regid={}", user.gid).into(),
                    "--clear-groups".into(),
                    "--".into(),
                    program.into(),
                ],
            ),
            None => (program.to_owned(), Vec::new()),
        }
    }

    /// A command for one of the server's binaries, as the server's user.
    fn command(&self, program: &Path) -> Command {
        let (program, args) = self.invocation(program);
        let mut c = Command::new(program);
        // HOME stays root's otherwise, which psql would try to read (.psqlrc, history).
        c.args(args).env("HOME", self.dir.path());
        c
    }

    fn own(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(err)?;
        }
        Ok(())
    }

    fn init(&self) -> Result<()> {
        let out = self
            .command(&self.bindir.join("initdb"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-U",
                ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .map_err(err)?;
        if !out.status.success() {
            return Err(PostgresError(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // TCP only with TLS; the harness's own psql over the socket.
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
        std::fs::write(self.dir.path().join("data/pg_hba.conf"), hba).map_err(err)?;
        // The server refuses a key others can read, and reads it as its own user.
        for (from, to) in [
            ("controller.crt", "server.crt"),
            ("controller.key", "server.key"),
        ] {
            let to = self.dir.path().join(to);
            std::fs::copy(self.pki.file(from), &to).map_err(err)?;
            self.own(&to)?;
        }
        Ok(())
    }

    /// Starts `postgres` on a free port; a port taken between choosing and binding is retried.
    fn serve(&mut self) -> Result<()> {
        let log = self.dir.path().join("postgres.log");
        let mut last = String::new();
        for _ in 0..3 {
            self.port = free_port()?;
            let d = self.dir.path();
            let (program, mut args) = self.invocation(&self.bindir.join("postgres"));
            args.extend(
                [
                    "-D".into(),
                    d.join("data").into_os_string(),
                    "-p".into(),
                    self.port.to_string().into(),
                    "-k".into(),
                    d.as_os_str().to_owned(),
                    "-c".into(),
                    "listen_addresses=127.0.0.1".into(),
                    "-c".into(),
                    "ssl=on".into(),
                    "-c".into(),
                    format!("ssl_cert_file={}", d.join("server.crt").display()).into(),
                    "-c".into(),
                    format!("ssl_key_file={}", d.join("server.key").display()).into(),
                ]
                .map(OsString::from),
            );
            if !self.durable {
                // Throwaway data: nothing flushed to disk (a crash of the machine is not tested).
                args.extend(["-c", "fsync=off", "-c", "full_page_writes=off"].map(OsString::from));
            }
            let mut child = Child::spawn(&program, args, &log).map_err(err)?;
            let ready = self.wait_ready(&mut child);
            self.server = Some(child);
            match ready {
                Ok(()) => return Ok(()),
                Err(e) => last = e.0,
            }
            self.server = None;
        }
        Err(PostgresError(format!("{last}\n{}", self.log())))
    }

    /// Polls `pg_isready` until the server takes connections, it exits, or 30 s pass.
    fn wait_ready(&self, child: &mut Child) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.exit_status() {
                return Err(PostgresError(format!("postgres exited: {status}")));
            }
            let ready = self
                .command(&self.bindir.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.dir.path())
                .arg("-p")
                .arg(self.port.to_string())
                .status()
                .map_err(err)?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PostgresError("postgres not ready within 30 s".into()));
            }
            // Another program's readiness: there is no event to await.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestPostgres {
    /// A fast shutdown (SIGINT: clients disconnected, then a clean stop), so no backend outlives the
    /// test; a server that does not stop within 10 s is killed when its [`Child`] drops.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Ok(pid) = i32::try_from(server.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    Ok(listener.local_addr().map_err(err)?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_major_version_is_chosen_numerically() {
        let dirs =
            ["9.6", "15", "13"].map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")));
        assert_eq!(
            newest_bindir(dirs.into_iter()),
            Some(PathBuf::from("/usr/lib/postgresql/15/bin"))
        );
        assert_eq!(newest_bindir(std::iter::empty()), None);
    }

    #[test]
    fn a_durable_cluster_flushes_commits_and_a_fast_one_does_not() {
        let durable = TestPostgres::start_durable().unwrap();
        assert_eq!(durable.psql("SHOW fsync").unwrap(), "on");
        assert_eq!(durable.psql("SHOW full_page_writes").unwrap(), "on");
        let fast = TestPostgres::start().unwrap();
        assert_eq!(fast.psql("SHOW fsync").unwrap(), "off");
        assert_eq!(fast.psql("SHOW full_page_writes").unwrap(), "off");
    }

    #[test]
    fn a_throwaway_cluster_serves_sql_and_is_gone_when_dropped() {
        let pg = TestPostgres::start().unwrap();
        pg.create_database("scratch").unwrap();
        assert_eq!(pg.psql("SELECT 1 + 1").unwrap(), "2");
        // TLS is on (plain TCP is refused: the store tests show it).
        assert_eq!(pg.psql("SHOW ssl").unwrap(), "on");
        let dir = pg.dir.path().to_owned();
        let pid = pg.server.as_ref().map(Child::id).unwrap();
        let port = pg.port();
        drop(pg);
        assert!(!dir.exists(), "the cluster's directory is removed");
        assert!(
            kill(Pid::from_raw(pid as i32), None).is_err(),
            "the server is stopped"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens on its port any more"
        );
    }
}
