//! Request bodies, built exactly as docs/rest-api.md spells them, and the checks the original
//! client makes before sending anything.

use serde_json::{Map, Value, json};

/// The strategy type every strategy request names.
pub const STRATEGY_TYPE: &str = "kube-rootca-update";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyType {
    Parallel,
    Serial,
}

impl ApplyType {
    fn as_str(self) -> &'static str {
        match self {
            ApplyType::Parallel => "parallel",
            ApplyType::Serial => "serial",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("The cloud_name and group options are mutually exclusive.")]
    CloudAndGroup,
    #[error("The --subcloud-apply-type option is not allowed when the group option is provided.")]
    ApplyTypeAndGroup,
    #[error(
        "The --max-parallel-subclouds option is not allowed when the group option is provided."
    )]
    MaxParallelAndGroup,
    #[error(
        "at least one of --name, --description, --update_apply_type, --max_parallel_subclouds is required"
    )]
    NothingToUpdate,
    #[error("Nothing to update: give at least one of --description, --location, --group")]
    NothingToUpdateSubcloud,
    #[error(
        "Nothing to update: give at least one of --storage-apply-type, --worker-apply-type, \
         --max-parallel-workers, --alarm-restriction-type, --default-instance-action"
    )]
    NothingToUpdateOptions,
}

// `kube-rootca-update-strategy create` options (a plain comment: a doc comment would become the
// help text of the command that flattens them).
#[derive(Debug, Default, clap::Args)]
pub struct CreateStrategy {
    /// Subcloud apply type (parallel or serial).
    #[arg(long, value_enum)]
    pub subcloud_apply_type: Option<ApplyType>,
    /// Maximum number of parallel subclouds.
    #[arg(long)]
    pub max_parallel_subclouds: Option<u32>,
    /// Do not update any additional subclouds after a failure.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Name or ID of subcloud group to update.
    #[arg(long)]
    pub group: Option<String>,
    /// Subject of the generated root CA, e.g. 'C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER'.
    #[arg(long)]
    pub subject: Option<String>,
    /// Expiry date of the generated root CA, YYYY-MM-DD.
    #[arg(long)]
    pub expiry_date: Option<String>,
    /// Path to a PEM file holding the new root CA certificate and its key; its content is uploaded.
    #[arg(long)]
    pub cert_file: Option<std::path::PathBuf>,
    /// Update subclouds even when their kube-rootca endpoint is in-sync.
    #[arg(long)]
    pub force: bool,
    /// Go on although running pods that nothing restarts (bare pods, paused Deployments) would keep
    /// trusting the old root CA alone and lose trust in the API server at update-certs.
    #[arg(long)]
    pub proceed_with_stranded_pods: bool,
    /// Roll back the subclouds' unfinished updates to their old root CA instead of updating: targets
    /// the subclouds with an unfinished update; refused on one that completed hosts trust-new-ca.
    #[arg(long, conflicts_with_all = ["subject", "expiry_date", "cert_file", "force"])]
    pub rollback: bool,
    /// Name of a single subcloud to update.
    pub cloud_name: Option<String>,
}

impl CreateStrategy {
    /// Fails like the original client before anything is sent: a group brings its own scope,
    /// apply type and parallelism.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.group.is_none() {
            return Ok(());
        }
        if self.cloud_name.is_some() {
            return Err(ValidationError::CloudAndGroup);
        }
        if self.subcloud_apply_type.is_some() {
            return Err(ValidationError::ApplyTypeAndGroup);
        }
        if self.max_parallel_subclouds.is_some() {
            return Err(ValidationError::MaxParallelAndGroup);
        }
        Ok(())
    }

    /// The create body; `cert_pem` is the content of `--cert-file`, read by the caller.
    /// Flags go as the strings `"true"` the original sends, which the contract accepts.
    pub fn body(&self, cert_pem: Option<String>) -> Result<Value, ValidationError> {
        self.validate()?;
        let mut body = Map::new();
        body.insert("type".into(), json!(STRATEGY_TYPE));
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        put(
            "subcloud-apply-type",
            self.subcloud_apply_type.map(|t| json!(t.as_str())),
        );
        put(
            "max-parallel-subclouds",
            self.max_parallel_subclouds.map(|n| json!(n)),
        );
        put(
            "stop-on-failure",
            self.stop_on_failure.then(|| json!("true")),
        );
        put("cloud_name", self.cloud_name.as_ref().map(|c| json!(c)));
        put("subcloud_group", self.group.as_ref().map(|g| json!(g)));
        put("force", self.force.then(|| json!("true")));
        put("subject", self.subject.as_ref().map(|s| json!(s)));
        put("expiry-date", self.expiry_date.as_ref().map(|d| json!(d)));
        put("cert-file", cert_pem.map(Value::String));
        put(
            "proceed-with-stranded-pods",
            self.proceed_with_stranded_pods.then(|| json!("true")),
        );
        put("rollback", self.rollback.then(|| json!("true")));
        Ok(Value::Object(body))
    }
}

/// `{"action": "apply"|"abort"}`.
pub fn action(action: &str) -> Value {
    json!({ "action": action })
}

/// The PATCH that manages or unmanages a subcloud.
pub fn management(managed: bool) -> Value {
    json!({ "management-state": if managed { "managed" } else { "unmanaged" } })
}

// `subcloud add` options.
#[derive(Debug, Default, clap::Args)]
pub struct AddSubcloud {
    /// Name of the subcloud; its agent presents a certificate for this name.
    #[arg(long)]
    pub name: String,
    /// Description of the subcloud.
    #[arg(long)]
    pub description: Option<String>,
    /// Location of the subcloud.
    #[arg(long)]
    pub location: Option<String>,
    /// Name or ID of the subcloud group (default: the Default group).
    #[arg(long)]
    pub group: Option<String>,
}

impl AddSubcloud {
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        for (key, value) in [
            ("description", &self.description),
            ("location", &self.location),
            ("group", &self.group),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        Value::Object(body)
    }
}

// `subcloud update` options: upstream's, where the API has the field (a subcloud's name and its
// network settings belong to deployment, which dc-rootca does not do).
#[derive(Debug, Default, clap::Args)]
pub struct UpdateSubcloud {
    /// Description of the subcloud.
    #[arg(long)]
    pub description: Option<String>,
    /// Location of the subcloud.
    #[arg(long)]
    pub location: Option<String>,
    /// Name or ID of the subcloud group to move it to.
    #[arg(long)]
    pub group: Option<String>,
}

impl UpdateSubcloud {
    /// The PATCH body: only the fields given, the group as `group_id` like the original client.
    /// Refused before anything is sent when there is nothing to change.
    pub fn body(&self) -> Result<Value, ValidationError> {
        let mut body = Map::new();
        for (key, value) in [
            ("description", &self.description),
            ("location", &self.location),
            ("group_id", &self.group),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        if body.is_empty() {
            return Err(ValidationError::NothingToUpdateSubcloud);
        }
        Ok(Value::Object(body))
    }
}

// `subcloud-group add|update` fields, spelt with the original's underscores (dashes accepted too).
#[derive(Debug, Default, clap::Args)]
pub struct GroupFields {
    /// Name of the group.
    #[arg(long)]
    pub name: Option<String>,
    /// Description of the group.
    #[arg(long)]
    pub description: Option<String>,
    /// Apply type used when a strategy targets this group.
    #[arg(long = "update_apply_type", alias = "update-apply-type", value_enum)]
    pub update_apply_type: Option<ApplyType>,
    /// Parallelism used when a strategy targets this group.
    #[arg(long = "max_parallel_subclouds", alias = "max-parallel-subclouds")]
    pub max_parallel_subclouds: Option<u32>,
}

impl GroupFields {
    /// The body of a group add or update: only the fields given.
    pub fn body(&self) -> Result<Value, ValidationError> {
        let mut body = Map::new();
        for (key, value) in [("name", &self.name), ("description", &self.description)] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        if let Some(kind) = self.update_apply_type {
            body.insert("update_apply_type".into(), json!(kind.as_str()));
        }
        if let Some(n) = self.max_parallel_subclouds {
            body.insert("max_parallel_subclouds".into(), json!(n));
        }
        if body.is_empty() {
            return Err(ValidationError::NothingToUpdate);
        }
        Ok(Value::Object(body))
    }
}

// `strategy-config update` options, with the original's names and choices (`ignore` added for
// workers). The original requires all five; here those left out keep their current value.
#[derive(Debug, Default, clap::Args)]
pub struct OptionsFields {
    /// Storage node apply type (parallel or serial); shown for compatibility only.
    #[arg(long, value_parser = ["parallel", "serial"])]
    pub storage_apply_type: Option<String>,
    /// Worker node apply type: parallel (up to --max-parallel-workers at once), serial, or ignore.
    #[arg(long, value_parser = ["parallel", "serial", "ignore"])]
    pub worker_apply_type: Option<String>,
    /// Maximum number of workers updated at once with parallel (1 to 1000).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_parallel_workers: Option<u16>,
    /// Whether the update may start if subcloud alarms are present (strict, relaxed).
    #[arg(long, value_parser = ["strict", "relaxed"])]
    pub alarm_restriction_type: Option<String>,
    /// How instances should be handled (stop-start, migrate); shown for compatibility only.
    #[arg(long, value_parser = ["stop-start", "migrate"])]
    pub default_instance_action: Option<String>,
}

impl OptionsFields {
    /// The body of `POST /sw-update-options/{subcloud}`: only the options given.
    pub fn body(&self) -> Result<Value, ValidationError> {
        let mut body = Map::new();
        for (key, value) in [
            ("storage-apply-type", &self.storage_apply_type),
            ("worker-apply-type", &self.worker_apply_type),
            ("alarm-restriction-type", &self.alarm_restriction_type),
            ("default-instance-action", &self.default_instance_action),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        if let Some(n) = self.max_parallel_workers {
            body.insert("max-parallel-workers".into(), json!(n));
        }
        if body.is_empty() {
            return Err(ValidationError::NothingToUpdateOptions);
        }
        Ok(Value::Object(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_uses_the_contract_keys() {
        let create = CreateStrategy {
            subcloud_apply_type: Some(ApplyType::Serial),
            max_parallel_subclouds: Some(3),
            stop_on_failure: true,
            subject: Some("C=CA CN=new".into()),
            expiry_date: Some("2030-01-01".into()),
            force: true,
            proceed_with_stranded_pods: true,
            cloud_name: Some("subcloud1".into()),
            ..CreateStrategy::default()
        };
        assert_eq!(
            create.body(Some("PEM".into())).unwrap(),
            json!({"type": "kube-rootca-update", "subcloud-apply-type": "serial", "max-parallel-subclouds": 3,
                "stop-on-failure": "true", "cloud_name": "subcloud1", "force": "true", "subject": "C=CA CN=new",
                "expiry-date": "2030-01-01", "cert-file": "PEM", "proceed-with-stranded-pods": "true"})
        );
        assert_eq!(
            CreateStrategy::default().body(None).unwrap(),
            json!({"type": "kube-rootca-update"})
        );
        let rollback = CreateStrategy {
            rollback: true,
            cloud_name: Some("subcloud1".into()),
            ..CreateStrategy::default()
        };
        assert_eq!(
            rollback.body(None).unwrap(),
            json!({"type": "kube-rootca-update", "cloud_name": "subcloud1", "rollback": "true"})
        );
        let group = CreateStrategy {
            group: Some("Default".into()),
            ..CreateStrategy::default()
        };
        assert_eq!(
            group.body(None).unwrap(),
            json!({"type": "kube-rootca-update", "subcloud_group": "Default"})
        );
    }

    #[test]
    fn group_excludes_cloud_name_apply_type_and_max_parallel() {
        let with = |f: fn(&mut CreateStrategy)| {
            let mut c = CreateStrategy {
                group: Some("g".into()),
                ..CreateStrategy::default()
            };
            f(&mut c);
            c.validate()
        };
        assert_eq!(
            with(|c| c.cloud_name = Some("s".into())),
            Err(ValidationError::CloudAndGroup)
        );
        assert_eq!(
            ValidationError::CloudAndGroup.to_string(),
            "The cloud_name and group options are mutually exclusive."
        );
        assert_eq!(
            with(|c| c.subcloud_apply_type = Some(ApplyType::Parallel)),
            Err(ValidationError::ApplyTypeAndGroup)
        );
        assert_eq!(
            with(|c| c.max_parallel_subclouds = Some(2)),
            Err(ValidationError::MaxParallelAndGroup)
        );
        assert_eq!(with(|c| c.force = true), Ok(()));
    }

    #[test]
    fn subcloud_and_group_bodies() {
        let add = AddSubcloud {
            name: "s1".into(),
            group: Some("edge".into()),
            ..AddSubcloud::default()
        };
        assert_eq!(add.body(), json!({"name": "s1", "group": "edge"}));
        assert_eq!(management(false), json!({"management-state": "unmanaged"}));
        let fields = GroupFields {
            name: Some("edge".into()),
            update_apply_type: Some(ApplyType::Serial),
            max_parallel_subclouds: Some(4),
            ..GroupFields::default()
        };
        assert_eq!(
            fields.body().unwrap(),
            json!({"name": "edge", "update_apply_type": "serial", "max_parallel_subclouds": 4})
        );
        assert_eq!(
            GroupFields::default().body(),
            Err(ValidationError::NothingToUpdate)
        );
    }

    #[test]
    fn subcloud_update_sends_only_what_is_given() {
        let update = UpdateSubcloud {
            location: Some("東京".into()),
            group: Some("edge".into()),
            ..UpdateSubcloud::default()
        };
        assert_eq!(
            update.body().unwrap(),
            json!({"location": "東京", "group_id": "edge"})
        );
        let describe = UpdateSubcloud {
            description: Some(String::new()),
            ..UpdateSubcloud::default()
        };
        assert_eq!(describe.body().unwrap(), json!({"description": ""}));
        assert_eq!(
            UpdateSubcloud::default().body(),
            Err(ValidationError::NothingToUpdateSubcloud)
        );
    }

    #[test]
    fn strategy_config_update_sends_only_the_options_given() {
        let fields = OptionsFields {
            worker_apply_type: Some("parallel".into()),
            max_parallel_workers: Some(4),
            ..OptionsFields::default()
        };
        assert_eq!(
            fields.body().unwrap(),
            json!({"worker-apply-type": "parallel", "max-parallel-workers": 4})
        );
        assert_eq!(
            OptionsFields::default().body(),
            Err(ValidationError::NothingToUpdateOptions)
        );
    }
}
