//! The errors of the Kafka layer: [`KafkaError`] for what a call met, [`Refused`] for what
//! ends a worker's part in Kafka for good.

use super::coordinator::CoordinatorError;
use super::security::SecurityError;
use super::too_large::RecordTooLarge;

/// Why Kafka refuses this worker for good (the group fenced or refused it, or another
/// producer took its transactional id over): what a human must fix; the worker stops.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "another process joined group {group} as instance {instance}, so this one was fenced; two instances on one host need distinct group_instance_id prefixes"
    )]
    Fenced { group: String, instance: String },
    #[error("the group refuses this member: {0}")]
    ByGroup(#[source] CoordinatorError),
    /// Exactly-once: another producer initialised this worker's transactional id.
    #[error(
        "fenced: another producer took over transactional id {transactional_id} (two instances with the same transactional_id prefix and instance ids?); nothing this worker produced since its last commit becomes visible to read_committed readers"
    )]
    ProducerFenced { transactional_id: String },
}

/// What a Kafka call met.
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
    Transactions(#[source] Refused),
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
