//! A damaged log store is refused, never served as an older state.
//!
//! sled treats a checksum failure in the middle of its log file as the torn
//! tail of a crash and silently recovers the prefix before it; before the
//! durable mark (`storage/durable_mark.rs`), a flipped byte in `raft/db`
//! brought a single node back with 76 of its 300 acknowledged `add 1`.

use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{self, NodeProcess, raft_host};

/// Acknowledged writes before the damage.
const WRITES: u64 = 300;

/// How the test damages `raft/db`.
#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipByteAt(u64),
    TruncateToHalf,
}

/// What a restart on the damaged dir did.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Served(u64),
}

#[test]
fn t46_a_damaged_log_is_refused_with_corrupt_data_dir() {
    let damages = [
        Damage::FlipByteAt(20_000),
        Damage::FlipByteAt(40_000),
        Damage::FlipByteAt(70_000),
        Damage::TruncateToHalf,
    ];
    let mut refused = 0;
    for damage in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("node");
        write_and_kill(&data_dir);
        apply(damage, &data_dir.join("raft/db"));
        let outcome = restart(&data_dir);
        eprintln!("{damage:?}: {:?}", outcome_summary(&outcome));
        match outcome {
            Outcome::Refused(log) => {
                assert!(
                    log.contains("corrupt data dir") && log.contains("remove-node"),
                    "{damage:?}: the refusal names the problem and the recovery: {log}"
                );
                refused += 1;
            }
            // Damage sled does not notice at all leaves every write.
            Outcome::Served(counter) => assert_eq!(
                counter, WRITES,
                "{damage:?}: a restart served an older state instead of refusing"
            ),
        }
    }
    // The same damage without the mark restarts with 76, 153, 261 and 0:
    // at least the truncation must be noticed.
    assert!(refused >= 1, "no damage was noticed");
}

fn outcome_summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Refused(log) => log
            .lines()
            .find(|line| line.contains("corrupt"))
            .unwrap_or("refused")
            .to_owned(),
        Outcome::Served(counter) => format!("served counter {counter}"),
    }
}

/// The durable mark itself deleted with the log: the node must not start
/// as a fresh member (it could vote again in a term it voted in).
#[test]
fn t46_a_deleted_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("node");
    write_and_kill(&data_dir);
    std::fs::remove_file(data_dir.join("raft/db")).expect("remove db");
    let Outcome::Refused(log) = restart(&data_dir) else {
        panic!("a node whose log file vanished started");
    };
    assert!(log.contains("corrupt data dir"), "{log}");
}

/// Start a single node (counter guest), acknowledge [`WRITES`] `add 1`,
/// and kill it with SIGKILL.
fn write_and_kill(data_dir: &Path) {
    let node = NodeProcess::start(data_dir, &[]);
    let client = node.client();
    for _ in 0..WRITES {
        client.propose(b"add 1").expect("add 1");
    }
    node.kill();
}

fn apply(damage: Damage, db: &Path) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .expect("open raft/db");
    let len = file.metadata().expect("stat").len();
    match damage {
        Damage::FlipByteAt(offset) => {
            assert!(offset < len, "raft/db holds only {len} bytes");
            let mut byte = [0u8];
            file.seek(SeekFrom::Start(offset)).expect("seek");
            std::io::Read::read_exact(&mut file, &mut byte).expect("read");
            file.seek(SeekFrom::Start(offset)).expect("seek");
            file.write_all(&[byte[0] ^ 0xff]).expect("write");
        }
        Damage::TruncateToHalf => file.set_len(len / 2).expect("truncate"),
    }
    file.sync_all().expect("sync");
}

/// Restart on `data_dir`: either the process exits (with its log) or it
/// serves (the counter it reads).
fn restart(data_dir: &Path) -> Outcome {
    let mut child = raft_host()
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--api-addr", "127.0.0.1:0", "--bind-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raft-host");
    let stdout = child.stdout.take().expect("piped stdout");
    let (api_tx, api_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("API: ") {
                let url = rest.split_whitespace().next().unwrap_or_default();
                let _ = api_tx.send(url.to_owned());
            }
        }
    });
    enum Seen {
        Exit(std::process::ExitStatus),
        Api(String),
    }
    let seen = common::poll(Duration::from_secs(60), common::POLL_INTERVAL, || {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(Seen::Exit(status));
        }
        api_rx.try_recv().ok().map(Seen::Api)
    })
    .expect("the node neither exited nor served within 60 s");
    match seen {
        Seen::Exit(status) => {
            let output = child.wait_with_output().expect("output");
            assert!(!status.success(), "a refusal exits non-zero");
            Outcome::Refused(String::from_utf8_lossy(&output.stderr).into_owned())
        }
        Seen::Api(url) => {
            let answer = iroh_raft::api::ApiClient::new(&url).query(b"get");
            let _ = child.kill();
            let _ = child.wait();
            let text = answer.expect("query").output.text.unwrap_or_default();
            Outcome::Served(text.trim().parse().expect("a number"))
        }
    }
}
