//! What the group coordinator's answers mean for this member, IO-free: the rules of Kafka's
//! group protocols (the classic one and KIP-848's consumer protocol) as plain functions and
//! types, so each is unit-tested without a broker. The member tasks around them only send the
//! calls and carry the reactions out.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::time::Instant;

/// What a classic member does after JoinGroup or SyncGroup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// Another process joined with this member's instance id: stop for good.
    Fenced,
    /// The group refuses this member (protocol, authorization, size, id): a human must act.
    Refused,
    /// The group forgot this member's id: join again without it.
    Forget,
    /// The group moved on while this member joined (another member came or went): join the
    /// new round; nothing to report.
    NextRound,
    /// Anything else (the coordinator moving, an outage): join again after a pause, warning.
    Retry,
}

/// The classic protocol's answer to a failed join (by Kafka error code, `None` for no code).
pub fn after_join_failure(code: Option<ResponseError>) -> JoinFailure {
    match code {
        Some(ResponseError::FencedInstanceId) => JoinFailure::Fenced,
        Some(
            ResponseError::InconsistentGroupProtocol
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::InvalidSessionTimeout
            | ResponseError::GroupMaxSizeReached
            | ResponseError::InvalidGroupId,
        ) => JoinFailure::Refused,
        Some(ResponseError::UnknownMemberId) => JoinFailure::Forget,
        Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
            JoinFailure::NextRound
        }
        _ => JoinFailure::Retry,
    }
}

/// What a failed classic heartbeat means for the generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatFailure {
    /// The group rebalances: give the partitions up (committing them) and join again.
    Rebalance,
    /// The group no longer knows this generation: give the partitions up without a commit
    /// (it would be refused) and join again, without the member id when `forget_member_id`.
    Lost { forget_member_id: bool },
    /// Another process took this member's instance id: stop for good.
    Fenced,
    /// No answer that ends the generation (an outage, a moving coordinator): keep the
    /// partitions and beat again, as Kafka's own client does.
    Retry,
}

/// The classic protocol's answer to a failed heartbeat.
pub fn after_heartbeat_failure(code: Option<ResponseError>) -> BeatFailure {
    match code {
        Some(ResponseError::RebalanceInProgress) => BeatFailure::Rebalance,
        Some(ResponseError::IllegalGeneration) => BeatFailure::Lost {
            forget_member_id: false,
        },
        Some(ResponseError::UnknownMemberId) => BeatFailure::Lost {
            forget_member_id: true,
        },
        Some(ResponseError::FencedInstanceId) => BeatFailure::Fenced,
        _ => BeatFailure::Retry,
    }
}

/// What a consumer-protocol member does after a failed ConsumerGroupHeartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerBeatFailure {
    /// Fenced epoch or forgotten member: every partition is lost without a commit (those being
    /// revoked too); join again with epoch 0.
    LoseAll,
    /// Another process holds this static member's instance id: stop for good.
    Fenced,
    /// The broker still counts the instance id's previous holder (a killed worker, until its
    /// session times out): beat again; `suspicious` once that has lasted longer than a
    /// predecessor's session could, when another process probably uses the same id.
    Unreleased { suspicious: bool },
    /// The group or broker refuses this member (no KIP-848, authorization, assignor, …).
    Refused,
    /// An outage or a moving coordinator: beat again, in full.
    Retry,
}

/// Beyond twice the broker's default session (45 s), an instance id still held is probably
/// held by another live process, not by a killed predecessor.
pub const UNRELEASED_SUSPICIOUS_AFTER: Duration = Duration::from_secs(90);

/// The consumer protocol's answer to a failed heartbeat. `unsupported`: the broker does not
/// speak the call at all; `unreleased_since`: when the instance id was first found held since
/// the last accepted heartbeat (set here; the member clears it when a heartbeat is accepted).
pub fn after_consumer_heartbeat_failure(
    code: Option<ResponseError>,
    unsupported: bool,
    unreleased_since: &mut Option<Instant>,
    now: Instant,
) -> ConsumerBeatFailure {
    match code {
        Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
            ConsumerBeatFailure::LoseAll
        }
        Some(ResponseError::FencedInstanceId) => ConsumerBeatFailure::Fenced,
        Some(ResponseError::UnreleasedInstanceId) => {
            let since = *unreleased_since.get_or_insert(now);
            ConsumerBeatFailure::Unreleased {
                suspicious: now.duration_since(since) > UNRELEASED_SUSPICIOUS_AFTER,
            }
        }
        Some(
            ResponseError::GroupAuthorizationFailed
            | ResponseError::GroupMaxSizeReached
            | ResponseError::UnsupportedAssignor
            | ResponseError::InvalidRequest
            | ResponseError::InconsistentGroupProtocol
            | ResponseError::GroupIdNotFound
            | ResponseError::UnsupportedVersion,
        ) => ConsumerBeatFailure::Refused,
        _ if unsupported => ConsumerBeatFailure::Refused,
        _ => ConsumerBeatFailure::Retry,
    }
}

/// The next step of a consumer-protocol member towards its assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// It holds what it was given.
    Steady,
    /// Give these up first (finish, commit), before taking anything: a partition must leave
    /// its old owner before the broker hands it to the next.
    Revoke(Vec<i32>),
    /// Then take these.
    Take(Vec<i32>),
}

/// Revoke first, then take: what `owned` must do to become `target`.
pub fn next_move(owned: &BTreeSet<i32>, target: &BTreeSet<i32>) -> Move {
    let revoke: Vec<i32> = owned.difference(target).copied().collect();
    if !revoke.is_empty() {
        return Move::Revoke(revoke);
    }
    let take: Vec<i32> = target.difference(owned).copied().collect();
    if !take.is_empty() {
        return Move::Take(take);
    }
    Move::Steady
}

/// What the next ConsumerGroupHeartbeat carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatShape {
    /// Everything the member is (subscription, rebalance timeout, assignor, owned partitions).
    pub full: bool,
    /// The owned partitions, also in a partial beat: an acknowledgement of a reconciled
    /// assignment.
    pub owned: bool,
}

/// The shape of the next heartbeat: in full when joining (epoch 0) or after any failure (a
/// lost answer may have moved the epoch on, and the broker accepts the previous epoch only
/// from a full request); naming the owned partitions when acknowledging.
pub fn beat_shape(epoch: i32, after_failure: bool, acknowledge: bool) -> BeatShape {
    let full = epoch == 0 || after_failure;
    BeatShape {
        full,
        owned: full || acknowledge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[i32]) -> BTreeSet<i32> {
        ps.iter().copied().collect()
    }

    #[test]
    fn a_classic_join_that_meets_a_moving_group_joins_the_next_round() {
        assert_eq!(
            after_join_failure(Some(ResponseError::RebalanceInProgress)),
            JoinFailure::NextRound
        );
        assert_eq!(
            after_join_failure(Some(ResponseError::IllegalGeneration)),
            JoinFailure::NextRound
        );
        assert_eq!(
            after_join_failure(Some(ResponseError::UnknownMemberId)),
            JoinFailure::Forget
        );
        assert_eq!(
            after_join_failure(Some(ResponseError::FencedInstanceId)),
            JoinFailure::Fenced
        );
        for refusal in [
            ResponseError::InconsistentGroupProtocol,
            ResponseError::GroupAuthorizationFailed,
            ResponseError::InvalidSessionTimeout,
            ResponseError::GroupMaxSizeReached,
            ResponseError::InvalidGroupId,
        ] {
            assert_eq!(after_join_failure(Some(refusal)), JoinFailure::Refused);
        }
        assert_eq!(after_join_failure(None), JoinFailure::Retry);
        assert_eq!(
            after_join_failure(Some(ResponseError::CoordinatorNotAvailable)),
            JoinFailure::Retry
        );
    }

    /// A lost heartbeat answer (an outage, a moving coordinator) ends nothing: the member keeps
    /// its partitions until the coordinator says otherwise.
    #[test]
    fn a_lost_classic_heartbeat_keeps_the_generation() {
        assert_eq!(after_heartbeat_failure(None), BeatFailure::Retry);
        assert_eq!(
            after_heartbeat_failure(Some(ResponseError::NotCoordinator)),
            BeatFailure::Retry
        );
        assert_eq!(
            after_heartbeat_failure(Some(ResponseError::RebalanceInProgress)),
            BeatFailure::Rebalance
        );
        assert_eq!(
            after_heartbeat_failure(Some(ResponseError::IllegalGeneration)),
            BeatFailure::Lost {
                forget_member_id: false
            }
        );
        assert_eq!(
            after_heartbeat_failure(Some(ResponseError::UnknownMemberId)),
            BeatFailure::Lost {
                forget_member_id: true
            }
        );
        assert_eq!(
            after_heartbeat_failure(Some(ResponseError::FencedInstanceId)),
            BeatFailure::Fenced
        );
    }

    /// Fencing during a revoke loses everything, the partitions being revoked too.
    #[test]
    fn a_fenced_epoch_loses_every_partition() {
        let mut since = None;
        let now = Instant::now();
        for code in [
            ResponseError::FencedMemberEpoch,
            ResponseError::UnknownMemberId,
        ] {
            assert_eq!(
                after_consumer_heartbeat_failure(Some(code), false, &mut since, now),
                ConsumerBeatFailure::LoseAll
            );
        }
        assert_eq!(
            after_consumer_heartbeat_failure(
                Some(ResponseError::FencedInstanceId),
                false,
                &mut since,
                now
            ),
            ConsumerBeatFailure::Fenced
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreleased_instance_id_is_waited_for_and_suspected_after_twice_a_session() {
        let mut since = None;
        let unreleased = |since: &mut Option<Instant>| {
            after_consumer_heartbeat_failure(
                Some(ResponseError::UnreleasedInstanceId),
                false,
                since,
                Instant::now(),
            )
        };
        assert_eq!(
            unreleased(&mut since),
            ConsumerBeatFailure::Unreleased { suspicious: false }
        );
        tokio::time::advance(UNRELEASED_SUSPICIOUS_AFTER).await;
        assert_eq!(
            unreleased(&mut since),
            ConsumerBeatFailure::Unreleased { suspicious: false }
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            unreleased(&mut since),
            ConsumerBeatFailure::Unreleased { suspicious: true }
        );
        // An outage in between does not restart the count: the id is still held.
        after_consumer_heartbeat_failure(None, false, &mut since, Instant::now());
        assert_eq!(
            unreleased(&mut since),
            ConsumerBeatFailure::Unreleased { suspicious: true }
        );
    }

    #[test]
    fn a_broker_without_the_consumer_protocol_refuses_for_good() {
        let mut since = None;
        let now = Instant::now();
        assert_eq!(
            after_consumer_heartbeat_failure(None, true, &mut since, now),
            ConsumerBeatFailure::Refused
        );
        assert_eq!(
            after_consumer_heartbeat_failure(
                Some(ResponseError::UnsupportedVersion),
                false,
                &mut since,
                now
            ),
            ConsumerBeatFailure::Refused
        );
        assert_eq!(
            after_consumer_heartbeat_failure(None, false, &mut since, now),
            ConsumerBeatFailure::Retry
        );
    }

    #[test]
    fn a_new_assignment_revokes_before_it_takes() {
        assert_eq!(
            next_move(&set(&[0, 1, 2]), &set(&[1, 2, 3])),
            Move::Revoke(vec![0])
        );
        assert_eq!(
            next_move(&set(&[1, 2]), &set(&[1, 2, 3])),
            Move::Take(vec![3])
        );
        assert_eq!(next_move(&set(&[1, 2]), &set(&[1, 2])), Move::Steady);
        assert_eq!(next_move(&set(&[]), &set(&[])), Move::Steady);
        assert_eq!(next_move(&set(&[4]), &set(&[])), Move::Revoke(vec![4]));
    }

    /// After a failed heartbeat (its answer may have been lost after the broker moved the
    /// epoch on) the next goes out in full, naming the owned partitions.
    #[test]
    fn a_beat_after_a_failure_goes_out_in_full() {
        assert_eq!(
            beat_shape(7, true, false),
            BeatShape {
                full: true,
                owned: true
            }
        );
        assert_eq!(
            beat_shape(0, false, false),
            BeatShape {
                full: true,
                owned: true
            }
        );
        assert_eq!(
            beat_shape(7, false, true),
            BeatShape {
                full: false,
                owned: true
            }
        );
        assert_eq!(
            beat_shape(7, false, false),
            BeatShape {
                full: false,
                owned: false
            }
        );
    }
}
