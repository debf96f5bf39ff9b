//! The classic group protocol's calls to the coordinator: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, on the coordinator client's connection and retry rules. Versions are
//! negotiated: JoinGroup 4+ (the MEMBER_ID_REQUIRED round trip of KIP-394), and for a static
//! member JoinGroup 5+, SyncGroup and Heartbeat 3+ (the `group_instance_id` field).

use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
    join_group_request::JoinGroupRequestProtocol, leave_group_request::MemberIdentity,
    sync_group_request::SyncGroupRequestAssignment,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::coordinator::{CoordinatorError, Generation, GroupCoordinator};

const JOIN_GROUP_VERSIONS: RangeInclusive<i16> = 4..=9;
const SYNC_GROUP_VERSIONS: RangeInclusive<i16> = 0..=5;
const HEARTBEAT_VERSIONS: RangeInclusive<i16> = 0..=4;
const LEAVE_GROUP_VERSIONS: RangeInclusive<i16> = 0..=5;
/// The embedded protocol every consumer group member speaks.
pub const PROTOCOL_TYPE: &str = "consumer";
/// Beyond the rebalance timeout, how long a JoinGroup may take (Java's `JOIN_GROUP_TIMEOUT_LAPSE`).
const JOIN_LAPSE: Duration = Duration::from_secs(5);

/// What JoinGroup answered: the new generation, and for the leader every member.
#[derive(Debug, Clone)]
pub struct Joined {
    /// This member in the new generation.
    pub generation: Generation,
    /// The member id of the leader, who computes the assignment.
    pub leader: String,
    /// The protocol (assignor) the coordinator chose.
    pub protocol: String,
    /// For the leader: every member's id, instance id and subscription bytes; else empty.
    pub members: Vec<JoinedMember>,
    /// A static leader rejoining a stable group must not assign again (KIP-814).
    pub skip_assignment: bool,
}

/// One member of the group, as the leader learns of it.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// The id the group gave it: what the assignment is keyed by.
    pub member_id: String,
    /// A static member's instance id: assignors keep partitions with it across restarts.
    pub instance_id: Option<String>,
    /// Its subscription (embedded protocol, version-prefixed).
    pub metadata: Bytes,
}

/// What a member says when it joins.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    /// Empty on the first join; the member id the group gave, on a rejoin.
    pub member_id: &'a str,
    /// A static member's instance id (`<prefix>-<worker index>`); `None` for a dynamic one.
    pub instance_id: Option<&'a str>,
    /// Without a heartbeat for this long, the group drops the member.
    pub session_timeout: Duration,
    /// How long a rebalance waits for this member to give its partitions up and rejoin.
    pub rebalance_timeout: Duration,
    /// (protocol name, subscription bytes), most preferred first.
    pub protocols: &'a [(String, Bytes)],
    /// Why, for the broker's log (v8+).
    pub reason: &'a str,
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl GroupCoordinator {
    /// JoinGroup until the coordinator answers with a generation (the MEMBER_ID_REQUIRED round
    /// trip included). Waits up to the rebalance timeout for the rest of the group.
    pub async fn join(&mut self, r: &JoinRequest<'_>) -> Result<Joined, CoordinatorError> {
        let mut member_id = r.member_id.to_owned();
        loop {
            match self.join_once(r, &member_id).await {
                Ok(joined) => return Ok(joined),
                Err(JoinAttempt::MemberIdRequired(assigned)) => {
                    tracing::debug!(group = %self.group(), member_id = %assigned, "joining with the member id the coordinator gave");
                    member_id = assigned;
                }
                Err(JoinAttempt::Failed(e)) => return Err(e),
            }
        }
    }

    async fn join_once(
        &mut self,
        r: &JoinRequest<'_>,
        member_id: &str,
    ) -> Result<Joined, JoinAttempt> {
        let budget =
            r.rebalance_timeout + JOIN_LAPSE + crate::kafka::coordinator::DEFAULT_RETRY_BUDGET;
        let group = self.group().to_owned();
        let min = if r.instance_id.is_some() {
            5
        } else {
            *JOIN_GROUP_VERSIONS.start()
        };
        let outcome = self
            .retrying_within("JoinGroup", budget, async |this: &mut Self| {
                this.exchange(
                    ApiKey::JoinGroup,
                    "JoinGroup",
                    min..=*JOIN_GROUP_VERSIONS.end(),
                    |version| join_request(&group, r, member_id, version),
                    |response, answered| {
                        if response.error_code == ResponseError::MemberIdRequired.code() {
                            return Ok(Err(response.member_id.to_string()));
                        }
                        answered.check(response.error_code)?;
                        Ok(Ok(Joined {
                            generation: Generation {
                                id: response.generation_id,
                                member_id: response.member_id.to_string(),
                                instance_id: r.instance_id.map(str::to_owned),
                            },
                            leader: response.leader.to_string(),
                            protocol: response
                                .protocol_name
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            members: response
                                .members
                                .into_iter()
                                .map(|m| JoinedMember {
                                    member_id: m.member_id.to_string(),
                                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                                    metadata: m.metadata,
                                })
                                .collect(),
                            skip_assignment: response.skip_assignment,
                        }))
                    },
                )
                .await
            })
            .await
            .map_err(JoinAttempt::Failed)?;
        outcome.map_err(JoinAttempt::MemberIdRequired)
    }

    /// SyncGroup: the leader sends every member's assignment, a follower none; each gets its
    /// own back (embedded protocol bytes).
    pub async fn sync(
        &mut self,
        generation: &Generation,
        protocol: &str,
        assignments: Vec<(String, Bytes)>,
        rebalance_timeout: Duration,
    ) -> Result<Bytes, CoordinatorError> {
        let budget =
            rebalance_timeout + JOIN_LAPSE + crate::kafka::coordinator::DEFAULT_RETRY_BUDGET;
        let group = self.group().to_owned();
        let min = if generation.instance_id.is_some() {
            3
        } else {
            *SYNC_GROUP_VERSIONS.start()
        };
        self.retrying_within("SyncGroup", budget, async |this: &mut Self| {
            this.exchange(
                ApiKey::SyncGroup,
                "SyncGroup",
                min..=*SYNC_GROUP_VERSIONS.end(),
                |version| {
                    let mut request = SyncGroupRequest::default()
                        .with_group_id(GroupId(str_bytes(&group)))
                        .with_generation_id(generation.id)
                        .with_member_id(str_bytes(&generation.member_id))
                        .with_assignments(
                            assignments
                                .iter()
                                .map(|(member, bytes)| {
                                    SyncGroupRequestAssignment::default()
                                        .with_member_id(str_bytes(member))
                                        .with_assignment(bytes.clone())
                                })
                                .collect(),
                        );
                    if version >= 3 {
                        request = request.with_group_instance_id(
                            generation.instance_id.as_deref().map(str_bytes),
                        );
                    }
                    if version >= 5 {
                        request = request
                            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                            .with_protocol_name(Some(str_bytes(protocol)));
                    }
                    request
                },
                |response, answered| {
                    answered.check(response.error_code)?;
                    Ok(response.assignment)
                },
            )
            .await
        })
        .await
    }

    /// Heartbeat: the member is alive; the answer says whether the group rebalances.
    pub async fn heartbeat(
        &mut self,
        generation: &Generation,
        budget: Duration,
    ) -> Result<(), CoordinatorError> {
        let group = self.group().to_owned();
        let min = if generation.instance_id.is_some() {
            3
        } else {
            *HEARTBEAT_VERSIONS.start()
        };
        self.retrying_within("Heartbeat", budget, async |this: &mut Self| {
            this.exchange(
                ApiKey::Heartbeat,
                "Heartbeat",
                min..=*HEARTBEAT_VERSIONS.end(),
                |version| {
                    let request = HeartbeatRequest::default()
                        .with_group_id(GroupId(str_bytes(&group)))
                        .with_generation_id(generation.id)
                        .with_member_id(str_bytes(&generation.member_id));
                    if version < 3 {
                        return request;
                    }
                    request.with_group_instance_id(generation.instance_id.as_deref().map(str_bytes))
                },
                |response, answered| answered.check(response.error_code),
            )
            .await
        })
        .await
    }

    /// LeaveGroup for members: by member id (a dynamic member stopping), or by instance id (a
    /// static member retired for good, which otherwise keeps its partitions until its session
    /// times out). v3+ takes the members as a list.
    pub async fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        reason: &str,
    ) -> Result<(), CoordinatorError> {
        let group = self.group().to_owned();
        let min = if instance_id.is_some() {
            3
        } else {
            *LEAVE_GROUP_VERSIONS.start()
        };
        self.retrying("LeaveGroup", async |this: &mut Self| {
            this.exchange(
                ApiKey::LeaveGroup,
                "LeaveGroup",
                min..=*LEAVE_GROUP_VERSIONS.end(),
                |version| {
                    let request =
                        LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(&group)));
                    if version < 3 {
                        return request.with_member_id(str_bytes(member_id));
                    }
                    let mut member = MemberIdentity::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance_id.map(str_bytes));
                    if version >= 5 {
                        member = member.with_reason(Some(str_bytes(reason)));
                    }
                    request.with_members(vec![member])
                },
                |response, answered| {
                    let code = if response.error_code != 0 {
                        response.error_code
                    } else {
                        response
                            .members
                            .iter()
                            .map(|m| m.error_code)
                            .find(|c| *c != 0)
                            .unwrap_or(0)
                    };
                    // A member the group no longer knows has left already.
                    if code == ResponseError::UnknownMemberId.code() {
                        return Ok(());
                    }
                    answered.check(code)
                },
            )
            .await
        })
        .await
    }
}

/// JoinGroup as `member_id`, in the layout of `version` (v5+ carries the instance id, v8+ the
/// reason).
fn join_request(
    group: &str,
    r: &JoinRequest<'_>,
    member_id: &str,
    version: i16,
) -> JoinGroupRequest {
    let mut request = JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_session_timeout_ms(millis(r.session_timeout))
        .with_rebalance_timeout_ms(millis(r.rebalance_timeout))
        .with_member_id(str_bytes(member_id))
        .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
        .with_protocols(
            r.protocols
                .iter()
                .map(|(name, metadata)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(str_bytes(name))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    if version >= 5 {
        request = request.with_group_instance_id(r.instance_id.map(str_bytes));
    }
    if version >= 8 {
        request = request.with_reason(Some(str_bytes(r.reason)));
    }
    request
}

/// One JoinGroup's outcome, before the MEMBER_ID_REQUIRED round trip is done.
enum JoinAttempt {
    MemberIdRequired(String),
    Failed(CoordinatorError),
}
