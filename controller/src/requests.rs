//! The REST API's request bodies as types. The API layer turns a body into one of these ([`Body`]);
//! the orchestrator only ever sees the typed request. Each field keeps dcmanager's error message for a
//! bad value, and the checks that span fields run afterwards in dcmanager's order
//! ([`CreateStrategy::check`]). Unknown keys are ignored, as dcmanager ignored them.
//!
//! The same types describe the bodies in the OpenAPI document (`docs/openapi.json`).

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use dc_protocol::{AlarmRestrictionType, DefaultInstanceAction, StorageApplyType, WorkerApplyType};

use crate::model::{ApplyType, MAX_PARALLEL_LIMIT, STRATEGY_TYPE};
use crate::options::{MAX_PARALLEL_WORKERS_LIMIT, OptionValues};

/// A request body: parsed from JSON, then checked.
pub trait Body: Sized {
    /// Whether an empty object is refused with "Body required" before any field is read.
    const NEEDS_FIELDS: bool = true;

    /// The body's value as a typed request, or the 400 that says what is wrong with it.
    fn from_json(body: Value) -> Result<Self, ApiError>;
}

/// Deserializes `body` into `T`: a field's own message comes out as it is (the value carries no
/// position, so serde adds none).
fn typed<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Shows a JSON value the way the messages quote it: strings bare, everything else as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A group named by id (a number, or a string of digits) or by name, wherever a body or a path names
/// one. Parsed here, once; the registry looks it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(i64),
    Name(String),
}

impl GroupRef {
    /// A path segment or a string field: digits are an id, anything else a name.
    pub fn parse(s: &str) -> Self {
        s.parse()
            .map_or_else(|_| GroupRef::Name(s.to_owned()), GroupRef::Id)
    }
}

impl<'de> Deserialize<'de> for GroupRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().map(GroupRef::Id),
            Value::String(s) => Some(GroupRef::parse(&s)),
            _ => None,
        }
        .ok_or_else(|| D::Error::custom("Invalid group_id"))
    }
}

/// The one reading of dcmanager's boolean flags (`force`, `stop-on-failure`): JSON booleans and the
/// strings "true"/"false" alike. dcmanager accepted a JSON `true` for force and then silently treated
/// it as false; here both spellings mean what they say. `invalid` words the error for the bad value.
fn bool_or_string<'de, D: Deserializer<'de>>(
    d: D,
    invalid: impl Fn(&Value) -> String,
) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(D::Error::custom(invalid(&other))),
    }
}

/// The longest value a string field takes: dcmanager's name, description and location columns hold
/// 255 characters; a subject is short; a cert-file holds one CA and its key. A longer value is refused
/// with a 400 rather than stored and echoed in every list.
fn max_chars(key: &str) -> usize {
    match key {
        "cert-file" => 65_536,
        "subject" => 1024,
        _ => 255,
    }
}

/// A string field, or the 400 "`<key>` must be a string" (or is too long).
fn string<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => {
            // PostgreSQL's TEXT cannot hold a NUL: refused here, where the sender can fix it.
            if s.contains('\0') {
                return Err(D::Error::custom(format!(
                    "{key} must not contain a NUL character"
                )));
            }
            let (len, max) = (s.chars().count(), max_chars(key));
            if len > max {
                return Err(D::Error::custom(format!(
                    "{key} is {len} characters long; at most {max} are allowed"
                )));
            }
            Ok(Some(s))
        }
        _ => Err(D::Error::custom(format!("{key} must be a string"))),
    }
}

/// A whole number given as a JSON number or a string of digits; `None` for anything else.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

macro_rules! string_fields {
    ($($f:ident => $key:literal),* $(,)?) => {
        $(fn $f<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            string(d, $key)
        })*
    };
}

string_fields! {
    name => "name",
    description => "description",
    location => "location",
    cloud_name => "cloud_name",
    subject => "subject",
    expiry_date => "expiry-date",
    cert_file => "cert-file",
}

/// `POST /v1.0/subclouds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct AddSubcloud {
    /// The subcloud's name: the CN of its agent's certificate.
    #[serde(default, deserialize_with = "name")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "description")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "location")]
    pub location: Option<String>,
    /// The group (id or name); the Default group when absent. `group` is accepted as well.
    #[serde(default, alias = "group")]
    #[schema(value_type = Option<String>, example = "Default")]
    pub group_id: Option<GroupRef>,
}

impl Body for AddSubcloud {
    fn from_json(body: Value) -> Result<Self, ApiError> {
        typed(body)
    }
}

/// `managed` or `unmanaged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManagementState {
    Managed,
    Unmanaged,
}

impl<'de> Deserialize<'de> for ManagementState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match string(d, "management-state")?.as_deref() {
            Some("managed") => Ok(ManagementState::Managed),
            Some("unmanaged") => Ok(ManagementState::Unmanaged),
            _ => Err(D::Error::custom("Invalid management-state")),
        }
    }
}

/// `PATCH /v1.0/subclouds/{subcloud}`: at least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct PatchSubcloud {
    #[serde(default, rename = "management-state")]
    pub management_state: Option<ManagementState>,
    #[serde(default, deserialize_with = "description")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "location")]
    pub location: Option<String>,
    /// Move to this group (id or name). `group` is accepted as well.
    #[serde(default, alias = "group")]
    #[schema(value_type = Option<String>, example = "Default")]
    pub group_id: Option<GroupRef>,
}

impl Body for PatchSubcloud {
    fn from_json(body: Value) -> Result<Self, ApiError> {
        typed(body)
    }
}

fn group_apply_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ApplyType>, D::Error> {
    string(d, "update_apply_type")?
        .map(|t| {
            ApplyType::parse(&t).ok_or_else(|| D::Error::custom("Invalid group update_apply_type"))
        })
        .transpose()
}

fn group_max_parallel<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => number(&v)
            .filter(|n| (1..=i64::from(MAX_PARALLEL_LIMIT)).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom("Invalid group max_parallel_subclouds")),
    }
}

/// `POST /v1.0/subcloud-groups` (name required) and `PATCH /v1.0/subcloud-groups/{group}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct GroupBody {
    /// Not all digits (a group is found by id or name); the Default group's name cannot change.
    #[serde(default, deserialize_with = "name")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "description")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "group_apply_type")]
    #[schema(value_type = Option<String>, example = "parallel")]
    pub update_apply_type: Option<ApplyType>,
    /// 1 to 5000; a number or a string of digits.
    #[serde(default, deserialize_with = "group_max_parallel")]
    pub max_parallel_subclouds: Option<u32>,
}

impl Body for GroupBody {
    fn from_json(body: Value) -> Result<Self, ApiError> {
        typed(body)
    }
}

fn force<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool_or_string(d, |v| {
        format!(
            "Invalid value '{}' for force - must be True/False or 'true'/'false'",
            shown(v)
        )
    })
}

fn proceed_with_stranded_pods<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool_or_string(d, |_| "proceed-with-stranded-pods invalid".to_owned())
}

fn rollback<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool_or_string(d, |_| "rollback invalid".to_owned())
}

fn stop_on_failure<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool_or_string(d, |_| "stop-on-failure invalid".to_owned())
}

fn strategy_apply_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ApplyType>, D::Error> {
    let invalid = || D::Error::custom("subcloud-apply-type invalid");
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => ApplyType::parse(&s).map(Some).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// Kept as given until [`CreateStrategy::check`], which judges it after the checks dcmanager runs first.
fn max_parallel<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => number(&v).map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "max-parallel-subclouds invalid value. Value: {}",
                shown(&v)
            ))
        }),
    }
}

fn strategy_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(t) if t == STRATEGY_TYPE => Ok(Some(t)),
        _ => Err(D::Error::custom("type invalid")),
    }
}

/// `POST /v1.0/sw-update-strategy`: dcmanager's create body for a kube-rootca-update strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct CreateStrategy {
    /// Must be `kube-rootca-update`.
    #[serde(default, rename = "type", deserialize_with = "strategy_type")]
    #[schema(example = "kube-rootca-update")]
    pub kind: Option<String>,
    /// `parallel` or `serial` (serial runs one subcloud at a time).
    #[serde(
        default,
        rename = "subcloud-apply-type",
        deserialize_with = "strategy_apply_type"
    )]
    #[schema(value_type = Option<String>, example = "parallel")]
    pub apply_type: Option<ApplyType>,
    /// The window: 1 to 5000 subclouds at once (a number or a string of digits).
    #[serde(
        default,
        rename = "max-parallel-subclouds",
        deserialize_with = "max_parallel"
    )]
    pub max_parallel: Option<i64>,
    /// Start no further subcloud once one failed (a JSON boolean or "true"/"false").
    #[serde(
        default,
        rename = "stop-on-failure",
        deserialize_with = "stop_on_failure"
    )]
    #[schema(value_type = bool)]
    pub stop_on_failure: bool,
    /// Only this subcloud.
    #[serde(default, deserialize_with = "cloud_name")]
    pub cloud_name: Option<String>,
    /// Only this group (id or name); its apply type and window are used.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "Default")]
    pub subcloud_group: Option<GroupRef>,
    /// Include in-sync subclouds too (a JSON boolean or "true"/"false").
    #[serde(default, deserialize_with = "force")]
    #[schema(value_type = bool)]
    pub force: bool,
    /// The new root CA's subject, e.g. `C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER`.
    #[serde(default, deserialize_with = "subject")]
    pub subject: Option<String>,
    /// `YYYY-MM-DD`: the new root CA is valid through that day.
    #[serde(default, rename = "expiry-date", deserialize_with = "expiry_date")]
    pub expiry_date: Option<String>,
    /// A PEM with the CA certificate and its private key, instead of a generated CA.
    #[serde(default, rename = "cert-file", deserialize_with = "cert_file")]
    pub cert_file: Option<String>,
    /// Go on although running pods that nothing restarts (bare pods, paused Deployments) would keep
    /// the old CA alone (a JSON boolean or "true"/"false"); otherwise such a subcloud refuses to start.
    #[serde(
        default,
        rename = "proceed-with-stranded-pods",
        deserialize_with = "proceed_with_stranded_pods"
    )]
    #[schema(value_type = bool)]
    pub proceed_with_stranded_pods: bool,
    /// Roll the targeted subclouds' unfinished updates back to their old root CA instead of updating
    /// (a JSON boolean or "true"/"false"; ours, dcmanager has no rollback): targets the subclouds with
    /// an unfinished update; subject, expiry-date, cert-file and force do not go with it.
    #[serde(default, deserialize_with = "rollback")]
    #[schema(value_type = bool)]
    pub rollback: bool,
}

impl CreateStrategy {
    /// The checks that span fields, in dcmanager's order, with its messages.
    pub fn check(self) -> Result<Self, ApiError> {
        if self.subcloud_group.is_some() && self.cloud_name.is_some() {
            return Err(ApiError::bad_request(
                "cloud_name and subcloud_group are mutually exclusive",
            ));
        }
        if self.subcloud_group.is_some()
            && (self.apply_type.is_some() || self.max_parallel.is_some())
        {
            return Err(ApiError::bad_request(
                "subcloud-apply-type and max-parallel-subclouds are not allowed when subcloud_group is provided",
            ));
        }
        if let Some(n) = self.max_parallel
            && !(1..=i64::from(MAX_PARALLEL_LIMIT)).contains(&n)
        {
            return Err(ApiError::bad_request(format!(
                "Invalid max-parallel-subclouds value: {n}. For {STRATEGY_TYPE} strategy, the value must be between 1 and {MAX_PARALLEL_LIMIT}."
            )));
        }
        if self.kind.is_none() {
            return Err(ApiError::bad_request("type required"));
        }
        Ok(self)
    }

    /// The window asked for, once [`Self::check`] passed.
    pub fn max_parallel(&self) -> Option<u32> {
        self.max_parallel.and_then(|n| u32::try_from(n).ok())
    }
}

impl Body for CreateStrategy {
    fn from_json(body: Value) -> Result<Self, ApiError> {
        typed::<Self>(body)?.check()
    }
}

/// What `POST /v1.0/sw-update-strategy/actions` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Apply,
    Abort,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Abort => "abort",
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(a) if a == "apply" => Ok(Action::Apply),
            Value::String(a) if a == "abort" => Ok(Action::Abort),
            Value::String(a) => Err(D::Error::custom(format!("action {a} invalid"))),
            _ => Err(D::Error::custom("action invalid")),
        }
    }
}

/// `POST /v1.0/sw-update-strategy/actions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct StrategyAction {
    pub action: Option<Action>,
}

impl Body for StrategyAction {
    const NEEDS_FIELDS: bool = false;

    fn from_json(body: Value) -> Result<Self, ApiError> {
        typed(body)
    }
}

impl StrategyAction {
    /// The action, or the 400 "action required".
    pub fn action(&self) -> Result<Action, ApiError> {
        self.action
            .ok_or_else(|| ApiError::bad_request("action required"))
    }
}

/// An option value by its upstream name ([`dc_protocol::options`]); a value that is not one says
/// which are (dcmanager itself stored any string and left the refusal to the subcloud's VIM).
fn option_value<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = dc_protocol::options::OptionValueError>,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => T::from_str(&shown(&v)).map(Some).map_err(D::Error::custom),
    }
}

fn max_parallel_workers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => number(&v)
            .filter(|n| (1..=i64::from(MAX_PARALLEL_WORKERS_LIMIT)).contains(n))
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "{:?} is not a valid max-parallel-workers: use a whole number from 1 to {MAX_PARALLEL_WORKERS_LIMIT}",
                    shown(&v)
                ))
            }),
    }
}

/// `POST /v1.0/sw-update-options/{subcloud}`: dcmanager's body (its client sends all five keys). A
/// key left out keeps the entry's value; a new subcloud entry starts from the default entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub struct UpdateOptions {
    /// `parallel` or `serial`; accepted and shown for compatibility (no storage phase here).
    #[serde(
        default,
        rename = "storage-apply-type",
        deserialize_with = "option_value"
    )]
    #[schema(value_type = Option<String>, example = "parallel")]
    pub storage_apply_type: Option<StorageApplyType>,
    /// `parallel` (up to `max-parallel-workers` workers at once), `serial` or `ignore` (refused
    /// where the subcloud has workers).
    #[serde(
        default,
        rename = "worker-apply-type",
        deserialize_with = "option_value"
    )]
    #[schema(value_type = Option<String>, example = "parallel")]
    pub worker_apply_type: Option<WorkerApplyType>,
    /// 1 to 1000 (a number or a string of digits).
    #[serde(
        default,
        rename = "max-parallel-workers",
        deserialize_with = "max_parallel_workers"
    )]
    #[schema(example = 10)]
    pub max_parallel_workers: Option<u16>,
    /// `strict` or `relaxed`.
    #[serde(
        default,
        rename = "alarm-restriction-type",
        deserialize_with = "option_value"
    )]
    #[schema(value_type = Option<String>, example = "relaxed")]
    pub alarm_restriction_type: Option<AlarmRestrictionType>,
    /// `migrate` or `stop-start`; accepted and shown for compatibility (no instances are moved).
    #[serde(
        default,
        rename = "default-instance-action",
        deserialize_with = "option_value"
    )]
    #[schema(value_type = Option<String>, example = "migrate")]
    pub default_instance_action: Option<DefaultInstanceAction>,
}

impl Body for UpdateOptions {
    fn from_json(body: Value) -> Result<Self, ApiError> {
        typed(body)
    }
}

impl UpdateOptions {
    /// `base` with the values this body sets.
    pub fn applied_to(&self, base: OptionValues) -> OptionValues {
        OptionValues {
            storage_apply_type: self.storage_apply_type.unwrap_or(base.storage_apply_type),
            worker_apply_type: self.worker_apply_type.unwrap_or(base.worker_apply_type),
            max_parallel_workers: self
                .max_parallel_workers
                .unwrap_or(base.max_parallel_workers),
            alarm_restriction_type: self
                .alarm_restriction_type
                .unwrap_or(base.alarm_restriction_type),
            default_instance_action: self
                .default_instance_action
                .unwrap_or(base.default_instance_action),
        }
    }
}

/// Parses a request body: not JSON, or not an object (or an empty one where fields are needed), is
/// refused before any field is read.
pub fn parse<T: Body>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("Body required"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request body is not valid JSON: {e}")))?;
    match &value {
        Value::Object(m) if !(T::NEEDS_FIELDS && m.is_empty()) => T::from_json(value),
        _ => Err(ApiError::bad_request("Body required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> Result<CreateStrategy, ApiError> {
        parse(body.to_string().as_bytes())
    }

    fn err(body: Value) -> (u16, String) {
        match create(body) {
            Ok(r) => panic!("accepted {r:?}"),
            Err(e) => (e.status.as_u16(), e.message),
        }
    }

    #[test]
    fn overlong_strings_are_refused_with_their_length() {
        let long = "x".repeat(256);
        let add: Result<AddSubcloud, ApiError> = parse(
            json!({"name": "s1", "description": long})
                .to_string()
                .as_bytes(),
        );
        let e = add.expect_err("refused");
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (
                400,
                "description is 256 characters long; at most 255 are allowed"
            )
        );
        let ok: Result<AddSubcloud, ApiError> = parse(
            json!({"name": "s1", "location": "é".repeat(255)})
                .to_string()
                .as_bytes(),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn a_nul_character_is_refused_by_name() {
        let add: Result<AddSubcloud, ApiError> = parse(
            json!({"name": "s1", "description": "a\u{0}b"})
                .to_string()
                .as_bytes(),
        );
        let e = add.expect_err("refused");
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (400, "description must not contain a NUL character")
        );
    }

    #[test]
    fn create_validation_messages() {
        assert_eq!(err(json!({})), (400, "Body required".into()));
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "force": "yes"})),
            (
                400,
                "Invalid value 'yes' for force - must be True/False or 'true'/'false'".into()
            )
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "subcloud-apply-type": "both"})).1,
            "subcloud-apply-type invalid"
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "cloud_name": "a", "subcloud_group": "Default"})).1,
            "cloud_name and subcloud_group are mutually exclusive"
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "max-parallel-subclouds": 3, "subcloud_group": 1})).1,
            "subcloud-apply-type and max-parallel-subclouds are not allowed when subcloud_group is provided"
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "max-parallel-subclouds": "many"})).1,
            "max-parallel-subclouds invalid value. Value: many"
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "max-parallel-subclouds": 5001})).1,
            "Invalid max-parallel-subclouds value: 5001. For kube-rootca-update strategy, the value must be between 1 and 5000."
        );
        assert_eq!(err(json!({"force": true})).1, "type required");
        assert_eq!(err(json!({"type": "patch"})).1, "type invalid");
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "stop-on-failure": "maybe"})).1,
            "stop-on-failure invalid"
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "subject": 5})).1,
            "subject must be a string"
        );
        assert_eq!(
            err(json!({"type": STRATEGY_TYPE, "subcloud_group": true})).1,
            "Invalid group_id"
        );
    }

    #[test]
    fn booleans_as_strings_or_json() {
        for (v, want) in [
            (json!(true), true),
            (json!("true"), true),
            (json!("false"), false),
            (json!(false), false),
            (json!(null), false),
        ] {
            let r = create(json!({"type": STRATEGY_TYPE, "force": v, "stop-on-failure": v}))
                .expect("valid");
            assert_eq!((r.force, r.stop_on_failure), (want, want));
        }
    }

    #[test]
    fn groups_are_named_by_id_or_name_one_way_everywhere() {
        assert_eq!(GroupRef::parse("7"), GroupRef::Id(7));
        assert_eq!(GroupRef::parse("edge"), GroupRef::Name("edge".into()));
        let r = create(json!({"type": STRATEGY_TYPE, "subcloud_group": "2"})).expect("valid");
        assert_eq!(r.subcloud_group, Some(GroupRef::Id(2)));
        let s: AddSubcloud = parse(br#"{"name": "s1", "group": "edge"}"#).expect("valid");
        assert_eq!(s.group_id, Some(GroupRef::Name("edge".into())));
        let s: AddSubcloud = parse(br#"{"name": "s1", "group_id": 3}"#).expect("valid");
        assert_eq!(s.group_id, Some(GroupRef::Id(3)));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        let e = |b: &[u8]| parse::<AddSubcloud>(b).expect_err("refused").message;
        assert_eq!(e(b""), "Body required");
        assert_eq!(e(b"{}"), "Body required");
        assert_eq!(e(b"[1]"), "Body required");
        assert!(e(b"{").starts_with("Request body is not valid JSON"));
        // An action body may be an empty object: it then lacks the action.
        let a: StrategyAction = parse(b"{}").expect("parsed");
        assert_eq!(a.action().expect_err("required").message, "action required");
        let e = parse::<StrategyAction>(br#"{"action": "go"}"#).expect_err("invalid");
        assert_eq!(e.message, "action go invalid");
    }

    #[test]
    fn group_and_subcloud_field_messages() {
        let e = |b: &[u8]| parse::<GroupBody>(b).expect_err("refused").message;
        assert_eq!(
            e(br#"{"name": "big", "max_parallel_subclouds": 0}"#),
            "Invalid group max_parallel_subclouds"
        );
        assert_eq!(
            e(br#"{"name": "bad", "update_apply_type": "both"}"#),
            "Invalid group update_apply_type"
        );
        let g: GroupBody = parse(br#"{"max_parallel_subclouds": "9"}"#).expect("valid");
        assert_eq!(g.max_parallel_subclouds, Some(9));
        let e = parse::<PatchSubcloud>(br#"{"management-state": "maybe"}"#).expect_err("refused");
        assert_eq!(e.message, "Invalid management-state");
    }

    #[test]
    fn options_take_upstreams_names_and_refuse_other_values_saying_which_are_taken() {
        let ok: UpdateOptions = parse(
            json!({"storage-apply-type": "serial", "worker-apply-type": "serial",
                "max-parallel-workers": "4", "alarm-restriction-type": "strict",
                "default-instance-action": "stop-start"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let v = ok.applied_to(OptionValues::default());
        assert_eq!(
            (v.worker_apply_type, v.max_parallel_workers),
            (WorkerApplyType::Serial, 4)
        );
        // A key left out keeps the base's value.
        let only: UpdateOptions = parse(br#"{"max-parallel-workers": 3}"#).unwrap();
        assert_eq!(
            only.applied_to(v),
            OptionValues {
                max_parallel_workers: 3,
                ..v
            }
        );
        let refused = |body: Value| {
            parse::<UpdateOptions>(body.to_string().as_bytes())
                .map(|_| ())
                .unwrap_err()
        };
        let e = refused(json!({"worker-apply-type": "sideways"}));
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (
                400,
                "\"sideways\" is not a valid worker-apply-type: use one of serial parallel ignore"
            )
        );
        assert_eq!(
            refused(json!({"default-instance-action": 1})).message,
            "\"1\" is not a valid default-instance-action: use one of stop-start migrate"
        );
        assert_eq!(
            refused(json!({"max-parallel-workers": 0})).message,
            "\"0\" is not a valid max-parallel-workers: use a whole number from 1 to 1000"
        );
        assert_eq!(refused(json!({})).message, "Body required");
    }
}
