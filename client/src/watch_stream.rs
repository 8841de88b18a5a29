//! The async [`Watch`]: a stream of changes that reconnects and resumes
//! (see [`crate::watch`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::client::{Client, chain};
use crate::config::{Call, percent_encode};
use crate::error::{Attempt, Error};
use crate::limits::{
    ATTEMPTS_PER_ENDPOINT, MAX_RESPONSE_BYTES, MAX_RETRY_BACKOFF, MAX_WATCH_RECONNECTS,
    RETRY_BACKOFF, WATCH_IDLE_TIMEOUT,
};
use crate::watch::{Changes, Lines, Outcome, Resume, WatchLine, parse_line};

/// A watch of the changes under a prefix: a [`Stream`](futures_core::Stream)
/// of [`Changes`], one item per log entry, resumed across dropped
/// connections (see [`crate::watch`]). Ends with
/// `Err(Error::Compacted { .. })` when the node no longer has the changes
/// it must resume from, with another error when no endpoint can serve it
/// (after [`MAX_WATCH_RECONNECTS`] failed reconnects in a row, or a refusal
/// such as `watch_unsupported`), and otherwise never.
#[derive(Debug)]
pub struct Watch {
    state: State,
    /// Copy of the watcher's resume point, for [`Watch::resume_index`].
    resume_index: Option<u64>,
}

type Step = (Box<Watcher>, Option<Result<Changes, Error>>);

enum State {
    Idle(Box<Watcher>),
    Busy(Pin<Box<dyn Future<Output = Step> + Send>>),
    Done,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Idle(_) => "Idle",
            State::Busy(_) => "Busy",
            State::Done => "Done",
        })
    }
}

impl Watch {
    pub(crate) fn new(client: Client, prefix: Vec<u8>, since: Option<u64>) -> Self {
        let endpoint = client.inner.config.endpoints.preferred();
        Watch {
            state: State::Idle(Box::new(Watcher {
                client,
                prefix,
                resume: Resume::new(since),
                endpoint,
                conn: None,
                failures: 0,
                attempts: Vec::new(),
                started: false,
                finished: false,
            })),
            resume_index: since,
        }
    }

    /// The next entry's changes (`None` once the watch ended).
    pub async fn next(&mut self) -> Option<Result<Changes, Error>> {
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx)).await
    }

    /// The index up to which every change was delivered (where the watch
    /// would resume); `None` before the first stream started.
    pub fn resume_index(&self) -> Option<u64> {
        self.resume_index
    }
}

impl futures_core::Stream for Watch {
    type Item = Result<Changes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Idle(mut watcher) => {
                    self.state = State::Busy(Box::pin(async move {
                        let item = watcher.next().await;
                        (watcher, item)
                    }));
                }
                State::Busy(mut step) => match step.as_mut().poll(cx) {
                    Poll::Ready((watcher, item)) => {
                        self.resume_index = watcher.resume.since();
                        if item.is_some() {
                            self.state = State::Idle(watcher);
                        }
                        return Poll::Ready(item);
                    }
                    Poll::Pending => {
                        self.state = State::Busy(step);
                        return Poll::Pending;
                    }
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

/// The watch's state between items.
struct Watcher {
    client: Client,
    prefix: Vec<u8>,
    resume: Resume,
    /// The endpoint of the current (or next) connection.
    endpoint: usize,
    conn: Option<Conn>,
    /// Failed connects in a row, and what they met.
    failures: usize,
    attempts: Vec<Attempt>,
    /// A stream started at least once (reconnects then get more patience).
    started: bool,
    finished: bool,
}

struct Conn {
    response: reqwest::Response,
    lines: Lines,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Changes, Error>> {
        loop {
            if self.finished {
                return None;
            }
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => match self.connect().await {
                    Ok(conn) => self.conn.insert(conn),
                    Err(error) => {
                        self.finished = true;
                        return Some(Err(error));
                    }
                },
            };
            let url = self.client.url(self.endpoint).to_string();
            match conn.next_message(&url).await {
                Ok(Some(message)) => match self.resume.on(message) {
                    Outcome::Deliver(changes) => return Some(Ok(changes)),
                    Outcome::Started => {
                        self.started = true;
                        self.failures = 0;
                        self.attempts.clear();
                    }
                    Outcome::Nothing => {}
                    Outcome::Compacted(oldest_index) => {
                        self.finished = true;
                        return Some(Err(Error::Compacted { oldest_index }));
                    }
                    Outcome::Stopped(_) => {
                        // That node stops: the next one serves the rest.
                        self.conn = None;
                        self.endpoint = (self.endpoint + 1) % self.endpoints();
                    }
                },
                Ok(None) | Err(_) => self.conn = None,
            }
        }
    }

    fn endpoints(&self) -> usize {
        self.client.inner.config.endpoints.len()
    }

    fn path(&self) -> String {
        let mut path = match std::str::from_utf8(&self.prefix) {
            Ok(text) => format!("/v1/watch?prefix={}", percent_encode(text.as_bytes())),
            Err(_) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&self.prefix);
                format!(
                    "/v1/watch?prefix_base64={}",
                    percent_encode(encoded.as_bytes())
                )
            }
        };
        if let Some(since) = self.resume.since() {
            path.push_str(&format!("&since={since}"));
        }
        path
    }

    /// Open a stream from the resume point: this endpoint, then the next
    /// ones, pausing after each round.
    async fn connect(&mut self) -> Result<Conn, Error> {
        let n = self.endpoints();
        let give_up_after = match (self.started, n) {
            (true, _) => MAX_WATCH_RECONNECTS,
            (false, 1) => 1,
            (false, n) => n * ATTEMPTS_PER_ENDPOINT,
        };
        loop {
            let call = Call::get(self.path());
            let timeout = self.client.inner.config.timeout;
            let url = self.client.url(self.endpoint).to_string();
            let answer =
                tokio::time::timeout(timeout, self.client.attempt(self.endpoint, &call, None))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::transport(
                            &url,
                            format!("no answer in {timeout:?}"),
                            false,
                        ))
                    });
            let error = match answer {
                Ok(response) => {
                    self.client.inner.config.endpoints.answered(self.endpoint);
                    return Ok(Conn {
                        response,
                        lines: Lines::default(),
                    });
                }
                Err(error @ Error::Compacted { .. }) => return Err(error),
                Err(Error::Api(info)) if refusal(&info.code) => return Err(Error::Api(info)),
                Err(error) => error,
            };
            self.failures += 1;
            if self.failures >= give_up_after {
                if n == 1 && !self.started {
                    return Err(error);
                }
                self.attempts.push(Attempt {
                    url,
                    error: error.to_string(),
                });
                return Err(Error::Unavailable {
                    attempts: std::mem::take(&mut self.attempts),
                });
            }
            if self.attempts.len() < MAX_WATCH_RECONNECTS {
                self.attempts.push(Attempt {
                    url,
                    error: error.to_string(),
                });
            }
            self.endpoint = (self.endpoint + 1) % n;
            if self.failures >= n {
                let rounds = (self.failures / n - 1).min(16) as u32;
                let pause = RETRY_BACKOFF
                    .saturating_mul(1 << rounds)
                    .min(MAX_RETRY_BACKOFF);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Errors no other endpoint (or later try) answers differently.
fn refusal(code: &str) -> bool {
    matches!(
        code,
        "bad_request"
            | "watch_unsupported"
            | "unauthenticated"
            | "insufficient_role"
            | "forbidden_origin"
            | "forbidden_host"
            | "not_found"
            | "unsupported_media_type"
    )
}

impl Conn {
    /// The next message; `None` at the end of the stream.
    async fn next_message(&mut self, url: &str) -> Result<Option<WatchLine>, Error> {
        loop {
            if let Some(line) = self.lines.next_line() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse_line(&line) {
                    Ok(Some(parsed)) => return Ok(Some(parsed)),
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(Error::transport(
                            url,
                            format!("an unreadable watch line: {e}"),
                            false,
                        ));
                    }
                }
            }
            let chunk = tokio::time::timeout(WATCH_IDLE_TIMEOUT, self.response.chunk())
                .await
                .map_err(|_| {
                    Error::transport(
                        url,
                        format!("nothing heard for {WATCH_IDLE_TIMEOUT:?}"),
                        false,
                    )
                })?
                .map_err(|e| Error::transport(url, chain(&e), false))?;
            match chunk {
                Some(bytes) => self
                    .lines
                    .push(&bytes, MAX_RESPONSE_BYTES as usize)
                    .map_err(|e| Error::transport(url, e, false))?,
                None => return Ok(None),
            }
        }
    }
}
