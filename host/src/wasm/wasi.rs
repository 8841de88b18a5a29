//! Deterministic WASI for guests.
//!
//! Components built for `wasm32-wasip2` import WASI even when they never use
//! it (Rust's std does), so the host must provide it, and everything it
//! provides must give the same answer on every replica:
//!
//! - no preopened directories, no environment, no arguments, no network;
//! - wall and monotonic clocks return the timestamp the leader stamped into
//!   the entry being applied (time stands still during one call);
//! - random bytes come from BLAKE3 in XOF mode keyed by the entry's
//!   (index, term), so they differ per entry but agree across replicas;
//! - stdout and stderr are forwarded line by line to `tracing`, tagged with
//!   the guest's name.
//!
//! [`EntryContext`] is the per-call input the runtime sets before each call.

use crate::limits::MAX_GUEST_LOG_LINE_BYTES;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// Domain separation for the random stream; changing it changes every
/// guest's random numbers, so it is versioned.
const RANDOM_CONTEXT: &str = "iroh-raft 2026 wasi random v1";

/// What the deterministic WASI answers during one call: the entry's time
/// and the seed of its random stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryContext {
    pub index: u64,
    pub term: u64,
    pub timestamp_ms: u64,
}

/// Shared between the runtime (which sets it before each call) and the WASI
/// clocks and random source (which read it).
#[derive(Clone)]
pub struct DeterministicInputs {
    inner: Arc<Mutex<Inputs>>,
}

struct Inputs {
    entry: EntryContext,
    random: blake3::OutputReader,
}

impl std::fmt::Debug for DeterministicInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeterministicInputs")
            .field("entry", &self.entry())
            .finish()
    }
}

impl Default for DeterministicInputs {
    fn default() -> Self {
        let entry = EntryContext::default();
        DeterministicInputs {
            inner: Arc::new(Mutex::new(Inputs {
                entry,
                random: random_stream(entry),
            })),
        }
    }
}

fn random_stream(entry: EntryContext) -> blake3::OutputReader {
    let mut hasher = blake3::Hasher::new_derive_key(RANDOM_CONTEXT);
    hasher.update(&entry.index.to_le_bytes());
    hasher.update(&entry.term.to_le_bytes());
    hasher.finalize_xof()
}

impl DeterministicInputs {
    /// Set the entry the next call runs for, restarting the random stream.
    pub fn set_entry(&self, entry: EntryContext) {
        let mut inputs = self.lock();
        inputs.entry = entry;
        inputs.random = random_stream(entry);
    }

    pub fn entry(&self) -> EntryContext {
        self.lock().entry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inputs> {
        // A panic while holding this lock cannot leave the data inconsistent
        // (every field is replaced whole), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fill_random(&self, dst: &mut [u8]) {
        self.lock().random.fill(dst);
    }
}

struct EntryWallClock(DeterministicInputs);

impl HostWallClock for EntryWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.entry().timestamp_ms)
    }
}

struct EntryMonotonicClock(DeterministicInputs);

impl HostMonotonicClock for EntryMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.entry().timestamp_ms.saturating_mul(1_000_000)
    }
}

struct EntryRandom(DeterministicInputs);

impl rand_core::TryRng for EntryRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut buf = [0u8; 4];
        self.0.fill_random(&mut buf);
        Ok(u32::from_le_bytes(buf))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut buf = [0u8; 8];
        self.0.fill_random(&mut buf);
        Ok(u64::from_le_bytes(buf))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_random(dst);
        Ok(())
    }
}

/// Build the WASI context for one guest instance.
pub fn deterministic_wasi(guest_name: &str, inputs: &DeterministicInputs) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .wall_clock(EntryWallClock(inputs.clone()))
        .monotonic_clock(EntryMonotonicClock(inputs.clone()))
        .secure_random(EntryRandom(inputs.clone()))
        .insecure_random(EntryRandom(inputs.clone()))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .stdout(GuestLog::new(guest_name, "stdout"))
        .stderr(GuestLog::new(guest_name, "stderr"));
    builder.build()
}

/// A guest's stdout or stderr, forwarded to `tracing` one line at a time.
#[derive(Clone)]
pub struct GuestLog {
    guest: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<LineBuffer>>,
}

#[derive(Default)]
struct LineBuffer {
    bytes: Vec<u8>,
}

impl GuestLog {
    fn new(guest: &str, stream: &'static str) -> Self {
        GuestLog {
            guest: guest.into(),
            stream,
            pending: Arc::default(),
        }
    }

    fn write_bytes(&self, data: &[u8]) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut data = data;
        while !data.is_empty() {
            let room = MAX_GUEST_LOG_LINE_BYTES - pending.bytes.len();
            let take = match data.iter().position(|b| *b == b'\n') {
                Some(newline) if newline < room => newline + 1,
                _ => data.len().min(room),
            };
            pending.bytes.extend_from_slice(&data[..take]);
            data = &data[take..];
            if pending.bytes.last() == Some(&b'\n') {
                pending.bytes.pop();
                let line = std::mem::take(&mut pending.bytes);
                self.emit(&line);
            } else if pending.bytes.len() >= MAX_GUEST_LOG_LINE_BYTES {
                // An overlong line is logged in pieces.
                let piece = std::mem::take(&mut pending.bytes);
                self.emit(&piece);
            }
        }
    }

    fn emit(&self, line: &[u8]) {
        tracing::info!(
            target: "guest",
            guest = %self.guest,
            stream = self.stream,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

impl std::fmt::Debug for GuestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestLog")
            .field("guest", &self.guest)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept, so a guest behaves the same whatever the log
        // volume; producing output costs the guest fuel, which bounds it.
        Ok(MAX_GUEST_LOG_LINE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::TryRng;

    #[test]
    fn random_is_a_function_of_the_entry() {
        let inputs = DeterministicInputs::default();
        let entry = EntryContext {
            index: 7,
            term: 2,
            timestamp_ms: 1,
        };
        let mut rng = EntryRandom(inputs.clone());
        inputs.set_entry(entry);
        let first = rng.try_next_u64().expect("infallible");
        inputs.set_entry(entry);
        assert_eq!(rng.try_next_u64().expect("infallible"), first);
        inputs.set_entry(EntryContext { index: 8, ..entry });
        assert_ne!(rng.try_next_u64().expect("infallible"), first);
    }

    #[test]
    fn clocks_return_the_entry_timestamp() {
        let inputs = DeterministicInputs::default();
        inputs.set_entry(EntryContext {
            index: 1,
            term: 1,
            timestamp_ms: 1_700_000_000_123,
        });
        assert_eq!(
            EntryWallClock(inputs.clone()).now(),
            Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(EntryMonotonicClock(inputs).now(), 1_700_000_000_123_000_000);
    }

    #[test]
    fn guest_log_splits_lines_and_caps_volume() {
        let log = GuestLog::new("t", "stdout");
        log.write_bytes(b"partial");
        log.write_bytes(b" line\nnext");
        assert_eq!(log.pending.lock().expect("lock").bytes, b"next");
        log.write_bytes(b"\n");
        log.write_bytes(&vec![b'x'; MAX_GUEST_LOG_LINE_BYTES * 3]);
        let pending = log.pending.lock().expect("lock");
        assert!(pending.bytes.len() < MAX_GUEST_LOG_LINE_BYTES);
    }
}
