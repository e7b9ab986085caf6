//! The subcloud options an update runs with: upstream's `strategy-config` (sw-update-options) values
//! that apply inside a subcloud, resolved by the controller and carried to the agent with the start.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the host phases treat worker hosts (upstream `worker-apply-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerApplyType {
    /// One worker at a time, after the controllers.
    Serial,
    /// Up to `max-parallel-workers` workers at once, after the controllers (upstream's default).
    #[default]
    Parallel,
    /// Workers are not updated. After `hosts trust-new-ca` their kubelets would trust the old root CA
    /// alone and could no longer reach the API server, so the start refuses a subcloud that has any.
    Ignore,
}

/// Whether findings of the health gate stop the start (upstream `alarm-restriction-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmRestrictionType {
    /// Any finding refuses the start.
    Strict,
    /// Findings are reported and the update goes on (upstream's default).
    #[default]
    Relaxed,
}

/// How storage hosts are updated (upstream `storage-apply-type`). A root CA update has no storage
/// phase of its own: accepted, stored and shown for compatibility, never carried to an agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageApplyType {
    Serial,
    #[default]
    Parallel,
}

/// What happens to instances on a host being updated (upstream `default-instance-action`). Nothing
/// here migrates instances: accepted, stored and shown for compatibility, never carried to an agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultInstanceAction {
    StopStart,
    #[default]
    Migrate,
}

/// The options one subcloud's update runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubcloudOptions {
    pub worker_apply_type: WorkerApplyType,
    /// At most this many workers in flight in a host phase with `parallel` (upstream's default 10).
    pub max_parallel_workers: u16,
    pub alarm_restriction_type: AlarmRestrictionType,
}

/// Upstream's default for `max-parallel-workers`.
pub const DEFAULT_MAX_PARALLEL_WORKERS: u16 = 10;

impl Default for SubcloudOptions {
    fn default() -> Self {
        Self {
            worker_apply_type: WorkerApplyType::default(),
            max_parallel_workers: DEFAULT_MAX_PARALLEL_WORKERS,
            alarm_restriction_type: AlarmRestrictionType::default(),
        }
    }
}

impl SubcloudOptions {
    /// How many workers a host phase may update at once.
    pub fn workers_at_once(&self) -> usize {
        match self.worker_apply_type {
            WorkerApplyType::Parallel => usize::from(self.max_parallel_workers.max(1)),
            WorkerApplyType::Serial | WorkerApplyType::Ignore => 1,
        }
    }
}

impl fmt::Display for SubcloudOptions {
    /// As the step details show them: upstream's option names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker-apply-type {}", self.worker_apply_type)?;
        if self.worker_apply_type == WorkerApplyType::Parallel {
            write!(f, ", max-parallel-workers {}", self.max_parallel_workers)?;
        }
        write!(
            f,
            ", alarm-restriction-type {}",
            self.alarm_restriction_type
        )
    }
}

/// An option value that is not one of upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {option}: use one of {allowed}")]
pub struct OptionValueError {
    pub option: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

macro_rules! option_names {
    ($ty:ty, $option:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = OptionValueError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(OptionValueError {
                        option: $option,
                        value: value.to_owned(),
                        allowed: concat!($($name, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }
    };
}

option_names!(WorkerApplyType, "worker-apply-type", Serial => "serial", Parallel => "parallel", Ignore => "ignore");
option_names!(AlarmRestrictionType, "alarm-restriction-type", Strict => "strict", Relaxed => "relaxed");
option_names!(StorageApplyType, "storage-apply-type", Serial => "serial", Parallel => "parallel");
option_names!(DefaultInstanceAction, "default-instance-action", StopStart => "stop-start", Migrate => "migrate");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_wrong_one_says_what_is_allowed() {
        for t in [
            WorkerApplyType::Serial,
            WorkerApplyType::Parallel,
            WorkerApplyType::Ignore,
        ] {
            assert_eq!(t.as_str().parse::<WorkerApplyType>(), Ok(t));
        }
        let e = "paralel".parse::<WorkerApplyType>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"paralel\" is not a valid worker-apply-type: use one of serial parallel ignore"
        );
        assert_eq!("strict".parse(), Ok(AlarmRestrictionType::Strict));
        assert_eq!("stop-start".parse(), Ok(DefaultInstanceAction::StopStart));
        assert_eq!(
            "ignore"
                .parse::<StorageApplyType>()
                .unwrap_err()
                .to_string(),
            "\"ignore\" is not a valid storage-apply-type: use one of serial parallel"
        );
    }

    #[test]
    fn missing_options_mean_upstreams_defaults() {
        let o: SubcloudOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, SubcloudOptions::default());
        assert_eq!(o.workers_at_once(), 10);
        assert_eq!(
            o.to_string(),
            "worker-apply-type parallel, max-parallel-workers 10, alarm-restriction-type relaxed"
        );
        let serial = SubcloudOptions {
            worker_apply_type: WorkerApplyType::Serial,
            ..o
        };
        assert_eq!(serial.workers_at_once(), 1);
    }
}
