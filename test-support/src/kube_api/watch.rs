//! `watch=true`: newline-delimited watch events, found by re-reading the model on a short poll and
//! sending what changed since the client's version. The stream ends after a bounded time, as real API
//! servers end watches; clients (kubectl's informers, kube-rs watchers) then watch again.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use futures::Stream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use tokio::time::Instant;

use super::objects::Served;
use super::routes::{Filter, Shared};

/// How often a watch re-reads the model: short next to a pod's readiness time in tests.
const POLL: Duration = Duration::from_millis(100);

/// The annotation of the bookmark that ends a watch list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// No version given: every existing object as ADDED first.
    Start,
    /// After a list at this version: only objects changed since.
    Version(u64),
    /// `sendInitialEvents=true` (watch list): every object as ADDED, then a bookmark.
    InitialEvents,
}

struct Watch<K> {
    shared: Arc<Shared>,
    filter: Filter,
    since: Since,
    sent: Sent<K>,
    queue: VecDeque<WatchEvent<K>>,
    deadline: Instant,
    first: bool,
}

/// The event stream of one watch request.
pub fn events<K: Served>(
    shared: Arc<Shared>,
    filter: Filter,
    since: Since,
    timeout: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> + 'static {
    let watch = Watch::<K> {
        shared,
        filter,
        since,
        sent: Sent::default(),
        queue: VecDeque::new(),
        deadline: Instant::now() + timeout,
        first: true,
    };
    futures::stream::unfold(watch, next)
}

async fn next<K: Served>(mut w: Watch<K>) -> Option<(Result<Bytes, Infallible>, Watch<K>)> {
    loop {
        if let Some(event) = w.queue.pop_front() {
            return Some((Ok(Bytes::from(line(&event))), w));
        }
        let now = Instant::now();
        if now >= w.deadline {
            return None;
        }
        if !w.first {
            tokio::time::sleep(POLL.min(w.deadline - now)).await;
        }
        match w.shared.list::<K>(&w.filter).await {
            Ok((objects, version)) => {
                let events = if w.first {
                    w.sent.initial(objects, w.since, version)
                } else {
                    w.sent.changes(objects)
                };
                w.queue.extend(events);
            }
            Err(e) => {
                w.queue.push_back(WatchEvent::ErrorStatus(e.status()));
                w.deadline = now;
            }
        }
        w.first = false;
    }
}

/// One event as a JSON line.
fn line<K: Served>(event: &WatchEvent<K>) -> Vec<u8> {
    let encoded = match event {
        // The API server's bookmark object carries the resource's apiVersion and kind, which
        // k8s-openapi's encoding leaves out and kube-rs requires.
        WatchEvent::Bookmark {
            annotations,
            resource_version,
        } => serde_json::to_vec(&serde_json::json!({
            "type": "BOOKMARK",
            "object": {
                "apiVersion": K::API_VERSION,
                "kind": K::KIND,
                "metadata": {"resourceVersion": resource_version, "annotations": annotations},
            },
        })),
        other => serde_json::to_vec(other),
    };
    // Serialising a k8s-openapi object cannot fail.
    let mut line = encoded.unwrap_or_default();
    line.push(b'\n');
    line
}

fn version_of<K: Served>(object: &K) -> u64 {
    object
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn key_of<K: Served>(object: &K) -> (String, String) {
    let meta = object.metadata();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The last state sent of each object, by namespace and name: what the client's cache holds.
struct Sent<K>(BTreeMap<(String, String), K>);

impl<K> Default for Sent<K> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<K: Served> Sent<K> {
    /// The first events of a watch starting at `since`, over objects listed at `version`.
    fn initial(&mut self, objects: Vec<K>, since: Since, version: u64) -> Vec<WatchEvent<K>> {
        let mut events = Vec::new();
        for object in objects {
            match since {
                Since::Start | Since::InitialEvents => {
                    events.push(WatchEvent::Added(object.clone()))
                }
                Since::Version(v) if version_of(&object) > v => {
                    events.push(WatchEvent::Modified(object.clone()))
                }
                Since::Version(_) => {}
            }
            self.0.insert(key_of(&object), object);
        }
        if since == Since::InitialEvents {
            events.push(WatchEvent::Bookmark {
                annotations: [(INITIAL_EVENTS_END.to_owned(), "true".to_owned())].into(),
                resource_version: version.to_string(),
            });
        }
        events
    }

    /// The events that turn what was sent into `objects`.
    fn changes(&mut self, objects: Vec<K>) -> Vec<WatchEvent<K>> {
        let mut events = Vec::new();
        let mut gone = std::mem::take(&mut self.0);
        for object in objects {
            let key = key_of(&object);
            match gone.remove(&key) {
                None => events.push(WatchEvent::Added(object.clone())),
                Some(old) if old.metadata().uid != object.metadata().uid => {
                    // Deleted and recreated under the same name between two polls.
                    events.push(WatchEvent::Deleted(old));
                    events.push(WatchEvent::Added(object.clone()));
                }
                Some(old) if version_of(&old) != version_of(&object) => {
                    events.push(WatchEvent::Modified(object.clone()))
                }
                Some(_) => {}
            }
            self.0.insert(key, object);
        }
        events.extend(gone.into_values().map(WatchEvent::Deleted));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ns(name: &str, uid: &str, version: u64) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                resource_version: Some(version.to_string()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    /// Event type and object name, for comparing.
    fn summary(events: &[WatchEvent<Namespace>]) -> Vec<(&'static str, String)> {
        events
            .iter()
            .map(|e| match e {
                WatchEvent::Added(o) => ("ADDED", o.metadata.name.clone().unwrap()),
                WatchEvent::Modified(o) => ("MODIFIED", o.metadata.name.clone().unwrap()),
                WatchEvent::Deleted(o) => ("DELETED", o.metadata.name.clone().unwrap()),
                WatchEvent::Bookmark { .. } => ("BOOKMARK", String::new()),
                _ => ("ERROR", String::new()),
            })
            .collect()
    }

    #[test]
    fn a_watch_after_a_list_sends_only_what_changed_since() {
        let mut sent = Sent::default();
        let events = sent.initial(vec![ns("a", "1", 3), ns("b", "2", 7)], Since::Version(5), 7);
        assert_eq!(summary(&events), [("MODIFIED", "b".to_owned())]);

        let events = sent.changes(vec![ns("a", "1", 3), ns("b", "2", 8), ns("c", "3", 9)]);
        assert_eq!(
            summary(&events),
            [("MODIFIED", "b".to_owned()), ("ADDED", "c".to_owned())]
        );
        // `a` recreated under its name, `c` gone.
        let events = sent.changes(vec![ns("a", "4", 10), ns("b", "2", 8)]);
        assert_eq!(
            summary(&events),
            [
                ("DELETED", "a".to_owned()),
                ("ADDED", "a".to_owned()),
                ("DELETED", "c".to_owned())
            ]
        );
        assert!(
            sent.changes(vec![ns("a", "4", 10), ns("b", "2", 8)])
                .is_empty()
        );
    }

    #[test]
    fn watches_without_a_version_start_with_everything() {
        let events = Sent::default().initial(vec![ns("a", "1", 3)], Since::Start, 3);
        assert_eq!(summary(&events), [("ADDED", "a".to_owned())]);
        let events = Sent::default().initial(vec![ns("a", "1", 3)], Since::InitialEvents, 3);
        assert_eq!(
            summary(&events),
            [("ADDED", "a".to_owned()), ("BOOKMARK", String::new())]
        );
        let WatchEvent::Bookmark {
            annotations,
            resource_version,
        } = &events[1]
        else {
            unreachable!()
        };
        assert_eq!(annotations[INITIAL_EVENTS_END], "true");
        assert_eq!(resource_version, "3");
        let line: serde_json::Value = serde_json::from_slice(&line(&events[1])).unwrap();
        assert_eq!(line["type"], "BOOKMARK");
        assert_eq!(line["object"]["kind"], "Namespace");
        assert_eq!(line["object"]["metadata"]["resourceVersion"], "3");
    }
}
