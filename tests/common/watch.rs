//! A watch (`GET /v1/watch`) read line by line on a thread of its own, so a
//! test can wait for the next line with a timeout.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iroh_raft::api::{WatchLine, WatchOp};

use super::CONVERGENCE_TIMEOUT;

/// One change as a test compares them: index, op, key, value.
pub type Seen = (u64, WatchOp, String, Option<String>);

/// An open watch.
pub struct Watch {
    lines: mpsc::Receiver<Result<WatchLine, String>>,
    /// The `start` line.
    pub start: WatchLine,
}

/// Why a watch could not be opened: the status and the error body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

impl Watch {
    /// Open `GET {api_url}/v1/watch?{query}` and read its `start` line.
    pub fn open(api_url: &str, query: &str) -> Result<Watch, Refused> {
        let url = format!("{api_url}/v1/watch?{query}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent.get(&url).call().map_err(|e| Refused {
            status: 0,
            body: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response
                .into_body()
                .read_to_string()
                .unwrap_or_else(|e| e.to_string());
            return Err(Refused { status, body });
        }
        let (tx, lines) = mpsc::channel();
        let reader = response.into_body().into_reader();
        std::thread::spawn(move || {
            // A connection cut (the node killed) ends the stream like EOF.
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                let parsed = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"));
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        });
        let mut watch = Watch {
            lines,
            start: WatchLine::Progress { applied_index: 0 },
        };
        watch.start = watch
            .next(CONVERGENCE_TIMEOUT)
            .expect("a watch begins with a start line");
        assert!(
            matches!(watch.start, WatchLine::Start { .. }),
            "first line: {:?}",
            watch.start
        );
        Ok(watch)
    }

    /// The next line, or `None` if none came within `timeout` or the
    /// stream ended.
    pub fn next(&mut self, timeout: Duration) -> Option<WatchLine> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(line)) => Some(line),
            Ok(Err(error)) => panic!("a watch line: {error}"),
            Err(_) => None,
        }
    }

    /// Collect changes until one at `index` or later arrived; panics on a
    /// line that ends the watch or after [`CONVERGENCE_TIMEOUT`].
    pub fn changes_through(&mut self, index: u64) -> Vec<Seen> {
        let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(WatchLine::Changes { index: at, events }) => {
                    seen.extend(events.into_iter().map(|e| {
                        (
                            at,
                            e.op,
                            e.key.text.unwrap_or_default(),
                            e.value.and_then(|v| v.text),
                        )
                    }));
                    if at >= index {
                        return seen;
                    }
                }
                Some(WatchLine::Progress { applied_index }) if applied_index >= index => {
                    return seen;
                }
                Some(WatchLine::Progress { .. }) => {}
                other => panic!("waiting for changes through {index}, got {other:?}"),
            }
        }
    }
}
