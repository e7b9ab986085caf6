//! `GET /v1.0/sw-update-strategy/events`: the event stream of [`crate::events`] as Server-Sent
//! Events. Thin: where a client starts (snapshot or resume) and what it is sent next are decided by
//! the hub; this only turns that into a streaming response, with a keep-alive comment when idle.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use tokio::time::{Instant, Interval, interval_at};

use crate::error::{ApiError, ErrorBody};
use crate::events::{EventHub, Next, Start, Subscription};

use super::access::{Actors, ApiState, Reader, recheck_every, still_reader};

/// An idle stream gets a comment this often: well under the usual 60 s idle cut of proxies.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// One client's stream.
struct Feed {
    actors: Actors,
    hub: Arc<EventHub>,
    sub: Subscription,
    /// Frames to send before waiting for the next event.
    ready: VecDeque<Bytes>,
    keep_alive: Interval,
    /// With Keystone: the request, whose token is checked again this often (the stream ends once it
    /// is refused; the client's reconnect then gets the 401).
    recheck: Option<(HttpRequest, Interval)>,
}

/// The snapshot at `seq`, encoded for one client.
async fn snapshot(actors: &Actors, hub: &EventHub, seq: u64) -> Result<Bytes, ApiError> {
    Ok(hub.snapshot(seq, &actors.watched().await?))
}

/// The next bytes of the stream; `None` ends it (the controller is stopping).
async fn next(mut feed: Feed) -> Option<(Result<Bytes, actix_web::Error>, Feed)> {
    if let Some(bytes) = feed.ready.pop_front() {
        return Some((Ok(bytes), feed));
    }
    let bytes = loop {
        tokio::select! {
            next = feed.sub.next(&feed.hub) => break match next {
                Next::Frame(f) => f.bytes.clone(),
                Next::Snapshot(seq) => snapshot(&feed.actors, &feed.hub, seq).await.ok()?,
                Next::Closed => return None,
            },
            _ = feed.keep_alive.tick() => break Bytes::from_static(dc_sse::KEEP_ALIVE.as_bytes()),
            _ = tick(&mut feed.recheck) => {
                let req = feed.recheck.as_ref().map(|(req, _)| req.clone())?;
                if let Err(e) = still_reader(req).await {
                    tracing::info!(reason = %e.message, "an event stream's token is refused now: ending it");
                    return None;
                }
            }
        }
    };
    feed.keep_alive.reset();
    Some((Ok(bytes), feed))
}

/// The next tick of the token check; never, without one.
async fn tick(recheck: &mut Option<(HttpRequest, Interval)>) {
    match recheck {
        Some((_, every)) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The event stream: a `snapshot` event (strategy, steps, subclouds), then one event per change,
/// each with `id: <epoch>-<seq>`. With `Last-Event-ID`, the events after it instead of the
/// snapshot, when they are still held; a snapshot otherwise. See docs/rest-api.md.
#[utoipa::path(get, path = "/v1.0/sw-update-strategy/events", tag = "strategy",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "the `id` of the last event received, to resume after it")),
    responses((status = 200, description = "Server-Sent Events: `snapshot`, then `strategy`, `step` and `subcloud` events; never ends while the controller runs",
            body = String, content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub async fn events(
    _: Reader,
    s: web::Data<ApiState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let actors = s.leading().await?;
    let hub = actors.events.clone();
    let last = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok());
    let sub = hub.subscribe(last).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the controller is stopping",
        )
    })?;
    let ready = match &sub.start {
        Start::Snapshot(seq) => VecDeque::from([snapshot(&actors, &hub, *seq).await?]),
        Start::Backlog(frames) => frames.iter().map(|f| f.bytes.clone()).collect(),
    };
    let feed = Feed {
        actors,
        hub,
        sub,
        ready,
        keep_alive: interval_at(Instant::now() + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY),
        recheck: recheck_every(&s).map(|every| (req, interval_at(Instant::now() + every, every))),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx buffers responses by default; an event stream must not be.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures::stream::unfold(feed, next)))
}
