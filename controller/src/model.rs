//! The controller's records (what the store keeps) and their dcmanager-compatible JSON shapes.
//!
//! Records are plain data so the store can persist them whole and the pure rules can reason about them
//! without actors or I/O.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

/// The only strategy type this controller orchestrates.
pub const STRATEGY_TYPE: &str = "kube-rootca-update";
/// The endpoint type of the kube-rootca sync status, as in dcmanager.
pub const ENDPOINT_KUBE_ROOTCA: &str = "kube-rootca";
/// The Default group's id: it always exists and cannot be renamed or deleted.
pub const DEFAULT_GROUP_ID: i64 = 1;
/// dcmanager's default window.
pub const DEFAULT_MAX_PARALLEL: u32 = 2;
/// dcmanager's `MAX_PARALLEL_SUBCLOUDS_LIMIT`.
pub const MAX_PARALLEL_LIMIT: u32 = 5000;
/// dcmanager's `String(1000)` column for step details.
pub const MAX_DETAILS_LEN: usize = 1000;

/// Step states that are not the agent's sysinv state names.
pub mod step_state {
    pub const INITIAL: &str = "initial";
    pub const COMPLETE: &str = "complete";
    pub const FAILED: &str = "failed";
    pub const ABORTED: &str = "aborted";
    /// Written when the controller orders the start, before the agent reports its own state.
    pub const STARTING: &str = "update-started";
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, the one datetime form of the API (dcmanager mixed two).
pub fn format_datetime(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    ))
    .unwrap_or_default()
}

/// Now, in the API's datetime form.
pub fn now_string() -> String {
    format_datetime(OffsetDateTime::now_utc())
}

/// A Unix time in the API's datetime form, or `None` when out of range.
pub fn unix_to_string(t: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .map(format_datetime)
}

/// How a group or strategy walks its subclouds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyType {
    Parallel,
    Serial,
}

impl ApplyType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyType::Parallel => "parallel",
            ApplyType::Serial => "serial",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parallel" => Some(ApplyType::Parallel),
            "serial" => Some(ApplyType::Serial),
            _ => None,
        }
    }
}

/// The strategy's state, with dcmanager's exact strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyState {
    Initial,
    Applying,
    AbortRequested,
    Aborting,
    Complete,
    Aborted,
    Failed,
    Deleting,
}

impl StrategyState {
    pub const ALL: [StrategyState; 8] = [
        StrategyState::Initial,
        StrategyState::Applying,
        StrategyState::AbortRequested,
        StrategyState::Aborting,
        StrategyState::Complete,
        StrategyState::Aborted,
        StrategyState::Failed,
        StrategyState::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyState::Initial => "initial",
            StrategyState::Applying => "applying",
            StrategyState::AbortRequested => "abort requested",
            StrategyState::Aborting => "aborting",
            StrategyState::Complete => "complete",
            StrategyState::Aborted => "aborted",
            StrategyState::Failed => "failed",
            StrategyState::Deleting => "deleting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Apply only from initial.
    pub fn can_apply(self) -> bool {
        self == StrategyState::Initial
    }

    /// Abort only while applying.
    pub fn can_abort(self) -> bool {
        self == StrategyState::Applying
    }

    /// Delete only when nothing runs.
    pub fn can_delete(self) -> bool {
        matches!(
            self,
            StrategyState::Initial
                | StrategyState::Complete
                | StrategyState::Failed
                | StrategyState::Aborted
        )
    }

    /// States in which steps run (or are being wound down) and the strategy must be driven.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            StrategyState::Applying | StrategyState::AbortRequested | StrategyState::Aborting
        )
    }
}

/// Where a step stands in dcmanager's coarse terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Create,
    Apply,
    Complete,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Create => "Create",
            Stage::Apply => "Apply",
            Stage::Complete => "Complete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Create" => Some(Stage::Create),
            "Apply" => Some(Stage::Apply),
            "Complete" => Some(Stage::Complete),
            _ => None,
        }
    }
}

/// A subcloud group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub update_apply_type: ApplyType,
    pub max_parallel: u32,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl Group {
    /// The Default group every controller starts with.
    pub fn default_group() -> Self {
        Self {
            id: DEFAULT_GROUP_ID,
            name: "Default".to_owned(),
            description: "Default Subcloud Group".to_owned(),
            update_apply_type: ApplyType::Parallel,
            max_parallel: DEFAULT_MAX_PARALLEL,
            created_at: now_string(),
            updated_at: None,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "update_apply_type": self.update_apply_type.as_str(),
            "max_parallel_subclouds": self.max_parallel,
            "created-at": self.created_at,
            "updated-at": self.updated_at,
        })
    }
}

/// A registered subcloud (the operator's record; live facts come from its agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subcloud {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub location: String,
    pub group_id: i64,
    pub managed: bool,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Why its last update failed (dcmanager's `error-description`); cleared when an update completes.
    pub error_description: Option<String>,
}

/// The kube-rootca sync status of a subcloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    InSync,
    OutOfSync,
    Unknown,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::InSync => "in-sync",
            SyncStatus::OutOfSync => "out-of-sync",
            SyncStatus::Unknown => "unknown",
        }
    }
}

/// What the agent last reported, shown next to the record.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    pub online: bool,
    pub sync: Option<SyncStatus>,
    pub root_ca: Option<dc_protocol::RootCaInfo>,
    pub alarms: Vec<String>,
    pub last_heartbeat_at: Option<String>,
    /// The agent's update while it is unfinished (running, stopped by an abort, or failed).
    pub unfinished: Option<dc_protocol::UpdateStatus>,
}

/// A subcloud's part of the event stream: its availability, sync status and root CA expiry. Typed and
/// `Copy` because every heartbeat of every agent is checked against what was last announced: one that
/// changes none of them costs a comparison, not a JSON document (at N = 5,000 building that document
/// for each heartbeat was the controller's largest cost while it waited on the agents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubcloudStatus {
    pub id: i64,
    pub online: bool,
    pub sync: SyncStatus,
    /// The root CA's notAfter (Unix time), when the agent could read it.
    pub expiry: Option<i64>,
}

impl SubcloudStatus {
    /// With the keys and values of the subcloud list.
    pub fn to_json(&self, name: &str) -> Value {
        json!({
            "id": self.id,
            "name": name,
            "availability-status": availability(self.online),
            "sync_status": self.sync.as_str(),
            "kube-rootca-expiry": self.expiry.and_then(unix_to_string),
        })
    }
}

fn availability(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

impl Subcloud {
    /// dcmanager's subcloud dict plus our root CA facts. `with_aggregate` adds the list's `sync_status`.
    pub fn to_json(&self, live: &LiveView, with_aggregate: bool) -> Value {
        let sync = if live.online {
            live.sync.unwrap_or(SyncStatus::Unknown)
        } else {
            SyncStatus::Unknown
        };
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "location": self.location,
            "software-version": Value::Null,
            "management-state": if self.managed { "managed" } else { "unmanaged" },
            "availability-status": availability(live.online),
            "deploy-status": "complete",
            "backup-status": Value::Null,
            "backup-datetime": Value::Null,
            "error-description": self.error_description.as_deref().unwrap_or(NO_ERRORS),
            "region-name": self.name,
            "management-subnet": Value::Null,
            "management-start-ip": Value::Null,
            "management-end-ip": Value::Null,
            "management-gateway-ip": Value::Null,
            "openstack-installed": false,
            "prestage-status": Value::Null,
            "prestage-versions": Value::Null,
            "systemcontroller-gateway-ip": Value::Null,
            "data_install": Value::Null,
            "data_upgrade": Value::Null,
            "created-at": self.created_at,
            "updated-at": self.updated_at,
            "group_id": self.group_id,
            "peer_group_id": Value::Null,
            "rehome_data": Value::Null,
            "endpoint_sync_status": [
                {"endpoint_type": ENDPOINT_KUBE_ROOTCA, "sync_status": sync.as_str()}
            ],
            "kube-rootca-subject": live.root_ca.as_ref().map(|c| c.subject.clone()),
            "kube-rootca-serial": live.root_ca.as_ref().map(|c| c.serial.clone()),
            "kube-rootca-expiry": live.root_ca.as_ref().and_then(|c| unix_to_string(c.not_after)),
            "kube-rootca-alarms": live.alarms,
            "last-heartbeat-at": live.last_heartbeat_at,
            "kube-rootca-update": live.unfinished.as_ref().map(unfinished_json),
        });
        if with_aggregate && let Some(map) = v.as_object_mut() {
            map.insert("sync_status".to_owned(), json!(sync.as_str()));
        }
        v
    }
}

/// dcmanager's `error-description` of a subcloud without errors.
pub const NO_ERRORS: &str = "No errors present";

/// An unfinished update as `subcloud show` explains it: which update, where it stands, since when,
/// and the new CA a later strategy finishes it with.
fn unfinished_json(u: &dc_protocol::UpdateStatus) -> Value {
    use dc_protocol::RunState;
    let (run, reason, next) = match &u.run {
        RunState::Running => ("running", None, None),
        RunState::Completed => ("completed", None, None),
        RunState::Aborted { next } => ("aborted", None, Some(next.label())),
        RunState::Failed { reason, .. } => ("failed", Some(reason.as_str()), None),
    };
    json!({
        "update-id": u.update_id,
        "rollback": u.rollback,
        "run": run,
        "phase": u.phase.label(),
        "state": u.state,
        "percent": u.percent,
        "next-phase": next,
        "reason": reason,
        "since": u.since.and_then(unix_to_string),
        "new-rootca-subject": u.new_ca.as_ref().map(|c| c.subject.clone()),
        "new-rootca-expiry": u.new_ca.as_ref().and_then(|c| unix_to_string(c.not_after)),
    })
}

/// The strategy (one at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    pub id: i64,
    pub apply_type: ApplyType,
    pub max_parallel: u32,
    pub stop_on_failure: bool,
    pub state: StrategyState,
    pub subject: Option<String>,
    pub expiry_date: Option<String>,
    /// The uploaded CA (certificate and key); kept for the agents, never echoed by the API.
    pub cert_file: Option<String>,
    /// Whether subclouds go on although pods that nothing restarts would keep the old CA alone.
    pub proceed_with_stranded_pods: bool,
    /// A rollback strategy: each step takes its subcloud's unfinished update back to the old root CA.
    pub rollback: bool,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl Strategy {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": STRATEGY_TYPE,
            "subcloud-apply-type": self.apply_type.as_str(),
            "max-parallel-subclouds": self.max_parallel,
            "stop-on-failure": self.stop_on_failure,
            "state": self.state.as_str(),
            "created-at": self.created_at,
            "updated-at": self.updated_at,
            "extra-args": {
                "expiry-date": self.expiry_date,
                "subject": self.subject,
                "cert-file": self.cert_file.as_ref().map(|_| "uploaded"),
                "proceed-with-stranded-pods": self.proceed_with_stranded_pods,
                "rollback": self.rollback,
            },
        })
    }
}

/// One subcloud's part of the strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: i64,
    pub subcloud: String,
    /// Stable per strategy and subcloud, so a re-sent Start is recognised by the agent as the same update.
    pub update_id: String,
    pub stage: Stage,
    pub state: String,
    pub details: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl Step {
    /// Started and not yet finished: it occupies a place in the window.
    pub fn is_running(&self) -> bool {
        self.stage == Stage::Apply
    }

    /// Not started yet.
    pub fn is_waiting(&self) -> bool {
        self.stage == Stage::Create && self.state == step_state::INITIAL
    }

    pub fn to_json(&self) -> Value {
        // A map of string keys always converts.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A step as the API shows it, with dcmanager's keys. Written straight from the row, so the steps list
/// (5,000 rows and more, read by every polling client) is serialised without first building a JSON
/// tree of every step: that tree was most of a list GET's cost.
impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = serializer.serialize_map(Some(9))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("cloud", &self.subcloud)?;
        m.serialize_entry("stage", self.stage.as_str())?;
        m.serialize_entry("state", &self.state)?;
        m.serialize_entry("details", &self.details)?;
        m.serialize_entry("started-at", &self.started_at)?;
        m.serialize_entry("finished-at", &self.finished_at)?;
        m.serialize_entry("created-at", &self.created_at)?;
        m.serialize_entry("updated-at", &self.updated_at)?;
        m.end()
    }
}

/// What precedes a warning a completed step carries in its details (and the subcloud in its
/// description): the update finished, but the operator has something to look at.
pub const WARNING: &str = "warning: ";

/// Cuts details to dcmanager's 1000-character column, on a character boundary.
pub fn clip_details(details: String) -> String {
    if details.chars().count() <= MAX_DETAILS_LEN {
        details
    } else {
        details.chars().take(MAX_DETAILS_LEN).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_state_rules() {
        for s in StrategyState::ALL {
            assert_eq!(StrategyState::parse(s.as_str()), Some(s));
        }
        assert!(StrategyState::Initial.can_apply());
        assert!(!StrategyState::Applying.can_apply());
        assert!(StrategyState::Applying.can_abort());
        assert!(!StrategyState::Initial.can_abort());
        for s in ["initial", "complete", "failed", "aborted"] {
            assert!(StrategyState::parse(s).is_some_and(|s| s.can_delete()));
        }
        for s in ["applying", "abort requested", "aborting", "deleting"] {
            assert!(!StrategyState::parse(s).is_some_and(|s| s.can_delete()));
        }
    }

    #[test]
    fn datetime_form() {
        let s = unix_to_string(1_700_000_000).unwrap_or_default();
        assert_eq!(s, "2023-11-14 22:13:20.000000");
    }

    #[test]
    fn json_shapes() {
        let st = Strategy {
            id: 1,
            apply_type: ApplyType::Serial,
            max_parallel: 1,
            stop_on_failure: true,
            state: StrategyState::AbortRequested,
            subject: None,
            expiry_date: Some("2030-01-01".into()),
            cert_file: Some("PEM".into()),
            proceed_with_stranded_pods: false,
            rollback: false,
            created_at: "x".into(),
            updated_at: None,
        };
        let v = st.to_json();
        let mut keys: Vec<_> = v
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        assert_eq!(
            keys,
            [
                "created-at",
                "extra-args",
                "id",
                "max-parallel-subclouds",
                "state",
                "stop-on-failure",
                "subcloud-apply-type",
                "type",
                "updated-at"
            ]
        );
        assert_eq!(v["state"], "abort requested");
        assert_eq!(v["stop-on-failure"], true);
        assert_eq!(v["max-parallel-subclouds"], 1);
        assert_eq!(v["extra-args"]["cert-file"], "uploaded");
        assert!(!v.to_string().contains("PEM"));

        let sc = Subcloud {
            id: 3,
            name: "s1".into(),
            description: String::new(),
            location: String::new(),
            group_id: 1,
            managed: true,
            created_at: "x".into(),
            updated_at: None,
            error_description: None,
        };
        let live = LiveView {
            online: false,
            sync: Some(SyncStatus::OutOfSync),
            ..LiveView::default()
        };
        let v = sc.to_json(&live, true);
        assert_eq!(v["availability-status"], "offline");
        assert_eq!(v["endpoint_sync_status"][0]["sync_status"], "unknown");
        assert_eq!(v["sync_status"], "unknown");
        assert!(sc.to_json(&live, false).get("sync_status").is_none());
        assert_eq!(v["error-description"], NO_ERRORS);
        assert!(v["kube-rootca-update"].is_null());

        let failed = Subcloud {
            error_description: Some("hosts update-certs failed: disk".into()),
            ..sc
        };
        let live = LiveView {
            online: true,
            unfinished: Some(dc_protocol::UpdateStatus {
                update_id: "u1".into(),
                phase: dc_protocol::Phase::HostsUpdateCerts,
                state: "updating-host-update-certs-failed".into(),
                percent: 40,
                run: dc_protocol::RunState::Failed {
                    phase: dc_protocol::Phase::HostsUpdateCerts,
                    reason: "disk".into(),
                },
                last_seq: 3,
                since: Some(0),
                new_ca: Some(dc_protocol::RootCaInfo {
                    subject: "CN=new".into(),
                    serial: "01".into(),
                    not_before: 0,
                    not_after: 86_400,
                }),
                warnings: Vec::new(),
                rollback: false,
            }),
            ..LiveView::default()
        };
        let v = failed.to_json(&live, false);
        assert_eq!(v["error-description"], "hosts update-certs failed: disk");
        let u = &v["kube-rootca-update"];
        assert_eq!(u["update-id"], "u1");
        assert_eq!(u["run"], "failed");
        assert_eq!(u["phase"], "hosts update-certs");
        assert_eq!(u["reason"], "disk");
        assert_eq!(u["new-rootca-subject"], "CN=new");
        assert!(u["since"].is_string() && u["new-rootca-expiry"].is_string());
    }

    #[test]
    fn a_step_is_written_with_dcmanagers_keys() {
        let step = Step {
            id: 7,
            subcloud: "subcloud1".into(),
            update_id: "u-1".into(),
            stage: Stage::Apply,
            state: "updating-pods-trust-both-cas".into(),
            details: "pods trust-both-cas: 50%".into(),
            started_at: Some("2026-12-06 03:00:00.000000".into()),
            finished_at: None,
            created_at: "2026-12-06 02:59:00.000000".into(),
            updated_at: None,
        };
        assert_eq!(
            step.to_json(),
            json!({
                "id": 7,
                "cloud": "subcloud1",
                "stage": "Apply",
                "state": "updating-pods-trust-both-cas",
                "details": "pods trust-both-cas: 50%",
                "started-at": "2026-12-06 03:00:00.000000",
                "finished-at": null,
                "created-at": "2026-12-06 02:59:00.000000",
                "updated-at": null,
            })
        );
    }

    #[test]
    fn details_are_clipped() {
        assert_eq!(clip_details("é".repeat(1500)).chars().count(), 1000);
    }
}
