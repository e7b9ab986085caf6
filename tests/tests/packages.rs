//! The Debian packages as an operator installs them (this test needs root, as CI has): it builds
//! dc-controller, dc-agent and dcmanager with cargo-deb from the binaries this `cargo test` built
//! (`deploy/debian/build-packages.sh --binaries`), installs them with `dpkg -i`, checks their files,
//! the dc-rootca user and the modes, runs `systemd-analyze verify` and `security` on the installed units,
//! lays out the PKI with the installed `dc-certs` as deploy/README.md says, and runs the installed
//! controller as its unit does: the unit's ExecStart, as its User/Group (setpriv, with the unit's
//! NoNewPrivileges and empty capability bounding set), with the unit's Environment, a NOTIFY_SOCKET
//! this test listens on and a watchdog. It awaits READY=1, asks the REST API through the installed
//! `dcmanager`, runs the installed agent (root, as its unit says) on the packaged simulated example with
//! a certificate from the installed `dc-certs issue-agent` until the subcloud is online, sees the
//! watchdog pinged, proves the controller's user cannot read `ca.key` (a controller told to use it stops
//! with "Permission denied"), then `dpkg --purge` and checks the files are gone. The packages are purged
//! on failure too.
#![allow(
    clippy::print_stderr,
    reason = "the test reports what it measured (package build, install and purge times, package sizes, exposure scores)"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dc_test_support::process::{Child, bin_path};

const PACKAGES: [&str; 3] = ["dc-controller", "dc-agent", "dcmanager"];
const ETC: &str = "/etc/dc-rootca";
const ADMIN_TOKEN: &str = "package-test-admin-token";
const READER_TOKEN: &str = "package-test-reader-token";
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn the_packages_install_run_the_controller_as_its_unit_does_and_purge_clean() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test installs Debian packages with dpkg, creates the dc-rootca system user and runs the \
         controller as that user: it needs root (CI runs as root), and dpkg, systemd (systemd-analyze, \
         systemd-sysusers, systemd-tmpfiles) and setpriv (util-linux) on the machine"
    );
    for package in PACKAGES {
        assert!(
            !installed(package),
            "{package} is already installed on this machine: this test installs and purges it, so it \
             refuses to run over an operator's install"
        );
    }
    assert!(
        !Path::new(ETC).exists(),
        "{ETC} exists: this test writes its PKI and configuration there and removes it afterwards, so \
         it refuses to run over an operator's files"
    );
    let work = tempfile::tempdir().expect("tempdir");

    let debs = build_packages(work.path());
    let guard = Installed;
    let started = Instant::now();
    run_ok(Command::new("dpkg").arg("-i").args(&debs));
    eprintln!("dpkg -i of the three packages: {:?}", started.elapsed());

    check_files();
    let user = nix::unistd::User::from_name("dc-rootca")
        .expect("getpwnam")
        .expect("the package created the dc-rootca user");
    assert!(user.uid.as_raw() < 1000, "a system user: {}", user.uid);
    assert_eq!(user.shell, Path::new("/usr/sbin/nologin"));
    assert_eq!(user.dir, Path::new("/var/lib/dc-rootca"));
    let state = std::fs::metadata("/var/lib/dc-rootca").expect("the state directory exists");
    assert_eq!(state.permissions().mode() & 0o7777, 0o700);
    assert_eq!(
        (state.uid(), state.gid()),
        (user.uid.as_raw(), user.gid.as_raw())
    );
    let config = Path::new(ETC).join("controller.toml");
    let meta = std::fs::metadata(&config).expect("the controller's configuration");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o640,
        "it holds the tokens"
    );
    assert_eq!((meta.uid(), meta.gid()), (0, user.gid.as_raw()));
    for (package, conffile) in [
        ("dc-controller", "/etc/dc-rootca/controller.toml"),
        ("dc-agent", "/etc/dc-rootca/agent.toml"),
    ] {
        let listed = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", package]));
        assert!(listed.contains(conffile), "{package}: {listed}");
    }

    let controller_unit = unit_path("dc-controller");
    let agent_unit = unit_path("dc-agent");
    for unit in [&controller_unit, &agent_unit] {
        run_ok(Command::new("systemd-analyze").arg("verify").arg(unit));
    }
    let controller_exposure = exposure(&controller_unit);
    let agent_exposure = exposure(&agent_unit);
    eprintln!(
        "systemd-analyze security --offline=true: dc-controller {controller_exposure}, dc-agent {agent_exposure}"
    );
    assert!(controller_exposure <= 2.0, "{controller_exposure}");
    assert!(agent_exposure <= 4.0, "{agent_exposure}");

    // The operator's steps (deploy/README.md): the PKI with the controller's files for its group, then
    // the tokens (and, here, ports chosen by the kernel) in the installed configuration.
    run_ok(Command::new("/usr/bin/dc-certs").args([
        "init",
        "--out",
        "/etc/dc-rootca/pki",
        "--controller-out",
        "/etc/dc-rootca/controller",
        "--group",
        "dc-rootca",
    ]));
    let shipped = std::fs::read_to_string(&config).expect("read the configuration");
    let edited = shipped
        .replace("CHANGE-ME-admin-token", ADMIN_TOKEN)
        .replace("CHANGE-ME-reader-token", READER_TOKEN)
        .replace("listen = \"127.0.0.1:8119\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"0.0.0.0:8120\"", "listen = \"127.0.0.1:0\"");
    assert_eq!(
        edited.matches("127.0.0.1:0").count(),
        2,
        "both listeners moved"
    );
    // Written in place: the file keeps its owner, group and mode.
    std::fs::write(&config, edited).expect("edit the configuration");

    let unit = Unit::read(&controller_unit);
    assert_eq!(unit.get("Type"), Some("notify"));
    assert_eq!(unit.get("User"), Some("dc-rootca"));
    let ca_key = Path::new("/etc/dc-rootca/pki/ca.key");
    let own_key = Path::new("/etc/dc-rootca/controller/controller.key");
    assert!(
        run_as(&unit, ["cat"])
            .arg(own_key)
            .output()
            .expect("cat")
            .status
            .success(),
        "the unit's user reads its own key"
    );
    let denied = run_as(&unit, ["cat"]).arg(ca_key).output().expect("cat");
    assert!(
        !denied.status.success()
            && String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "the unit's user cannot read the CA key: {denied:?}"
    );

    let notify = Notify::bind(work.path());
    let log = work.path().join("controller.log");
    let mut controller = unit
        .spawn(&notify, &[("WATCHDOG_USEC", "2000000")], &log)
        .expect("start the controller");
    let ready = notify.wait_for("READY", WAIT, &log);
    assert_eq!(
        proc_uid(controller.id()),
        user.uid.as_raw(),
        "the controller runs as dc-rootca"
    );
    assert_eq!(ready.get("READY").map(String::as_str), Some("1"));
    let status = ready.get("STATUS").cloned().unwrap_or_default();
    let api = status
        .split("REST API on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("the status names the API's address: {status}"));

    // A real REST request, through the installed CLI: one write as admin, read back as reader.
    let url = format!("http://{api}/v1.0");
    run_ok(dcmanager(&url, ADMIN_TOKEN).args([
        "subcloud",
        "add",
        "--name",
        "packaged1",
        "--description",
        "added by the package test",
    ]));
    let listed = run_ok(dcmanager(&url, READER_TOKEN).args(["subcloud", "list"]));
    assert!(listed.contains("packaged1"), "{listed}");

    // The subcloud's steps, on this same machine: its certificate from the installed dc-certs, the
    // packaged simulated example as agent.toml, the agent run as its unit runs it.
    run_ok(Command::new("/usr/bin/dc-certs").args([
        "issue-agent",
        "--ca",
        "/etc/dc-rootca/pki",
        "--name",
        "packaged1",
        "--out",
        "/etc/dc-rootca/agent",
    ]));
    let agents = status
        .split("agents on ")
        .nth(1)
        .unwrap_or_else(|| panic!("the status names the agent listener: {status}"));
    let example = std::fs::read_to_string("/usr/share/doc/dc-agent/examples/agent-simulated.toml")
        .expect("the simulated example");
    let agent_config = example
        .replace("subcloud = \"subcloud1\"", "subcloud = \"packaged1\"")
        .replace(
            "address = \"controller.example.com:8120\"",
            &format!("address = \"{agents}\""),
        )
        .replace(
            "server_name = \"controller.example.com\"",
            "server_name = \"localhost\"",
        );
    std::fs::write(Path::new(ETC).join("agent.toml"), agent_config).expect("agent.toml");
    let agent_log = work.path().join("agent.log");
    let agent = Unit::read(&agent_unit)
        .spawn(&notify, &[], &agent_log)
        .expect("start the agent");
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = run_ok(dcmanager(&url, READER_TOKEN).args([
            "subcloud",
            "show",
            "packaged1",
            "-f",
            "json",
        ]));
        let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
        if shown["availability"] == "online" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the packaged agent did not come online: {shown}; its log: {}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        Path::new("/var/lib/dc-rootca-agent/update").is_dir(),
        "the agent's state directory"
    );
    drop(agent);

    let ping = notify.wait_for("WATCHDOG", Duration::from_secs(10), &log);
    assert_eq!(ping.get("WATCHDOG").map(String::as_str), Some("1"));
    let database = std::fs::metadata("/var/lib/dc-rootca/controller.sqlite").expect("database");
    assert_eq!(database.uid(), user.uid.as_raw(), "written by the service");

    let exit = controller.terminate().expect("stop the controller");
    assert!(exit.success(), "it stops cleanly on SIGTERM: {exit}");
    notify.wait_for("STOPPING", Duration::from_secs(5), &log);

    // The same controller told to renew agent certificates with the CA key stops at start: its user
    // cannot read that key.
    let renewal_log = work.path().join("renewal.log");
    let mut refused = unit
        .spawn(
            &notify,
            &[("DC_CONTROLLER__PKI__CA_KEY", "/etc/dc-rootca/pki/ca.key")],
            &renewal_log,
        )
        .expect("start the controller with ca_key");
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = refused.exit_status() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the controller did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&renewal_log).unwrap_or_default();
    assert!(
        !exit.success() && said.contains("ca.key") && said.contains("Permission denied"),
        "{exit}: {said}"
    );

    let started = Instant::now();
    run_ok(Command::new("dpkg").arg("--purge").args(PACKAGES));
    eprintln!("dpkg --purge: {:?}", started.elapsed());
    for package in PACKAGES {
        assert!(!installed(package), "{package} is purged");
    }
    for path in INSTALLED_FILES.iter().chain(&[
        "/etc/dc-rootca/controller.toml",
        "/etc/dc-rootca/agent.toml",
        "/var/lib/dc-rootca",
        "/var/lib/dc-rootca-agent",
    ]) {
        assert!(!Path::new(path).exists(), "{path} is gone after the purge");
    }
    // What dpkg leaves on purge: the operator's PKI (dc-certs made it), and the system user.
    assert!(ca_key.exists(), "the operator's PKI stays");
    drop(guard);
    assert!(!Path::new(ETC).exists());
}

/// Files the packages install, beyond the configuration.
const INSTALLED_FILES: &[&str] = &[
    "/usr/bin/dc-controller",
    "/usr/bin/dc-certs",
    "/usr/bin/dc-agent",
    "/usr/bin/dcmanager",
    "/usr/lib/systemd/system/dc-controller.service",
    "/usr/lib/systemd/system/dc-agent.service",
    "/usr/lib/sysusers.d/dc-controller.conf",
    "/usr/lib/tmpfiles.d/dc-controller.conf",
    "/usr/share/bash-completion/completions/dcmanager",
    "/usr/share/zsh/vendor-completions/_dcmanager",
    "/usr/share/fish/vendor_completions.d/dcmanager.fish",
    "/usr/share/man/man1/dc-controller.1.gz",
    "/usr/share/man/man1/dc-certs.1.gz",
    "/usr/share/man/man1/dc-agent.1.gz",
    "/usr/share/man/man1/dcmanager.1.gz",
    "/usr/share/man/man1/dcmanager-kube-rootca-update-strategy-create.1.gz",
    "/usr/share/doc/dc-agent/examples/agent-simulated.toml",
];

fn check_files() {
    for path in INSTALLED_FILES {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let want = if path.starts_with("/usr/bin/") {
            0o755
        } else {
            0o644
        };
        assert_eq!(meta.permissions().mode() & 0o7777, want, "{path}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
    }
    // Stripped binaries: no symbol table left.
    for bin in ["dc-controller", "dc-certs", "dc-agent", "dcmanager"] {
        let sections = run_ok(Command::new("objdump").args(["-h", &format!("/usr/bin/{bin}")]));
        assert!(!sections.contains(".debug_info"), "{bin} is stripped");
        let symbols = Command::new("nm")
            .arg(format!("/usr/bin/{bin}"))
            .output()
            .expect("nm");
        assert!(
            String::from_utf8_lossy(&symbols.stderr).contains("no symbols"),
            "{bin} has no symbol table"
        );
    }
    // The completions and man pages are the binaries' own.
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/dcmanager").unwrap();
    assert!(bash.contains("kube-rootca-update-strategy"));
    let agent = std::fs::read_to_string("/etc/dc-rootca/agent.toml").expect("agent.toml");
    assert!(
        agent.contains("data_dir = \"/var/lib/dc-rootca-agent\""),
        "{agent}"
    );
}

/// Builds the three packages from this run's binaries, or takes those in `DC_ROOTCA_DEBS` (a directory
/// holding only them, e.g. the release build's `target/debian`); returns their paths.
fn build_packages(work: &Path) -> Vec<PathBuf> {
    let started = Instant::now();
    let out = match std::env::var_os("DC_ROOTCA_DEBS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let binaries = bin_path("dc-controller")
                .parent()
                .expect("the binaries' directory")
                .to_owned();
            let out = work.join("debs");
            run_ok(
                Command::new("bash")
                    .arg(root.join("deploy/debian/build-packages.sh"))
                    .arg("--binaries")
                    .arg(&binaries)
                    .arg(&out),
            );
            out
        }
    };
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("the packages' directory")
        .map(|e| e.expect("entry").path())
        .collect();
    debs.sort();
    let sizes: Vec<String> = debs
        .iter()
        .map(|d| {
            let size = std::fs::metadata(d).map(|m| m.len()).unwrap_or_default();
            format!(
                "{} {} KiB",
                d.file_name().unwrap_or_default().to_string_lossy(),
                size / 1024
            )
        })
        .collect();
    eprintln!(
        "packages ready (built, or from DC_ROOTCA_DEBS) in {:?}: {}",
        started.elapsed(),
        sizes.join(", ")
    );
    assert_eq!(debs.len(), 3, "{debs:?}");
    debs
}

/// Purges the packages and removes what the test wrote under /etc/dc-rootca when dropped, so a failing
/// test leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .arg("--purge")
            .args(PACKAGES)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(ETC);
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

fn unit_path(package: &str) -> PathBuf {
    let files = run_ok(Command::new("dpkg").args(["-L", package]));
    let suffix = format!("/systemd/system/{package}.service");
    files
        .lines()
        .find(|l| l.ends_with(&suffix))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{package} installs no {suffix}: {files}"))
}

/// `systemd-analyze security --offline=true`'s overall exposure (0 best, 10 worst).
fn exposure(unit: &Path) -> f64 {
    let out = run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit),
    );
    out.lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|score| score.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"))
}

/// The [Service] settings of a unit file that say how it runs.
struct Unit(BTreeMap<String, Vec<String>>);

impl Unit {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).expect("read the unit");
        let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut in_service = false;
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
            } else if let (true, Some((key, value))) = (in_service, line.split_once('=')) {
                settings
                    .entry(key.to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
        }
        Self(settings)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.last()).map(String::as_str)
    }

    /// The unit's user and group, with what setpriv can apply of its sandbox.
    fn setpriv(&self) -> Vec<String> {
        let user = self.get("User").unwrap_or("root");
        let group = self.get("Group").unwrap_or(user);
        let mut args = vec![
            format!("--reuid={user}"),
            format!("--regid={group}"),
            "--init-groups".to_owned(),
        ];
        if self.get("NoNewPrivileges") == Some("yes") {
            args.push("--no-new-privs".to_owned());
        }
        if self.get("CapabilityBoundingSet") == Some("") {
            args.push("--bounding-set=-all".to_owned());
        }
        args
    }

    /// The environment systemd gives the service: its Environment= lines and the user's basics.
    fn environment(&self) -> Vec<String> {
        let user = self.get("User").unwrap_or("root");
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".to_owned(),
            format!("USER={user}"),
            format!("LOGNAME={user}"),
        ];
        for line in self.0.get("Environment").into_iter().flatten() {
            env.extend(line.split_whitespace().map(str::to_owned));
        }
        env
    }

    /// Starts ExecStart as the unit would: a clean environment (plus `extra`), the unit's user, `/` as
    /// working directory, the notify socket.
    fn spawn(&self, notify: &Notify, extra: &[(&str, &str)], log: &Path) -> std::io::Result<Child> {
        let exec = self.get("ExecStart").expect("ExecStart=");
        let mut args: Vec<String> = vec!["-i".to_owned()];
        args.extend(self.environment());
        args.push(format!("NOTIFY_SOCKET={}", notify.path.display()));
        args.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        args.push("setpriv".to_owned());
        args.extend(self.setpriv());
        args.push("--".to_owned());
        args.extend(exec.split_whitespace().map(str::to_owned));
        Child::spawn(Path::new("/usr/bin/env"), &args, log)
    }
}

/// `program` run as the unit's user, as the service would be.
fn run_as<const N: usize>(unit: &Unit, program: [&str; N]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(unit.setpriv())
        .arg("--")
        .args(program)
        .current_dir("/");
    cmd
}

/// The service manager's end of `sd_notify`: a datagram socket the service's user may write to.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(work: &Path) -> Self {
        // The test's temporary directory is root's 0700: the socket lives in a directory the service's
        // user can reach.
        let dir = work.join("notify");
        std::fs::create_dir(&dir).expect("notify dir");
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        Self { socket, path }
    }

    /// Waits for a message that sets `key`, returning its fields.
    fn wait_for(&self, key: &str, timeout: Duration, log: &Path) -> BTreeMap<String, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {key}= on the notify socket within {timeout:?}; the service's log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let fields = parse_notify(&String::from_utf8_lossy(&buf[..n]));
            if fields.contains_key(key) {
                return fields;
            }
        }
    }
}

/// An sd_notify(3) message: one `KEY=value` per line.
fn parse_notify(message: &str) -> BTreeMap<String, String> {
    message
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn dcmanager(url: &str, token: &str) -> Command {
    let mut cmd = Command::new("/usr/bin/dcmanager");
    cmd.env("DCMANAGER_URL", url).env("OS_AUTH_TOKEN", token);
    cmd
}

fn proc_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("Uid line")
}

/// Runs a command, panicking with its output when it fails; returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
