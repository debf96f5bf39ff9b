//! This worker as one member of the consumer group (the classic protocol, as each of hetida's
//! aiokafka consumers is one), so that instances on many hosts share the request topic's
//! partitions and can run beside hetida's own consumers (design decision 2).
//!
//! The member runs as a task of its own: it joins (JoinGroup, SyncGroup; the leader computes
//! the assignment with the assignor the group chose), starts fetching what it was given, and
//! heartbeats. When the group rebalances (eagerly: every member gives up everything), it stops
//! fetching, lets the executions in flight finish within the rebalance timeout while it keeps
//! heartbeating, commits their offsets with its old generation (the broker accepts that while
//! the group prepares the rebalance), and joins again. Two owners of one partition at once
//! would be a bug; a partition given up is executed by its next owner from its committed
//! offset.
//!
//! With `group_protocol` `consumer`, [`consumer_protocol`] is the member instead (KIP-848).
//!
//! Every error gets the action Kafka's own client takes: rejoin, reset the generation, forget
//! the member id, find the coordinator anew, or give up (a fenced instance id, a refused
//! authorization, a protocol the group does not share).

pub mod calls;
pub mod consumer_protocol;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use rskafka::client::Client;
use tokio::sync::watch;
use tokio::time::Instant;

use self::calls::{JoinRequest, Joined};
use self::rules::{BeatFailure, JoinFailure};
use super::coordinator::{Generation, GroupCoordinator};
use super::error::KafkaError;
use super::error::Refused;
use super::group::assignor::{self, Assignor};
use super::partitions::Partitions;
use crate::backoff::Backoff;
use crate::config::KafkaSettings;
use crate::metrics::WorkerState;
use std::collections::BTreeMap;

/// How this worker takes part in the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSettings {
    /// The static member's instance id (`<prefix>-<worker index>`); `None` for a dynamic one.
    pub instance_id: Option<String>,
    /// Without a heartbeat for this long, the group drops the member (`session_timeout_ms`).
    pub session_timeout: Duration,
    /// How often the member heartbeats (`heartbeat_interval_ms`).
    pub heartbeat_interval: Duration,
    /// How long a rebalance may wait for this member to give up its partitions and rejoin:
    /// long enough for its executions in flight to finish (`rebalance_timeout_ms`).
    pub rebalance_timeout: Duration,
    /// The assignors offered, preferred first (`roundrobin`, as hetida's consumers offer).
    pub assignors: Vec<Assignor>,
}

/// The parts of a worker's Kafka session a member works with.
#[derive(Debug)]
pub struct MemberParts {
    /// Its own connection to the coordinator: heartbeats must not wait behind commits.
    pub coordinator: GroupCoordinator,
    /// Partition counts and topics (the leader's assignment, the topic's growth).
    pub client: Arc<Client>,
    /// The worker's partitions, which the member takes and gives up as the group decides.
    pub partitions: Partitions,
    /// The generation (or member epoch) commits go out as; the committer reads it.
    pub generation: watch::Sender<Generation>,
    /// Ends the member (the worker stops).
    pub shutdown: watch::Receiver<bool>,
}

/// How long committing the given-up partitions may hold up a rebalance.
const COMMIT_BUDGET: Duration = Duration::from_secs(15);
/// Of the rebalance timeout, what giving partitions up keeps for rejoining: the executions in
/// flight get the rest.
const GIVE_UP_RESERVE: Duration = Duration::from_secs(2);
/// How long answers already being produced at the give-up's deadline are waited for.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// How a stable generation ended.
enum Ending {
    /// The worker stops.
    Shutdown,
    /// The group rebalances: give up the partitions (committing them) and join again.
    Rebalance(&'static str),
    /// The group no longer knows this generation: give up the partitions without committing
    /// (the broker would refuse), forget the member id if asked, and join again.
    Lost {
        reason: String,
        forget_member_id: bool,
    },
}

/// The member task's state.
pub struct Member {
    /// Its own connection to the coordinator: heartbeats must not wait behind commits.
    coordinator: GroupCoordinator,
    settings: MemberSettings,
    /// Topics, group, `auto_offset_reset`.
    kafka: KafkaSettings,
    /// Partition counts (for the leader's assignment).
    client: Arc<Client>,
    /// The worker's partitions: taken as assigned, given up (and committed) on a rebalance.
    partitions: Partitions,
    /// The generation commits go out as; the committer reads it.
    generation: watch::Sender<Generation>,
    /// Ends the member (the worker stops).
    shutdown: watch::Receiver<bool>,
    /// The member id the group gave; kept across rejoins, empty until the first.
    member_id: String,
    /// The request topic's partition count at the last assignment: the leader rejoins when it
    /// grows, so new partitions are assigned.
    partition_count: i32,
    /// Whether this member leads the current generation (and so watches the topic's size).
    leading: bool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("group", &self.kafka.group_id)
            .field("member_id", &self.member_id)
            .field("instance_id", &self.settings.instance_id)
            .finish_non_exhaustive()
    }
}

impl Member {
    pub(super) fn new(
        settings: MemberSettings,
        kafka: KafkaSettings,
        parts: MemberParts,
    ) -> Member {
        Member {
            coordinator: parts.coordinator,
            settings,
            kafka,
            client: parts.client,
            partitions: parts.partitions,
            generation: parts.generation,
            shutdown: parts.shutdown,
            member_id: String::new(),
            partition_count: 0,
            leading: false,
        }
    }

    /// Takes part in the group until the worker stops (`Ok`) or the group refuses it for good;
    /// then its partitions are lost: their fetch loops stop and records not yet answered stay
    /// unanswered (their next owner runs them).
    pub async fn run(mut self) -> Result<(), Refused> {
        let taken_part = self.take_part().await;
        if taken_part.is_err() {
            self.partitions.lose_all();
        }
        taken_part
    }

    async fn take_part(&mut self) -> Result<(), Refused> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut shutdown = self.shutdown.clone();
        loop {
            crate::metrics::worker().set_state(WorkerState::Joining);
            let joined = tokio::select! {
                joined = self.join_and_start() => joined,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let generation = match joined {
                Ok(generation) => {
                    backoff.reset();
                    generation
                }
                Err(e) => {
                    self.on_join_error(e)?;
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                    }
                    continue;
                }
            };
            match self.stay(&generation).await? {
                Ending::Shutdown => return Ok(()),
                Ending::Rebalance(reason) => {
                    crate::metrics::worker().set_state(WorkerState::Joining);
                    tracing::info!(group = %self.kafka.group_id, generation = generation.id, "the group rebalances ({reason}): giving up the partitions");
                    self.give_up(&generation, true).await;
                }
                Ending::Lost {
                    reason,
                    forget_member_id,
                } => {
                    crate::metrics::worker().set_state(WorkerState::Joining);
                    tracing::warn!(group = %self.kafka.group_id, generation = generation.id, "the group no longer knows this member's generation ({reason}): its partitions go to others without a commit");
                    self.give_up(&generation, false).await;
                    if forget_member_id {
                        self.member_id.clear();
                    }
                }
            }
        }
    }

    /// What a failed join means: fatal errors end the member; the rest is retried (after
    /// forgetting the member id where the group asks for that).
    fn on_join_error(&mut self, e: KafkaError) -> Result<(), Refused> {
        let code = match &e {
            KafkaError::Coordinator(c) => c.kafka_code(),
            _ => None,
        };
        match rules::after_join_failure(code.and_then(ResponseError::try_from_code)) {
            JoinFailure::Fenced => Err(Refused::Fenced {
                group: self.kafka.group_id.clone(),
                instance: self.settings.instance_id.clone().unwrap_or_default(),
            }),
            JoinFailure::Refused => match e {
                KafkaError::Coordinator(c) => Err(Refused::ByGroup(c)),
                other => {
                    tracing::warn!(group = %self.kafka.group_id, "joining the group failed, trying again: {other}");
                    Ok(())
                }
            },
            JoinFailure::Forget => {
                self.member_id.clear();
                tracing::info!(group = %self.kafka.group_id, "the group forgot this member; joining anew");
                Ok(())
            }
            JoinFailure::NextRound => {
                tracing::debug!(group = %self.kafka.group_id, "the group moved on while joining: {e}");
                Ok(())
            }
            JoinFailure::Retry => {
                tracing::warn!(group = %self.kafka.group_id, "joining the group failed, trying again: {e}");
                Ok(())
            }
        }
    }

    /// JoinGroup, the assignment (as leader), SyncGroup; then the assigned partitions are
    /// fetched from their committed offsets.
    async fn join_and_start(&mut self) -> Result<Generation, KafkaError> {
        let topic = self.kafka.request_topic.clone();
        let subscription = assignor::encode_subscription(
            &assignor::subscription_for([&topic]),
            assignor::SUBSCRIPTION_VERSION,
        )
        .map_err(|e| KafkaError::Stopped {
            what: "writing this member's subscription",
            reason: e.to_string(),
        })?;
        let protocols: Vec<(String, Bytes)> = self
            .settings
            .assignors
            .iter()
            .map(|a| (a.name().to_owned(), subscription.clone()))
            .collect();
        let joined = self
            .coordinator
            .join(&JoinRequest {
                member_id: &self.member_id,
                instance_id: self.settings.instance_id.as_deref(),
                session_timeout: self.settings.session_timeout,
                rebalance_timeout: self.settings.rebalance_timeout,
                protocols: &protocols,
                reason: "joining",
            })
            .await?;
        self.member_id = joined.generation.member_id.clone();
        let leads = joined.leader == joined.generation.member_id;
        self.leading = leads;
        let assignments = if leads && !joined.skip_assignment {
            self.assign(&joined).await?
        } else {
            Vec::new()
        };
        let mine = self
            .coordinator
            .sync(
                &joined.generation,
                &joined.protocol,
                assignments,
                self.settings.rebalance_timeout,
            )
            .await?;
        // A member without partitions gets an empty assignment (or, from some leaders, none).
        let partitions: Vec<i32> = if mine.is_empty() {
            Vec::new()
        } else {
            let assignment =
                assignor::decode_assignment(&mine).map_err(|e| KafkaError::Stopped {
                    what: "reading this member's assignment",
                    reason: e.to_string(),
                })?;
            assignor::assigned_partitions(&assignment)
                .remove(&topic)
                .unwrap_or_default()
        };
        if leads && joined.skip_assignment {
            // This member replaced the static leader and the group kept its assignment; as
            // leader it still watches the request topic, from the count in force now.
            if let Ok(Some(count)) =
                super::client::partition_count(&self.client, &self.kafka.request_topic).await
            {
                self.partition_count = count;
            }
        }
        let _ = self.generation.send(joined.generation.clone());
        let committed = self.coordinator.fetch(&topic, &partitions).await?;
        let starts = self
            .partitions
            .take(&partitions, &committed, self.kafka.auto_offset_reset)
            .await?;
        let metrics = crate::metrics::worker();
        metrics.rebalance();
        metrics.set_state(WorkerState::Consuming);
        tracing::info!(
            group = %self.kafka.group_id,
            generation = joined.generation.id,
            member_id = %joined.generation.member_id,
            instance_id = ?joined.generation.instance_id,
            leader = leads,
            protocol = %joined.protocol,
            topic = %topic,
            partitions = ?partitions,
            starts = ?starts,
            "worker consuming"
        );
        Ok(joined.generation)
    }

    /// The leader's work: every member's subscription, the partition counts of the topics
    /// they subscribe to, and the chosen assignor's result, encoded per member.
    async fn assign(&mut self, joined: &Joined) -> Result<Vec<(String, Bytes)>, KafkaError> {
        let bad = |what: &'static str, reason: String| KafkaError::Stopped { what, reason };
        let members = joined
            .members
            .iter()
            .map(|m| {
                assignor::Member::from_metadata(&m.member_id, m.instance_id.as_deref(), &m.metadata)
                    .map_err(|e| {
                        bad(
                            "reading a member's subscription",
                            format!("member {}: {e}", m.member_id),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|source| KafkaError::Client {
                context: "listing topics for the assignment".into(),
                source,
            })?;
        let counts: BTreeMap<String, i32> = topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        if let Some(&count) = counts.get(&self.kafka.request_topic) {
            self.partition_count = count;
        }
        let assignment = assignor::assign(&joined.protocol, &members, &counts)
            .map_err(|e| bad("assigning partitions", e.to_string()))?;
        assignment
            .iter()
            .map(|(member, partitions)| {
                assignor::encode_assignment(
                    &assignor::assignment_for(partitions),
                    assignor::ASSIGNMENT_VERSION,
                )
                .map(|bytes| (member.clone(), bytes))
                .map_err(|e| bad("writing an assignment", e.to_string()))
            })
            .collect()
    }

    /// Heartbeats until the generation ends. The leader also rejoins when the request topic
    /// grows, so that the new partitions get an owner.
    async fn stay(&mut self, generation: &Generation) -> Result<Ending, Refused> {
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut partition_check = tokio::time::interval(self.kafka.partition_check_interval);
        partition_check.tick().await;
        let mut last_beat = Instant::now();
        let leads = self.leading;
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return Ok(Ending::Shutdown),
                _ = tick.tick() => {
                    match self.beat(generation, &mut last_beat).await? {
                        Some(ending) => return Ok(ending),
                        None => continue,
                    }
                }
                _ = partition_check.tick(), if leads => {
                    if let Ok(Some(count)) = super::client::partition_count(&self.client, &self.kafka.request_topic).await
                        && count > self.partition_count
                    {
                        return Ok(Ending::Rebalance("the request topic has more partitions"));
                    }
                }
            }
        }
    }

    /// One heartbeat; `Some` when the generation is over. Only the coordinator's answer ends
    /// a generation: while Kafka cannot be reached the member keeps its partitions (as Kafka's
    /// own client does), and learns whether the group moved on once it answers again.
    async fn beat(
        &mut self,
        generation: &Generation,
        last_beat: &mut Instant,
    ) -> Result<Option<Ending>, Refused> {
        let budget = self.settings.heartbeat_interval.max(Duration::from_secs(1));
        let error = match self.coordinator.heartbeat(generation, budget).await {
            Ok(()) => {
                *last_beat = Instant::now();
                return Ok(None);
            }
            Err(e) => e,
        };
        let ending = match rules::after_heartbeat_failure(
            error.kafka_code().and_then(ResponseError::try_from_code),
        ) {
            BeatFailure::Rebalance => Ending::Rebalance("another member joined or left"),
            BeatFailure::Lost { forget_member_id } => Ending::Lost {
                reason: error.to_string(),
                forget_member_id,
            },
            BeatFailure::Fenced => {
                return Err(Refused::Fenced {
                    group: self.kafka.group_id.clone(),
                    instance: generation.instance_id.clone().unwrap_or_default(),
                });
            }
            BeatFailure::Retry => {
                tracing::debug!(group = %self.kafka.group_id, "heartbeat failed, trying again: {error}");
                return Ok(None);
            }
        };
        Ok(Some(ending))
    }

    /// Gives up every partition (see [`super::tenure`]): no more fetching, records not started
    /// are not executed, the executions in flight finish until the deadline (heartbeating
    /// meanwhile, so the group keeps this member) and are answered, then, with `commit`, their
    /// offsets are committed with the old generation. Answers of executions past the deadline
    /// are dropped: the partitions' next owners run those requests again.
    async fn give_up(&mut self, generation: &Generation, commit: bool) {
        let partitions = self.partitions.clone();
        let owned = partitions.owned();
        if owned.is_empty() {
            return;
        }
        let budget = self
            .settings
            .rebalance_timeout
            .saturating_sub(GIVE_UP_RESERVE);
        let mut give_up = partitions.give_up(&owned, budget, ANSWER_GRACE);
        if !commit {
            give_up.lose(Instant::now());
        }
        let mut last_beat = Instant::now();
        let every = self.settings.heartbeat_interval;
        // The group is rebalancing: that answer is expected; a lost generation means the
        // commit would be refused, and the next owners may start at once.
        let still_member = async || {
            !matches!(
                self.beat(generation, &mut last_beat).await,
                Ok(Some(Ending::Lost { .. }))
            )
        };
        let commit = partitions.wait_out(&mut give_up, still_member, every).await;
        partitions
            .end_give_up(&give_up, commit, COMMIT_BUDGET)
            .await;
    }

    /// Leaves the group for good: a dynamic member on every stop, a static member only when
    /// it is retired (TTOU); a static member that merely restarts keeps its partitions, and
    /// its replacement takes them over without a rebalance.
    pub async fn leave(coordinator: &mut GroupCoordinator, generation: &Generation, retire: bool) {
        if generation.member_id.is_empty() || (generation.instance_id.is_some() && !retire) {
            return;
        }
        let reason = if retire {
            "the worker was retired"
        } else {
            "the worker stops"
        };
        if let Err(e) = coordinator
            .leave(
                &generation.member_id,
                generation.instance_id.as_deref(),
                reason,
            )
            .await
        {
            tracing::warn!("leaving the group failed (it notices within the session timeout): {e}");
        }
    }
}
