//! A standby's side of the REST API. While another controller leads, operators can still look: reads
//! are answered from the database, loaded through the store exactly as a restarting controller loads
//! it and answered by the same decisions ([`crate::orchestrator::decide`]), so the JSON is the
//! leader's. Changes, the event stream and `/metrics` (live state only the leader has) get 503 naming
//! the leader's API URL from the lease row, so a client can send them there (`dcmanager` follows it).
//!
//! What a standby cannot show: which agents are connected (every subcloud reads as a restarted
//! controller shows it before its agents reconnect), and step progress the leader has not flushed yet
//! (`progress_flush_ms`). A view is reused for [`FRESH_FOR`], so a burst of reads costs one load.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::access::{StepsList, step_json};
use crate::config::ControllerConfig;
use crate::error::ApiError;
use crate::orchestrator::state::State;
use crate::orchestrator::{ApiRequest, decide};
use crate::store::postgres::Leader;
use crate::store::{PostgresStore, Snapshot, Store, StoreError};

/// How long a loaded view answers before the next read loads the database again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The database as a standby last loaded it, and who leads.
pub struct View {
    state: State,
    leader: Option<Leader>,
}

impl View {
    /// The leader's advertised API URL, when a controller leads and recorded it.
    pub fn leader_url(&self) -> Option<String> {
        self.leader.as_ref().and_then(|l| l.api_url.clone())
    }

    /// Who holds the lease, for `systemctl status`.
    pub fn holder(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.holder.as_str())
    }
}

struct Loaded {
    /// `None` after an error: the next load connects again.
    store: Option<PostgresStore>,
    view: Option<(Instant, Arc<View>)>,
    /// This controller took the lease: no session is opened again, reads wait for the leader's state.
    closed: bool,
}

/// A standby's read-only view of the database.
pub struct Standby {
    url: String,
    ca: Option<PathBuf>,
    offline_after: Duration,
    expiring_days: u32,
    loaded: Mutex<Loaded>,
}

impl Standby {
    /// A view of the database at `url`, read on a session of its own opened at the first read
    /// ([`PostgresStore::connect_reading`]: it never migrates) and closed by [`Self::close`].
    pub fn new(config: &ControllerConfig, url: String) -> Self {
        Self {
            url,
            ca: config.database_ca.clone(),
            offline_after: Duration::from_secs(config.offline_after_secs),
            expiring_days: config.audit.expiring_days,
            loaded: Mutex::new(Loaded {
                store: None,
                view: None,
                closed: false,
            }),
        }
    }

    /// The current view: the last one while fresh, else loaded now (one load at a time).
    pub async fn view(&self) -> Result<Arc<View>, ApiError> {
        let mut loaded = self.loaded.lock().await;
        if loaded.closed {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "This controller has just taken over as the leader and is loading its state: try again in a moment",
            ));
        }
        if let Some((at, view)) = &loaded.view
            && at.elapsed() < FRESH_FOR
        {
            return Ok(view.clone());
        }
        let (url, ca, store) = (self.url.clone(), self.ca.clone(), loaded.store.take());
        let (store, read) = tokio::task::spawn_blocking(move || load(&url, ca, store))
            .await
            .map_err(|e| ApiError::internal(format!("the database task failed: {e}")))?;
        loaded.store = store;
        let (snapshot, leader) = read.map_err(|e| {
            tracing::warn!(error = %e, "standby: cannot load the database");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("This controller is a standby and cannot read the database: {e}"),
            )
        })?;
        let view = Arc::new(View {
            state: State::new(snapshot, self.offline_after, self.expiring_days),
            leader,
        });
        loaded.view = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// A read answered as the leader would; a change refused with 503 and the leader's URL.
    pub async fn ask(&self, req: ApiRequest) -> Result<Value, ApiError> {
        let view = self.view().await?;
        if req.changes() {
            return Err(ApiError::not_leader(view.leader_url()));
        }
        Ok(decide(&view.state, req)?.answer)
    }

    /// `{"strategy-steps": [...]}` as stored.
    pub async fn steps(&self) -> Result<StepsList, ApiError> {
        Ok(StepsList {
            steps: self.view().await?.state.steps.clone(),
        })
    }

    /// One subcloud's step as stored.
    pub async fn step(&self, cloud: &str) -> Result<Value, ApiError> {
        let view = self.view().await?;
        step_json(
            view.state
                .steps
                .iter()
                .find(|s| s.subcloud == cloud)
                .cloned(),
        )
    }

    /// The 503 for what only the leader serves.
    pub async fn refusal(&self) -> ApiError {
        match self.view().await {
            Ok(view) => ApiError::not_leader(view.leader_url()),
            Err(e) => e,
        }
    }

    /// Ends the view's session once this controller leads (after any load in flight): the leader
    /// answers from its own state, on a store it opened fenced. Until that state is up, reads get 503
    /// instead of a new session nobody would close. The session is dropped off the runtime: closing a
    /// blocking PostgreSQL client runs a runtime of its own, which inside this one panics.
    pub async fn close(&self) {
        let mut loaded = self.loaded.lock().await;
        loaded.closed = true;
        loaded.view = None;
        let store = loaded.store.take();
        drop(loaded);
        if let Some(store) = store {
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        }
    }
}

type Read = Result<(Snapshot, Option<Leader>), StoreError>;

/// Loads everything and reads the lease row, on a new session when there is none.
fn load(
    url: &str,
    ca: Option<PathBuf>,
    store: Option<PostgresStore>,
) -> (Option<PostgresStore>, Read) {
    let mut store = match store {
        Some(s) => s,
        None => match PostgresStore::connect_reading(url, ca.as_deref()) {
            Ok(s) => s,
            Err(e) => return (None, Err(e)),
        },
    };
    let read = store
        .load()
        .and_then(|snapshot| Ok((snapshot, store.leader()?)));
    match read {
        Ok(read) => (Some(store), Ok(read)),
        Err(e) => (None, Err(e)),
    }
}
