//! Upstream's sw-update-options (`dcmanager strategy-config`): the default entry and per-subcloud
//! entries as records, their JSON shape (dcmanager's `sw_update_opts_w_name_db_model_to_dict`), and
//! the options a subcloud's update runs with.

use dc_protocol::{
    AlarmRestrictionType, DefaultInstanceAction, StorageApplyType, SubcloudOptions, WorkerApplyType,
};
use serde_json::{Value, json};

/// The `subcloud-id` of the default entry, as dcmanager stores it.
pub const DEFAULT_SUBCLOUD_ID: i64 = 0;
/// The name the default entry is shown with (dcmanager's `SW_UPDATE_DEFAULT_TITLE`).
pub const DEFAULT_TITLE: &str = "all clouds default";
/// The largest `max-parallel-workers` taken: more workers than any subcloud has.
pub const MAX_PARALLEL_WORKERS_LIMIT: u16 = 1000;

/// Whether a path's subcloud reference names the default entry: dcmanager takes the system
/// controller's region name, and `RegionOne` from older clients.
pub fn is_default_ref(r: &str) -> bool {
    r == "SystemController" || r == "RegionOne"
}

/// One entry: the default one (`subcloud_id` 0) or a subcloud's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsEntry {
    pub id: i64,
    pub subcloud_id: i64,
    pub storage_apply_type: StorageApplyType,
    pub worker_apply_type: WorkerApplyType,
    pub max_parallel_workers: u16,
    pub alarm_restriction_type: AlarmRestrictionType,
    pub default_instance_action: DefaultInstanceAction,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// The five values of an entry, without its identity: what an update sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionValues {
    pub storage_apply_type: StorageApplyType,
    pub worker_apply_type: WorkerApplyType,
    pub max_parallel_workers: u16,
    pub alarm_restriction_type: AlarmRestrictionType,
    pub default_instance_action: DefaultInstanceAction,
}

impl Default for OptionValues {
    /// dcmanager's `SW_UPDATE_OPTS_CONST_DEFAULT`: parallel, parallel, 10, relaxed, migrate.
    fn default() -> Self {
        let o = SubcloudOptions::default();
        Self {
            storage_apply_type: StorageApplyType::default(),
            worker_apply_type: o.worker_apply_type,
            max_parallel_workers: o.max_parallel_workers,
            alarm_restriction_type: o.alarm_restriction_type,
            default_instance_action: DefaultInstanceAction::default(),
        }
    }
}

impl OptionValues {
    /// The part an agent runs with.
    pub fn subcloud_options(&self) -> SubcloudOptions {
        SubcloudOptions {
            worker_apply_type: self.worker_apply_type,
            max_parallel_workers: self.max_parallel_workers,
            alarm_restriction_type: self.alarm_restriction_type,
        }
    }

    fn json_fields(&self) -> Value {
        json!({
            "storage-apply-type": self.storage_apply_type.as_str(),
            "worker-apply-type": self.worker_apply_type.as_str(),
            "max-parallel-workers": self.max_parallel_workers,
            "alarm-restriction-type": self.alarm_restriction_type.as_str(),
            "default-instance-action": self.default_instance_action.as_str(),
        })
    }
}

impl OptionsEntry {
    pub fn values(&self) -> OptionValues {
        OptionValues {
            storage_apply_type: self.storage_apply_type,
            worker_apply_type: self.worker_apply_type,
            max_parallel_workers: self.max_parallel_workers,
            alarm_restriction_type: self.alarm_restriction_type,
            default_instance_action: self.default_instance_action,
        }
    }

    /// This entry with `values`, keeping its identity.
    pub fn with_values(&self, v: OptionValues) -> Self {
        Self {
            storage_apply_type: v.storage_apply_type,
            worker_apply_type: v.worker_apply_type,
            max_parallel_workers: v.max_parallel_workers,
            alarm_restriction_type: v.alarm_restriction_type,
            default_instance_action: v.default_instance_action,
            ..self.clone()
        }
    }

    /// dcmanager's JSON of an entry, shown under `name` (the subcloud's, or [`DEFAULT_TITLE`]).
    pub fn to_json(&self, name: &str) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": name,
            "subcloud-id": self.subcloud_id,
            "created-at": self.created_at,
            "updated-at": self.updated_at,
        });
        merge(&mut v, self.values().json_fields());
        v
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// The default entry when none is stored: dcmanager's constants, which carry no id.
pub fn constants_json() -> Value {
    let mut v = json!({"name": DEFAULT_TITLE, "created-at": null, "updated-at": null});
    merge(&mut v, OptionValues::default().json_fields());
    v
}

/// The values a subcloud's update runs with: its own entry, else the default entry, else upstream's
/// defaults (dcmanager's `get_sw_update_opts(for_sw_update=True)`).
pub fn effective(own: Option<&OptionsEntry>, default: Option<&OptionsEntry>) -> OptionValues {
    own.or(default)
        .map_or_else(OptionValues::default, OptionsEntry::values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subcloud_id: i64, worker: WorkerApplyType, max: u16) -> OptionsEntry {
        OptionsEntry {
            id: subcloud_id + 1,
            subcloud_id,
            storage_apply_type: StorageApplyType::Serial,
            worker_apply_type: worker,
            max_parallel_workers: max,
            alarm_restriction_type: AlarmRestrictionType::Strict,
            default_instance_action: DefaultInstanceAction::StopStart,
            created_at: "t".into(),
            updated_at: None,
        }
    }

    #[test]
    fn a_subclouds_own_entry_wins_then_the_default_entry_then_upstreams_defaults() {
        let own = entry(3, WorkerApplyType::Serial, 1);
        let default = entry(DEFAULT_SUBCLOUD_ID, WorkerApplyType::Parallel, 4);
        assert_eq!(effective(Some(&own), Some(&default)), own.values());
        assert_eq!(effective(None, Some(&default)), default.values());
        let constants = effective(None, None);
        assert_eq!(constants, OptionValues::default());
        assert_eq!(
            constants.subcloud_options().to_string(),
            "worker-apply-type parallel, max-parallel-workers 10, alarm-restriction-type relaxed"
        );
        assert_eq!(
            effective(Some(&own), None).subcloud_options().to_string(),
            "worker-apply-type serial, alarm-restriction-type strict"
        );
    }

    #[test]
    fn json_has_upstreams_keys_and_the_constants_no_id() {
        let v = entry(3, WorkerApplyType::Parallel, 4).to_json("subcloud1");
        assert_eq!(
            v,
            json!({"id": 4, "name": "subcloud1", "subcloud-id": 3,
                "storage-apply-type": "serial", "worker-apply-type": "parallel",
                "max-parallel-workers": 4, "alarm-restriction-type": "strict",
                "default-instance-action": "stop-start", "created-at": "t", "updated-at": null})
        );
        assert_eq!(
            constants_json(),
            json!({"name": "all clouds default", "storage-apply-type": "parallel",
                "worker-apply-type": "parallel", "max-parallel-workers": 10,
                "alarm-restriction-type": "relaxed", "default-instance-action": "migrate",
                "created-at": null, "updated-at": null})
        );
        assert!(is_default_ref("SystemController") && is_default_ref("RegionOne"));
        assert!(!is_default_ref("subcloud1"));
    }
}
