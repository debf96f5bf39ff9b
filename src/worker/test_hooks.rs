//! Faults the tests inject into a real worker, compiled only with the `test-hooks` feature
//! (`scripts/test` runs `tests/fault_hooks.rs` with it). The released binary has none of them.

use uuid::Uuid;

/// `HD_KAFKA_EXEC_TEST_HANG_WORKER=i`: worker `i` blocks its thread for good once it has booted,
/// for the supervisor's hung-worker check.
pub fn hang_if_asked(index: usize) {
    if std::env::var("HD_KAFKA_EXEC_TEST_HANG_WORKER").ok() == Some(index.to_string()) {
        tracing::warn!("test hook: this worker's thread hangs now");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// `HD_KAFKA_EXEC_TEST_PANIC_JOB=<job id>`: the execution of that job panics, for the last line
/// of defence (a panicked execution is answered and its offset completed).
pub fn panic_if_asked(job_id: Uuid) {
    if std::env::var("HD_KAFKA_EXEC_TEST_PANIC_JOB").ok() == Some(job_id.to_string()) {
        panic!("test hook: execution of job {job_id} panics");
    }
}

/// `HD_KAFKA_EXEC_TEST_ABORT_JOB=<job id>`: the execution of that job aborts its worker process
/// (as a failed allocation or a stack overflow does), every time it runs: a poison request.
pub fn abort_if_asked(job_id: Uuid) {
    if std::env::var("HD_KAFKA_EXEC_TEST_ABORT_JOB").ok() == Some(job_id.to_string()) {
        tracing::warn!("test hook: execution of job {job_id} aborts this worker");
        std::process::abort();
    }
}
