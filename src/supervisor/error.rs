//! Why the supervisor stops, and the exit codes by which a worker tells it why it ended.

/// Exit code of a worker that cannot boot (gunicorn's `WORKER_BOOT_ERROR`).
pub const EXIT_BOOT_FAILURE: i32 = 3;
/// Exit code of a worker that met an error no restart can fix (another process took its
/// identity): the supervisor stops the service with it at once instead of starting a fight.
pub const EXIT_FATAL: i32 = 4;

/// Why the supervisor stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A slot's workers kept exiting with [`EXIT_BOOT_FAILURE`]: a configuration error that
    /// restarting will not fix, so the service fails instead of looping.
    #[error(
        "worker {index} failed to boot {failures} times in a row (exit code {EXIT_BOOT_FAILURE}); its error is logged above"
    )]
    BootFailure {
        /// The slot whose workers failed.
        index: usize,
        /// Boot failures in a row; the limit that made the supervisor give up.
        failures: u32,
    },
    /// A worker exited with [`EXIT_FATAL`].
    #[error(
        "worker {index} met an error that restarting cannot fix (exit code {EXIT_FATAL}); its error is logged above"
    )]
    Fatal {
        /// The slot of that worker.
        index: usize,
    },
    /// [`run`](super::run) was called in a process that already has threads, where `fork` is
    /// unsound.
    #[error(
        "supervisor: this process has {threads} threads; workers are forked only from a single-threaded process (a thread holding a lock at fork time would leave it locked in the worker for good)"
    )]
    Threaded {
        /// Threads found in `/proc/self/task`, this one included.
        threads: usize,
    },
    /// A system call the supervisor cannot do without failed.
    #[error("supervisor: {context}: {source}")]
    Os {
        /// What the supervisor was doing, e.g. "forking a worker".
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
