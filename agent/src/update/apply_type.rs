//! How a host phase walks the hosts under the subcloud's `worker-apply-type`: controllers one at a
//! time (the API server stays reachable through the others), then workers one at a time or up to
//! `max-parallel-workers` at once. Pure decisions; `hosts` runs them.

use dc_protocol::{SubcloudOptions, WorkerApplyType};

use crate::cluster::{Host, HostRole};

/// The hosts of a phase in the order they are taken.
#[derive(Debug, PartialEq, Eq)]
pub struct HostOrder<'a> {
    pub controllers: Vec<&'a Host>,
    pub workers: Vec<&'a Host>,
    /// How many workers may be in flight at once.
    pub workers_at_once: usize,
}

/// Splits `hosts` (controllers first, then by name, as [`super::context::PhaseContext::sorted_hosts`]
/// gives them) by role.
pub fn order(hosts: &[Host], options: SubcloudOptions) -> HostOrder<'_> {
    let (controllers, workers) = hosts.iter().partition(|h| h.role == HostRole::Controller);
    HostOrder {
        controllers,
        workers,
        workers_at_once: options.workers_at_once(),
    }
}

/// Why an update cannot run with these options here: `ignore` would leave every worker's kubelet
/// trusting the old root CA alone once the API server's certificate comes from the new one, and those
/// nodes could no longer reach it.
pub fn refusal(options: SubcloudOptions, hosts: &[Host]) -> Option<String> {
    let workers: Vec<&str> = hosts
        .iter()
        .filter(|h| h.role == HostRole::Worker)
        .map(|h| h.name.as_str())
        .collect();
    (options.worker_apply_type == WorkerApplyType::Ignore && !workers.is_empty()).then(|| {
        format!(
            "worker-apply-type ignore would leave {} worker(s) ({}) with kubelets trusting the old root CA alone, unable to reach the API server after hosts update-certs; set worker-apply-type serial or parallel for this subcloud (dcmanager strategy-config update)",
            workers.len(),
            workers.join(", ")
        )
    })
}

/// What a host phase's progress says: how many hosts are done and which are in flight.
pub fn progress_details(done: usize, total: usize, in_flight: &[String]) -> String {
    match in_flight {
        [] => format!("{done} of {total} hosts done"),
        [one] => format!("host {} of {total}: {one}", done + 1),
        many => {
            const SHOWN: usize = 5;
            let mut names = many[..many.len().min(SHOWN)].join(", ");
            if many.len() > SHOWN {
                names.push_str(", …");
            }
            format!(
                "{done} of {total} hosts done, {} in progress: {names}",
                many.len()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dc_protocol::AlarmRestrictionType;

    fn hosts(controllers: usize, workers: usize) -> Vec<Host> {
        let named = |role, prefix, i| Host {
            name: format!("{prefix}-{i}"),
            role,
        };
        (0..controllers)
            .map(|i| named(HostRole::Controller, "controller", i))
            .chain((0..workers).map(|i| named(HostRole::Worker, "worker", i)))
            .collect()
    }

    fn options(worker_apply_type: WorkerApplyType, max: u16) -> SubcloudOptions {
        SubcloudOptions {
            worker_apply_type,
            max_parallel_workers: max,
            alarm_restriction_type: AlarmRestrictionType::Relaxed,
        }
    }

    #[test]
    fn controllers_always_one_at_a_time_and_workers_as_the_option_says() {
        let all = hosts(2, 50);
        let parallel = order(&all, options(WorkerApplyType::Parallel, 10));
        assert_eq!(parallel.controllers.len(), 2);
        assert_eq!(parallel.workers.len(), 50);
        assert_eq!(parallel.workers_at_once, 10);
        assert_eq!(
            order(&all, options(WorkerApplyType::Serial, 10)).workers_at_once,
            1
        );
    }

    #[test]
    fn ignore_is_refused_only_where_there_are_workers() {
        let why = refusal(options(WorkerApplyType::Ignore, 10), &hosts(2, 2)).unwrap();
        assert!(
            why.starts_with(
                "worker-apply-type ignore would leave 2 worker(s) (worker-0, worker-1)"
            ),
            "{why}"
        );
        assert_eq!(
            refusal(options(WorkerApplyType::Ignore, 10), &hosts(2, 0)),
            None
        );
        assert_eq!(
            refusal(options(WorkerApplyType::Parallel, 10), &hosts(2, 2)),
            None
        );
    }

    #[test]
    fn progress_names_the_hosts_in_flight() {
        assert_eq!(
            progress_details(0, 4, &["controller-0".into()]),
            "host 1 of 4: controller-0"
        );
        let seven: Vec<String> = (0..7).map(|i| format!("worker-{i}")).collect();
        assert_eq!(
            progress_details(12, 52, &seven),
            "12 of 52 hosts done, 7 in progress: worker-0, worker-1, worker-2, worker-3, worker-4, …"
        );
        assert_eq!(progress_details(52, 52, &[]), "52 of 52 hosts done");
    }
}
