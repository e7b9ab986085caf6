//! The registry's decisions: subclouds and groups, added, changed, deleted and listed. Each reads the
//! [`State`] and answers a [`Change`] or the API error, in dcmanager's words.

use dc_protocol::{ErrorCode, ErrorMessage};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::model::{
    ApplyType, DEFAULT_GROUP_ID, DEFAULT_MAX_PARALLEL, Group, STRATEGY_TYPE, Subcloud, now_string,
};
use crate::requests::{AddSubcloud, GroupBody, GroupRef, ManagementState, PatchSubcloud};
use crate::session::RENEWAL_AHEAD_SECS;
use crate::store::Op;

use super::state::{Change, FollowUp, State};

/// `{"<key>": [items]}`, the items moved in (`json!` would copy them all again).
pub fn keyed_list(key: &str, items: Vec<Value>) -> Value {
    let mut object = Map::new();
    object.insert(key.to_owned(), Value::Array(items));
    Value::Object(object)
}

fn group_not_found() -> ApiError {
    ApiError::not_found("Subcloud Group not found")
}

/// The group a path names.
pub fn find_group<'a>(st: &'a State, r: &GroupRef) -> Result<&'a Group, ApiError> {
    st.group(r).ok_or_else(group_not_found)
}

/// The id of the group a body names; a group that does not exist is a bad request.
fn group_id(st: &State, r: &GroupRef) -> Result<i64, ApiError> {
    st.group(r)
        .map(|g| g.id)
        .ok_or_else(|| ApiError::bad_request("Invalid group_id"))
}

pub fn list_subclouds(st: &State) -> Value {
    keyed_list(
        "subclouds",
        st.subclouds
            .values()
            .map(|s| st.subcloud_json(s, true))
            .collect(),
    )
}

pub fn show_subcloud(st: &State, r: &str) -> Result<Value, ApiError> {
    st.find_subcloud(r).map(|s| st.subcloud_json(s, false))
}

pub fn add_subcloud(st: &State, req: AddSubcloud) -> Result<Change, ApiError> {
    let name = req
        .name
        .ok_or_else(|| ApiError::bad_request("name required"))?;
    dc_certs::pki::validate_subcloud_name(&name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if st.subclouds.contains_key(&name) {
        return Err(ApiError::refused(format!(
            "Subcloud with name {name} already exists"
        )));
    }
    let group_id = match &req.group_id {
        None => DEFAULT_GROUP_ID,
        Some(r) => group_id(st, r)?,
    };
    let s = Subcloud {
        id: st.last_ids.subcloud + 1,
        name,
        description: req.description.unwrap_or_default(),
        location: req.location.unwrap_or_default(),
        group_id,
        managed: true,
        created_at: now_string(),
        updated_at: None,
        error_description: None,
    };
    tracing::info!(subcloud = %s.name, "subcloud registered");
    Ok(Change::write(
        vec![Op::PutSubcloud(s.clone())],
        st.subcloud_json(&s, false),
    ))
}

pub fn patch_subcloud(st: &State, r: &str, req: PatchSubcloud) -> Result<Change, ApiError> {
    let mut s = st.find_subcloud(r)?.clone();
    if req == PatchSubcloud::default() {
        return Err(ApiError::bad_request("nothing to update"));
    }
    if let Some(m) = req.management_state {
        s.managed = m == ManagementState::Managed;
    }
    if let Some(d) = req.description {
        s.description = d;
    }
    if let Some(l) = req.location {
        s.location = l;
    }
    if let Some(g) = &req.group_id {
        s.group_id = group_id(st, g)?;
    }
    s.updated_at = Some(now_string());
    let answer = st.subcloud_json(&s, false);
    Ok(Change::write(vec![Op::PutSubcloud(s)], answer))
}

pub fn delete_subcloud(st: &State, r: &str) -> Result<Change, ApiError> {
    let s = st.find_subcloud(r)?;
    if st.strategy.is_some() && st.step(&s.name).is_some() {
        return Err(ApiError::refused(format!(
            "Subcloud {} is part of the {STRATEGY_TYPE} strategy; delete the strategy first",
            s.name
        )));
    }
    // Its agent's certificate goes with it: a subcloud added again under the name gets a new one.
    // As far ahead as renewals are dated: one signed in this second is revoked too.
    let revoke = Op::Revoke {
        subcloud: s.name.clone(),
        before: dc_certs::now() + RENEWAL_AHEAD_SECS,
    };
    Ok(Change::write(
        vec![Op::DeleteSubcloud(s.id), revoke],
        st.subcloud_json(s, false),
    )
    .then(FollowUp::CloseSession(s.name.clone())))
}

/// Whether an agent whose certificate names `subcloud` and starts at `not_before` may connect: the
/// subcloud must be registered, and the certificate issued after the subcloud was last deleted and
/// after any newer certificate of its own was first presented. A certificate newer than all before it
/// revokes those (the change returned): a renewed or re-issued certificate retires the one it replaces,
/// so a copy of the old one gets in nowhere. Capped at `now` (a renewal is dated one second ahead), so
/// a certificate from a host whose clock runs ahead cannot lock out the next one this controller signs.
pub fn admit_agent(
    st: &State,
    subcloud: &str,
    not_before: i64,
    now: i64,
) -> Result<Option<Change>, ErrorMessage> {
    if !st.subclouds.contains_key(subcloud) {
        return Err(ErrorMessage::new(
            ErrorCode::UnknownSubcloud,
            format!("subcloud '{subcloud}' is not registered"),
        ));
    }
    // dc-certs backdates notBefore by the clock-skew margin; adding it back gives the time of issue.
    let issued_at = not_before.saturating_add(dc_certs::authority::CLOCK_SKEW_SECS);
    let mark = st.revoked.get(subcloud).copied();
    if mark.is_some_and(|before| issued_at <= before) {
        return Err(ErrorMessage::new(
            ErrorCode::Revoked,
            format!(
                "this certificate for subcloud '{subcloud}' was revoked (the subcloud was deleted, \
                 or a newer certificate replaced it); issue a new one (dc-certs issue-agent)"
            ),
        ));
    }
    let before = issued_at.min(now + RENEWAL_AHEAD_SECS) - 1;
    Ok(mark.is_none_or(|m| before > m).then(|| {
        Change::write(
            vec![Op::Revoke {
                subcloud: subcloud.to_owned(),
                before,
            }],
            Value::Null,
        )
    }))
}

/// Why a deleted subcloud's agent is sent away.
pub fn deleted(subcloud: &str) -> ErrorMessage {
    ErrorMessage::new(
        ErrorCode::UnknownSubcloud,
        format!("subcloud '{subcloud}' was deleted"),
    )
}

pub fn list_groups(st: &State) -> Value {
    keyed_list(
        "subcloud_groups",
        st.groups.values().map(Group::to_json).collect(),
    )
}

pub fn show_group(st: &State, r: &GroupRef) -> Result<Value, ApiError> {
    find_group(st, r).map(Group::to_json)
}

pub fn group_members(st: &State, r: &GroupRef) -> Result<Value, ApiError> {
    let g = find_group(st, r)?;
    Ok(keyed_list(
        "subclouds",
        st.subclouds
            .values()
            .filter(|s| s.group_id == g.id)
            .map(|s| st.subcloud_json(s, true))
            .collect(),
    ))
}

/// A new or changed name: not empty, not digits (groups are found by id or name), not taken.
fn check_group_name(st: &State, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.parse::<i64>().is_ok() {
        return Err(ApiError::bad_request("Invalid group name"));
    }
    if st.groups.values().any(|g| g.name == name) {
        return Err(ApiError::refused(format!(
            "A subcloud group with name {name} already exists"
        )));
    }
    Ok(())
}

/// The fields a create and a change share.
fn set_group_fields(g: &mut Group, req: GroupBody) {
    if let Some(d) = req.description {
        g.description = d;
    }
    if let Some(t) = req.update_apply_type {
        g.update_apply_type = t;
    }
    if let Some(n) = req.max_parallel_subclouds {
        g.max_parallel = n;
    }
}

fn put_group(g: Group) -> Change {
    let answer = g.to_json();
    Change::write(vec![Op::PutGroup(g)], answer)
}

pub fn add_group(st: &State, mut req: GroupBody) -> Result<Change, ApiError> {
    let name = req
        .name
        .take()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name required"))?;
    check_group_name(st, &name)?;
    let mut g = Group {
        id: st.last_ids.group.max(DEFAULT_GROUP_ID) + 1,
        name,
        description: String::new(),
        update_apply_type: ApplyType::Parallel,
        max_parallel: DEFAULT_MAX_PARALLEL,
        created_at: now_string(),
        updated_at: None,
    };
    set_group_fields(&mut g, req);
    Ok(put_group(g))
}

pub fn patch_group(st: &State, r: &GroupRef, mut req: GroupBody) -> Result<Change, ApiError> {
    let mut g = find_group(st, r)?.clone();
    if let Some(name) = req.name.take().filter(|n| *n != g.name) {
        if g.id == DEFAULT_GROUP_ID {
            return Err(ApiError::refused("Default group name cannot be changed"));
        }
        check_group_name(st, &name)?;
        g.name = name;
    }
    set_group_fields(&mut g, req);
    g.updated_at = Some(now_string());
    Ok(put_group(g))
}

pub fn delete_group(st: &State, r: &GroupRef) -> Result<Change, ApiError> {
    let g = find_group(st, r)?;
    if g.id == DEFAULT_GROUP_ID {
        return Err(ApiError::refused(
            "Default Subcloud Group may not be deleted",
        ));
    }
    if st.subclouds.values().any(|s| s.group_id == g.id) {
        return Err(ApiError::refused(format!(
            "Subcloud group {} has subclouds; move them to another group before deleting it",
            g.name
        )));
    }
    Ok(Change::write(vec![Op::DeleteGroup(g.id)], g.to_json()))
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::{state, with_strategy};
    use super::*;
    use crate::model::{Stage, StrategyState, step_state};

    fn message(r: Result<Change, ApiError>) -> (u16, String) {
        let e = r.expect_err("refused");
        (e.status.as_u16(), e.message)
    }

    #[test]
    fn adding_a_subcloud_writes_it_in_the_named_group() {
        let mut st = state(1);
        st.apply(vec![Op::PutGroup(Group {
            id: 2,
            name: "edge".into(),
            ..Group::default_group()
        })]);
        let c = add_subcloud(
            &st,
            AddSubcloud {
                name: Some("s2".into()),
                group_id: Some(GroupRef::Name("edge".into())),
                ..AddSubcloud::default()
            },
        )
        .expect("added");
        let [Op::PutSubcloud(s)] = c.ops.as_slice() else {
            panic!("{:?}", c.ops);
        };
        assert_eq!((s.id, s.group_id, s.managed), (2, 2, true));
        assert_eq!(c.answer["name"], "s2");
        let add = |name: &str, group| AddSubcloud {
            name: Some(name.into()),
            group_id: group,
            ..AddSubcloud::default()
        };
        assert_eq!(
            message(add_subcloud(&st, add("s1", None))),
            (422, "Subcloud with name s1 already exists".into())
        );
        assert_eq!(
            message(add_subcloud(&st, add("s3", Some(GroupRef::Id(99))))),
            (400, "Invalid group_id".into())
        );
        assert_eq!(
            message(add_subcloud(&st, AddSubcloud::default())),
            (400, "name required".into())
        );
    }

    #[test]
    fn a_subcloud_in_the_strategy_cannot_be_deleted_and_a_deleted_one_loses_its_agent() {
        let st = with_strategy(
            state(2),
            StrategyState::Initial,
            2,
            &[(Stage::Create, step_state::INITIAL)],
        );
        assert_eq!(
            message(delete_subcloud(&st, "s1")),
            (
                422,
                "Subcloud s1 is part of the kube-rootca-update strategy; delete the strategy first"
                    .into()
            )
        );
        let c = delete_subcloud(&st, "2").expect("deleted");
        assert!(matches!(
            c.ops.as_slice(),
            [Op::DeleteSubcloud(2), Op::Revoke { subcloud, .. }] if subcloud == "s2"
        ));
        assert_eq!(c.follow_ups, [FollowUp::CloseSession("s2".into())]);
    }

    #[test]
    fn an_agent_certificate_issued_before_its_subcloud_was_deleted_is_refused() {
        let skew = dc_certs::authority::CLOCK_SKEW_SECS;
        let now = 5_000;
        let mut st = state(1);
        let refused = admit_agent(&st, "s9", 1_000, now).expect_err("not registered");
        assert_eq!(refused.code, ErrorCode::UnknownSubcloud);
        st.apply(vec![Op::Revoke {
            subcloud: "s1".into(),
            before: 1_000,
        }]);
        // Issued at the second of the deletion or before: revoked; issued after: taken.
        for issued_at in [1_000, 999, 10] {
            let refused = admit_agent(&st, "s1", issued_at - skew, now).expect_err("revoked");
            assert_eq!(refused.code, ErrorCode::Revoked);
            assert!(
                refused.message.contains("issue a new one"),
                "{}",
                refused.message
            );
        }
        assert!(admit_agent(&st, "s1", 1_001 - skew, now).is_ok());
    }

    #[test]
    fn a_newer_certificate_retires_the_older_ones_but_never_past_now() {
        let skew = dc_certs::authority::CLOCK_SKEW_SECS;
        let now = 5_000;
        let mut st = state(1);
        let revoke = |c: Option<Change>| match c.map(|c| c.ops).as_deref() {
            Some([Op::Revoke { before, .. }]) => Some(*before),
            _ => None,
        };
        let first = admit_agent(&st, "s1", 2_000 - skew, now).expect("taken");
        let ops = first.expect("a first certificate is recorded").ops;
        assert!(matches!(ops.as_slice(), [Op::Revoke { before: 1_999, .. }]));
        st.apply(ops);
        // The same certificate again changes nothing; an older one is refused.
        assert_eq!(
            revoke(admit_agent(&st, "s1", 2_000 - skew, now).expect("taken")),
            None
        );
        assert!(admit_agent(&st, "s1", 1_500 - skew, now).is_err());
        // A certificate dated ahead of the controller's clock revokes only up to now: one renewed
        // now (dated a second ahead) still gets in.
        let ahead = admit_agent(&st, "s1", 9_000 - skew, now).expect("taken");
        let ops = ahead.expect("a newer certificate is recorded").ops;
        assert!(matches!(ops.as_slice(), [Op::Revoke { before, .. }] if *before == now));
        st.apply(ops);
        assert!(admit_agent(&st, "s1", now + 1 - skew, now).is_ok());
    }

    #[test]
    fn patching_needs_a_field_and_changes_only_those_given() {
        let st = state(1);
        assert_eq!(
            message(patch_subcloud(&st, "s1", PatchSubcloud::default())),
            (400, "nothing to update".into())
        );
        let c = patch_subcloud(
            &st,
            "s1",
            PatchSubcloud {
                management_state: Some(ManagementState::Unmanaged),
                ..PatchSubcloud::default()
            },
        )
        .expect("patched");
        let [Op::PutSubcloud(s)] = c.ops.as_slice() else {
            panic!("{:?}", c.ops);
        };
        assert!(!s.managed && s.updated_at.is_some());
        assert_eq!(c.answer["management-state"], "unmanaged");
    }

    #[test]
    fn group_rules() {
        let mut st = state(1);
        let body = |name: &str| GroupBody {
            name: Some(name.into()),
            update_apply_type: Some(ApplyType::Serial),
            max_parallel_subclouds: Some(7),
            ..GroupBody::default()
        };
        let c = add_group(&st, body("edge")).expect("added");
        assert_eq!(c.answer["id"], 2);
        assert_eq!(c.answer["update_apply_type"], "serial");
        assert_eq!(c.answer["max_parallel_subclouds"], 7);
        st.apply(c.ops);
        assert_eq!(
            message(add_group(&st, body("edge"))),
            (422, "A subcloud group with name edge already exists".into())
        );
        assert_eq!(
            message(add_group(&st, body("12"))),
            (400, "Invalid group name".into())
        );
        let default = GroupRef::Id(DEFAULT_GROUP_ID);
        assert_eq!(
            message(patch_group(&st, &default, body("Other"))),
            (422, "Default group name cannot be changed".into())
        );
        assert_eq!(
            message(delete_group(&st, &default)),
            (422, "Default Subcloud Group may not be deleted".into())
        );
        st.apply(
            patch_subcloud(
                &st,
                "s1",
                PatchSubcloud {
                    group_id: Some(GroupRef::Name("edge".into())),
                    ..PatchSubcloud::default()
                },
            )
            .expect("moved")
            .ops,
        );
        let edge = GroupRef::Name("edge".into());
        assert_eq!(
            message(delete_group(&st, &edge)),
            (
                422,
                "Subcloud group edge has subclouds; move them to another group before deleting it"
                    .into()
            )
        );
        assert_eq!(
            group_members(&st, &edge).expect("found")["subclouds"][0]["name"],
            "s1"
        );
        assert_eq!(
            show_group(&st, &GroupRef::Name("zzz".into())).map_err(|e| e.message),
            Err("Subcloud Group not found".to_owned())
        );
    }
}
