//! The hostile behaviours and the WASI probes.
//!
//! The probes call what a guest author would (std's clocks, environment and
//! files) and, on WASI, the raw imports too (`wasip2`), so the result shows
//! exactly what the host answered. Everything they return must be the same
//! on every replica for the same entry.

use std::fmt::Write as _;
use std::hint::black_box;

/// Size of each allocation of [`exhaust_memory`].
const CHUNK_BYTES: usize = 1024 * 1024;
/// Stride of the writes that make each chunk's pages really used.
const PAGE_BYTES: usize = 4096;
/// Work done between two clock readings in [`time`], so that a clock that
/// moved would show it.
const TIMED_SPINS: u64 = 100_000;
/// Random bytes read in [`random`].
const RANDOM_BYTES: u64 = 16;

/// Never returns; only the host's fuel limit ends it.
pub fn spin_forever(seed: u64) -> ! {
    let mut spins = seed;
    loop {
        // `black_box` makes every iteration observable to the optimizer, so
        // the loop is compiled as a real loop that burns fuel.
        spins = black_box(spins.wrapping_add(1));
    }
}

/// Allocate and touch 1 MiB chunks until the allocator fails, which aborts
/// (a trap). Unbounded on purpose: the host's memory cap must stop it (and
/// wasm32's 4 GiB address space would).
pub fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0_u8; CHUNK_BYTES];
        for byte in chunk.iter_mut().step_by(PAGE_BYTES) {
            *byte = 1;
        }
        // Keeps the optimizer from eliding the allocations.
        hoard.push(black_box(chunk));
        black_box(&mut hoard);
    }
}

/// `len` bytes of [`crate::huge_byte`]. Built by doubling copies (bulk
/// memory), so even 64 MiB costs little fuel: the size, not the work, is
/// what is hostile here.
pub fn huge(len: usize) -> Vec<u8> {
    let alphabet: Vec<u8> = (0..26).map(crate::huge_byte).collect();
    let mut bytes = alphabet.repeat(len.div_ceil(alphabet.len()));
    bytes.truncate(len);
    bytes
}

/// An error message of `len` U+0001 characters: the worst case for JSON,
/// which escapes each as six bytes (`\u0001`).
pub fn failure_message(len: usize) -> String {
    "\u{1}".repeat(len)
}

/// Recurse `depth` calls deep and return the depth counted on the way back.
/// Not a tail call, so every level holds a frame: deep enough, this
/// overflows a stack and traps.
#[inline(never)]
pub fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    1 + black_box(recurse(black_box(depth - 1)))
}

/// Hex bit patterns of NaNs made by arithmetic, which hardware leaves
/// different (x86's `0.0 / 0.0` has the sign bit set, and a payload
/// survives arithmetic): division, square root, `inf - inf`, a signalling
/// NaN with a payload plus one, and an `f32` division. With NaN
/// canonicalization every one is the canonical quiet NaN.
pub fn nan_bits() -> String {
    // Two black boxes per operation (not `x / x`): the optimizer must not
    // see the operands, and the operations are NaN-making on purpose.
    let f64s = [
        black_box(0.0_f64) / black_box(0.0_f64),
        black_box(-1.0_f64).sqrt(),
        black_box(f64::INFINITY) - black_box(f64::INFINITY),
        f64::from_bits(black_box(0x7ff0_0000_0000_0001)) + black_box(1.0),
    ];
    let f32_nan = black_box(0.0_f32) / black_box(0.0_f32);
    let mut out = String::new();
    for nan in f64s {
        let _ = write!(out, "{:016x} ", nan.to_bits());
    }
    let _ = write!(out, "{:08x}", f32_nan.to_bits());
    out
}

/// The wall clock (ms since the epoch), the monotonic clock (ns), the time
/// that passed over some work (ns), and the entry's timestamp.
pub fn time(meta_ms: u64) -> String {
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let started = std::time::Instant::now();
    let mut spins = 0_u64;
    while spins < TIMED_SPINS {
        spins = black_box(spins + 1);
    }
    let elapsed_ns = started.elapsed().as_nanos();
    format!(
        "wall_ms={wall_ms} mono_ns={} elapsed_ns={elapsed_ns} meta_ms={meta_ms}",
        raw::monotonic_ns()
    )
}

/// Secure random bytes, a secure random u64, an insecure random u64 and the
/// insecure seed, hex.
pub fn random() -> String {
    let (bytes, secure, insecure, (seed_a, seed_b)) = raw::random(RANDOM_BYTES);
    let mut out = String::new();
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    let _ = write!(out, " {secure:016x} {insecure:016x} {seed_a:x}:{seed_b:x}");
    out
}

/// How many environment variables and arguments the guest sees, and its
/// working directory.
pub fn env() -> String {
    let cwd = match std::env::current_dir() {
        Ok(dir) => dir.display().to_string(),
        Err(error) => format!("{:?}", error.kind()),
    };
    format!(
        "vars={} args={} cwd={cwd} raw_vars={} raw_cwd={:?}",
        std::env::vars_os().count(),
        std::env::args_os().count(),
        raw::environment_len(),
        raw::initial_cwd(),
    )
}

/// What reading, listing and writing files gives, and how many preopened
/// directories there are.
pub fn file() -> String {
    let kind = |result: std::io::Result<()>| match result {
        Ok(()) => "ok".to_string(),
        Err(error) => format!("{:?}", error.kind()),
    };
    format!(
        "read={} list={} write={} preopens={}",
        kind(std::fs::read("/etc/hostname").map(drop)),
        kind(std::fs::read_dir("/").map(drop)),
        kind(std::fs::write("hostile-mix.txt", b"escaped")),
        raw::preopens_len(),
    )
}

/// The raw WASI 0.2 imports.
#[cfg(target_os = "wasi")]
mod raw {
    use wasip2::{cli, clocks, filesystem, random as rng};

    pub fn monotonic_ns() -> u64 {
        clocks::monotonic_clock::now()
    }

    pub fn random(len: u64) -> (Vec<u8>, u64, u64, (u64, u64)) {
        (
            rng::random::get_random_bytes(len),
            rng::random::get_random_u64(),
            rng::insecure::get_insecure_random_u64(),
            rng::insecure_seed::insecure_seed(),
        )
    }

    pub fn environment_len() -> usize {
        cli::environment::get_environment().len()
    }

    pub fn initial_cwd() -> Option<String> {
        cli::environment::initial_cwd()
    }

    pub fn preopens_len() -> usize {
        filesystem::preopens::get_directories().len()
    }
}

/// Natively (unit tests) there is no WASI: fixed answers.
#[cfg(not(target_os = "wasi"))]
mod raw {
    pub fn monotonic_ns() -> u64 {
        0
    }

    pub fn random(len: u64) -> (Vec<u8>, u64, u64, (u64, u64)) {
        (vec![0; len as usize], 0, 0, (0, 0))
    }

    pub fn environment_len() -> usize {
        0
    }

    pub fn initial_cwd() -> Option<String> {
        None
    }

    pub fn preopens_len() -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_recursion_counts_its_depth() {
        assert_eq!(recurse(0), 0);
        assert_eq!(recurse(500), 500);
    }

    #[test]
    fn t10_nan_bits_are_nans() {
        let bits = nan_bits();
        let fields: Vec<&str> = bits.split(' ').collect();
        assert_eq!(fields.len(), 5);
        for field in &fields[..4] {
            let value = f64::from_bits(u64::from_str_radix(field, 16).expect("hex"));
            assert!(value.is_nan(), "{field}");
        }
    }
}
