//! One worker process: consume -> resolve -> prepare -> run -> respond -> commit.
//!
//! The worker owns the partitions p mod N == i of the request topic. Each record becomes exactly
//! one response (a failure response when anything goes wrong: design decision 6), produced with
//! acks=all; only then does the record's offset count as done, and the committed offset of a
//! partition is the lowest offset not yet done (design decision 4). Up to `max_in_flight`
//! executions run at once. On a stop request the worker stops fetching, finishes what is in
//! flight within the grace period, commits and returns.

mod admission;
mod execution;
#[cfg(feature = "test-hooks")]
mod test_hooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::kafka::{KafkaError, Opened, Refused, RequestRecord, Session};
use crate::runtime_client::{RuntimeClient, RuntimeError, RuntimeOptions};
use crate::store::{CacheOptions, Store, StoreError, StoreSource};
use crate::supervisor::{EXIT_BOOT_FAILURE, EXIT_FATAL};

use execution::Execution;

/// Why a worker process ends other than by a stop request; decides its exit code, which tells
/// the supervisor whether a restart can help.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The supervisor counts these: three in a row stop the service.
    #[error("worker failed to boot: {0}")]
    Boot(#[from] BootError),
    /// Kafka failed in a way waiting cannot mend; the supervisor restarts the worker.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The worker's tokio runtime or its signal handlers could not be set up.
    #[error("cannot start the worker's async runtime: {0}")]
    Io(#[from] std::io::Error),
    /// The group refuses this worker for good; a restart would not help. The supervisor
    /// stops the service with it.
    #[error("the consumer group refuses this worker: {0}")]
    Refused(#[from] Refused),
}

/// The step of booting that failed, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The revision store cannot be opened (a directory unreadable, a backend URL unusable).
    #[error("opening the revision store: {0}")]
    Store(#[source] StoreError),
    /// The runtime client cannot be built (an unusable URL, TLS files).
    #[error("setting up the runtime client: {0}")]
    Runtime(#[source] RuntimeError),
    /// The Kafka session cannot be opened as configured (credentials, certificates).
    #[error("opening the Kafka session: {0}")]
    Kafka(#[source] KafkaError),
}

/// Which worker this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// This worker's number, 0 to `count - 1`; decides its partitions.
    pub index: usize,
    /// How many workers the supervisor runs.
    pub count: usize,
    /// Bumped by the supervisor on every scale or reload, for the logs.
    pub generation: u64,
}

/// What a worker needs; built (and validated) before the supervisor forks.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Validated before the fork.
    pub config: Config,
    /// The revision store; a directory index is shared with the supervisor through fork.
    pub store: StoreSource,
    /// Which worker this is.
    pub slot: Slot,
    /// How long in-flight executions get to finish after a stop request.
    pub graceful_timeout: Duration,
}

/// Everything a worker sets up before it consumes.
struct Booted {
    /// Commits, added partitions, stopping.
    kafka: Session,
    /// Requests to execute.
    records: mpsc::Receiver<RequestRecord>,
    /// What every execution task shares.
    execution: Arc<Execution>,
}

/// Opens the revision store, the runtime client and the Kafka session.
async fn boot(spec: &WorkerSpec, shutdown: watch::Receiver<bool>) -> Result<Booted, BootError> {
    let cfg = &spec.config;
    let store = Store::new(
        &spec.store,
        CacheOptions {
            latest_ttl: cfg.store.latest_ttl,
            capacity: cfg.store.cache_capacity,
        },
    )
    .map_err(BootError::Store)?;
    let Opened {
        session,
        records,
        answers,
    } = Session::open(
        &cfg.kafka,
        (spec.slot.index, spec.slot.count),
        cfg.execution.max_in_flight,
        shutdown,
    )
    .await
    .map_err(BootError::Kafka)?;
    let mut runtime_options = RuntimeOptions::new(cfg.runtime.engine_url.clone());
    runtime_options.bearer_token = cfg.runtime.bearer_token.clone();
    runtime_options.call_timeout = cfg.runtime.call_timeout;
    runtime_options.retry_budget = cfg.runtime.retry_budget;
    runtime_options.tls = cfg.runtime.tls.clone();
    // Bounded memory: no answer larger than could be delivered is read.
    runtime_options.max_answer_bytes = answers.largest_useful_answer();
    let runtime = RuntimeClient::new(runtime_options).map_err(BootError::Runtime)?;
    if let Some(partitions) = session.fixed_partitions() {
        let metrics = crate::metrics::worker();
        metrics.set_assigned(partitions.len());
        metrics.set_state(crate::metrics::WorkerState::Consuming);
        // The one line per worker that says it is ready and what it owns (in a group, the
        // member says it at every assignment).
        tracing::info!(
            worker = spec.slot.index,
            workers = spec.slot.count,
            generation = spec.slot.generation,
            topic = %cfg.kafka.request_topic,
            partitions = ?partitions,
            "worker consuming"
        );
    }
    let execution = Arc::new(Execution::new(
        store,
        runtime,
        answers,
        cfg.execution.clone(),
        cfg.kafka.request_topic.clone(),
    ));
    Ok(Booted {
        kafka: session,
        records,
        execution,
    })
}

/// How often a worker tells the supervisor it is alive. Well under the shortest sensible
/// `--timeout` (a few seconds).
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// Proves liveness to the supervisor from a task of its own, from the first moment on: never
/// waiting on Kafka, the runtime or a commit (design decision 13). It shares the worker's one
/// thread, so a worker whose thread is stuck (not merely waiting) stops beating and is
/// replaced, which is what the supervisor's check is for.
async fn beat(heartbeat: impl Fn()) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    let metrics = crate::metrics::worker();
    loop {
        tick.tick().await;
        heartbeat();
        metrics.beat();
    }
}

/// Of the grace period, what the last commit keeps for itself: in-flight executions get the
/// rest.
fn commit_reserve(graceful_timeout: Duration) -> Duration {
    (graceful_timeout / 4).min(Duration::from_secs(5))
}

/// Runs the worker until `shutdown` turns true. Booting waits out Kafka being unreachable (a
/// stop request ends it at once); only configuration errors fail it.
pub async fn serve(
    spec: &WorkerSpec,
    mut shutdown: watch::Receiver<bool>,
    retire: Arc<AtomicBool>,
) -> Result<(), WorkerError> {
    let booted = tokio::select! {
        booted = boot(spec, shutdown.clone()) => booted?,
        _ = shutdown.wait_for(|stop| *stop) => {
            tracing::info!(worker = spec.slot.index, "stopped while booting");
            return Ok(());
        }
    };
    let Booted {
        mut kafka,
        mut records,
        execution,
    } = booted;
    #[cfg(feature = "test-hooks")]
    test_hooks::hang_if_asked(spec.slot.index);

    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            Some(record) = records.recv() => {
                tasks.spawn_local(execution.clone().handle(record));
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!("an execution task failed: {e}");
                }
            }
            refused = kafka.refused() => {
                // Kafka refused this worker for good: its partitions are lost, executions in
                // flight end without an answer (their next owners run those requests again).
                tracing::error!(worker = spec.slot.index, "{refused}");
                drop(records);
                kafka.abandon_fetching().await;
                drain(&mut tasks, spec, Instant::now() + spec.graceful_timeout).await;
                return Err(refused.into());
            }
        }
    }

    let deadline = Instant::now() + spec.graceful_timeout;
    crate::metrics::worker().set_state(crate::metrics::WorkerState::Stopping);
    tracing::info!(
        worker = spec.slot.index,
        in_flight = tasks.len(),
        "stopping: finishing in-flight executions"
    );
    drop(records);
    kafka.stop_fetching().await;
    drain(
        &mut tasks,
        spec,
        deadline - commit_reserve(spec.graceful_timeout),
    )
    .await;
    let retire = retire.load(Ordering::Relaxed);
    match kafka.finish(deadline, retire).await {
        Ok(committed) => {
            tracing::info!(worker = spec.slot.index, committed = ?committed, "worker stopped");
        }
        Err(e) => {
            // Those requests run again after a restart: at-least-once, nothing lost.
            tracing::warn!(
                worker = spec.slot.index,
                "worker stopped without its last commit: {e}"
            );
        }
    }
    Ok(())
}

/// Lets in-flight executions finish until `until`; abandons the rest (their offsets stay
/// uncommitted, so they run again after a restart).
async fn drain(tasks: &mut JoinSet<()>, spec: &WorkerSpec, until: Instant) {
    let drained = tokio::time::timeout_at(until, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!("an execution task failed: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            worker = spec.slot.index,
            left = tasks.len(),
            "grace period over: abandoning in-flight executions (they run again after restart)"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Entry of a worker process: builds its own single-threaded tokio runtime (none exists before
/// the fork), proves liveness through `heartbeat` from the start, and serves until SIGTERM or
/// SIGINT. Returns the process exit code: 0 after a
/// clean stop, [`EXIT_BOOT_FAILURE`] when it could not boot, 1 on any other error.
pub fn run(spec: &WorkerSpec, heartbeat: impl Fn() + Send + 'static) -> i32 {
    match run_inner(spec, heartbeat) {
        Ok(()) => 0,
        Err(e @ WorkerError::Boot(_)) => {
            tracing::error!(worker = spec.slot.index, "{e}");
            EXIT_BOOT_FAILURE
        }
        // Logged where Kafka refused the worker, at once rather than after the drain: once.
        Err(WorkerError::Refused(_)) => EXIT_FATAL,
        Err(e) => {
            tracing::error!(worker = spec.slot.index, "worker failed: {e}");
            1
        }
    }
}

fn run_inner(spec: &WorkerSpec, heartbeat: impl Fn() + Send + 'static) -> Result<(), WorkerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Local tasks: the worker is one thread, and some of its futures (the coordinator
    // client's) are not `Send`.
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        tokio::task::spawn_local(beat(heartbeat));
        let (stop, shutdown) = watch::channel(false);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        // USR2 from the supervisor: this worker is retired for good (TTOU), so a static member
        // leaves the group instead of keeping its partitions for its session timeout.
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let retire = Arc::new(AtomicBool::new(false));
        let retiring = retire.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("stop requested"),
                _ = int.recv() => tracing::info!("stop requested"),
                _ = usr2.recv() => {
                    tracing::info!("retired: leaving the group");
                    retiring.store(true, Ordering::Relaxed);
                }
            }
            let _ = stop.send(true);
        });
        serve(spec, shutdown, retire).await
    })
}
