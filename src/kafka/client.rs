//! rskafka clients as this service builds them: one way to connect, one backoff, one way to
//! count a topic's partitions and to get a partition's client, each error naming what it was
//! doing.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

use super::error::KafkaError;
use super::security::{BrokerAuth, SecurityError};
use super::wire::{BrokerConnection, WireError};

/// How rskafka clients should retry a broker that is unreachable or moving: with no deadline
/// (a request waits for Kafka as long as it takes; shutdown cancels it), but backing off to at
/// most 5 s. rskafka's default grows to 500 s, so after an outage of a few minutes a worker
/// would sit idle for minutes more once Kafka is back.
/// Use with `ClientBuilder::backoff_config`.
pub fn backoff() -> rskafka::BackoffConfig {
    rskafka::BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        base: 3.0,
        deadline: None,
    }
}

/// A client of the cluster at `bootstrap`, secured as `auth` says, with this service's backoff.
///
/// One broker connection of this service's own comes first: rskafka retries a refused
/// password, an untrusted certificate or a TLS/plaintext mix-up for ever, as if the broker
/// were away. Our connection tells those apart and fails with what to fix
/// ([`KafkaError::Security`]); an unreachable cluster stays a transient error.
pub async fn connect(
    bootstrap: &[String],
    client_id: &str,
    auth: &BrokerAuth,
) -> Result<Arc<Client>, KafkaError> {
    check_connection(bootstrap, client_id, auth).await?;
    auth.configure(ClientBuilder::new(bootstrap.to_vec()))
        .client_id(client_id.to_owned())
        .backoff_config(backoff())
        .build()
        .await
        .map(Arc::new)
        .map_err(|source| KafkaError::Client {
            context: format!("connecting to {bootstrap:?}"),
            source,
        })
}

/// How often a broker must hang up before its first answer, and how far apart, before that
/// counts as a protocol mix-up rather than a broker shutting down (which soon refuses
/// connections instead).
const EARLY_CLOSES: u32 = 3;
const EARLY_CLOSE_PAUSE: Duration = Duration::from_secs(1);

/// Opens (and drops) one connection to the first bootstrap broker that answers: TLS, ApiVersions,
/// SASL, as every later connection will.
async fn check_connection(
    bootstrap: &[String],
    client_id: &str,
    auth: &BrokerAuth,
) -> Result<(), KafkaError> {
    let mut early_closes = 0;
    loop {
        let mut failures = Vec::new();
        // Some only while every broker hung up early: one broker merely away makes the attempt
        // an outage, not a mix-up.
        let mut closed_early: Option<SecurityError> = None;
        let mut all_closed_early = true;
        for broker in bootstrap {
            match BrokerConnection::open(broker, client_id, auth).await {
                Ok(_) => return Ok(()),
                Err(WireError::Security(e @ SecurityError::ClosedEarly { .. })) => {
                    failures.push(format!("{broker}: {e}"));
                    closed_early = Some(e);
                }
                Err(WireError::Security(e)) => return Err(KafkaError::Security(e)),
                Err(e) => {
                    failures.push(format!("{broker}: {e}"));
                    all_closed_early = false;
                }
            }
        }
        match closed_early {
            Some(e) if all_closed_early => {
                early_closes += 1;
                if early_closes >= EARLY_CLOSES {
                    return Err(KafkaError::Security(e));
                }
                tokio::time::sleep(EARLY_CLOSE_PAUSE).await;
            }
            _ => {
                return Err(KafkaError::Unreachable {
                    bootstrap: bootstrap.to_vec(),
                    cause: failures.join("; "),
                });
            }
        }
    }
}

/// How many partitions `topic` has; `None` when it does not exist.
pub async fn partition_count(client: &Client, topic: &str) -> Result<Option<i32>, KafkaError> {
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
    client: &Client,
    topic: &str,
    partition: i32,
) -> Result<PartitionClient, KafkaError> {
    partition_client_handling(client, topic, partition, UnknownTopicHandling::Retry).await
}

/// A client for one partition produced to: it reports a topic that does not exist (deleted
/// while the service runs) instead of retrying inside rskafka, where nobody would see it. The
/// producer retries it itself, saying so once per interval.
pub async fn producing_partition_client(
    client: &Client,
    topic: &str,
    partition: i32,
) -> Result<PartitionClient, KafkaError> {
    partition_client_handling(client, topic, partition, UnknownTopicHandling::Error).await
}

async fn partition_client_handling(
    client: &Client,
    topic: &str,
    partition: i32,
    handling: UnknownTopicHandling,
) -> Result<PartitionClient, KafkaError> {
    client
        .partition_client(topic.to_owned(), partition, handling)
        .await
        .map_err(|source| KafkaError::Client {
            context: format!("partition client for {topic}/{partition}"),
            source,
        })
}
