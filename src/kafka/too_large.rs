//! A record too large to produce, and which limit it ran into: what the producer refuses with,
//! and what the failure response that replaces it explains.

use super::topic_config::MAX_MESSAGE_BYTES;

/// The limit a record ran into, which decides what raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// The producer's `max_request_size`.
    MaxRequestSize,
    /// The topic's `max.message.bytes`, as read from the brokers.
    TopicMaxMessageBytes,
    /// Kafka refused the batch as too large, with limits this producer did not know.
    Broker,
}

/// A record that cannot be produced because it is too large; says by how much and what to raise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.explain())]
pub struct RecordTooLarge {
    /// The topic it was for.
    pub topic: String,
    /// The record batch holding it alone, as Kafka counts it (after compression, if any).
    pub bytes: usize,
    /// The codec `bytes` was measured after, if any.
    pub compression: Option<&'static str>,
    /// The limit it exceeds (for [`SizeLimit::Broker`]: the largest limit this producer knew).
    pub limit: usize,
    /// Which limit that is, which decides what raises it.
    pub exceeded: SizeLimit,
    /// The topic's `max.message.bytes`, when known: raising `max_request_size` past it is
    /// pointless.
    pub topic_limit: Option<usize>,
    /// The producer's `max_request_size`, the other limit to raise.
    pub max_request_size: usize,
}

impl RecordTooLarge {
    fn explain(&self) -> String {
        let size = match self.compression {
            Some(codec) => format!("{} bytes after {codec} compression", self.bytes),
            None => format!("{} bytes", self.bytes),
        };
        let topic = &self.topic;
        let raise_topic = format!(
            "the topic's {MAX_MESSAGE_BYTES} (kafka-configs.sh --alter --entity-type topics \
             --entity-name {topic} --add-config {MAX_MESSAGE_BYTES}=<bytes>)"
        );
        match self.exceeded {
            SizeLimit::MaxRequestSize => {
                let also = match self.topic_limit {
                    Some(t) if t < self.bytes => format!(", and {raise_topic}, now {t}"),
                    _ => String::new(),
                };
                format!(
                    "the record for {topic} is {size}, more than max_request_size ({} bytes) \
                     allows; raise max_request_size in HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS{also}",
                    self.limit
                )
            }
            SizeLimit::TopicMaxMessageBytes => {
                let also = if self.max_request_size < self.bytes {
                    format!(
                        ", and max_request_size in HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS, now {}",
                        self.max_request_size
                    )
                } else {
                    String::new()
                };
                format!(
                    "the record for {topic} is {size}, more than the topic's {MAX_MESSAGE_BYTES} \
                     ({} bytes) allows; raise {raise_topic}{also}",
                    self.limit
                )
            }
            SizeLimit::Broker => format!(
                "Kafka refused the record for {topic} ({size}) as too large; raise {raise_topic} \
                 (and the brokers' message.max.bytes if the topic has no own limit)"
            ),
        }
    }
}
