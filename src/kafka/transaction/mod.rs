//! Exactly-once responses (opt-in, `--exactly-once`): each response and its request's
//! committed offset go to Kafka in one transaction, so a `read_committed` reader sees exactly
//! one response per request, whatever crashes, restarts or rebalances happen.
//!
//! The worker's transactions run in one task, which takes the committer's place: executions
//! hand it their finished responses; it answers whole runs of a partition's offsets at a time
//! (a response becomes visible only with a commit that covers its request, so a response
//! waits for every lower offset of its partition to be answered too), one transaction after
//! the other: whatever finished while one was open goes into the next. Per transaction
//! (Kafka's transaction version 1, every broker since 2.5): AddPartitionsToTxn, Produce,
//! AddOffsetsToTxn, TxnOffsetCommit (with the member's generation: a zombie is refused),
//! EndTxn.
//!
//! Any failure aborts: EndTxn(abort), then the producer is initialised again with its current
//! epoch (KIP-360), which bumps the epoch (see `standing` for why in that order), and the same
//! responses go into the next transaction; nothing of the aborted one becomes visible to `read_committed` readers
//! (`read_uncommitted` readers do see it). Only when another producer took the transactional id
//! over (PRODUCER_FENCED) does the worker stop. The execution itself may have run twice (a
//! request whose worker died before its transaction committed runs again on the partition's
//! next owner): the runtime is outside Kafka.

mod calls;
mod plan;
mod produce;
mod standing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use self::calls::{ProducerIdentity, TransactionCoordinator, txn_offset_commit};
use self::plan::{Limits, Plan, Weighed};
use self::produce::{Leaders, PartitionBatch, ProduceError};
use self::standing::{After, Answer, Standing, Step};
use super::committer::{Command, CommitterClient, CommitterTask, OUTAGE_REPORT_INTERVAL};
use super::consumer::DoneToken;
use super::coordinator::{CoordinatorError, Generation, GroupCoordinator};
use super::error::Refused;
use super::producer::PreparedRecord;
use super::security::BrokerAuth;
use super::watermark::Watermarks;
use crate::backoff::Backoff;
use crate::metrics::board::Produced;

/// How long committing what is ready may take when the member gives partitions up (or the
/// worker stops): as long as a commit's retry budget.
const FLUSH_BUDGET: Duration = Duration::from_secs(10);
/// How long aborting (initialising anew) may keep the task from its commands before it
/// tries again later.
const INIT_BUDGET: Duration = Duration::from_secs(10);
/// Most requests answered in one transaction.
const MAX_REQUESTS_PER_TRANSACTION: usize = 2_000;

/// One request's answer, handed to the transaction task.
#[derive(Debug)]
pub struct Finished {
    /// What may answer the request, best first: the response, then failure responses, each
    /// replacing the one before if the broker refuses it as too large (the last without the
    /// request's key and headers). Empty, or all refused: the offset commits without an answer.
    pub answers: Vec<PreparedRecord>,
    /// The request record itself, for the dead-letter topic.
    pub dead_letter: Option<PreparedRecord>,
    /// The request's offset; completed when the transaction commits.
    pub done: DoneToken,
}

/// What became of a [`Finished`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed with its request's offset.
    Committed {
        /// Which of [`Finished::answers`] went (the ones before were refused as too large);
        /// their number when none did: the offset committed without an answer.
        answered_with: usize,
        /// The dead letter is in Kafka, committed with the answer.
        dead_lettered: bool,
        /// The dead-letter topic was missing: the transaction went on without the dead letter,
        /// which is for the caller to produce on its own.
        dead_letter_left_out: bool,
    },
    /// Not answered: the partition went to another member (which executes the request again)
    /// or the worker stops before it could commit.
    Dropped,
}

/// An answer on its way to the transaction task, with its place in the queue if it got one.
type Handed = (
    Finished,
    oneshot::Sender<Outcome>,
    Option<OwnedSemaphorePermit>,
);

/// Hands finished answers to the transaction task; cheap to clone into executions.
#[derive(Debug, Clone)]
pub struct TransactionalAnswers {
    tx: mpsc::UnboundedSender<Handed>,
    /// Places in the queue of answers waiting for a transaction.
    queue: Arc<Semaphore>,
}

impl TransactionalAnswers {
    /// Queues `finished` for the next transaction and waits until it is committed (or
    /// dropped). With a place free in the queue, its place in the in-flight window is given
    /// back at once, so the next execution need not wait for the transaction: transactions then
    /// carry more than one window's worth. Without one it keeps its window place: memory stays
    /// bounded (queue plus window), and an answer is never kept out of the queue, where the
    /// answers behind it in its partition may be waiting for it.
    pub async fn answer(&self, mut finished: Finished) -> Outcome {
        let place = self.queue.clone().try_acquire_owned().ok();
        if place.is_some() {
            finished.done.release_slot();
        }
        let (reply, outcome) = oneshot::channel();
        if self.tx.send((finished, reply, place)).is_err() {
            return Outcome::Dropped;
        }
        outcome.await.unwrap_or(Outcome::Dropped)
    }
}

/// Where a transaction task's parts come from.
#[derive(Debug)]
pub struct TransactionSetup {
    /// This worker's transactional id: stable across restarts, so that its replacement fences
    /// it and aborts what it left open.
    pub transactional_id: String,
    /// `transaction_timeout_ms`: how long the coordinator lets a transaction stay open before
    /// it aborts it.
    pub transaction_timeout: Duration,
    /// The group's coordinator client (offsets).
    pub group: GroupCoordinator,
    /// The producer side's brokers, client id, security and codec.
    pub producer_bootstrap: Vec<String>,
    /// Codec of the responses' record batches.
    pub compression: crate::config::Compression,
    /// The client id the producer's connections announce.
    pub client_id: String,
    /// Credentials and TLS of the producer's connections.
    pub producer_auth: BrokerAuth,
    /// The request topic.
    pub topic: String,
    /// The offsets handed out and finished, shared with the fetch loops: a transaction commits
    /// only a contiguous run of finished offsets.
    pub watermarks: Arc<Mutex<Watermarks>>,
    /// The group's offsets as fetched at start.
    pub committed: HashMap<i32, Option<i64>>,
    /// The member's current generation: offsets commit under it, so that a zombie's commits
    /// are refused.
    pub generation: watch::Receiver<Generation>,
    /// Bytes of records one batch may hold, per topic produced to.
    pub budgets: HashMap<String, usize>,
    /// Most answers waiting for a transaction at once.
    pub queue_limit: usize,
}

/// The transaction task as the session holds it: the committer's handle, the executions'
/// handle, and the reason should Kafka refuse this worker for good.
#[derive(Debug)]
pub struct Started {
    /// The same handle as the at-least-once committer's: the session asks it to commit what is
    /// due before a rebalance and at the end, and for the offsets of added partitions.
    pub committer: CommitterTask,
    /// What the executions hand their answers to.
    pub answers: TransactionalAnswers,
    /// Fires when Kafka refuses this worker's transactions for good (fenced, unauthorized):
    /// the worker then stops.
    pub refused: oneshot::Receiver<Refused>,
}

/// Initialises the transactional id (fencing earlier producers of it, aborting their open
/// transaction) and starts the task. Must be called inside a [`tokio::task::LocalSet`].
pub async fn start(setup: TransactionSetup) -> Result<Started, Refused> {
    let queue_limit = setup.queue_limit.max(1);
    let coordinator = TransactionCoordinator::new(
        GroupCoordinator::new(
            setup.producer_bootstrap.clone(),
            setup.group.group(),
            &setup.client_id,
        )
        .with_auth(setup.producer_auth.clone())
        .for_transactions(&setup.transactional_id),
        &setup.transactional_id,
        timeout_millis(setup.transaction_timeout),
    );
    let mut task = Transactions {
        coordinator,
        group: setup.group,
        leaders: Leaders::new(
            setup.producer_bootstrap,
            &setup.client_id,
            setup.producer_auth,
            setup.compression,
        ),
        topic: setup.topic,
        watermarks: setup.watermarks,
        committed: setup
            .committed
            .iter()
            .filter_map(|(p, o)| Some((*p, (*o)?)))
            .collect(),
        generation: setup.generation,
        standing: Standing::Uninitialised,
        sequences: HashMap::new(),
        pending: BTreeMap::new(),
        budgets: setup.budgets,
        solo: HashSet::new(),
        attempt_budget: (setup.transaction_timeout / 2).max(Duration::from_secs(1)),
        failing: None,
        transaction_timeout: setup.transaction_timeout,
    };
    task.initialise().await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (commands_tx, commands) = mpsc::channel(8);
    let (refused_tx, refused) = oneshot::channel();
    let handle = tokio::task::spawn_local(async move {
        if let Err(e) = task.run(rx, commands).await {
            let _ = refused_tx.send(e);
        }
    });
    Ok(Started {
        committer: CommitterTask::from_parts(CommitterClient::from_sender(commands_tx), handle),
        answers: TransactionalAnswers {
            tx,
            queue: Arc::new(Semaphore::new(queue_limit)),
        },
        refused,
    })
}

/// `transaction_timeout` as InitProducerId takes it.
fn timeout_millis(timeout: Duration) -> i32 {
    i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX)
}

/// Initialises `transactional_id` once, before anything else of the worker reads offsets:
/// that aborts the open transaction of the worker's predecessor (killed, say), whose pending
/// offset commit would otherwise hold up the stable offsets until its transaction timed out.
/// Waits out an unreachable coordinator.
pub async fn abort_predecessor(
    coordinator: GroupCoordinator,
    transactional_id: &str,
    transaction_timeout: Duration,
) -> Result<(), Refused> {
    let mut coordinator = TransactionCoordinator::new(
        coordinator.for_transactions(transactional_id),
        transactional_id,
        timeout_millis(transaction_timeout),
    );
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match coordinator.init(None).await {
            Ok(_) => return Ok(()),
            Err(e) if !e.is_transient() => return Err(Refused::ByGroup(e)),
            Err(e) => {
                tracing::debug!("initialising the transactional id, trying again: {e}");
                backoff.wait().await;
            }
        }
    }
}

/// A queued answer and where its outcome goes.
#[derive(Debug)]
struct Queued {
    finished: Finished,
    reply: oneshot::Sender<Outcome>,
    /// Which of the answers goes: those before it were refused as too large.
    answered_with: usize,
    /// The dead letter was taken out: its topic is missing.
    dead_letter_left_out: bool,
    /// Its place in the queue, if it got one, given back when it is committed or dropped.
    _place: Option<OwnedSemaphorePermit>,
}

/// The transaction task's state.
struct Transactions {
    coordinator: TransactionCoordinator,
    /// The group's coordinator (TxnOffsetCommit, OffsetFetch).
    group: GroupCoordinator,
    leaders: Leaders,
    /// The request topic.
    topic: String,
    watermarks: Arc<Mutex<Watermarks>>,
    /// What the group holds, as far as this worker knows.
    committed: HashMap<i32, i64>,
    generation: watch::Receiver<Generation>,
    /// The producer's identity, and whether a transaction of it is open.
    standing: Standing,
    /// Next sequence number per partition produced to, in the current epoch.
    sequences: HashMap<(String, i32), i32>,
    /// Finished answers by request partition and offset.
    pending: BTreeMap<i32, BTreeMap<i64, Queued>>,
    /// Bytes of records one batch may hold, per topic.
    budgets: HashMap<String, usize>,
    /// Partitions whose batches carry one record at a time (a batch was refused as too large).
    solo: HashSet<(String, i32)>,
    /// How long producing in one transaction may retry.
    attempt_budget: Duration,
    /// Since when transactions fail, and when that was last reported.
    failing: Option<(Instant, Instant)>,
    /// `transaction_timeout_ms`.
    transaction_timeout: Duration,
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
}

/// A coordinator call's result as [`Standing`] takes it.
fn answer<T: Copy>(result: &Result<T, CoordinatorError>) -> Answer<T> {
    use kafka_protocol::error::ResponseError;
    match result {
        Ok(v) => Answer::Done(*v),
        // Kafka's codes that mean another producer holds the transactional id now (or the
        // coordinator fenced the epoch itself).
        Err(e)
            if e.kafka_code().is_some_and(|c| {
                c == ResponseError::ProducerFenced.code()
                    || c == ResponseError::InvalidProducerEpoch.code()
            }) =>
        {
            Answer::Fenced
        }
        Err(e) if e.is_transient() => Answer::Transient,
        Err(_) => Answer::Refused,
    }
}

impl Transactions {
    /// InitProducerId; waits out an unreachable coordinator.
    async fn initialise(&mut self) -> Result<(), Refused> {
        self.ready_within(None).await.map(drop)
    }

    /// Makes the producer ready for a transaction: initialises it, or aborts its open
    /// transaction and bumps its epoch, as [`Standing`] says; waits out an unreachable
    /// coordinator for `budget` at most. The identity to begin with; `None` when the budget ran
    /// out (the next transaction picks up where this left off).
    async fn ready_within(
        &mut self,
        budget: Option<Duration>,
    ) -> Result<Option<ProducerIdentity>, Refused> {
        let deadline = budget.map(|b| Instant::now() + b);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let (after, error) = match self.standing.step() {
                Step::Begin(identity) => return Ok(Some(identity)),
                Step::Abort(who) => {
                    let result = self.coordinator.end(who, false).await;
                    let answer = answer(&result);
                    let now = Instant::now();
                    let after = self.standing.aborted(answer, now, self.transaction_timeout);
                    tracing::debug!(?answer, ?after, "EndTxn(abort) of the failed transaction");
                    (after, result.err())
                }
                Step::Initialise(current) => {
                    let result = self.coordinator.init(current).await;
                    let answer = answer(&result);
                    if let Answer::Done(identity) = answer {
                        if current.is_none() {
                            tracing::info!(
                                transactional_id = self.coordinator.transactional_id(),
                                producer_id = identity.id,
                                epoch = identity.epoch,
                                "transactional producer ready"
                            );
                        }
                        // A new epoch: sequences start at 0 again.
                        self.sequences.clear();
                    }
                    let after = self.standing.initialised(answer);
                    tracing::debug!(?answer, ?after, "InitProducerId");
                    (after, result.err())
                }
            };
            match (after, error) {
                (After::Next, _) => {}
                (After::Fenced, _) => {
                    return Err(Refused::ProducerFenced {
                        transactional_id: self.coordinator.transactional_id().to_owned(),
                    });
                }
                (After::Refused, Some(e)) => return Err(Refused::ByGroup(e)),
                (After::Refused | After::Retry, e) => {
                    let what = e.map_or_else(|| "no answer".to_owned(), |e| e.to_string());
                    self.note_failure(&format!("readying the transactional producer: {what}"));
                    if deadline.is_some_and(|d| Instant::now() + backoff.next_pause() >= d) {
                        return Ok(None);
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    async fn run(
        &mut self,
        mut finished: mpsc::UnboundedReceiver<Handed>,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<(), Refused> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut not_before = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let work = self.has_work();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Fetch(partitions, reply)) => {
                        let answer = self.group.fetch(&self.topic, &partitions).await;
                        let _ = reply.send(answer);
                    }
                    Some(Command::Now(reply)) => {
                        while let Ok(item) = finished.try_recv() {
                            self.queue(item);
                        }
                        let outcome = self.flush().await?;
                        let _ = reply.send(outcome);
                    }
                    Some(Command::Last(reply)) => {
                        while let Ok(item) = finished.try_recv() {
                            self.queue(item);
                        }
                        let outcome = self.flush().await?;
                        let _ = reply.send(outcome);
                        return Ok(());
                    }
                    None => return Ok(()),
                },
                item = finished.recv() => {
                    let Some(item) = item else { return Ok(()) };
                    self.queue(item);
                    while let Ok(item) = finished.try_recv() {
                        self.queue(item);
                    }
                }
                _ = tokio::time::sleep_until(not_before), if work => {
                    match self.transact().await? {
                        Ok(_) => {
                            backoff.reset();
                            not_before = Instant::now();
                        }
                        Err(()) => not_before = Instant::now() + backoff.next_pause(),
                    }
                }
                _ = tick.tick() => {}
            }
        }
    }

    fn queue(&mut self, (finished, reply, place): Handed) {
        let (p, o) = (finished.done.partition(), finished.done.offset());
        self.pending.entry(p).or_default().insert(
            o,
            Queued {
                finished,
                reply,
                answered_with: 0,
                dead_letter_left_out: false,
                _place: place,
            },
        );
    }

    /// Whether a transaction has something to do: answers ready to commit, or offsets that
    /// moved without one.
    fn has_work(&mut self) -> bool {
        let plan = self.plan();
        !plan.is_empty()
    }

    /// Commits what is ready now, transaction after transaction, until nothing is; gives up
    /// after a few failures (the caller goes on without, as with a failed commit).
    async fn flush(&mut self) -> Result<Result<Vec<(i32, i64)>, CoordinatorError>, Refused> {
        let mut committed = Vec::new();
        let mut failures = 0;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let deadline = Instant::now() + FLUSH_BUDGET;
        while self.has_work() && Instant::now() < deadline {
            // Bounded between transactions, never inside one: a transaction cut short after
            // its EndTxn may have committed.
            match self.transact().await? {
                Ok(offsets) => committed.extend(offsets),
                Err(()) => {
                    failures += 1;
                    if failures == 3 || Instant::now() >= deadline {
                        return Ok(Err(CoordinatorError::Protocol {
                            group: self.group.group().to_owned(),
                            api: "EndTxn",
                            broker: String::new(),
                            cause: format!(
                                "{failures} transaction(s) aborted, or not done within {FLUSH_BUDGET:?}"
                            ),
                        }));
                    }
                    backoff.wait().await;
                }
            }
        }
        if self.has_work() {
            return Ok(Err(CoordinatorError::Protocol {
                group: self.group.group().to_owned(),
                api: "EndTxn",
                broker: String::new(),
                cause: format!("answers left after {FLUSH_BUDGET:?} of transactions"),
            }));
        }
        Ok(Ok(committed))
    }

    /// What the next transaction carries: per request partition, the run of ready answers from
    /// its lowest outstanding offset on (within the batch limits), and the offset after it.
    /// Drops answers whose partition is no longer this worker's.
    fn plan(&mut self) -> Plan {
        // Read before the partitions are: a generation newer than the partitions seen could
        // commit partitions given up under the older one.
        let generation = self.generation.borrow().clone();
        let shared = self.watermarks.clone();
        let mut watermarks = shared.lock().expect("watermark lock");
        // Answers of partitions given up (or lost) are not produced: their next owner answers.
        let mut gone = Vec::new();
        for (&p, queued) in &self.pending {
            for (&o, q) in queued {
                // Not outstanding: the partition went and came back, and its offset was
                // answered (and committed) in the meantime.
                if !watermarks.is_outstanding(p, o) || q.finished.done.lost() {
                    gone.push((p, o));
                }
            }
        }
        if !gone.is_empty() {
            // Dropped without the lock: a done token that goes takes it.
            drop(watermarks);
            for (p, o) in gone {
                if let Some(q) = self.pending.get_mut(&p).and_then(|m| m.remove(&o)) {
                    let _ = q.reply.send(Outcome::Dropped);
                }
            }
            self.pending.retain(|_, m| !m.is_empty());
            watermarks = shared.lock().expect("watermark lock");
        }
        plan::plan(
            generation,
            &self.pending,
            &watermarks,
            &self.committed,
            &Limits {
                budgets: &self.budgets,
                solo: &self.solo,
                max_requests: MAX_REQUESTS_PER_TRANSACTION,
            },
        )
    }

    /// One transaction of what [`plan`](Self::plan) says. `Ok(Ok(offsets))` when it
    /// committed, `Ok(Err(()))` when it was aborted (the answers stay queued), `Err` when Kafka
    /// refuses this worker for good.
    async fn transact(&mut self) -> Result<Result<Vec<(i32, i64)>, ()>, Refused> {
        let mut plan = self.plan();
        if plan.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let identity = match self.standing.step() {
            Step::Begin(identity) => identity,
            _ => {
                let Some(identity) = self.ready_within(Some(INIT_BUDGET)).await? else {
                    return Ok(Err(()));
                };
                // Planned again: readying may have taken a while.
                plan = self.plan();
                if plan.is_empty() {
                    return Ok(Ok(Vec::new()));
                }
                identity
            }
        };
        self.standing.begin(Instant::now());
        match self.attempt(identity, &plan).await {
            Ok(()) => {
                self.standing.committed();
                self.committed.extend(plan.offsets.iter().copied());
                for &(p, o) in &plan.answers {
                    let Some(q) = self.pending.get_mut(&p).and_then(|m| m.remove(&o)) else {
                        continue;
                    };
                    let outcome = Outcome::Committed {
                        answered_with: q.answered_with,
                        dead_lettered: q.finished.dead_letter.is_some(),
                        dead_letter_left_out: q.dead_letter_left_out,
                    };
                    q.finished.done.complete();
                    let _ = q.reply.send(outcome);
                }
                self.pending.retain(|_, m| !m.is_empty());
                crate::metrics::worker().commit(true);
                if !plan.batches.is_empty() {
                    // Records went out, so the topics they went to exist.
                    crate::metrics::worker().set_topic_missing(Produced::Responses, false);
                }
                tracing::debug!(
                    answers = plan.answers.len(),
                    offsets = ?plan.offsets,
                    "transaction committed"
                );
                if let Some((since, _)) = self.failing.take() {
                    tracing::info!("transactions commit again after {:.0?}", since.elapsed());
                }
                Ok(Ok(plan.offsets))
            }
            Err(e) => {
                crate::metrics::worker().commit(false);
                if let Failure::Produce(ProduceError::TooLarge {
                    topic, partition, ..
                }) = &e
                {
                    self.shrink(&plan, topic, *partition);
                }
                let missing = self.missing_topics(&plan).await;
                self.note_failure(&format!(
                    "transaction aborted ({} answer(s) go into the next one): {e}{missing}",
                    plan.answers.len()
                ));
                // Aborts the open transaction and bumps the epoch (which fences a zombie of this
                // worker); if the coordinator cannot be reached now, the next transaction does
                // it first.
                self.ready_within(Some(INIT_BUDGET)).await?;
                Ok(Err(()))
            }
        }
    }

    /// After a failed transaction: asks the brokers whether a topic it wrote to is missing
    /// (deleted while the service runs). A missing response topic shows in `/readyz` until a
    /// transaction commits again; dead letters to a missing topic are left out of the
    /// transactions, so that they hold no response back (each is then produced on its own and
    /// retried for a bounded time). Returns what the failure's report adds.
    async fn missing_topics(&mut self, plan: &Plan) -> String {
        let mut topics: Vec<&str> = plan.batches.keys().map(|(t, _)| t.as_str()).collect();
        topics.dedup();
        if topics.is_empty() {
            return String::new();
        }
        let missing = match self.leaders.missing_topics(&topics).await {
            Ok(Ok(missing)) if !missing.is_empty() => missing,
            _ => return String::new(),
        };
        crate::metrics::worker().produce_retry();
        let mut words = Vec::new();
        for topic in &missing {
            let mut responses = false;
            let mut dead_letters = false;
            for q in self.pending.values_mut().flat_map(BTreeMap::values_mut) {
                let f = &mut q.finished;
                responses |= f.answers.iter().any(|a| &a.topic == topic);
                if f.dead_letter.as_ref().is_some_and(|d| &d.topic == topic) {
                    f.dead_letter = None;
                    q.dead_letter_left_out = true;
                    dead_letters = true;
                }
            }
            if responses {
                crate::metrics::worker().set_topic_missing(Produced::Responses, true);
                words.push(format!(
                    "the response topic {topic} does not exist (deleted?): responses wait until it is created again"
                ));
            } else if dead_letters {
                words.push(format!(
                    "the dead-letter topic {topic} does not exist (deleted?): the transactions go on without dead letters, which are produced on their own"
                ));
            }
        }
        words.iter().map(|w| format!("; {w}")).collect()
    }

    /// A batch to `topic`/`partition` was refused as too large: from now on it gets one record
    /// per batch; a record refused alone is replaced by the next of its answers (a failure
    /// response that says why), or left out if it is a dead letter or the last.
    fn shrink(&mut self, plan: &Plan, topic: &str, partition: i32) {
        let key = (topic.to_owned(), partition);
        let alone = plan.batches.get(&key) == Some(&1);
        if !alone {
            self.solo.insert(key);
            return;
        }
        for &(p, o) in &plan.answers {
            let Some(q) = self.pending.get_mut(&p).and_then(|m| m.get_mut(&o)) else {
                continue;
            };
            let f = &mut q.finished;
            if f.dead_letter
                .as_ref()
                .is_some_and(|d| d.topic == topic && d.partition == partition)
            {
                crate::metrics::worker().dead_letter_lost();
                tracing::error!(
                    partition = p,
                    offset = o,
                    "the dead letter is too large for its topic; left out"
                );
                f.dead_letter = None;
            } else if f
                .answers
                .get(q.answered_with)
                .is_some_and(|a| a.topic == topic && a.partition == partition)
            {
                q.answered_with += 1;
                let next = if q.answered_with < f.answers.len() {
                    "a smaller failure response goes instead"
                } else {
                    "nothing smaller is left: the offset commits without an answer"
                };
                tracing::error!(
                    partition = p,
                    offset = o,
                    "the answer is too large for its topic; {next}"
                );
            }
        }
    }

    async fn attempt(&mut self, who: ProducerIdentity, plan: &Plan) -> Result<(), Failure> {
        let txn_id = self.coordinator.transactional_id().to_owned();
        if !plan.batches.is_empty() {
            let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in plan.batches.keys() {
                partitions
                    .entry(topic.clone())
                    .or_default()
                    .push(*partition);
            }
            self.coordinator.add_partitions(who, &partitions).await?;
            let batches = self.batches(plan);
            let deadline = Instant::now() + self.attempt_budget;
            self.leaders
                .produce(&txn_id, who, &batches, deadline)
                .await?;
            for b in &batches {
                // Kafka's sequences wrap from i32::MAX to 0.
                let next =
                    ((i64::from(b.base_sequence) + b.records.len() as i64) % (1 << 31)) as i32;
                self.sequences.insert((b.topic.clone(), b.partition), next);
            }
        }
        if !plan.offsets.is_empty() {
            let group = self.group.group().to_owned();
            self.coordinator.add_offsets(who, &group).await?;
            txn_offset_commit(
                &mut self.group,
                &txn_id,
                who,
                &plan.generation,
                &self.topic,
                &plan.offsets,
            )
            .await?;
        }
        self.end_definitively(who).await?;
        Ok(())
    }

    /// EndTxn(commit) until its outcome is known. Once it may have reached the coordinator the
    /// transaction may be committing: aborting it by initialising anew would not undo that
    /// (the coordinator completes the commit first), and its answers would go out twice. The
    /// coordinator answers a repeat of a completed commit with success.
    async fn end_definitively(&mut self, who: ProducerIdentity) -> Result<(), CoordinatorError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.coordinator.end(who, true).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    self.note_failure(&format!(
                        "committing a transaction, outcome unknown, asking again: {e}"
                    ));
                    backoff.wait().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The record batches of `plan`: each answer's records, in the plan's order, to their
    /// partitions, numbered on from each partition's sequence.
    fn batches(&self, plan: &Plan) -> Vec<PartitionBatch> {
        let mut records: BTreeMap<(String, i32), Vec<PreparedRecord>> = BTreeMap::new();
        for (p, o) in &plan.answers {
            let Some(q) = self.pending.get(p).and_then(|m| m.get(o)) else {
                continue;
            };
            for r in q.records() {
                records
                    .entry((r.topic.clone(), r.partition))
                    .or_default()
                    .push(r.clone());
            }
        }
        records
            .into_iter()
            .map(|((topic, partition), records)| PartitionBatch {
                base_sequence: self
                    .sequences
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0),
                topic,
                partition,
                records,
            })
            .collect()
    }

    /// Reports failing transactions: the first failure, then once per interval while they go
    /// on.
    fn note_failure(&mut self, what: &str) {
        let now = Instant::now();
        let waiting: usize = self.pending.values().map(BTreeMap::len).sum();
        match &mut self.failing {
            None => {
                self.failing = Some((now, now));
                tracing::warn!("{what}; {waiting} answer(s) wait");
            }
            Some((since, reported)) if now.duration_since(*reported) >= OUTAGE_REPORT_INTERVAL => {
                *reported = now;
                tracing::warn!(
                    "transactions have failed for {:.0?}: {what}; {waiting} answer(s) wait; nothing is lost",
                    now.duration_since(*since)
                );
            }
            Some(_) => tracing::debug!("{what}"),
        }
    }
}

impl Weighed for Queued {
    fn weights(&self) -> Vec<(&str, i32, usize)> {
        self.records()
            .into_iter()
            .map(|r| (r.topic.as_str(), r.partition, r.bytes))
            .collect()
    }
}

impl Queued {
    /// The records of this answer in one transaction: the dead letter, then the response (or
    /// the failure response that replaces it; none when nothing fits).
    fn records(&self) -> Vec<&PreparedRecord> {
        let f = &self.finished;
        f.dead_letter
            .iter()
            .chain(f.answers.get(self.answered_with))
            .collect()
    }
}
