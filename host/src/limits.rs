//! Every limit of a node in one place: sizes, counts, queue capacities,
//! timeouts and the defaults of the limits an operator may set.
//!
//! Bounding everything is what keeps a node alive under bad input and
//! overload (TigerBeetle's rule: put a limit on everything), and the limits
//! depend on each other: a guest's result must fit a frame, a frame must
//! fit a client response, a command must fit an entry. Those dependencies
//! are checked at compile time at the end of this file, so changing one
//! limit without the others fails the build instead of a request.
//!
//! Units are the last part of each name (`_BYTES`, `_MS`, `_TICKS`,
//! `_ENTRIES`); `Duration`s are timeouts or intervals.

use std::time::Duration;

// ── Consensus and the node loop ────────────────────────────────────────

/// One Raft tick. Every consensus timeout is a whole number of ticks, so
/// the tick is also their granularity: 50 ms lets the election timeout be
/// drawn from several distinct values (two survivors rarely time out on
/// the same tick and split the vote), at a negligible cost per tick.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);
/// Ticks without a heartbeat before a follower starts an election (700 ms):
/// the shortest election timeout, and how long a leader may go without
/// hearing from a quorum before it steps down (check-quorum). A leader
/// killed by the kernel is replaced within about this plus one vote round
/// trip. At 500 ms, a 3-node cluster under full write load on a 2-core
/// machine lost its leader to check-quorum during the log compaction after
/// a snapshot (followers' answers were held up ~550 ms; BENCHMARKS.md,
/// "Issue 16"); 700 ms keeps the median failover under a second (etcd's
/// default is 1 s, for networks with longer round trips).
pub const ELECTION_TICKS: usize = 14;
/// Upper bound (exclusive) of the randomized election timeout, in ticks
/// (1 s): raft-rs draws each follower's timeout from
/// `[ELECTION_TICKS, MAX_ELECTION_TICKS)`. Its default, twice the minimum,
/// makes the median failover half an election timeout slower; six distinct
/// values still separate two candidates most of the time. When two
/// survivors pass pre-vote within a round trip of each other they still
/// split the vote (about one kill in twenty in `cargo bench --bench
/// failover`; BENCHMARKS.md); see [`CANDIDATE_TICKS_PER_TICK`].
pub const MAX_ELECTION_TICKS: usize = 20;
/// Election-clock ticks counted per tick by a node that campaigned in its
/// term and knows no leader (a candidate, or one that lost a split vote):
/// the next election comes in 350-500 ms, not another 700-1000 ms, so a write
/// in flight when the leader died still commits within 1.5 s. A vote round
/// trip (two messages and an fsync of the vote) must stay well under the
/// shorter timeout, as a heartbeat round trip must under the election
/// timeout itself.
pub const CANDIDATE_TICKS_PER_TICK: usize = 2;
/// Ticks between leader heartbeats (100 ms): seven per election timeout.
pub const HEARTBEAT_TICKS: usize = 2;
/// Largest append message raft-rs builds.
pub const MAX_RAFT_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Append messages in flight per follower.
pub const MAX_INFLIGHT_MESSAGES: usize = 256;
/// Committed entries handed out per Ready, so replay after a restart streams.
pub const MAX_COMMITTED_BYTES_PER_READY: u64 = 16 * 1024 * 1024;
/// Messages the node's inbox holds before senders see `Overloaded`.
pub const NODE_INBOX_CAPACITY: usize = 4096;
/// Most inbox messages handled before one round of Ready handling: this is
/// what batches many proposals into one fsync.
pub const MAX_MESSAGES_PER_ROUND: usize = 1024;
/// Batches of proposals a leader keeps uncommitted before it holds new
/// ones for the next round (see `NodeCore::end_round_proposals`): under
/// load a commit clocks out the next batch. One in flight made the fewest
/// rounds and the most writes per CPU second here (at 64 clients over
/// HTTP: 72-78 µs of CPU per write against 93-99 with two; BENCHMARKS.md).
/// `MAX_PROPOSAL_HOLD` bounds what it costs on a slow network.
pub const MAX_PROPOSAL_BATCHES_IN_FLIGHT: usize = 1;
/// Most proposals a leader holds for a later round; more go out at once.
pub const MAX_HELD_PROPOSALS: usize = 512;
/// Longest a leader holds proposals waiting for a commit before it sends
/// them anyway (a follower that stopped answering, a slow disk).
pub const MAX_PROPOSAL_HOLD: Duration = Duration::from_millis(2);
/// Longest a leader waits for a proposal to carry a new commit index to
/// its followers before it sends the index in an append of its own (see
/// `node::core::commit_notice`). A closed-loop client's next write comes
/// well within it; it is also the most it adds to a follower's apply lag.
pub const COMMIT_NOTICE_DELAY: Duration = Duration::from_millis(1);
/// How long a leader's appends to a follower that the next commit does not
/// wait for gather before they leave, as one frame (`node::core::pace`),
/// and so the most such a follower lags. At one client on this 2-core
/// machine 2 ms took CPU per write down ~20% and the p50 ~8%; 10 ms took
/// off another ~10% of the p50 (that follower syncs once per ~15 writes
/// instead of ~3); 25 ms gained nothing more (BENCHMARKS.md, step 33). It
/// stays well inside a heartbeat interval.
pub const LAZY_APPEND_DELAY: Duration = Duration::from_millis(10);
/// A follower that forwarded a client's write or asked for a read index
/// within this long gets its appends at once: its clients wait for its own
/// log, not only for the commit.
pub const CLIENT_PEER_WINDOW: Duration = Duration::from_secs(1);
/// Batches of committed entries that may wait for the applier.
pub const APPLY_QUEUE_CAPACITY: usize = 256;
/// How long a follower that serves no clients lets its committed entries
/// wait before it applies them, as one batch (`node::apply_hold`): at one
/// client it saved that follower a thread wake-up and ~30 µs of CPU per
/// write, and ~0.02 ms of the write's latency on this 2-core machine
/// (BENCHMARKS.md, step 33). It is the most it adds to such a follower's
/// apply lag; the same as [`LAZY_APPEND_DELAY`].
pub const FOLLOWER_APPLY_DELAY: Duration = LAZY_APPEND_DELAY;
/// Most apply jobs (each the entries of one Ready) a follower holds back
/// (see [`FOLLOWER_APPLY_DELAY`]); more go to the applier at once.
pub const MAX_HELD_APPLY_JOBS: usize = 64;
/// How long the applier may stay on one entry before `/health` reports it
/// stalled (a guest looping through a large fuel budget, a huge migration).
pub const APPLIER_STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// How far a node's applied index may trail the commit index it knows for
/// `GET /ready` to say `ready`: a node further behind (catching up after
/// a restart, or a replica whose applier is slower than the log) answers
/// `503 catching_up`, so a load balancer sends reads elsewhere meanwhile.
/// Four apply queues' worth: a node under steady load stays well inside
/// it, one replaying thousands of entries does not.
pub const READY_MAX_APPLY_LAG_ENTRIES: u64 = 4 * APPLY_QUEUE_CAPACITY as u64;
/// Queries of a store-backed guest queued or waiting for their read index
/// on the query thread; past it a query is answered `overloaded`.
pub const QUERY_QUEUE_CAPACITY: usize = 16_384;
/// Results of the most recent entries kept for `GET /v1/results` (which
/// component applied each entry, and a hash of its result).
pub const RECENT_RESULTS_CAPACITY: usize = 10_000;

// ── Client requests ────────────────────────────────────────────────────

/// Largest command a client may propose. Larger commands are refused before
/// they reach the log; sled keeps every entry inline below this size.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// How long a follower that knows no leader waits for one before it
/// answers `not_leader` (a few election timeouts: an election that split
/// the vote and the next one).
pub const LEADER_WAIT: Duration = Duration::from_secs(3);
/// Rounds [`NodeHandle::propose`](crate::node::NodeHandle::propose) makes on
/// a follower: each is one forward to a leader or one wait (up to
/// [`LEADER_WAIT`]) for a leader to be known. Enough to wait for an
/// election, forward, find the leader dead, wait for the next election and
/// forward again, and once more; a cluster whose leaders keep failing that
/// often gets `not_leader` back.
pub const MAX_PROPOSE_ROUNDS: usize = 6;
/// How long a follower waits for its own log to settle a forwarded
/// command whose leader failed before answering (see
/// [`crate::node::NodeHandle::propose`]): the next leader's first entry
/// settles it, so this covers a few elections; past it the client gets
/// `outcome_unknown`.
pub const FORWARD_SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long API calls wait for the node by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a linearizable read may wait for its read index before the
/// client gets `timeout` (no leader, or the leader cannot reach a quorum).
pub const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a leader serves `lease` reads after a quorum confirmed its
/// leadership. Followers refuse to elect anyone for one election timeout
/// (`ELECTION_TICKS` ticks, 700 ms) after they last heard from the leader,
/// so a lease of at most 80% of that is safe while clocks run at about the
/// same rate (drift under 20%; checked at the end of this file).
pub const LEASE_DURATION: Duration = Duration::from_millis(400);

// ── Membership ─────────────────────────────────────────────────────────

/// A learner is promoted once it is within this many entries of the
/// leader's log.
pub const PROMOTION_LAG_ENTRIES: u64 = 100;
/// How long a new learner may take to catch up before its promotion is
/// abandoned (it stays a learner; `add-node` again retries).
pub const PROMOTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Most direct addresses kept per peer.
pub const MAX_PEER_ADDRS: usize = 16;
/// How long a joining node waits between asking for the membership.
pub const JOIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

// ── State checks ───────────────────────────────────────────────────────

/// Committed entries between state checks, by default (0 turns them off).
/// Each check fingerprints the whole state on every replica (a full
/// serialization for a guest that keeps its state in memory), so it comes
/// as rarely as snapshots do (BENCHMARKS.md, "Issue 16").
pub const DEFAULT_STATE_CHECK_EVERY: u64 = 100_000;
/// Check rounds remembered (hashes of older ones are dropped).
pub const KEPT_CHECK_ROUNDS: usize = 16;

// ── Snapshots ──────────────────────────────────────────────────────────

/// Take a snapshot after this many applied entries by default (etcd's
/// `--snapshot-count`). Each snapshot serializes the state (35-80 ms for
/// 10 MB of kv state, on the applier) and is followed by the removal of
/// the log behind it. With the log in chunks (`storage/chunks.rs`) that
/// removal is a few hundred sled keys per 10,000 entries, not 10,000, so
/// it no longer argues for small, frequent snapshots (it did at 10,000:
/// BENCHMARKS.md, "Issue 16"). A restart replays at most this many.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 100_000;
/// Or after this many bytes of log by default, whichever comes first.
pub const DEFAULT_SNAPSHOT_EVERY_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// Entries kept in the log behind a snapshot by default, so a follower that
/// is only a little behind catches up from the log, not a snapshot.
pub const DEFAULT_COMPACTION_KEEP_ENTRIES: u64 = 1_000;
/// Above this size of the last snapshot file, a snapshot the policy calls
/// for waits until the log since the last one holds as many bytes: taking a
/// snapshot of a large (store-backed) state then costs at most as much as
/// writing its log did, and the log holds up to about one state's worth.
pub const SNAPSHOT_AMORTIZE_ABOVE_BYTES: u64 = 64 * 1024 * 1024;
/// The most log bytes a large state waits for before its next snapshot:
/// a restart reads the whole log behind the last snapshot (and memory
/// grows with it), so it stays bounded even at GiBs of state.
pub const SNAPSHOT_AMORTIZE_MAX_LOG_BYTES: u64 = 256 * 1024 * 1024;
/// Largest header accepted when reading a file (it holds the membership).
pub const MAX_SNAPSHOT_HEADER_BYTES: u32 = 4 * 1024 * 1024;
/// Largest snapshot file a node accepts from a peer or a backup.
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 8 * 1024 * 1024 * 1024;

// ── Guests ─────────────────────────────────────────────────────────────

/// Fuel for one `apply`. Roughly one unit per wasm instruction: 1e9 is a few
/// hundred milliseconds of guest work, far more than any sane command needs.
pub const DEFAULT_APPLY_FUEL: u64 = 1_000_000_000;
/// Fuel for one `query`.
pub const DEFAULT_QUERY_FUEL: u64 = 1_000_000_000;
/// Fuel for `snapshot`, `restore`, `info` and instantiation: they walk the
/// whole state, so they get more.
pub const DEFAULT_MAINTENANCE_FUEL: u64 = 20_000_000_000;
/// Total linear memory a guest instance may use (all its memories together).
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;
/// The most fuel a node or an upgrade may give one `apply` or `query`
/// (about a minute of guest work here): a looping guest with more would
/// hold every replica for hours, and it is replicated, so a restart does
/// not help.
pub const MAX_CALL_FUEL: u64 = 2_000_000_000_000;
/// The largest memory cap a node or an upgrade may give a guest: 4 GiB,
/// all a 32-bit WebAssembly memory can address.
pub const MAX_MEMORY_LIMIT_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Table elements per table; far above what real guests use.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Core instances, tables and memories per component instance.
pub const MAX_INSTANCES: usize = 64;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;
/// Native stack the guest may use. Deep recursion traps at the same depth on
/// every replica running the same host build on the same architecture.
pub const DEFAULT_MAX_WASM_STACK_BYTES: usize = 1024 * 1024;
/// Largest component file the host loads.
pub const MAX_COMPONENT_BYTES: u64 = 128 * 1024 * 1024;
/// Longest line of guest stdout/stderr forwarded to the log; longer lines are
/// truncated so one write cannot make the host buffer without bound.
pub const MAX_GUEST_LOG_LINE_BYTES: usize = 4 * 1024;
/// Largest result of one `apply` or `query` (the bytes of an `ok`). A
/// larger one is the failure [`crate::wasm::GuestFailure::ResultTooLarge`] on
/// every replica, rolled back like a trap. Without it a result's fate
/// depended on the path it took: a follower forwarding a proposal gets the
/// leader's answer in one frame of at most `MAX_FRAME_BYTES`, and a client
/// reads at most `MAX_RESPONSE_BYTES` of JSON, which holds a result twice
/// (text and base64) and escapes a control character in six bytes.
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// Largest message of an `err` from `apply` or `query`; a longer one is
/// [`crate::wasm::GuestFailure::ResultTooLarge`] too. Smaller than results
/// because a forwarded failure travels as JSON, each byte escaped in up to
/// six, inside one frame; twice the largest command, so a message that
/// quotes the command it refuses still fits.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Replay tail size (bytes of commands) below which no checkpoint is taken.
pub const CHECKPOINT_MIN_TAIL_BYTES: usize = 4 * 1024 * 1024;
/// Most entries replayed after a trap before a checkpoint is forced, for
/// a state of up to [`CHECKPOINT_STATE_BYTES_PER_TAIL_ENTRY`] times as many
/// bytes.
pub const CHECKPOINT_MAX_TAIL_ENTRIES: usize = 10_000;
/// A larger state waits for one entry per this many bytes of it: a
/// checkpoint serializes the whole state and stalls the applier meanwhile
/// (~35 ms for 10 MB of kv state), so it is amortized over at most this
/// many bytes of serialization per entry. Every 10,000 entries, a 10 MB
/// state cost 1 KB per write and most of the cluster's tail latency under
/// load (BENCHMARKS.md, "Issue 16"); a replay after a trap stays under a
/// second (a few µs per entry).
pub const CHECKPOINT_STATE_BYTES_PER_TAIL_ENTRY: usize = 100;
/// While checkpoints fail (a state that no longer fits twice in the guest's
/// memory), the commands since the last one are all a trap can be rolled
/// back with, and the node's snapshot fails too, so the log is not
/// compacted. A node refuses new commands once that tail holds this many
/// bytes, or the guest's memory cap if that is smaller: more commands than
/// the guest's whole memory, kept in the host and replayed after every trap
/// and restart, cost more than carrying on earns (see
/// [`crate::wasm::StateMachine::stalled`]).
pub const MAX_UNCHECKPOINTED_TAIL_BYTES: usize = 256 * 1024 * 1024;
/// ... or this many entries (a replay pays per call too: a few seconds).
pub const MAX_UNCHECKPOINTED_TAIL_ENTRIES: usize = 1_000_000;

// ── The guest store (store-backed guests, WIT 0.2.0) ───────────────────

/// Longest key a store-backed guest may write (a longer one is the
/// replicated error `key-too-large`).
pub const MAX_STORE_KEY_BYTES: u32 = 4 * 1024;
/// Largest value a store-backed guest may write: the largest command, so
/// a value a client sends always fits.
pub const MAX_STORE_VALUE_BYTES: u32 = 1024 * 1024;
/// Bytes of keys and values one `apply` or `migrate` may write; a write
/// past it is refused with `write-set-too-large`. Bounds the memory a
/// transaction holds before it commits.
pub const MAX_STORE_WRITE_SET_BYTES: u64 = 64 * 1024 * 1024;
/// Most pairs or keys one `scan` call returns (a larger `limit` is cut to
/// it); a guest pages through more.
pub const MAX_STORE_SCAN_ITEMS: u32 = 10_000;
/// Most bytes of keys and values one scan call returns (it stops before
/// the pair that would cross it); at least one pair of the largest size.
pub const MAX_STORE_SCAN_BYTES: u64 = 4 * 1024 * 1024;
/// Fuel charged for every store call: a sled lookup costs about as much as
/// a few thousand wasm instructions.
pub const STORE_FUEL_PER_CALL: u64 = 5_000;
/// Fuel charged per byte of keys and values passed to or returned by a
/// store call, so a guest cannot move unbounded data for free.
pub const STORE_FUEL_PER_BYTE: u64 = 2;
/// Recent commands a store-backed guest's machine keeps for dry runs (by
/// count and by bytes): a dry run replays them on a copy-on-write view.
pub const STORE_RECENT_COMMANDS: usize = 1_000;
pub const STORE_RECENT_COMMAND_BYTES: usize = 16 * 1024 * 1024;
/// Bytes written to the guest store between two background flushes: sled
/// holds written pages in memory until a flush, so this bounds the
/// memory a fast writer makes it use.
pub const STORE_FLUSH_EVERY_BYTES: u64 = 16 * 1024 * 1024;
/// Pairs a store export reads per batch; commits wait for at most one
/// batch (about a millisecond), so a snapshot never pauses applies for long.
pub const STORE_EXPORT_BATCH_PAIRS: usize = 1_000;
/// Bytes a store export reads per batch (it stops after the pair that
/// crosses it), for the same reason with large values.
pub const STORE_EXPORT_BATCH_BYTES: usize = 1024 * 1024;
/// A snapshot file being written is synced every this many bytes, so its
/// final fsync never has GiBs of dirty pages to push at once (which stalls
/// the Raft log's fsyncs on the same disk).
pub const SNAPSHOT_SYNC_EVERY_BYTES: u64 = 16 * 1024 * 1024;
/// Records per sled batch when a snapshot is loaded into the store: bounds
/// the memory an install holds at once.
pub const STORE_IMPORT_BATCH_RECORDS: usize = 4_096;

// Watches (`GET /v1/watch`) and the change history behind them.

/// Applied entries whose changes a store-backed guest's node keeps for
/// watchers to resume from (`--watch-history`); a watcher asking for older
/// ones is answered `compacted`. About 100 bytes plus the values written
/// per entry, kept in the guest store beside the state.
pub const DEFAULT_WATCH_HISTORY_ENTRIES: u64 = 100_000;
/// History records removed per store commit at least, past the retention
/// (and two per record added): the history keeps pace with any write rate
/// and shrinks back after the retention is lowered.
pub const HISTORY_PRUNE_MIN_PER_COMMIT: usize = 16;
/// Store commits (batches of entries) the live feed buffers for each
/// watcher; one further behind reads the history instead.
pub const WATCH_FEED_CAPACITY: usize = 1_024;
/// Entries of history one read gives a watcher catching up.
pub const WATCH_PAGE_ENTRIES: usize = 256;
/// Bytes of history one read gives a watcher catching up (about).
pub const WATCH_PAGE_BYTES: usize = 1024 * 1024;
/// An idle watch is sent a `progress` line this often: it tells the
/// client how far it may resume from and keeps proxies from closing it.
pub const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Lines buffered between a watch and its connection; a client that
/// reads slower than changes arrive falls back to the history.
pub const WATCH_STREAM_BUFFER_LINES: usize = 64;
/// Watches a node serves at once (`--max-watchers`); one more is answered
/// `503 too_many_watchers`. Each holds one of the API's connections
/// (`API_MAX_CONNECTIONS`) for as long as it runs, so the default leaves a
/// quarter of them to other requests; raise both to serve more watchers.
pub const DEFAULT_MAX_WATCHERS: usize = 192;

/// How long the leader waits before calling a guest again for the same
/// due time of its timer (a guest that did not move its timer on the last
/// call): bounds the empty entries a misbehaving guest causes.
pub const GUEST_TIMER_RETRY_INTERVAL: Duration = Duration::from_secs(1);

// ── Guest checks ───────────────────────────────────────────────────────

/// Most steps in a script: a check runs the script four times with a
/// snapshot around every step, so this bounds its running time.
pub const MAX_SCRIPT_STEPS: usize = 10_000;
/// Largest script file the checker reads.
pub const MAX_SCRIPT_BYTES: u64 = 16 * 1024 * 1024;
/// Largest command or request in a script: the node's `MAX_COMMAND_BYTES`,
/// since a guest never sees a larger command.
pub const MAX_SCRIPT_COMMAND_BYTES: usize = 1024 * 1024;

// ── Upgrades ───────────────────────────────────────────────────────────

/// How long validating (compiling) a candidate may take on the node that
/// proposes it. Enforced only there, before proposing: a time limit at
/// apply time would differ between machines and so break determinism.
pub const DEFAULT_COMPILE_BUDGET: Duration = Duration::from_secs(120);
/// Records kept in the history; the oldest go first (the active one is
/// kept separately, so it is never lost).
pub const MAX_HISTORY_RECORDS: usize = 1_000;
/// Entries a dry run compares by default.
pub const DEFAULT_DRY_RUN_ENTRIES: usize = 1_000;
/// Differences a dry run lists (all are counted).
pub const MAX_DRY_RUN_DIFFERENCES: usize = 50;
/// Longest command text shown in a difference.
pub const MAX_SHOWN_COMMAND_CHARS: usize = 200;
/// Pause between rounds of asking every peer.
pub const FETCH_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Longest one download from one peer may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest the prepare round before an upgrade waits for a majority of the
/// members to fetch and compile the component (a large guest compiles for
/// tens of seconds on a small machine).
pub const PREPARE_ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the prepare round still waits for the other members once a
/// majority is ready.
pub const PREPARE_STRAGGLER_GRACE: Duration = Duration::from_secs(5);

// ── Storage ────────────────────────────────────────────────────────────

/// How long `open` waits for sled's file lock. A store closed in this same
/// process releases the lock only when sled's background flusher thread
/// exits, a moment after the last handle is dropped (an in-process restart);
/// another process holding the lock still fails after this wait.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// The Raft log is stored in chunks of consecutive entries, one sled value
/// each (`storage/chunks.rs`); a chunk is closed once it holds this many
/// bytes (an entry larger than this gets a chunk of its own). Small enough
/// that a sled leaf page of chunks (up to 17 values) stays under sled's
/// ~128 KiB threshold for writing a page out of line as a blob file, which
/// costs a file and an fsync of its own.
pub const LOG_CHUNK_TARGET_BYTES: usize = 4 * 1024;
/// Most of the newest log entries a store keeps in memory as appended, to
/// answer Raft's reads of what it just stored (sending it, applying it)
/// without a sled scan and a decode per entry (`storage/tail.rs`). Enough
/// for many rounds of a loaded leader; an older read goes to sled.
pub const LOG_TAIL_CACHE_ENTRIES: usize = 4096;
/// Most bytes of entries (encoded) the in-memory log tail keeps; it always
/// keeps the newest entry.
pub const LOG_TAIL_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Log entries removed per sled batch by `SledStorage::compact` (a
/// compaction in one call: tools and tests). With a sled key per entry a
/// batch of 4,096 entries of 1 KiB took ~19 ms on tmpfs and 1,024 ~2.8 ms.
pub const COMPACTION_BATCH_ENTRIES: u64 = 1_024;
/// Stored chunks of the log the node loop removes per compaction step
/// behind a snapshot (`SledStorage::compact_whole_chunks`), one sled
/// removal each (~20-50 µs). A step never stalls the loop for long: one
/// removal of everything behind a 256 MiB state held it ~2 s, long enough
/// for followers to start elections. The appends of a light load (one
/// entry each) make a chunk per entry; under load a chunk holds a round's
/// entries, up to 4 KiB (`LOG_CHUNK_TARGET_BYTES`).
pub const COMPACTION_BATCH_CHUNKS: usize = 32;
/// Under load (a loop that always has messages or reports waiting),
/// compaction takes one step per this interval; an idle loop takes them
/// back to back, yielding to the runtime between steps. Run back to back
/// under load, the steps behind a 100,000-entry snapshot held every round
/// of the loop up, and the loop never gave its thread back to the runtime
/// (the API's tasks on it waited): ~0.1-0.2 s of p99.9 at 64 clients.
pub const COMPACTION_STEP_INTERVAL_UNDER_LOAD: Duration = Duration::from_millis(20);

/// The log store's durable mark (`storage/durable_mark.rs`) is written at
/// most this often: each write is an `fdatasync` of its own, and one per
/// durable log write (thousands per second under load) competed with the
/// log's own syncs for the disk. The mark is a lower bound of what the store
/// made durable, so one that lags by this much refuses a damaged store all
/// the same, unless the damage only took away the last few milliseconds.
pub const DURABLE_MARK_INTERVAL: Duration = Duration::from_millis(10);

/// Two of a follower's syncs on its own loop (`node::persist::SyncPlace`)
/// within [`SLOW_SYNC_BACKOFF`] of each other that took longer than this
/// send its later syncs to the persistence thread for [`SLOW_SYNC_BACKOFF`]:
/// a slow disk must not hold up the loop's heartbeats and reads. Ten times
/// a sync on this project's benchmark disk (where the one sync a journal
/// commit meets every 5 s takes 4-7 ms).
pub const MAX_SYNC_ON_LOOP: Duration = Duration::from_millis(2);
/// The most log entries a follower's round may stage and still be made
/// durable on its loop (`node::persist::SyncPlace`). A larger round means
/// clients are busy, and a sync on the loop holds up the node's other
/// tasks (its API, QUIC) for its duration when the node runs one tokio
/// worker (`--worker-threads`, the default on 2 CPUs). One client's write
/// is one entry a round; 64 clients' are ~20.
pub const MAX_ENTRIES_SYNCED_ON_LOOP: usize = 4;
/// How long a follower syncs on its persistence thread only, after two
/// syncs on its loop this close together took longer than
/// [`MAX_SYNC_ON_LOOP`].
pub const SLOW_SYNC_BACKOFF: Duration = Duration::from_secs(1);
/// sled's page cache for the Raft log (its default, 1 GiB, is far more
/// than a compacted log needs).
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// sled's flush timer for the Raft log (its default; the guest store has
/// none: it is flushed every `STORE_FLUSH_EVERY_BYTES` instead).
pub const SLED_FLUSH_EVERY_MS: u64 = 500;
/// sled's page cache for the guest store. Its default (1 GiB) made a node
/// holding a large store-backed state resident at over a GiB; pages beyond
/// this are read from the file (the OS page cache still helps).
pub const SLED_STORE_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// How often the lock is tried again while waiting.
pub const LOCK_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

// ── Transport ──────────────────────────────────────────────────────────

/// Hard maximum size of one frame's payload (the bytes after the length
/// prefix), in bytes. Large enough for a batch of appends or a snapshot
/// chunk; small enough that one frame per stream in memory is harmless. No
/// frame larger than this is ever encoded, read or decoded, whatever a caller
/// passes as its own limit.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest piece of a component sent in one `ComponentChunk` frame (well
/// under the frame limit).
pub const COMPONENT_CHUNK_BYTES: usize = 1024 * 1024;
/// Most Raft messages accepted in one `RaftMessage` frame (a Ready for one
/// peer holds far fewer); checked before any of them is parsed.
pub const MAX_BATCH_MESSAGES: usize = 65_536;
/// How often an idle connection is probed, so a dead peer is noticed.
pub const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// A connection silent for this long is closed; the next send redials. Short,
/// because a restarted peer must be reached again quickly (a Raft election
/// takes about a second).
pub const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bidirectional QUIC streams a peer may have open at once on one
/// connection: the two Raft sender streams, one per proposal it forwards,
/// snapshot and component transfers. Past it the peer's `open_bi` waits for
/// stream credit; nothing fails. (QUIC's default is 100, which queued
/// forwarded proposals beyond 100 concurrent clients.)
pub const MAX_PEER_STREAMS: u32 = 256;
/// Bytes a peer may have in flight to this node over one connection, over
/// all its streams (QUIC's connection-level receive window; unlimited by
/// default, so 100 streams could buffer 125 MB). Two of the largest frames
/// fit.
pub const PEER_RECEIVE_WINDOW_BYTES: u32 = 4 * MAX_FRAME_BYTES as u32;
/// Ack-eliciting QUIC packets a peer may receive from this node before it
/// must acknowledge them at once (QUIC's ACK frequency extension; the
/// default is 1, an ACK for every other packet). A Raft round trip is one
/// packet each way on each of the pair's two connections, so with the
/// default each write cost an ACK-only datagram each way, and each woke a
/// node that had just gone idle. Out-of-order packets are still
/// acknowledged at once (the extension's reordering threshold, 2), so loss
/// is noticed as fast as before, and a silent sender is acknowledged
/// within the peer's `max_ack_delay` (25 ms). At one client on this
/// 2-core machine: ~25 µs of CPU per write less on each of the leader and
/// its follower (BENCHMARKS.md, step 33).
pub const QUIC_ACK_ELICITING_THRESHOLD: u32 = 16;
/// Concurrent `iroh-raft/0` connections accepted from one peer. A node
/// dials each peer once (and again after a failure, while the broken one
/// times out); more is a misbehaving or hostile member, refused with
/// `CLOSE_TOO_MANY_CONNECTIONS`.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// How long a peer may take to answer one piece of a component fetch.
pub const COMPONENT_FETCH_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to fetch and compile a component before an
/// upgrade (a large guest compiles for tens of seconds on a small machine).
pub const COMPONENT_PREPARE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a forwarded proposal's bytes may stay unacknowledged by the
/// leader's QUIC stack, once this node no longer names that node its
/// leader, before the forward counts as not delivered and goes to the new
/// leader. A live peer acknowledges within a round trip plus its ack delay
/// (25 ms), a retransmission or two included; a dead one never does. Short,
/// because a client forwarding an activation waits on it after every
/// leader crash (a forwarded command does not: its origin settles it from
/// its own log, see [`crate::node::NodeHandle::propose`]).
pub const FORWARD_ACK_PATIENCE: Duration = Duration::from_millis(500);
/// Most proposals a follower forwards to the leader in one
/// `ProposeForwardedBatch` frame. Under load the forwards queued while
/// earlier batches are in flight go together: one stream and two frames
/// for many writes instead of a stream per write. The leader refuses a
/// larger batch (`TooLarge`) before proposing any of it.
pub const MAX_FORWARD_BATCH_PROPOSALS: usize = 256;
/// Most command bytes in one forwarded batch; a single command (at most
/// [`MAX_COMMAND_BYTES`]) always fits, and the frame stays well under
/// [`MAX_FRAME_BYTES`].
pub const MAX_FORWARD_BATCH_BYTES: usize = MAX_FRAME_BYTES / 2;
/// Batches of forwarded proposals a follower keeps in flight to one
/// leader. A forward that arrives while fewer are in flight leaves at once
/// (one client waits no longer than before); past this many, forwards
/// queue and leave together when a batch is answered. One in flight made
/// the largest batches, so the fewest Raft rounds per write: at 64 clients
/// through a follower 35 writes a round against 21 with two, and 75-89 µs
/// of CPU per write against 88-102 (BENCHMARKS.md, step 21).
pub const MAX_FORWARD_BATCHES_IN_FLIGHT: usize = 1;
/// A follower's queue of forwards to one leader stops its task after this
/// long without a forward (a former leader's queue does not linger).
pub const FORWARD_QUEUE_IDLE: Duration = Duration::from_secs(30);
/// How long a peer may take to answer a Raft frame; a stream silent for
/// longer is treated as broken (Raft heartbeats come every few hundred ms).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// `RaftMessage` frames a sender keeps unanswered on one stream before it
/// waits for the peer's delivery answer. Answers are cumulative
/// (`transport::handler`), so a frame leaves at once instead of after the
/// previous frame's answer.
pub const DELIVERY_WINDOW_FRAMES: usize = 8;
/// A receiver answers at once when this many `RaftMessage` frames are
/// unanswered: half the window, so the sender's window never fills while
/// the answer travels.
pub const DELIVERY_ANSWER_EVERY_FRAMES: u32 = (DELIVERY_WINDOW_FRAMES / 2) as u32;
/// Otherwise a receiver answers the frames it owes once its stream has
/// been quiet this long. An answer per frame was a third of a write's UDP
/// datagrams at one client (BENCHMARKS.md, step 26); this delay lets one
/// answer cover several frames and stays far below [`ANSWER_TIMEOUT`].
pub const DELIVERY_ANSWER_DELAY: Duration = Duration::from_millis(5);
/// A peer that dials this node may have restarted; the connection this
/// node holds to it must then answer a heartbeat within this many of its
/// round trips, or it is closed (`transport::liveness`).
pub const PEER_PROBE_RTTS: u32 = 8;
/// The least time a held connection gets to answer that heartbeat, however
/// short its round trip: a live peer on a busy machine answers in a few
/// milliseconds, and a restarted one never does. Well under an election
/// timeout, so a leader's new process is reached before clients notice.
pub const PEER_PROBE_MIN_TIMEOUT: Duration = Duration::from_millis(150);
/// How long dialing a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most protobuf bytes of Raft messages put into one frame (leaves room for
/// framing under [`MAX_FRAME_BYTES`]).
pub const MAX_BATCH_BYTES: usize = MAX_FRAME_BYTES / 2;
/// Most Raft messages put into one frame (the receiver refuses more).
pub const MAX_BATCH_COUNT: usize = MAX_BATCH_MESSAGES;
/// Raft messages queued per peer and priority before new ones are dropped.
pub const PEER_QUEUE_CAPACITY: usize = 4096;
/// First and longest wait before redialing a peer that failed.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bytes of snapshot file per chunk frame (well under the frame limit).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// How long one chunk (or the final verification) may take to be answered.
pub const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

// ── Client API ─────────────────────────────────────────────────────────

/// Largest request body: a maximal command in base64 inside JSON, with room.
pub const MAX_API_BODY_BYTES: usize = MAX_COMMAND_BYTES * 2 + 64 * 1024;
/// How long adding a voter may take: its catch-up (snapshot install) first.
pub const MEMBERSHIP_TIMEOUT: std::time::Duration = PROMOTION_TIMEOUT;
/// How long taking a snapshot may take (a large guest state).
pub const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Most records `/v1/results` returns at once.
pub const MAX_RESULTS_PER_CALL: usize = 10_000;
/// How long an upgrade may take: every replica may fetch and compile the
/// component before the activation applies.
pub const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// How long the client waits for one call (the server gives up after
/// `DEFAULT_REQUEST_TIMEOUT`, which is shorter), for calls that may take
/// minutes, and the largest response body it reads: the client crate's.
pub use iroh_raft_client::limits::{CLIENT_TIMEOUT, LONG_CLIENT_TIMEOUT, MAX_RESPONSE_BYTES};
// A backup the node serves is one the client downloads.
const _: () = assert!(MAX_SNAPSHOT_FILE_BYTES <= iroh_raft_client::limits::MAX_DOWNLOAD_BYTES);

// ── Client API: connections, slow clients, credentials ─────────────────
//
// What a client that breaks them gets back is in `docs/api.md` ("Limits").

/// The most tokio worker threads a node may be given (`--worker-threads`).
pub const MAX_WORKER_THREADS: usize = 1024;

/// Tokio worker threads a node runs by default (`--worker-threads`): one
/// fewer than the CPUs it may use, at least one.
///
/// The node's CPU-heavy work has threads of its own (the persistence
/// thread's syncs, the applier's and the query thread's guest calls), so
/// the workers (the API, QUIC, the node loop) need one core less. Every
/// further worker costs wake-ups: a worker that finds two tasks wakes a
/// sleeping one to take one, and the tasks of one write then hand off
/// between threads. On 2 CPUs one worker served a lone node's 64 writing
/// clients as fast as two and its readers 8% faster, and took ~0.04 ms
/// off one client's writes to a 3-node cluster (BENCHMARKS.md, step 32).
pub fn default_worker_threads() -> usize {
    worker_threads_for_cpus(std::thread::available_parallelism().map_or(1, |cpus| cpus.get()))
}

fn worker_threads_for_cpus(cpus: usize) -> usize {
    cpus.saturating_sub(1).clamp(1, MAX_WORKER_THREADS)
}

/// Connections the API serves at once by default (`--api-max-connections`).
/// One more is answered `503 too_many_connections` and closed: a flood of
/// idle or slow connections holds at most this many file descriptors (plus
/// [`API_MAX_REFUSING_CONNECTIONS`]), not one per attacker connection.
pub const API_MAX_CONNECTIONS: usize = 256;
/// Connections over the cap that are being told `503` at once; past it a
/// new connection is closed without an answer.
pub const API_MAX_REFUSING_CONNECTIONS: usize = 64;
/// How long a client may take for the TLS handshake, and for the headers of
/// each request (also the longest an idle keep-alive connection stays
/// open). A slower one is closed (`--api-header-timeout-secs`).
pub const API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a JSON body (up to
/// `MAX_API_BODY_BYTES`: at least ~200 KiB/s); a slower one is answered
/// `408 body_timeout` and closed (`--api-body-timeout-secs`).
pub const API_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a component to `/v1/upgrade` (up to
/// `MAX_COMPONENT_BYTES`: at least ~1 MiB/s).
pub const API_COMPONENT_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Component uploads (`/v1/upgrade`, each buffering up to
/// `MAX_COMPONENT_BYTES`) the API runs at once; another is answered
/// `503 too_many_uploads`.
pub const API_MAX_COMPONENT_UPLOADS: usize = 2;
/// How long a write to an API client may make no progress (a client that
/// stopped reading its answer, e.g. a backup download) before the
/// connection is closed. Progress resets it, so a slow but moving
/// download of a large snapshot still completes.
pub const API_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping API waits for requests in flight before it drops
/// their connections.
pub const API_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Shortest bearer token a token file may hold: 16 characters of a random
/// token (e.g. `openssl rand -hex 32`, 64 characters) are far beyond
/// guessing; shorter ones are likely typed by hand.
pub const MIN_API_TOKEN_CHARS: usize = 16;
/// Largest token file, certificate or key file the node reads.
pub const MAX_API_SECRET_FILE_BYTES: u64 = 1024 * 1024;

// ── Compile-time checks between limits ─────────────────────────────────────

// The answer carrying a result or a message fits a frame and a client
// response, however its bytes escape in JSON (see `MAX_RESULT_BYTES`).
const _: () = assert!(MAX_RESULT_BYTES * 2 <= MAX_FRAME_BYTES);
const _: () = assert!(MAX_RESULT_BYTES as u64 * 8 <= MAX_RESPONSE_BYTES);
const _: () = assert!(MAX_ERROR_MESSAGE_BYTES * 8 <= MAX_FRAME_BYTES);
// A lease must end before followers may elect another leader, even on a
// clock 20% fast (see `LEASE_DURATION`): lease <= 80% of the shortest
// election timeout.
const _: () = assert!(
    LEASE_DURATION.as_millis() * 5 <= ELECTION_TICKS as u128 * TICK_INTERVAL.as_millis() * 4
);
// Heartbeats come several times per election timeout, so a few late ones
// do not start an election; the randomized range is not empty.
const _: () = assert!(HEARTBEAT_TICKS * 4 <= ELECTION_TICKS);
const _: () = assert!(MAX_ELECTION_TICKS > ELECTION_TICKS);
// Held apply jobs fit the applier's queue.
const _: () = assert!(MAX_HELD_APPLY_JOBS < APPLY_QUEUE_CAPACITY);
// A lazy follower's appends leave well within a heartbeat interval.
const _: () = assert!(
    LAZY_APPEND_DELAY.as_millis() * 4 <= TICK_INTERVAL.as_millis() * HEARTBEAT_TICKS as u128
);
// A candidate's shortened timeout still spans several heartbeat intervals.
const _: () = assert!(
    CANDIDATE_TICKS_PER_TICK >= 1
        && ELECTION_TICKS / CANDIDATE_TICKS_PER_TICK >= 3 * HEARTBEAT_TICKS
);
// A guest check's script runs commands as a client would send them.
const _: () = assert!(MAX_SCRIPT_COMMAND_BYTES == MAX_COMMAND_BYTES);
// One pair of the largest size fits a scan.
const _: () = assert!(MAX_STORE_SCAN_BYTES >= (MAX_STORE_KEY_BYTES + MAX_STORE_VALUE_BYTES) as u64);
// A value a client sends fits the store.
const _: () = assert!(MAX_STORE_VALUE_BYTES as usize >= MAX_COMMAND_BYTES);
// A forwarded command travels in one frame.
const _: () = assert!(MAX_COMMAND_BYTES * 2 <= MAX_FRAME_BYTES);
// One command always fits in a forwarded batch.
const _: () = assert!(MAX_COMMAND_BYTES <= MAX_FORWARD_BATCH_BYTES);
// A frame's length prefix is a u32: the frame limit must be expressible in it.
const _: () = assert!(MAX_FRAME_BYTES <= u32::MAX as usize);
// Raft's largest append fits a frame, with room for the framing.
const _: () = assert!(MAX_RAFT_MESSAGE_BYTES as usize <= MAX_BATCH_BYTES);
// Snapshot and component chunks fit a frame.
const _: () = assert!(SNAPSHOT_CHUNK_BYTES * 2 <= MAX_FRAME_BYTES);
const _: () = assert!(COMPONENT_CHUNK_BYTES * 2 <= MAX_FRAME_BYTES);
// Failing checkpoints are retried at least once before the tail stalls the
// guest (the first failure comes at a tail of at least the minimum).
const _: () = assert!(MAX_UNCHECKPOINTED_TAIL_BYTES >= 2 * CHECKPOINT_MIN_TAIL_BYTES);
const _: () = assert!(MAX_UNCHECKPOINTED_TAIL_ENTRIES >= 2 * CHECKPOINT_MAX_TAIL_ENTRIES);
// An API body holds the largest command, escaped in JSON.
const _: () = assert!(MAX_COMMAND_BYTES * 2 <= MAX_API_BODY_BYTES);
// Every JSON body the API takes arrives within its timeout at a rate any
// client on a network manages (~200 KiB/s), and so does a component.
const _: () = assert!((MAX_API_BODY_BYTES as u64) / API_BODY_TIMEOUT.as_secs() <= 256 * 1024);
const _: () =
    assert!(MAX_COMPONENT_BYTES / API_COMPONENT_BODY_TIMEOUT.as_secs() <= 2 * 1024 * 1024);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_leaves_one_cpu_to_its_own_threads() {
        assert_eq!(worker_threads_for_cpus(0), 1);
        assert_eq!(worker_threads_for_cpus(1), 1);
        assert_eq!(worker_threads_for_cpus(2), 1);
        assert_eq!(worker_threads_for_cpus(8), 7);
        assert_eq!(worker_threads_for_cpus(100_000), MAX_WORKER_THREADS);
    }
}
