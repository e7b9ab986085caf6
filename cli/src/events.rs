//! `--watch` over the controller's event stream (`GET /v1.0/sw-update-strategy/events`, see
//! docs/rest-api.md): the strategy and steps its events (cut by [`dc_sse::Parser`]) add up to, and
//! what to do when the stream cannot be opened. Pure; the reading loop is `follow`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::client::ClientError;

pub use dc_sse::{Event, Parser};

/// The stream's path under the API's base URL.
pub const EVENTS_PATH: &str = "/sw-update-strategy/events";

#[derive(Debug, thiserror::Error)]
#[error("the event stream sent a {name} event that is not JSON: {reason}")]
pub struct EventsError {
    name: String,
    reason: String,
}

/// The strategy and its steps as the events so far make them.
#[derive(Default)]
pub struct Live {
    /// `null` when there is none.
    pub strategy: Value,
    /// By step id, which orders the steps list.
    steps: BTreeMap<i64, Value>,
    /// A snapshot arrived: the picture is whole.
    pub known: bool,
}

impl Live {
    /// Applies one event: a snapshot replaces everything, a `strategy` or `step` event replaces its
    /// record (a `null` strategy takes its steps with it); other events do not concern the watch.
    pub fn apply(&mut self, event: &Event) -> Result<(), EventsError> {
        if !matches!(event.name.as_str(), "snapshot" | "strategy" | "step") {
            return Ok(());
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| EventsError {
            name: event.name.clone(),
            reason: e.to_string(),
        })?;
        match event.name.as_str() {
            "snapshot" => {
                self.strategy = data.get("strategy").cloned().unwrap_or(Value::Null);
                self.steps = data
                    .get("strategy-steps")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|s| (step_id(s), s.clone()))
                    .collect();
                self.known = true;
            }
            "strategy" => {
                if data.is_null() {
                    self.steps.clear();
                }
                self.strategy = data;
            }
            _ => {
                self.steps.insert(step_id(&data), data);
            }
        }
        Ok(())
    }

    /// The steps as the steps list answers them: `{"strategy-steps": [...]}`.
    pub fn steps(&self) -> Value {
        serde_json::json!({ "strategy-steps": self.steps.values().cloned().collect::<Vec<_>>() })
    }
}

fn step_id(step: &Value) -> i64 {
    step.get("id").and_then(Value::as_i64).unwrap_or_default()
}

/// What `--watch` does when the stream cannot be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRefusal {
    /// A controller from before the stream (404): poll as before.
    Poll,
    /// A controller restarting or out of reach: wait, then reconnect.
    Retry,
    /// Anything else (a bad token): the watch ends with the error.
    Fail,
}

pub fn on_refusal(error: &ClientError) -> OnRefusal {
    match error {
        ClientError::Api { status: 404, .. } => OnRefusal::Poll,
        e if e.is_transient() => OnRefusal::Retry,
        _ => OnRefusal::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            id: None,
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_add_up_to_the_strategy_and_its_steps() {
        let mut live = Live::default();
        assert!(!live.known);
        live.apply(&event(
            "snapshot",
            r#"{"strategy": {"state": "applying"}, "strategy-steps": [{"id": 2, "cloud": "b", "state": "initial"}, {"id": 1, "cloud": "a", "state": "initial"}], "subclouds": []}"#,
        ))
        .unwrap();
        assert!(live.known);
        live.apply(&event(
            "step",
            r#"{"id": 2, "cloud": "b", "state": "complete"}"#,
        ))
        .unwrap();
        live.apply(&event("subcloud", r#"{"name": "b"}"#)).unwrap();
        live.apply(&event("strategy", r#"{"state": "complete"}"#))
            .unwrap();
        assert_eq!(live.strategy["state"], "complete");
        let steps = live.steps();
        let clouds: Vec<(&str, &str)> = steps["strategy-steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["cloud"].as_str().unwrap(), s["state"].as_str().unwrap()))
            .collect();
        assert_eq!(clouds, [("a", "initial"), ("b", "complete")], "in id order");
        live.apply(&event("strategy", "null")).unwrap();
        assert!(live.strategy.is_null());
        assert_eq!(live.steps()["strategy-steps"], serde_json::json!([]));
        assert!(live.apply(&event("step", "{not json")).is_err());
    }

    #[test]
    fn an_older_controller_is_polled_a_restarting_one_retried_a_bad_token_fatal() {
        let api = |status| ClientError::Api {
            status,
            message: String::new(),
            leader: None,
        };
        assert_eq!(on_refusal(&api(404)), OnRefusal::Poll);
        assert_eq!(on_refusal(&api(503)), OnRefusal::Retry);
        assert_eq!(
            on_refusal(&ClientError::Unreachable {
                url: "u".into(),
                reason: "refused".into()
            }),
            OnRefusal::Retry
        );
        assert_eq!(on_refusal(&api(401)), OnRefusal::Fail);
    }
}
