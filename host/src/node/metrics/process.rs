//! The process's own metrics under the names every Prometheus client
//! library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! ...), and the build's identity (`iroh_raft_build_info`).
//!
//! Read from `/proc/self` at each scrape (Linux; elsewhere the process
//! families are left out). Several nodes in one process (the tests, an
//! embedded cluster) report the same process.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::describe::{self, Written};

/// The process's numbers at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessSample {
    /// Read `/proc/self`; `None` where there is no procfs.
    pub(crate) fn read() -> Option<ProcessSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time_seconds(&text))?;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        parse_stat(
            &stat,
            rustix::param::clock_ticks_per_second(),
            rustix::param::page_size() as u64,
            boot_time,
        )
        .map(|sample| ProcessSample {
            open_fds,
            max_fds,
            ..sample
        })
    }
}

/// `btime` of `/proc/stat`: when the machine booted, in Unix seconds.
fn boot_time_seconds(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// Parse `/proc/self/stat` (proc(5)). The command name, field 2, is in
/// parentheses and may itself hold spaces and parentheses: the fields
/// after it are counted from its last `)`.
fn parse_stat(
    stat: &str,
    ticks_per_second: u64,
    page_size: u64,
    boot_time_seconds: u64,
) -> Option<ProcessSample> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    let user = field(14)?;
    let system = field(15)?;
    let threads = field(20)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let resident_pages = field(24)?;
    Some(ProcessSample {
        cpu_seconds: (user + system) as f64 / ticks,
        resident_bytes: resident_pages * page_size,
        virtual_bytes,
        threads,
        start_time_seconds: boot_time_seconds as f64 + start_ticks as f64 / ticks,
        open_fds: None,
        max_fds: None,
    })
}

/// Writes the process families and the build info at each scrape.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Written {
        describe::info(
            &mut encoder,
            "iroh_raft_build",
            "Always 1; labels identify the build of iroh-raft this node runs.",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("rustc", env!("IROH_RAFT_RUSTC_VERSION")),
                (
                    "profile",
                    if cfg!(debug_assertions) {
                        "debug"
                    } else {
                        "release"
                    },
                ),
            ],
        )?;
        let Some(sample) = ProcessSample::read() else {
            return Ok(());
        };
        write_sample(&mut encoder, &sample)
    }
}

fn write_sample(encoder: &mut DescriptorEncoder, sample: &ProcessSample) -> Written {
    describe::counter(
        encoder,
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        sample.cpu_seconds,
    )?;
    describe::gauge(
        encoder,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        sample.resident_bytes,
    )?;
    describe::gauge(
        encoder,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        sample.virtual_bytes,
    )?;
    describe::gauge(
        encoder,
        "process_threads",
        "Number of OS threads in the process.",
        sample.threads,
    )?;
    describe::gauge(
        encoder,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        sample.start_time_seconds,
    )?;
    if let Some(open) = sample.open_fds {
        describe::gauge(
            encoder,
            "process_open_fds",
            "Number of open file descriptors.",
            open,
        )?;
    }
    if let Some(max) = sample.max_fds {
        describe::gauge(
            encoder,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with spaces and a parenthesis, as proc(5) allows.
        let stat = "4242 (raft host) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 7 0 1000 123456789 2048 18446744073709551615";
        let sample = parse_stat(stat, 100, 4096, 1_700_000_000).expect("parses");
        assert_eq!(sample.cpu_seconds, 3.0);
        assert_eq!(sample.threads, 7);
        assert_eq!(sample.virtual_bytes, 123_456_789);
        assert_eq!(sample.resident_bytes, 2048 * 4096);
        assert_eq!(sample.start_time_seconds, 1_700_000_010.0);
        assert_eq!(parse_stat("garbage", 100, 4096, 0), None);
        assert_eq!(
            boot_time_seconds("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_read_from_procfs() {
        let sample = ProcessSample::read().expect("Linux has /proc/self");
        assert!(
            sample.resident_bytes > 0 && sample.threads >= 1,
            "{sample:?}"
        );
        assert!(sample.open_fds.unwrap_or(0) >= 3, "{sample:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(sample.start_time_seconds <= now + 1.0, "{sample:?}");
        assert!(
            sample.start_time_seconds > now - 86_400.0 * 365.0,
            "{sample:?}"
        );
    }
}
