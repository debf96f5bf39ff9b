//! Long-poll fetch loops over the partitions a worker owns, handing out request records.
//!
//! Back-pressure: a record is handed out only with a permit of the worker's in-flight window;
//! while the window is full, fetching waits (design decision 5). Every handed-out record carries
//! a [`DoneToken`]: its offset counts as done — and may be committed — only after the worker
//! calls [`DoneToken::complete`], which it does once the response is acknowledged by Kafka.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rskafka::client::Client;
use rskafka::client::error::Error as ClientError;
use rskafka::client::partition::{OffsetAt, PartitionClient};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};

use super::cluster::ClusterMap;
use super::error::KafkaError;
use super::leader_fetch::{FetchError, Fetched, LeaderFetch};
use super::record_batch::{Codec, Decoded, Header, Problem, Record, Unreadable};
use super::share::{AckType, ShareCompletion};
use super::tenure::{Claim, Tenure};
use super::watermark::Watermarks;
use crate::backoff::Backoff;
use crate::config::{IsolationLevel, KafkaSettings, OffsetReset};

/// One request as read from the request topic.
#[derive(Debug)]
pub struct RequestRecord {
    /// Partition of the request topic the record came from.
    pub partition: i32,
    /// Its offset there: what is committed once the record is done.
    pub offset: i64,
    /// The record key; the response carries it back by default.
    pub key: Option<Vec<u8>>,
    /// The request JSON; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record headers in the order produced, keys as bytes, values possibly null
    /// (`traceparent` is passed on to the response).
    pub headers: Vec<Header>,
    /// Why the record cannot be read, when it is an offset of a corrupt record batch: then
    /// `key` and `headers` are empty and `value` holds the batch's raw bytes (with the batch's
    /// first offset named here) or nothing.
    pub unreadable: Option<String>,
    /// Marks the offset done once the response is in Kafka.
    pub done: DoneToken,
    /// When its fetch response arrived: where the request's measured duration starts.
    pub fetched: Instant,
    /// Share groups: how often Kafka delivered the record, and how often it may.
    pub deliveries: Option<Deliveries>,
    /// The partition's tenure at this worker the record was fetched in.
    tenure: Arc<Tenure>,
}

/// A share group's count of a record's deliveries (KIP-932): Kafka archives a record
/// unanswered after its last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliveries {
    /// This delivery's number, 1 the first time.
    pub count: i16,
    /// The group's delivery limit.
    pub limit: i16,
}

impl Deliveries {
    /// Kafka will not deliver the record again once this delivery ends unanswered.
    pub fn is_last(&self) -> bool {
        self.count >= self.limit
    }
}

impl RequestRecord {
    /// A share group's record.
    pub(super) fn shared(
        r: Record,
        unreadable: Option<String>,
        done: DoneToken,
        fetched: Instant,
        deliveries: Deliveries,
    ) -> RequestRecord {
        RequestRecord {
            partition: done.partition,
            offset: done.offset,
            key: r.key,
            value: r.value,
            headers: r.headers,
            unreadable,
            tenure: done.tenure.clone(),
            done,
            fetched,
            deliveries: Some(deliveries),
        }
    }

    /// Whether the record's partition is still this worker's. A record fetched before a
    /// revocation and not yet started must not be executed: the partition's next owner
    /// executes it (dropping the record leaves its offset uncommitted).
    pub fn still_assigned(&self) -> bool {
        self.tenure.held()
    }
}

/// Marks a record done when completed. Dropped without [`complete`](DoneToken::complete), the
/// offset stays outstanding: commits stop below it and a restart executes it again — the safe
/// side of at-least-once.
#[derive(Debug)]
pub struct DoneToken {
    /// Where the offset is marked done; `None` once it was.
    completion: Option<Completion>,
    /// The record's partition and offset.
    partition: i32,
    offset: i64,
    /// The partition's tenure the record belongs to: counts it as executing while the token
    /// lives, and grants the right to answer it.
    tenure: Arc<Tenure>,
    /// Holds a place of the in-flight window until the record is finished (or
    /// [`release_slot`](DoneToken::release_slot) gives it back earlier).
    slot: Option<OwnedSemaphorePermit>,
}

impl DoneToken {
    /// The right to produce the record's answer, held until it is in Kafka; `None` when the
    /// partition was given up past its deadline or lost to another member, which executes the
    /// record again: then its answer must not be produced.
    pub(super) fn claim(&self) -> Option<Claim> {
        self.tenure.claim()
    }

    /// Whether the answer may no longer be produced (see [`claim`](DoneToken::claim)).
    pub(super) fn lost(&self) -> bool {
        self.tenure.lost()
    }

    /// The record's partition of the request topic.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset there.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Gives the record's place in the in-flight window back while its offset stays
    /// outstanding: its execution is over and its answer waits for a transaction (exactly-once),
    /// which the next execution need not wait for.
    pub fn release_slot(&mut self) {
        self.slot = None;
    }

    /// The record's response is in Kafka: its offset may be committed (a share group's
    /// record is acknowledged as accepted).
    pub fn complete(mut self) {
        match self.completion.take() {
            Some(Completion::Watermarks(watermarks)) => watermarks
                .lock()
                .expect("watermark lock")
                .done(self.partition, self.offset),
            Some(Completion::Share(share)) => {
                share.send(self.partition, self.offset, AckType::Accept)
            }
            None => {}
        }
    }

    /// A share group's record, handed out by its fetcher.
    pub(super) fn shared(
        partition: i32,
        offset: i64,
        tenure: Arc<Tenure>,
        slot: Option<OwnedSemaphorePermit>,
        share: ShareCompletion,
    ) -> DoneToken {
        tenure.handed_out();
        DoneToken {
            completion: Some(Completion::Share(share)),
            partition,
            offset,
            tenure,
            slot,
        }
    }
}

/// Where a finished record is reported.
#[derive(Debug)]
enum Completion {
    /// Its partition's watermarks, which the committer commits.
    Watermarks(Arc<Mutex<Watermarks>>),
    /// The share session it was acquired in.
    Share(ShareCompletion),
}

impl Drop for DoneToken {
    /// Completed or not, the record no longer executes. Dropped without completing, its
    /// offset stays outstanding: commits stop below it and whoever owns the partition next
    /// executes it (a share group's record is released, for this member or another).
    fn drop(&mut self) {
        if let Some(Completion::Share(share)) = self.completion.take() {
            share.send(self.partition, self.offset, AckType::Release);
        }
        self.tenure.finished();
    }
}

/// Fetch sizes and waits.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The request topic.
    pub topic: String,
    /// Records handed out and not yet done, at most (the in-flight window, design decision 5).
    pub max_in_flight: usize,
    /// How long the broker may hold a fetch open waiting for records (`fetch_max_wait_ms`).
    pub max_wait: Duration,
    /// Bytes one fetch may return per partition (`max_partition_fetch_bytes`).
    pub max_bytes: i32,
    /// Where a partition restarts when its offset is out of range (`auto_offset_reset`).
    pub reset: OffsetReset,
    /// Whether records of aborted transactions are skipped (`isolation_level`).
    pub isolation: IsolationLevel,
    /// The consumer's brokers, asked for each partition's leader, whom fetches go to.
    pub cluster: ClusterMap,
}

/// The running fetch loops of one worker.
#[derive(Debug)]
pub struct RequestConsumer {
    /// Per partition, what is handed out and done; the committer reads it.
    pub watermarks: Arc<Mutex<Watermarks>>,
    /// One fetch loop per partition.
    tasks: JoinSet<()>,
    /// What a partition added later needs to start its fetch loop.
    client: Arc<Client>,
    options: FetchOptions,
    /// The in-flight window shared by all partitions: a permit per undone record.
    window: Arc<Semaphore>,
    /// Where the fetch loops send records; the worker holds the receiver.
    tx: mpsc::Sender<RequestRecord>,
    /// Turns true when the worker stops: the loops stop fetching.
    shutdown: watch::Receiver<bool>,
    /// Partitions with a fetch loop now: its abort handle, and the partition's tenure,
    /// handed to every record of it.
    fetching: BTreeMap<i32, (AbortHandle, Arc<Tenure>)>,
}

/// Where a partition's fetch loop starts, and what a reset to `latest` passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPosition {
    /// The first offset to fetch.
    pub offset: i64,
    /// Offsets of records that were in the partition when a group without a committed offset
    /// started at `latest`: they are never executed, which an operator should hear about.
    pub skipped: Option<Range<i64>>,
}

/// Where to start `partition`: its committed offset, else per `reset`; `None` when there is
/// none and `reset` is [`OffsetReset::Never`].
pub async fn start_position(
    partition: &PartitionClient,
    committed: Option<i64>,
    reset: OffsetReset,
) -> Result<Option<StartPosition>, ClientError> {
    if let Some(offset) = committed {
        return Ok(Some(StartPosition {
            offset,
            skipped: None,
        }));
    }
    let Some(at) = reset_to(reset) else {
        return Ok(None);
    };
    let offset = partition.get_offset(at).await?;
    let skipped = match reset {
        OffsetReset::Earliest | OffsetReset::Never => None,
        OffsetReset::Latest => {
            let earliest = partition.get_offset(OffsetAt::Earliest).await?;
            (earliest < offset).then_some(earliest..offset)
        }
    };
    Ok(Some(StartPosition { offset, skipped }))
}

fn reset_to(reset: OffsetReset) -> Option<OffsetAt> {
    match reset {
        OffsetReset::Latest => Some(OffsetAt::Latest),
        OffsetReset::Earliest => Some(OffsetAt::Earliest),
        OffsetReset::Never => None,
    }
}

/// Where each of `partitions` starts: its committed offset, else per `reset`. Warns of records a
/// reset to `latest` passes over; leaves out (with an ERROR) those that have no committed offset
/// when `reset` is [`OffsetReset::Never`].
pub(super) async fn start_positions(
    client: &Client,
    k: &KafkaSettings,
    partitions: &[i32],
    committed: &HashMap<i32, Option<i64>>,
    reset: OffsetReset,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut starts = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut unstarted = Vec::new();
    for &p in partitions {
        let pc = super::client::partition_client(client, &k.request_topic, p).await?;
        let start = start_position(&pc, committed.get(&p).copied().flatten(), reset)
            .await
            .map_err(|source| KafkaError::Client {
                context: format!("start offset of {}/{p}", k.request_topic),
                source,
            })?;
        let Some(start) = start else {
            unstarted.push(p);
            continue;
        };
        if let Some(range) = start.skipped {
            skipped.push((p, range));
        }
        starts.insert(p, start.offset);
    }
    warn_of_skipped(&k.group_id, &k.request_topic, &skipped);
    refuse_unstarted(&k.group_id, &k.request_topic, &unstarted);
    Ok(starts)
}

/// aiokafka raises `NoOffsetForPartitionError` here and hetida's consumer stops; the service
/// leaves just these partitions unconsumed (their requests wait in Kafka, nothing is skipped)
/// and says how to give them a start.
fn refuse_unstarted(group: &str, topic: &str, partitions: &[i32]) {
    if partitions.is_empty() {
        return;
    }
    tracing::error!(
        %group, %topic, ?partitions,
        "these partitions have no committed offset and auto_offset_reset is \"none\", so they \
         are not consumed until they have one: stop the service and set their start with \
         kafka-consumer-groups.sh --group {group} --topic {topic} --reset-offsets \
         --to-earliest (or --to-latest) --execute, or set \"auto_offset_reset\" to \
         \"earliest\" or \"latest\" in HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS"
    );
}

/// A group that has never committed and starts at `latest` (hetida's default) never executes
/// the requests already in the topic. That is Kafka's rule, kept for compatibility, but a new
/// user who produced a request first and started the service second sees nothing happen: say so.
fn warn_of_skipped(group: &str, topic: &str, skipped: &[(i32, Range<i64>)]) {
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

impl RequestConsumer {
    /// Starts one fetch loop per entry of `starts` (partition -> first offset).
    pub async fn start(
        client: Arc<Client>,
        options: FetchOptions,
        starts: HashMap<i32, i64>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(RequestConsumer, mpsc::Receiver<RequestRecord>), KafkaError> {
        let (tx, rx) = mpsc::channel(options.max_in_flight.max(1));
        let mut consumer = RequestConsumer {
            watermarks: Arc::new(Mutex::new(Watermarks::default())),
            tasks: JoinSet::new(),
            client,
            window: Arc::new(Semaphore::new(options.max_in_flight)),
            options,
            tx,
            shutdown,
            fetching: BTreeMap::new(),
        };
        for (partition, offset) in starts {
            consumer.add_partition(partition, offset);
        }
        Ok((consumer, rx))
    }

    /// Starts fetching `partition` at `offset` (also for partitions added to the topic later).
    /// Returns at once: the partition's client is made in its fetch loop's own task, so a
    /// caller never waits on Kafka here.
    pub fn add_partition(&mut self, partition: i32, offset: i64) {
        self.watermarks
            .lock()
            .expect("watermark lock")
            .start(partition, offset);
        let client = self.client.clone();
        let options = self.options.clone();
        let window = self.window.clone();
        let watermarks = self.watermarks.clone();
        let tx = self.tx.clone();
        let mut shutdown = self.shutdown.clone();
        let tenure = Tenure::new(partition);
        let state = tenure.clone();
        // Loops of partitions revoked earlier are over: let go of them.
        while self.tasks.try_join_next().is_some() {}
        let handle = self.tasks.spawn(async move {
            let Some(pc) =
                partition_client_until_stopped(&client, &options.topic, partition, &mut shutdown)
                    .await
            else {
                return;
            };
            let shared = Shared {
                window,
                watermarks,
                tx,
                tenure,
            };
            fetch_loop(pc, offset, options, shared, shutdown).await;
        });
        self.fetching.insert(partition, (handle, state));
    }

    /// Stops fetching `partitions` (those fetched, of them): their records not started are
    /// not executed. Returns their tenures, whose records in flight the caller gives up
    /// (see `tenure::GiveUp`).
    pub fn revoke(&mut self, partitions: &[i32]) -> Vec<Arc<Tenure>> {
        let mut tenures = Vec::new();
        for p in partitions {
            if let Some((handle, tenure)) = self.fetching.remove(p) {
                // A loop holds no state worth keeping.
                handle.abort();
                tenures.push(tenure);
            }
        }
        tenures
    }

    /// The partitions fetched now.
    pub fn fetching(&self) -> Vec<i32> {
        self.fetching.keys().copied().collect()
    }

    /// Waits until every fetch loop has stopped (after shutdown was signalled).
    pub async fn join(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// The fetch loops, taken out to be joined without holding the consumer.
    pub(super) fn take_loops(&mut self) -> JoinSet<()> {
        std::mem::take(&mut self.tasks)
    }
}

/// The client of `partition`, retried until it is made or the worker stops. rskafka retries
/// an unreachable broker inside; what comes out here is rarer (metadata that names no leader
/// for long), and waiting is still right: the partition's requests stay in Kafka.
async fn partition_client_until_stopped(
    client: &Client,
    topic: &str,
    partition: i32,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<PartitionClient> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match super::client::partition_client(client, topic, partition).await {
            Ok(pc) => return Some(pc),
            Err(e) => {
                tracing::warn!(%topic, partition, "no client for the partition yet, retrying: {e}");
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}

/// Why the batch at an offset cannot be read, and what an operator can do about it.
fn remedy(problem: &Problem) -> &'static str {
    match problem {
        Problem::CodecNotBuilt(Codec::Lz4) => {
            "the batch is lz4-compressed and this build was made without the `lz4` feature; \
             build with `--features lz4` or have the producers use gzip or snappy"
        }
        Problem::CodecNotBuilt(Codec::Zstd) => {
            "the batch is zstd-compressed and this build was made without the `zstd` feature; \
             build with `--features zstd` or have the producers use gzip or snappy"
        }
        Problem::OldFormat(_) => {
            "the batch is in a message format older than Kafka 0.11's; have the broker convert \
             it (a current `log.message.format.version`) or move the group's offset past it"
        }
        // Corrupt batches are answered and passed, never parked (`FetchLoop::corrupt`).
        _ => {
            "this build cannot read the batch; deploy one that can, or move the group's offset \
             past it (kafka-consumer-groups --reset-offsets) and restart the service"
        }
    }
}

/// How often a partition parked at an undecodable batch tries again. Retrying cannot help
/// the same binary with the same batch, but it keeps the problem in the log without flooding
/// it, and a broker-side glitch would heal.
const UNDECODABLE_RETRY: Duration = Duration::from_secs(30);

/// One partition's fetch loop: its position and what it needs to hand records out.
struct FetchLoop {
    /// The partition's client, for its log start and end offsets (resets).
    pc: PartitionClient,
    /// Fetches from the partition's leader (leader changes are followed inside).
    leader: LeaderFetch,
    partition: i32,
    /// The next offset to fetch.
    offset: i64,
    options: FetchOptions,
    /// The worker's in-flight window (see [`RequestConsumer`]).
    window: Arc<Semaphore>,
    /// Records handed out and skipped offsets are noted here.
    watermarks: Arc<Mutex<Watermarks>>,
    /// To the worker.
    tx: mpsc::Sender<RequestRecord>,
    /// The tenure this loop fetches in; handed to every record.
    tenure: Arc<Tenure>,
    /// Stops the loop, also while it waits for a fetch or a window place.
    shutdown: watch::Receiver<bool>,
    /// Pause before the next try after a failed fetch.
    backoff: Backoff,
    /// The offset of an undecodable batch this partition waits at, once it was reported.
    parked_at: Option<i64>,
    /// The first offset of a corrupt batch seen once, to be read again before it is given up.
    suspect: Option<i64>,
}

/// Whether the loop goes on after a step.
enum Next {
    Continue,
    Stop,
}

/// What every fetch loop of a worker shares.
struct Shared {
    /// The worker's in-flight window (see [`RequestConsumer`]).
    window: Arc<Semaphore>,
    /// Records handed out and skipped offsets are noted here.
    watermarks: Arc<Mutex<Watermarks>>,
    /// To the worker.
    tx: mpsc::Sender<RequestRecord>,
    /// The tenure the loop fetches in; handed to every record.
    tenure: Arc<Tenure>,
}

async fn fetch_loop(
    pc: PartitionClient,
    offset: i64,
    options: FetchOptions,
    shared: Shared,
    shutdown: watch::Receiver<bool>,
) {
    let partition = pc.partition();
    let leader = LeaderFetch::new(
        options.cluster.clone(),
        &options.topic,
        partition,
        options.isolation,
        options.max_bytes,
        i32::try_from(options.max_wait.as_millis()).unwrap_or(i32::MAX),
    );
    let mut l = FetchLoop {
        partition,
        pc,
        leader,
        offset,
        options,
        window: shared.window,
        watermarks: shared.watermarks,
        tx: shared.tx,
        tenure: shared.tenure,
        shutdown,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        parked_at: None,
        suspect: None,
    };
    l.run().await;
}

impl Drop for FetchLoop {
    /// However the loop ends (stopped, or aborted when its partition is revoked), a partition
    /// parked here is no longer.
    fn drop(&mut self) {
        if self.parked_at.is_some() {
            crate::metrics::worker().parked(false);
        }
    }
}

impl FetchLoop {
    async fn run(&mut self) {
        while !*self.shutdown.borrow() {
            let fetched = tokio::select! {
                r = self.leader.fetch(self.offset) => r,
                _ = self.shutdown.changed() => break,
            };
            let next = match fetched {
                Ok(fetched) => self.take(fetched).await,
                Err(FetchError::OffsetOutOfRange) => self.reset_out_of_range().await,
                Err(e) => {
                    tracing::warn!(topic = %self.options.topic, partition = self.partition, offset = self.offset,
                        "fetch failed, retrying: {e}");
                    self.back_off().await
                }
            };
            if matches!(next, Next::Stop) {
                break;
            }
        }
    }

    /// Goes through the batches of one fetch in order: hands out the records of those to be
    /// read, passes over the others (transaction markers, aborted transactions under
    /// read_committed) and stops at one that cannot be read.
    async fn take(&mut self, mut fetched: Fetched) -> Next {
        let arrived = Instant::now();
        self.backoff.reset();
        for decoded in std::mem::take(&mut fetched.batches) {
            let batch = match decoded {
                Decoded::Batch(batch) => batch,
                Decoded::Unreadable(u) => {
                    let named = u.named_offsets(self.offset);
                    if named.is_empty() {
                        continue;
                    }
                    if matches!(u.problem, Problem::Corrupt(_)) {
                        return self.corrupt(u, named, arrived).await;
                    }
                    return self.park(u).await;
                }
            };
            // A fetch returns whole batches, which may start before the asked offset.
            if batch.next_offset() <= self.offset {
                continue;
            }
            self.unpark();
            let next = batch.next_offset();
            if fetched.transactions.keep(&batch) {
                if let Next::Stop = self.hand_out(batch.records, arrived).await {
                    return Next::Stop;
                }
            } else {
                tracing::debug!(topic = %self.options.topic, partition = self.partition, offset = batch.base_offset,
                    control = batch.control, "passing over a transaction marker or an aborted transaction's records");
            }
            // Offsets after the last record (removed by compaction, or a skipped batch) are
            // done as well.
            self.advance_to(next);
        }
        Next::Continue
    }

    /// Moves the fetch position (and the watermark's next offset) forward to `offset`.
    fn advance_to(&mut self, offset: i64) {
        if offset > self.offset {
            self.offset = offset;
            self.watermarks
                .lock()
                .expect("watermark lock")
                .skip_to(self.partition, offset);
        }
    }

    /// Waits the backoff's next pause, or until shutdown.
    async fn back_off(&mut self) -> Next {
        let pause = self.backoff.next_pause();
        self.sleep(pause).await
    }

    async fn sleep(&mut self, pause: Duration) -> Next {
        tokio::select! {
            _ = tokio::time::sleep(pause) => Next::Continue,
            _ = self.shutdown.changed() => Next::Stop,
        }
    }

    /// Skipping a batch this build cannot read (a codec it lacks, an old format) would lose
    /// the requests in it without a response (no job id can be read from them), so the
    /// partition waits here, its commits stay below the batch, and the other partitions go
    /// on. An ERROR the first time, a WARN on each retry.
    async fn park(&mut self, batch: Unreadable) -> Next {
        let first = self.parks_here();
        let (topic, partition, offset) = (&self.options.topic, self.partition, self.offset);
        let reason = &batch.problem;
        if first {
            tracing::error!(%topic, partition, offset, %reason,
                "cannot decode the request batch at this offset: the partition waits here \
                 and nothing in it or after it is skipped or committed; {}", remedy(reason));
        } else {
            tracing::warn!(%topic, partition, offset, %reason,
                "the request batch at this offset still cannot be decoded; {}", remedy(reason));
        }
        self.sleep(UNDECODABLE_RETRY).await
    }

    /// A corrupt batch (its CRC does not match, its records do not add up) holds nothing any
    /// reader can get back, and waiting cannot mend it: each offset it names is handed out as
    /// an unreadable record (a failure response each, the batch's bytes to the dead-letter
    /// topic with the first), and the partition goes on after it. It is read twice first:
    /// bytes broken on the way read fine the second time.
    async fn corrupt(&mut self, batch: Unreadable, named: Range<i64>, fetched: Instant) -> Next {
        let (topic, partition) = (self.options.topic.clone(), self.partition);
        let problem = &batch.problem;
        if self.suspect != Some(named.start) {
            tracing::warn!(%topic, partition, offset = named.start, %problem,
                "a corrupt record batch; reading it once more");
            self.suspect = Some(named.start);
            return self.back_off().await;
        }
        self.suspect = None;
        self.unpark();
        tracing::error!(%topic, partition, first = named.start, last = named.end - 1, %problem,
            "a corrupt record batch: no request in it can be read; each of its offsets gets a \
             failure response, its bytes go to the dead-letter topic, and the partition goes on");
        let reason = format!(
            "its record batch (offsets {} to {}) is corrupt and none of its records can be read \
             ({problem})",
            named.start,
            named.end - 1
        );
        let mut raw = Some(batch.raw);
        for offset in named.clone() {
            let record = Record {
                offset,
                timestamp: 0,
                key: None,
                value: raw.take(),
                headers: Vec::new(),
            };
            if let Next::Stop = self
                .hand_out_one(record, fetched, Some(reason.clone()))
                .await
            {
                return Next::Stop;
            }
        }
        self.advance_to(named.end);
        Next::Continue
    }

    /// Parks the partition at its fetch position (counted in `parked_partitions` once, however
    /// often it moves on to park again). `true` the first time at this offset: the ERROR's turn;
    /// `false` on a retry there: a WARN's.
    fn parks_here(&mut self) -> bool {
        if self.parked_at == Some(self.offset) {
            return false;
        }
        if self.parked_at.is_none() {
            crate::metrics::worker().parked(true);
        }
        self.parked_at = Some(self.offset);
        true
    }

    /// A batch was read where the partition was parked: it goes on.
    fn unpark(&mut self) {
        if self.parked_at.take().is_some() {
            crate::metrics::worker().parked(false);
            tracing::info!(topic = %self.options.topic, partition = self.partition, offset = self.offset, "the partition reads again at this offset and goes on");
        }
    }

    /// The offset is gone (retention) or not there yet: start again per `auto_offset_reset`;
    /// with `none` the partition waits here (see [`Self::out_of_range_kept`]).
    async fn reset_out_of_range(&mut self) -> Next {
        let Some(at) = reset_to(self.options.reset) else {
            return self.out_of_range_kept().await;
        };
        let (topic, partition, offset) = (&self.options.topic, self.partition, self.offset);
        match self.pc.get_offset(at).await {
            Ok(new) => {
                tracing::warn!(%topic, partition, offset, new, "offset out of range (deleted by retention?), reset per auto_offset_reset");
                self.watermarks
                    .lock()
                    .expect("watermark lock")
                    .skip_to(partition, new);
                self.offset = new;
                Next::Continue
            }
            Err(e) => {
                tracing::warn!(%topic, partition, offset, "resetting an out-of-range offset failed, retrying: {e}");
                self.back_off().await
            }
        }
    }

    /// `auto_offset_reset: none` and an offset out of range: aiokafka raises
    /// `OffsetOutOfRangeError`; here the partition waits at its offset (parked: nothing skipped,
    /// nothing committed past it) and asks again now and then, in case the range comes back
    /// to it. An ERROR the first time, a WARN on each retry.
    async fn out_of_range_kept(&mut self) -> Next {
        let first = self.parks_here();
        let (topic, partition, offset) = (&self.options.topic, self.partition, self.offset);
        if first {
            tracing::error!(%topic, partition, offset,
                "offset out of range (deleted by retention?) and auto_offset_reset is \"none\": \
                 the partition waits here; set its offset with kafka-consumer-groups.sh \
                 --reset-offsets while the service is stopped, or set auto_offset_reset to \
                 \"earliest\" or \"latest\"");
        } else {
            tracing::warn!(%topic, partition, offset,
                "offset still out of range and auto_offset_reset is \"none\": the partition waits");
        }
        self.sleep(UNDECODABLE_RETRY).await
    }

    /// Hands out each record at or after the fetch position with a place of the in-flight
    /// window.
    async fn hand_out(&mut self, records: Vec<Record>, fetched: Instant) -> Next {
        for r in records {
            if r.offset < self.offset {
                continue;
            }
            if let Next::Stop = self.hand_out_one(r, fetched, None).await {
                return Next::Stop;
            }
        }
        Next::Continue
    }

    /// Hands out one record, waiting for a place of the in-flight window while it is full (the
    /// back-pressure of design decision 5).
    async fn hand_out_one(
        &mut self,
        r: Record,
        fetched: Instant,
        unreadable: Option<String>,
    ) -> Next {
        let permit = tokio::select! {
            p = self.window.clone().acquire_owned() => p.expect("the window is never closed"),
            _ = self.shutdown.changed() => return Next::Stop,
        };
        self.watermarks
            .lock()
            .expect("watermark lock")
            .handed_out(self.partition, r.offset);
        self.tenure.handed_out();
        let record = RequestRecord {
            partition: self.partition,
            offset: r.offset,
            key: r.key,
            value: r.value,
            headers: r.headers,
            unreadable,
            done: DoneToken {
                completion: Some(Completion::Watermarks(self.watermarks.clone())),
                partition: self.partition,
                offset: r.offset,
                tenure: self.tenure.clone(),
                slot: Some(permit),
            },
            fetched,
            deliveries: None,
            tenure: self.tenure.clone(),
        };
        self.offset = r.offset + 1;
        if self.tx.send(record).await.is_err() {
            return Next::Stop;
        }
        Next::Continue
    }
}
