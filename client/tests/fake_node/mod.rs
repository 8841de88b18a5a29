//! A tiny HTTP/1.1 server in the test process that plays a node: each
//! request is answered by a handler, and every request is logged.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake answers.
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, String),
    /// `200` and these NDJSON lines, then the connection closes (a node
    /// that went away mid-stream).
    Stream(Vec<String>),
    /// Nothing for a long while (a node that hangs).
    Hang,
}

pub struct FakeNode {
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

type Handler = dyn Fn(&str, &str, &[u8]) -> Reply + Send + Sync;

impl FakeNode {
    /// Serve `handler(method, path_and_query, body)` on a free loopback port.
    pub fn start(handler: impl Fn(&str, &str, &[u8]) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        FakeNode {
            url: format!("http://{addr}"),
            log,
        }
    }

    /// `METHOD path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// How many requests went to `path` (ignoring the query).
    pub fn count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.split(' ').nth(1).and_then(|p| p.split('?').next()) == Some(path))
            .count()
    }
}

/// An address where nothing listens (connects are refused).
pub fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr: SocketAddr = listener.local_addr().expect("a bound address");
    drop(listener);
    format!("http://{addr}")
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut out = stream;
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        log.lock().expect("log").push(format!("{method} {path}"));
        match handler(&method, &path, &body) {
            Reply::Json(status, json) => {
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                    json.len()
                );
                if out.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Stream(lines) => {
                let mut answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n".to_string();
                for line in lines {
                    answer.push_str(&line);
                    answer.push('\n');
                }
                let _ = out.write_all(answer.as_bytes());
                return;
            }
            Reply::Hang => {
                // A node that never answers; the test is over long before.
                std::thread::park_timeout(Duration::from_secs(30));
                return;
            }
        }
    }
}

/// The JSON of a status whose node has Raft id `id`.
pub fn status_json(id: u64) -> String {
    format!(
        r#"{{"id":{id},"role":"follower","term":1,"leader_id":null,"commit_index":1,"applied_index":1,"last_index":1,"voters":[1,2,3],"pending_proposals":0,"guest":{{"name":"g","version":"1","hash":"h","applied_entries":0,"failed_entries":0,"instance_rebuilds":0}},"data_dir":"d"}}"#
    )
}

/// The JSON of an applied proposal.
pub fn applied_json(index: u64) -> String {
    format!(
        r#"{{"index":{index},"term":1,"output":{{"text":"ok","base64":"b2s="}},"fuel_used":1}}"#
    )
}

/// The JSON of a `not_leader` error.
pub fn not_leader_json(hint: Option<u64>) -> String {
    match hint {
        Some(id) => format!(
            r#"{{"error":{{"code":"not_leader","message":"not the leader","leader_hint":{id}}}}}"#
        ),
        None => r#"{"error":{"code":"not_leader","message":"not the leader"}}"#.to_string(),
    }
}
