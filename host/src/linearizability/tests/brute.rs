//! The checker against a brute-force oracle on small random histories, most
//! of them wrong: every order and every subset of unknown operations is
//! tried, no memo, no list tricks, no partitioning.

use proptest::prelude::*;

use super::super::*;

/// Whether some order of the operations explains every answer, by trying
/// them all.
fn brute_force<M: Model>(model: &M, history: &History) -> bool {
    struct Op<M: Model> {
        input: M::Input,
        invoke: u64,
        done: Option<(u64, M::Output)>,
    }
    let ops: Vec<Op<M>> = history
        .ops
        .iter()
        .filter_map(|op| {
            let input = model
                .parse_input(&op.input)
                .expect("generated inputs parse");
            let done = match &op.outcome {
                Outcome::Fail { .. } => return None,
                Outcome::Unknown => None,
                Outcome::Ok { complete, output } => Some((
                    *complete,
                    model
                        .parse_output(&input, output)
                        .expect("generated outputs parse"),
                )),
            };
            Some(Op {
                input,
                invoke: op.invoke,
                done,
            })
        })
        .collect();

    fn place<M: Model>(model: &M, ops: &[Op<M>], placed: &mut Vec<bool>, state: &M::State) -> bool {
        let complete = ops
            .iter()
            .zip(placed.iter())
            .all(|(op, &placed)| placed || op.done.is_none());
        if complete {
            return true;
        }
        for next in 0..ops.len() {
            // Everything that completed before `next` was invoked goes first.
            let ready = !placed[next]
                && ops.iter().zip(placed.iter()).all(|(before, &placed)| {
                    placed
                        || before
                            .done
                            .as_ref()
                            .is_none_or(|(complete, _)| *complete >= ops[next].invoke)
                });
            if !ready {
                continue;
            }
            let (after, answer) = model.step(state, &ops[next].input);
            if ops[next]
                .done
                .as_ref()
                .is_some_and(|(_, recorded)| *recorded != answer)
            {
                continue;
            }
            placed[next] = true;
            if place(model, ops, placed, &after) {
                return true;
            }
            placed[next] = false;
        }
        false
    }
    place(model, &ops, &mut vec![false; ops.len()], &model.init())
}

/// One operation: what, when, and how it ended. Each has its own client, so
/// any overlap is allowed.
type Raw = (u8, u8, u8, u64, u64, u8);

fn raw_ops() -> impl Strategy<Value = Vec<Raw>> {
    prop::collection::vec((0..3u8, 0..2u8, 0..4u8, 0..12u64, 0..8u64, 0..6u8), 1..=7)
}

/// `fate` 0..=3: answered `output`; 4: unknown; 5: failed.
fn history(raw: &[Raw], op: impl Fn(u8, u8, u8) -> (String, Reply)) -> History {
    History::new(
        raw.iter()
            .enumerate()
            .map(|(index, &(kind, key, output, invoke, duration, fate))| {
                let (input, reply) = op(kind, key, output);
                let outcome = match fate {
                    0..=3 => Outcome::Ok {
                        complete: invoke + duration,
                        output: reply,
                    },
                    4 => Outcome::Unknown,
                    _ => Outcome::Fail {
                        complete: invoke + duration,
                    },
                };
                Operation {
                    id: OpId(index as u64),
                    client: ClientId(index as u64),
                    input,
                    invoke,
                    outcome,
                }
            })
            .collect(),
    )
}

fn kv_op(kind: u8, key: u8, output: u8) -> (String, Reply) {
    let key = ["a", "b"][usize::from(key)];
    match kind {
        0 => (format!("put {key} {}", output % 2 + 1), Ok("OK".to_owned())),
        1 => (format!("delete {key}"), Ok((output % 2).to_string())),
        _ => (
            format!("get {key}"),
            match output {
                0 => Err(format!("key not found: {key}")),
                value => Ok(value.to_string()),
            },
        ),
    }
}

fn counter_op(kind: u8, amount: u8, output: u8) -> (String, Reply) {
    match kind {
        0 => (format!("add {}", amount + 1), Ok(output.to_string())),
        1 => ("sub 1".to_owned(), Ok(output.to_string())),
        _ => ("get".to_owned(), Ok(output.to_string())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn t80_kv_agrees_with_brute_force(raw in raw_ops()) {
        let history = history(&raw, kv_op);
        let report = check(&KvModel, &history).expect("well formed");
        let decided = !matches!(report.verdict, Verdict::Unknown { .. });
        prop_assert!(decided, "{}", report);
        prop_assert_eq!(
            report.verdict.is_linearizable(),
            brute_force(&KvModel, &history),
            "{}", report
        );
    }

    #[test]
    fn t81_counter_agrees_with_brute_force(raw in raw_ops()) {
        let history = history(&raw, counter_op);
        let report = check(&CounterModel, &history).expect("well formed");
        prop_assert_eq!(
            report.verdict.is_linearizable(),
            brute_force(&CounterModel, &history),
            "{}", report
        );
    }
}
