//! The errors of the Kafka layer: [`KafkaError`] for what a call met, [`Refused`] for what
//! ends a worker's part in Kafka for good.

use rskafka::client::error::{Error as ClientError, ProtocolError as Code};
use rskafka::client::producer::Error as ProduceError;

use super::coordinator::CoordinatorError;
use super::security::SecurityError;
use super::too_large::RecordTooLarge;

/// Why Kafka refuses this worker for good (the group fenced or refused it, or another
/// producer took its transactional id over): what a human must fix; the worker stops.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Static membership: another process joined with this worker's instance id, and the group
    /// fenced this one out.
    #[error(
        "another process joined group {group} as instance {instance}, so this one was fenced; two instances on one host need distinct group_instance_id prefixes"
    )]
    Fenced {
        /// The consumer group.
        group: String,
        /// The instance id the two processes share.
        instance: String,
    },
    /// The group coordinator refuses this member for a reason waiting cannot mend (no
    /// authorization, a group protocol or assignor the brokers do not offer).
    #[error("the group refuses this member: {0}")]
    ByGroup(#[source] CoordinatorError),
    /// Share groups: the group id is taken by a group of another type (a consumer group).
    #[error(
        "group {group} is not a share group (a consumer group of that id exists): a share group needs a group_id of its own"
    )]
    NotAShareGroup {
        /// The group id as configured.
        group: String,
    },
    /// Exactly-once: another producer initialised this worker's transactional id.
    #[error(
        "fenced: another producer took over transactional id {transactional_id} (two instances with the same transactional_id prefix and instance ids?); nothing this worker produced since its last commit becomes visible to read_committed readers"
    )]
    ProducerFenced {
        /// The id another producer initialised.
        transactional_id: String,
    },
}

/// What a Kafka call met.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A call through rskafka's client (metadata, fetch, offsets) failed.
    #[error("Kafka: {context}: {source}")]
    Client {
        /// What was being done, with the topic and partition it was about.
        context: String,
        /// rskafka's error.
        #[source]
        source: rskafka::client::error::Error,
    },
    /// A call to the group coordinator (joining, offsets, heartbeats) failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The brokers cannot be reached as configured (credentials, certificates, protocol).
    #[error("Kafka: {0}")]
    Security(#[from] SecurityError),
    /// No bootstrap broker accepted a connection.
    #[error("Kafka: no broker of {bootstrap:?} answered: {cause}")]
    Unreachable {
        /// The bootstrap brokers as configured.
        bootstrap: Vec<String>,
        /// Why the last of them failed.
        cause: String,
    },
    /// A topic written to (responses, dead letters) does not exist; the service does not
    /// create topics.
    #[error("topic {topic} does not exist")]
    NoSuchTopic {
        /// The topic as configured.
        topic: String,
    },
    /// The request topic does not exist, so there is nothing to consume.
    #[error(
        "request topic {topic} does not exist (create it with at least as many partitions as there are workers)"
    )]
    NoRequestTopic {
        /// The topic as configured.
        topic: String,
    },
    /// A record batch of the request topic cannot be decoded, so its partition cannot move on
    /// past it.
    #[error("the record batch at {topic}/{partition} offset {offset} cannot be decoded: {reason}")]
    Undecodable {
        /// The request topic.
        topic: String,
        /// The partition that is stuck.
        partition: i32,
        /// The batch's first offset.
        offset: i64,
        /// What in the batch cannot be decoded (a codec this build lacks, corrupt bytes).
        reason: String,
    },
    /// A response is larger than Kafka takes; the worker answers with a failure response.
    #[error(transparent)]
    RecordTooLarge(#[from] RecordTooLarge),
    /// Exactly-once: the transactional producer cannot be set up (refused authorization).
    #[error("Kafka: the transactional producer: {0}")]
    Transactions(#[source] Refused),
    /// A task of the session ended before it could answer (the worker is stopping).
    #[error("{what}: {reason}")]
    Stopped {
        /// What was being done (starting the assigned partitions, reading this member's
        /// assignment, ...).
        what: &'static str,
        /// Why it ended.
        reason: String,
    },
    /// A record produced over this service's own connection (a dead letter kept verbatim)
    /// was not written.
    #[error("producing to {topic}/{partition}: {reason}")]
    Verbatim {
        /// The topic written to.
        topic: String,
        /// The partition written to.
        partition: i32,
        /// What went wrong.
        reason: String,
        /// Whether sending it again cannot help.
        permanent: bool,
    },
    /// A response could not be produced (at-least-once); the request stays uncommitted.
    #[error("producing to {topic}/{partition}: {source}")]
    Produce {
        /// The response topic.
        topic: String,
        /// The partition written to.
        partition: i32,
        /// rskafka's producer error.
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
            KafkaError::Verbatim { permanent, .. } => !permanent,
        }
    }

    /// Whether Kafka says the topic (or its partition) does not exist: a topic deleted while the
    /// service runs. Worth retrying: it may be created again.
    pub fn topic_missing(&self) -> bool {
        matches!(self, KafkaError::NoSuchTopic { .. })
            || self
                .server_error()
                .is_some_and(|code| code == Code::UnknownTopicOrPartition)
    }

    /// Whether sending the same record again cannot succeed: it is too large, malformed or not
    /// allowed. The caller should give up on it (and answer otherwise) instead of retrying.
    pub fn is_permanent(&self) -> bool {
        let refused = match self {
            KafkaError::Verbatim { permanent, .. } => *permanent,
            _ => matches!(
                self,
                KafkaError::RecordTooLarge(_)
                    | KafkaError::Produce {
                        source: ProduceError::TooLarge,
                        ..
                    }
            ),
        };
        refused
            || self.server_error().is_some_and(|code| {
                matches!(
                    code,
                    Code::MessageTooLarge
                        | Code::RecordListTooLarge
                        | Code::InvalidRecord
                        | Code::CorruptMessage
                        | Code::InvalidTopicException
                        | Code::TopicAuthorizationFailed
                )
            })
    }

    /// The error code a broker answered with, where this error is one.
    fn server_error(&self) -> Option<Code> {
        let client_error = match self {
            KafkaError::Produce {
                source: ProduceError::Client(e),
                ..
            } => e.as_ref(),
            KafkaError::Client { source, .. } => source,
            _ => return None,
        };
        match client_error {
            ClientError::ServerError { protocol_error, .. } => Some(*protocol_error),
            _ => None,
        }
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
        assert!(produce(server(Code::UnknownTopicOrPartition)).topic_missing());
        assert!(!produce(server(Code::UnknownTopicOrPartition)).is_permanent());
        assert!(!produce(server(Code::NotLeaderOrFollower)).topic_missing());
        assert!(
            !KafkaError::NoSuchTopic {
                topic: "responses".into()
            }
            .is_permanent()
        );
    }
}
