//! Producing responses and dead letters: acks=all (rskafka's only mode), awaited per record, so
//! a request's offset counts as done only when its response is durable (design decision 4).
//!
//! A keyed record goes where Java's default partitioner puts it (murmur2 of the key), so a
//! response lands on the same partition any Kafka client would choose for that key; keyless
//! records are spread round robin.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rskafka::client::Client;
use rskafka::client::partition::Compression;
use rskafka::client::producer::aggregator::RecordAggregator;
use rskafka::client::producer::{BatchProducer, BatchProducerBuilder};
use rskafka::record::Record;

use super::KafkaError;

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), seed 0x9747b28c.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Produces to one topic; cheap to share between execution tasks.
#[derive(Debug)]
pub struct ResponseProducer {
    client: Arc<Client>,
    topic: String,
    partitions: i32,
    linger: Duration,
    compression: Compression,
    producers: Mutex<HashMap<i32, Arc<BatchProducer<RecordAggregator>>>>,
    round_robin: AtomicUsize,
}

/// Batches never exceed this; Kafka's default message size limit is about 1 MiB.
const MAX_BATCH_BYTES: usize = 900 * 1024;

impl ResponseProducer {
    pub async fn new(
        client: Arc<Client>,
        topic: impl Into<String>,
        linger: Duration,
        compression: Compression,
    ) -> Result<ResponseProducer, KafkaError> {
        let topic = topic.into();
        let partitions = super::partition_count(&client, &topic)
            .await?
            .ok_or_else(|| KafkaError::NoSuchTopic {
                topic: topic.clone(),
            })?;
        Ok(ResponseProducer {
            client,
            topic,
            partitions,
            linger,
            compression,
            producers: Mutex::new(HashMap::new()),
            round_robin: AtomicUsize::new(0),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    async fn producer(
        &self,
        partition: i32,
    ) -> Result<Arc<BatchProducer<RecordAggregator>>, KafkaError> {
        if let Some(p) = self.producers.lock().expect("producer map").get(&partition) {
            return Ok(p.clone());
        }
        let pc = super::partition_client(&self.client, &self.topic, partition).await?;
        let producer = Arc::new(
            BatchProducerBuilder::new(Arc::new(pc))
                .with_linger(self.linger)
                .with_compression(self.compression)
                .build(RecordAggregator::new(MAX_BATCH_BYTES)),
        );
        Ok(self.producer_entry(partition, producer))
    }

    fn producer_entry(
        &self,
        partition: i32,
        producer: Arc<BatchProducer<RecordAggregator>>,
    ) -> Arc<BatchProducer<RecordAggregator>> {
        self.producers
            .lock()
            .expect("producer map")
            .entry(partition)
            .or_insert(producer)
            .clone()
    }

    /// Produces one record and waits for Kafka's acknowledgement; returns (partition, offset).
    /// Transient trouble (a broker restarting, a leader moving) is retried inside; an error that
    /// [`KafkaError::is_permanent`] will not go away by sending the same record again.
    pub async fn send(
        &self,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: BTreeMap<String, Vec<u8>>,
    ) -> Result<(i32, i64), KafkaError> {
        let partition = match &key {
            Some(k) => partition_for_key(k, self.partitions),
            None => {
                (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions as usize) as i32
            }
        };
        let producer = self.producer(partition).await?;
        let record = Record {
            key,
            value,
            headers,
            timestamp: Utc::now(),
        };
        let offset = producer
            .produce(record)
            .await
            .map_err(|source| KafkaError::Produce {
                topic: self.topic.clone(),
                partition,
                source,
            })?;
        Ok((partition, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of the Java client's `Utils.murmur2` (its own tests' cases, and short keys for the
    /// 1-3 byte tails, computed with the kafka-clients 4.1 jar).
    #[test]
    fn murmur2_matches_kafkas_java_client() {
        let cases: [(&[u8], i32); 11] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"a", -1563381124),
            (b"ab", 316155434),
            (b"abc", 479470107),
            (b"", 275646681),
            (b"abcde", 461995741),
            (b"exec_job_1", -961783336),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }
}
