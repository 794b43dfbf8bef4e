//! CPU work no request waits for (compaction), on a thread of its own at the lowest
//! scheduling priority: it takes the cores that ingest and reads leave idle, not theirs.

use super::error::ServerError;

/// Runs `work` on a new lowest-priority thread named `name`; threads it starts inherit the
/// priority.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lowest_priority();
            let _ = tx.send(work());
        })
        .map_err(|e| ServerError::io(format!("starting thread {name}"), e))?;
    rx.await
        .map_err(|_| ServerError::io(format!("thread {name}"), std::io::Error::other("it panicked")))?
}

/// Nice 19 for the calling thread: on Linux, `setpriority` with `who` 0 sets the calling
/// thread's priority, not the whole process's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn lowest_priority() {
    // SAFETY: plain system call with constant arguments; failure leaves the priority as it is.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0;
    if failed {
        log::debug!("tidelog server: background work runs at normal priority");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn lowest_priority() {}
