//! Log lines name the process they come from: every line carries the pid and the role
//! (`supervisor` or `worker=i`), set once per process after the fork.

use std::sync::atomic::{AtomicI64, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use crate::config::LogFormat;

/// -1 for the supervisor (or a one-shot command), else the worker index.
static WORKER_INDEX: AtomicI64 = AtomicI64::new(-1);

/// Marks this process as worker `index` (called in the child after the fork).
pub fn set_worker(index: usize) {
    WORKER_INDEX.store(index as i64, Ordering::Relaxed);
}

/// `WORKER_INDEX` of the metrics process.
const METRICS_PROCESS: i64 = -2;

/// Marks this process as the metrics process (called in the child after the fork).
pub fn set_metrics_process() {
    WORKER_INDEX.store(METRICS_PROCESS, Ordering::Relaxed);
}

/// The timestamp of every line, followed by the pid and role of the process that wrote it.
/// Riding on the timer, it reaches text and JSON lines alike without a formatter of our own;
/// pid and role are read for each line, so they are right after a fork.
struct ProcessStamp;

impl FormatTime for ProcessStamp {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        match WORKER_INDEX.load(Ordering::Relaxed) {
            -1 => write!(w, "{now} pid={} supervisor", std::process::id()),
            METRICS_PROCESS => write!(w, "{now} pid={} metrics", std::process::id()),
            i => write!(w, "{now} pid={} worker={i}", std::process::id()),
        }
    }
}

/// The filter without `RUST_LOG`: this service's own lines from `info`, the Kafka client's from
/// `error`. rskafka logs every connection and partition leader it finds at `info` (90 of 95
/// lines of a two-worker start), and every failed connection attempt at `warn` (one per retry
/// per client during an outage); the service says once per interval what it waits for instead.
/// `RUST_LOG=info` or `debug` brings rskafka's lines back. Its partition clients and producers
/// say nothing at all: each of their errors comes back to the call that met it, which reports
/// it (a topic deleted while the service runs would otherwise log three ERRORs per record per
/// retry).
pub const DEFAULT_FILTER: &str =
    "info,rskafka=error,rskafka::client::partition=off,rskafka::client::producer=off";

/// Installs the global subscriber (stderr, `RUST_LOG` filter, default [`DEFAULT_FILTER`]).
/// Spawns no thread, so it is safe before forking.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(ProcessStamp);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
