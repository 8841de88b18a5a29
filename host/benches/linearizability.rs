//! How long the linearizability checker takes on test-sized histories.
//!
//! `cargo bench --bench linearizability` prints one line per case: a
//! sequential execution of the model recorded with random overlapping
//! timing (8 clients, each operation overlapping a few others), checked
//! `RUNS` times; the median and fastest run are reported. The history is
//! seeded, so every run checks the same one.

#[path = "common/allocator.rs"]
mod allocator;

use std::time::{Duration, Instant};

use iroh_raft::linearizability::{
    ClientId, CounterInput, CounterModel, CounterOutput, History, KvInput, KvModel, KvOutput,
    Model, OpId, Operation, Outcome, Reply, Report, check,
};

const OPS: usize = 10_000;
const KEYS: u64 = 100;
const CLIENTS: usize = 8;
const RUNS: usize = 7;
const SEED: u64 = 0x5eed_2024;

/// splitmix64: enough randomness for timing and commands, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Run `OPS` random commands one after the other on the model; each takes
/// effect at its own instant inside the interval its client records. A
/// `unknown_percent` share of them time out (half of those applied).
fn execute<M: Model>(
    model: &M,
    rng: &mut Rng,
    unknown_percent: u64,
    mut command: impl FnMut(&mut Rng) -> String,
    reply: impl Fn(&M::Input, M::Output) -> Reply,
) -> History {
    let mut state = model.init();
    let mut now = 0u64;
    let mut busy_until = [0u64; CLIENTS];
    let mut ops = Vec::with_capacity(OPS);
    for id in 0..OPS {
        let client = rng.below(CLIENTS as u64) as usize;
        now = (now + 1 + rng.below(2)).max(busy_until[client] + 1);
        let invoke = (busy_until[client] + 1).max(now.saturating_sub(rng.below(5)));
        let complete = now + rng.below(5);
        busy_until[client] = complete;
        let text = command(rng);
        let input = model.parse_input(&text).expect("generated commands parse");
        let outcome = if rng.below(100) < unknown_percent {
            if rng.below(2) == 0 {
                state = model.step(&state, &input).0;
            }
            Outcome::Unknown
        } else {
            let (after, output) = model.step(&state, &input);
            state = after;
            Outcome::Ok {
                complete,
                output: reply(&input, output),
            }
        };
        ops.push(Operation {
            id: OpId(id as u64),
            client: ClientId(client as u64),
            input: text,
            invoke,
            outcome,
        });
    }
    History::new(ops)
}

fn kv_command(rng: &mut Rng, count_per_mille: u64) -> String {
    let key = rng.below(KEYS);
    if rng.below(1000) < count_per_mille {
        return "count".to_owned();
    }
    match rng.below(4) {
        0 => format!("put k{key} v{}", rng.below(1000)),
        1 => format!("delete k{key}"),
        _ => format!("get k{key}"),
    }
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

/// Check `RUNS` times; print the median and fastest, and the verdict.
fn measure<M: Model>(name: &str, model: &M, history: &History, expect_linearizable: bool) {
    let mut times = Vec::with_capacity(RUNS);
    let mut last: Option<Report> = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let report = check(model, history).expect("a well-formed history");
        times.push(start.elapsed());
        last = Some(report);
    }
    let report = last.expect("RUNS > 0");
    assert_eq!(
        report.verdict.is_linearizable(),
        expect_linearizable,
        "{name}: {report}"
    );
    times.sort_unstable();
    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    println!(
        "{name:<52} median {:>7.1} ms  fastest {:>7.1} ms  {:>9} steps  {:>4} partitions  {}",
        ms(times[RUNS / 2]),
        ms(times[0]),
        report.steps,
        report.partitions,
        if report.verdict.is_linearizable() {
            "linearizable"
        } else if report.verdict.is_violation() {
            "NOT linearizable (explained)"
        } else {
            "unknown"
        },
    );
}

fn main() {
    println!(
        "linearizability checker: {OPS} operations, {CLIENTS} clients, {RUNS} runs each, seed {SEED:#x}"
    );
    let mut rng = Rng(SEED);

    let kv = execute(&KvModel, &mut rng, 0, |rng| kv_command(rng, 0), kv_reply);
    measure(
        &format!("kv, {KEYS} keys, all answered"),
        &KvModel,
        &kv,
        true,
    );

    let timeouts = execute(&KvModel, &mut rng, 5, |rng| kv_command(rng, 0), kv_reply);
    measure(
        &format!("kv, {KEYS} keys, 5% timed out (half applied)"),
        &KvModel,
        &timeouts,
        true,
    );

    // One read answered with a value nobody wrote, late in the history:
    // the time to find it and explain it.
    let mut broken = kv.clone();
    let read = broken
        .ops
        .iter()
        .rposition(|op| op.input.starts_with("get") && matches!(op.outcome, Outcome::Ok { .. }))
        .expect("reads in 10k random ops");
    if let Outcome::Ok { output, .. } = &mut broken.ops[read].outcome {
        *output = Ok("never written".to_owned());
    }
    measure(
        &format!("kv, {KEYS} keys, one impossible read"),
        &KvModel,
        &broken,
        false,
    );
    // What a person reading a failed run sees (its first lines).
    let report = check(&KvModel, &broken).expect("a well-formed history");
    for line in report.to_string().lines().take(4) {
        println!("    | {line}");
    }

    let whole = execute(&KvModel, &mut rng, 0, |rng| kv_command(rng, 10), kv_reply);
    measure(
        &format!("kv, {KEYS} keys, 1% count (one partition)"),
        &KvModel,
        &whole,
        true,
    );

    let counter = execute(
        &CounterModel,
        &mut rng,
        0,
        |rng| match rng.below(2) {
            0 => format!("add {}", rng.below(10) + 1),
            _ => "get".to_owned(),
        },
        counter_reply,
    );
    measure(
        "counter (one partition), all answered",
        &CounterModel,
        &counter,
        true,
    );
}
