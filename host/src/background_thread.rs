//! Threads that must not push aside the thread that wakes them.
//!
//! The persistence thread is woken by the node loop in the middle of a
//! round, before the loop's tasks have sent the append the followers wait
//! for; the durable-mark thread after every durable write. Under Linux's
//! default policy a thread woken from sleep may preempt the one running on
//! its CPU, so on busy cores the loop stopped for the sync to start and the
//! append left later. `SCHED_BATCH` keeps a thread's share of the CPU and
//! only gives up that wake-up preemption: the woken thread takes an idle
//! core, or waits until the running one blocks or its slice ends. At one
//! client on this 2-core machine that took ~0.04 ms off a write's p50, and
//! 64 clients were no slower (BENCHMARKS.md, step 34).

/// Run the calling thread under `SCHED_BATCH` (see the module docs). A
/// refusal (a sandbox that filters the call) leaves the default policy,
/// which only costs latency, so it is logged and not an error.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn run_as_background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads the `sched_param` behind the
    // pointer, which is a live local; pid 0 names the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not run this thread as SCHED_BATCH; it keeps the default policy"
        );
    }
}

/// Other systems keep their default policy.
#[cfg(not(target_os = "linux"))]
pub(crate) fn run_as_background() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The calling thread's policy, field 41 of `/proc/thread-self/stat`.
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read stat");
        // Fields after the command name, which is in parentheses and may
        // contain spaces: the state is field 3, so the policy is the 39th.
        let after_name = stat.rsplit_once(") ").expect("command name").1;
        after_name
            .split(' ')
            .nth(41 - 3)
            .expect("policy field")
            .parse()
            .expect("a number")
    }

    #[test]
    fn a_background_thread_runs_as_sched_batch_and_others_do_not() {
        let background = std::thread::spawn(|| {
            super::run_as_background();
            policy()
        })
        .join()
        .expect("thread");
        assert_eq!(background, libc::SCHED_BATCH as u32);
        let other = std::thread::spawn(policy).join().expect("thread");
        assert_eq!(other, libc::SCHED_OTHER as u32);
    }
}
