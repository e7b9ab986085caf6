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
    /// The last state sent of each object, by namespace and name.
    sent: BTreeMap<(String, String), K>,
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
        sent: BTreeMap::new(),
        queue: VecDeque::new(),
        deadline: Instant::now() + timeout,
        first: true,
    };
    futures::stream::unfold(watch, next)
}

async fn next<K: Served>(mut w: Watch<K>) -> Option<(Result<Bytes, Infallible>, Watch<K>)> {
    loop {
        if let Some(event) = w.queue.pop_front() {
            // Serialising a k8s-openapi object cannot fail.
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            return Some((Ok(Bytes::from(line)), w));
        }
        let now = Instant::now();
        if now >= w.deadline {
            return None;
        }
        if !w.first {
            tokio::time::sleep(POLL.min(w.deadline - now)).await;
        }
        match w.shared.list::<K>(&w.filter).await {
            Ok((objects, version)) => w.changes(objects, version),
            Err(e) => {
                w.queue.push_back(WatchEvent::ErrorStatus(e.status()));
                w.deadline = now;
            }
        }
        w.first = false;
    }
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

impl<K: Served> Watch<K> {
    /// Queues the events that turn what was sent into `objects`.
    fn changes(&mut self, objects: Vec<K>, version: u64) {
        if self.first {
            for object in objects {
                match self.since {
                    Since::Start | Since::InitialEvents => {
                        self.queue.push_back(WatchEvent::Added(object.clone()))
                    }
                    Since::Version(v) if version_of(&object) > v => {
                        self.queue.push_back(WatchEvent::Modified(object.clone()))
                    }
                    Since::Version(_) => {}
                }
                self.sent.insert(key_of(&object), object);
            }
            if self.since == Since::InitialEvents {
                self.queue.push_back(WatchEvent::Bookmark {
                    annotations: [(INITIAL_EVENTS_END.to_owned(), "true".to_owned())].into(),
                    resource_version: version.to_string(),
                });
            }
            return;
        }
        let mut gone = std::mem::take(&mut self.sent);
        for object in objects {
            let key = key_of(&object);
            match gone.remove(&key) {
                None => self.queue.push_back(WatchEvent::Added(object.clone())),
                Some(old) if old.metadata().uid != object.metadata().uid => {
                    // Deleted and recreated under the same name between two polls.
                    self.queue.push_back(WatchEvent::Deleted(old));
                    self.queue.push_back(WatchEvent::Added(object.clone()));
                }
                Some(old) if version_of(&old) != version_of(&object) => {
                    self.queue.push_back(WatchEvent::Modified(object.clone()))
                }
                Some(_) => {}
            }
            self.sent.insert(key, object);
        }
        for (_, old) in gone {
            self.queue.push_back(WatchEvent::Deleted(old));
        }
    }
}
