//! Workload patches: only what the update needs, the pod template's annotations.
//!
//! `kubectl rollout restart` and kube-rs send a strategic merge or JSON merge patch setting
//! `spec.template.metadata.annotations`; on a map both mean "set these keys". Anything else the model
//! cannot represent, so it is refused with 422 rather than silently dropped.

use std::collections::BTreeMap;

use serde_json::Value;

/// The patch types accepted, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    StrategicMerge,
    Merge,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value (parameters such as charset ignored).
    pub fn of_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/merge-patch+json" => Some(Self::Merge),
            _ => None,
        }
    }
}

/// Why a patch cannot be applied: the field at fault and what is wrong with it, as the API server
/// reports each cause of an Invalid error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        field: field.into(),
        message: message.into(),
    }
}

const ANNOTATIONS: &str = "spec.template.metadata.annotations";

/// The template annotations a patch sets, or why it cannot be applied.
pub fn template_annotations(patch: &Value) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    let Some(annotations) = descend(
        patch,
        &["spec", "template", "metadata", "annotations"],
        String::new(),
    )?
    else {
        return Ok(out);
    };
    let Value::Object(annotations) = annotations else {
        return Err(refuse(
            ANNOTATIONS,
            "Invalid value: must be a map of strings",
        ));
    };
    for (key, value) in annotations {
        let field = format!("{ANNOTATIONS}[{key}]");
        match value {
            Value::String(v) => {
                out.insert(key.clone(), v.clone());
            }
            Value::Null => {
                return Err(refuse(
                    field,
                    "Forbidden: removing an annotation is not supported by the simulated cluster",
                ));
            }
            _ => return Err(refuse(field, "Invalid value: must be a string")),
        }
    }
    Ok(out)
}

/// Follows `path` through objects that hold nothing else; `None` when the patch stops early.
fn descend<'a>(value: &'a Value, path: &[&str], at: String) -> Result<Option<&'a Value>, Refusal> {
    let Some((field, rest)) = path.split_first() else {
        return Ok(Some(value));
    };
    let Value::Object(map) = value else {
        let at = if at.is_empty() {
            "patch".to_owned()
        } else {
            at
        };
        return Err(refuse(at, "Invalid value: must be an object"));
    };
    let here = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    if let Some(other) = map.keys().find(|k| k.as_str() != *field) {
        return Err(refuse(
            here(other),
            format!("Forbidden: the simulated cluster only supports patching {ANNOTATIONS}"),
        ));
    }
    match map.get(*field) {
        None => Ok(None),
        Some(next) => descend(next, rest, here(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_restart_patch_sets_the_annotation() {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-11-28T15:00:00Z"}}}}});
        assert_eq!(
            template_annotations(&patch).unwrap(),
            BTreeMap::from([(
                "kubectl.kubernetes.io/restartedAt".to_owned(),
                "2026-11-28T15:00:00Z".to_owned()
            )])
        );
        assert!(template_annotations(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn anything_else_is_refused_with_its_path() {
        let err = template_annotations(&json!({"spec": {"replicas": 5}})).unwrap_err();
        assert_eq!(err.field, "spec.replicas");
        assert!(err.message.starts_with("Forbidden"), "{err}");
        let err = template_annotations(&json!({"metadata": {"labels": {"a": "b"}}})).unwrap_err();
        assert_eq!(err.field, "metadata");
        let err = template_annotations(
            &json!({"spec": {"template": {"metadata": {"annotations": {"a": null}}}}}),
        )
        .unwrap_err();
        assert_eq!(err.field, "spec.template.metadata.annotations[a]");
        assert!(err.message.contains("removing an annotation"), "{err}");
        assert!(template_annotations(&json!([{"op": "add"}])).is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::of_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::of_content_type("application/merge-patch+json"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::of_content_type("application/json-patch+json"),
            None
        );
        assert_eq!(
            PatchType::of_content_type("application/apply-patch+yaml"),
            None
        );
    }
}
