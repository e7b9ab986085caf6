//! A controller out of file descriptors backs off instead of spinning: peers that pile up on the agent
//! port while its open-file limit is reached cost a few log lines, not millions, and once they are
//! gone the REST API answers and the fleet's agent is still online.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;

use common::*;
use dc_test_support::fleet::Fleet;

/// Silent peers dialled at once: a few hold the descriptors left, the rest wait in the backlog.
const PEERS: usize = 12;

#[test]
fn a_controller_at_its_open_file_limit_backs_off_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fleet = Fleet::prepare(dir.path(), light(&["fd1"])).expect("prepare");
    // Each silent peer holds a descriptor for a second before the controller closes it.
    fleet.controller_settings.handshake_timeout_secs = 1;
    fleet.launch().unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));

    // Lower the running controller's limit to what it holds now plus a few.
    let pid = fleet.controller_pid().expect("controller running");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd table")
        .count();
    let limit = open + 4;
    let status = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit");
    assert!(status.success(), "prlimit failed");

    // The peers beyond the limit wait while the controller is out of descriptors, for several
    // handshake timeouts in all; each is closed by the controller in its turn.
    let (cpu_before, wall) = (cpu_ticks(pid), std::time::Instant::now());
    let peers: Vec<TcpStream> = (0..PEERS)
        .map(|_| TcpStream::connect(&fleet.agents_addr).expect("connect"))
        .collect();
    for mut peer in peers {
        peer.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut buf = [0u8; 16];
        match peer.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a silent peer was not closed by the controller: {other:?}"),
        }
    }
    // Waiting for descriptors costs the controller next to no CPU: a loop retrying at once burns a
    // whole core for as long as they lack.
    let busy = (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_second();
    let elapsed = wall.elapsed().as_secs_f64();
    assert!(
        busy < elapsed / 2.0,
        "the controller used {busy:.2} s of CPU in {elapsed:.2} s out of descriptors"
    );

    // The controller serves again, its agent still online.
    let online = fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(online[0]["availability"], "online", "{online}");
    // A busy loop logged millions of lines in seconds; backing off logs once per episode, then once a
    // minute.
    let log = fleet.log("controller");
    let failures = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("accept failed")
        .count();
    assert!(
        (1..=PEERS).contains(&failures),
        "{failures} accept failures logged; see {}",
        log.display()
    );
}

/// User plus system CPU time of process `pid`, in clock ticks (`/proc/<pid>/stat`, fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Clock ticks per second, as `getconf CLK_TCK` prints it.
fn ticks_per_second() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}
