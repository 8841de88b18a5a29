//! The Wing & Gong search with Lowe's memoization, as in porcupine.
//!
//! The history becomes one doubly linked list of call and return entries in
//! time order. The search walks it from the front:
//!
//! ```text
//!  head ─ call(a) ─ call(b) ─ ret(a) ─ call(c) ─ ret(b) ─ ret(c)
//!           ▲
//!           try: apply a to the state; if the model's answer matches the
//!           recorded one and (applied set, state) is new, lift a's call and
//!           return out of the list, push it, restart at the head
//! ```
//!
//! Reaching a return entry means its operation had to take effect before it
//! completed and none of the orders tried so far allowed it: pop the last
//! lifted operation, put it back, and try the entry after it. The history is
//! linearizable once every completed operation is lifted; one that has no
//! return entry (its outcome is unknown) may be lifted anywhere after its
//! call, or never, so it does not need to be.
//!
//! The memo of `(applied set, state)` pairs is what makes this fast: two
//! orders of the same operations that reach the same state have the same
//! future, so the second is not explored again (Lowe, "Testing for
//! linearizability", 2017).
//!
//! Two additions for operations whose outcome is unknown, which otherwise
//! make the search exponential in their number (each may be applied or
//! not): at each point the walk tries the completed candidates first and
//! the unknown ones only after those fail (a timed-out write usually either
//! never happened or is needed only by some later read), and the memo
//! prunes a configuration that differs from a visited one only by having
//! more unknown operations applied ([`Memo`] says why that is sound).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::model::Model;

/// One operation as the search sees it.
pub(crate) struct Op<'a, M: Model> {
    pub input: &'a M::Input,
    pub invoke: u64,
    /// Completion time and recorded answer; `None` for an unknown outcome.
    pub done: Option<(u64, &'a M::Output)>,
}

// Not derived: that would demand `M: Copy`.
impl<M: Model> Clone for Op<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Model> Copy for Op<'_, M> {}

/// How a search ended.
pub(crate) enum Searched<S> {
    Linearizable,
    /// With the deepest dead end when tracking was asked for.
    NotLinearizable(Option<DeadEnd<S>>),
    OutOfSteps,
}

/// The deepest point the search reached before it had to give up on every
/// order: the longest linearizable prefix it found, and why it went no
/// further.
pub(crate) struct DeadEnd<S> {
    /// Operations (indices into the searched slice) in linearization order.
    pub order: Vec<usize>,
    /// The state after `order`.
    pub state: S,
    /// The completed operation that had to take effect next but could not.
    pub blocked: usize,
    /// Every operation that could have been next (called before `blocked`
    /// completed and not yet applied), `blocked` among them.
    pub candidates: Vec<usize>,
}

const NONE: usize = usize::MAX;
const HEAD: usize = 0;

struct Entry {
    op: usize,
    is_call: bool,
    /// For a call entry, its return entry (`NONE` for an unknown outcome).
    matching: usize,
    prev: usize,
    next: usize,
}

/// Search `ops` for a linearization. Each model step uses one of `budget`;
/// when none is left the answer is [`Searched::OutOfSteps`]. With `track`,
/// a failure comes with its deepest [`DeadEnd`] (that costs a copy of the
/// stack each time the search gets deeper, so the plain check skips it).
pub(crate) fn search<M: Model>(
    model: &M,
    ops: &[Op<'_, M>],
    budget: &mut u64,
    track: bool,
) -> Searched<M::State> {
    let mut entries = build_list(ops);
    let mut remaining = ops.iter().filter(|op| op.done.is_some()).count();
    let mut state = model.init();
    let mut memo = Memo::<M::State>::new(ops.len());
    // Lifted call entries and the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut dead_end: Option<DeadEnd<M::State>> = None;

    let mut entry = entries[HEAD].next;
    // Which operations the walk tries: completed ones on the first pass up
    // to the first return entry, unknown ones on the second.
    let mut first_pass = true;
    while remaining > 0 {
        // A completed operation not yet applied has its return entry in the
        // list, after every call entry the walk has passed.
        assert_ne!(entry, NONE, "ran off the list with completed ops left");
        let Entry {
            op: index,
            is_call,
            next,
            ..
        } = entries[entry];
        if is_call {
            let op = &ops[index];
            if op.done.is_some() != first_pass {
                entry = next;
                continue;
            }
            if *budget == 0 {
                return Searched::OutOfSteps;
            }
            *budget -= 1;
            let (after, answer) = model.step(&state, op.input);
            let fits = op.done.is_none_or(|(_, recorded)| *recorded == answer);
            if fits && memo.visit(index, op.done.is_some(), &after) {
                stack.push((entry, std::mem::replace(&mut state, after)));
                lift(&mut entries, entry);
                if op.done.is_some() {
                    remaining -= 1;
                }
                entry = entries[HEAD].next;
                first_pass = true;
                continue;
            }
            entry = next;
        } else if first_pass {
            first_pass = false;
            entry = entries[HEAD].next;
        } else {
            if track
                && dead_end
                    .as_ref()
                    .is_none_or(|deepest| stack.len() > deepest.order.len())
            {
                dead_end = Some(DeadEnd {
                    order: stack.iter().map(|&(call, _)| entries[call].op).collect(),
                    state: state.clone(),
                    blocked: index,
                    candidates: calls_before(&entries, entry),
                });
            }
            let Some((call, before)) = stack.pop() else {
                return Searched::NotLinearizable(dead_end);
            };
            let undone = entries[call].op;
            let completed = ops[undone].done.is_some();
            memo.undo(undone, completed, &state);
            state = before;
            unlift(&mut entries, call);
            if completed {
                remaining += 1;
            }
            // Resume the pass the undone operation was tried in, after it.
            first_pass = completed;
            entry = entries[call].next;
        }
    }
    Searched::Linearizable
}

/// Which operations are applied, and the configurations already visited.
///
/// A configuration is (completed operations applied, unknown operations
/// applied, state). A visited one is either on the current path or
/// finished, and a finished one failed (success ends the search). Two
/// prunings:
///
/// - the same configuration again: its future is the same (Lowe);
/// - one with the same completed operations and state as a finished one
///   but a superset of its unknown operations applied: any way to finish
///   from it also finishes from the finished one (unknown operations
///   constrain no other operation's placement, and none has to be
///   applied), so it fails too. Only finished ones prune this way: pruning
///   against an ancestor on the current path would rest on a result not yet
///   known.
///
/// Per (completed, state) the memo keeps the unknown sets seen; a finished
/// set makes its supersets redundant, so they are dropped.
struct Memo<S> {
    completed: Bitset,
    unknown: Bitset,
    /// (completed, state) to the unknown sets seen with it, each flagged
    /// when finished.
    visited: HashMap<(Bitset, S), Vec<(Bitset, bool)>, FxBuild>,
}

type FxBuild = BuildHasherDefault<FxHasher>;

impl<S: Clone + Eq + std::hash::Hash> Memo<S> {
    fn new(ops: usize) -> Self {
        Self {
            completed: Bitset::new(ops),
            unknown: Bitset::new(ops),
            visited: HashMap::default(),
        }
    }

    /// Apply operation `op`, reaching `state`; `false` (and nothing applied)
    /// if that configuration was visited or a finished one dominates it.
    fn visit(&mut self, op: usize, completed: bool, state: &S) -> bool {
        self.set(op, completed, true);
        let seen = self
            .visited
            .entry((self.completed.clone(), state.clone()))
            .or_default();
        let pruned = seen.iter().any(|(unknown, finished)| {
            *unknown == self.unknown || (*finished && unknown.is_subset(&self.unknown))
        });
        if pruned {
            self.set(op, completed, false);
            return false;
        }
        seen.push((self.unknown.clone(), false));
        true
    }

    /// Take operation `op` back out of the configuration reached at `state`,
    /// which is now finished (failed).
    fn undo(&mut self, op: usize, completed: bool, state: &S) {
        if let Some(seen) = self
            .visited
            .get_mut(&(self.completed.clone(), state.clone()))
        {
            let unknown = &self.unknown;
            // Finished strict supersets are now redundant.
            seen.retain(|(seen, finished)| {
                !*finished || seen == unknown || !unknown.is_subset(seen)
            });
            for (seen, finished) in seen.iter_mut() {
                if seen == unknown {
                    *finished = true;
                }
            }
        }
        self.set(op, completed, false);
    }

    fn set(&mut self, op: usize, completed: bool, applied: bool) {
        let set = if completed {
            &mut self.completed
        } else {
            &mut self.unknown
        };
        if applied {
            set.0[op / 64] |= 1 << (op % 64);
        } else {
            set.0[op / 64] &= !(1 << (op % 64));
        }
    }
}

/// The entries in time order behind a head sentinel. At equal times calls
/// come first, so such operations count as concurrent (see the history
/// module's note on time).
fn build_list<M: Model>(ops: &[Op<'_, M>]) -> Vec<Entry> {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (index, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, index));
        if let Some((complete, _)) = op.done {
            events.push((complete, true, index));
        }
    }
    // `false < true`: calls before returns at the same time.
    events.sort_unstable();
    let mut entries = Vec::with_capacity(events.len() + 1);
    entries.push(Entry {
        op: NONE,
        is_call: false,
        matching: NONE,
        prev: NONE,
        next: NONE,
    });
    let mut return_entry = vec![NONE; ops.len()];
    for (position, &(_, is_return, op)) in events.iter().enumerate() {
        if is_return {
            return_entry[op] = position + 1;
        }
    }
    for (position, &(_, is_return, op)) in events.iter().enumerate() {
        let this = position + 1;
        entries[this - 1].next = this;
        entries.push(Entry {
            op,
            is_call: !is_return,
            matching: if is_return { NONE } else { return_entry[op] },
            prev: this - 1,
            next: NONE,
        });
    }
    entries
}

fn unlink(entries: &mut [Entry], entry: usize) {
    let Entry { prev, next, .. } = entries[entry];
    entries[prev].next = next;
    if next != NONE {
        entries[next].prev = prev;
    }
}

fn relink(entries: &mut [Entry], entry: usize) {
    let Entry { prev, next, .. } = entries[entry];
    entries[prev].next = entry;
    if next != NONE {
        entries[next].prev = entry;
    }
}

/// Take an operation's call and return entries out of the list.
fn lift(entries: &mut [Entry], call: usize) {
    unlink(entries, call);
    let matching = entries[call].matching;
    if matching != NONE {
        unlink(entries, matching);
    }
}

/// Undo [`lift`]; the dancing-links trick needs the reverse order.
fn unlift(entries: &mut [Entry], call: usize) {
    let matching = entries[call].matching;
    if matching != NONE {
        relink(entries, matching);
    }
    relink(entries, call);
}

fn calls_before(entries: &[Entry], stop: usize) -> Vec<usize> {
    let mut calls = Vec::new();
    let mut entry = entries[HEAD].next;
    while entry != stop && entry != NONE {
        if entries[entry].is_call {
            calls.push(entries[entry].op);
        }
        entry = entries[entry].next;
    }
    calls
}

/// The set of applied operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Box<[u64]>);

impl Bitset {
    fn new(bits: usize) -> Self {
        Self(vec![0; bits.div_ceil(64)].into_boxed_slice())
    }

    fn is_subset(&self, of: &Self) -> bool {
        self.0.iter().zip(of.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

/// The Firefox/rustc hash: the memo is hashed once per step, and SipHash's
/// flood resistance buys nothing for keys we generate ourselves.
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(
                chunk.try_into().expect("chunks_exact(8) yields 8 bytes"),
            ));
        }
        for &byte in chunks.remainder() {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}
