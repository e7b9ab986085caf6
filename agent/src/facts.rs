//! What a heartbeat tells the controller: host facts, the cluster's root CA and its expiry alarms.

use std::sync::OnceLock;

use dc_certs::UnixTime;
use dc_certs::inspect::CertSummary;
use dc_protocol::{
    ALARM_ROOT_CA_EXPIRED, ALARM_ROOT_CA_EXPIRING_SOON, Alarm, AlarmSeverity, HostFacts,
    ROOT_CA_ALARM_ENTITY, RootCaInfo,
};

use crate::cluster::{Cluster, HostFile, HostRole};

/// Facts about the machine the agent runs on. Fields sysinfo cannot read stay empty rather than
/// failing the heartbeat. The ones that never change are read once per process: a fleet of agents in
/// one process shares them.
pub fn host_facts() -> HostFacts {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    static FIXED: OnceLock<HostFacts> = OnceLock::new();
    let fixed = FIXED.get_or_init(|| HostFacts {
        hostname: System::host_name().unwrap_or_default(),
        os: System::long_os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(0),
        ..HostFacts::default()
    });
    let memory = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map(|s| (s.total_memory(), s.used_memory()))
    .unwrap_or_default();
    HostFacts {
        uptime_secs: System::uptime().unwrap_or_default(),
        load_1m: System::load_average().map(|l| l.one).unwrap_or_default(),
        memory_total_bytes: memory.0,
        memory_used_bytes: memory.1,
        ..fixed.clone()
    }
}

/// The root CA the cluster trusts now: the first certificate of the first controller's `ca.crt`.
pub async fn root_ca(cluster: &impl Cluster) -> Option<CertSummary> {
    let hosts = cluster.hosts().await.ok()?;
    let first = hosts.iter().find(|h| h.role == HostRole::Controller)?;
    let bundle = cluster
        .read_file(&first.name, HostFile::CaCert)
        .await
        .ok()??;
    CertSummary::from_pem(&bundle).ok()
}

/// The heartbeat's view of a root CA.
pub fn root_ca_info(summary: &CertSummary) -> RootCaInfo {
    RootCaInfo {
        subject: summary.subject.clone(),
        serial: summary.serial.clone(),
        not_before: summary.not_before,
        not_after: summary.not_after,
    }
}

/// Alarms 500.210 (expired, critical) or 500.200 (expiring within `expiring_days`, major).
pub fn alarms(not_after: UnixTime, now: UnixTime, expiring_days: u32) -> Vec<Alarm> {
    let expiry = dc_certs::upload::format_time(not_after);
    if not_after <= now {
        vec![Alarm {
            id: ALARM_ROOT_CA_EXPIRED.to_owned(),
            entity: ROOT_CA_ALARM_ENTITY.to_owned(),
            severity: AlarmSeverity::Critical,
            reason: format!("Kubernetes root CA expired on {expiry}"),
        }]
    } else if not_after - now <= i64::from(expiring_days) * 86400 {
        vec![Alarm {
            id: ALARM_ROOT_CA_EXPIRING_SOON.to_owned(),
            entity: ROOT_CA_ALARM_ENTITY.to_owned(),
            severity: AlarmSeverity::Major,
            reason: format!("Kubernetes root CA expires on {expiry}"),
        }]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_are_read() {
        let facts = host_facts();
        assert!(facts.cpus > 0);
        assert!(facts.memory_total_bytes > 0);
    }

    #[test]
    fn expiry_alarms() {
        let now = 1_000_000_000;
        assert!(alarms(now + 31 * 86400, now, 30).is_empty());
        let soon = alarms(now + 29 * 86400, now, 30);
        assert_eq!(soon[0].id, ALARM_ROOT_CA_EXPIRING_SOON);
        assert_eq!(soon[0].severity, AlarmSeverity::Major);
        let expired = alarms(now - 1, now, 30);
        assert_eq!(expired[0].id, ALARM_ROOT_CA_EXPIRED);
        assert_eq!(expired[0].severity, AlarmSeverity::Critical);
    }
}
