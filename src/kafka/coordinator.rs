//! Committed offsets in the consumer group, through the group coordinator (FindCoordinator,
//! OffsetFetch, OffsetCommit). rskafka has no group APIs and keeps its connections private, so
//! this client speaks the Kafka protocol itself over its own connection, with the
//! `kafka-protocol` crate as codec.
//!
//! Commits are "simple consumer" commits (generation -1, no member id): partitions are owned by
//! worker index, not by group membership. Positions and lag then show in Kafka's own tooling
//! (`kafka-consumer-groups --describe`).
//!
//! Versions: FindCoordinator v3, OffsetFetch v7, OffsetCommit v8 — all served by Kafka 2.8
//! and later, including 4.x (which removed OffsetCommit v0–1 and OffsetFetch v0).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, RequestHeader,
    ResponseHeader, TopicName,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIND_COORDINATOR_VERSION: i16 = 3;
const OFFSET_FETCH_VERSION: i16 = 7;
const OFFSET_COMMIT_VERSION: i16 = 8;
/// Kafka error codes after which the coordinator must be looked up again.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
/// How long one call keeps retrying a moving or loading coordinator.
const RETRY_BUDGET: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[error("group {group}: {api}: {cause}")]
    Protocol {
        group: String,
        api: &'static str,
        cause: String,
    },
}

impl CoordinatorError {
    fn retriable(&self) -> bool {
        match self {
            CoordinatorError::Kafka { code, .. } => {
                matches!(
                    *code,
                    COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
                )
            }
            CoordinatorError::Unreachable { .. } | CoordinatorError::Protocol { .. } => true,
        }
    }
}

fn error_name(code: i16) -> String {
    kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| "unknown".into())
}

/// One length-prefixed request/response connection.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Connection> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr}"),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            correlation_id: 0,
        })
    }

    async fn call<R: Request>(
        &mut self,
        client_id: &str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, String> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        kafka_protocol::protocol::encode_request_header_into_buffer(&mut buf, &header)
            .map_err(|e| e.to_string())?;
        request
            .encode(&mut buf, version)
            .map_err(|e| e.to_string())?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let io = async {
            self.stream.write_all(&buf).await?;
            let len = self.stream.read_i32().await?;
            if !(0..=64 << 20).contains(&len) {
                return Err(std::io::Error::other(format!("response of {len} bytes")));
            }
            let mut body = vec![0u8; len as usize];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(IO_TIMEOUT, io)
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let header_version = R::Response::header_version(version);
        let response_header =
            ResponseHeader::decode(&mut body, header_version).map_err(|e| e.to_string())?;
        if response_header.correlation_id != self.correlation_id {
            return Err(format!(
                "correlation id {} answered, {} expected",
                response_header.correlation_id, self.correlation_id
            ));
        }
        let response = R::Response::decode(&mut body, version).map_err(|e| e.to_string())?;
        if body.has_remaining() {
            tracing::debug!(
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
    coordinator: Option<Connection>,
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
        }
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

    fn protocol_error(&self, api: &'static str, cause: String) -> CoordinatorError {
        CoordinatorError::Protocol {
            group: self.group.clone(),
            api,
            cause,
        }
    }

    async fn find(&mut self) -> Result<&mut Connection, CoordinatorError> {
        if self.coordinator.is_none() {
            let mut last = String::from("no bootstrap server");
            let mut found = None;
            for addr in &self.bootstrap {
                let mut conn = match Connection::open(addr).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = format!("{addr}: {e}");
                        continue;
                    }
                };
                let request = FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(self.group.clone()))
                    .with_key_type(0);
                match conn
                    .call(&self.client_id, &request, FIND_COORDINATOR_VERSION)
                    .await
                {
                    Ok(r) if r.error_code == 0 => {
                        found = Some(format!("{}:{}", r.host.as_str(), r.port));
                        break;
                    }
                    Ok(r) => {
                        return Err(self.kafka_error(
                            "FindCoordinator",
                            r.error_code,
                            String::new(),
                        ));
                    }
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            let addr = found.ok_or_else(|| CoordinatorError::Unreachable {
                group: self.group.clone(),
                bootstrap: self.bootstrap.clone(),
                cause: last,
            })?;
            let conn =
                Connection::open(&addr)
                    .await
                    .map_err(|e| CoordinatorError::Unreachable {
                        group: self.group.clone(),
                        bootstrap: vec![addr.clone()],
                        cause: e.to_string(),
                    })?;
            self.coordinator = Some(conn);
        }
        Ok(self.coordinator.as_mut().expect("set above"))
    }

    /// Retries `op` while the coordinator moves, loads or cannot be reached, within a budget.
    async fn retrying<T>(
        &mut self,
        mut op: impl AsyncFnMut(&mut Self) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match op(self).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retriable() && started.elapsed() < RETRY_BUDGET => {
                    tracing::debug!(group = %self.group, "coordinator call failed, retrying: {e}");
                    self.coordinator = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Committed offsets of `partitions` of `topic`; `None` where the group has none.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, CoordinatorError> {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_indexes(partitions.to_vec()),
            ]))
            .with_require_stable(false);
        self.retrying(async |this: &mut Self| {
            let client_id = this.client_id.clone();
            let conn = this.find().await?;
            let r = conn
                .call(&client_id, &request, OFFSET_FETCH_VERSION)
                .await
                .map_err(|e| this.protocol_error("OffsetFetch", e))?;
            if r.error_code != 0 {
                return Err(this.kafka_error("OffsetFetch", r.error_code, String::new()));
            }
            let mut out = HashMap::new();
            for t in r.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        return Err(this.kafka_error(
                            "OffsetFetch",
                            p.error_code,
                            format!(" for {topic}/{}", p.partition_index),
                        ));
                    }
                    out.insert(
                        p.partition_index,
                        (p.committed_offset >= 0).then_some(p.committed_offset),
                    );
                }
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
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    ),
            ]);
        self.retrying(async |this: &mut Self| {
            let client_id = this.client_id.clone();
            let conn = this.find().await?;
            let r = conn
                .call(&client_id, &request, OFFSET_COMMIT_VERSION)
                .await
                .map_err(|e| this.protocol_error("OffsetCommit", e))?;
            for t in r.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        return Err(this.kafka_error(
                            "OffsetCommit",
                            p.error_code,
                            format!(" for {topic}/{}", p.partition_index),
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}
