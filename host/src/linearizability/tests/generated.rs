//! Histories of a sequential execution with random overlapping timing are
//! linearizable, and a read changed to an impossible value is caught, at
//! that read.

use proptest::prelude::*;

use super::super::*;

const CLIENTS: usize = 8;

/// One step of the execution: who, what, and its timing and fate.
#[derive(Debug, Clone)]
struct Step {
    client: usize,
    command: String,
    /// How long before its effect the client sent it.
    lead: u64,
    /// How long after its effect the client heard back.
    lag: u64,
    /// Time between this effect and the previous one, less one.
    gap: u64,
    /// See [`Fate`].
    fate: Fate,
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Answered,
    /// Not applied.
    Failed,
    /// Timed out, but applied.
    Applied,
    /// Timed out and never applied.
    Lost,
}

/// Each step fails, is applied without an answer, or is lost with
/// probability `1 / one_in` each.
///
/// Many unknown outcomes in one partition make proving a violation
/// expensive (every subset of them may have been applied, see the search
/// module), so the unpartitioned cases use fewer.
fn steps(
    command: impl Strategy<Value = String>,
    one_in: u8,
    max_len: usize,
) -> impl Strategy<Value = Vec<Step>> {
    let fate = (0..one_in).prop_map(move |draw| match one_in - 1 - draw {
        0 => Fate::Lost,
        1 => Fate::Applied,
        2 => Fate::Failed,
        _ => Fate::Answered,
    });
    let step = (0..CLIENTS, command, 0..5u64, 0..5u64, 0..2u64, fate).prop_map(
        |(client, command, lead, lag, gap, fate)| Step {
            client,
            command,
            lead,
            lag,
            gap,
            fate,
        },
    );
    prop::collection::vec(step, 1..max_len)
}

/// Run the steps one after the other on the model; each takes effect at its
/// own instant, inside an interval around it that the client records.
fn execute<M: Model>(
    model: &M,
    steps: &[Step],
    reply: impl Fn(&M::Input, M::Output) -> Reply,
) -> History {
    let mut state = model.init();
    let mut now = 0;
    let mut busy_until = [0; CLIENTS];
    let mut ops = Vec::with_capacity(steps.len());
    for step in steps {
        let client = step.client;
        // The client must be free before this effect.
        now = (now + 1 + step.gap).max(busy_until[client] + 1);
        let invoke = (busy_until[client] + 1).max(now - step.lead.min(now));
        let complete = now + step.lag;
        busy_until[client] = complete;
        let input = model
            .parse_input(&step.command)
            .expect("generated commands parse");
        let outcome = match step.fate {
            Fate::Answered => {
                let (after, output) = model.step(&state, &input);
                state = after;
                Outcome::Ok {
                    complete,
                    output: reply(&input, output),
                }
            }
            Fate::Failed => Outcome::Fail { complete },
            Fate::Applied => {
                state = model.step(&state, &input).0;
                Outcome::Unknown
            }
            Fate::Lost => Outcome::Unknown,
        };
        ops.push(Operation {
            id: OpId(ops.len() as u64),
            client: ClientId(client as u64),
            input: step.command.clone(),
            invoke,
            outcome,
        });
    }
    History::new(ops)
}

fn kv_reply(input: &KvInput, output: KvOutput) -> Reply {
    match (input, output) {
        (_, KvOutput::Text(text)) => Ok(text),
        (KvInput::Get { key }, KvOutput::NotFound) => Err(format!("key not found: {key}")),
        (_, other) => panic!("the model answered {other:?}"),
    }
}

fn counter_reply(_: &CounterInput, output: CounterOutput) -> Reply {
    match output {
        CounterOutput::Value(value) => Ok(value.to_string()),
        CounterOutput::Overflow => Err("overflow".to_owned()),
    }
}

/// kv commands on `keys` keys; with `count`, some `count`s too, which make
/// the history one partition.
fn kv_command(keys: u8, count: bool) -> impl Strategy<Value = String> {
    (0..if count { 5u8 } else { 4 }, 0..keys, 0..4u8).prop_map(|(kind, key, value)| match kind {
        0 => format!("put k{key} v{value}"),
        1 => format!("delete k{key}"),
        2 | 3 => format!("get k{key}"),
        _ => "count".to_owned(),
    })
}

fn counter_command() -> impl Strategy<Value = String> {
    (0..3u8, 1..5i64).prop_map(|(kind, amount)| match kind {
        0 => format!("add {amount}"),
        _ => "get".to_owned(),
    })
}

/// A budget far above what these histories need (the worst of 20,000
/// unpartitioned kv histories took 230k steps to prove a violation), low
/// enough that a regression fails in seconds rather than minutes.
const TEST_OPTIONS: CheckOptions = CheckOptions {
    max_steps: 2_000_000,
};

fn check_generated<M: Model>(model: &M, history: &History) -> Report {
    check_with(model, history, &TEST_OPTIONS).expect("well formed")
}

/// Change the answer of the `pick`-th answered read to `impossible`; check
/// that the history is caught exactly at that read.
fn mutate_and_check<M: Model>(
    model: &M,
    mut history: History,
    is_read: impl Fn(&str) -> bool,
    pick: usize,
    impossible: &str,
) -> Result<(), TestCaseError> {
    let reads: Vec<usize> = history
        .ops
        .iter()
        .enumerate()
        .filter(|(_, op)| is_read(&op.input) && matches!(op.outcome, Outcome::Ok { .. }))
        .map(|(index, _)| index)
        .collect();
    prop_assume!(!reads.is_empty());
    let target = reads[pick % reads.len()];
    let Outcome::Ok { complete, output } = &mut history.ops[target].outcome else {
        unreachable!("picked among answered reads")
    };
    *output = Ok(impossible.to_owned());
    let complete = *complete;
    let report = check_generated(model, &history);
    let violation = report
        .verdict
        .violation()
        .ok_or_else(|| TestCaseError::fail(format!("not caught: {report}")))?;
    // Everything before that answer arrived is explainable; with it, nothing.
    prop_assert_eq!(violation.until, complete, "{}", report);
    prop_assert!(violation.dead_end.is_some(), "{}", report);
    Ok(())
}

/// The seed `cargo test` draws its cases from, unless `PROPTEST_RNG_SEED`
/// names another (`PROPTEST_RNG_SEED=$RANDOM` explores new ones). Random
/// draws on every run once produced a history whose check ran for over
/// seven minutes in a debug build and held up the whole suite (the search
/// is exponential in unknown outcomes per key, bounded by `max_steps`
/// per check, and a failing case is shrunk with many more checks).
const CASES_SEED: u64 = 1;

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let rng_seed = if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
        default.rng_seed
    } else {
        proptest::test_runner::RngSeed::Fixed(CASES_SEED)
    };
    ProptestConfig {
        cases: 100,
        rng_seed,
        ..default
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn t85_kv_sequential_executions_are_linearizable(
        steps in steps(kv_command(6, false), 9, 150),
        pick in any::<usize>(),
    ) {
        let history = execute(&KvModel, &steps, kv_reply);
        let report = check_generated(&KvModel, &history);
        prop_assert!(report.verdict.is_linearizable(), "{}", report);
        mutate_and_check(&KvModel, history, |input| input.starts_with("get"), pick, "never written")?;
    }

    #[test]
    fn t86_kv_unpartitioned_executions_are_linearizable(
        steps in steps(kv_command(3, true), 20, 100),
        pick in any::<usize>(),
    ) {
        let history = execute(&KvModel, &steps, kv_reply);
        let report = check_generated(&KvModel, &history);
        prop_assert!(report.verdict.is_linearizable(), "{}", report);
        mutate_and_check(&KvModel, history, |input| input.starts_with("get"), pick, "never written")?;
    }

    #[test]
    fn t87_counter_sequential_executions_are_linearizable(
        steps in steps(counter_command(), 12, 150),
        pick in any::<usize>(),
    ) {
        let history = execute(&CounterModel, &steps, counter_reply);
        let report = check_generated(&CounterModel, &history);
        prop_assert!(report.verdict.is_linearizable(), "{}", report);
        // Only positive additions: the counter is never negative.
        mutate_and_check(&CounterModel, history, |input| input == "get", pick, "-1")?;
    }

    #[test]
    fn t88_histories_survive_json_lines(steps in steps(kv_command(6, false), 9, 150)) {
        let history = execute(&KvModel, &steps, kv_reply);
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).expect("write to memory");
        prop_assert_eq!(History::read_jsonl(bytes.as_slice()).expect("read back"), history);
    }
}
