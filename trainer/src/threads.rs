//! The worker threads training runs on.

/// Starts rayon's global pool as `trainer` runs it: `threads` threads (one per core when
/// `None`), the calling thread being one of them, each pinned to its own CPU.
///
/// The parallel steps of a batch (two dozen) then start from a thread of the pool instead
/// of being handed to it and waited for: 5-8% off an epoch.
///
/// Pinning: when the pool has no more threads than the process may use CPUs (see
/// `taskset`), thread `i` runs only on the `i`-th of them. Unpinned, Linux on this 2-CPU
/// VM often woke the second thread on the first one's CPU and left it there for tens of
/// milliseconds while the other CPU idled; every task then ran on one CPU, and products
/// took as long as on one thread. Fails if the global pool is already running.
pub fn start_pool(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).use_current_thread().build_global()?;
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if (2..=cpus.len()).contains(&rayon::current_num_threads()) {
        // Where pinning is not supported the threads stay where the scheduler puts them.
        rayon::broadcast(|ctx| core_affinity::set_for_current(cpus[ctx.index()]));
    }
    Ok(())
}
