//! This worker as a member of a consumer group that speaks the consumer protocol of KIP-848
//! (`group_protocol` `consumer`, Kafka 4.0+): the broker assigns the partitions, and a member
//! joining or leaving moves only the partitions that must move. Executions on the others never
//! pause.
//!
//! The member heartbeats (ConsumerGroupHeartbeat) at the interval the broker gives; each answer
//! may carry its whole new assignment. Reconciling it revokes first: the partitions taken away
//! stop fetching, their executions in flight finish (within the rebalance timeout), their
//! offsets are committed with the member epoch; then the partitions given are fetched from their
//! committed offsets, and the next heartbeat acknowledges the assignment by naming what the
//! member owns. A fenced epoch or a forgotten member loses every partition without a commit and
//! joins again with epoch 0, keeping its member id (generated here, kept for the process).
//!
//! The assignment names topics by id: the request topic's id comes from a Metadata request
//! (v10+), as rskafka's Metadata has none.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, GroupId, MetadataRequest, TopicName,
    consumer_group_heartbeat_request::TopicPartitions, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::MemberParts;
use super::rules::{
    ConsumerBeatFailure, Move, after_consumer_heartbeat_failure, beat_shape, next_move,
};
use crate::backoff::Backoff;
use crate::config::KafkaSettings;
use crate::kafka::coordinator::{CoordinatorError, Generation, GroupCoordinator};
use crate::kafka::error::KafkaError;
use crate::kafka::error::Refused;
use crate::kafka::partitions::Partitions;
use crate::kafka::tenure::{GiveUp, Step};
use crate::metrics::WorkerState;

const HEARTBEAT_VERSIONS: RangeInclusive<i16> = 0..=1;
/// Metadata with topic ids.
const METADATA_VERSIONS: RangeInclusive<i16> = 10..=12;
/// Epoch of a member leaving for good.
const LEAVE_EPOCH: i32 = -1;
/// Epoch of a static member leaving to come back (a restart): the broker keeps its partitions
/// for it until the session timeout.
const STATIC_LEAVE_EPOCH: i32 = -2;
/// How long one heartbeat may take with its retries before the member counts the coordinator
/// as gone (and tries again).
const HEARTBEAT_BUDGET: Duration = Duration::from_secs(5);

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// What one heartbeat says.
#[derive(Debug, Clone)]
struct Beat<'a> {
    member_id: &'a str,
    epoch: i32,
    /// Everything the member is: sent when joining (epoch 0), after any failure (a lost answer
    /// may have moved the epoch on; the broker accepts the previous epoch only from a full
    /// request), and on every retry of this beat. `None` for a leave.
    full: Option<Full<'a>>,
    /// Send `full` even on the first attempt.
    send_full: bool,
    /// Send `owned` even when not sending `full` (an acknowledgement).
    send_owned: bool,
    /// The partitions owned (revoking ones included, until their commit), sent to acknowledge
    /// a reconciled assignment, and with every full request.
    owned: Option<(Uuid, Vec<i32>)>,
    /// A static member's instance id, sent with every beat (the broker refuses a static leave,
    /// epoch -2, without it, and checks it for a fenced instance).
    instance_id: Option<&'a str>,
}

#[derive(Debug, Clone)]
struct Full<'a> {
    rebalance_timeout: Duration,
    topic: &'a str,
    assignor: Option<&'a str>,
}

/// What the coordinator answered.
#[derive(Debug, Clone)]
struct Answer {
    epoch: i32,
    interval: Duration,
    /// The whole assignment when it changed: (topic id, partitions).
    assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

impl GroupCoordinator {
    /// Added to the error when the broker does not speak ConsumerGroupHeartbeat: Kafka 2.8
    /// announces no version of it, 3.x without the feature answers UNSUPPORTED_VERSION, and
    /// neither says that the option asking for it is what to change.
    pub(crate) const CONSUMER_PROTOCOL_UNSUPPORTED: &str = " (\"group_protocol\": \"consumer\" \
        needs Kafka 4.0+, or on Kafka 3.7+ the broker setting \
        group.coordinator.rebalance.protocols=classic,consumer; without that option the worker \
        speaks the classic protocol, which every Kafka supports)";

    /// One ConsumerGroupHeartbeat.
    async fn consumer_heartbeat(&mut self, beat: &Beat<'_>) -> Result<Answer, CoordinatorError> {
        let group = self.group().to_owned();
        let attempts = std::cell::Cell::new(0u32);
        self.retrying_within(
            "ConsumerGroupHeartbeat",
            HEARTBEAT_BUDGET,
            async |this: &mut Self| {
                // A retry goes out in full: the failed attempt may have been processed.
                let send_full = beat.send_full || attempts.get() > 0;
                attempts.set(attempts.get() + 1);
                this.exchange(
                    ApiKey::ConsumerGroupHeartbeat,
                    "ConsumerGroupHeartbeat",
                    HEARTBEAT_VERSIONS,
                    |_| {
                        let mut request = ConsumerGroupHeartbeatRequest::default()
                            .with_group_id(GroupId(str_bytes(&group)))
                            .with_member_id(str_bytes(beat.member_id))
                            .with_member_epoch(beat.epoch)
                            .with_rebalance_timeout_ms(-1);
                        request = request.with_instance_id(beat.instance_id.map(str_bytes));
                        let full = beat.full.as_ref().filter(|_| send_full);
                        if let Some(full) = full {
                            request = request
                                .with_rebalance_timeout_ms(millis(full.rebalance_timeout))
                                .with_subscribed_topic_names(Some(vec![TopicName(str_bytes(
                                    full.topic,
                                ))]))
                                .with_server_assignor(full.assignor.map(str_bytes));
                        }
                        let owned = beat.owned.as_ref().filter(|_| send_full || beat.send_owned);
                        if let Some((topic_id, partitions)) = owned {
                            let owned = if partitions.is_empty() {
                                Vec::new()
                            } else {
                                vec![
                                    TopicPartitions::default()
                                        .with_topic_id(*topic_id)
                                        .with_partitions(partitions.clone()),
                                ]
                            };
                            request = request.with_topic_partitions(Some(owned));
                        }
                        request
                    },
                    |response, answered| {
                        answered.check_with_message(
                            response.error_code,
                            response.error_message.as_deref(),
                        )?;
                        Ok(Answer {
                            epoch: response.member_epoch,
                            interval: Duration::from_millis(
                                u64::try_from(response.heartbeat_interval_ms).unwrap_or(0),
                            ),
                            assignment: response.assignment.map(|a| {
                                a.topic_partitions
                                    .into_iter()
                                    .map(|t| (t.topic_id, t.partitions))
                                    .collect()
                            }),
                        })
                    },
                )
                .await
                .map_err(|e| e.with_remedy(Self::CONSUMER_PROTOCOL_UNSUPPORTED))
            },
        )
        .await
    }

    /// The id of `topic` (Metadata v10+); `None` when the broker does not know the topic.
    pub(crate) async fn topic_id(&mut self, topic: &str) -> Result<Option<Uuid>, CoordinatorError> {
        self.retrying("Metadata", async |this: &mut Self| {
            this.exchange(
                ApiKey::Metadata,
                "Metadata",
                METADATA_VERSIONS,
                |_| {
                    MetadataRequest::default()
                        .with_topics(Some(vec![
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(str_bytes(topic)))),
                        ]))
                        .with_allow_auto_topic_creation(false)
                },
                |response, _| {
                    Ok(response
                        .topics
                        .into_iter()
                        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                        .filter(|t| t.error_code == 0 && !t.topic_id.is_nil())
                        .map(|t| t.topic_id))
                },
            )
            .await
        })
        .await
    }
}

/// How this worker takes part in a consumer-protocol group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberSettings {
    /// The static member's instance id; `None` for a dynamic one.
    pub instance_id: Option<String>,
    /// How long the broker waits for this member to revoke partitions.
    pub rebalance_timeout: Duration,
    /// The broker's assignor to ask for; `None`: the broker's default (`uniform`).
    pub assignor: Option<String>,
}

/// How long a commit of revoked partitions, and the start of added ones, may hold up the
/// member's loop (and so its heartbeats): well inside the broker's 45 s session.
const STEP_BUDGET: Duration = Duration::from_secs(10);
/// Of the rebalance timeout, what revocation keeps for its answers in production, commit and
/// acknowledgement: the executions in flight get the rest.
const REVOCATION_RESERVE: Duration = Duration::from_secs(15);
/// How long answers already being produced at the revocation's deadline are waited for.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The member task's state.
pub struct ConsumerMember {
    /// Its own connection to the coordinator: heartbeats must not wait behind commits.
    coordinator: GroupCoordinator,
    settings: ConsumerMemberSettings,
    kafka: KafkaSettings,
    /// The worker's partitions: taken as assigned, given up (and committed) when revoked.
    partitions: Partitions,
    /// Commits go out with the current member epoch.
    generation: watch::Sender<Generation>,
    shutdown: watch::Receiver<bool>,
    /// Generated here and kept for the process (KIP-1082).
    member_id: String,
    /// 0 until the group accepted this member.
    epoch: i32,
    /// The request topic's id, once known.
    topic_id: Option<Uuid>,
    /// The partitions fetched (or being revoked).
    owned: BTreeSet<i32>,
    /// The latest assignment the broker sent, as it sent it: (topic id, partitions). Resolved
    /// against the request topic's id in `reconcile`, so an id not known yet is looked up
    /// again rather than dropped.
    assignment: Vec<(Uuid, Vec<i32>)>,
    /// Partitions revoked and not yet given up.
    revoking: Option<GiveUp>,
    /// The owned partitions must be named in the next heartbeat (an acknowledgement).
    acknowledge: bool,
    /// The next heartbeat goes out in full (after a failure).
    full: bool,
    /// Since when the broker refuses the instance id as still held (a duplicate, or the
    /// session of a killed predecessor).
    unreleased_since: Option<Instant>,
    /// When the next heartbeat is due, and how often they go.
    next_beat: Instant,
    interval: Duration,
}

impl std::fmt::Debug for ConsumerMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerMember")
            .field("group", &self.kafka.group_id)
            .field("member_id", &self.member_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl ConsumerMember {
    /// A member that has not joined yet (epoch 0) with a member id of its own (KIP-1082).
    pub fn new(
        settings: ConsumerMemberSettings,
        kafka: KafkaSettings,
        parts: MemberParts,
    ) -> ConsumerMember {
        ConsumerMember {
            coordinator: parts.coordinator,
            settings,
            kafka,
            partitions: parts.partitions,
            generation: parts.generation,
            shutdown: parts.shutdown,
            member_id: Uuid::new_v4().to_string(),
            epoch: 0,
            topic_id: None,
            owned: BTreeSet::new(),
            assignment: Vec::new(),
            revoking: None,
            acknowledge: true,
            full: true,
            unreleased_since: None,
            next_beat: Instant::now(),
            interval: Duration::from_secs(5),
        }
    }

    /// Takes part in the group until the worker stops (`Ok`) or the group refuses it for good
    /// (then its partitions are lost).
    pub async fn run(mut self) -> Result<(), Refused> {
        crate::metrics::worker().set_state(WorkerState::Joining);
        let ran = self.take_part().await;
        if ran.is_err() {
            self.lose_all();
        }
        ran
    }

    async fn take_part(&mut self) -> Result<(), Refused> {
        let mut shutdown = self.shutdown.clone();
        let mut settle = tokio::time::interval(Duration::from_millis(20));
        // After a long time without a revocation, one tick, not a burst of missed ones.
        settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                _ = tokio::time::sleep_until(self.next_beat) => {
                    match self.heartbeat().await {
                        Ok(()) => backoff.reset(),
                        Err(e) => {
                            self.full = true;
                            self.on_error(e)?;
                            self.next_beat = Instant::now() + backoff.next_pause();
                        }
                    }
                }
                _ = settle.tick(), if self.revoking.is_some() => {}
            }
            if let Err(e) = self.reconcile().await {
                tracing::warn!(group = %self.kafka.group_id, "taking up the assignment failed, trying again: {e}");
                self.full = true;
                self.next_beat = self.next_beat.min(Instant::now() + backoff.next_pause());
            }
        }
    }

    /// One heartbeat and what its answer means.
    async fn heartbeat(&mut self) -> Result<(), CoordinatorError> {
        let shape = beat_shape(self.epoch, self.full, self.acknowledge);
        let owned = (
            self.topic_id.unwrap_or_default(),
            self.owned.iter().copied().collect(),
        );
        let beat = Beat {
            member_id: &self.member_id,
            epoch: self.epoch,
            full: Some(Full {
                rebalance_timeout: self.settings.rebalance_timeout,
                topic: &self.kafka.request_topic,
                assignor: self.settings.assignor.as_deref(),
            }),
            send_full: shape.full,
            send_owned: shape.owned,
            // Nothing is owned before the topic id is known, so any id will do then.
            owned: Some(owned),
            instance_id: self.settings.instance_id.as_deref(),
        };
        let answer = self.coordinator.consumer_heartbeat(&beat).await?;
        self.acknowledge = false;
        self.full = false;
        self.unreleased_since = None;
        if answer.epoch != self.epoch {
            tracing::debug!(group = %self.kafka.group_id, from = self.epoch, to = answer.epoch, "member epoch");
            self.epoch = answer.epoch;
            let _ = self.generation.send(Generation {
                id: self.epoch,
                member_id: self.member_id.clone(),
                instance_id: self.settings.instance_id.clone(),
            });
        }
        if !answer.interval.is_zero() {
            self.interval = answer.interval;
        }
        self.next_beat = Instant::now() + self.interval;
        if let Some(assignment) = answer.assignment {
            self.assignment = assignment;
        }
        Ok(())
    }

    /// The request topic's partitions in the assignment (the only topic subscribed). An id
    /// other than the request topic's known one makes it look the id up again (the topic may
    /// have been created, or deleted and created anew, since).
    async fn target(&mut self) -> Result<BTreeSet<i32>, CoordinatorError> {
        let unknown = self
            .assignment
            .iter()
            .any(|(id, _)| Some(*id) != self.topic_id);
        if unknown {
            self.topic_id = self.coordinator.topic_id(&self.kafka.request_topic).await?;
        }
        let mut partitions = BTreeSet::new();
        for (id, ps) in &self.assignment {
            if Some(*id) == self.topic_id {
                partitions.extend(ps.iter().copied());
            } else {
                tracing::warn!(group = %self.kafka.group_id, topic_id = %id, "assigned partitions of a topic this member does not subscribe to; ignored");
            }
        }
        Ok(partitions)
    }

    /// Moves towards the assignment: revoke first (finish, commit), then take the new
    /// partitions; then acknowledge. Each step is bounded, so heartbeats go on.
    async fn reconcile(&mut self) -> Result<(), KafkaError> {
        if let Some(give_up) = &mut self.revoking {
            let Step::Finish { commit } = give_up.step(Instant::now()) else {
                return Ok(());
            };
            let give_up = self.revoking.take().expect("checked above");
            self.partitions
                .end_give_up(&give_up, commit, STEP_BUDGET)
                .await;
            for p in give_up.partitions() {
                self.owned.remove(&p);
            }
            self.acknowledge = true;
            self.next_beat = Instant::now();
        }
        if self.epoch == 0 {
            return Ok(());
        }
        let target = self.target().await?;
        let added = match next_move(&self.owned, &target) {
            Move::Steady => {
                // In the group and holding what it was given (perhaps nothing: more members
                // than partitions): consuming, as far as readiness goes.
                crate::metrics::worker().set_state(WorkerState::Consuming);
                return Ok(());
            }
            Move::Revoke(revoked) => {
                tracing::info!(group = %self.kafka.group_id, epoch = self.epoch, partitions = ?revoked, "giving up partitions: finishing their executions");
                let budget = self
                    .settings
                    .rebalance_timeout
                    .saturating_sub(REVOCATION_RESERVE)
                    .max(Duration::from_secs(1));
                crate::metrics::worker().rebalance();
                self.revoking = Some(self.partitions.give_up(&revoked, budget, ANSWER_GRACE));
                return Ok(());
            }
            Move::Take(added) => added,
        };
        let topic = self.kafka.request_topic.clone();
        let starts = tokio::time::timeout(STEP_BUDGET, async {
            let committed = self.coordinator.fetch(&topic, &added).await?;
            self.partitions
                .take(&added, &committed, self.kafka.auto_offset_reset)
                .await
        })
        .await
        .map_err(|_| KafkaError::Stopped {
            what: "starting the assigned partitions",
            reason: format!("no answer within {STEP_BUDGET:?}"),
        })??;
        self.owned.extend(added.iter().copied());
        self.acknowledge = true;
        self.next_beat = Instant::now();
        let metrics = crate::metrics::worker();
        metrics.rebalance();
        metrics.set_state(WorkerState::Consuming);
        tracing::info!(
            group = %self.kafka.group_id,
            epoch = self.epoch,
            member_id = %self.member_id,
            instance_id = ?self.settings.instance_id,
            protocol = "consumer",
            topic = %topic,
            partitions = ?self.owned,
            added = ?added,
            starts = ?starts,
            "worker consuming"
        );
        Ok(())
    }

    /// A failed heartbeat: fenced or forgotten members lose their partitions and join again;
    /// what no retry fixes ends the member.
    fn on_error(&mut self, e: CoordinatorError) -> Result<(), Refused> {
        let unsupported = matches!(e, CoordinatorError::Unsupported { .. });
        let code = e.kafka_code().and_then(ResponseError::try_from_code);
        let now = Instant::now();
        match after_consumer_heartbeat_failure(code, unsupported, &mut self.unreleased_since, now) {
            ConsumerBeatFailure::LoseAll => {
                tracing::warn!(group = %self.kafka.group_id, epoch = self.epoch, "the group fenced this member ({e}): its partitions go to others without a commit; joining again");
                self.lose_all();
                Ok(())
            }
            ConsumerBeatFailure::Fenced => Err(Refused::Fenced {
                group: self.kafka.group_id.clone(),
                instance: self.settings.instance_id.clone().unwrap_or_default(),
            }),
            ConsumerBeatFailure::Unreleased { suspicious: true } => {
                let held = self.unreleased_since.map(|since| now.duration_since(since));
                tracing::warn!(group = %self.kafka.group_id, instance = ?self.settings.instance_id, "the instance id has been held by another member for {held:.0?}: does another process use the same group_instance_id prefix?");
                Ok(())
            }
            ConsumerBeatFailure::Unreleased { suspicious: false } => {
                // The previous holder of this instance id (a killed worker) is still a member
                // until it leaves or its session times out.
                tracing::info!(group = %self.kafka.group_id, instance = ?self.settings.instance_id, "the instance id is still held by its previous worker; trying again");
                Ok(())
            }
            ConsumerBeatFailure::Refused => Err(Refused::ByGroup(e)),
            ConsumerBeatFailure::Retry => {
                tracing::warn!(group = %self.kafka.group_id, "heartbeating failed, trying again: {e}");
                Ok(())
            }
        }
    }

    /// Every partition is lost, those being revoked too (no commit: the broker would refuse
    /// it, and their next owners run their requests again, so answers still coming from here
    /// must not go out); join again.
    fn lose_all(&mut self) {
        if let Some(mut give_up) = self.revoking.take() {
            give_up.abandon(Instant::now());
        }
        self.partitions.lose_all();
        self.owned.clear();
        self.assignment.clear();
        self.epoch = 0;
        self.acknowledge = true;
        self.full = true;
        self.next_beat = Instant::now();
        crate::metrics::worker().set_state(WorkerState::Joining);
    }

    /// Leaves the group: for good (epoch -1) when dynamic or retired, else as a static member
    /// that comes back (epoch -2: its partitions wait for its replacement).
    pub async fn leave(coordinator: &mut GroupCoordinator, generation: &Generation, retire: bool) {
        if generation.member_id.is_empty() {
            return;
        }
        let epoch = if generation.instance_id.is_some() && !retire {
            STATIC_LEAVE_EPOCH
        } else {
            LEAVE_EPOCH
        };
        let beat = Beat {
            member_id: &generation.member_id,
            epoch,
            full: None,
            send_full: false,
            send_owned: false,
            owned: None,
            instance_id: generation.instance_id.as_deref(),
        };
        if let Err(e) = coordinator.consumer_heartbeat(&beat).await {
            tracing::warn!("leaving the group failed (it notices within the session timeout): {e}");
        }
    }
}
