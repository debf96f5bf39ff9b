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
//! Every call is bounded in time by the retry budget, connecting and waiting included: the
//! worker commits from its event loop, which must keep proving liveness to the supervisor while
//! the coordinator moves or is unreachable; a failed commit is simply retried next interval.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FindCoordinatorRequest, GroupId, OffsetCommitRequest,
    OffsetFetchRequest, RequestHeader, ResponseHeader, TopicName,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    },
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Versions this client can build and read, per API. FindCoordinator v4+ batches keys;
/// OffsetFetch v8+ batches groups; both shapes are handled below.
const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> = 0..=6;
const OFFSET_FETCH_VERSIONS: RangeInclusive<i16> = 1..=9;
const OFFSET_COMMIT_VERSIONS: RangeInclusive<i16> = 2..=9;
/// ApiVersions v3 (Kafka 2.4+) is asked first; a broker that does not know it answers in v0.
const API_VERSIONS_VERSION: i16 = 3;
const API_VERSIONS_FALLBACK: i16 = 0;
/// `key_type` of FindCoordinator for a consumer group.
const GROUP_KEY_TYPE: i8 = 0;
/// How long one call keeps trying by default (connecting, re-finding a moving coordinator,
/// waiting for a loading one) before it reports failure. Well under the supervisor's default
/// 30 s worker timeout: a commit runs on the worker's event loop.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(10);
/// A response larger than this is a corrupt length prefix, not an answer.
const MAX_RESPONSE_BYTES: i32 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("group {group}: no broker of {bootstrap:?} answered: {cause}")]
    Unreachable {
        group: String,
        bootstrap: Vec<String>,
        cause: String,
    },
    #[error("group {group}: {api} failed with Kafka error {code} ({name}){context}")]
    Kafka {
        group: String,
        api: &'static str,
        code: i16,
        name: String,
        context: String,
    },
    #[error("group {group}: {api} to {broker}: {cause}")]
    Protocol {
        group: String,
        api: &'static str,
        broker: String,
        cause: String,
    },
    #[error("group {group}: cannot write {api} for {broker}: {cause}")]
    Encode {
        group: String,
        api: &'static str,
        broker: String,
        cause: String,
    },
    #[error(
        "group {group}: broker {broker} speaks {api} versions {broker_min}..={broker_max}, \
         this client {ours:?}"
    )]
    Unsupported {
        group: String,
        api: &'static str,
        broker: String,
        broker_min: i16,
        broker_max: i16,
        ours: RangeInclusive<i16>,
    },
    #[error("group {group}: {api} gave up after {budget:?}: {last}")]
    OutOfTime {
        group: String,
        api: &'static str,
        budget: Duration,
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
                )
            ),
            CoordinatorError::Unreachable { .. } | CoordinatorError::Protocol { .. } => true,
            CoordinatorError::Encode { .. }
            | CoordinatorError::Unsupported { .. }
            | CoordinatorError::OutOfTime { .. } => false,
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
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| "unknown".into())
}

/// What went wrong on one connection, before the group and API are known.
#[derive(Debug)]
enum WireError {
    Io(std::io::Error),
    /// The request cannot be written in the chosen version: a bug here, not a broker state.
    Encode(String),
    /// The answer is not what was asked for: the stream is broken; a fresh one may do.
    Codec(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Encode(e) | WireError::Codec(e) => write!(f, "{e}"),
        }
    }
}

/// One length-prefixed request/response connection to one broker, with the API versions that
/// broker announced. Requests go one at a time, so a correlation id mismatch means a broken
/// stream, never a reordering.
#[derive(Debug)]
struct Connection {
    /// host:port, for errors.
    broker: String,
    stream: TcpStream,
    correlation_id: i32,
    /// api key -> (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    async fn open(broker: &str, client_id: &str) -> Result<Connection, WireError> {
        let mut conn = Connection::connect(broker).await?;
        match conn.api_versions(client_id, API_VERSIONS_VERSION).await {
            Ok(versions) => conn.versions = versions,
            // A broker older than ApiVersions v3 answers with an error in the v0 layout, which
            // may not even decode as v3: ask again, in v0, on a fresh stream.
            Err(_) => {
                conn = Connection::connect(broker).await?;
                conn.versions = conn.api_versions(client_id, API_VERSIONS_FALLBACK).await?;
            }
        }
        Ok(conn)
    }

    async fn connect(broker: &str) -> Result<Connection, WireError> {
        let stream = TcpStream::connect(broker).await.map_err(WireError::Io)?;
        stream.set_nodelay(true).map_err(WireError::Io)?;
        Ok(Connection {
            broker: broker.to_owned(),
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
        })
    }

    async fn api_versions(
        &mut self,
        client_id: &str,
        version: i16,
    ) -> Result<HashMap<i16, (i16, i16)>, WireError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(env!("CARGO_PKG_NAME")))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.call(client_id, &request, version).await?;
        if response.error_code != 0 {
            return Err(WireError::Codec(format!(
                "ApiVersions v{version} answered {} ({})",
                response.error_code,
                error_name(response.error_code)
            )));
        }
        Ok(response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The highest version of `api` both this client (`ours`) and the broker speak.
    fn version(
        &self,
        group: &str,
        api: ApiKey,
        name: &'static str,
        ours: RangeInclusive<i16>,
    ) -> Result<i16, CoordinatorError> {
        let (min, max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .unwrap_or((-1, -1));
        let best = (*ours.end()).min(max);
        if best < *ours.start() || best < min {
            return Err(CoordinatorError::Unsupported {
                group: group.to_owned(),
                api: name,
                broker: self.broker.clone(),
                broker_min: min,
                broker_max: max,
                ours,
            });
        }
        Ok(best)
    }

    async fn call<R: Request>(
        &mut self,
        client_id: &str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, WireError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        kafka_protocol::protocol::encode_request_header_into_buffer(&mut buf, &header)
            .map_err(|e| WireError::Encode(format!("encoding the request header: {e}")))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| WireError::Encode(format!("encoding v{version}: {e}")))?;
        let len = i32::try_from(buf.len() - 4)
            .map_err(|_| WireError::Encode(format!("request of {} bytes", buf.len())))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await.map_err(WireError::Io)?;
        let len = self.stream.read_i32().await.map_err(WireError::Io)?;
        if !(0..=MAX_RESPONSE_BYTES).contains(&len) {
            return Err(WireError::Codec(format!("response length prefix {len}")));
        }
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(WireError::Io)?;
        let mut body = Bytes::from(body);
        let response_header =
            ResponseHeader::decode(&mut body, R::Response::header_version(version))
                .map_err(|e| WireError::Codec(format!("decoding the response header: {e}")))?;
        if response_header.correlation_id != self.correlation_id {
            return Err(WireError::Codec(format!(
                "correlation id {} answered, {} expected",
                response_header.correlation_id, self.correlation_id
            )));
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| WireError::Codec(format!("decoding v{version}: {e}")))?;
        if body.has_remaining() {
            tracing::debug!(
                broker = %self.broker,
                bytes = body.remaining(),
                "unread bytes after a coordinator response"
            );
        }
        Ok(response)
    }
}

/// Client of one consumer group's coordinator.
#[derive(Debug)]
pub struct GroupCoordinator {
    bootstrap: Vec<String>,
    group: String,
    client_id: String,
    /// The connection to the current coordinator; dropped whenever it fails or the coordinator
    /// moves, and found anew through a bootstrap broker on the next call.
    coordinator: Option<Connection>,
    /// Upper bound on the duration of one call, retries included.
    retry_budget: Duration,
}

impl GroupCoordinator {
    pub fn new(
        bootstrap: Vec<String>,
        group: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        GroupCoordinator {
            bootstrap,
            group: group.into(),
            client_id: client_id.into(),
            coordinator: None,
            retry_budget: DEFAULT_RETRY_BUDGET,
        }
    }

    /// Bounds each call (default [`DEFAULT_RETRY_BUDGET`]).
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

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
            let mut conn = match Connection::open(broker, &self.client_id).await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{broker}: {e}");
                    continue;
                }
            };
            let version = conn.version(
                &self.group,
                ApiKey::FindCoordinator,
                "FindCoordinator",
                FIND_COORDINATOR_VERSIONS,
            )?;
            let group = StrBytes::from_string(self.group.clone());
            let request = if version >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![group])
            } else {
                FindCoordinatorRequest::default().with_key(group)
            };
            let request = if version >= 1 {
                request.with_key_type(GROUP_KEY_TYPE)
            } else {
                request
            };
            let r = match conn.call(&self.client_id, &request, version).await {
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
    async fn connection(&mut self) -> Result<&mut Connection, CoordinatorError> {
        if self.coordinator.is_none() {
            let broker = self.find().await?;
            let conn = Connection::open(&broker, &self.client_id)
                .await
                .map_err(|e| CoordinatorError::Unreachable {
                    group: self.group.clone(),
                    bootstrap: vec![broker.clone()],
                    cause: e.to_string(),
                })?;
            self.coordinator = Some(conn);
        }
        Ok(self.coordinator.as_mut().expect("set above"))
    }

    /// Runs `op` until it succeeds, fails for good, or the retry budget is spent. A retriable
    /// failure drops the coordinator connection, so the next attempt finds the coordinator anew.
    async fn retrying<T>(
        &mut self,
        api: &'static str,
        mut op: impl AsyncFnMut(&mut Self) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let deadline = Instant::now() + self.retry_budget;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = tokio::time::timeout_at(deadline, op(self)).await;
            let e = match attempt {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !e.retriable() => return Err(e),
                Ok(Err(e)) => e,
                Err(_) => CoordinatorError::Protocol {
                    group: self.group.clone(),
                    api,
                    broker: self
                        .coordinator
                        .as_ref()
                        .map_or_else(|| format!("{:?}", self.bootstrap), |c| c.broker.clone()),
                    cause: "no answer".into(),
                },
            };
            self.coordinator = None;
            let now = Instant::now();
            if now + backoff >= deadline {
                return Err(CoordinatorError::OutOfTime {
                    group: self.group.clone(),
                    api,
                    budget: self.retry_budget,
                    last: Box::new(e),
                });
            }
            tracing::debug!(group = %self.group, api, "coordinator call failed, retrying in {backoff:?}: {e}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Committed offsets of `partitions` of `topic`; `None` where the group has none.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, CoordinatorError> {
        self.retrying("OffsetFetch", async |this: &mut Self| {
            let group = this.group.clone();
            let client_id = this.client_id.clone();
            let conn = this.connection().await?;
            let version = conn.version(
                &group,
                ApiKey::OffsetFetch,
                "OffsetFetch",
                OFFSET_FETCH_VERSIONS,
            )?;
            let group_id = GroupId(StrBytes::from_string(group.clone()));
            let topic_name = TopicName(StrBytes::from_string(topic.to_owned()));
            let request = if version >= 8 {
                // The v1-7 `topics` stays at its default (an empty list): kafka-protocol refuses
                // to encode anything else, even null, in v8+.
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
            };
            let broker = conn.broker.clone();
            let r = conn
                .call(&client_id, &request, version)
                .await
                .map_err(|e| this.wire_error("OffsetFetch", &broker, e))?;
            // (partition, committed offset, error code), whichever layout the version has.
            let (group_code, answers): (i16, Vec<(i32, i64, i16)>) = if version >= 8 {
                let g = r
                    .groups
                    .into_iter()
                    .find(|g| g.group_id.0.as_str() == group);
                match g {
                    Some(g) => (
                        g.error_code,
                        g.topics
                            .into_iter()
                            .filter(|t| t.name.0.as_str() == topic)
                            .flat_map(|t| t.partitions)
                            .map(|p| (p.partition_index, p.committed_offset, p.error_code))
                            .collect(),
                    ),
                    None => {
                        return Err(this.wire_error(
                            "OffsetFetch",
                            &broker,
                            WireError::Codec("no answer for the group".into()),
                        ));
                    }
                }
            } else {
                (
                    r.error_code,
                    r.topics
                        .into_iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| t.partitions)
                        .map(|p| (p.partition_index, p.committed_offset, p.error_code))
                        .collect(),
                )
            };
            if group_code != 0 {
                return Err(this.kafka_error("OffsetFetch", group_code, String::new()));
            }
            let mut out = HashMap::new();
            for (partition, offset, code) in answers {
                if code != 0 {
                    return Err(this.kafka_error(
                        "OffsetFetch",
                        code,
                        format!(" for {topic}/{partition}"),
                    ));
                }
                out.insert(partition, (offset >= 0).then_some(offset));
            }
            Ok(out)
        })
        .await
    }

    /// Commits `offsets` (partition, next offset to consume) of `topic`.
    pub async fn commit(
        &mut self,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), CoordinatorError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
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
            let group = this.group.clone();
            let client_id = this.client_id.clone();
            let conn = this.connection().await?;
            let version = conn.version(
                &group,
                ApiKey::OffsetCommit,
                "OffsetCommit",
                OFFSET_COMMIT_VERSIONS,
            )?;
            let broker = conn.broker.clone();
            let r = conn
                .call(&client_id, &request, version)
                .await
                .map_err(|e| this.wire_error("OffsetCommit", &broker, e))?;
            for t in r.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        let offset = offsets
                            .iter()
                            .find(|(q, _)| *q == p.partition_index)
                            .map_or(-1, |(_, o)| *o);
                        return Err(this.kafka_error(
                            "OffsetCommit",
                            p.error_code,
                            format!(" for {topic}/{} at offset {offset}", p.partition_index),
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}
