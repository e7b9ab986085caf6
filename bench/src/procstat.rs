//! A process's memory and CPU time from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use std::path::PathBuf;

/// Errors reading `/proc`.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has no {field}")]
    Missing { path: PathBuf, field: &'static str },
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// Resident set size now, bytes.
    pub rss: u64,
    /// Highest resident set size so far (VmHWM), bytes.
    pub peak_rss: u64,
    /// User plus system CPU time so far, seconds.
    pub cpu_secs: f64,
}

/// Reads `pid`'s memory and CPU time.
pub fn sample(pid: u32) -> Result<ProcSample, ProcError> {
    let read = |name: &str| {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|source| ProcError::Read { path, source })
    };
    let (status_path, status) = read("status")?;
    let (stat_path, stat) = read("stat")?;
    let kib = |field: &'static str| {
        status_kib(&status, field).ok_or_else(|| ProcError::Missing {
            path: status_path.clone(),
            field,
        })
    };
    let ticks = stat_cpu_ticks(&stat).ok_or(ProcError::Missing {
        path: stat_path,
        field: "utime/stime",
    })?;
    Ok(ProcSample {
        rss: kib("VmRSS:")? * 1024,
        peak_rss: kib("VmHWM:")? * 1024,
        cpu_secs: ticks as f64 / clock_ticks_per_sec(),
    })
}

fn clock_ticks_per_sec() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// A `VmXXX:   1234 kB` field of `/proc/<pid>/status`, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`, in clock ticks. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_in_kib() {
        let status = "Name:\tdc-controller\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn cpu_ticks_after_a_command_name_with_spaces() {
        let stat = "42 (dc (con) troller) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss > 0 && s.peak_rss >= s.rss, "{s:?}");
    }
}
