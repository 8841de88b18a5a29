//! The clients: threads that each send one request at a time to some node's
//! API (puts, deletes and gets of a few keys) and record every request and
//! what came of it with the linearizability [`Recorder`].
//!
//! What a client records, from the answer it got:
//!
//! | answer | recorded as |
//! |---|---|
//! | the guest's result (`Ok`, or its `Err` such as `key not found`) | ok, with that reply |
//! | `not_leader`, `overloaded`, `proposal_dropped`, `empty_command` (the node says it did not propose it) | fail: did not happen |
//! | `timeout`, `node_stopped`, no answer, a dropped connection, anything else | unknown: maybe happened, now or later |
//!
//! Only what a node definitely refused is a failure; everything else may
//! have taken effect. `proposal_dropped` is the node's claim that the
//! command never applies: recording it as a failure puts that claim to the
//! test.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use iroh_raft::api::{ApiClient, ApiClientError};
use iroh_raft::linearizability::{ClientId, History, OpId, Recorder, Reply};
use iroh_raft::node::Consistency;

use super::db::Endpoints;
use super::rng::Rng;
use crate::common::netns::in_netns;

/// How long a client waits for one answer before it records the request
/// as unknown and moves on: above the node's 5 s `READ_INDEX_TIMEOUT`, so
/// a read that cannot be confirmed comes back as the node's own `timeout`.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);
/// A client pauses up to this long between requests, so the nodes keep
/// some of the two cores.
const MAX_THINK_TIME: Duration = Duration::from_millis(20);
/// The guest's `Err` message comes wrapped in this by the API.
const GUEST_ERROR_PREFIX: &str = "guest returned an error: ";

/// What came of one request.
#[derive(Debug)]
pub enum Answer {
    Reply(Reply),
    /// Did not happen; the node's error code.
    Failed(String),
    /// Maybe happened; the error code, or why there was no answer.
    Unknown(String),
}

impl Answer {
    /// Why it is not a reply (for the summary's tally).
    fn reason(&self) -> Option<String> {
        match self {
            Answer::Reply(_) => None,
            Answer::Failed(code) => Some(format!("failed: {code}")),
            Answer::Unknown(why) => Some(format!("unknown: {why}")),
        }
    }
}

/// The history being recorded, plus what the history does not keep: which
/// node served each request and why one that got no reply got none (for
/// whoever reads a failing run).
#[derive(Debug, Clone, Default)]
pub struct Journal {
    pub recorder: Recorder,
    /// Op id, node id, and `reply` or the reason.
    requests: Arc<Mutex<Vec<(u64, u8, String)>>>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn history(&self) -> History {
        self.recorder.history()
    }

    /// Write one line per request: `op <id> node <id> <reply | why not>`.
    pub fn save_requests(&self, path: &Path) -> std::io::Result<()> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (op, node, what) in requests.iter() {
            writeln!(file, "op {op} node {node} {what}")?;
        }
        file.flush()
    }

    /// Record `answer` for `op`, served by node `node`.
    fn record(&self, op: OpId, node: u8, answer: &Answer) {
        match answer {
            Answer::Reply(reply) => self.recorder.complete(op, reply.clone()),
            Answer::Failed(_) => self.recorder.fail(op),
            Answer::Unknown(_) => self.recorder.timeout(op),
        }
        let what = answer.reason().unwrap_or_else(|| "reply".to_owned());
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((op.0, node, what));
    }
}

/// Why there was no answer: the node's error code, or `no answer` when the
/// request or its answer got lost on the way.
fn why(error: &ApiClientError) -> String {
    match error {
        ApiClientError::Api(info) => info.code.clone(),
        ApiClientError::Transport { .. } => "no answer".to_owned(),
        // Only made when a client is built, never by a call.
        ApiClientError::Config(reason) => reason.clone(),
        // A watch's end, or a list of endpoints: neither is used here.
        other => other.to_string(),
    }
}

/// The guest's answer inside an API error, if the error is one.
fn guest_reply(error: &ApiClientError) -> Option<Reply> {
    let ApiClientError::Api(info) = error else {
        return None;
    };
    if !info.code.starts_with("guest_") {
        return None;
    }
    // `guest_rejected` is the guest's own `Err`; a trap or an exhausted
    // budget is an answer too (a wrong one for the kv model).
    let message = info
        .message
        .strip_prefix(GUEST_ERROR_PREFIX)
        .unwrap_or(&info.message);
    Some(Err(message.to_owned()))
}

/// Classify the answer to a proposal (see the module doc).
pub fn propose_answer(result: Result<iroh_raft::api::ProposeResponse, ApiClientError>) -> Answer {
    match result {
        Ok(response) => Answer::Reply(Ok(response.output.text.unwrap_or_default())),
        Err(error) => match guest_reply(&error) {
            Some(reply) => Answer::Reply(reply),
            None => match &error {
                ApiClientError::Api(info)
                    if matches!(
                        info.code.as_str(),
                        "not_leader" | "overloaded" | "proposal_dropped" | "empty_command"
                    ) =>
                {
                    Answer::Failed(info.code.clone())
                }
                _ => Answer::Unknown(why(&error)),
            },
        },
    }
}

/// Classify the answer to a query: a read that got no answer from the
/// guest took no effect, whatever the reason.
pub fn query_answer(result: Result<iroh_raft::api::QueryResponse, ApiClientError>) -> Answer {
    match result {
        Ok(response) => Answer::Reply(Ok(response.output.text.unwrap_or_default())),
        Err(error) => match guest_reply(&error) {
            Some(reply) => Answer::Reply(reply),
            None => Answer::Failed(why(&error)),
        },
    }
}

/// One request of the workload.
#[derive(Debug, Clone)]
pub struct Request {
    pub text: String,
    /// `None` for a write (proposed through the log).
    pub read: Option<Consistency>,
}

/// The keys in use: [`KEYS_PER_EPOCH`] at a time, replaced by fresh ones
/// every [`KEY_EPOCH`] (as Jepsen's independent keys). Few keys at a time
/// keep the clients contending; retiring them bounds the history of each
/// key, which the checker searches on its own, however long the run. The
/// retired keys are still read at the end: their last values must survive
/// restarts, snapshots and compaction.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    start: Instant,
}

/// Keys in use at a time.
pub const KEYS_PER_EPOCH: u64 = 6;
/// How long a key is in use.
pub const KEY_EPOCH: Duration = Duration::from_secs(30);

impl Keys {
    pub fn new() -> Self {
        Keys {
            start: Instant::now(),
        }
    }

    fn epoch(&self) -> u64 {
        (self.start.elapsed().as_millis() / KEY_EPOCH.as_millis()) as u64
    }

    /// A key in use now.
    fn pick(&self, rng: &mut Rng) -> String {
        format!("k{}-{}", self.epoch(), rng.below(KEYS_PER_EPOCH))
    }

    /// Every key used so far.
    pub fn all(&self) -> Vec<String> {
        (0..=self.epoch())
            .flat_map(|epoch| (0..KEYS_PER_EPOCH).map(move |k| format!("k{epoch}-{k}")))
            .collect()
    }
}

/// The next request of client `client`: mostly puts of fresh values
/// (`c<client>-<seq>`, so every value tells which put wrote it) and
/// linearizable gets, some lease gets and deletes.
fn next_request(rng: &mut Rng, keys: &Keys, client: u64, seq: u64) -> Request {
    let key = keys.pick(rng);
    match rng.below(100) {
        0..45 => Request {
            text: format!("put {key} c{client}-{seq}"),
            read: None,
        },
        45..50 => Request {
            text: format!("delete {key}"),
            read: None,
        },
        50..85 => Request {
            text: format!("get {key}"),
            read: Some(Consistency::Linearizable),
        },
        _ => Request {
            text: format!("get {key}"),
            read: Some(Consistency::Lease),
        },
    }
}

/// Send `request` to node `node` (`api` talks to it, from inside its
/// namespace `ns`), recording it as client `client`.
pub fn send(
    journal: &Journal,
    client: ClientId,
    node: u8,
    (ns, api): (&str, &ApiClient),
    request: &Request,
) -> Answer {
    let op = journal.recorder.invoke(client, request.text.clone());
    let answer = in_netns(ns, || match request.read {
        None => propose_answer(api.propose(request.text.as_bytes())),
        Some(consistency) => query_answer(api.query_with(request.text.as_bytes(), consistency)),
    });
    journal.record(op, node, &answer);
    answer
}

/// Why requests got no reply, counted: `failed: not_leader`, `unknown:
/// timeout`, ...
pub type Tally = BTreeMap<String, u64>;

/// The client threads; [`Clients::stop`] (or dropping them) ends them after
/// their current request.
#[derive(Debug)]
pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Clients {
    /// Start `count` clients (ids 1..=count) on `keys`. Client `c` starts on
    /// node `c mod n` and moves to a random node after a request that did
    /// not get a reply.
    pub fn start(
        count: u64,
        rng: &mut Rng,
        keys: Keys,
        endpoints: &Arc<Endpoints>,
        journal: &Journal,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (1..=count)
            .map(|client| {
                let mut rng = rng.fork(client);
                let endpoints = Arc::clone(endpoints);
                let journal = journal.clone();
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("client-{client}"))
                    .spawn(move || run_client(client, &mut rng, keys, &endpoints, &journal, &stop))
                    .expect("spawn a client thread")
            })
            .collect();
        Clients { stop, threads }
    }

    /// Stop the clients and wait for them (at most one request's
    /// [`CLIENT_TIMEOUT`]); returns why requests got no reply.
    pub fn stop(mut self) -> Tally {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut tally = Tally::new();
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(counts) => {
                    for (why, n) in counts {
                        *tally.entry(why).or_default() += n;
                    }
                }
                Err(_) if std::thread::panicking() => {}
                Err(_) => panic!("a client thread panicked"),
            }
        }
        tally
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run_client(
    client: u64,
    rng: &mut Rng,
    keys: Keys,
    endpoints: &Endpoints,
    journal: &Journal,
    stop: &AtomicBool,
) -> Tally {
    let nodes = endpoints.len();
    let mut node = client as usize % nodes;
    let mut apis: HashMap<String, ApiClient> = HashMap::new();
    let mut tally = Tally::new();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some((ns, url)) = endpoints.get(node) else {
            // Down: try another node (they are not all down for long).
            node = rng.below(nodes as u64) as usize;
            endpoints.wait_any_up(Duration::from_millis(200));
            continue;
        };
        seq += 1;
        let request = next_request(rng, &keys, client, seq);
        let api = apis
            .entry(url.clone())
            .or_insert_with(|| ApiClient::with_timeout(&url, CLIENT_TIMEOUT));
        let answer = send(
            journal,
            ClientId(client),
            node as u8 + 1,
            (ns, api),
            &request,
        );
        if let Some(why) = answer.reason() {
            *tally.entry(why).or_default() += 1;
            node = rng.below(nodes as u64) as usize;
        }
        std::thread::sleep(rng.between(Duration::ZERO, MAX_THINK_TIME));
    }
    tally
}
