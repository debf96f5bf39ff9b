//! This worker as a member of a share group (KIP-932): ShareGroupHeartbeat with the group's
//! coordinator at the interval the broker gives; each answer may carry the whole assignment.
//! Unlike a consumer group there is no revocation: several members may hold one partition, and
//! the records, not the partitions, are what members hold (under acquisition locks), so a new
//! assignment is simply fetched from. A fenced epoch or a forgotten member rejoins with epoch 0
//! and the same member id; the records it held stay acquired until their locks run out or its
//! share sessions close.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, GroupId, ShareGroupHeartbeatRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::kafka::coordinator::{CoordinatorError, GroupCoordinator};
use crate::kafka::error::Refused;
use crate::metrics::WorkerState;

/// v1 is the one version of Kafka 4.1+ (v0 was 4.0's early access).
const HEARTBEAT_VERSIONS: RangeInclusive<i16> = 1..=1;
const LEAVE_EPOCH: i32 = -1;
/// How long one heartbeat may take with its retries.
const HEARTBEAT_BUDGET: Duration = Duration::from_secs(5);

/// Added to the error when the broker does not serve share groups.
pub(crate) const SHARE_GROUPS_UNSUPPORTED: &str = " (\"group_protocol\": \"share\" needs Kafka \
    4.2+ with share groups on: new 4.2+ clusters have them; an upgraded cluster needs \
    kafka-features.sh upgrade --feature share.version=1; without that option the worker is a \
    consumer-group member, which every Kafka supports)";

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// What a failed heartbeat means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BeatFailure {
    /// The group no longer knows this member (epoch): join again with epoch 0.
    Rejoin,
    /// The group id names a group of another type (a consumer group).
    NotAShareGroup,
    /// No retry can mend it.
    Refused,
    /// Ask again after a pause.
    Retry,
}

/// The rules for a failed ShareGroupHeartbeat (Java's `ShareHeartbeatRequestManager`).
pub(crate) fn after_failure(
    code: Option<ResponseError>,
    unsupported: bool,
    epoch: i32,
) -> BeatFailure {
    match code {
        Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
            BeatFailure::Rejoin
        }
        // Joining (epoch 0) creates the group when there is none: not found then means the id
        // is taken by a group of another type. Later it means the group was deleted.
        Some(ResponseError::GroupIdNotFound) if epoch == 0 => BeatFailure::NotAShareGroup,
        Some(ResponseError::GroupIdNotFound) => BeatFailure::Rejoin,
        Some(
            ResponseError::GroupAuthorizationFailed
            | ResponseError::TopicAuthorizationFailed
            | ResponseError::GroupMaxSizeReached
            | ResponseError::InvalidRequest
            | ResponseError::UnsupportedVersion,
        ) => BeatFailure::Refused,
        _ if unsupported => BeatFailure::Refused,
        _ => BeatFailure::Retry,
    }
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
    /// One ShareGroupHeartbeat; `subscribe` names the topic on a full request (joining, after
    /// a failure), `None` keeps what the broker has.
    async fn share_heartbeat(
        &mut self,
        member_id: &str,
        epoch: i32,
        subscribe: Option<&str>,
    ) -> Result<Answer, CoordinatorError> {
        let group = self.group().to_owned();
        self.retrying_within(
            "ShareGroupHeartbeat",
            HEARTBEAT_BUDGET,
            async |this: &mut Self| {
                this.exchange(
                    ApiKey::ShareGroupHeartbeat,
                    "ShareGroupHeartbeat",
                    HEARTBEAT_VERSIONS,
                    |_| {
                        ShareGroupHeartbeatRequest::default()
                            .with_group_id(GroupId(str_bytes(&group)))
                            .with_member_id(str_bytes(member_id))
                            .with_member_epoch(epoch)
                            .with_subscribed_topic_names(
                                subscribe.map(|t| vec![TopicName(str_bytes(t))]),
                            )
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
                .map_err(|e| e.with_remedy(SHARE_GROUPS_UNSUPPORTED))
            },
        )
        .await
    }
}

/// The member task.
pub(crate) struct ShareMember {
    /// Its own connection to the coordinator.
    pub coordinator: GroupCoordinator,
    pub group: String,
    pub topic: String,
    /// Generated by the worker, kept for the process; the share sessions name it too.
    pub member_id: String,
    /// The request topic's id (once known) and its partitions assigned to this member.
    pub assignment: watch::Sender<(Option<Uuid>, BTreeSet<i32>)>,
    /// The epoch, for leaving at the end.
    pub epoch: watch::Sender<i32>,
    pub shutdown: watch::Receiver<bool>,
}

impl ShareMember {
    /// Takes part in the group until the worker stops (`Ok`) or the group refuses it.
    pub async fn run(mut self) -> Result<(), Refused> {
        crate::metrics::worker().set_state(WorkerState::Joining);
        let mut shutdown = self.shutdown.clone();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut epoch = 0;
        let mut full = true;
        let mut interval = Duration::from_secs(5);
        let mut topic_id: Option<Uuid> = None;
        let mut raw: Vec<(Uuid, Vec<i32>)> = Vec::new();
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
            }
            let subscribe = full.then_some(self.topic.as_str());
            match self
                .coordinator
                .share_heartbeat(&self.member_id, epoch, subscribe)
                .await
            {
                Ok(answer) => {
                    backoff.reset();
                    full = false;
                    if answer.epoch != epoch {
                        tracing::debug!(group = %self.group, from = epoch, to = answer.epoch, "share member epoch");
                        epoch = answer.epoch;
                        let _ = self.epoch.send(epoch);
                    }
                    if !answer.interval.is_zero() {
                        interval = answer.interval;
                    }
                    next = Instant::now() + interval;
                    if let Some(assignment) = answer.assignment {
                        raw = assignment;
                    }
                }
                Err(e) => {
                    full = true;
                    let unsupported = matches!(e, CoordinatorError::Unsupported { .. });
                    let code = e.kafka_code().and_then(ResponseError::try_from_code);
                    match after_failure(code, unsupported, epoch) {
                        BeatFailure::Rejoin => {
                            tracing::warn!(group = %self.group, epoch, "the share group no longer knows this member ({e}); joining again");
                            epoch = 0;
                            let _ = self.epoch.send(0);
                            raw.clear();
                            crate::metrics::worker().set_state(WorkerState::Joining);
                        }
                        BeatFailure::NotAShareGroup => {
                            return Err(Refused::NotAShareGroup {
                                group: self.group.clone(),
                            });
                        }
                        BeatFailure::Refused => return Err(Refused::ByGroup(e)),
                        BeatFailure::Retry => {
                            tracing::warn!(group = %self.group, "heartbeating failed, trying again: {e}");
                        }
                    }
                    next = Instant::now() + backoff.next_pause();
                }
            }
            // The assignment names topics by id; an unknown one makes the member look the
            // request topic's id up again (it may have been created anew).
            if raw.iter().any(|(id, _)| Some(*id) != topic_id) {
                match self.coordinator.topic_id(&self.topic).await {
                    Ok(id) => topic_id = id,
                    Err(e) => {
                        tracing::warn!(group = %self.group, "looking up the request topic's id failed: {e}")
                    }
                }
            }
            let partitions: BTreeSet<i32> = raw
                .iter()
                .filter(|(id, _)| Some(*id) == topic_id)
                .flat_map(|(_, ps)| ps.iter().copied())
                .collect();
            if epoch > 0 {
                crate::metrics::worker().set_state(WorkerState::Consuming);
            }
            let assigned = (topic_id, partitions);
            self.assignment.send_if_modified(|now| {
                if *now == assigned {
                    return false;
                }
                tracing::info!(
                    group = %self.group,
                    epoch,
                    member_id = %self.member_id,
                    protocol = "share",
                    topic = %self.topic,
                    partitions = ?assigned.1,
                    "worker consuming"
                );
                *now = assigned.clone();
                true
            });
        }
    }

    /// Leaves the group (epoch -1), after the share sessions are closed.
    pub async fn leave(coordinator: &mut GroupCoordinator, member_id: &str, epoch: i32) {
        if epoch <= 0 {
            return;
        }
        if let Err(e) = coordinator
            .share_heartbeat(member_id, LEAVE_EPOCH, None)
            .await
        {
            tracing::warn!(
                "leaving the share group failed (it notices within the session timeout): {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_or_forgotten_member_joins_again() {
        for code in [
            ResponseError::FencedMemberEpoch,
            ResponseError::UnknownMemberId,
        ] {
            assert_eq!(after_failure(Some(code), false, 5), BeatFailure::Rejoin);
        }
    }

    #[test]
    fn group_not_found_when_joining_means_the_id_is_another_type_of_group() {
        assert_eq!(
            after_failure(Some(ResponseError::GroupIdNotFound), false, 0),
            BeatFailure::NotAShareGroup
        );
        assert_eq!(
            after_failure(Some(ResponseError::GroupIdNotFound), false, 3),
            BeatFailure::Rejoin
        );
    }

    #[test]
    fn what_no_retry_mends_ends_the_member_and_the_rest_is_retried() {
        for code in [
            ResponseError::GroupAuthorizationFailed,
            ResponseError::GroupMaxSizeReached,
            ResponseError::InvalidRequest,
            ResponseError::UnsupportedVersion,
        ] {
            assert_eq!(after_failure(Some(code), false, 0), BeatFailure::Refused);
        }
        assert_eq!(after_failure(None, true, 0), BeatFailure::Refused);
        assert_eq!(
            after_failure(Some(ResponseError::CoordinatorNotAvailable), false, 2),
            BeatFailure::Retry
        );
        assert_eq!(after_failure(None, false, 2), BeatFailure::Retry);
    }
}
