//! What each command shows: the original CLI's column names mapped onto the REST API's JSON keys
//! (docs/rest-api.md). A column whose key is missing from the answer shows as `None`.

use serde_json::Value;

use crate::format::{Listing, Record};

/// (column shown, JSON key).
type Spec = [(&'static str, &'static str)];

pub const STRATEGY: &Spec = &[
    ("strategy type", "type"),
    ("subcloud apply type", "subcloud-apply-type"),
    ("max parallel subclouds", "max-parallel-subclouds"),
    ("stop on failure", "stop-on-failure"),
    ("state", "state"),
    ("created_at", "created-at"),
    ("updated_at", "updated-at"),
];

pub const STEP_LIST: &Spec = &[
    ("cloud", "cloud"),
    ("stage", "stage"),
    ("state", "state"),
    ("details", "details"),
    ("started_at", "started-at"),
    ("finished_at", "finished-at"),
];

const STEP_EXTRA: &Spec = &[("created_at", "created-at"), ("updated_at", "updated-at")];

pub const SUBCLOUD_LIST: &Spec = &[
    ("id", "id"),
    ("name", "name"),
    ("management", "management-state"),
    ("availability", "availability-status"),
    ("deploy status", "deploy-status"),
    ("sync", "sync_status"),
    ("backup status", "backup-status"),
    ("prestage status", "prestage-status"),
];

const SUBCLOUD_DETAIL: &Spec = &[
    ("id", "id"),
    ("name", "name"),
    ("description", "description"),
    ("location", "location"),
    ("software_version", "software-version"),
    ("management", "management-state"),
    ("availability", "availability-status"),
    ("deploy_status", "deploy-status"),
    ("management_subnet", "management-subnet"),
    ("management_start_ip", "management-start-ip"),
    ("management_end_ip", "management-end-ip"),
    ("management_gateway_ip", "management-gateway-ip"),
    ("systemcontroller_gateway_ip", "systemcontroller-gateway-ip"),
    ("group_id", "group_id"),
    ("peer_group_id", "peer_group_id"),
    ("created_at", "created-at"),
    ("updated_at", "updated-at"),
    ("backup_status", "backup-status"),
    ("backup_datetime", "backup-datetime"),
    ("prestage_status", "prestage-status"),
    ("prestage_versions", "prestage-versions"),
];

/// Ours, shown after the original's fields: what the root CA of the subcloud is, as last reported.
const SUBCLOUD_ROOTCA: &Spec = &[
    ("kube-rootca_subject", "kube-rootca-subject"),
    ("kube-rootca_serial", "kube-rootca-serial"),
    ("kube-rootca_expiry", "kube-rootca-expiry"),
    ("kube-rootca_alarms", "kube-rootca-alarms"),
    ("last_heartbeat_at", "last-heartbeat-at"),
];

pub const GROUP: &Spec = &[
    ("id", "id"),
    ("name", "name"),
    ("description", "description"),
    ("update apply type", "update_apply_type"),
    ("max parallel subclouds", "max_parallel_subclouds"),
    ("created_at", "created-at"),
    ("updated_at", "updated-at"),
];

/// `strategy-config show|update`: the original's `options_detail_format`.
pub const OPTIONS: &Spec = &[
    ("cloud", "name"),
    ("storage apply type", "storage-apply-type"),
    ("worker apply type", "worker-apply-type"),
    ("max parallel workers", "max-parallel-workers"),
    ("alarm restriction type", "alarm-restriction-type"),
    ("default instance action", "default-instance-action"),
    ("created_at", "created-at"),
    ("updated_at", "updated-at"),
];

/// `strategy-config list`: the original's `options_list_format`, without the timestamps.
pub const OPTIONS_LIST: &Spec = OPTIONS.split_at(6).0;

fn fields(object: &Value, spec: &Spec) -> impl Iterator<Item = (String, Value)> {
    spec.iter().map(|(column, key)| {
        (
            (*column).to_owned(),
            object.get(key).cloned().unwrap_or(Value::Null),
        )
    })
}

/// One object under `spec`'s columns.
pub fn record(object: &Value, spec: &Spec) -> Record {
    Record {
        fields: fields(object, spec).collect(),
    }
}

/// The array `items` under `spec`'s columns (an absent array is an empty list).
pub fn listing(items: Option<&Value>, spec: &Spec) -> Listing {
    let rows = items
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    spec.iter()
                        .map(|(_, key)| item.get(key).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    Listing {
        columns: spec
            .iter()
            .map(|(column, _)| (*column).to_owned())
            .collect(),
        rows,
    }
}

/// `subcloud-group list-subclouds`: the original's detail columns, then one
/// `<endpoint_type>_sync_status` column per endpoint type a member reports (as its `subcloud show`
/// rows).
pub fn subcloud_details(items: Option<&Value>) -> Listing {
    let items: &[Value] = items.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let mut endpoints: Vec<String> = Vec::new();
    for endpoint in items
        .iter()
        .filter_map(|item| item.get("endpoint_sync_status").and_then(Value::as_array))
        .flatten()
    {
        let kind = endpoint
            .get("endpoint_type")
            .map(crate::format::text)
            .unwrap_or_default();
        if !endpoints.contains(&kind) {
            endpoints.push(kind);
        }
    }
    let status = |item: &Value, kind: &str| {
        item.get("endpoint_sync_status")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e.get("endpoint_type").and_then(Value::as_str) == Some(kind))
            .and_then(|e| e.get("sync_status").cloned())
            .unwrap_or(Value::Null)
    };
    let mut listing = listing(Some(&Value::Array(items.to_vec())), SUBCLOUD_DETAIL);
    for (row, item) in listing.rows.iter_mut().zip(items) {
        row.extend(endpoints.iter().map(|kind| status(item, kind)));
    }
    listing
        .columns
        .extend(endpoints.iter().map(|kind| format!("{kind}_sync_status")));
    listing
}

/// `strategy-step show`: the list columns plus the row's own timestamps.
pub fn step(object: &Value) -> Record {
    Record {
        fields: fields(object, STEP_LIST)
            .chain(fields(object, STEP_EXTRA))
            .collect(),
    }
}

/// `subcloud show`: the original's detail fields, one `<endpoint_type>_sync_status` row per
/// endpoint, then our root-CA fields.
pub fn subcloud(object: &Value) -> Record {
    let endpoints = object
        .get("endpoint_sync_status")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|endpoint| {
            let kind = endpoint
                .get("endpoint_type")
                .map(crate::format::text)
                .unwrap_or_default();
            let status = endpoint.get("sync_status").cloned().unwrap_or(Value::Null);
            (format!("{kind}_sync_status"), status)
        });
    let update = object
        .get("kube-rootca-update")
        .map_or(Value::Null, update_summary);
    Record {
        fields: fields(object, SUBCLOUD_DETAIL)
            .chain(endpoints)
            .chain(fields(object, SUBCLOUD_ROOTCA))
            .chain([("kube-rootca_update".to_owned(), update)])
            .collect(),
    }
}

/// An unfinished update in one line, what an operator needs to decide: which update stopped where, since
/// when, why, and the CA a later strategy finishes it with. `None` when there is none.
fn update_summary(u: &Value) -> Value {
    let field = |key: &str| u.get(key).and_then(Value::as_str);
    let Some(id) = field("update-id") else {
        return Value::Null;
    };
    let run = field("run").unwrap_or("unfinished");
    let mut out = match field("next-phase") {
        Some(next) => format!("{id} {run} before {next}"),
        None => format!("{id} {run} at {}", field("phase").unwrap_or("?")),
    };
    if u.get("rollback").and_then(Value::as_bool) == Some(true) {
        // Its phase is the one its next step undoes: say it is a rollback before anything else.
        out = format!("rollback {out}");
    }
    if let Some(since) = field("since") {
        out.push_str(&format!(" since {since}"));
    }
    if let Some(reason) = field("reason") {
        out.push_str(&format!(": {reason}"));
    }
    if let Some(subject) = field("new-rootca-subject") {
        out.push_str(&format!("; new root CA {subject}"));
        if let Some(expiry) = field("new-rootca-expiry") {
            out.push_str(&format!(" expiring {expiry}"));
        }
    }
    Value::String(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ListFormat, OneFormat, render_list, render_one};
    use serde_json::json;

    #[test]
    fn strategy_shell_uses_the_original_names() {
        let answer = json!({"id": 1, "type": "kube-rootca-update", "subcloud-apply-type": "serial",
            "max-parallel-subclouds": 1, "stop-on-failure": true, "state": "applying",
            "created-at": "2026-11-28 10:00:00.000001", "updated-at": null,
            "extra-args": {"expiry-date": null, "subject": null, "cert-file": null}});
        assert_eq!(
            render_one(&record(&answer, STRATEGY), OneFormat::Shell, &[]).unwrap(),
            "strategy_type=\"kube-rootca-update\"\nsubcloud_apply_type=\"serial\"\nmax_parallel_subclouds=\"1\"\n\
             stop_on_failure=\"True\"\nstate=\"applying\"\ncreated_at=\"2026-11-28 10:00:00.000001\"\nupdated_at=\"None\"\n"
        );
    }

    #[test]
    fn step_show_adds_timestamps() {
        let answer = json!({"id": 3, "cloud": "subcloud1", "stage": "Apply", "state": "update-started",
            "details": "", "started-at": "a", "finished-at": null, "created-at": "b", "updated-at": "c"});
        let names: Vec<String> = step(&answer).fields.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "cloud",
                "stage",
                "state",
                "details",
                "started_at",
                "finished_at",
                "created_at",
                "updated_at"
            ]
        );
    }

    #[test]
    fn subcloud_list_columns_and_values() {
        let answer = json!({"subclouds": [{"id": 1, "name": "subcloud1", "management-state": "managed",
            "availability-status": "online", "deploy-status": "complete", "sync_status": "out-of-sync",
            "backup-status": null, "prestage-status": null}]});
        assert_eq!(
            render_list(
                &listing(answer.get("subclouds"), SUBCLOUD_LIST),
                ListFormat::Csv,
                &[]
            )
            .unwrap(),
            "\"id\",\"name\",\"management\",\"availability\",\"deploy status\",\"sync\",\"backup status\",\"prestage status\"\n\
             1,\"subcloud1\",\"managed\",\"online\",\"complete\",\"out-of-sync\",\"\",\"\"\n"
        );
    }

    #[test]
    fn subcloud_show_has_one_row_per_endpoint_then_ours() {
        let answer = json!({"id": 1, "name": "subcloud1", "endpoint_sync_status": [
            {"endpoint_type": "kube-rootca", "sync_status": "in-sync"}],
            "kube-rootca-subject": "CN=kubernetes", "kube-rootca-expiry": "2036-11-28 10:00:00.000000"});
        let shown = subcloud(&answer);
        let names: Vec<&str> = shown.fields.iter().map(|(n, _)| n.as_str()).collect();
        let at = names
            .iter()
            .position(|n| *n == "kube-rootca_sync_status")
            .unwrap();
        assert_eq!(names[at - 1], "prestage_versions");
        assert_eq!(
            &names[at + 1..],
            [
                "kube-rootca_subject",
                "kube-rootca_serial",
                "kube-rootca_expiry",
                "kube-rootca_alarms",
                "last_heartbeat_at",
                "kube-rootca_update"
            ]
        );
        assert_eq!(
            render_one(
                &shown,
                OneFormat::Value,
                &[
                    "kube-rootca_sync_status".into(),
                    "kube-rootca_subject".into()
                ]
            )
            .unwrap(),
            "in-sync\nCN=kubernetes\n"
        );
    }

    #[test]
    fn an_unfinished_update_is_summed_up_in_one_line() {
        let answer = json!({"kube-rootca-update": {"update-id": "u1", "run": "aborted",
            "phase": "pods trust-both-cas", "next-phase": "hosts update-certs",
            "since": "2026-12-05 10:00:00.000000", "reason": null,
            "new-rootca-subject": "CN=new", "new-rootca-expiry": "2031-06-30 00:00:00.000000"}});
        assert_eq!(
            render_one(
                &subcloud(&answer),
                OneFormat::Value,
                &["kube-rootca_update".into()]
            )
            .unwrap(),
            "u1 aborted before hosts update-certs since 2026-12-05 10:00:00.000000; \
             new root CA CN=new expiring 2031-06-30 00:00:00.000000\n"
        );
        let rollback = json!({"kube-rootca-update": {"update-id": "r1", "rollback": true,
            "run": "failed", "phase": "hosts update-certs", "reason": "rolling back: x"}});
        assert_eq!(
            render_one(
                &subcloud(&rollback),
                OneFormat::Value,
                &["kube-rootca_update".into()]
            )
            .unwrap(),
            "rollback r1 failed at hosts update-certs: rolling back: x\n"
        );
        assert_eq!(
            render_one(
                &subcloud(&json!({"kube-rootca-update": null})),
                OneFormat::Value,
                &["kube-rootca_update".into()]
            )
            .unwrap(),
            "None\n"
        );
    }

    #[test]
    fn group_members_have_detail_columns_and_one_per_endpoint() {
        let answer = json!({"subclouds": [
            {"id": 1, "name": "subcloud1", "description": "渋谷", "group_id": 2,
             "endpoint_sync_status": [{"endpoint_type": "kube-rootca", "sync_status": "in-sync"}]},
            {"id": 2, "name": "subcloud2", "group_id": 2}]});
        let members = subcloud_details(answer.get("subclouds"));
        assert_eq!(members.columns.len(), SUBCLOUD_DETAIL.len() + 1);
        assert_eq!(members.columns.last().unwrap(), "kube-rootca_sync_status");
        assert_eq!(
            render_list(
                &members,
                ListFormat::Value,
                &[
                    "name".into(),
                    "description".into(),
                    "kube-rootca_sync_status".into()
                ]
            )
            .unwrap(),
            "subcloud1 渋谷 in-sync\nsubcloud2 None None\n"
        );
        assert_eq!(subcloud_details(None).rows.len(), 0);
        assert_eq!(subcloud_details(None).columns.len(), SUBCLOUD_DETAIL.len());
    }

    #[test]
    fn missing_list_is_empty() {
        assert!(listing(None, GROUP).rows.is_empty());
    }
}
