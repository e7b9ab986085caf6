//! The event stream's core: every change the controller makes visible (strategy state, a step's
//! state, details and progress, a subcloud's availability and sync status), numbered and
//! pre-serialised once as a Server-Sent Events frame, kept in a bounded ring for resumes and
//! broadcast to subscribers.
//!
//! Publishing costs one JSON encoding and one `Arc` per change whatever the number of subscribers
//! (the frame's bytes are shared, never encoded per subscriber). Memory is bounded twice: the ring
//! keeps the last [`RING_EVENTS`] frames, and each subscriber may fall at most [`QUEUE_EVENTS`]
//! frames behind (the broadcast channel's slots, shared by all). A subscriber that falls further
//! behind loses its backlog and is given a fresh snapshot: one snapshot costs what a full steps list
//! does, and a client too slow for the events would also be too slow for the coalesced changes.
//!
//! Ids are `<epoch>-<seq>`: the sequence restarts at 1 in each controller process, so a bare number
//! from a previous process would name a different event here; the epoch (this process's start)
//! makes such an id unknown, and an unknown id gets a snapshot instead of a wrong resume.
//!
//! The actix wiring is `api::events`; the publishers are the orchestrator (strategy, subclouds) and
//! the progress writer (steps), each after the change is applied.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// Frames kept for resumes: at ~300 bytes a frame, ~5 MB; minutes of a 5,000-subcloud update.
pub const RING_EVENTS: usize = 16_384;
/// How far one subscriber may fall behind before its backlog is dropped for a fresh snapshot.
pub const QUEUE_EVENTS: usize = 4_096;

/// What changed; the SSE `event:` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The strategy as `GET /v1.0/sw-update-strategy` shows it, or `null` once deleted (its steps
    /// with it).
    Strategy,
    /// A step as the steps list shows it.
    Step,
    /// A subcloud's availability, sync status and root CA expiry, as the subcloud list shows them
    /// (`"deleted": true` once it is deleted).
    Subcloud,
    /// Everything at once: the first event of a stream, and after a resume that cannot be served.
    Snapshot,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Strategy => "strategy",
            Kind::Step => "step",
            Kind::Subcloud => "subcloud",
            Kind::Snapshot => "snapshot",
        }
    }
}

/// One event as sent: `id: <epoch>-<seq>`, `event:`, `data:` (one line of JSON), a blank line.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub bytes: Bytes,
}

/// The SSE text of an event.
pub fn frame(epoch: &str, seq: u64, kind: Kind, data: &impl Serialize) -> Bytes {
    // serde_json escapes newlines inside strings, so the data is one line. What is published here (JSON
    // values and maps of string keys) always serialises.
    let data = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(dc_sse::encode(
        &format!("{epoch}-{seq}"),
        kind.name(),
        &data,
    ))
}

/// The sequence number a `Last-Event-ID` names in this process's stream, if it names one.
pub fn seq_of(last_event_id: &str, epoch: &str) -> Option<u64> {
    let (e, seq) = last_event_id.trim().rsplit_once('-')?;
    if e != epoch {
        return None;
    }
    seq.parse().ok()
}

/// The last frames, oldest first.
#[derive(Debug)]
pub struct Ring {
    frames: VecDeque<Arc<Frame>>,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, frame: Arc<Frame>) {
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
    }

    /// The frames after `seq`, when the ring still holds every one of them up to `last` (the newest
    /// sequence given); `None` for an id older than the ring or newer than `last`.
    pub fn after(&self, seq: u64, last: u64) -> Option<Vec<Arc<Frame>>> {
        if seq > last {
            return None;
        }
        if seq == last {
            return Some(Vec::new());
        }
        let first = self.frames.front()?.seq;
        if seq.saturating_add(1) < first {
            return None;
        }
        Some(
            self.frames
                .iter()
                .skip_while(|f| f.seq <= seq)
                .cloned()
                .collect(),
        )
    }
}

/// Where a new subscriber starts.
#[derive(Debug)]
pub enum Start {
    /// Send a snapshot with this sequence number: every event after it follows.
    Snapshot(u64),
    /// Send these frames (the ones after the client's `Last-Event-ID`), then what follows.
    Backlog(Vec<Arc<Frame>>),
}

/// The next thing to send a subscriber.
#[derive(Debug)]
pub enum Next {
    Frame(Arc<Frame>),
    /// It fell more than [`QUEUE_EVENTS`] behind: its backlog is gone; send a snapshot with this
    /// sequence number.
    Snapshot(u64),
    /// The controller is stopping.
    Closed,
}

/// One client's place in the stream.
pub struct Subscription {
    pub start: Start,
    rx: broadcast::Receiver<Arc<Frame>>,
}

struct Inner {
    seq: u64,
    ring: Ring,
    /// `None` once closed.
    tx: Option<broadcast::Sender<Arc<Frame>>>,
}

/// The stream's publisher and its subscribers' source.
pub struct EventHub {
    epoch: String,
    inner: Mutex<Inner>,
}

impl EventHub {
    /// A hub for this process: its epoch is the start time, in milliseconds, and the process id.
    pub fn new() -> Arc<Self> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self::with(
            format!("{millis:x}{:x}", std::process::id()),
            RING_EVENTS,
            QUEUE_EVENTS,
        )
    }

    pub fn with(epoch: String, ring: usize, queue: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(queue.max(1));
        Arc::new(Self {
            epoch,
            inner: Mutex::new(Inner {
                seq: 0,
                ring: Ring::new(ring),
                tx: Some(tx),
            }),
        })
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the ring half-written (push is one call).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers, encodes and sends one change. Under the lock, so ids are sent in order and a
    /// subscriber joins between two events, never inside one.
    pub fn publish(&self, kind: Kind, data: &Value) {
        let mut inner = self.lock();
        let Some(tx) = inner.tx.clone() else {
            return;
        };
        inner.seq += 1;
        let seq = inner.seq;
        let f = Arc::new(Frame {
            seq,
            bytes: frame(&self.epoch, seq, kind, data),
        });
        inner.ring.push(f.clone());
        // No subscriber is not an error: the ring keeps it for resumes.
        let _ = tx.send(f);
    }

    /// A new subscriber: after `last_event_id` when the ring still holds what followed it, from a
    /// snapshot otherwise. `None` once the hub is closed.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Option<Subscription> {
        let inner = self.lock();
        let rx = inner.tx.as_ref()?.subscribe();
        let backlog = last_event_id
            .and_then(|id| seq_of(id, &self.epoch))
            .and_then(|seq| inner.ring.after(seq, inner.seq));
        let start = match backlog {
            Some(frames) => Start::Backlog(frames),
            None => Start::Snapshot(inner.seq),
        };
        Some(Subscription { start, rx })
    }

    /// A receiver that gets every event from now on, and the sequence number of the newest event
    /// before it: where a fresh snapshot stands.
    fn rejoin(&self) -> Option<(u64, broadcast::Receiver<Arc<Frame>>)> {
        let inner = self.lock();
        Some((inner.seq, inner.tx.as_ref()?.subscribe()))
    }

    /// The snapshot frame at `seq`, encoded for the one subscriber that needs it.
    pub fn snapshot(&self, seq: u64, data: &impl Serialize) -> Bytes {
        frame(&self.epoch, seq, Kind::Snapshot, data)
    }

    /// Ends every stream (the controller is stopping), so a graceful stop does not wait for them.
    pub fn close(&self) {
        self.lock().tx = None;
    }
}

impl Subscription {
    /// Waits for the next frame; a subscriber that fell behind is re-subscribed from a snapshot.
    pub async fn next(&mut self, hub: &EventHub) -> Next {
        match self.rx.recv().await {
            Ok(f) => Next::Frame(f),
            Err(broadcast::error::RecvError::Lagged(missed)) => match hub.rejoin() {
                Some((seq, rx)) => {
                    tracing::info!(missed, "a slow event subscriber gets a fresh snapshot");
                    self.rx = rx;
                    Next::Snapshot(seq)
                }
                None => Next::Closed,
            },
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seqs(frames: &[Arc<Frame>]) -> Vec<u64> {
        frames.iter().map(|f| f.seq).collect()
    }

    fn text(f: &Frame) -> &str {
        std::str::from_utf8(&f.bytes).expect("utf-8")
    }

    #[test]
    fn a_frame_is_one_sse_event_with_its_id_name_and_one_line_of_json() {
        let bytes = frame("e1", 7, Kind::Step, &json!({"details": "a\nb"}));
        assert_eq!(
            bytes,
            "id: e1-7\nevent: step\ndata: {\"details\":\"a\\nb\"}\n\n"
        );
    }

    #[test]
    fn an_id_names_a_sequence_only_in_its_own_epoch() {
        assert_eq!(seq_of("abc-12", "abc"), Some(12));
        assert_eq!(seq_of(" abc-12 ", "abc"), Some(12));
        assert_eq!(seq_of("old-12", "abc"), None, "a previous process's id");
        assert_eq!(seq_of("12", "abc"), None);
        assert_eq!(seq_of("abc-x", "abc"), None);
        assert_eq!(seq_of("abc--1", "abc"), None);
    }

    #[test]
    fn the_ring_serves_what_followed_an_id_it_still_holds_and_nothing_else() {
        let mut ring = Ring::new(3);
        for seq in 1..=5 {
            ring.push(Arc::new(Frame {
                seq,
                bytes: Bytes::new(),
            }));
        }
        // Holds 3, 4, 5.
        assert_eq!(ring.after(2, 5).map(|f| seqs(&f)), Some(vec![3, 4, 5]));
        assert_eq!(ring.after(4, 5).map(|f| seqs(&f)), Some(vec![5]));
        assert_eq!(ring.after(5, 5).map(|f| seqs(&f)), Some(vec![]));
        assert!(ring.after(1, 5).is_none(), "event 2 is gone: a gap");
        assert!(ring.after(6, 5).is_none(), "an id from the future");
        assert_eq!(
            Ring::new(3).after(0, 0).map(|f| f.len()),
            Some(0),
            "nothing published yet"
        );
        assert!(Ring::new(3).after(0, 2).is_none());
    }

    #[test]
    fn a_resume_gets_exactly_the_missed_events_then_the_live_ones() {
        let hub = EventHub::with("e".into(), 100, 100);
        hub.publish(Kind::Step, &json!(1));
        hub.publish(Kind::Step, &json!(2));
        hub.publish(Kind::Strategy, &json!(3));
        let Some(mut sub) = hub.subscribe(Some("e-1")) else {
            panic!("open")
        };
        let Start::Backlog(backlog) = &sub.start else {
            panic!("a resume: {:?}", sub.start)
        };
        assert_eq!(seqs(backlog), [2, 3]);
        assert_eq!(text(&backlog[1]), "id: e-3\nevent: strategy\ndata: 3\n\n");
        hub.publish(Kind::Step, &json!(4));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let Next::Frame(f) = rt.block_on(sub.next(&hub)) else {
            panic!("the live event")
        };
        assert_eq!(f.seq, 4, "no duplicate of the backlog, no gap");

        for unknown in ["x-1", "e-99", "3"] {
            assert!(
                matches!(
                    hub.subscribe(Some(unknown)).map(|s| s.start),
                    Some(Start::Snapshot(4))
                ),
                "{unknown}"
            );
        }
        assert!(matches!(
            hub.subscribe(None).map(|s| s.start),
            Some(Start::Snapshot(4))
        ));
    }

    #[test]
    fn a_subscriber_that_falls_behind_gets_a_snapshot_and_then_only_newer_events() {
        let hub = EventHub::with("e".into(), 100, 4);
        let Some(mut sub) = hub.subscribe(None) else {
            panic!("open")
        };
        for i in 0..10 {
            hub.publish(Kind::Step, &json!(i));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert!(
            matches!(rt.block_on(sub.next(&hub)), Next::Snapshot(10)),
            "the backlog is dropped for a snapshot at the newest event"
        );
        hub.publish(Kind::Step, &json!(11));
        assert!(matches!(rt.block_on(sub.next(&hub)), Next::Frame(f) if f.seq == 11));
        hub.close();
        assert!(matches!(rt.block_on(sub.next(&hub)), Next::Closed));
        assert!(hub.subscribe(None).is_none());
    }
}
