//! One worker's hold on Kafka: its clients, its partitions (fetch loops, watermarks: see
//! [`Partitions`]), the task that decides which partitions it owns (a group member), its
//! committer (or transaction task) and its answers. The worker sees requests
//! ([`RequestRecord`]s with their done tokens) and one [`Answers`] handle; clients, partition
//! start-up, offsets, committing and compression stay here. Committing and membership run in
//! tasks of their own, so the worker's loop never waits on Kafka.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::Client;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::answer::Answers;
use super::client::{connect, partition_count};
use super::cluster::ClusterMap;
use super::committer::Committer;
use super::committer::CommitterTask;
use super::consumer::RequestConsumer;
use super::consumer::RequestRecord;
use super::consumer::{FetchOptions, start_positions};
use super::coordinator::Generation;
use super::coordinator::GroupCoordinator;
use super::error::KafkaError;
use super::error::Refused;
use super::group::assignor::Assignor;
use super::member::consumer_protocol::{ConsumerMember, ConsumerMemberSettings};
use super::member::{Member, MemberParts, MemberSettings};
use super::partitions::Partitions;
use super::producer::ProducerSettings;
use super::producer::ResponseProducer;
use super::security::BrokerAuth;
use super::share::{ShareConsumer, ShareSettings, prepare_group};
use super::transaction::{self, TransactionSetup, TransactionalAnswers};
use super::watermark::Watermarks;
use crate::backoff::Backoff;
use crate::config::{GroupProtocol, KafkaSettings, OffsetReset, Partitioning};

/// Which partitions of the request topic a worker consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The consumer group decides (design decision 2): the worker is one member of
    /// `group_id`, beside any other members (other workers, other instances, hetida's own
    /// consumers).
    Group(MemberSettings),
    /// The same with the consumer protocol of KIP-848 (`group_protocol` `consumer`): the
    /// broker assigns, incrementally.
    ConsumerGroup(ConsumerMemberSettings),
    /// Worker `index` of `count` owns the partitions p with p mod count == index, and commits as
    /// a "simple consumer" without joining the group. Only while nothing else consumes the group.
    ByIndex {
        /// This worker's number.
        index: usize,
        /// How many workers split the partitions.
        count: usize,
    },
}

impl Ownership {
    /// What the settings ask of worker `index` of `count`: a member of the group (by the
    /// protocol configured), or the fixed split by index.
    pub fn of_worker(k: &KafkaSettings, index: usize, count: usize) -> Ownership {
        match (k.partitioning, k.group_protocol) {
            (Partitioning::Group, GroupProtocol::Consumer) => {
                Ownership::ConsumerGroup(ConsumerMemberSettings {
                    instance_id: k.membership.instance_id(index),
                    rebalance_timeout: k.rebalance_timeout,
                    assignor: k.remote_assignor.clone(),
                })
            }
            (Partitioning::Group, GroupProtocol::Classic) => Ownership::Group(MemberSettings {
                instance_id: k.membership.instance_id(index),
                session_timeout: k.session_timeout,
                heartbeat_interval: k.heartbeat_interval,
                rebalance_timeout: k.rebalance_timeout,
                assignors: Assignor::OFFERED.to_vec(),
            }),
            (Partitioning::Index, _) => Ownership::ByIndex { index, count },
            // Refused by the configuration; a share group's member is no `Ownership`.
            (Partitioning::Group, GroupProtocol::Share) => {
                unreachable!("a share group opens a ShareSession")
            }
        }
    }
}

/// The fixed split of [`Ownership::ByIndex`]: the partitions worker `index` of `count` owns of a
/// topic with `partition_count` partitions.
pub fn by_index(index: usize, count: usize, partition_count: i32) -> Vec<i32> {
    (0..partition_count)
        .filter(|p| (*p as usize) % count == index)
        .collect()
}

/// What opening a session hands the worker.
#[derive(Debug)]
pub struct Opened {
    /// Commits, partition discovery, stopping.
    pub session: Session,
    /// Requests in offset order per partition, as the in-flight window allows.
    pub records: mpsc::Receiver<RequestRecord>,
    /// Where answers go, at-least-once or exactly-once.
    pub answers: Answers,
}

/// A worker's Kafka session; see the module docs.
#[derive(Debug)]
pub struct Session(Kind);

/// A consumer group's (or a fixed split's) session, or a share group's.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per worker, made once and never moved in a loop"
)]
enum Kind {
    Group(GroupSession),
    Share(ShareSession),
}

/// A share group member's session: no partitions of its own, no commits (records are
/// acknowledged one by one).
#[derive(Debug)]
struct ShareSession {
    consumer: ShareConsumer,
}

/// The session of a consumer-group member or of a fixed split.
#[derive(Debug)]
struct GroupSession {
    /// By index: the partitions this worker fetched from the start (a group assigns them
    /// later, and says so in its log).
    fixed: Option<Vec<i32>>,
    /// The worker's partitions; shared with the task that decides which it owns.
    partitions: Partitions,
    /// Commits what the fetch loops' watermarks say is done, in a task of its own.
    committer: CommitterTask,
    /// Looks for partitions added to the request topic (by-index ownership), or takes part in
    /// the group (group ownership).
    ownership: OwnershipTask,
    /// The member's current generation, for leaving the group at the end.
    generation: watch::Receiver<Generation>,
    /// Brokers and group, for leaving the group at the end.
    settings: KafkaSettings,
    /// TLS and SASL of the consumer side, for leaving the group at the end.
    consumer_auth: BrokerAuth,
    /// Exactly-once: says why, should Kafka fence this worker's transactional producer.
    producer_fenced: Option<oneshot::Receiver<Refused>>,
    /// The group member's task has ended and said so through [`Session::refused`].
    member_ended: bool,
}

/// The task that decides what the worker fetches.
#[derive(Debug)]
enum OwnershipTask {
    /// The partition watch of a by-index split.
    ByIndex(JoinHandle<()>),
    /// The group member; ends with an error only when the group refuses it for good.
    Group(JoinHandle<Result<(), Refused>>),
}

impl Session {
    /// Connects and starts consuming the request topic as the settings say: a share-group
    /// member (`"group_protocol": "share"`), or else see [`GroupSession::open`].
    pub async fn open(
        settings: &KafkaSettings,
        (index, workers): (usize, usize),
        max_in_flight: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Opened, KafkaError> {
        if settings.group_protocol == GroupProtocol::Share {
            return ShareSession::open(settings, max_in_flight, shutdown).await;
        }
        GroupSession::open(settings, (index, workers), max_in_flight, shutdown).await
    }

    /// By index: the partitions this worker fetches; `None` in a group, which assigns them.
    pub fn fixed_partitions(&self) -> Option<&[i32]> {
        match &self.0 {
            Kind::Group(g) => g.fixed.as_deref(),
            Kind::Share(_) => None,
        }
    }

    /// Resolves when the group refuses this member for good (a fenced instance id, a refused
    /// authorization): the worker must stop; restarting would not help. Never resolves for a
    /// by-index split.
    pub async fn refused(&mut self) -> Refused {
        match &mut self.0 {
            Kind::Group(g) => g.refused().await,
            Kind::Share(s) => s.consumer.refused().await,
        }
    }

    /// Waits until every fetch loop has stopped (the shutdown signal was sent); nothing more
    /// comes out of `records`. Call [`finish`](Session::finish) after the in-flight executions
    /// are done. A share group's fetchers stop acquiring at the signal and go on sending the
    /// acknowledgements of the executions still running.
    pub async fn stop_fetching(&mut self) {
        if let Kind::Group(g) = &mut self.0 {
            g.stop_fetching().await;
        }
    }

    /// Kafka refused this worker for good: every fetch loop ends at once (see
    /// [`GroupSession::abandon_fetching`]; a share group's fetchers close their connections,
    /// which releases what they hold).
    pub async fn abandon_fetching(&mut self) {
        match &mut self.0 {
            Kind::Group(g) => g.abandon_fetching().await,
            Kind::Share(s) => s.consumer.abandon(),
        }
    }

    /// Commits what is done for the last time (a share group: closes its sessions with the
    /// last acknowledgements), then leaves the group; gives up at `deadline`.
    pub async fn finish(
        self,
        deadline: Instant,
        retire: bool,
    ) -> Result<Vec<(i32, i64)>, KafkaError> {
        match self.0 {
            Kind::Group(g) => g.finish(deadline, retire).await,
            Kind::Share(s) => {
                s.consumer.finish(deadline).await;
                Ok(Vec::new())
            }
        }
    }
}

impl ShareSession {
    /// Connects, sets up the producers, and joins the share group; records come out as the
    /// group's members acquire them.
    async fn open(
        k: &KafkaSettings,
        max_in_flight: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Opened, KafkaError> {
        let consumer_auth = BrokerAuth::new(&k.consumer_security)?;
        let producer_auth = BrokerAuth::new(&k.producer_security)?;
        let (client, producer_client) = clients(k, &consumer_auth, &producer_auth).await?;
        until_kafka_answers("read the request topic's partitions", async || {
            partition_count(&client, &k.request_topic)
                .await?
                .ok_or_else(|| KafkaError::NoRequestTopic {
                    topic: k.request_topic.clone(),
                })
        })
        .await?;
        let (responses, dead_letters) = producers(producer_client, k, producer_auth).await?;
        // The longest an execution may take, retries included: what the lock must cover.
        let setup = prepare_group(
            &k.consumer_bootstrap,
            &k.client_id,
            &consumer_auth,
            &k.group_id,
            k.auto_offset_reset,
            k.isolation_level,
            k.rebalance_timeout,
        )
        .await;
        let (consumer, records) = ShareConsumer::start(
            ShareSettings {
                group: k.group_id.clone(),
                topic: k.request_topic.clone(),
                max_wait: k.fetch_max_wait,
                max_bytes: k.fetch_max_bytes,
                delivery_limit: setup.delivery_limit,
                max_in_flight,
            },
            group_coordinator(k, &consumer_auth),
            group_coordinator(k, &consumer_auth),
            ClusterMap::new(
                k.consumer_bootstrap.clone(),
                &k.client_id,
                consumer_auth.clone(),
            ),
            shutdown,
        );
        Ok(Opened {
            session: Session(Kind::Share(ShareSession { consumer })),
            records,
            answers: Answers::new(responses, dead_letters, None),
        })
    }
}

impl GroupSession {
    /// Connects, reads the group's committed offsets, starts a fetch loop per owned partition
    /// (at its committed offset, else per `auto_offset_reset`), the producers, the committer
    /// (every `commit_interval` when something is done) and the task that decides ownership.
    /// Requests come out of `records` with at most `max_in_flight` undone at a time.
    ///
    /// Kafka being unreachable is waited out, with a WARN per interval naming the step; only
    /// what Kafka coming back cannot fix fails (a missing topic, a refused authorization).
    ///
    /// Worker `index` of `workers` takes part as [`Ownership::of_worker`] says. With
    /// exactly-once ([`KafkaSettings::exactly_once`]), a transaction task takes the committer's
    /// place: see [`super::transaction`].
    pub async fn open(
        settings: &KafkaSettings,
        (index, workers): (usize, usize),
        max_in_flight: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Opened, KafkaError> {
        let k = settings;
        let ownership = Ownership::of_worker(k, index, workers);
        let transactional_id = k
            .exactly_once
            .as_ref()
            .map(|e| e.transactional_id(&k.membership, k.partitioning, index));
        // Loaded once: reading certificate files is a configuration step, not a retry.
        let consumer_auth = BrokerAuth::new(&k.consumer_security)?;
        let producer_auth = BrokerAuth::new(&k.producer_security)?;
        let (client, producer_client) = clients(k, &consumer_auth, &producer_auth).await?;
        let count = until_kafka_answers("read the request topic's partitions", async || {
            partition_count(&client, &k.request_topic)
                .await?
                .ok_or_else(|| KafkaError::NoRequestTopic {
                    topic: k.request_topic.clone(),
                })
        })
        .await?;
        // By index, the partitions are known now; in a group, the group assigns them later.
        let owned = match &ownership {
            Ownership::ByIndex { index, count: n } => by_index(*index, *n, count),
            Ownership::Group(_) | Ownership::ConsumerGroup(_) => Vec::new(),
        };
        abort_predecessor(k, transactional_id.as_deref(), &producer_auth).await?;
        let mut coordinator = group_coordinator(k, &consumer_auth);
        let committed = until_kafka_answers("read the group's committed offsets", async || {
            Ok(coordinator.fetch(&k.request_topic, &owned).await?)
        })
        .await?;
        let starts = until_kafka_answers("find the start offsets", async || {
            start_positions(&client, k, &owned, &committed, k.auto_offset_reset).await
        })
        .await?;
        let (responses, dead_letters) =
            producers(producer_client, k, producer_auth.clone()).await?;
        let (consumer, records) = RequestConsumer::start(
            client.clone(),
            FetchOptions {
                topic: k.request_topic.clone(),
                max_in_flight,
                max_wait: k.fetch_max_wait,
                max_bytes: k.fetch_max_bytes,
                reset: k.auto_offset_reset,
                isolation: k.isolation_level,
                cluster: ClusterMap::new(
                    k.consumer_bootstrap.clone(),
                    &k.client_id,
                    consumer_auth.clone(),
                ),
            },
            starts.clone().into_iter().collect(),
            shutdown.clone(),
        )
        .await?;
        let (generation_tx, generation) = watch::channel(Generation::simple());
        let commits = Commits {
            coordinator,
            watermarks: consumer.watermarks.clone(),
            committed,
            generation: generation.clone(),
            producer_auth,
            max_in_flight,
        }
        .start(k, transactional_id, &responses, dead_letters.as_ref())
        .await?;
        let partitions = Partitions::new(consumer, commits.committer.client(), client.clone(), k);
        let ownership = OwnershipTask::start(
            ownership,
            k,
            MemberParts {
                coordinator: group_coordinator(k, &consumer_auth),
                client,
                partitions: partitions.clone(),
                generation: generation_tx,
                shutdown,
            },
            count,
        );
        tracing::debug!(topic = %k.request_topic, starts = ?starts, "fetch loops started");
        Ok(Opened {
            session: Session(Kind::Group(GroupSession {
                fixed: matches!(ownership, OwnershipTask::ByIndex(_)).then_some(owned),
                partitions,
                committer: commits.committer,
                ownership,
                generation,
                settings: k.clone(),
                consumer_auth,
                producer_fenced: commits.refused,
                member_ended: false,
            })),
            records,
            answers: Answers::new(responses, dead_letters, commits.answers),
        })
    }

    /// See [`Session::refused`].
    async fn refused(&mut self) -> Refused {
        let fenced = async {
            match self.producer_fenced.as_mut() {
                Some(fenced) => match fenced.await {
                    Ok(e) => e,
                    // The transaction task ended without a reason: the worker is stopping.
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let refused = async {
            match &mut self.ownership {
                // Awaited until it has reported once (a JoinHandle is not to be polled after
                // that): an end that came while this future was dropped (the worker's select
                // took another branch) is still reported the next time.
                OwnershipTask::Group(task) if !self.member_ended => {
                    let ended = task.await;
                    self.member_ended = true;
                    match ended {
                        Ok(Err(e)) => e,
                        // Ended by shutdown (or panicked): nothing to report; wait like the rest.
                        _ => std::future::pending().await,
                    }
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            e = fenced => e,
            e = refused => e,
        }
    }

    /// Waits until every fetch loop has stopped (the shutdown signal was sent); nothing more
    /// comes out of `records`. Call [`finish`](Session::finish) after the in-flight executions
    /// are done.
    async fn stop_fetching(&mut self) {
        if let OwnershipTask::ByIndex(watch) = &self.ownership {
            watch.abort();
        }
        let mut loops = self.partitions.take_loops();
        while loops.join_next().await.is_some() {}
    }

    /// Kafka refused this worker for good: every partition is lost (nothing more is
    /// answered) and every fetch loop ends at once, without waiting for the shutdown signal,
    /// which no one sends (a fenced producer leaves the group membership, and with it the
    /// fetch loops, as they are).
    async fn abandon_fetching(&mut self) {
        if let OwnershipTask::ByIndex(watch) = &self.ownership {
            watch.abort();
        }
        self.partitions.lose_all();
        let mut loops = self.partitions.take_loops();
        loops.abort_all();
        while loops.join_next().await.is_some() {}
    }

    /// Commits what is done for the last time, then (a dynamic member, or a static one that
    /// is `retire`d) leaves the group; gives up at `deadline`.
    async fn finish(self, deadline: Instant, retire: bool) -> Result<Vec<(i32, i64)>, KafkaError> {
        let committed = match self.committer.finish(deadline).await {
            Ok(committed) => committed.map_err(KafkaError::from),
            Err(gone) => Err(KafkaError::Stopped {
                what: "the last commit",
                reason: gone.to_string(),
            }),
        };
        if let OwnershipTask::Group(task) = self.ownership {
            task.abort();
            let generation = self.generation.borrow().clone();
            let k = &self.settings;
            let mut coordinator = group_coordinator(k, &self.consumer_auth);
            let leave = async {
                match k.group_protocol {
                    GroupProtocol::Classic => {
                        Member::leave(&mut coordinator, &generation, retire).await
                    }
                    GroupProtocol::Consumer => {
                        ConsumerMember::leave(&mut coordinator, &generation, retire).await
                    }
                    GroupProtocol::Share => {}
                }
            };
            let _ = tokio::time::timeout_at(deadline, leave).await;
        }
        committed
    }
}

/// What the partition watch needs.
struct PartitionWatch {
    /// Lists the topic's partitions and makes partition clients.
    client: Arc<Client>,
    settings: KafkaSettings,
    /// This worker's slot of the by-index split.
    index: usize,
    count: usize,
    /// Partitions of the request topic when last looked.
    known: i32,
    /// Where new partitions are taken.
    partitions: Partitions,
    /// Ends the watch.
    shutdown: watch::Receiver<bool>,
}

/// Every `metadata_max_age_ms` ([`KafkaSettings::partition_check_interval`]), starts fetching partitions added to the request topic
/// that this worker owns. A partition created while the service runs starts at its beginning,
/// whatever `auto_offset_reset` says: its first requests came after the service started, so
/// "latest" would skip them. In a task of its own: listing topics waits out an outage.
async fn watch_partitions(mut w: PartitionWatch) {
    let every = w.settings.partition_check_interval;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = w.shutdown.changed() => return,
        }
        if let Err(e) = pick_up_added_partitions(&mut w).await {
            tracing::warn!(
                "picking up partitions added to the request topic failed (tried again in {every:?}): {e}"
            );
        }
    }
}

async fn pick_up_added_partitions(w: &mut PartitionWatch) -> Result<(), KafkaError> {
    let topic = &w.settings.request_topic;
    let count = partition_count(&w.client, topic).await?.unwrap_or(w.known);
    if count <= w.known {
        return Ok(());
    }
    let new: Vec<i32> = by_index(w.index, w.count, count)
        .into_iter()
        .filter(|p| *p >= w.known)
        .collect();
    tracing::info!(%topic, from = w.known, to = count, new = ?new, "request topic has more partitions");
    if !new.is_empty() {
        let committed = w.partitions.committed(&new).await?;
        w.partitions
            .take(&new, &committed, OffsetReset::Earliest)
            .await?;
    }
    w.known = count;
    Ok(())
}

impl OwnershipTask {
    /// Starts the task that decides which partitions the worker owns: the group member, or
    /// the watch for partitions added to a by-index split (of a topic of `count` partitions).
    fn start(
        ownership: Ownership,
        k: &KafkaSettings,
        parts: MemberParts,
        count: i32,
    ) -> OwnershipTask {
        match ownership {
            Ownership::ByIndex { index, count: n } => {
                OwnershipTask::ByIndex(tokio::task::spawn_local(watch_partitions(PartitionWatch {
                    client: parts.client,
                    settings: k.clone(),
                    index,
                    count: n,
                    known: count,
                    partitions: parts.partitions,
                    shutdown: parts.shutdown,
                })))
            }
            // Local: the coordinator client's futures are not `Send`.
            Ownership::Group(member) => OwnershipTask::Group(tokio::task::spawn_local(
                Member::new(member, k.clone(), parts).run(),
            )),
            Ownership::ConsumerGroup(member) => OwnershipTask::Group(tokio::task::spawn_local(
                ConsumerMember::new(member, k.clone(), parts).run(),
            )),
        }
    }
}

/// What committing needs: the committer's (or the transaction task's) parts.
struct Commits {
    /// The group's coordinator client for offsets.
    coordinator: GroupCoordinator,
    /// What is done, per partition.
    watermarks: Arc<Mutex<Watermarks>>,
    /// The group's offsets as fetched at start.
    committed: HashMap<i32, Option<i64>>,
    /// Who commits: the member's current generation.
    generation: watch::Receiver<Generation>,
    /// Exactly-once: the transactional producer's TLS and SASL.
    producer_auth: BrokerAuth,
    /// Sizes the queue of answers waiting for transactions.
    max_in_flight: usize,
}

/// What committing hands the session.
struct Started {
    /// Commits (or, exactly-once, flushes transactions) on demand and at the end.
    committer: CommitterTask,
    /// Exactly-once: where answers go into transactions.
    answers: Option<TransactionalAnswers>,
    /// Exactly-once: says why, should Kafka fence the transactional producer.
    refused: Option<oneshot::Receiver<Refused>>,
}

impl Commits {
    /// The committer task, or with `transactional_id` the transaction task in its place.
    async fn start(
        self,
        k: &KafkaSettings,
        transactional_id: Option<String>,
        responses: &ResponseProducer,
        dead_letters: Option<&ResponseProducer>,
    ) -> Result<Started, KafkaError> {
        let (Some(transactional_id), Some(exactly_once)) = (transactional_id, &k.exactly_once)
        else {
            let committer = Committer::new(
                self.coordinator,
                &k.request_topic,
                self.watermarks,
                &self.committed,
                self.generation,
            )
            .spawn(
                k.commit_interval.max(Duration::from_millis(10)),
                responses.waiting(),
            );
            return Ok(Started {
                committer,
                answers: None,
                refused: None,
            });
        };
        let mut budgets = HashMap::from([(responses.topic().to_owned(), responses.batch_budget())]);
        if let Some(d) = dead_letters {
            budgets.insert(d.topic().to_owned(), d.batch_budget());
        }
        let started = transaction::start(TransactionSetup {
            transactional_id,
            transaction_timeout: exactly_once.transaction_timeout,
            group: self.coordinator,
            producer_bootstrap: k.producer_bootstrap.clone(),
            compression: k.compression,
            client_id: k.client_id.clone(),
            producer_auth: self.producer_auth,
            topic: k.request_topic.clone(),
            watermarks: self.watermarks,
            committed: self.committed,
            generation: self.generation,
            budgets,
            // Transactions carry up to this many answers per worker; executions go on
            // meanwhile, within their own window.
            queue_limit: self.max_in_flight.saturating_mul(ANSWERS_PER_WINDOW),
        })
        .await
        .map_err(KafkaError::Transactions)?;
        Ok(Started {
            committer: started.committer,
            answers: Some(started.answers),
            refused: Some(started.refused),
        })
    }
}

/// Exactly-once: aborts what a predecessor with this worker's transactional id left open
/// (before the committed offsets are read, so none is pending); nothing without exactly-once.
async fn abort_predecessor(
    k: &KafkaSettings,
    transactional_id: Option<&str>,
    producer_auth: &BrokerAuth,
) -> Result<(), KafkaError> {
    let (Some(id), Some(exactly_once)) = (transactional_id, &k.exactly_once) else {
        return Ok(());
    };
    let coordinator =
        GroupCoordinator::new(k.producer_bootstrap.clone(), &k.group_id, &k.client_id)
            .with_auth(producer_auth.clone());
    transaction::abort_predecessor(coordinator, id, exactly_once.transaction_timeout)
        .await
        .map_err(KafkaError::Transactions)
}

/// Exactly-once: how many in-flight windows' worth of answers may wait for transactions.
const ANSWERS_PER_WINDOW: usize = 8;

/// How often a boot step that waits for Kafka says so.
const WAITING_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// Runs a boot step until it succeeds, or fails for a reason Kafka coming back cannot fix (a
/// missing topic, a refused authorization: [`KafkaError::is_transient`] says which). rskafka
/// waits out an unreachable broker inside a call, and the coordinator client gives up after its
/// budget and is asked again here; either way one WARN per interval says what is waited for.
async fn until_kafka_answers<T>(
    step: &str,
    mut attempt: impl AsyncFnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let started = Instant::now();
    let mut report =
        tokio::time::interval_at(started + WAITING_REPORT_INTERVAL, WAITING_REPORT_INTERVAL);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut last_error: Option<String> = None;
    let mut reported = false;
    loop {
        let outcome = {
            let call = attempt();
            tokio::pin!(call);
            loop {
                tokio::select! {
                    outcome = &mut call => break outcome,
                    _ = report.tick() => {
                        reported = true;
                        let last = last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default();
                        tracing::warn!("waiting for Kafka to {step}: {:.0?} so far{last}", started.elapsed());
                    }
                }
            }
        };
        match outcome {
            Ok(v) => {
                if reported {
                    tracing::info!("Kafka answered: {step} after {:.0?}", started.elapsed());
                }
                return Ok(v);
            }
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                tracing::debug!("{step}: {e}; trying again");
                last_error = Some(e.to_string());
                backoff.wait().await;
            }
        }
    }
}

/// The group's coordinator client over the consumer side's connections.
fn group_coordinator(k: &KafkaSettings, auth: &BrokerAuth) -> GroupCoordinator {
    GroupCoordinator::new(k.consumer_bootstrap.clone(), &k.group_id, &k.client_id)
        .with_auth(auth.clone())
}

/// The consumer side's client, and the producer side's (the same one when both sides name the
/// same brokers in the same way).
async fn clients(
    k: &KafkaSettings,
    consumer_auth: &BrokerAuth,
    producer_auth: &BrokerAuth,
) -> Result<(Arc<Client>, Arc<Client>), KafkaError> {
    let bootstrap = k.consumer_bootstrap.join(",");
    let client = until_kafka_answers(&format!("connect to {bootstrap}"), async || {
        connect(&k.consumer_bootstrap, &k.client_id, consumer_auth).await
    })
    .await?;
    if k.producer_bootstrap == k.consumer_bootstrap && k.producer_security == k.consumer_security {
        return Ok((client.clone(), client));
    }
    let producer = until_kafka_answers("connect to the producer's brokers", async || {
        connect(&k.producer_bootstrap, &k.client_id, producer_auth).await
    })
    .await?;
    Ok((client, producer))
}

/// The response producer and, when the topic is on and exists, the dead-letter producer.
async fn producers(
    client: Arc<Client>,
    k: &KafkaSettings,
    auth: BrokerAuth,
) -> Result<(ResponseProducer, Option<ResponseProducer>), KafkaError> {
    let settings = ProducerSettings::from_config(k, auth);
    let responses = until_kafka_answers("set up the response producer", async || {
        ResponseProducer::new(client.clone(), &k.response_topic, &settings).await
    })
    .await?;
    let dead_letters = until_kafka_answers("set up the dead-letter producer", async || {
        dead_letter_producer(client.clone(), k, &settings).await
    })
    .await?;
    Ok((responses, dead_letters))
}

/// The dead-letter producer, or `None` (with a warning) when the topic does not exist: a
/// missing dead-letter topic costs only the copy of undecodable records, never an answer.
async fn dead_letter_producer(
    client: Arc<Client>,
    k: &KafkaSettings,
    settings: &ProducerSettings,
) -> Result<Option<ResponseProducer>, KafkaError> {
    let Some(topic) = &k.dead_letter_topic else {
        return Ok(None);
    };
    match ResponseProducer::new(client, topic, settings).await {
        Ok(p) => Ok(Some(p)),
        Err(KafkaError::NoSuchTopic { topic }) => {
            tracing::warn!(%topic, "dead-letter topic does not exist: undecodable records get a failure response only");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for count in 1..6 {
            let mut all: Vec<i32> = (0..count)
                .flat_map(|index| by_index(index, count, 8))
                .collect();
            all.sort();
            assert_eq!(all, (0..8).collect::<Vec<_>>(), "{count} workers");
        }
        assert_eq!(by_index(1, 3, 8), vec![1, 4, 7]);
    }
}
