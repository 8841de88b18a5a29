//! The kv guest in Rust, Python and JavaScript: the same commands give the
//! same results, byte for byte, and the same snapshots (all three write the
//! Rust guest's snapshot format, so each restores the others' snapshots).
//! The store-backed kv guest (WIT 0.2.0) in the three languages gives the
//! kv guest's results too, and leaves in the host's store exactly the
//! pairs of kv's snapshot.

use iroh_raft::wasm::conformance::{self, ScriptMachine, Step, StepResult};
use iroh_raft::wasm::{GuestLimits, StateMachine, StoreMachine};

use crate::polyglot;

/// Commands that probe every corner of the grammar: whitespace, line
/// endings, Unicode in keys (ordering across UTF-16 surrogates, UTF-8
/// lengths), quoting in error messages, invalid UTF-8, limits.
fn tricky_commands() -> Vec<Vec<u8>> {
    let mut text: Vec<String> = [
        "put greeting hello world",
        "get greeting",
        "put  k  two  spaces ",
        "get k",
        "put k",
        "put k ",
        "get k",
        "put ключ значение",
        "put 😀 emoji",
        "put \u{e000} private use",
        "put \u{ffff} last of the plane",
        "put user/1 alice",
        "put user/2 bob",
        "put userx carol",
        "list",
        "list user/",
        "list user",
        "list nothing",
        "  \t get greeting",
        "get greeting\n",
        "get greeting\r\n",
        "get greeting\n\n",
        "\u{feff}get greeting",
        "\u{a0}get greeting",
        "\u{85}count",
        "\u{3000}count\r\n",
        "put a\tb c",
        "put a\u{a0}b c",
        "put \u{301}a\tb x",
        "put a\u{301}\tb x",
        "put \u{200b}\tx y",
        "put x\u{1}\ty z",
        "put 'q\"\\\t v",
        "put \u{2028}x v",
        "put x\u{1f600}\u{a0} v",
        "list a b",
        "list a\tb",
        "list \u{85}",
        "count 1",
        "count",
        "delete",
        "delete a b",
        "get",
        "get a b",
        "frobnicate x",
        "PUT a b",
        "put",
        "put ",
        "",
        "\n",
        "delete user/2",
        "delete user/2",
        "get user/2",
        "count",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Limits are in UTF-8 bytes; quoting is cut at 64 characters.
    text.push("x".repeat(10_000));
    text.push(format!("put {} v", "k".repeat(1024)));
    text.push(format!("put {} v", "k".repeat(1025)));
    text.push(format!("put {} v", "é".repeat(512)));
    text.push(format!("put {} v", "é".repeat(513)));
    text.push(format!("put {} v", "😀".repeat(256)));
    text.push(format!("put {} v", "😀".repeat(257)));
    text.push(format!("put {}\t v", "é".repeat(70)));
    text.push(format!("put {}\u{a0} v", "😀".repeat(70)));
    text.push(format!("get {}", "😀".repeat(300)));
    text.push(format!("unknown{} x", "😀".repeat(70)));
    text.push(format!("get a {}", "ü".repeat(100)));
    // The largest command a node accepts (1 MiB), a value just under it.
    let big_value = "v".repeat(1024 * 1024 - "put big ".len());
    text.push(format!("put big {big_value}"));
    text.push("get big".into());
    text.push("list".into());

    let mut commands: Vec<Vec<u8>> = text.into_iter().map(String::into_bytes).collect();
    for invalid in [
        &b"\xff"[..],
        b"get \xc3",
        b"put a \xe2\x82",
        b"\xed\xa0\x80",
        b"put k \xf0\x9f\x98A",
        b"put k \xf4\x90\x80\x80",
        b"put k v\xc0\xaf",
        b"get ok\x00",
    ] {
        commands.push(invalid.to_vec());
    }
    // Invalid sequences deep inside long commands, around the JavaScript
    // guest's 64 KiB scan chunks, and at the end of the largest command.
    for at in [65_535, 65_536, 200_000] {
        let mut command = b"put k ".to_vec();
        command.resize(300_000, b'v');
        command[at - 1..at + 2].copy_from_slice(b"\xe2\x82\x28");
        commands.push(command);
    }
    let mut largest = b"put k ".to_vec();
    largest.resize(1024 * 1024 - 1, b'v');
    largest.push(0xc3);
    commands.push(largest);
    commands
}

/// A reproducible random workload over a small key space (a failing run
/// prints its seed).
fn random_steps(seed: u64, count: usize) -> Vec<Step> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let keys = ["a", "b", "user/1", "user/2", "ü", "😀", "\u{e000}", "zz"];
    let mut steps = Vec::with_capacity(count);
    for i in 0..count {
        let key = keys[(next() % keys.len() as u64) as usize];
        let command = match next() % 8 {
            0..=2 => format!("put {key} value {i} {}", "x".repeat((next() % 40) as usize)),
            3 => format!("delete {key}"),
            4 => format!("get {key}"),
            5 => format!("list {}", key.chars().next().unwrap_or('a')),
            6 => "count".to_string(),
            _ => format!("put {key}"),
        };
        steps.push(if next() % 5 == 0 {
            Step::Query(command.into_bytes())
        } else {
            Step::Apply(command.into_bytes())
        });
    }
    steps
}

fn machine(guest: &str) -> StateMachine {
    StateMachine::new(polyglot::load(guest), GuestLimits::default())
        .unwrap_or_else(|e| panic!("{guest}: {e}"))
}

/// A store-backed guest on an empty in-memory store of its own.
fn store_machine(guest: &str) -> StoreMachine {
    StoreMachine::new(
        polyglot::load(guest),
        GuestLimits::default(),
        conformance::empty_store(),
    )
    .unwrap_or_else(|e| panic!("{guest}: {e}"))
}

fn run(guest: &str, machine: &mut impl ScriptMachine, steps: &[Step]) -> Vec<StepResult> {
    conformance::run_steps(machine, steps).unwrap_or_else(|e| panic!("{guest}: {e}"))
}

/// Every guest's results must equal the Rust guest's, step by step.
fn assert_same_results(steps: &[Step], results: &[(&str, Vec<StepResult>)]) {
    let (reference_name, reference) = &results[0];
    for (name, got) in &results[1..] {
        assert_eq!(got.len(), reference.len());
        for (position, (want, have)) in reference.iter().zip(got).enumerate() {
            assert_eq!(
                want.result,
                have.result,
                "step {position} ({}): {reference_name} and {name} differ",
                steps[position].describe()
            );
        }
    }
}

fn snapshots(machines: &mut [(&str, StateMachine)]) -> Vec<Vec<u8>> {
    machines
        .iter_mut()
        .map(|(name, machine)| {
            machine
                .snapshot()
                .unwrap_or_else(|e| panic!("{name} snapshot: {e}"))
        })
        .collect()
}

#[test]
fn t81_the_same_commands_give_the_same_results_in_every_language() {
    let mut machines: Vec<(&str, StateMachine)> = polyglot::KV_GUESTS
        .iter()
        .map(|&name| (name, machine(name)))
        .collect();

    // Every tricky command as a command, then again as a query.
    let tricky = tricky_commands();
    let mut steps: Vec<Step> = tricky.iter().cloned().map(Step::Apply).collect();
    steps.extend(tricky.iter().cloned().map(Step::Query));
    let results: Vec<(&str, Vec<StepResult>)> = machines
        .iter_mut()
        .map(|(name, machine)| (*name, run(name, machine, &steps)))
        .collect();
    assert_same_results(&steps, &results);
    let ok = results[0].1.iter().filter(|r| r.result.is_ok()).count();
    assert!(
        ok > 40 && ok < steps.len() - 40,
        "the probe mixes successes and errors ({ok} ok of {})",
        steps.len()
    );
    let after_tricky = snapshots(&mut machines);
    assert!(
        after_tricky.iter().all(|s| *s == after_tricky[0]),
        "snapshots differ after the tricky commands"
    );

    let seed = 0x5eed_1234_abcd_0001;
    let random = random_steps(seed, 2_000);
    let results: Vec<(&str, Vec<StepResult>)> = machines
        .iter_mut()
        .map(|(name, machine)| (*name, run(name, machine, &random)))
        .collect();
    assert_same_results(&random, &results);
    let after_random = snapshots(&mut machines);
    assert!(
        after_random.iter().all(|s| *s == after_random[0]),
        "snapshots differ after the random workload (seed {seed:#x})"
    );
}

#[test]
fn t81_each_language_restores_the_others_snapshots() {
    let steps: Vec<Step> = random_steps(0x0dd_ba11, 300);
    let mut source = machine("kv");
    run("kv", &mut source, &steps);
    let rust_snapshot = source.snapshot().expect("snapshot");

    // Rust -> Python -> JavaScript -> Rust, continuing the workload at each hop.
    let more = random_steps(0xfee1_600d, 200);
    let expected = run("kv", &mut source, &more);
    let mut snapshot = rust_snapshot;
    for guest in ["kv_python", "kv_js", "kv"] {
        let mut target = machine(guest);
        target
            .restore(conformance::entry_for(300), &snapshot)
            .unwrap_or_else(|e| panic!("{guest} restoring the previous guest's snapshot: {e}"));
        let own = target.snapshot().expect("snapshot");
        assert_eq!(
            own, snapshot,
            "{guest} re-snapshots what it restored identically"
        );
        // The next guest restores this guest's own bytes.
        snapshot = own;
        let got = run(guest, &mut target, &more);
        assert_same_results(&more, &[("kv", expected.clone()), (guest, got)]);
    }
}

/// The kv guest's snapshot (format version 1) of a store's pairs: what kv
/// writes for a map holding exactly these keys and values.
fn kv_snapshot_of(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"IRKV\x01".to_vec();
    out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for (key, value) in pairs {
        for bytes in [key, value] {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
    out
}

#[test]
fn t81_the_store_guests_give_the_results_of_kv_in_every_language() {
    // Not the empty command: to a store guest it is the host's timer tick
    // (the Rust kv-store answers `OK`, see the store SDK's `TIMER_KEY`).
    let tricky: Vec<Vec<u8>> = tricky_commands()
        .into_iter()
        .filter(|command| !command.is_empty())
        .collect();
    let mut steps: Vec<Step> = tricky.iter().cloned().map(Step::Apply).collect();
    steps.extend(tricky.iter().cloned().map(Step::Query));
    let seed = 0x5eed_1234_abcd_0002;
    steps.extend(random_steps(seed, 2_000));

    let mut kv = machine("kv");
    let mut results = vec![("kv", run("kv", &mut kv, &steps))];
    let kv_snapshot = kv.snapshot().expect("kv snapshot");
    let mut stores = Vec::new();
    for &name in polyglot::KV_STORE_GUESTS {
        let mut machine = store_machine(name);
        results.push((name, run(name, &mut machine, &steps)));
        stores.push((name, machine));
    }
    assert_same_results(&steps, &results);
    for (name, machine) in &stores {
        // Without the guest's bookkeeping (hidden keys, first byte 0xFF:
        // the Rust kv-store's revisions).
        let mut pairs = conformance::store_contents(machine.state().as_ref())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        pairs.retain(|(key, _)| key.first() != Some(&0xFF));
        assert!(
            kv_snapshot_of(&pairs) == kv_snapshot,
            "{name} holds other pairs than kv (seed {seed:#x}): {} keys",
            pairs.len()
        );
    }
}
