//! `GET /v1/watch?prefix=P&since=I`: a store-backed guest's changes, as
//! they are applied, streamed as newline-delimited JSON
//! (`application/x-ndjson`, one [`WatchLine`] per line).
//!
//! ```text
//! {"type":"start","since":41,"applied_index":41}
//! {"type":"changes","index":42,"events":[{"op":"put","key":{"text":"a","base64":"YQ=="},"value":{"text":"1","base64":"MQ=="}}]}
//! {"type":"progress","applied_index":57}
//! ```
//!
//! - `prefix` (text) or `prefix_base64`: only keys starting with it (all
//!   keys by default). Keys the guest keeps for itself (first byte 0xff)
//!   are never shown.
//! - `since`: the changes of the entries after index `since`; default: the
//!   node's applied index (changes from now on). A client that reconnects
//!   with the last index it saw (a `changes` or `progress` line's) gets
//!   every later change exactly once.
//! - All changes of one entry come in one line, entries in log order. A
//!   watcher only sees committed, applied entries: on a follower, those it
//!   applied itself.
//! - `compacted` (a `410` before the stream starts, or the last line): the
//!   changes asked for are no longer kept (`--watch-history` entries are,
//!   and a node that loaded a snapshot has none before its index). Re-read
//!   the state and watch again from its index.
//! - `progress` lines come every [`WATCH_PROGRESS_INTERVAL`]; `error` is the
//!   last line when the node stops.
//!
//! Each watch is a task fed by the store: it catches up from the store's
//! change history, then follows the live feed (one broadcast for all
//! watchers, filtered per watch), and falls back to the history when it
//! lags. A guest that keeps its state in its own memory (WIT 0.1.0)
//! cannot be watched: `400 watch_unsupported`.

use crate::limits::{
    WATCH_PAGE_BYTES, WATCH_PAGE_ENTRIES, WATCH_PROGRESS_INTERVAL, WATCH_STREAM_BUFFER_LINES,
};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::server::ApiError;
use super::types::{ErrorInfo, Output, WatchEvent, WatchLine, WatchOp, bytes_from};
use crate::node::NodeHandle;
use crate::storage::GuestStore;
use crate::storage::change_history::{FeedItem, HistoryError, matching};
use crate::wasm::kv::EntryChanges;

/// The query string of `/v1/watch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchParams {
    prefix: Option<String>,
    prefix_base64: Option<String>,
    since: Option<u64>,
}

/// The watch route, serving at most `max_watchers` watches at once.
pub(super) fn routes(max_watchers: usize) -> Router<NodeHandle> {
    let slots = Arc::new(Semaphore::new(max_watchers));
    Router::new().route(
        "/v1/watch",
        get(
            move |node: State<NodeHandle>, params: Result<Query<WatchParams>, QueryRejection>| {
                watch(node, params, slots.clone())
            },
        ),
    )
}

async fn watch(
    State(node): State<NodeHandle>,
    params: Result<Query<WatchParams>, QueryRejection>,
    slots: Arc<Semaphore>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let prefix = match (params.prefix, params.prefix_base64) {
        (None, None) => Vec::new(),
        (text, base64) => bytes_from(text, base64, "prefix").map_err(ApiError::bad_request)?,
    };
    let store = node.watched_store().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "watch_unsupported",
            "this node's guest keeps its state in its own memory (WIT 0.1.0), so the node \
             cannot see its changes; watching needs a store-backed guest (WIT 0.2.0)",
        )
    })?;
    let permit = slots.try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_watchers",
            "this node serves as many watches as it may (--max-watchers); try another node or later",
        )
    })?;
    // Subscribed before anything is read: no commit falls in between.
    let feed = store.subscribe();
    let applied = store.committed().index;
    let since = params.since.unwrap_or(applied);
    let oldest = store.history_oldest_index();
    if since.saturating_add(1) < oldest {
        return Err(compacted_error(oldest));
    }
    let (lines, body) = mpsc::channel::<Bytes>(WATCH_STREAM_BUFFER_LINES);
    let watcher = Watcher {
        node,
        store,
        prefix,
        lines,
        cursor: since,
    };
    tokio::spawn(async move {
        let _permit = permit;
        watcher.run(feed, applied).await;
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(line), body))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn compacted_error(oldest_index: u64) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::GONE,
        "compacted",
        format!(
            "the changes before index {oldest_index} are no longer kept; read the state and \
             watch from its index"
        ),
    );
    error.info.oldest_index = Some(oldest_index);
    error
}

/// Why a watch ended.
enum End {
    /// The client went away.
    Disconnected,
    /// The last line was sent.
    Finished,
}

/// One watch: its filter, where it is, and where its lines go.
struct Watcher {
    node: NodeHandle,
    store: GuestStore,
    prefix: Vec<u8>,
    lines: mpsc::Sender<Bytes>,
    /// Every change up to this index was sent.
    cursor: u64,
}

impl Watcher {
    async fn run(mut self, mut feed: broadcast::Receiver<FeedItem>, applied: u64) {
        let start = WatchLine::Start {
            since: self.cursor,
            applied_index: applied,
        };
        if self.send(&start).await.is_err() {
            return;
        }
        loop {
            if let Err(End::Disconnected | End::Finished) = self.catch_up().await {
                return;
            }
            match self.follow(&mut feed).await {
                // Lagged behind the feed: back to the history.
                Ok(()) => continue,
                Err(End::Disconnected | End::Finished) => return,
            }
        }
    }

    /// Send what the history holds after the cursor, page by page.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let (store, prefix, since) = (self.store.clone(), self.prefix.clone(), self.cursor);
            let read = tokio::task::spawn_blocking(move || {
                let committed = store.committed().index;
                store
                    .history_after(since, &prefix, WATCH_PAGE_ENTRIES, WATCH_PAGE_BYTES)
                    .map(|page| (page, committed))
            })
            .await;
            let (page, committed) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(HistoryError::Compacted { oldest_index })) => {
                    return self.finish(&WatchLine::Compacted { oldest_index }).await;
                }
                Ok(Err(HistoryError::Io(error))) => {
                    return self.finish(&error_line("store_failed", error.0)).await;
                }
                Err(join) => {
                    return self.finish(&error_line("internal", join.to_string())).await;
                }
            };
            for entry in &page.entries {
                self.send(&changes_line(entry)).await?;
            }
            self.cursor = self.cursor.max(page.scanned_to);
            if page.scanned_to >= committed {
                return Ok(());
            }
        }
    }

    /// Follow the live feed until it lags (`Ok`) or the watch ends.
    async fn follow(&mut self, feed: &mut broadcast::Receiver<FeedItem>) -> Result<(), End> {
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + WATCH_PROGRESS_INTERVAL,
            WATCH_PROGRESS_INTERVAL,
        );
        let node = self.node.clone();
        let stopped = node.stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                item = feed.recv() => match item {
                    Ok(FeedItem::Committed { applied, changes, rendered }) => {
                        for (entry, rendered) in changes.iter().zip(rendered.iter()) {
                            if entry.index <= self.cursor {
                                continue;
                            }
                            if entry.changes.iter().all(|c| c.key.starts_with(&self.prefix)) {
                                let line = rendered.get_or_init(|| render(&changes_line(entry)));
                                self.send_rendered(line.clone()).await?;
                            } else if let Some(matched) = matching(entry, &self.prefix) {
                                self.send(&changes_line(&matched)).await?;
                            }
                        }
                        self.cursor = self.cursor.max(applied);
                    }
                    Ok(FeedItem::Imported { index }) => {
                        if index > self.cursor {
                            let oldest_index = index + 1;
                            return self.finish(&WatchLine::Compacted { oldest_index }).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(missed, cursor = self.cursor,
                            "a watch fell behind the live feed; reading the history");
                        return Ok(());
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return self.finish(&error_line("node_stopped", "the node stopped")).await;
                    }
                },
                _ = progress.tick() => {
                    let line = WatchLine::Progress { applied_index: self.cursor };
                    self.send(&line).await?;
                }
                reason = &mut stopped => {
                    let message = reason.unwrap_or_else(|| "the node stopped".into());
                    return self.finish(&error_line("node_stopped", message)).await;
                }
                () = self.lines.closed() => return Err(End::Disconnected),
            }
        }
    }

    async fn send(&self, line: &WatchLine) -> Result<(), End> {
        self.send_rendered(render(line)).await
    }

    async fn send_rendered(&self, line: Bytes) -> Result<(), End> {
        self.lines.send(line).await.map_err(|_| End::Disconnected)
    }

    /// Send the last line; the watch ends either way.
    async fn finish<T>(&self, line: &WatchLine) -> Result<T, End> {
        self.send(line).await?;
        Err(End::Finished)
    }
}

/// A line as sent: its JSON and a newline.
fn render(line: &WatchLine) -> Bytes {
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn changes_line(entry: &EntryChanges) -> WatchLine {
    WatchLine::Changes {
        index: entry.index,
        events: entry
            .changes
            .iter()
            .map(|change| WatchEvent {
                op: if change.value.is_some() {
                    WatchOp::Put
                } else {
                    WatchOp::Delete
                },
                key: Output::from_bytes(&change.key),
                value: change.value.as_deref().map(Output::from_bytes),
            })
            .collect(),
    }
}

fn error_line(code: &str, message: impl Into<String>) -> WatchLine {
    WatchLine::Error {
        error: ErrorInfo {
            code: code.into(),
            message: message.into(),
            index: None,
            leader_hint: None,
            oldest_index: None,
        },
    }
}
