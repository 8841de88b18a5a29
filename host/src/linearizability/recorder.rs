//! A thread-safe history recorder for tests and the simulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::history::{ClientId, History, OpId, Operation, Outcome, Reply};

/// Records a [`History`] as clients run. Cheap to clone; every clone appends
/// to the same history.
///
/// Time is a logical clock: each call takes the next number under the one
/// lock, so an operation completed (as recorded) before another was invoked
/// gets a smaller completion time than that invocation. Call
/// [`invoke`](Self::invoke) just before sending a request and
/// [`complete`](Self::complete), [`fail`](Self::fail) or
/// [`timeout`](Self::timeout) just after learning its fate, so the recorded
/// interval contains the real one.
///
/// ```
/// use iroh_raft::linearizability::{self, ClientId, KvModel, Recorder};
///
/// let recorder = Recorder::new();
/// let put = recorder.invoke(ClientId(1), "put x 1");
/// recorder.complete(put, Ok("OK".to_owned()));
/// let get = recorder.invoke(ClientId(2), "get x");
/// recorder.complete(get, Ok("1".to_owned()));
/// let lost = recorder.invoke(ClientId(1), "put x 2");
/// recorder.timeout(lost); // maybe happened
///
/// let report = linearizability::check(&KvModel, &recorder.history()).expect("well formed");
/// assert!(report.verdict.is_linearizable(), "{report}");
/// ```
///
/// Misuse (a second request from a client with one outstanding, finishing an
/// operation twice, an id from another recorder) is a bug in the test and
/// panics.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The logical clock: the time of the last event.
    now: u64,
    /// Indexed by `OpId`.
    ops: Vec<Operation>,
    /// Each client's request in flight.
    outstanding: HashMap<ClientId, OpId>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking client thread leaves the history consistent (every
        // update is a single assignment), so keep recording.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record that `client` sends `input` now.
    pub fn invoke(&self, client: ClientId, input: impl Into<String>) -> OpId {
        let mut inner = self.lock();
        let id = OpId(inner.ops.len() as u64);
        if let Some(previous) = inner.outstanding.insert(client, id) {
            panic!(
                "client {} invoked a request while op {} is outstanding",
                client.0, previous.0
            );
        }
        inner.now += 1;
        let op = Operation {
            id,
            client,
            input: input.into(),
            invoke: inner.now,
            outcome: Outcome::Unknown,
        };
        inner.ops.push(op);
        id
    }

    /// Record the state machine's answer (the guest's `Ok` or `Err`).
    pub fn complete(&self, op: OpId, output: Reply) {
        self.finish(op, |complete| Outcome::Ok { complete, output });
    }

    /// Record that the request definitely did not take effect.
    pub fn fail(&self, op: OpId) {
        self.finish(op, |complete| Outcome::Fail { complete });
    }

    /// Record that the client gave up: the request may or may not take
    /// effect, now or later. The client may send its next request.
    pub fn timeout(&self, op: OpId) {
        self.finish(op, |_| Outcome::Unknown);
    }

    fn finish(&self, op: OpId, outcome: impl FnOnce(u64) -> Outcome) {
        let mut inner = self.lock();
        inner.now += 1;
        let now = inner.now;
        let index = usize::try_from(op.0).expect("op ids are indices");
        let client = inner
            .ops
            .get(index)
            .expect("op id was returned by this recorder's invoke")
            .client;
        assert_eq!(
            inner.outstanding.remove(&client),
            Some(op),
            "op {} finished twice",
            op.0
        );
        inner.ops[index].outcome = outcome(now);
    }

    /// The history so far. Requests still outstanding are
    /// [`Outcome::Unknown`]: they may yet take effect.
    pub fn history(&self) -> History {
        History::new(self.lock().ops.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_records_from_many_threads() {
        let recorder = Recorder::new();
        let threads: Vec<_> = (0..4)
            .map(|client| {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let op = recorder.invoke(ClientId(client), "add 1");
                        recorder.complete(op, Ok("1".to_owned()));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("client thread");
        }
        let history = recorder.history();
        assert_eq!(history.ops.len(), 200);
        history.validate().expect("each client is sequential");
        let mut times: Vec<u64> = history
            .ops
            .iter()
            .flat_map(|op| [op.invoke, op.complete().expect("all completed")])
            .collect();
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), 400, "every event has its own time");
    }

    #[test]
    fn t20_outcomes() {
        let recorder = Recorder::new();
        let a = recorder.invoke(ClientId(1), "put a 1");
        let b = recorder.invoke(ClientId(2), "put b 1");
        let c = recorder.invoke(ClientId(3), "put c 1");
        recorder.fail(a);
        recorder.timeout(b);
        let history = recorder.history();
        assert_eq!(history.ops[0].outcome, Outcome::Fail { complete: 4 });
        assert_eq!(history.ops[1].outcome, Outcome::Unknown);
        assert_eq!(
            history.ops[2].outcome,
            Outcome::Unknown,
            "still outstanding"
        );
        let again = recorder.invoke(ClientId(2), "get b");
        assert_eq!(again, OpId(3));
        recorder.complete(c, Err("nope".to_owned()));
        assert!(matches!(
            recorder.history().ops[2].outcome,
            Outcome::Ok { complete: 7, .. }
        ));
    }

    #[test]
    #[should_panic(expected = "outstanding")]
    fn t30_one_outstanding_request_per_client() {
        let recorder = Recorder::new();
        recorder.invoke(ClientId(1), "get a");
        recorder.invoke(ClientId(1), "get b");
    }
}
