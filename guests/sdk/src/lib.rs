//! Write an iroh-raft state machine guest as a plain Rust type.
//!
//! An iroh-raft node replicates a log of opaque commands and feeds every
//! committed command, in order, to a WebAssembly component that exports the
//! `state-machine` interface of `wit/state-machine.wit`. This crate hides the
//! component-model plumbing: implement [`StateMachine`] for a type that holds
//! your state, call [`export_state_machine!`] once, and build the crate as a
//! `cdylib` for `wasm32-wasip2`. The result is a component the host can load.
//!
//! # A complete guest
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "echo-count"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! iroh-raft-guest = { path = "../sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use iroh_raft_guest::{EntryMeta, StateMachine};
//!
//! /// Counts the commands it has applied and echoes each one back.
//! #[derive(Default)]
//! struct EchoCount {
//!     applied: u64,
//! }
//!
//! impl StateMachine for EchoCount {
//!     const NAME: &'static str = "echo-count";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
//!         // Validate before mutating: an `Err` must leave the state untouched.
//!         let applied = self.applied.checked_add(1).ok_or("counter overflow")?;
//!         self.applied = applied;
//!         Ok(command.to_vec())
//!     }
//!
//!     fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
//!         Ok(self.applied.to_string().into_bytes())
//!     }
//!
//!     fn snapshot(&self) -> Result<Vec<u8>, String> {
//!         Ok(self.applied.to_le_bytes().to_vec())
//!     }
//!
//!     fn restore(snapshot: &[u8]) -> Result<Self, String> {
//!         let bytes = <[u8; 8]>::try_from(snapshot)
//!             .map_err(|_| format!("expected 8 bytes, got {}", snapshot.len()))?;
//!         Ok(Self { applied: u64::from_le_bytes(bytes) })
//!     }
//! }
//!
//! iroh_raft_guest::export_state_machine!(EchoCount);
//! ```
//!
//! Build it with
//! `cargo build --target wasm32-wasip2 --release`; the component is
//! `target/wasm32-wasip2/release/echo_count.wasm`.
//!
//! # How a call flows
//!
//! ```text
//!  host (wasmtime)          this crate                     your type
//!  ───────────────          ──────────                     ─────────
//!  apply(meta, cmd) ──▶ generated export ──▶ Slot<T> ──▶ T::apply(&mut state, meta, &cmd)
//!  query(req)       ──▶ generated export ──▶ Slot<T> ──▶ T::query(&state, &req)
//!  snapshot()       ──▶ generated export ──▶ Slot<T> ──▶ T::snapshot(&state)
//!  restore(bytes)   ──▶ generated export ──▶ Slot<T> ──▶ T::restore(&bytes), swap in on Ok
//! ```
//!
//! The state lives in one slot per component instance, created with
//! `T::default()` on first use. A panic anywhere in a guest aborts, which in
//! WebAssembly is a trap: the host then throws the instance away and rebuilds
//! it, so a guest never has to clean up after a panic.
//!
//! # Rules a guest must follow
//!
//! The host replays the same commands on every replica and compares snapshots
//! by hash, so a guest must be deterministic (see the WIT file for the full
//! contract):
//!
//! - results and snapshots depend only on the state and the arguments;
//! - iterate ordered collections (`BTreeMap`, `Vec`), never `HashMap`;
//! - `apply` returning `Err` leaves the state exactly as it was: validate
//!   first, mutate last.

/// The wit-bindgen output for `world guest`; [`export_state_machine!`] needs
/// to reach it from the guest crate, hence `pub`.
#[doc(hidden)]
// The generated bindings are the only place this crate needs `unsafe`
// (raw canonical-ABI glue written by wit-bindgen).
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        // A copy of the repository's WIT (the contract shared with the
        // host) inside the crate, so the published crate is self-contained.
        path: "wit",
        world: "guest",
        // Guest crates export through `export_state_machine!` without depending
        // on wit-bindgen themselves.
        pub_export_macro: true,
        export_macro_name: "export_guest_world",
        additional_derives: [PartialEq, Eq],
    });
}

mod slot;

use bindings::exports::iroh_raft::state_machine::state_machine as wit;

pub use slot::Slot;
pub use wit::{EntryMeta, GuestInfo};

/// A replicated state machine, as seen by a guest author.
///
/// The SDK owns the single instance of `Self` inside the component: it is
/// created with [`Default`] the first time the host calls in, mutated by
/// [`apply`](Self::apply), and replaced wholesale by
/// [`restore`](Self::restore).
pub trait StateMachine: Default + 'static {
    /// A short name for status pages, e.g. `"counter"`.
    const NAME: &'static str;
    /// The guest's version, e.g. `"1.0.0"`.
    const VERSION: &'static str;

    /// Apply one committed command and return its result.
    ///
    /// Called exactly once per committed log entry, in log order, on every
    /// replica. Returning `Err` is a normal, replicated result and must leave
    /// `self` exactly as it was before the call.
    fn apply(&mut self, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String>;

    /// Answer a read-only request. Called any number of times, or never.
    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String>;

    /// Serialize the complete state. Equal states must give equal bytes.
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Rebuild a state from bytes produced by [`snapshot`](Self::snapshot)
    /// (of this or an earlier version of the guest).
    ///
    /// Must reject malformed input with `Err`, never panic on it. The SDK
    /// replaces the current state only when this returns `Ok`.
    fn restore(snapshot: &[u8]) -> Result<Self, String>;
}

/// Make `$ty` (a type implementing [`StateMachine`]) the component's
/// `state-machine` export.
///
/// Invoke it exactly once, at the top level of the guest crate:
///
/// ```text
/// iroh_raft_guest::export_state_machine!(MyStateMachine);
/// ```
#[macro_export]
macro_rules! export_state_machine {
    ($ty:ty) => {
        // The generated exports are `unsafe extern "C"` functions; keep the
        // allowance scoped to them so guest crates may deny `unsafe_code`.
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                // Instances are single-threaded, so "thread-local" is simply
                // "the instance's", without any locking.
                static STATE: $crate::Slot<$ty> = const { $crate::Slot::new() };
            }

            struct IrohRaftGuestExport;

            impl $crate::__private::Guest for IrohRaftGuestExport {
                fn info() -> $crate::GuestInfo {
                    $crate::__private::info::<$ty>()
                }

                fn apply(
                    meta: $crate::EntryMeta,
                    command: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    STATE.with(|slot| slot.apply(meta, &command))
                }

                fn query(
                    request: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    STATE.with(|slot| slot.query(&request))
                }

                fn snapshot() -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    STATE.with(|slot| slot.snapshot())
                }

                fn restore(
                    snapshot: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    STATE.with(|slot| slot.restore(&snapshot))
                }
            }

            $crate::bindings::export_guest_world!(
                IrohRaftGuestExport with_types_in $crate::bindings
            );
        };
    };
}

/// Implementation details of [`export_state_machine!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wit::Guest;

    use crate::{GuestInfo, StateMachine};

    /// The `info` export: constant for a given guest type.
    pub fn info<T: StateMachine>() -> GuestInfo {
        GuestInfo {
            name: T::NAME.to_owned(),
            version: T::VERSION.to_owned(),
        }
    }
}

/// The name of the custom section [`guest_examples!`] writes; the host reads
/// it to suggest commands (its start banner, `guest.examples` in status).
pub const EXAMPLES_SECTION: &str = "iroh-raft:examples";

/// Declare commands that work on this guest, one `propose CMD` or `query
/// REQ` per string; a node prints them in its start banner. They are
/// stored in the custom section [`EXAMPLES_SECTION`] of the component (no
/// code runs, and hosts that do not know the section ignore it). At most
/// 4 KiB and 16 lines are read.
///
/// ```text
/// iroh_raft_guest::guest_examples!("propose add 5", "query get");
/// ```
#[macro_export]
macro_rules! guest_examples {
    ($($line:literal),+ $(,)?) => {
        const _: () = {
            const TEXT: &str = ::core::concat!($($line, "\n"),+);
            const LEN: usize = TEXT.len();
            // A `link_section` static must be an array of bytes (unused
            // natively, where the static is not compiled).
            #[allow(dead_code)]
            const BYTES: [u8; LEN] = {
                let text = TEXT.as_bytes();
                let mut bytes = [0u8; LEN];
                let mut at = 0;
                while at < LEN {
                    bytes[at] = text[at];
                    at += 1;
                }
                bytes
            };
            // `used`: kept through LTO although nothing reads it; only on
            // wasm, where a link section is a custom section.
            #[cfg(target_family = "wasm")]
            #[used]
            #[allow(unsafe_code)]
            #[unsafe(link_section = "iroh-raft:examples")]
            static EXAMPLES: [u8; LEN] = BYTES;
        };
    };
}
