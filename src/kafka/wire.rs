//! One request/response connection to one broker, speaking the Kafka protocol with the
//! `kafka-protocol` crate as codec. rskafka keeps its connections private and has no group or
//! admin APIs; the group coordinator client and the topic-config lookup use this instead.
//!
//! Versions are negotiated per connection with ApiVersions: a caller asks for the highest
//! version both sides speak ([`BrokerConnection::version`]).

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// ApiVersions v3 (Kafka 2.4+) is asked first; a broker that does not know it answers in v0.
const API_VERSIONS_VERSION: i16 = 3;
const API_VERSIONS_FALLBACK: i16 = 0;
/// A response larger than this is a corrupt length prefix, not an answer.
const MAX_RESPONSE_BYTES: i32 = 64 << 20;

/// Kafka's name for an error code, e.g. `NotCoordinator`.
pub fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| "unknown".into())
}

/// What went wrong on one connection, before the caller adds what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The request cannot be written in the chosen version: a bug here, not a broker state.
    #[error("{0}")]
    Encode(String),
    /// The answer is not what was asked for: the stream is broken; a fresh one may do.
    #[error("{0}")]
    Codec(String),
}

/// The broker and this client share no version of an API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker {broker} speaks {api} versions {broker_min}..={broker_max}, this client {ours:?}")]
pub struct UnsupportedVersion {
    /// The API's name, e.g. `OffsetCommit`.
    pub api: &'static str,
    /// host:port of the broker.
    pub broker: String,
    /// The versions the broker announced (-1 when it does not know the API).
    pub broker_min: i16,
    pub broker_max: i16,
    /// The versions this client can write and read.
    pub ours: RangeInclusive<i16>,
}

/// One length-prefixed request/response connection to one broker, with the API versions that
/// broker announced. Requests go one at a time, so a correlation id mismatch means a broken
/// stream, never a reordering.
#[derive(Debug)]
pub struct BrokerConnection {
    /// host:port, for errors.
    broker: String,
    /// Requests and responses, one at a time.
    stream: TcpStream,
    /// Sent with every request: brokers log and quota by it.
    client_id: String,
    /// Of the last request; its response must carry the same.
    correlation_id: i32,
    /// api key -> (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl BrokerConnection {
    /// Connects to `broker` (host:port) and asks which API versions it speaks.
    pub async fn open(broker: &str, client_id: &str) -> Result<BrokerConnection, WireError> {
        let mut conn = BrokerConnection::connect(broker, client_id).await?;
        match conn.api_versions(API_VERSIONS_VERSION).await {
            Ok(versions) => conn.versions = versions,
            // A broker older than ApiVersions v3 answers with an error in the v0 layout, which
            // may not even decode as v3: ask again, in v0, on a fresh stream.
            Err(_) => {
                conn = BrokerConnection::connect(broker, client_id).await?;
                conn.versions = conn.api_versions(API_VERSIONS_FALLBACK).await?;
            }
        }
        Ok(conn)
    }

    async fn connect(broker: &str, client_id: &str) -> Result<BrokerConnection, WireError> {
        let stream = TcpStream::connect(broker).await.map_err(WireError::Io)?;
        stream.set_nodelay(true).map_err(WireError::Io)?;
        Ok(BrokerConnection {
            broker: broker.to_owned(),
            stream,
            client_id: client_id.to_owned(),
            correlation_id: 0,
            versions: HashMap::new(),
        })
    }

    /// host:port of the broker.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    async fn api_versions(&mut self, version: i16) -> Result<HashMap<i16, (i16, i16)>, WireError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(env!("CARGO_PKG_NAME")))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.call(&request, version).await?;
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
    pub fn version(
        &self,
        api: ApiKey,
        name: &'static str,
        ours: RangeInclusive<i16>,
    ) -> Result<i16, UnsupportedVersion> {
        let (min, max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .unwrap_or((-1, -1));
        let best = (*ours.end()).min(max);
        if best < *ours.start() || best < min {
            return Err(UnsupportedVersion {
                api: name,
                broker: self.broker.clone(),
                broker_min: min,
                broker_max: max,
                ours,
            });
        }
        Ok(best)
    }

    /// Sends `request` in `version` and reads its response.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, WireError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
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
                "unread bytes after a response"
            );
        }
        Ok(response)
    }
}
