//! The worker threads training runs on.

use std::ffi::OsStr;

/// Most worker threads per CPU a command starts.
pub const PER_CPU: usize = 4;

/// The environment variable rayon reads; it is held to the same bounds as `--threads`.
pub const ENV: &str = "RAYON_NUM_THREADS";

/// How many worker threads to start: `option` (`--threads`) if given, else `env` (the value
/// of [`ENV`]) if set and not empty or 0, else one per CPU. Either setting must be 1 to
/// [`PER_CPU`] per CPU of the `cpus` this process may use; the error names the setting.
pub fn count(option: Option<u32>, env: Option<&OsStr>, cpus: usize) -> Result<usize, String> {
    let most = PER_CPU * cpus.max(1);
    let (n, setting) = match (option, env) {
        (Some(n), _) => (n as usize, format!("--threads {n}")),
        (None, None) => return Ok(cpus.max(1)),
        (None, Some(value)) => {
            let text = value.to_string_lossy();
            let text = text.trim();
            match text.parse::<usize>() {
                Ok(0) => return Ok(cpus.max(1)),
                _ if text.is_empty() => return Ok(cpus.max(1)),
                Ok(n) => (n, format!("{ENV}={n}")),
                Err(_) => {
                    return Err(format!(
                        "{ENV}={text:?} is not a number of threads: set it to 1 to {most}, or unset it"
                    ));
                }
            }
        }
    };
    if n == 0 || n > most {
        let fix = if option.is_some() { String::new() } else { format!(" (or unset {ENV})") };
        return Err(format!(
            "{setting} is outside 1 to {PER_CPU} per CPU of the {cpus} this process may use: give 1 to {most}{fix}"
        ));
    }
    Ok(n)
}

/// [`count`] for this process: `option`, else [`ENV`], else one per CPU it may use.
pub fn count_here(option: Option<u32>) -> Result<usize, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    count(option, std::env::var_os(ENV).as_deref(), cpus)
}

/// Starts rayon's global pool as `trainer` runs it: `threads` threads (see [`count`]), the calling thread being one of them, each pinned to its own CPU.
///
/// The parallel steps of a batch (two dozen) then start from a thread of the pool instead
/// of being handed to it and waited for: 5-8% off an epoch.
///
/// Pinning: when the pool has no more threads than the process may use CPUs (see
/// `taskset`), thread `i` runs only on the `i`-th of them. Unpinned, Linux on this 2-CPU
/// VM often woke the second thread on the first one's CPU and left it there for tens of
/// milliseconds while the other CPU idled; every task then ran on one CPU, and products
/// took as long as on one thread. Fails if the global pool is already running.
pub fn start_pool(threads: usize) -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new().num_threads(threads).use_current_thread().build_global()?;
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if (2..=cpus.len()).contains(&rayon::current_num_threads()) {
        // Where pinning is not supported the threads stay where the scheduler puts them.
        rayon::broadcast(|ctx| core_affinity::set_for_current(cpus[ctx.index()]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_and_the_environment_get_the_same_bounds() {
        let env = |s: &str| Some(OsStr::new(s).to_owned());
        assert_eq!(count(None, None, 2), Ok(2));
        assert_eq!(count(Some(3), env("1000").as_deref(), 2), Ok(3), "the option wins");
        assert_eq!(count(None, env("8").as_deref(), 2), Ok(8));
        assert_eq!(count(None, env(" 0 ").as_deref(), 2), Ok(2), "0 means the default, as in rayon");
        assert_eq!(count(None, env("").as_deref(), 2), Ok(2));
        let too_many = count(None, env("1000").as_deref(), 2).unwrap_err();
        assert!(too_many.contains("RAYON_NUM_THREADS=1000") && too_many.contains("1 to 8"), "{too_many}");
        let option = count(Some(9), None, 2).unwrap_err();
        assert!(option.starts_with("--threads 9") && !option.contains("RAYON"), "{option}");
        let junk = count(None, env("-3").as_deref(), 2).unwrap_err();
        assert!(junk.contains("not a number of threads"), "{junk}");
    }
}
