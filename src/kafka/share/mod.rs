//! Share groups (KIP-932, `"group_protocol": "share"`): the worker is one member of a share
//! group, and the members consume the request topic's partitions together: each record is
//! acquired by one member under a lock, and acknowledged on its own once answered. More workers
//! than partitions all execute, and no request waits behind a slow one of its partition.
//!
//! * `member`: ShareGroupHeartbeat: which partitions this member fetches from.
//! * `session`: the share session with one broker (epochs, partitions, acknowledgements), IO-free.
//! * `acks`: acknowledgement types and batches, IO-free.
//! * `acquired`: what each acquired offset of a ShareFetch answer becomes, IO-free.
//! * here: the fetchers (one per broker leading assigned partitions, each with its own
//!   connection, as a share session is bound to its connection), and the [`ShareConsumer`]
//!   the worker's session holds.
//!
//! A record is ACCEPTed only when its answer is in Kafka (its done token completes), RELEASEd
//! when its token is dropped unanswered (the worker stops, the answer cannot be produced), and
//! never REJECTed: at-least-once, like the consumer-group mode. Acknowledgements ride on the
//! next ShareFetch to the record's broker, or go in a ShareAcknowledge while the worker
//! acquires nothing (its in-flight window is full, or it stops). A clean stop closes each
//! session with its last acknowledgements (epoch -1, which releases whatever is left) and then
//! leaves the group.

mod acks;
mod acquired;
mod backlog;
mod group_config;
mod member;
mod session;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckRequestBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ShareAcknowledgeRequest, ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use uuid::Uuid;

pub(crate) use self::acks::AckType;
use self::acquired::{Fate, fates};
pub(crate) use self::group_config::prepare as prepare_group;
pub(crate) use self::member::SHARE_GROUPS_UNSUPPORTED;
use self::member::ShareMember;
use self::session::{Outgoing, ShareSession, Taken};
use super::cluster::ClusterMap;
use super::consumer::{Deliveries, DoneToken, RequestRecord};
use super::coordinator::GroupCoordinator;
use super::error::Refused;
use super::record_batch::{self, Record};
use super::tenure::Tenure;
use super::wire::{BrokerConnection, WireError, error_name};
use crate::backoff::Backoff;

const SHARE_FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 1..=1;
const SHARE_ACKNOWLEDGE_VERSIONS: std::ops::RangeInclusive<i16> = 1..=1;
/// How much longer than the fetch's own wait an answer may take.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);
/// Kafka's default `group.share.delivery.count.limit`.
pub(crate) const DEFAULT_DELIVERY_LIMIT: i16 = 5;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// What a share member needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ShareSettings {
    pub group: String,
    pub topic: String,
    /// How long a ShareFetch may wait for records.
    pub max_wait: Duration,
    /// Bytes one ShareFetch may return.
    pub max_bytes: i32,
    /// The group's delivery limit: a record on its last delivery is answered, not executed.
    pub delivery_limit: i16,
    /// Records executing at once, at most.
    pub max_in_flight: usize,
}

/// One acknowledgement from a record's done token to its fetcher.
#[derive(Debug)]
struct Ack {
    generation: u64,
    partition: i32,
    offset: i64,
    ack: AckType,
}

/// Where a share record's done token reports how it ended: its fetcher, tagged with the
/// session it was acquired in.
#[derive(Debug)]
pub(crate) struct ShareCompletion {
    acks: mpsc::UnboundedSender<Ack>,
    generation: u64,
}

impl ShareCompletion {
    pub(crate) fn send(self, partition: i32, offset: i64, ack: AckType) {
        crate::metrics::worker().share_ack(ack as usize);
        // A fetcher that is gone closed its session (or lost its connection): the broker
        // released the record already.
        let _ = self.acks.send(Ack {
            generation: self.generation,
            partition,
            offset,
            ack,
        });
    }
}

/// The worker's share-group consumption: the member task and the fetchers.
#[derive(Debug)]
pub(crate) struct ShareConsumer {
    member: Option<JoinHandle<Result<(), Refused>>>,
    fetchers: JoinHandle<()>,
    /// Tells the fetchers to close their sessions and end.
    closing: watch::Sender<bool>,
    member_id: String,
    epoch: watch::Receiver<i32>,
    coordinator: GroupCoordinator,
}

impl ShareConsumer {
    /// Joins the share group and fetches what it assigns; requests come out of the returned
    /// channel with at most `max_in_flight` executing. `shutdown` stops acquiring records.
    pub(crate) fn start(
        settings: ShareSettings,
        coordinator: GroupCoordinator,
        member_coordinator: GroupCoordinator,
        cluster: ClusterMap,
        shutdown: watch::Receiver<bool>,
    ) -> (ShareConsumer, mpsc::Receiver<RequestRecord>) {
        let member_id = Uuid::new_v4().to_string();
        let (assignment_tx, assignment) = watch::channel((None, BTreeSet::new()));
        let (epoch_tx, epoch) = watch::channel(0);
        let (closing, closing_rx) = watch::channel(false);
        // One slot per place of the window, and as many again for last deliveries, which are
        // handed out beyond it.
        let (tx, records) = mpsc::channel(settings.max_in_flight.max(1) * 2);
        let member = tokio::task::spawn_local(
            ShareMember {
                coordinator: member_coordinator,
                group: settings.group.clone(),
                topic: settings.topic.clone(),
                member_id: member_id.clone(),
                assignment: assignment_tx,
                epoch: epoch_tx,
                // Heartbeats go on while the executions drain and until the sessions are closed.
                shutdown: closing_rx.clone(),
            }
            .run(),
        );
        let fetchers = tokio::task::spawn_local(
            Dispatch {
                settings: settings.clone(),
                member_id: member_id.clone(),
                cluster,
                assignment,
                window: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                records: tx,
                shutdown,
                closing: closing_rx,
            }
            .run(),
        );
        (
            ShareConsumer {
                member: Some(member),
                fetchers,
                closing,
                member_id,
                epoch,
                coordinator,
            },
            records,
        )
    }

    /// Resolves when the group refuses this member for good.
    pub(crate) async fn refused(&mut self) -> Refused {
        match self.member.as_mut() {
            // Awaited until it reports: a refusal that came while this future was dropped (the
            // worker's select took another branch) is still there the next time.
            Some(task) => match task.await {
                Ok(Err(e)) => {
                    self.member = None;
                    e
                }
                _ => {
                    self.member = None;
                    std::future::pending().await
                }
            },
            _ => std::future::pending().await,
        }
    }

    /// Kafka refused this member: the fetchers end at once (their connections close, which
    /// releases the records they hold).
    pub(crate) fn abandon(&mut self) {
        self.fetchers.abort();
    }

    /// Closes the share sessions with the last acknowledgements (the executions are over),
    /// then leaves the group; gives up at `deadline`.
    pub(crate) async fn finish(mut self, deadline: Instant) {
        let _ = self.closing.send(true);
        if tokio::time::timeout_at(deadline, &mut self.fetchers)
            .await
            .is_err()
        {
            tracing::warn!(
                "closing the share sessions took too long: the broker releases what they held when the connections close"
            );
            self.fetchers.abort();
        }
        if let Some(member) = self.member.take() {
            member.abort();
        }
        let epoch = *self.epoch.borrow();
        let _ = tokio::time::timeout_at(
            deadline,
            ShareMember::leave(&mut self.coordinator, &self.member_id, epoch),
        )
        .await;
    }
}

/// The assignment as the member task shares it: the request topic's id and its partitions.
type Assignment = (Option<Uuid>, BTreeSet<i32>);

/// Runs one fetcher per broker that leads assigned partitions, and moves partitions between
/// them when leaders change.
struct Dispatch {
    settings: ShareSettings,
    member_id: String,
    cluster: ClusterMap,
    assignment: watch::Receiver<Assignment>,
    window: Arc<Semaphore>,
    records: mpsc::Sender<RequestRecord>,
    shutdown: watch::Receiver<bool>,
    closing: watch::Receiver<bool>,
}

/// A running fetcher, as the dispatch sees it.
struct FetcherHandle {
    wanted: watch::Sender<BTreeSet<i32>>,
}

impl Dispatch {
    async fn run(mut self) {
        let (stale_tx, mut stale) = mpsc::unbounded_channel::<()>();
        let mut fetchers: HashMap<i32, FetcherHandle> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut closing = self.closing.clone();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut refresh = true;
        loop {
            let (topic_id, partitions) = self.assignment.borrow_and_update().clone();
            if let Some(topic_id) = topic_id {
                let mut by_node: HashMap<i32, BTreeSet<i32>> = HashMap::new();
                let mut unknown = false;
                if refresh || partitions.iter().any(|p| self.leader(*p).is_none()) {
                    match self.cluster.refresh(&[self.settings.topic.as_str()]).await {
                        Ok(Ok(_)) => backoff.reset(),
                        Ok(Err(why)) => {
                            tracing::warn!("looking up the request topic's leaders failed: {why}")
                        }
                        Err(e) => tracing::error!("looking up the request topic's leaders: {e}"),
                    }
                    refresh = false;
                }
                for p in &partitions {
                    match self.leader(*p) {
                        Some(node) => {
                            by_node.entry(node).or_default().insert(*p);
                        }
                        None => unknown = true,
                    }
                }
                for (node, handle) in &fetchers {
                    let wanted = by_node.remove(node).unwrap_or_default();
                    handle.wanted.send_if_modified(|now| {
                        let changed = *now != wanted;
                        *now = wanted;
                        changed
                    });
                }
                for (node, wanted) in by_node {
                    let mut session = ShareSession::default();
                    session.want(wanted.clone());
                    let (tx, rx) = watch::channel(wanted);
                    let (acks_tx, acks) = mpsc::unbounded_channel();
                    let fetcher = Fetcher {
                        node,
                        settings: self.settings.clone(),
                        member_id: self.member_id.clone(),
                        topic_id,
                        cluster: self.cluster.clone(),
                        connection: None,
                        session,
                        wanted: rx,
                        acks,
                        acks_tx,
                        window: self.window.clone(),
                        records: self.records.clone(),
                        shutdown: self.shutdown.clone(),
                        closing: self.closing.clone(),
                        stale: stale_tx.clone(),
                        backlog: std::collections::VecDeque::new(),
                        backlog_wake: None,
                        tenures: HashMap::new(),
                    };
                    tasks.spawn_local(fetcher.run());
                    fetchers.insert(node, FetcherHandle { wanted: tx });
                }
                if unknown {
                    refresh = true;
                }
            }
            let pause = if refresh {
                backoff.next_pause()
            } else {
                Duration::from_secs(3600)
            };
            let member_gone = tokio::select! {
                _ = closing.wait_for(|c| *c) => break,
                changed = self.assignment.changed() => changed.is_err(),
                _ = stale.recv() => {
                    while stale.try_recv().is_ok() {}
                    refresh = true;
                    false
                }
                _ = tokio::time::sleep(pause) => false,
            };
            if member_gone {
                // The member ended: keep the fetchers for their acknowledgements.
                let _ = closing.wait_for(|c| *c).await;
                break;
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn leader(&self, partition: i32) -> Option<i32> {
        self.cluster
            .leader(&(self.settings.topic.clone(), partition))
    }
}

/// One broker's share session: fetches from the assigned partitions it leads, hands the
/// acquired requests out, and sends their acknowledgements.
struct Fetcher {
    node: i32,
    settings: ShareSettings,
    member_id: String,
    topic_id: Uuid,
    cluster: ClusterMap,
    /// One connection for the session's life: the broker ends a session with its connection.
    connection: Option<BrokerConnection>,
    session: ShareSession,
    wanted: watch::Receiver<BTreeSet<i32>>,
    acks: mpsc::UnboundedReceiver<Ack>,
    acks_tx: mpsc::UnboundedSender<Ack>,
    window: Arc<Semaphore>,
    records: mpsc::Sender<RequestRecord>,
    /// Stop acquiring records.
    shutdown: watch::Receiver<bool>,
    /// Close the session and end.
    closing: watch::Receiver<bool>,
    /// Tells the dispatch that a partition's leader moved.
    stale: mpsc::UnboundedSender<()>,
    /// Acquired requests waiting for places in the window: a ShareFetch acquires whole batches,
    /// more than it asked for (see [`backlog`]); nothing more is fetched while any wait.
    backlog: std::collections::VecDeque<Acquired>,
    /// When the backlog is to be looked at again.
    backlog_wake: Option<Instant>,
    /// A tenure per partition: a share record never loses its right to be answered (another
    /// member answering it too, after its lock expired, is at-least-once's repeat).
    tenures: HashMap<i32, Arc<Tenure>>,
}

/// How long before its lock runs out a request still waiting for a place in the window is
/// given up (Kafka delivers it again, here or elsewhere).
const LOCK_MARGIN: Duration = Duration::from_secs(1);

/// An acquired request waiting for a place in the window.
struct Acquired {
    partition: i32,
    record: Record,
    unreadable: Option<String>,
    deliveries: i16,
    fetched: std::time::Instant,
    /// The share session it was acquired in.
    generation: u64,
    /// When it was acquired.
    since: Instant,
    /// When its lock runs out, less a margin.
    expires: Instant,
}

/// Whether a ShareFetch's partitions failed.
enum Trouble {
    None,
    Partitions,
}

/// What the fetcher does next.
enum Next {
    Fetch(Outgoing),
    Acknowledge(Outgoing),
    Wait,
}

impl Fetcher {
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            self.take_acks();
            if *self.closing.borrow() {
                self.close().await;
                return;
            }
            // Synced every turn: `wait` may have seen the change already.
            let wanted = self.wanted.borrow_and_update().clone();
            self.session.want(wanted);
            self.hand_out_backlog();
            let acquiring = !*self.shutdown.borrow()
                && self.window.available_permits() > 0
                && self.backlog.is_empty();
            let next = match acquiring.then(|| self.session.fetch()).flatten() {
                Some(out) => Next::Fetch(out),
                None => match self.session.acknowledge() {
                    Some(out) => Next::Acknowledge(out),
                    None => Next::Wait,
                },
            };
            let result = match next {
                Next::Fetch(out) => match self.fetch(out).await {
                    // A partition's error comes back at once, not after the fetch's wait:
                    // pause before asking again, as after a lost session.
                    Ok(Trouble::Partitions) => {
                        tokio::select! {
                            _ = backoff.wait() => {}
                            _ = self.closing.changed() => {}
                        }
                        continue;
                    }
                    Ok(Trouble::None) => Ok(()),
                    Err(e) => Err(e),
                },
                Next::Acknowledge(out) => self.acknowledge(out).await,
                Next::Wait => {
                    self.wait().await;
                    continue;
                }
            };
            match result {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let void = self.session.taken(Taken::SessionLost);
                    self.connection = None;
                    tracing::warn!(
                        broker = self.node,
                        acknowledgements_void = void,
                        "share session lost, opening a new one: {e}"
                    );
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = self.closing.changed() => {}
                    }
                }
            }
        }
    }

    /// Moves the acknowledgements the done tokens sent into the session.
    fn take_acks(&mut self) {
        while let Ok(a) = self.acks.try_recv() {
            self.session.ack(a.generation, a.partition, a.offset, a.ack);
        }
    }

    /// Until something changes: an acknowledgement, the assignment, a place in the window,
    /// the stop.
    async fn wait(&mut self) {
        let stopping = *self.shutdown.borrow();
        let window_full = self.window.available_permits() == 0;
        let expiry = self.backlog_wake;
        tokio::select! {
            Some(a) = self.acks.recv() => {
                self.session.ack(a.generation, a.partition, a.offset, a.ack);
            }
            _ = self.wanted.changed() => {}
            _ = self.closing.changed() => {}
            _ = self.shutdown.changed(), if !stopping => {}
            permit = self.window.acquire(), if window_full && !stopping => drop(permit),
            _ = tokio::time::sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {}
        }
    }

    /// Hands out, releases or drops what waits in the backlog, as [`backlog::turn`] decides;
    /// says when to look again.
    fn hand_out_backlog(&mut self) {
        let stopping = *self.shutdown.borrow();
        self.backlog_wake = None;
        while let Some(front) = self.backlog.front() {
            let waiting = backlog::Waiting {
                deliveries: front.deliveries,
                since: front.since,
                expires: front.expires,
                current: front.generation == self.session.generation(),
            };
            let room = self.window.available_permits() > 0;
            let permit = match backlog::turn(
                &waiting,
                room,
                stopping,
                self.settings.delivery_limit,
                Instant::now(),
            ) {
                backlog::Turn::WaitUntil(at) => {
                    self.backlog_wake = Some(at);
                    return;
                }
                backlog::Turn::Drop => {
                    let b = self.backlog.pop_front().expect("front exists");
                    tracing::debug!(
                        partition = b.partition,
                        offset = b.record.offset,
                        "an acquired request's session or lock ended before a place in the window was free; Kafka delivers it again"
                    );
                    continue;
                }
                backlog::Turn::Release => {
                    let b = self.backlog.pop_front().expect("front exists");
                    crate::metrics::worker().share_ack(AckType::Release as usize);
                    self.session
                        .ack(b.generation, b.partition, b.record.offset, AckType::Release);
                    continue;
                }
                backlog::Turn::Deliver => match self.window.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                backlog::Turn::DeliverBeyond => None,
            };
            let b = self.backlog.pop_front().expect("front exists");
            self.deliver(b, permit);
        }
    }

    async fn connection(&mut self) -> Result<&mut BrokerConnection, WireError> {
        if self.connection.is_none() {
            if self
                .cluster
                .leader(&(self.settings.topic.clone(), 0))
                .is_none()
            {
                // The map knows the brokers once it was asked for any leader.
                let _ = self.cluster.refresh(&[self.settings.topic.as_str()]).await;
            }
            self.connection = Some(self.cluster.connect(self.node).await?);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    async fn fetch(&mut self, out: Outgoing) -> Result<Trouble, String> {
        let permits = self.window.available_permits().max(1);
        let max_records = i32::try_from(permits).unwrap_or(i32::MAX);
        let request = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(str_bytes(&self.settings.group))))
            .with_member_id(Some(str_bytes(&self.member_id)))
            .with_share_session_epoch(out.epoch)
            .with_max_wait_ms(if self.session.wants_nothing() {
                // Only acknowledgements or forgotten partitions: nothing to wait for.
                0
            } else {
                i32::try_from(self.settings.max_wait.as_millis()).unwrap_or(i32::MAX)
            })
            .with_min_bytes(1)
            .with_max_bytes(self.settings.max_bytes)
            .with_max_records(max_records)
            .with_batch_size(max_records)
            .with_topics(fetch_topics(self.topic_id, &out))
            .with_forgotten_topics_data(if out.forgotten.is_empty() {
                Vec::new()
            } else {
                vec![
                    ForgottenTopic::default()
                        .with_topic_id(self.topic_id)
                        .with_partitions(out.forgotten.clone()),
                ]
            });
        let patience = self.settings.max_wait + ANSWER_MARGIN;
        let connection = self.connection().await.map_err(|e| e.to_string())?;
        let version = connection
            .version(ApiKey::ShareFetch, "ShareFetch", SHARE_FETCH_VERSIONS)
            .map_err(|e| format!("{e}{SHARE_GROUPS_UNSUPPORTED}"))?;
        let response =
            match tokio::time::timeout(patience, connection.call(&request, version)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("no answer to a ShareFetch within {patience:?}")),
            };
        let fetched = std::time::Instant::now();
        if response.error_code != 0 {
            return Err(format!(
                "ShareFetch failed with {}",
                error_name(response.error_code)
            ));
        }
        self.session.taken(Taken::Answered);
        Ok(self.hand_out(response, fetched).await)
    }

    /// Hands out the acquired requests (waiting for places in the window) and acknowledges
    /// at once the offsets that hold none.
    async fn hand_out(
        &mut self,
        response: ShareFetchResponse,
        fetched: std::time::Instant,
    ) -> Trouble {
        let metrics = crate::metrics::worker();
        let mut trouble = Trouble::None;
        // When the locks of what this answer acquired run out, with a margin for the hand-out.
        let lock =
            Duration::from_millis(u64::try_from(response.acquisition_lock_timeout_ms).unwrap_or(0));
        let lock_ends = Instant::now()
            + lock
                .saturating_sub(LOCK_MARGIN)
                .max(Duration::from_millis(100));
        let limit = self.settings.delivery_limit;
        for topic in response.responses {
            if topic.topic_id != self.topic_id {
                continue;
            }
            for p in topic.partitions {
                let partition = p.partition_index;
                if p.acknowledge_error_code != 0 {
                    metrics.share_acks_refused(1);
                    tracing::warn!(
                        broker = self.node,
                        partition,
                        "the broker refused acknowledgements ({}): those records are delivered again",
                        error_name(p.acknowledge_error_code)
                    );
                }
                if p.error_code != 0 {
                    trouble = Trouble::Partitions;
                    let code = ResponseError::try_from_code(p.error_code);
                    if matches!(
                        code,
                        Some(
                            ResponseError::NotLeaderOrFollower
                                | ResponseError::FencedLeaderEpoch
                                | ResponseError::UnknownTopicOrPartition
                                | ResponseError::UnknownTopicId
                        )
                    ) {
                        let _ = self.stale.send(());
                    }
                    tracing::warn!(
                        broker = self.node,
                        partition,
                        "ShareFetch of the partition failed: {}",
                        error_name(p.error_code)
                    );
                }
                if p.acquired_records.is_empty() {
                    continue;
                }
                let acquired: Vec<(i64, i64, i16)> = p
                    .acquired_records
                    .iter()
                    .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
                    .collect();
                let batches = p
                    .records
                    .as_deref()
                    .map(record_batch::decode)
                    .unwrap_or_default();
                for fate in fates(batches, &acquired, |d| d >= limit) {
                    metrics.share_acquired();
                    match fate {
                        Fate::Deliver { record, deliveries } => {
                            self.backlog.push_back(Acquired {
                                partition,
                                record,
                                unreadable: None,
                                deliveries,
                                fetched,
                                generation: self.session.generation(),
                                since: Instant::now(),
                                expires: lock_ends,
                            });
                        }
                        Fate::Unreadable {
                            offset,
                            why,
                            raw,
                            deliveries,
                        } => {
                            let record = Record {
                                offset,
                                timestamp: 0,
                                key: None,
                                value: raw,
                                headers: Vec::new(),
                            };
                            tracing::error!(
                                partition,
                                offset,
                                deliveries,
                                "an acquired record cannot be read ({why}); answering it with a failure"
                            );
                            self.backlog.push_back(Acquired {
                                partition,
                                record,
                                unreadable: Some(why),
                                deliveries,
                                fetched,
                                generation: self.session.generation(),
                                since: Instant::now(),
                                expires: lock_ends,
                            });
                        }
                        Fate::Ack { offset, ack } => {
                            if ack == AckType::Release {
                                tracing::debug!(partition, offset, "acquired offset given back");
                            }
                            metrics.share_ack(ack as usize);
                            let g = self.session.generation();
                            self.session.ack(g, partition, offset, ack);
                        }
                    }
                }
            }
        }
        trouble
    }

    /// Hands one acquired request out, with its place of the window (`None`: a last delivery
    /// beyond the window).
    fn deliver(&mut self, acquired: Acquired, permit: Option<OwnedSemaphorePermit>) {
        let Acquired {
            partition,
            record,
            unreadable,
            deliveries,
            fetched,
            generation,
            ..
        } = acquired;
        let offset = record.offset;
        if deliveries > 1 {
            crate::metrics::worker().share_redelivered();
        }
        let tenure = self
            .tenures
            .entry(partition)
            .or_insert_with(|| Tenure::new(partition))
            .clone();
        let done = DoneToken::shared(
            partition,
            offset,
            tenure,
            permit,
            ShareCompletion {
                acks: self.acks_tx.clone(),
                generation,
            },
        );
        let record = RequestRecord::shared(
            record,
            unreadable,
            done,
            fetched,
            Deliveries {
                count: deliveries,
                limit: self.settings.delivery_limit,
            },
        );
        // Room is there: every record waiting in the channel holds a place of the window, and
        // the channel has a slot per place and as many for last deliveries. A worker that no
        // longer takes records drops this one, and its token releases it.
        let _ = self.records.try_send(record);
    }

    async fn acknowledge(&mut self, out: Outgoing) -> Result<(), String> {
        let request = ack_request(&self.settings.group, &self.member_id, self.topic_id, &out);
        let connection = self.connection().await.map_err(|e| e.to_string())?;
        let version = connection
            .version(
                ApiKey::ShareAcknowledge,
                "ShareAcknowledge",
                SHARE_ACKNOWLEDGE_VERSIONS,
            )
            .map_err(|e| e.to_string())?;
        let response =
            match tokio::time::timeout(ANSWER_MARGIN, connection.call(&request, version)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no answer to a ShareAcknowledge".to_owned()),
            };
        if response.error_code != 0 {
            return Err(format!(
                "ShareAcknowledge failed with {}",
                error_name(response.error_code)
            ));
        }
        self.session.taken(Taken::Answered);
        for t in response.responses {
            for p in t.partitions.iter().filter(|p| p.error_code != 0) {
                crate::metrics::worker().share_acks_refused(1);
                tracing::warn!(
                    broker = self.node,
                    partition = p.partition_index,
                    "the broker refused acknowledgements ({}): those records are delivered again",
                    error_name(p.error_code)
                );
            }
        }
        Ok(())
    }

    /// Closes the session with the last acknowledgements (epoch -1): the broker releases
    /// whatever this member still holds there.
    async fn close(&mut self) {
        self.take_acks();
        let Some(out) = self.session.close() else {
            return;
        };
        let request = ack_request(&self.settings.group, &self.member_id, self.topic_id, &out);
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        let Ok(version) = connection.version(
            ApiKey::ShareAcknowledge,
            "ShareAcknowledge",
            SHARE_ACKNOWLEDGE_VERSIONS,
        ) else {
            return;
        };
        match tokio::time::timeout(ANSWER_MARGIN, connection.call(&request, version)).await {
            Ok(Ok(r)) if r.error_code == 0 => {
                tracing::debug!(broker = self.node, "share session closed");
            }
            Ok(Ok(r)) => tracing::warn!(
                broker = self.node,
                "closing the share session failed ({}): the broker releases its records when the connection closes",
                error_name(r.error_code)
            ),
            Ok(Err(e)) => {
                tracing::warn!(broker = self.node, "closing the share session failed: {e}")
            }
            Err(_) => tracing::warn!(broker = self.node, "closing the share session: no answer"),
        }
    }
}

fn fetch_topics(topic_id: Uuid, out: &Outgoing) -> Vec<FetchTopic> {
    if out.partitions.is_empty() {
        return Vec::new();
    }
    vec![
        FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(
                out.partitions
                    .iter()
                    .map(|(p, batches)| {
                        FetchPartition::default()
                            .with_partition_index(*p)
                            .with_acknowledgement_batches(
                                batches
                                    .iter()
                                    .map(|b| {
                                        AcknowledgementBatch::default()
                                            .with_first_offset(b.first)
                                            .with_last_offset(b.last)
                                            .with_acknowledge_types(b.types.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
    ]
}

fn ack_request(
    group: &str,
    member_id: &str,
    topic_id: Uuid,
    out: &Outgoing,
) -> ShareAcknowledgeRequest {
    let topics = if out.partitions.is_empty() {
        Vec::new()
    } else {
        vec![
            AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(
                    out.partitions
                        .iter()
                        .map(|(p, batches)| {
                            AcknowledgePartition::default()
                                .with_partition_index(*p)
                                .with_acknowledgement_batches(
                                    batches
                                        .iter()
                                        .map(|b| {
                                            AckRequestBatch::default()
                                                .with_first_offset(b.first)
                                                .with_last_offset(b.last)
                                                .with_acknowledge_types(b.types.clone())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        ]
    };
    ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(str_bytes(group))))
        .with_member_id(Some(str_bytes(member_id)))
        .with_share_session_epoch(out.epoch)
        .with_topics(topics)
}
