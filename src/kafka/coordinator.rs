//! Committed offsets in the consumer group, through the group coordinator (FindCoordinator,
//! OffsetFetch, OffsetCommit). rskafka has no group APIs and keeps its connections private, so
//! this client speaks the Kafka protocol itself over its own connections, with the
//! `kafka-protocol` crate as codec.
//!
//! Commits are "simple consumer" commits (generation -1, no member id): partitions are owned by
//! worker index, not by group membership. Positions and lag then show in Kafka's own tooling
//! (`kafka-consumer-groups --describe`). Kafka rejects such commits while the group has live
//! members (e.g. aiokafka consumers of the same group id): that needs group mode.
//!
//! Versions are negotiated per connection with ApiVersions: the highest version both sides speak.
//! Kafka 4.x removed OffsetCommit v0–1 and OffsetFetch v0, which we never send.
//!
//! Every call to the coordinator, here and in the group member's and the transactions' modules,
//! goes through one step, [`GroupCoordinator::exchange`], so that all of them connect, choose
//! their version and fail alike; each call only builds its request and reads its answer.
//!
//! Every call is bounded in time by the retry budget, connecting and waiting included: the
//! worker commits from its event loop, which must keep proving liveness to the supervisor while
//! the coordinator moves or is unreachable; a failed commit is simply retried next interval.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    },
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::time::Instant;

use crate::backoff::Backoff;

use super::security::{BrokerAuth, SecurityError};
use super::wire::{BrokerConnection, UnsupportedVersion, WireError, error_name};

/// Versions this client can build and read, per API. FindCoordinator v4+ batches keys;
/// OffsetFetch v8+ batches groups; both shapes are handled below.
const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=6;
const OFFSET_FETCH_VERSIONS: RangeInclusive<i16> = 1..=9;
const OFFSET_COMMIT_VERSIONS: RangeInclusive<i16> = 2..=9;
/// `key_type` of FindCoordinator for a consumer group.
const GROUP_KEY_TYPE: i8 = 0;
/// `key_type` of FindCoordinator for a transactional id.
const TRANSACTION_KEY_TYPE: i8 = 1;
/// How long a call waits before asking again when the previous transaction of its
/// transactional id is still being completed (its markers written): Java's client waits 20 ms.
const CONCURRENT_TRANSACTIONS_PAUSE: Duration = Duration::from_millis(10);
/// How long one call keeps trying by default (connecting, re-finding a moving coordinator,
/// waiting for a loading one) before it reports failure. Well under the supervisor's default
/// 30 s worker timeout: a commit runs on the worker's event loop.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Why a call to the group (or transaction) coordinator failed; each names the group, so a
/// log line says which consumer group could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// No bootstrap broker answered FindCoordinator: Kafka is down or unreachable.
    #[error("group {group}: no broker of {bootstrap:?} answered: {cause}")]
    Unreachable {
        /// The consumer group asked for.
        group: String,
        /// The brokers tried.
        bootstrap: Vec<String>,
        /// The last broker's failure.
        cause: String,
    },
    /// The coordinator answered with a Kafka error code: what it means decides whether to
    /// retry, rejoin or stop ([`CoordinatorError::kafka_code`]).
    #[error("group {group}: {api} failed with Kafka error {code} ({name}){context}")]
    Kafka {
        /// The consumer group.
        group: String,
        /// The call that failed.
        api: &'static str,
        /// Kafka's error code.
        code: i16,
        /// Its name, for the log.
        name: String,
        /// What the broker or the call added (a message, the partition), or empty.
        context: String,
    },
    /// The exchange itself failed: the connection broke, or the answer was not what the call
    /// needs.
    #[error("group {group}: {api} to {broker}: {cause}")]
    Protocol {
        /// The consumer group.
        group: String,
        /// The call.
        api: &'static str,
        /// The broker it went to.
        broker: String,
        /// What went wrong.
        cause: String,
    },
    /// The request could not be encoded for the version the broker speaks (a bug, or a value
    /// the version cannot carry).
    #[error("group {group}: cannot write {api} for {broker}: {cause}")]
    Encode {
        /// The consumer group.
        group: String,
        /// The call.
        api: &'static str,
        /// The broker it was for.
        broker: String,
        /// The codec's words.
        cause: String,
    },
    /// Broker and client share no version of the call: no retry helps.
    #[error("group {group}: {source}{remedy}")]
    Unsupported {
        /// The consumer group.
        group: String,
        /// The versions each side speaks.
        #[source]
        source: UnsupportedVersion,
        /// What an operator can change, when the call knows it (`with_remedy`): appended to
        /// the message as it is; empty otherwise.
        remedy: &'static str,
    },
    /// The connection cannot be secured as configured: credentials, certificates, protocol.
    #[error("group {group}: {source}")]
    Security {
        /// The consumer group.
        group: String,
        /// What TLS or SASL refused.
        #[source]
        source: SecurityError,
    },
    /// Retrying the call did not succeed within its budget; the caller decides what next.
    #[error("group {group}: {api} gave up after {budget:?}: {last}")]
    OutOfTime {
        /// The consumer group.
        group: String,
        /// The call.
        api: &'static str,
        /// How long it was retried.
        budget: Duration,
        /// The last attempt's failure.
        last: Box<CoordinatorError>,
    },
}

impl CoordinatorError {
    /// Whether trying again (after finding the coordinator anew) can succeed.
    fn retriable(&self) -> bool {
        match self {
            CoordinatorError::Kafka { code, .. } => matches!(
                ResponseError::try_from_code(*code),
                Some(
                    ResponseError::CoordinatorLoadInProgress
                        | ResponseError::CoordinatorNotAvailable
                        | ResponseError::NotCoordinator
                        | ResponseError::RequestTimedOut
                        | ResponseError::NetworkException
                        | ResponseError::UnstableOffsetCommit
                        // The previous transaction's markers are still being written.
                        | ResponseError::ConcurrentTransactions
                )
            ),
            CoordinatorError::Unreachable { .. } | CoordinatorError::Protocol { .. } => true,
            // A broker shutting down hangs up like one that speaks another protocol; the
            // protocol was checked when the worker connected first (`client::connect`).
            CoordinatorError::Security {
                source: SecurityError::ClosedEarly { .. },
                ..
            } => true,
            CoordinatorError::Encode { .. }
            | CoordinatorError::Security { .. }
            | CoordinatorError::Unsupported { .. }
            | CoordinatorError::OutOfTime { .. } => false,
        }
    }

    /// Whether asking again later can succeed: the coordinator was unreachable, moving or
    /// loading, also when the retry budget ran out on such an error. Not: a refused
    /// authorization, an invalid group, versions neither side speaks.
    pub fn is_transient(&self) -> bool {
        match self {
            CoordinatorError::OutOfTime { last, .. } => last.is_transient(),
            other => other.retriable(),
        }
    }

    /// The Kafka error code, if Kafka answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            CoordinatorError::Kafka { code, .. } => Some(*code),
            CoordinatorError::OutOfTime { last, .. } => last.kafka_code(),
            _ => None,
        }
    }

    /// This error with `remedy` added to its message when it says the broker does not speak
    /// the call (no version in common, or UNSUPPORTED_VERSION in the answer): a call that
    /// needs a broker feature knows what an operator can change, the version numbers alone
    /// do not say it. Kind and code stay as they are, so the error is handled as before.
    pub(crate) fn with_remedy(self, remedy: &'static str) -> CoordinatorError {
        match self {
            CoordinatorError::Unsupported { group, source, .. } => CoordinatorError::Unsupported {
                group,
                source,
                remedy,
            },
            CoordinatorError::Kafka {
                group,
                api,
                code,
                name,
                context,
            } if code == ResponseError::UnsupportedVersion.code() => CoordinatorError::Kafka {
                group,
                api,
                code,
                name,
                context: format!("{context}{remedy}"),
            },
            other => other,
        }
    }
}

/// OffsetFetch for one group's partitions of one topic, in the layout of `version` (v8+ batches
/// groups).
fn offset_fetch_request(
    group: &str,
    topic: &str,
    partitions: &[i32],
    version: i16,
) -> OffsetFetchRequest {
    let group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let topic_name = TopicName(StrBytes::from_string(topic.to_owned()));
    if version >= 8 {
        // The v1-7 `topics` stays at its default (an empty list): kafka-protocol refuses to
        // encode anything else, even null, in v8+.
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name)
                        .with_partition_indexes(partitions.to_vec()),
                ])),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name)
                    .with_partition_indexes(partitions.to_vec()),
            ]))
    }
}

/// One partition's answer to OffsetFetch: (partition, committed offset or -1, error code).
type PartitionOffset = (i32, i64, i16);

/// The group's error code and the partition answers of `topic`, whichever layout `version`
/// has; `None` when a v8+ answer does not mention the group.
fn offset_fetch_answers(
    response: kafka_protocol::messages::OffsetFetchResponse,
    group: &str,
    topic: &str,
    version: i16,
) -> Option<(i16, Vec<PartitionOffset>)> {
    if version < 8 {
        let answers = response
            .topics
            .into_iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            .collect();
        return Some((response.error_code, answers));
    }
    let g = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)?;
    let answers = g
        .topics
        .into_iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .map(|p| (p.partition_index, p.committed_offset, p.error_code))
        .collect();
    Some((g.error_code, answers))
}

/// A member's identity in one generation of the group: commits carry it, and the broker
/// accepts them only from the current generation's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation id; -1 for a "simple consumer" that is no member.
    pub id: i32,
    /// The member id the coordinator gave; empty for a simple consumer.
    pub member_id: String,
    /// The static member's instance id, if it is one.
    pub instance_id: Option<String>,
}

impl Generation {
    /// No member of the group: commits as a "simple consumer" (accepted only while the group
    /// has no members).
    pub fn simple() -> Generation {
        Generation {
            id: -1,
            member_id: String::new(),
            instance_id: None,
        }
    }
}

/// Client of one consumer group's coordinator.
#[derive(Debug)]
pub struct GroupCoordinator {
    /// Brokers asked where the coordinator is.
    bootstrap: Vec<String>,
    /// The consumer group (`group_id`).
    group: String,
    /// What the coordinator is found for: the group, or a transactional id.
    key: String,
    /// FindCoordinator's `key_type` of `key`.
    key_type: i8,
    /// Sent with every request.
    client_id: String,
    /// The connection to the current coordinator; dropped whenever it fails or the coordinator
    /// moves, and found anew through a bootstrap broker on the next call.
    coordinator: Option<BrokerConnection>,
    /// Upper bound on the duration of one call, retries included.
    retry_budget: Duration,
    /// TLS and SASL of the consumer side.
    auth: BrokerAuth,
}

impl GroupCoordinator {
    /// A client of `group`'s coordinator, found through the `bootstrap` brokers on first use.
    pub fn new(
        bootstrap: Vec<String>,
        group: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        let group = group.into();
        GroupCoordinator {
            bootstrap,
            key: group.clone(),
            key_type: GROUP_KEY_TYPE,
            group,
            client_id: client_id.into(),
            coordinator: None,
            retry_budget: DEFAULT_RETRY_BUDGET,
            auth: BrokerAuth::plaintext(),
        }
    }

    /// A client of the transaction coordinator of `transactional_id` instead (the group's
    /// worker's: errors name the group).
    pub fn for_transactions(mut self, transactional_id: impl Into<String>) -> Self {
        self.key = transactional_id.into();
        self.key_type = TRANSACTION_KEY_TYPE;
        self.coordinator = None;
        self
    }

    /// Connects as `auth` says (default: plaintext).
    pub fn with_auth(mut self, auth: BrokerAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Bounds each call (default `DEFAULT_RETRY_BUDGET` (10 s)).
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The consumer group this client serves (named in every error).
    pub fn group(&self) -> &str {
        &self.group
    }

    fn kafka_error(&self, api: &'static str, code: i16, context: String) -> CoordinatorError {
        CoordinatorError::Kafka {
            group: self.group.clone(),
            api,
            code,
            name: error_name(code),
            context,
        }
    }

    fn wire_error(&self, api: &'static str, broker: &str, e: WireError) -> CoordinatorError {
        let (group, broker, cause) = (self.group.clone(), broker.to_owned(), e.to_string());
        match e {
            WireError::Security(source) => CoordinatorError::Security { group, source },
            WireError::Encode(_) => CoordinatorError::Encode {
                group,
                api,
                broker,
                cause,
            },
            WireError::Io(_) | WireError::Codec(_) => CoordinatorError::Protocol {
                group,
                api,
                broker,
                cause,
            },
        }
    }

    /// Asks the bootstrap brokers, in turn, where the group's coordinator is.
    async fn find(&self) -> Result<String, CoordinatorError> {
        let mut last = String::from("no bootstrap server configured");
        for broker in &self.bootstrap {
            let mut conn = match BrokerConnection::open(broker, &self.client_id, &self.auth).await {
                Ok(c) => c,
                Err(WireError::Security(source)) => {
                    return Err(CoordinatorError::Security {
                        group: self.group.clone(),
                        source,
                    });
                }
                Err(e) => {
                    last = format!("{broker}: {e}");
                    continue;
                }
            };
            let version = conn
                .version(
                    ApiKey::FindCoordinator,
                    "FindCoordinator",
                    FIND_COORDINATOR_VERSIONS,
                )
                .map_err(|source| CoordinatorError::Unsupported {
                    group: self.group.clone(),
                    source,
                    remedy: "",
                })?;
            let key = StrBytes::from_string(self.key.clone());
            let request = if version >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
            } else {
                FindCoordinatorRequest::default().with_key(key)
            };
            let request = match version {
                1.. => request.with_key_type(self.key_type),
                // v0 knows groups only.
                _ if self.key_type != GROUP_KEY_TYPE => {
                    return Err(CoordinatorError::Unsupported {
                        group: self.group.clone(),
                        source: UnsupportedVersion {
                            api: "FindCoordinator",
                            broker: broker.clone(),
                            broker_min: 0,
                            broker_max: 0,
                            ours: 1..=*FIND_COORDINATOR_VERSIONS.end(),
                        },
                        remedy: "",
                    });
                }
                _ => request,
            };
            let r = match conn.call(&request, version).await {
                Ok(r) => r,
                Err(e @ WireError::Encode(_)) => {
                    return Err(self.wire_error("FindCoordinator", broker, e));
                }
                Err(e) => {
                    last = format!("{broker}: {e}");
                    continue;
                }
            };
            let (code, host, port) = if version >= 4 {
                match r.coordinators.first() {
                    Some(c) => (c.error_code, c.host.to_string(), c.port),
                    None => {
                        last = format!("{broker}: FindCoordinator answered no coordinator");
                        continue;
                    }
                }
            } else {
                (r.error_code, r.host.to_string(), r.port)
            };
            if code != 0 {
                return Err(self.kafka_error("FindCoordinator", code, String::new()));
            }
            return Ok(format!("{host}:{port}"));
        }
        Err(CoordinatorError::Unreachable {
            group: self.group.clone(),
            bootstrap: self.bootstrap.clone(),
            cause: last,
        })
    }

    /// The open connection to the coordinator, finding and opening it if needed.
    async fn connection(&mut self) -> Result<&mut BrokerConnection, CoordinatorError> {
        if self.coordinator.is_none() {
            let broker = self.find().await?;
            let conn = BrokerConnection::open(&broker, &self.client_id, &self.auth)
                .await
                .map_err(|e| match e {
                    WireError::Security(source) => CoordinatorError::Security {
                        group: self.group.clone(),
                        source,
                    },
                    e => CoordinatorError::Unreachable {
                        group: self.group.clone(),
                        bootstrap: vec![broker.clone()],
                        cause: e.to_string(),
                    },
                })?;
            self.coordinator = Some(conn);
        }
        Ok(self.coordinator.as_mut().expect("set above"))
    }

    /// One request to the coordinator and its answer read, the one way every call goes: in
    /// the highest version of `api` both sides speak (at most `ours`; none in common fails as
    /// `Unsupported`), with `request(version)` built for that version, and `read` making sense
    /// of the answer (its error codes through [`Answered::fail`]). A broken connection fails
    /// as the call's wire error; the caller's retry loop decides what to do then.
    pub(crate) async fn exchange<R: Request, T>(
        &mut self,
        api: ApiKey,
        name: &'static str,
        ours: RangeInclusive<i16>,
        request: impl FnOnce(i16) -> R,
        read: impl FnOnce(R::Response, &Answered<'_>) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let group = self.group.clone();
        let conn = self.connection().await?;
        let version =
            conn.version(api, name, ours)
                .map_err(|source| CoordinatorError::Unsupported {
                    group,
                    source,
                    remedy: "",
                })?;
        let broker = conn.broker().to_owned();
        let response = conn.call(&request(version), version).await;
        let response = response.map_err(|e| self.wire_error(name, &broker, e))?;
        let answered = Answered {
            coordinator: self,
            api: name,
            broker: &broker,
            version,
        };
        read(response, &answered)
    }

    /// Runs `op` until it succeeds, fails for good, or the retry budget is spent. A retriable
    /// failure drops the coordinator connection, so the next attempt finds the coordinator anew.
    pub(crate) async fn retrying<T>(
        &mut self,
        api: &'static str,
        op: impl AsyncFnMut(&mut Self) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let budget = self.retry_budget;
        self.retrying_within(api, budget, op).await
    }

    /// Like [`retrying`](Self::retrying) with a budget of its own: a JoinGroup waits for the
    /// whole group to rejoin, which may take the rebalance timeout.
    pub(crate) async fn retrying_within<T>(
        &mut self,
        api: &'static str,
        budget: Duration,
        mut op: impl AsyncFnMut(&mut Self) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let deadline = Instant::now() + budget;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let attempt = tokio::time::timeout_at(deadline, op(self)).await;
            let e = match attempt {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !e.retriable() => return Err(e),
                Ok(Err(e)) => e,
                Err(_) => CoordinatorError::Protocol {
                    group: self.group.clone(),
                    api,
                    broker: self.coordinator.as_ref().map_or_else(
                        || format!("{:?}", self.bootstrap),
                        |c| c.broker().to_owned(),
                    ),
                    cause: "no answer".into(),
                },
            };
            // The coordinator answered and is the right one, it only asks to wait: keep the
            // connection. A transaction's markers take milliseconds: ask again soon.
            let concurrent = e.kafka_code() == Some(ResponseError::ConcurrentTransactions.code());
            let still_right = concurrent
                || e.kafka_code().is_some_and(|c| {
                    c == ResponseError::UnstableOffsetCommit.code()
                        || c == ResponseError::CoordinatorLoadInProgress.code()
                });
            if !still_right {
                self.coordinator = None;
            }
            let pause = if concurrent {
                CONCURRENT_TRANSACTIONS_PAUSE
            } else {
                backoff.next_pause()
            };
            if Instant::now() + pause >= deadline {
                return Err(CoordinatorError::OutOfTime {
                    group: self.group.clone(),
                    api,
                    budget,
                    last: Box::new(e),
                });
            }
            tracing::debug!(group = %self.group, api, "coordinator call failed, retrying in {pause:?}: {e}");
            tokio::time::sleep(pause).await;
        }
    }

    /// Committed offsets of `partitions` of `topic`; `None` where the group has none.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, CoordinatorError> {
        let group = self.group.clone();
        self.retrying("OffsetFetch", async |this: &mut Self| {
            this.exchange(
                ApiKey::OffsetFetch,
                "OffsetFetch",
                OFFSET_FETCH_VERSIONS,
                // Stable offsets only (v7+): while a transaction that commits offsets of these
                // partitions is open, the broker answers UNSTABLE_OFFSET_COMMIT (retried)
                // instead of the offset before it, which a new owner would start from and so
                // answer requests that transaction answers too.
                |version| {
                    offset_fetch_request(&group, topic, partitions, version)
                        .with_require_stable(version >= 7)
                },
                |response, answered| {
                    let (group_code, answers) =
                        offset_fetch_answers(response, &group, topic, answered.version)
                            .ok_or_else(|| answered.malformed("no answer for the group"))?;
                    answered.check(group_code)?;
                    let mut out = HashMap::new();
                    for (partition, offset, code) in answers {
                        if code != 0 {
                            return Err(answered.fail(code, format!(" for {topic}/{partition}")));
                        }
                        out.insert(partition, (offset >= 0).then_some(offset));
                    }
                    Ok(out)
                },
            )
            .await
        })
        .await
    }

    /// Commits `offsets` (partition, next offset to consume) of `topic`.
    pub async fn commit(
        &mut self,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), CoordinatorError> {
        self.commit_as(topic, offsets, &Generation::simple()).await
    }

    /// Commits `offsets` of `topic` as the group member `generation` names (generation id,
    /// member id, instance id), which the broker checks against the group's current state.
    pub async fn commit_as(
        &mut self,
        topic: &str,
        offsets: &[(i32, i64)],
        generation: &Generation,
    ) -> Result<(), CoordinatorError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_generation_id_or_member_epoch(generation.id)
            .with_member_id(StrBytes::from_string(generation.member_id.clone()))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|&(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                            })
                            .collect(),
                    ),
            ]);
        self.retrying("OffsetCommit", async |this: &mut Self| {
            this.exchange(
                ApiKey::OffsetCommit,
                "OffsetCommit",
                OFFSET_COMMIT_VERSIONS,
                // The instance id goes with v7+ only (kafka-protocol refuses it below).
                |version| match &generation.instance_id {
                    Some(id) if version >= 7 => request
                        .clone()
                        .with_group_instance_id(Some(StrBytes::from_string(id.clone()))),
                    _ => request.clone(),
                },
                |response, answered| {
                    for t in response.topics {
                        for p in t.partitions {
                            if p.error_code != 0 {
                                let offset = offsets
                                    .iter()
                                    .find(|(q, _)| *q == p.partition_index)
                                    .map_or(-1, |(_, o)| *o);
                                return Err(answered.fail(
                                    p.error_code,
                                    format!(
                                        " for {topic}/{} at offset {offset}",
                                        p.partition_index
                                    ),
                                ));
                            }
                        }
                    }
                    Ok(())
                },
            )
            .await
        })
        .await
    }
}

/// What reading one answer of the coordinator needs besides the answer: the version it came
/// in (layouts differ), and the call and broker its errors name.
#[derive(Debug)]
pub(crate) struct Answered<'a> {
    /// Whose errors these are (they name its group).
    coordinator: &'a GroupCoordinator,
    /// The call's name, e.g. `OffsetCommit`.
    api: &'static str,
    /// host:port of the coordinator that answered.
    broker: &'a str,
    /// The version of the request and of its answer.
    pub version: i16,
}

impl Answered<'_> {
    /// The call failed with Kafka error `code`; `context` (e.g. ` for topic/3`) says where.
    pub fn fail(&self, code: i16, context: String) -> CoordinatorError {
        self.coordinator.kafka_error(self.api, code, context)
    }

    /// `Ok` for error code 0, else the call failed with Kafka error `code`.
    pub fn check(&self, code: i16) -> Result<(), CoordinatorError> {
        match code {
            0 => Ok(()),
            code => Err(self.fail(code, String::new())),
        }
    }

    /// As [`check`](Self::check), with the broker's message (the heartbeats of KIP-848 and
    /// KIP-932 explain their refusals) after the code.
    pub fn check_with_message(
        &self,
        code: i16,
        message: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        match code {
            0 => Ok(()),
            code => Err(self.fail(code, message.map(|m| format!(": {m}")).unwrap_or_default())),
        }
    }

    /// The answer lacks what the request asked for: a broken exchange, as a cut connection.
    pub fn malformed(&self, cause: &str) -> CoordinatorError {
        self.coordinator
            .wire_error(self.api, self.broker, WireError::Codec(cause.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an operator reads when the broker lacks KIP-848: Kafka 2.8 announces no version of
    /// ConsumerGroupHeartbeat, 3.x without the feature answers UNSUPPORTED_VERSION. Both say
    /// what to change, and stay errors that end the member at once.
    #[test]
    fn a_broker_without_the_consumer_protocol_is_explained() {
        let remedy = GroupCoordinator::CONSUMER_PROTOCOL_UNSUPPORTED;
        let explained = "(\"group_protocol\": \"consumer\" needs Kafka 4.0+, or on Kafka 3.7+ \
            the broker setting group.coordinator.rebalance.protocols=classic,consumer; without \
            that option the worker speaks the classic protocol, which every Kafka supports)";
        let none_in_common = CoordinatorError::Unsupported {
            group: "g".into(),
            source: UnsupportedVersion {
                api: "ConsumerGroupHeartbeat",
                broker: "k1:9092".into(),
                broker_min: -1,
                broker_max: -1,
                ours: 0..=1,
            },
            remedy: "",
        }
        .with_remedy(remedy);
        assert_eq!(
            none_in_common.to_string(),
            format!(
                "group g: broker k1:9092 speaks ConsumerGroupHeartbeat versions -1..=-1, this \
                 client 0..=1 {explained}"
            )
        );
        assert!(matches!(
            none_in_common,
            CoordinatorError::Unsupported { .. }
        ));
        assert!(!none_in_common.is_transient());

        let coordinator = GroupCoordinator::new(vec!["k1:9092".into()], "g", "test");
        let refused = coordinator
            .kafka_error(
                "ConsumerGroupHeartbeat",
                ResponseError::UnsupportedVersion.code(),
                ": The version of API is not supported.".into(),
            )
            .with_remedy(remedy);
        assert_eq!(
            refused.to_string(),
            format!(
                "group g: ConsumerGroupHeartbeat failed with Kafka error 35 \
                 (UnsupportedVersion): The version of API is not supported. {explained}"
            )
        );
        assert_eq!(
            refused.kafka_code(),
            Some(ResponseError::UnsupportedVersion.code())
        );
        assert!(!refused.is_transient());

        // Any other error is about something else: it goes as it was.
        let fenced = coordinator
            .kafka_error("ConsumerGroupHeartbeat", 110, ": stale epoch".into())
            .with_remedy(remedy);
        assert_eq!(
            fenced.to_string(),
            "group g: ConsumerGroupHeartbeat failed with Kafka error 110 (FencedMemberEpoch): \
             stale epoch"
        );
    }
}
