//! Checking a history: partition, search, and explain a violation.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{History, HistoryError, Operation, Outcome};
use super::model::Model;
use super::search::{self, DeadEnd, Op, Searched};

/// The default bound on the work of one [`check`]: model steps summed over
/// every partition. A search that would need more gives
/// [`Verdict::Unknown`] instead of running on: the problem is NP-complete
/// and a pathological history (many concurrent writes of which few are
/// observed) can take exponential time. One step costs roughly 0.1 to 1 µs,
/// so this is seconds, orders of magnitude above what a sane test history
/// needs (the 10k-operation benchmark takes ~10k steps). Explaining a
/// violation gets a budget of its own of the same size.
pub const MAX_SEARCH_STEPS: u64 = 10_000_000;

/// How many operations of a failing prefix a [`Violation`] prints.
const MAX_LISTED_OPS: usize = 40;

/// Knobs for [`check_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// See [`MAX_SEARCH_STEPS`].
    pub max_steps: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            max_steps: MAX_SEARCH_STEPS,
        }
    }
}

/// What [`check`] found, with the figures a test log wants.
#[derive(Debug, Clone)]
pub struct Report {
    /// The answer.
    pub verdict: Verdict,
    /// Operations searched: failed ones and unknown reads are left out.
    pub operations: usize,
    /// Independent partitions (keys), or 1 when the model or the history
    /// does not partition.
    pub partitions: usize,
    /// Model steps spent deciding (not counting the explanation).
    pub steps: u64,
    /// Every partition found not linearizable; the verdict explains the
    /// first.
    pub violating_partitions: Vec<String>,
    /// Every partition whose search ran out of steps.
    pub undecided_partitions: Vec<String>,
}

/// Linearizable or not, or out of budget.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Some order of the operations, each taking effect between its
    /// invocation and completion (unknown ones: after invocation, or never),
    /// gives every recorded answer.
    Linearizable,
    /// No such order exists; here is why.
    NotLinearizable(Box<Violation>),
    /// The search used up its step budget on `partition` before deciding
    /// (and found no violation anywhere).
    Unknown {
        /// The first undecided partition.
        partition: String,
        /// The budget that ran out.
        max_steps: u64,
    },
}

impl Verdict {
    /// `true` for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Self::Linearizable)
    }

    /// `true` for [`Verdict::NotLinearizable`].
    pub fn is_violation(&self) -> bool {
        matches!(self, Self::NotLinearizable(_))
    }

    /// The violation, if there is one.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Self::NotLinearizable(violation) => Some(violation),
            _ => None,
        }
    }
}

/// Why a partition is not linearizable.
///
/// Two findings, both sound:
///
/// - The shortest failing prefix in time: the partition's history cut at
///   time `until` (operations invoked later dropped, those completing later
///   made unknown) is already not linearizable, and cut at the completion
///   before it, it is (or the search could not tell). `last_straw` is the
///   operation whose answer, arriving at `until`, nothing explains. A cut
///   history that fails proves the whole one fails: any linearization of
///   the whole, cut at `until`, would be one of the cut history.
/// - Within that prefix, the deepest point the search reached: the longest
///   order of operations that explains every answer so far
///   (`linearized`), the state it leaves, the completed operation that had
///   to come next (`blocked`) and what the model says each possible next
///   operation would answer (`candidates`).
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key, or `None` when the history was checked as a whole.
    pub partition: Option<String>,
    /// Operations in the partition.
    pub partition_ops: usize,
    /// Where the shortest failing prefix ends.
    pub until: u64,
    /// The operation that completed at `until`.
    pub last_straw: Operation,
    /// Operations in the failing prefix, in invocation order (at most
    /// `MAX_LISTED_OPS`, 40); `prefix_len` counts them all.
    pub prefix: Vec<Operation>,
    /// Operations invoked by `until`.
    pub prefix_len: usize,
    /// The deepest dead end (absent only if its search ran out of steps).
    pub dead_end: Option<DeadEndReport>,
}

/// The deepest point of the search, for a human.
#[derive(Debug, Clone)]
pub struct DeadEndReport {
    /// The longest linearizable order found: each operation with the state
    /// after it.
    pub linearized: Vec<(Operation, String)>,
    /// The state after `linearized`.
    pub state: String,
    /// The completed operation that had to take effect next.
    pub blocked: Operation,
    /// Each operation that could have been next.
    pub candidates: Vec<Candidate>,
}

/// One possible next operation at a dead end.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The operation.
    pub op: Operation,
    /// What the model answers for it in the dead end's state.
    pub model_answer: String,
    /// Whether that is what its client saw (or it has no answer). A fitting
    /// candidate was tried and led only to dead ends later.
    pub fits: bool,
}

/// Check `history` against `model` with the default budget.
///
/// ```
/// use iroh_raft::linearizability::{check, ClientId, History, KvModel, OpId, Operation, Outcome};
///
/// let op = |id, client, input: &str, invoke, complete, output: &str| Operation {
///     id: OpId(id),
///     client: ClientId(client),
///     input: input.to_owned(),
///     invoke,
///     outcome: Outcome::Ok { complete, output: Ok(output.to_owned()) },
/// };
/// // A stale read: `get` starts after `put x 2` was acknowledged, yet sees 1.
/// let history = History::new(vec![
///     op(0, 1, "put x 1", 1, 2, "OK"),
///     op(1, 1, "put x 2", 3, 4, "OK"),
///     op(2, 2, "get x", 5, 6, "1"),
/// ]);
/// let report = check(&KvModel, &history).expect("well formed");
/// let violation = report.verdict.violation().expect("stale read");
/// assert_eq!(violation.partition.as_deref(), Some("x"));
/// assert_eq!(violation.last_straw.input, "get x");
/// println!("{report}"); // says which order was tried and why it fails
/// ```
pub fn check<M: Model>(model: &M, history: &History) -> Result<Report, HistoryError> {
    check_with(model, history, &CheckOptions::default())
}

/// [`check`] with explicit options.
pub fn check_with<M: Model>(
    model: &M,
    history: &History,
    options: &CheckOptions,
) -> Result<Report, HistoryError> {
    history.validate()?;
    let parsed = parse(model, history)?;
    let partitions = partition(model, &parsed);

    let mut budget = options.max_steps;
    let mut violating: Vec<(Option<String>, &[usize])> = Vec::new();
    let mut undecided = Vec::new();
    for (key, members) in &partitions {
        let ops: Vec<Op<'_, M>> = members.iter().map(|&i| parsed[i].as_op()).collect();
        match search::search(model, &ops, &mut budget, false) {
            Searched::Linearizable => {}
            Searched::NotLinearizable(_) => violating.push((key.clone(), members)),
            Searched::OutOfSteps => undecided.push(partition_name(key.as_deref())),
        }
    }
    let steps = options.max_steps - budget;

    let verdict = if let Some(&(ref key, members)) = violating.first() {
        let members: Vec<&Parsed<'_, M>> = members.iter().map(|&i| &parsed[i]).collect();
        Verdict::NotLinearizable(Box::new(explain(
            model,
            key.clone(),
            &members,
            options.max_steps,
        )))
    } else if let Some(partition) = undecided.first() {
        Verdict::Unknown {
            partition: partition.clone(),
            max_steps: options.max_steps,
        }
    } else {
        Verdict::Linearizable
    };
    Ok(Report {
        verdict,
        operations: parsed.len(),
        partitions: partitions.len(),
        steps,
        violating_partitions: violating
            .iter()
            .map(|(key, _)| partition_name(key.as_deref()))
            .collect(),
        undecided_partitions: undecided,
    })
}

/// An operation the search needs, parsed once.
struct Parsed<'h, M: Model> {
    source: &'h Operation,
    input: M::Input,
    done: Option<(u64, M::Output)>,
}

impl<M: Model> Parsed<'_, M> {
    fn as_op(&self) -> Op<'_, M> {
        Op {
            input: &self.input,
            invoke: self.source.invoke,
            done: self
                .done
                .as_ref()
                .map(|(complete, output)| (*complete, output)),
        }
    }
}

/// Parse every operation that can matter: failed ones did not happen, and a
/// read whose answer is unknown neither changed nor showed anything.
fn parse<'h, M: Model>(
    model: &M,
    history: &'h History,
) -> Result<Vec<Parsed<'h, M>>, HistoryError> {
    let mut parsed = Vec::with_capacity(history.ops.len());
    for op in &history.ops {
        let error = |reason| HistoryError::Model {
            op: op.to_string(),
            reason,
        };
        let done = match &op.outcome {
            Outcome::Fail { .. } => continue,
            Outcome::Ok { complete, output } => Some((*complete, output)),
            Outcome::Unknown => None,
        };
        let input = model.parse_input(&op.input).map_err(error)?;
        let done = match done {
            Some((complete, reply)) => {
                Some((complete, model.parse_output(&input, reply).map_err(error)?))
            }
            None if model.is_read_only(&input) => continue,
            None => None,
        };
        parsed.push(Parsed {
            source: op,
            input,
            done,
        });
    }
    Ok(parsed)
}

/// Group operations by key, in key order; one group keyed `None` if any
/// operation may touch every key.
fn partition<M: Model>(model: &M, parsed: &[Parsed<'_, M>]) -> Vec<(Option<String>, Vec<usize>)> {
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, op) in parsed.iter().enumerate() {
        match model.partition_key(&op.input) {
            Some(key) => by_key.entry(key).or_default().push(index),
            None => return vec![(None, (0..parsed.len()).collect())],
        }
    }
    by_key
        .into_iter()
        .map(|(key, ops)| (Some(key), ops))
        .collect()
}

fn partition_name(key: Option<&str>) -> String {
    match key {
        Some(key) => format!("key {key:?}"),
        None => "the whole history".to_owned(),
    }
}

/// The partition's history cut at `until` (see [`Violation`]).
fn cut<'p, M: Model>(
    members: &[&'p Parsed<'_, M>],
    model: &M,
    until: u64,
) -> Vec<(usize, Op<'p, M>)> {
    members
        .iter()
        .enumerate()
        .filter(|(_, op)| op.source.invoke <= until)
        .filter_map(|(index, op)| {
            let mut op_now = op.as_op();
            if op_now.done.is_some_and(|(complete, _)| complete > until) {
                if model.is_read_only(&op.input) {
                    return None;
                }
                op_now.done = None;
            }
            Some((index, op_now))
        })
        .collect()
}

/// Find the shortest failing prefix by bisection over completion times (a
/// cut that fails stays failed when cut later), then the deepest dead end
/// within it.
fn explain<M: Model>(
    model: &M,
    partition: Option<String>,
    members: &[&Parsed<'_, M>],
    max_steps: u64,
) -> Violation {
    let mut budget = max_steps;
    let mut completions: Vec<u64> = members
        .iter()
        .filter_map(|op| op.done.as_ref().map(|(complete, _)| *complete))
        .collect();
    completions.sort_unstable();
    completions.dedup();
    let fails = |until: u64, budget: &mut u64| {
        let ops: Vec<Op<'_, M>> = cut(members, model, until)
            .into_iter()
            .map(|(_, op)| op)
            .collect();
        matches!(
            search::search(model, &ops, budget, false),
            Searched::NotLinearizable(_)
        )
    };
    // The whole partition fails, and cutting at the last completion changes
    // nothing that matters, so the last index is known to fail.
    let (mut low, mut high) = (0, completions.len().saturating_sub(1));
    while low < high && budget > 0 {
        let middle = (low + high) / 2;
        if fails(completions[middle], &mut budget) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let until = completions.get(high).copied().unwrap_or_default();

    let prefix = cut(members, model, until);
    let last_straw = members
        .iter()
        .find(|op| {
            op.done
                .as_ref()
                .is_some_and(|(complete, _)| *complete == until)
        })
        .map_or_else(|| members[0].source.clone(), |op| op.source.clone());
    let ops: Vec<Op<'_, M>> = prefix.iter().map(|(_, op)| *op).collect();
    let dead_end = match search::search(model, &ops, &mut budget, true) {
        Searched::NotLinearizable(Some(dead_end)) => {
            Some(describe_dead_end(model, &prefix, members, dead_end))
        }
        _ => None,
    };
    let mut listed: Vec<Operation> = prefix
        .iter()
        .map(|&(index, _)| members[index].source.clone())
        .collect();
    listed.sort_by_key(|op| (op.invoke, op.id));
    let prefix_len = listed.len();
    listed.truncate(MAX_LISTED_OPS);
    Violation {
        partition,
        partition_ops: members.len(),
        until,
        last_straw,
        prefix: listed,
        prefix_len,
        dead_end,
    }
}

fn describe_dead_end<M: Model>(
    model: &M,
    prefix: &[(usize, Op<'_, M>)],
    members: &[&Parsed<'_, M>],
    dead_end: DeadEnd<M::State>,
) -> DeadEndReport {
    let source = |index: usize| members[prefix[index].0].source.clone();
    let mut state = model.init();
    let linearized = dead_end
        .order
        .iter()
        .map(|&index| {
            state = model.step(&state, prefix[index].1.input).0;
            (source(index), model.describe_state(&state))
        })
        .collect();
    let candidates = dead_end
        .candidates
        .iter()
        .map(|&index| {
            let op = &prefix[index].1;
            let answer = model.step(&dead_end.state, op.input).1;
            Candidate {
                op: source(index),
                fits: op.done.is_none_or(|(_, recorded)| *recorded == answer),
                model_answer: model.describe_output(&answer),
            }
        })
        .collect();
    DeadEndReport {
        linearized,
        state: model.describe_state(&dead_end.state),
        blocked: source(dead_end.blocked),
        candidates,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let figures = format!(
            "{} operations in {} partition(s), {} search steps",
            self.operations, self.partitions, self.steps
        );
        match &self.verdict {
            Verdict::Linearizable => write!(f, "linearizable: {figures}"),
            Verdict::Unknown {
                partition,
                max_steps,
            } => write!(
                f,
                "unknown: the search ran out of its {max_steps} steps on {partition} \
                 ({} undecided partition(s), no violation found; {figures})",
                self.undecided_partitions.len()
            ),
            Verdict::NotLinearizable(violation) => {
                write!(
                    f,
                    "NOT linearizable: {} violating partition(s) ({figures})",
                    self.violating_partitions.len()
                )?;
                if self.violating_partitions.len() > 1 {
                    write!(f, ": {}", self.violating_partitions.join(", "))?;
                }
                write!(f, "\n{violation}")
            }
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} operations): explainable until time {}, not after:",
            partition_name(self.partition.as_deref()),
            self.partition_ops,
            self.until
        )?;
        writeln!(f, "  nothing explains the answer of {}", self.last_straw)?;
        writeln!(
            f,
            "  the {} operation(s) invoked by then{}:",
            self.prefix_len,
            if self.prefix_len > self.prefix.len() {
                format!(" (first {})", self.prefix.len())
            } else {
                String::new()
            }
        )?;
        for op in &self.prefix {
            writeln!(f, "    {op}")?;
        }
        match &self.dead_end {
            None => writeln!(
                f,
                "  (the search for the deepest dead end ran out of steps)"
            ),
            Some(dead_end) => write!(f, "{dead_end}"),
        }
    }
}

impl fmt::Display for DeadEndReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  longest linearizable order found ({} operation(s)), state after each:",
            self.linearized.len()
        )?;
        for (op, state) in &self.linearized {
            writeln!(f, "    {op}  => {state}")?;
        }
        writeln!(
            f,
            "  from state {}, {} had to take effect next; candidates:",
            self.state, self.blocked
        )?;
        for candidate in &self.candidates {
            let verdict = if candidate.fits {
                "fits, but every order after it fails"
            } else {
                "does not fit"
            };
            writeln!(
                f,
                "    {}: the model answers {} ({verdict})",
                candidate.op, candidate.model_answer
            )?;
        }
        Ok(())
    }
}
