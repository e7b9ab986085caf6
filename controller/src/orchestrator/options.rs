//! The sw-update-options calls as dcmanager answers them (`sw_update_options.py`): list, show, create
//! or update, delete; and the options a subcloud's update runs with. Each reads the [`State`] and
//! answers a [`Change`].

use serde_json::Value;

use crate::error::ApiError;
use crate::model::{Subcloud, now_string};
use crate::options::{
    DEFAULT_SUBCLOUD_ID, DEFAULT_TITLE, OptionValues, OptionsEntry, constants_json, effective,
    is_default_ref,
};
use crate::requests::UpdateOptions;
use crate::store::Op;

use super::registry::keyed_list;
use super::state::{Change, State};

/// The default entry as shown: the stored one, else upstream's constants.
fn default_json(st: &State) -> Value {
    st.options
        .get(&DEFAULT_SUBCLOUD_ID)
        .map_or_else(constants_json, |o| o.to_json(DEFAULT_TITLE))
}

/// `{"sw-update-options": [...]}`: the default entry first, then each subcloud's own, by subcloud id.
pub fn list(st: &State) -> Value {
    let mut subclouds: Vec<&Subcloud> = st.subclouds.values().collect();
    subclouds.sort_by_key(|s| s.id);
    let own = subclouds
        .into_iter()
        .filter_map(|s| st.options.get(&s.id).map(|o| o.to_json(&s.name)));
    keyed_list(
        "sw-update-options",
        std::iter::once(default_json(st)).chain(own).collect(),
    )
}

/// The default entry, or a subcloud's own: one without its own entry is a 404 saying the defaults
/// are used, as dcmanager answers.
pub fn show(st: &State, r: &str) -> Result<Value, ApiError> {
    if is_default_ref(r) {
        return Ok(default_json(st));
    }
    let sc = st.find_subcloud(r)?;
    st.options
        .get(&sc.id)
        .map(|o| o.to_json(&sc.name))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "No options found for Subcloud with id {}, defaults will be used.",
                sc.id
            ))
        })
}

/// Creates or updates the default entry or a subcloud's own; answers the entry.
pub fn update(st: &State, r: &str, req: UpdateOptions) -> Result<Change, ApiError> {
    let (subcloud_id, name) = if is_default_ref(r) {
        (DEFAULT_SUBCLOUD_ID, DEFAULT_TITLE.to_owned())
    } else {
        let sc = st.find_subcloud(r)?;
        (sc.id, sc.name.clone())
    };
    let now = now_string();
    let entry = match st.options.get(&subcloud_id) {
        Some(old) => OptionsEntry {
            updated_at: Some(now),
            ..old.with_values(req.applied_to(old.values()))
        },
        None => {
            let base = effective(None, st.options.get(&DEFAULT_SUBCLOUD_ID));
            let v = req.applied_to(base);
            OptionsEntry {
                id: st.options.values().map(|o| o.id).max().unwrap_or(0) + 1,
                subcloud_id,
                storage_apply_type: v.storage_apply_type,
                worker_apply_type: v.worker_apply_type,
                max_parallel_workers: v.max_parallel_workers,
                alarm_restriction_type: v.alarm_restriction_type,
                default_instance_action: v.default_instance_action,
                created_at: now,
                updated_at: None,
            }
        }
    };
    tracing::info!(cloud = %name, options = %entry.values().subcloud_options(), "sw-update-options set");
    let answer = entry.to_json(&name);
    Ok(Change::write(vec![Op::PutOptions(entry)], answer))
}

/// Deletes a subcloud's own entry (404 "Subcloud patch options not found" without one). The default
/// entry's delete, as dcmanager's, puts upstream's defaults back and always succeeds.
pub fn delete(st: &State, r: &str) -> Result<Change, ApiError> {
    let subcloud_id = if is_default_ref(r) {
        DEFAULT_SUBCLOUD_ID
    } else {
        let sc = st.find_subcloud(r)?;
        if !st.options.contains_key(&sc.id) {
            return Err(ApiError::not_found("Subcloud patch options not found"));
        }
        sc.id
    };
    if !st.options.contains_key(&subcloud_id) {
        return Ok(Change::answer(Value::Null));
    }
    tracing::info!(subcloud_id, "sw-update-options deleted");
    Ok(Change::write(
        vec![Op::DeleteOptions(subcloud_id)],
        Value::Null,
    ))
}

/// The options the subcloud's update runs with, read when its step starts.
pub fn effective_for(st: &State, subcloud: &str) -> OptionValues {
    let own = st
        .subclouds
        .get(subcloud)
        .and_then(|s| st.options.get(&s.id));
    effective(own, st.options.get(&DEFAULT_SUBCLOUD_ID))
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::state;
    use super::*;
    use crate::requests::parse;
    use dc_protocol::WorkerApplyType;
    use serde_json::json;

    fn body(v: Value) -> UpdateOptions {
        parse(v.to_string().as_bytes()).unwrap()
    }

    fn set(st: &mut State, r: &str, v: Value) -> Value {
        let c = update(st, r, body(v)).unwrap();
        st.apply(c.ops);
        c.answer
    }

    #[test]
    fn default_then_own_entry_resolve_in_order_and_delete_puts_them_back() {
        let mut st = state(2);
        assert_eq!(effective_for(&st, "s1"), OptionValues::default());
        assert_eq!(list(&st)["sw-update-options"], json!([constants_json()]));
        let e = show(&st, "s1").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (
                404,
                "No options found for Subcloud with id 1, defaults will be used."
            )
        );

        let d = set(
            &mut st,
            "SystemController",
            json!({"max-parallel-workers": 4}),
        );
        assert_eq!(
            (d["name"].clone(), d["subcloud-id"].clone()),
            (json!(DEFAULT_TITLE), json!(0))
        );
        assert_eq!(effective_for(&st, "s1").max_parallel_workers, 4);

        // A subcloud's new entry starts from the default entry.
        let own = set(&mut st, "s1", json!({"worker-apply-type": "serial"}));
        assert_eq!(
            (own["name"].clone(), own["max-parallel-workers"].clone()),
            (json!("s1"), json!(4))
        );
        assert_eq!(
            effective_for(&st, "s1").worker_apply_type,
            WorkerApplyType::Serial
        );
        assert_eq!(
            effective_for(&st, "s2").worker_apply_type,
            WorkerApplyType::Parallel
        );
        let names: Vec<Value> = list(&st)["sw-update-options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].clone())
            .collect();
        assert_eq!(names, vec![json!(DEFAULT_TITLE), json!("s1")]);
        // Updating keeps identity and stamps updated-at.
        let again = set(&mut st, "1", json!({"alarm-restriction-type": "strict"}));
        assert_eq!(again["id"], own["id"]);
        assert!(again["updated-at"].is_string());

        st.apply(delete(&st, "s1").unwrap().ops);
        assert_eq!(effective_for(&st, "s1").max_parallel_workers, 4);
        let e = delete(&st, "s1").map(|_| ()).unwrap_err();
        assert_eq!(e.message, "Subcloud patch options not found");
        st.apply(delete(&st, "RegionOne").unwrap().ops);
        assert_eq!(show(&st, "SystemController").unwrap(), constants_json());
        // Deleting defaults that are not stored still succeeds.
        assert!(delete(&st, "SystemController").unwrap().ops.is_empty());
        assert_eq!(
            update(&st, "nope", body(json!({"max-parallel-workers": 1})))
                .map(|_| ())
                .unwrap_err()
                .message,
            "Subcloud not found"
        );
    }

    #[test]
    fn a_deleted_subclouds_entry_goes_with_it() {
        let mut st = state(1);
        set(&mut st, "s1", json!({"worker-apply-type": "serial"}));
        st.apply(vec![Op::DeleteSubcloud(1)]);
        assert!(st.options.is_empty());
    }
}
