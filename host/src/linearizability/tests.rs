//! Known histories, linearizable or not, and the checker's edges.

use super::*;

mod brute;
mod generated;

/// Builds a history by hand; ids are given in order and every operation has
/// its own client unless one is named.
#[derive(Default)]
struct Build {
    ops: Vec<Operation>,
}

impl Build {
    fn push(mut self, client: u64, input: &str, invoke: u64, outcome: Outcome) -> Self {
        self.ops.push(Operation {
            id: OpId(self.ops.len() as u64),
            client: ClientId(client),
            input: input.to_owned(),
            invoke,
            outcome,
        });
        self
    }

    fn next_client(&self) -> u64 {
        100 + self.ops.len() as u64
    }

    /// Completed with an `Ok` answer.
    fn ok(self, input: &str, invoke: u64, complete: u64, output: &str) -> Self {
        let client = self.next_client();
        self.push(
            client,
            input,
            invoke,
            Outcome::Ok {
                complete,
                output: Ok(output.to_owned()),
            },
        )
    }

    /// `get key` answered "key not found".
    fn missing(self, key: &str, invoke: u64, complete: u64) -> Self {
        let client = self.next_client();
        self.push(
            client,
            &format!("get {key}"),
            invoke,
            Outcome::Ok {
                complete,
                output: Err(format!("key not found: {key}")),
            },
        )
    }

    fn unknown(self, input: &str, invoke: u64) -> Self {
        let client = self.next_client();
        self.push(client, input, invoke, Outcome::Unknown)
    }

    fn fail(self, input: &str, invoke: u64, complete: u64) -> Self {
        let client = self.next_client();
        self.push(client, input, invoke, Outcome::Fail { complete })
    }

    fn history(self) -> History {
        History::new(self.ops)
    }
}

fn kv(build: Build) -> Report {
    let report = check(&KvModel, &build.history()).expect("a well-formed kv history");
    eprintln!("{report}");
    report
}

fn counter(build: Build) -> Report {
    let report = check(&CounterModel, &build.history()).expect("a well-formed counter history");
    eprintln!("{report}");
    report
}

fn assert_linearizable(report: &Report) {
    assert!(report.verdict.is_linearizable(), "{report}");
}

fn violation(report: &Report) -> &Violation {
    report
        .verdict
        .violation()
        .unwrap_or_else(|| panic!("expected a violation: {report}"))
}

#[test]
fn t10_sequential_and_empty_histories() {
    assert_linearizable(&kv(Build::default()));
    let report = kv(Build::default()
        .missing("x", 1, 2)
        .ok("put x 1", 3, 4, "OK")
        .ok("get x", 5, 6, "1")
        .ok("put x two words", 7, 8, "OK")
        .ok("get x", 9, 10, "two words")
        .ok("delete x", 11, 12, "1")
        .ok("delete x", 13, 14, "0")
        .missing("x", 15, 16));
    assert_linearizable(&report);
    assert_eq!((report.operations, report.partitions), (8, 1));
}

#[test]
fn t11_a_read_concurrent_with_a_write_may_see_either() {
    for seen in [Some("1"), None] {
        let build = Build::default().ok("put x 1", 1, 10, "OK");
        let build = match seen {
            Some(value) => build.ok("get x", 2, 3, value),
            None => build.missing("x", 2, 3),
        };
        assert_linearizable(&kv(build));
    }
}

#[test]
fn t20_stale_read_after_an_acknowledged_write() {
    let report = kv(Build::default()
        .ok("put x 1", 1, 2, "OK")
        .ok("put x 2", 3, 4, "OK")
        .ok("get x", 5, 6, "1"));
    let violation = violation(&report);
    assert_eq!(violation.partition.as_deref(), Some("x"));
    assert_eq!(violation.last_straw.input, "get x");
    assert_eq!(violation.until, 6);
    let dead_end = violation.dead_end.as_ref().expect("a small search");
    assert_eq!(dead_end.linearized.len(), 2, "both puts fit, in order");
    assert_eq!(dead_end.state, r#"{"x": "2"}"#);
    assert_eq!(dead_end.blocked.input, "get x");
    assert_eq!(dead_end.candidates.len(), 1);
    assert_eq!(dead_end.candidates[0].model_answer, r#""2""#);
    assert!(!dead_end.candidates[0].fits);
    let text = report.to_string();
    assert!(text.contains("NOT linearizable"), "{text}");
    assert!(text.contains(r#"key "x""#), "{text}");
    assert!(
        text.contains(r#"the model answers "2" (does not fit)"#),
        "{text}"
    );
}

#[test]
fn t21_lost_acknowledged_write() {
    let report = kv(Build::default()
        .ok("put x 1", 1, 2, "OK")
        .missing("x", 3, 4));
    assert_eq!(violation(&report).last_straw.input, "get x");

    // The counter: two acknowledged increments, then a read that saw one.
    let report = counter(
        Build::default()
            .ok("add 1", 1, 4, "1")
            .ok("add 1", 2, 5, "2")
            .ok("get", 6, 7, "1"),
    );
    let violation = violation(&report);
    assert_eq!(violation.partition, None);
    assert!(report.to_string().contains("the whole history"), "{report}");
}

#[test]
fn t22_read_of_a_value_never_written() {
    let report = kv(Build::default()
        .ok("put x 1", 1, 2, "OK")
        .ok("get x", 3, 4, "7"));
    let violation = violation(&report);
    assert_eq!(violation.until, 4);
    // `delete` claims the key existed though it never did.
    let report = kv(Build::default().ok("delete y", 1, 2, "1"));
    assert!(report.verdict.is_violation(), "{report}");
    // An error where the model has an answer.
    let report = kv(Build::default().push(
        1,
        "put x 1",
        1,
        Outcome::Ok {
            complete: 2,
            output: Err("boom".to_owned()),
        },
    ));
    assert!(report.verdict.is_violation(), "{report}");
}

#[test]
fn t23_concurrent_operations_fine_in_one_order_only() {
    // Two overlapping writes; a later read pins `put x 2` first, which the
    // search reaches only by backtracking from the time order.
    let report = kv(Build::default()
        .ok("put x 1", 1, 10, "OK")
        .ok("put x 2", 2, 10, "OK")
        .ok("get x", 11, 12, "1"));
    assert_linearizable(&report);

    // A read sees the concurrent write, a later one sees the old value:
    // values cannot go back.
    let build = Build::default()
        .ok("put x 1", 1, 20, "OK")
        .missing("x", 2, 3)
        .ok("get x", 4, 5, "1");
    assert_linearizable(&kv(Build {
        ops: build.ops.clone(),
    }));
    let report = kv(build.missing("x", 6, 7));
    let violation = violation(&report);
    assert_eq!(violation.until, 7);
    let dead_end = violation.dead_end.as_ref().expect("small");
    assert_eq!(dead_end.state, r#"{"x": "1"}"#);

    // Counter: three concurrent adds whose answers fix one order.
    assert_linearizable(&counter(
        Build::default()
            .ok("add 1", 1, 10, "6")
            .ok("add 2", 1, 10, "2")
            .ok("add 3", 1, 10, "5"),
    ));
    assert!(
        counter(
            Build::default()
                .ok("add 1", 1, 10, "6")
                .ok("add 2", 1, 10, "2")
                .ok("add 3", 1, 10, "4"),
        )
        .verdict
        .is_violation()
    );
}

#[test]
fn t30_unknown_outcomes_may_or_may_not_have_happened() {
    // Seen: it happened.
    assert_linearizable(&kv(Build::default()
        .unknown("put x 1", 1)
        .ok("get x", 5, 6, "1")));
    // Not seen: it has not happened (yet).
    assert_linearizable(&kv(Build::default()
        .unknown("put x 1", 1)
        .missing("x", 5, 6)));
    // Not seen, then seen: it happened in between.
    assert_linearizable(&kv(Build::default()
        .unknown("put x 1", 1)
        .missing("x", 5, 6)
        .ok("get x", 7, 8, "1")));
    // It may take effect long after a later acknowledged write.
    assert_linearizable(&kv(Build::default()
        .unknown("put x 1", 1)
        .ok("put x 2", 2, 3, "OK")
        .ok("get x", 4, 5, "2")
        .ok("get x", 6, 7, "1")));
    // But only once: seen, then gone, then seen again is not one write.
    let report = kv(Build::default()
        .unknown("put x 1", 1)
        .ok("get x", 2, 3, "1")
        .ok("put x 2", 4, 5, "OK")
        .ok("get x", 6, 7, "1"));
    assert_eq!(violation(&report).until, 7);
    // And never before it was sent.
    let report = kv(Build::default()
        .ok("get x", 1, 2, "1")
        .unknown("put x 1", 3));
    assert_eq!(violation(&report).until, 2);
    // An unknown read constrains nothing and is not even searched.
    let report = kv(Build::default()
        .ok("put x 1", 1, 2, "OK")
        .unknown("get x", 3));
    assert_linearizable(&report);
    assert_eq!(report.operations, 1);
}

#[test]
fn t31_failed_operations_did_not_happen() {
    let report = kv(Build::default()
        .fail("put x 1", 1, 2)
        .ok("get x", 3, 4, "1"));
    assert!(report.verdict.is_violation(), "{report}");
    assert_eq!(report.operations, 1);
    assert_linearizable(&kv(Build::default()
        .fail("put x 1", 1, 2)
        .missing("x", 3, 4)));
}

#[test]
fn t40_partitions_are_checked_independently() {
    let mut build = Build::default();
    for key in 0..20 {
        let start = key * 10;
        build = build
            .ok(&format!("put k{key} {key}"), start, start + 2, "OK")
            .ok(
                &format!("get k{key}"),
                start + 3,
                start + 4,
                &key.to_string(),
            );
    }
    // Two stale reads, on k13 and k5.
    let build = build
        .ok("put k13 new", 300, 301, "OK")
        .ok("get k13", 302, 303, "13")
        .ok("put k5 new", 300, 301, "OK")
        .ok("get k5", 302, 303, "5");
    let report = kv(build);
    assert_eq!(report.partitions, 20);
    assert_eq!(report.violating_partitions, [r#"key "k13""#, r#"key "k5""#]);
    assert_eq!(
        violation(&report).partition.as_deref(),
        Some("k13"),
        "the first in key order is explained"
    );
    assert_eq!(violation(&report).partition_ops, 4);

    // `count` reads every key: one partition, and it must see both puts.
    let report = kv(Build::default()
        .ok("put a 1", 1, 2, "OK")
        .ok("put b 1", 1, 2, "OK")
        .ok("count", 3, 4, "1"));
    assert_eq!(report.partitions, 1);
    assert_eq!(violation(&report).partition, None);
    assert_linearizable(&kv(Build::default()
        .ok("put a 1", 1, 2, "OK")
        .ok("put b 1", 1, 5, "OK")
        .ok("count", 3, 4, "1")
        .ok("list", 3, 4, "a")));
}

#[test]
fn t50_the_step_budget_gives_unknown() {
    // Many concurrent unknown writes and a read no order of them explains:
    // every subset of them is tried.
    let mut build = Build::default();
    for value in 0..8 {
        build = build.unknown(&format!("put x {value}"), 1);
    }
    let history = build.ok("get x", 2, 3, "never").history();
    let tight = CheckOptions { max_steps: 1_000 };
    let report = check_with(&KvModel, &history, &tight).expect("well formed");
    assert!(
        matches!(
            &report.verdict,
            Verdict::Unknown { partition, max_steps: 1_000 } if partition == r#"key "x""#
        ),
        "{report}"
    );
    assert_eq!(report.steps, 1_000);
    assert!(report.to_string().starts_with("unknown"), "{report}");
    // Memoization keeps the full search to subsets (times the value x
    // holds) rather than orders: 2^8 * 9, not 8!.
    let report = check(&KvModel, &history).expect("well formed");
    assert!(report.verdict.is_violation(), "{report}");
    assert!(report.steps < 100_000, "{report}");
}

#[test]
fn t60_uncheckable_histories_are_errors() {
    let error = check(
        &KvModel,
        &Build::default().ok("frobnicate", 1, 2, "OK").history(),
    )
    .expect_err("not a kv command");
    assert!(matches!(error, HistoryError::Model { .. }), "{error}");
    let error = check(
        &CounterModel,
        &Build::default().ok("get", 1, 2, "many").history(),
    )
    .expect_err("not a number");
    assert!(error.to_string().contains("not an i64"), "{error}");
    let overlapping = Build::default()
        .push(1, "get x", 1, Outcome::Fail { complete: 5 })
        .push(1, "get y", 2, Outcome::Unknown);
    assert!(matches!(
        check(&KvModel, &overlapping.history()),
        Err(HistoryError::OverlappingClient { .. })
    ));
}

#[test]
fn t70_recorded_history_survives_a_file() {
    let recorder = Recorder::new();
    let threads: Vec<_> = (0..4)
        .map(|client| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                let key = format!("k{client}");
                for round in 0..25 {
                    let put = recorder.invoke(ClientId(client), format!("put {key} {round}"));
                    recorder.complete(put, Ok("OK".to_owned()));
                    let get = recorder.invoke(ClientId(client), format!("get {key}"));
                    recorder.complete(get, Ok(round.to_string()));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.jsonl");
    recorder.history().save(&path).expect("save");
    let history = History::load(&path).expect("load");
    assert_eq!(history, recorder.history());
    let report = check(&KvModel, &history).expect("well formed");
    assert_linearizable(&report);
    assert_eq!((report.operations, report.partitions), (200, 4));
}
