//! The sequential specification the checker compares a history against.

use std::fmt::Debug;
use std::hash::Hash;

use super::history::Reply;

/// A deterministic sequential specification of a state machine.
///
/// Replicated state machines are deterministic by construction (every
/// replica must compute the same result), so a model computes *the* output
/// of an input in a state, and the checker compares it with the recorded
/// one. That also makes explanations concrete: "the model answers `2` here,
/// the client saw `1`".
///
/// The checker parses each operation once ([`parse_input`],
/// [`parse_output`]) and then calls [`step`] many times while it searches,
/// so `step` and cloning/hashing [`State`] are the hot path.
///
/// [`parse_input`]: Model::parse_input
/// [`parse_output`]: Model::parse_output
/// [`step`]: Model::step
/// [`State`]: Model::State
pub trait Model {
    /// The state. The search memoizes `(operations applied, state)` pairs,
    /// so it must be `Eq + Hash` and ought to be small.
    type State: Clone + Eq + Hash + Debug;
    /// A parsed command or query.
    type Input: Clone + Debug;
    /// A parsed answer, compared with `==`.
    type Output: Clone + PartialEq + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Parse an operation's input text. An error makes the history
    /// uncheckable (a test should send only commands the model knows).
    fn parse_input(&self, text: &str) -> Result<Self::Input, String>;

    /// Parse a recorded answer to `input`.
    fn parse_output(&self, input: &Self::Input, reply: &Reply) -> Result<Self::Output, String>;

    /// Apply `input` to `state`: the state after it and the answer the real
    /// system must have given.
    fn step(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);

    /// The part of the state `input` reads and writes, if it touches only
    /// one: operations on different keys are then checked independently,
    /// which is what keeps the search fast (linearizability is
    /// compositional, Herlihy & Wing 1990). `None` means "may touch
    /// anything": one such operation makes the whole history one partition.
    fn partition_key(&self, input: &Self::Input) -> Option<String> {
        let _ = input;
        None
    }

    /// Whether `input` never changes the state. A read whose answer never
    /// arrived constrains nothing, so the checker drops it.
    fn is_read_only(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// A state as text for explanations.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }

    /// An answer as text for explanations.
    fn describe_output(&self, output: &Self::Output) -> String {
        format!("{output:?}")
    }
}
