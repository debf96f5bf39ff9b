//! One worker process: consume -> resolve -> prepare -> run -> respond -> commit.
//!
//! The worker owns the partitions p mod N == i of the request topic. Each record becomes exactly
//! one response (a failure response when anything goes wrong: design decision 6), produced with
//! acks=all; only then does the record's offset count as done, and the committed offset of a
//! partition is the lowest offset not yet done (design decision 4). Up to `max_in_flight`
//! executions run at once. On a stop request the worker stops fetching, finishes what is in
//! flight within the grace period, commits and returns.

pub mod exec;
mod execution;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::{Client, ClientBuilder};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::kafka::consumer::{FetchOptions, start_position};
use crate::kafka::{
    GroupCoordinator, KafkaError, ProducerSettings, RequestConsumer, ResponseProducer,
    owned_partitions,
};
use crate::runtime_client::{RuntimeClient, RuntimeError, RuntimeOptions};
use crate::store::{CacheOptions, Store, StoreSource};
use crate::supervisor::EXIT_BOOT_FAILURE;

pub use execution::Execution;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Coordinator(#[from] crate::kafka::CoordinatorError),
    #[error("cannot reach Kafka at {bootstrap:?}: {source}")]
    Connect {
        bootstrap: Vec<String>,
        #[source]
        source: rskafka::client::error::Error,
    },
    #[error("request topic {topic} does not exist")]
    NoRequestTopic { topic: String },
    #[error("cannot start the worker's runtime: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker failed to boot: {0}")]
    Boot(String),
}

/// Which worker this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub count: usize,
    pub generation: u64,
}

/// What a worker needs; built (and validated) before the supervisor forks.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub config: Config,
    pub store: StoreSource,
    pub slot: Slot,
    /// How long in-flight executions get to finish after a stop request.
    pub graceful_timeout: Duration,
}

async fn connect(bootstrap: &[String], client_id: &str) -> Result<Arc<Client>, WorkerError> {
    ClientBuilder::new(bootstrap.to_vec())
        .client_id(client_id.to_owned())
        // rskafka's own default backoff grows to 500 s: a worker would idle for minutes after
        // Kafka came back.
        .backoff_config(crate::kafka::backoff())
        .build()
        .await
        .map(Arc::new)
        .map_err(|source| WorkerError::Connect {
            bootstrap: bootstrap.to_vec(),
            source,
        })
}

/// Offsets whose watermark moved since the last commit; recorded as committed.
fn commit_due(
    watermarks: &std::sync::Mutex<crate::kafka::Watermarks>,
    last_committed: &mut HashMap<i32, i64>,
) -> Vec<(i32, i64)> {
    let w = watermarks.lock().expect("watermark lock");
    let due: Vec<(i32, i64)> = w
        .partitions()
        .filter_map(|p| {
            let c = w.committable(p)?;
            (last_committed.get(&p) != Some(&c)).then_some((p, c))
        })
        .collect();
    for (p, c) in &due {
        last_committed.insert(*p, *c);
    }
    due
}

/// A group that has never committed and starts at `latest` (hetida's default) never executes
/// the requests already in the topic. That is Kafka's rule, kept for compatibility, but a new
/// user who produced a request first and started the service second sees nothing happen: say so.
fn warn_of_skipped(group: &str, topic: &str, skipped: &[(i32, std::ops::Range<i64>)]) {
    if skipped.is_empty() {
        return;
    }
    let count: i64 = skipped.iter().map(|(_, r)| r.end - r.start).sum();
    let ranges = skipped
        .iter()
        .map(|(p, r)| format!("{topic}/{p} offsets {}..{}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::warn!(
        "group {group} has no committed offset and auto_offset_reset is \"latest\", so the \
         {count} record(s) already in the topic are not executed ({ranges}); set \
         \"auto_offset_reset\": \"earliest\" in HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS to \
         execute requests produced before the group's first start"
    );
}

/// Everything a worker sets up before it consumes.
struct Booted {
    client: Arc<Client>,
    partition_count: i32,
    coordinator: GroupCoordinator,
    committed: HashMap<i32, Option<i64>>,
    consumer: RequestConsumer,
    records: tokio::sync::mpsc::Receiver<crate::kafka::RequestRecord>,
    execution: Arc<Execution>,
}

/// Connects to Kafka and the runtime, reads committed offsets, starts the fetch loops.
async fn boot(spec: &WorkerSpec, shutdown: watch::Receiver<bool>) -> Result<Booted, WorkerError> {
    let cfg = &spec.config;
    let k = &cfg.kafka;
    let consumer_client = connect(&k.consumer_bootstrap, &k.client_id).await?;
    let producer_client = if k.producer_bootstrap == k.consumer_bootstrap {
        consumer_client.clone()
    } else {
        connect(&k.producer_bootstrap, &k.client_id).await?
    };
    let partition_count = crate::kafka::partition_count(&consumer_client, &k.request_topic)
        .await?
        .ok_or_else(|| WorkerError::NoRequestTopic {
            topic: k.request_topic.clone(),
        })?;
    let owned = owned_partitions(partition_count, spec.slot.index, spec.slot.count);

    let mut coordinator =
        GroupCoordinator::new(k.consumer_bootstrap.clone(), &k.group_id, &k.client_id);
    let committed = coordinator.fetch(&k.request_topic, &owned).await?;
    let mut starts = HashMap::new();
    let mut skipped = Vec::new();
    for &p in &owned {
        let pc = crate::kafka::partition_client(&consumer_client, &k.request_topic, p).await?;
        let start = start_position(
            &pc,
            committed.get(&p).copied().flatten(),
            k.auto_offset_reset,
        )
        .await
        .map_err(|source| KafkaError::Client {
            context: format!("start offset of {}/{p}", k.request_topic),
            source,
        })?;
        if let Some(range) = start.skipped {
            skipped.push((p, range));
        }
        starts.insert(p, start.offset);
    }
    warn_of_skipped(&k.group_id, &k.request_topic, &skipped);

    let producer_settings = ProducerSettings::from_config(k);
    let responses = ResponseProducer::new(
        producer_client.clone(),
        &k.response_topic,
        &producer_settings,
    )
    .await?;
    let dead_letters = match &k.dead_letter_topic {
        Some(t) => {
            match ResponseProducer::new(producer_client.clone(), t, &producer_settings).await {
                Ok(p) => Some(p),
                Err(KafkaError::NoSuchTopic { topic }) => {
                    tracing::warn!(%topic, "dead-letter topic does not exist: undecodable records get a failure response only");
                    None
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    let mut runtime_options = RuntimeOptions::new(cfg.runtime.engine_url.clone());
    runtime_options.bearer_token = cfg.runtime.bearer_token.clone();
    runtime_options.call_timeout = cfg.runtime.call_timeout;
    runtime_options.retry_budget = cfg.runtime.retry_budget;
    let runtime = RuntimeClient::new(runtime_options)?;

    let store = Store::new(
        &spec.store,
        CacheOptions {
            latest_ttl: cfg.store.latest_ttl,
            capacity: cfg.store.cache_capacity,
        },
    )
    .map_err(|e| WorkerError::Boot(e.to_string()))?;
    let execution = Arc::new(Execution::new(
        store,
        runtime,
        responses,
        dead_letters,
        cfg.execution.clone(),
        k.request_topic.clone(),
    ));

    // Sorted for the log line below; the fetch loops take them in any order.
    let starts: std::collections::BTreeMap<i32, i64> = starts.into_iter().collect();
    let (consumer, records) = RequestConsumer::start(
        consumer_client.clone(),
        FetchOptions {
            topic: k.request_topic.clone(),
            max_in_flight: cfg.execution.max_in_flight,
            max_wait: k.fetch_max_wait,
            max_bytes: k.fetch_max_bytes,
            reset: k.auto_offset_reset,
        },
        starts.iter().map(|(p, o)| (*p, *o)).collect(),
        shutdown.clone(),
    )
    .await?;
    // The one line per worker that says it is ready and what it owns.
    tracing::info!(
        worker = spec.slot.index,
        workers = spec.slot.count,
        generation = spec.slot.generation,
        topic = %k.request_topic,
        partitions = ?owned,
        starts = ?starts,
        "worker consuming"
    );

    Ok(Booted {
        client: consumer_client,
        partition_count,
        coordinator,
        committed,
        consumer,
        records,
        execution,
    })
}

/// How long booting may take before the worker gives up (and the supervisor counts a boot
/// failure): Kafka or the runtime configuration is then most likely wrong.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the worker looks for partitions added to the request topic.
const PARTITION_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The request topic's partition count when it grew beyond `known`.
async fn added_partitions(
    client: &Client,
    topic: &str,
    known: i32,
) -> Result<Option<i32>, KafkaError> {
    let count = crate::kafka::partition_count(client, topic)
        .await?
        .unwrap_or(known);
    Ok((count > known).then_some(count))
}

/// Starts fetch loops for `partitions` (new ones have no owner yet: p mod N == i never changes
/// for existing partitions while N stays the same).
async fn start_partitions(
    client: &Client,
    coordinator: &mut GroupCoordinator,
    consumer: &mut RequestConsumer,
    spec: &WorkerSpec,
    partitions: &[i32],
) -> Result<(), WorkerError> {
    if partitions.is_empty() {
        return Ok(());
    }
    let k = &spec.config.kafka;
    let committed = coordinator.fetch(&k.request_topic, partitions).await?;
    for &p in partitions {
        let pc = crate::kafka::partition_client(client, &k.request_topic, p).await?;
        // A partition created while we run starts at its beginning: its first requests came
        // after we started, so "latest" would skip them.
        let committed = committed.get(&p).copied().flatten();
        let start = start_position(&pc, committed, crate::config::OffsetReset::Earliest)
            .await
            .map_err(|source| KafkaError::Client {
                context: format!("start offset of {}/{p}", k.request_topic),
                source,
            })?;
        consumer.add_partition(p, start.offset).await?;
    }
    Ok(())
}

/// Runs the worker until `shutdown` turns true; `heartbeat` is called from the event loop to
/// prove liveness to the supervisor.
pub async fn serve(
    spec: &WorkerSpec,
    mut shutdown: watch::Receiver<bool>,
    heartbeat: impl Fn() + Send + 'static,
) -> Result<(), WorkerError> {
    let Booted {
        client,
        mut partition_count,
        mut coordinator,
        committed,
        mut consumer,
        mut records,
        execution,
    } = tokio::time::timeout(BOOT_TIMEOUT, boot(spec, shutdown.clone()))
        .await
        .map_err(|_| WorkerError::Boot(format!("booting took longer than {BOOT_TIMEOUT:?}")))?
        .map_err(|e| WorkerError::Boot(e.to_string()))?;
    let k = &spec.config.kafka;
    let watermarks = consumer.watermarks.clone();
    let commit_topic = k.request_topic.clone();
    let commit_interval = k.commit_interval.max(Duration::from_millis(10));
    let mut last_committed: HashMap<i32, i64> = committed
        .into_iter()
        .filter_map(|(p, o)| Some((p, o?)))
        .collect();

    // Test hook: a worker whose event loop hangs, for the supervisor's hung-worker check.
    let hang =
        std::env::var("HD_KAFKA_EXEC_TEST_HANG_WORKER").ok() == Some(spec.slot.index.to_string());
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(commit_interval);
    let mut metadata_tick = tokio::time::interval(PARTITION_CHECK_INTERVAL);
    metadata_tick.tick().await;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            _ = tick.tick() => {
                if hang {
                    tracing::warn!("test hook: this worker's event loop hangs now");
                    std::thread::sleep(Duration::from_secs(3600));
                }
                heartbeat();
                let due = commit_due(&watermarks, &mut last_committed);
                if let Err(e) = coordinator.commit(&commit_topic, &due).await {
                    tracing::warn!("committing offsets failed (retried next interval): {e}");
                    for (p, _) in due { last_committed.remove(&p); }
                }
            }
            _ = metadata_tick.tick() => {
                match added_partitions(&client, &k.request_topic, partition_count).await {
                    Ok(Some(count)) => {
                        let new: Vec<i32> = owned_partitions(count, spec.slot.index, spec.slot.count)
                            .into_iter()
                            .filter(|p| *p >= partition_count)
                            .collect();
                        tracing::info!(topic = %k.request_topic, from = partition_count, to = count, new = ?new, "request topic has more partitions");
                        if let Err(e) = start_partitions(&client, &mut coordinator, &mut consumer, spec, &new).await {
                            tracing::warn!("starting new partitions failed (retried next check): {e}");
                        } else {
                            partition_count = count;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("checking the request topic's partitions failed: {e}"),
                }
            }
            Some(record) = records.recv() => {
                tasks.spawn(execution.clone().handle(record));
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!("an execution task failed: {e}");
                }
            }
        }
    }

    tracing::info!(
        worker = spec.slot.index,
        in_flight = tasks.len(),
        "stopping: finishing in-flight executions"
    );
    drop(records);
    consumer.join().await;
    let drained = tokio::time::timeout(spec.graceful_timeout, async {
        while let Some(joined) = tasks.join_next().await {
            heartbeat();
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
    let due = commit_due(&watermarks, &mut last_committed);
    coordinator.commit(&commit_topic, &due).await?;
    tracing::info!(worker = spec.slot.index, committed = ?due, "worker stopped");
    Ok(())
}

/// Entry of a worker process: builds its own single-threaded tokio runtime (none exists before
/// the fork) and serves until SIGTERM or SIGINT. Returns the process exit code: 0 after a
/// clean stop, [`EXIT_BOOT_FAILURE`] when it could not boot, 1 on any other error.
pub fn run(spec: &WorkerSpec, heartbeat: impl Fn() + Send + 'static) -> i32 {
    match run_inner(spec, heartbeat) {
        Ok(()) => 0,
        Err(e @ WorkerError::Boot(_)) => {
            tracing::error!(worker = spec.slot.index, "{e}");
            EXIT_BOOT_FAILURE
        }
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
    rt.block_on(async {
        let (stop, shutdown) = watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stop requested");
            let _ = stop.send(true);
        });
        serve(spec, shutdown, heartbeat).await
    })
}
