//! Every Kafka detail of the service; the worker opens a [`Session`] and sees records, producers
//! and a commit call.
//!
//! * `session`: one worker's clients, fetch loops, producers and committer ([`Session`]).
//! * [`client`]: how rskafka clients are built (one backoff), partition counts and clients.
//! * `coordinator`: the group coordinator client: committed offsets, and (in [`member`]) the
//!   classic group protocol's calls (rskafka has no group APIs).
//! * [`member`]: this worker as one member of the consumer group: join, assignment,
//!   heartbeats, rebalances; the classic protocol, or the consumer protocol of KIP-848.
//! * [`group`]: the group's shared rules: the embedded consumer protocol and aiokafka's
//!   assignors.
//! * `committer`: commits the watermarks that moved.
//! * [`transaction`]: exactly-once (opt-in): responses and offsets in one Kafka transaction,
//!   in the committer's place.
//! * `watermark`: per partition, the lowest offset whose response is not yet in Kafka.
//! * [`consumer`]: long-poll fetch loops over the owned partitions of the request topic, with
//!   back-pressure, handing out [`RequestRecord`]s.
//! * [`producer`]: responses (and dead letters) with acks=all, partitioned like Java's client,
//!   within `max_request_size` and the topic's `max.message.bytes`.
//! * `topic_config`: a topic's configuration as the brokers report it (DescribeConfigs).
//! * `tail`: a topic read from its end on (the `exec` command's response).
//! * `lag`: the group's committed offsets against the log ends (the metrics' consumer lag).
//! * [`security`]: TLS and SASL as configured, for rskafka's clients and this service's own
//!   connections; the errors that mean "fix the configuration", not "retry".
//! * [`wire`]: one request/response connection to a broker on the `kafka-protocol` codec, for
//!   the APIs rskafka lacks.

mod answer;
pub mod client;
mod committer;
pub mod consumer;
mod coordinator;
pub mod group;
mod lag;
pub mod member;
mod partitions;
pub mod producer;
pub mod security;
mod session;
mod tail;
mod tenure;
mod topic_config;
pub mod transaction;
mod watermark;
pub mod wire;

pub use answer::{Answers, Delivery, Refusal, Reply};
pub use client::backoff;
pub use committer::Committer;
pub use consumer::{DoneToken, RequestConsumer, RequestRecord};
pub use coordinator::{CoordinatorError, Generation, GroupCoordinator};
pub use lag::LagReader;
pub use member::{MemberError, MemberSettings};
pub use producer::{
    OutgoingRecord, PreparedRecord, ProducerSettings, RecordTooLarge, ResponseProducer,
};
pub use security::{BrokerAuth, SecurityError};
pub use session::{Opened, Ownership, Session};
pub use tail::{TailRecord, TopicTail};
pub use watermark::Watermarks;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka: {context}: {source}")]
    Client {
        context: String,
        #[source]
        source: rskafka::client::error::Error,
    },
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The brokers cannot be reached as configured (credentials, certificates, protocol).
    #[error("Kafka: {0}")]
    Security(#[from] SecurityError),
    /// No bootstrap broker accepted a connection.
    #[error("Kafka: no broker of {bootstrap:?} answered: {cause}")]
    Unreachable {
        bootstrap: Vec<String>,
        cause: String,
    },
    #[error("topic {topic} does not exist")]
    NoSuchTopic { topic: String },
    #[error(
        "request topic {topic} does not exist (create it with at least as many partitions as there are workers)"
    )]
    NoRequestTopic { topic: String },
    #[error("the record batch at {topic}/{partition} offset {offset} cannot be decoded: {reason}")]
    Undecodable {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error(transparent)]
    RecordTooLarge(#[from] RecordTooLarge),
    /// Exactly-once: the transactional producer cannot be set up (refused authorization).
    #[error("Kafka: the transactional producer: {0}")]
    Transactions(#[source] MemberError),
    /// A task of the session ended before it could answer (the worker is stopping).
    #[error("{what}: {reason}")]
    Stopped { what: &'static str, reason: String },
    #[error("producing to {topic}/{partition}: {source}")]
    Produce {
        topic: String,
        partition: i32,
        #[source]
        source: rskafka::client::producer::Error,
    },
}

impl KafkaError {
    /// Whether Kafka coming back (or a moment's patience) can fix it: an unreachable or moving
    /// broker, a coordinator that is loading. Not: a missing topic, a refused authorization, a
    /// protocol version neither side speaks — configuration a human must fix.
    pub fn is_transient(&self) -> bool {
        use rskafka::client::error::{Error as ClientError, ProtocolError as Code};
        match self {
            KafkaError::Client { source, .. } => match source {
                ClientError::ServerError { protocol_error, .. } => !matches!(
                    protocol_error,
                    Code::TopicAuthorizationFailed
                        | Code::GroupAuthorizationFailed
                        | Code::ClusterAuthorizationFailed
                        | Code::SaslAuthenticationFailed
                        | Code::IllegalSaslState
                        | Code::UnsupportedSaslMechanism
                        | Code::InvalidTopicException
                        | Code::UnsupportedVersion
                ),
                _ => true,
            },
            KafkaError::Coordinator(e) => e.is_transient(),
            KafkaError::Unreachable { .. } => true,
            KafkaError::Security(_) => false,
            KafkaError::NoSuchTopic { .. }
            | KafkaError::NoRequestTopic { .. }
            | KafkaError::RecordTooLarge(_)
            | KafkaError::Transactions(_)
            | KafkaError::Undecodable { .. }
            | KafkaError::Stopped { .. } => false,
            KafkaError::Produce { .. } => !self.is_permanent(),
        }
    }

    /// Whether sending the same record again cannot succeed: it is too large, malformed or not
    /// allowed. The caller should give up on it (and answer otherwise) instead of retrying.
    pub fn is_permanent(&self) -> bool {
        use rskafka::client::error::{Error as ClientError, ProtocolError as Code};
        use rskafka::client::producer::Error as ProduceError;
        let client_error = match self {
            KafkaError::RecordTooLarge(_) => return true,
            KafkaError::Produce {
                source: ProduceError::TooLarge,
                ..
            } => return true,
            KafkaError::Produce {
                source: ProduceError::Client(e),
                ..
            } => e.as_ref(),
            KafkaError::Client { source, .. } => source,
            _ => return false,
        };
        matches!(
            client_error,
            ClientError::ServerError {
                protocol_error: Code::MessageTooLarge
                    | Code::RecordListTooLarge
                    | Code::InvalidRecord
                    | Code::CorruptMessage
                    | Code::InvalidTopicException
                    | Code::TopicAuthorizationFailed,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_record_itself_are_permanent() {
        use rskafka::client::error::{Error as ClientError, ProtocolError as Code, RequestContext};
        use rskafka::client::producer::Error as ProduceError;
        let produce = |source| KafkaError::Produce {
            topic: "responses".into(),
            partition: 3,
            source,
        };
        let server = |protocol_error| {
            ProduceError::Client(std::sync::Arc::new(ClientError::ServerError {
                protocol_error,
                error_message: None,
                request: RequestContext::Partition("responses".into(), 3),
                response: None,
                is_virtual: false,
            }))
        };
        assert!(produce(ProduceError::TooLarge).is_permanent());
        assert!(produce(server(Code::MessageTooLarge)).is_permanent());
        assert!(produce(server(Code::TopicAuthorizationFailed)).is_permanent());
        assert!(!produce(server(Code::NotLeaderOrFollower)).is_permanent());
        assert!(!produce(server(Code::NotEnoughReplicas)).is_permanent());
        assert!(!produce(ProduceError::FlushError("broker went away".into())).is_permanent());
        assert!(
            !KafkaError::NoSuchTopic {
                topic: "responses".into()
            }
            .is_permanent()
        );
    }
}
