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
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::security::{BrokerAuth, BrokerIo, ConnectError, SaslExchange, SecurityError};
use crate::config::SaslCredentials;

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

/// SaslHandshake v1: its answer only names the mechanisms; the exchange itself goes in
/// SaslAuthenticate requests (v0 would expect raw SASL bytes on the socket instead).
const SASL_HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate v0..=2 (v1 adds the session lifetime, v2 flexible encoding).
const SASL_AUTHENTICATE_VERSIONS: RangeInclusive<i16> = 0..=2;

/// What went wrong on one connection, before the caller adds what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or broke (refused, reset, timed out): the broker may come back.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The connection cannot be set up as configured (credentials, certificates, protocol):
    /// trying again will not help.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The request cannot be written in the chosen version: a bug here, not a broker state.
    #[error("{0}")]
    Encode(String),
    /// The answer is not what was asked for: the stream is broken; a fresh one may do.
    #[error("{0}")]
    Codec(String),
}

/// How `call` reports an answer that is a TLS record.
const TLS_RECORD_ANSWER: &str = "the broker answered with a TLS record";

/// The first exchange on a connection failed in a way that says the two sides speak different
/// protocols (TLS or not, SASL or not), rather than that the broker went away.
fn mismatch(broker: &str, auth: &BrokerAuth, e: WireError) -> WireError {
    use std::io::ErrorKind;
    match &e {
        WireError::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ) =>
        {
            WireError::Security(auth.early_close(broker, &io.to_string()))
        }
        // TLS 1.3 finishes the client's side of the handshake before the broker checks the
        // client certificate: its refusal arrives as an alert on the first read.
        WireError::Io(io) => match crate::tls::explain_handshake_failure(&io.to_string()) {
            Some(problem) => WireError::Security(SecurityError::Handshake {
                broker: broker.to_owned(),
                problem: problem.to_owned(),
                detail: io.to_string(),
            }),
            None => e,
        },
        WireError::Codec(detail) if detail.starts_with(TLS_RECORD_ANSWER) => {
            WireError::Security(SecurityError::ProtocolMismatch {
                broker: broker.to_owned(),
                protocol: auth.protocol().name(),
                problem: "the broker answered in TLS: is it an SSL or SASL_SSL listener?".into(),
            })
        }
        _ => e,
    }
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
    /// The newest version the broker announced.
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
    /// Requests and responses, one at a time; TLS or plain.
    stream: Box<dyn BrokerIo>,
    /// Sent with every request: brokers log and quota by it.
    client_id: String,
    /// Of the last request; its response must carry the same.
    correlation_id: i32,
    /// api key -> (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl BrokerConnection {
    /// Connects to `broker` (host:port) as `auth` says, asks which API versions it speaks and
    /// authenticates with SASL when configured.
    pub async fn open(
        broker: &str,
        client_id: &str,
        auth: &BrokerAuth,
    ) -> Result<BrokerConnection, WireError> {
        let mut conn = BrokerConnection::connect(broker, client_id, auth).await?;
        match conn.api_versions(API_VERSIONS_VERSION).await {
            Ok(versions) => conn.versions = versions,
            // The first answer shows whether both sides speak the same protocol.
            Err(e @ WireError::Io(_)) => return Err(mismatch(broker, auth, e)),
            Err(WireError::Codec(detail)) if detail.starts_with(TLS_RECORD_ANSWER) => {
                return Err(mismatch(broker, auth, WireError::Codec(detail)));
            }
            // A broker older than ApiVersions v3 answers with an error in the v0 layout, which
            // may not even decode as v3: ask again, in v0, on a fresh stream.
            Err(_) => {
                conn = BrokerConnection::connect(broker, client_id, auth).await?;
                conn.versions = conn.api_versions(API_VERSIONS_FALLBACK).await?;
            }
        }
        if let Some(sasl) = auth.sasl() {
            conn.authenticate(sasl).await.map_err(|e| match e {
                e @ WireError::Io(_) => mismatch(broker, auth, e),
                other => other,
            })?;
        }
        Ok(conn)
    }

    async fn connect(
        broker: &str,
        client_id: &str,
        auth: &BrokerAuth,
    ) -> Result<BrokerConnection, WireError> {
        let stream = auth.connect(broker).await.map_err(|e| match e {
            ConnectError::Io(e) => WireError::Io(e),
            ConnectError::Security(e) => WireError::Security(e),
        })?;
        Ok(BrokerConnection {
            broker: broker.to_owned(),
            stream,
            client_id: client_id.to_owned(),
            correlation_id: 0,
            versions: HashMap::new(),
        })
    }

    /// SASL: the mechanism announced with SaslHandshake, then the mechanism's messages in
    /// SaslAuthenticate requests until it is complete. A refusal names mechanism, user and the
    /// broker's reason (never the password).
    async fn authenticate(&mut self, sasl: &SaslCredentials) -> Result<(), WireError> {
        let broker = self.broker.clone();
        let refused = |reason: String| {
            WireError::Security(SecurityError::Authentication {
                broker: broker.clone(),
                mechanism: sasl.mechanism.name(),
                username: sasl.username.clone(),
                reason,
            })
        };
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
        let answer = self.call(&handshake, SASL_HANDSHAKE_VERSION).await?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            let offered = if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            };
            return Err(refused(format!(
                "{} (the listener offers {offered})",
                error_name(answer.error_code)
            )));
        }
        let version = self
            .version(
                ApiKey::SaslAuthenticate,
                "SaslAuthenticate",
                SASL_AUTHENTICATE_VERSIONS,
            )
            .map_err(|e| WireError::Codec(e.to_string()))?;
        let mut exchange = SaslExchange::start(sasl).map_err(&refused)?;
        let mut received: Option<Bytes> = None;
        loop {
            let step = exchange
                .step(received.as_deref())
                .map_err(|e| refused(format!("the exchange failed: {e}")))?;
            if let Some(message) = step.send {
                let request = SaslAuthenticateRequest::default().with_auth_bytes(message.into());
                let answer = self.call(&request, version).await?;
                if answer.error_code != 0 {
                    let reason = answer
                        .error_message
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| error_name(answer.error_code));
                    return Err(refused(reason));
                }
                received = Some(answer.auth_bytes);
            }
            if step.finished {
                return Ok(());
            }
        }
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
            // A TLS record (handshake 0x16 or alert 0x15, version 3.x) where a length belongs.
            let [kind, major, ..] = len.to_be_bytes();
            if matches!(kind, 0x15 | 0x16) && major == 3 {
                return Err(WireError::Codec(format!("{TLS_RECORD_ANSWER} ({len:#x})")));
            }
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
