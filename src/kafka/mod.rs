//! What the worker needs of Kafka beyond rskafka's partition clients.
//!
//! * [`coordinator`]: committed offsets in the consumer group (rskafka has no group APIs).
//! * [`watermark`]: per partition, the lowest offset whose response is not yet in Kafka.
//! * [`consumer`]: long-poll fetch loops over the owned partitions of the request topic, with
//!   back-pressure, handing out [`RequestRecord`]s.
//! * [`producer`]: responses (and dead letters) with acks=all, partitioned like Java's client,
//!   within `max_request_size` and the topic's `max.message.bytes`.
//! * [`topic_config`]: a topic's configuration as the brokers report it (DescribeConfigs).
//! * [`wire`]: one request/response connection to a broker on the `kafka-protocol` codec, for
//!   the APIs rskafka lacks.

pub mod consumer;
pub mod coordinator;
pub mod producer;
pub mod topic_config;
pub mod watermark;
pub mod wire;

pub use consumer::{DoneToken, RequestConsumer, RequestRecord};
pub use coordinator::{CoordinatorError, GroupCoordinator};
pub use producer::{OutgoingRecord, ProducerSettings, RecordTooLarge, ResponseProducer};
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
    #[error("topic {topic} does not exist")]
    NoSuchTopic { topic: String },
    #[error(transparent)]
    RecordTooLarge(#[from] RecordTooLarge),
    #[error("producing to {topic}/{partition}: {source}")]
    Produce {
        topic: String,
        partition: i32,
        #[source]
        source: rskafka::client::producer::Error,
    },
}

impl KafkaError {
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

/// How rskafka clients should retry a broker that is unreachable or moving: with no deadline
/// (a request waits for Kafka as long as it takes; shutdown cancels it), but backing off to at
/// most 5 s. rskafka's default grows to 500 s, so after an outage of a few minutes a worker
/// would sit idle for minutes more once Kafka is back.
/// Use with `ClientBuilder::backoff_config`.
pub fn backoff() -> rskafka::BackoffConfig {
    rskafka::BackoffConfig {
        init_backoff: std::time::Duration::from_millis(100),
        max_backoff: std::time::Duration::from_secs(5),
        base: 3.0,
        deadline: None,
    }
}

/// How many partitions `topic` has; `None` when it does not exist.
pub async fn partition_count(
    client: &rskafka::client::Client,
    topic: &str,
) -> Result<Option<i32>, KafkaError> {
    let topics = client
        .list_topics()
        .await
        .map_err(|source| KafkaError::Client {
            context: "listing topics".into(),
            source,
        })?;
    Ok(topics
        .iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.len() as i32)
        .filter(|n| *n > 0))
}

/// A client for one partition, with the topic and partition named in its error.
pub async fn partition_client(
    client: &rskafka::client::Client,
    topic: &str,
    partition: i32,
) -> Result<rskafka::client::partition::PartitionClient, KafkaError> {
    client
        .partition_client(
            topic.to_owned(),
            partition,
            rskafka::client::partition::UnknownTopicHandling::Retry,
        )
        .await
        .map_err(|source| KafkaError::Client {
            context: format!("partition client for {topic}/{partition}"),
            source,
        })
}

/// Partitions worker `index` of `count` owns: p mod count == index (design decision 2).
pub fn owned_partitions(partition_count: i32, index: usize, count: usize) -> Vec<i32> {
    (0..partition_count)
        .filter(|p| (*p as usize) % count == index)
        .collect()
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

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for count in 1..6 {
            let mut all: Vec<i32> = (0..count)
                .flat_map(|i| owned_partitions(8, i, count))
                .collect();
            all.sort();
            assert_eq!(all, (0..8).collect::<Vec<_>>(), "{count} workers");
        }
        assert_eq!(owned_partitions(8, 1, 3), vec![1, 4, 7]);
    }
}
