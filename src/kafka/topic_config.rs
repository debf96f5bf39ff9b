//! A topic's configuration as the brokers see it (DescribeConfigs). The producer needs one value
//! of it: `max.message.bytes`, the largest record batch the topic accepts, so that it can answer
//! a response too large for the topic with a failure response that names the limit, before
//! Kafka refuses it.

use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, describe_configs_request};
use kafka_protocol::protocol::StrBytes;

use super::security::BrokerAuth;
use super::wire::{BrokerConnection, UnsupportedVersion, WireError, error_name};

/// The topic setting that caps a record batch (after compression).
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// DescribeConfigs v0 is gone from Kafka 4; v1 has been there since Kafka 1.1.
const DESCRIBE_CONFIGS_VERSIONS: RangeInclusive<i16> = 1..=4;
/// `resource_type` of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// Why a topic's `max.message.bytes` could not be read. Never fatal: the producer warns and
/// starts without it, and the broker's refusal of a batch decides instead.
#[derive(Debug, thiserror::Error)]
pub enum TopicConfigError {
    /// No bootstrap broker could be asked.
    #[error("no broker of {bootstrap:?} answered DescribeConfigs for {topic}: {last}")]
    Unreachable {
        /// The topic asked about.
        topic: String,
        /// The brokers tried.
        bootstrap: Vec<String>,
        /// Why the last of them failed.
        last: String,
    },
    /// The broker speaks no DescribeConfigs version this client does.
    #[error("DescribeConfigs for {topic}: {source}")]
    Unsupported {
        /// The topic asked about.
        topic: String,
        /// The versions of both sides.
        #[source]
        source: UnsupportedVersion,
    },
    /// The broker refused (typically: no DescribeConfigs permission on the topic).
    #[error("DescribeConfigs for {topic} failed with Kafka error {code} ({name}){message}")]
    Kafka {
        /// The topic asked about.
        topic: String,
        /// Kafka's error code.
        code: i16,
        /// Its name, e.g. `TOPIC_AUTHORIZATION_FAILED`.
        name: String,
        /// The broker's message, with its separator, or empty.
        message: String,
    },
    /// The broker answered a value that is no size.
    #[error("DescribeConfigs for {topic}: `{key}` is `{value}`, not a number of bytes")]
    NotANumber {
        /// The topic asked about.
        topic: String,
        /// The config key (`max.message.bytes`).
        key: &'static str,
        /// The value as the broker wrote it.
        value: String,
    },
    /// No answer within the time the producer's start allows it.
    #[error("DescribeConfigs for {topic} gave no answer within {0:?}", .timeout)]
    TimedOut {
        /// The topic asked about.
        topic: String,
        /// The time allowed.
        timeout: Duration,
    },
}

/// `max.message.bytes` of `topic`, asked of the first bootstrap broker that answers; `None` if
/// the broker does not report it. Bounded by `timeout`.
pub async fn max_message_bytes(
    bootstrap: &[String],
    client_id: &str,
    auth: &BrokerAuth,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, TopicConfigError> {
    let ask = async {
        let mut last = String::from("no bootstrap server configured");
        for broker in bootstrap {
            match describe(broker, client_id, auth, topic).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Wire(e)) => last = format!("{broker}: {e}"),
            }
        }
        Err(TopicConfigError::Unreachable {
            topic: topic.to_owned(),
            bootstrap: bootstrap.to_vec(),
            last,
        })
    };
    tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| {
            Err(TopicConfigError::TimedOut {
                topic: topic.to_owned(),
                timeout,
            })
        })
}

/// One broker's answer: a result to return, or a connection failure worth another broker.
enum Attempt {
    Failed(TopicConfigError),
    Wire(WireError),
}

async fn describe(
    broker: &str,
    client_id: &str,
    auth: &BrokerAuth,
    topic: &str,
) -> Result<Option<usize>, Attempt> {
    let mut conn = BrokerConnection::open(broker, client_id, auth)
        .await
        .map_err(Attempt::Wire)?;
    let version = conn
        .version(
            ApiKey::DescribeConfigs,
            "DescribeConfigs",
            DESCRIBE_CONFIGS_VERSIONS,
        )
        .map_err(|source| {
            Attempt::Failed(TopicConfigError::Unsupported {
                topic: topic.to_owned(),
                source,
            })
        })?;
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str(MAX_MESSAGE_BYTES)])),
    ]);
    let response = conn.call(&request, version).await.map_err(Attempt::Wire)?;
    let Some(result) = response
        .results
        .into_iter()
        .find(|r| r.resource_name.as_str() == topic)
    else {
        return Ok(None);
    };
    if result.error_code != 0 {
        return Err(Attempt::Failed(TopicConfigError::Kafka {
            topic: topic.to_owned(),
            code: result.error_code,
            name: error_name(result.error_code),
            message: result
                .error_message
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
        }));
    }
    let value = result
        .configs
        .into_iter()
        .find(|c| c.name.as_str() == MAX_MESSAGE_BYTES)
        .and_then(|c| c.value);
    match value {
        None => Ok(None),
        Some(v) => v.as_str().trim().parse::<usize>().map(Some).map_err(|_| {
            Attempt::Failed(TopicConfigError::NotANumber {
                topic: topic.to_owned(),
                key: MAX_MESSAGE_BYTES,
                value: v.to_string(),
            })
        }),
    }
}
