//! Producing responses and dead letters: acks=all (rskafka's only mode), awaited per record, so
//! a request's offset counts as done only when its response is durable (design decision 4).
//!
//! A keyed record goes where Java's default partitioner puts it (murmur2 of the key), so a
//! response lands on the same partition any Kafka client would choose for that key; keyless
//! records are spread round robin.
//!
//! Sizes follow Kafka's limits: a record batch, measured after compression as the broker
//! measures it, may be neither larger than the producer's `max_request_size` (aiokafka's
//! default, 1 MiB) nor than the topic's `max.message.bytes` (read from the brokers at start).
//! Records are batched up to that limit; one that needs the whole limit (or compression to
//! fit) goes alone. A record that cannot fit is refused with [`RecordTooLarge`], which says its
//! size, the limit and what raises it, so the caller can answer with a failure response instead.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rskafka::client::Client;
use rskafka::client::partition::Compression;
use rskafka::client::producer::aggregator::{
    self, Aggregator, RecordAggregatorStatusDeaggregator, TryPush,
};
use rskafka::client::producer::{BatchProducer, BatchProducerBuilder};
use rskafka::record::Record;

use super::cluster::ClusterMap;
use super::error::KafkaError;
use super::record_batch::{self, Codec, Header};
use super::security::BrokerAuth;
use super::too_large::{RecordTooLarge, SizeLimit};
use super::topic_config::{self, MAX_MESSAGE_BYTES};
use super::verbatim::{Unwritten, VerbatimProducer};
use crate::config;

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

/// How responses are produced: hetida's producer options that shape records and batches.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Brokers asked for the topic's `max.message.bytes`.
    pub bootstrap: Vec<String>,
    /// Sent with the topic-config request, as with every other.
    pub client_id: String,
    /// How long a batch waits for more records (`linger_ms`).
    pub linger: Duration,
    /// Codec of the batches (`compression_type`).
    pub compression: config::Compression,
    /// No record batch is larger, after compression (`max_request_size`).
    pub max_request_size: usize,
    /// TLS and SASL for the topic-config request.
    pub auth: BrokerAuth,
}

impl ProducerSettings {
    /// The settings of the configured producer (hetida's producer options).
    pub fn from_config(k: &config::KafkaSettings, auth: BrokerAuth) -> ProducerSettings {
        ProducerSettings {
            bootstrap: k.producer_bootstrap.clone(),
            client_id: k.client_id.clone(),
            linger: k.linger,
            compression: k.compression,
            max_request_size: k.max_request_size,
            auth,
        }
    }
}

/// How long reading the topic's `max.message.bytes` may take before the producer starts without
/// it (the broker then still enforces it).
const TOPIC_CONFIG_TIMEOUT: Duration = Duration::from_secs(10);
/// A record batch's header (v2): base offset 8, length 4, leader epoch 4, magic 1, crc 4,
/// attributes 2, last offset delta 4, first and max timestamp 16, producer id 8, producer epoch
/// 2, base sequence 4, record count 4. Kafka counts it against `max.message.bytes`.
const BATCH_HEADER_BYTES: usize = 61;
/// What a record may take beyond its lone encoding inside a batch: its offset and timestamp
/// deltas as varints.
const IN_BATCH_SLACK: usize = 10;

/// The largest record batch this producer sends to its topic.
#[derive(Debug, Clone, Copy)]
struct BatchLimit {
    /// The smaller of the two limits, in bytes of a record batch.
    bytes: usize,
    /// Which of the two it is.
    exceeded: SizeLimit,
    /// The topic's `max.message.bytes`, when the brokers told.
    topic: Option<usize>,
    /// The producer's `max_request_size`.
    max_request_size: usize,
}

impl BatchLimit {
    fn new(max_request_size: usize, topic: Option<usize>) -> BatchLimit {
        match topic {
            Some(t) if t < max_request_size => BatchLimit {
                bytes: t,
                exceeded: SizeLimit::TopicMaxMessageBytes,
                topic,
                max_request_size,
            },
            _ => BatchLimit {
                bytes: max_request_size,
                exceeded: SizeLimit::MaxRequestSize,
                topic,
                max_request_size,
            },
        }
    }

    /// Bytes of records a batch of several may hold: what is left after the header, less a
    /// margin for the little compression can add to text that does not compress. A batch the
    /// broker still refuses is sent again record by record.
    fn shared_budget(&self, compression: Compression) -> usize {
        let margin = match compression {
            Compression::NoCompression => 0,
            _ => self.bytes / 64,
        };
        self.bytes.saturating_sub(BATCH_HEADER_BYTES + margin)
    }
}

/// Bytes `record` takes in a record batch (v2) with offset and timestamp deltas of 0.
fn encoded_len(record: &Record) -> usize {
    fn varint_len(v: i64) -> usize {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut n = 1;
        while z >= 0x80 {
            z >>= 7;
            n += 1;
        }
        n
    }
    fn bytes_len(b: Option<&[u8]>) -> usize {
        match b {
            Some(b) => varint_len(b.len() as i64) + b.len(),
            None => varint_len(-1),
        }
    }
    let headers: usize = record
        .headers
        .iter()
        .map(|(k, v)| bytes_len(Some(k.as_bytes())) + bytes_len(Some(v)))
        .sum();
    let body = 1 // attributes
        + varint_len(0) // timestamp delta
        + varint_len(0) // offset delta
        + bytes_len(record.key.as_deref())
        + bytes_len(record.value.as_deref())
        + varint_len(record.headers.len() as i64)
        + headers;
    varint_len(body as i64) + body
}

/// The record as the batch's records section holds it, for measuring its compressed size.
fn encode(record: &Record) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
            None => varint(out, -1),
        }
    }
    let len = encoded_len(record);
    let mut out = Vec::with_capacity(len);
    let body_len = {
        let mut b = Vec::new();
        varint(&mut b, len as i64);
        len - b.len()
    };
    varint(&mut out, body_len as i64);
    out.push(0);
    varint(&mut out, 0);
    varint(&mut out, 0);
    bytes(&mut out, record.key.as_deref());
    bytes(&mut out, record.value.as_deref());
    varint(&mut out, record.headers.len() as i64);
    for (k, v) in &record.headers {
        bytes(&mut out, Some(k.as_bytes()));
        bytes(&mut out, Some(v));
    }
    out
}

/// Bytes a batch holding `record` alone takes as Kafka counts it, and the codec it was measured
/// after. Compressing costs a second compression of the record, so it is done only when the
/// record does not fit uncompressed. lz4 and zstd are not measured: the uncompressed size is the
/// bound there (as aiokafka measures every record).
fn lone_batch_bytes(
    record: &Record,
    compression: Compression,
    limit: usize,
) -> (usize, Option<&'static str>) {
    let plain = BATCH_HEADER_BYTES + encoded_len(record);
    if plain <= limit {
        return (plain, None);
    }
    let compressed = match compression {
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let written = encoder
                .write_all(&encode(record))
                .and_then(|()| encoder.finish());
            written.ok().map(|c| (c.len(), "gzip"))
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(&encode(record))
            .ok()
            .map(|c| (c.len(), "snappy")),
        _ => None,
    };
    match compressed {
        Some((len, codec)) => (BATCH_HEADER_BYTES + len, Some(codec)),
        None => (plain, None),
    }
}

/// A record with the bytes it adds to a batch, and whether it must go alone.
#[derive(Debug)]
pub struct SizedRecord {
    record: Record,
    /// What it adds to a batch (its encoding plus room for its deltas), uncompressed.
    bytes: usize,
    /// It gets a batch of its own: it needs (nearly) the whole limit, or compression, to fit.
    alone: bool,
}

/// Batches records up to a byte budget; a record marked `alone` gets a batch of its own.
/// Unlike rskafka's `RecordAggregator` it never refuses a record into an empty batch: whether a
/// record fits at all is decided before (with its compressed size), not here.
#[derive(Debug)]
struct ResponseAggregator {
    /// Bytes of records a batch of several may hold ([`BatchLimit::shared_budget`]).
    budget: usize,
    /// Bytes of the records in the batch so far.
    bytes: usize,
    /// The batch holds a record that must go alone: nothing joins it.
    alone: bool,
    /// The batch, flushed to one produce request.
    records: Vec<Record>,
}

impl Aggregator for ResponseAggregator {
    type Input = SizedRecord;
    type Tag = usize;
    type StatusDeaggregator = RecordAggregatorStatusDeaggregator;

    fn try_push(
        &mut self,
        input: SizedRecord,
    ) -> Result<TryPush<SizedRecord, usize>, aggregator::Error> {
        if !self.records.is_empty()
            && (self.alone || input.alone || self.bytes + input.bytes > self.budget)
        {
            return Ok(TryPush::NoCapacity(input));
        }
        self.bytes += input.bytes;
        self.alone |= input.alone;
        self.records.push(input.record);
        Ok(TryPush::Aggregated(self.records.len() - 1))
    }

    fn flush(&mut self) -> Result<(Vec<Record>, Self::StatusDeaggregator), aggregator::Error> {
        self.bytes = 0;
        self.alone = false;
        Ok((
            std::mem::take(&mut self.records),
            RecordAggregatorStatusDeaggregator::default(),
        ))
    }
}

/// One record to produce; kept by the caller so that a retry sends the same record.
#[derive(Debug, Clone, Default)]
pub struct OutgoingRecord {
    /// Decides the partition (Java's murmur2); keyless records go round robin.
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record headers, e.g. `hd-job-id`.
    pub headers: BTreeMap<String, Vec<u8>>,
    /// Headers to write exactly as these, in this order, in place of `headers`: a dead letter
    /// keeps the request's (repeated keys, keys that are not UTF-8, null values). Such a
    /// record is produced over this service's own connection, as rskafka's records cannot
    /// hold them.
    pub exact_headers: Option<Vec<Header>>,
}

/// A record checked against its topic's limits, with the partition it goes to.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    /// The topic it goes to.
    pub topic: String,
    /// The partition it goes to: by its key as Java's partitioner picks it, round robin without
    /// one.
    pub partition: i32,
    /// What it adds to a record batch, uncompressed.
    pub bytes: usize,
    /// A record batch holding it alone, as Kafka counts it, and the codec that was measured
    /// after.
    pub lone_bytes: usize,
    /// The codec `lone_bytes` was measured after; `None` when it fits uncompressed (then it is
    /// not compressed to measure), so a too-large message can say which size it means.
    pub codec: Option<&'static str>,
    /// The record to produce.
    pub record: Record,
    /// The headers to write in place of `record`'s, when exact (see
    /// [`OutgoingRecord::exact_headers`]).
    pub exact_headers: Option<Vec<Header>>,
}

/// Whether Kafka refused a batch as too large.
fn refused_as_too_large(e: &rskafka::client::producer::Error) -> bool {
    use rskafka::client::error::{Error as ClientError, ProtocolError as Code};
    matches!(
        e,
        rskafka::client::producer::Error::Client(c) if matches!(
            c.as_ref(),
            ClientError::ServerError {
                protocol_error: Code::MessageTooLarge | Code::RecordListTooLarge,
                ..
            }
        )
    )
}

fn rskafka_compression(c: config::Compression) -> Compression {
    match c {
        config::Compression::None => Compression::NoCompression,
        config::Compression::Gzip => Compression::Gzip,
        config::Compression::Snappy => Compression::Snappy,
        #[cfg(feature = "lz4")]
        config::Compression::Lz4 => Compression::Lz4,
        #[cfg(feature = "zstd")]
        config::Compression::Zstd => Compression::Zstd,
    }
}

/// Counts a record as waiting while it lives (also when the send is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Produces to one topic; cheap to share between execution tasks.
#[derive(Debug)]
pub struct ResponseProducer {
    /// Partition clients are made from it on first use.
    client: Arc<Client>,
    /// The topic every record goes to.
    topic: String,
    /// Partitions of the topic, for the key's partition.
    partitions: i32,
    /// How long a batch waits for more records.
    linger: Duration,
    /// Codec of every batch.
    compression: Compression,
    /// The largest record batch the topic takes from us.
    limit: BatchLimit,
    /// One batching producer per partition, made on first use.
    producers: Mutex<HashMap<i32, Arc<BatchProducer<ResponseAggregator>>>>,
    /// Next partition of a keyless record.
    round_robin: AtomicUsize,
    /// Records in [`send`](ResponseProducer::send) right now: what waits for Kafka in an outage.
    waiting: Arc<AtomicUsize>,
    /// Records with exact headers go this way, one at a time (dead letters: rare).
    verbatim: tokio::sync::Mutex<VerbatimProducer>,
}

impl ResponseProducer {
    /// A producer for `topic`, which must exist. Reads the topic's `max.message.bytes`; when
    /// the brokers do not tell (no permission, an old broker), it starts without it and the
    /// broker's refusal decides.
    pub async fn new(
        client: Arc<Client>,
        topic: impl Into<String>,
        settings: &ProducerSettings,
    ) -> Result<ResponseProducer, KafkaError> {
        let topic = topic.into();
        let partitions = super::client::partition_count(&client, &topic)
            .await?
            .ok_or_else(|| KafkaError::NoSuchTopic {
                topic: topic.clone(),
            })?;
        let topic_limit = match topic_config::max_message_bytes(
            &settings.bootstrap,
            &settings.client_id,
            &settings.auth,
            &topic,
            TOPIC_CONFIG_TIMEOUT,
        )
        .await
        {
            Ok(limit) => limit,
            Err(e) => {
                tracing::warn!(
                    %topic,
                    "the topic's {MAX_MESSAGE_BYTES} is unknown, so Kafka decides which records are too large: {e}"
                );
                None
            }
        };
        let limit = BatchLimit::new(settings.max_request_size, topic_limit);
        tracing::debug!(%topic, limit = limit.bytes, topic_limit = ?topic_limit, "record batch limit");
        let verbatim = VerbatimProducer::new(
            &topic,
            ClusterMap::new(
                settings.bootstrap.clone(),
                &settings.client_id,
                settings.auth.clone(),
            ),
            codec_of(settings.compression),
        );
        Ok(ResponseProducer {
            verbatim: tokio::sync::Mutex::new(verbatim),
            client,
            topic,
            partitions,
            linger: settings.linger,
            compression: rskafka_compression(settings.compression),
            limit,
            producers: Mutex::new(HashMap::new()),
            round_robin: AtomicUsize::new(0),
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The topic it produces to, for log lines and messages.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The largest runtime answer worth reading for a response to this topic: the record batch
    /// limit, times what compression can save (JSON shrinks 4-10x with gzip or snappy; 16x
    /// leaves room), plus room for the response's own fields. A larger answer could not be
    /// delivered, so it is not read at all.
    pub fn largest_useful_answer(&self) -> u64 {
        let factor = match self.compression {
            Compression::NoCompression => 1,
            _ => 16,
        };
        (self.limit.bytes as u64).saturating_mul(factor) + (1 << 20)
    }

    /// What raises [`largest_useful_answer`](Self::largest_useful_answer), for a failure message.
    pub fn limit_advice(&self) -> String {
        let topic_limit = self
            .limit
            .topic
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        format!(
            "the largest response {} takes is {} bytes (max_request_size {} in HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS, the topic's max.message.bytes {topic_limit}){}",
            self.topic,
            self.limit.bytes,
            self.limit.max_request_size,
            if matches!(self.compression, Compression::NoCompression) {
                "; raise them, or compress (compression_type), for larger answers"
            } else {
                "; raise them for larger answers"
            }
        )
    }

    /// How many records are being sent right now (shared, for the outage report).
    pub fn waiting(&self) -> Arc<AtomicUsize> {
        self.waiting.clone()
    }

    async fn producer(
        &self,
        partition: i32,
    ) -> Result<Arc<BatchProducer<ResponseAggregator>>, KafkaError> {
        if let Some(p) = self.producers.lock().expect("producer map").get(&partition) {
            return Ok(p.clone());
        }
        let pc =
            super::client::producing_partition_client(&self.client, &self.topic, partition).await?;
        let producer = Arc::new(
            BatchProducerBuilder::new(Arc::new(pc))
                .with_linger(self.linger)
                .with_compression(self.compression)
                .build(ResponseAggregator {
                    budget: self.limit.shared_budget(self.compression),
                    bytes: 0,
                    alone: false,
                    records: Vec::new(),
                }),
        );
        Ok(self
            .producers
            .lock()
            .expect("producer map")
            .entry(partition)
            .or_insert(producer)
            .clone())
    }

    fn too_large(
        &self,
        bytes: usize,
        compression: Option<&'static str>,
        exceeded: SizeLimit,
    ) -> KafkaError {
        KafkaError::RecordTooLarge(RecordTooLarge {
            topic: self.topic.clone(),
            bytes,
            compression,
            limit: self.limit.bytes,
            exceeded,
            topic_limit: self.limit.topic,
            max_request_size: self.limit.max_request_size,
        })
    }

    /// The partition `outgoing` goes to and the record to send, after checking that it fits
    /// the topic's limits ([`KafkaError::RecordTooLarge`] if not): what [`send`](Self::send)
    /// sends, and what a transaction carries.
    pub fn prepare(&self, outgoing: &OutgoingRecord) -> Result<PreparedRecord, KafkaError> {
        let partition = match &outgoing.key {
            Some(k) => partition_for_key(k, self.partitions),
            None => {
                (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions as usize) as i32
            }
        };
        let record = Record {
            key: outgoing.key.clone(),
            value: outgoing.value.clone(),
            headers: if outgoing.exact_headers.is_some() {
                BTreeMap::new()
            } else {
                outgoing.headers.clone()
            },
            timestamp: Utc::now(),
        };
        // Exact headers are counted uncompressed: an upper bound.
        let exact: usize = outgoing
            .exact_headers
            .iter()
            .flatten()
            .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        let (lone, codec) = lone_batch_bytes(&record, self.compression, self.limit.bytes);
        let lone = lone + exact;
        if lone > self.limit.bytes {
            return Err(self.too_large(lone, codec, self.limit.exceeded));
        }
        Ok(PreparedRecord {
            topic: self.topic.clone(),
            partition,
            bytes: encoded_len(&record) + exact + IN_BATCH_SLACK,
            lone_bytes: lone,
            codec,
            record,
            exact_headers: outgoing.exact_headers.clone(),
        })
    }

    /// Bytes of records one batch to this topic may hold, uncompressed (a record larger than
    /// that goes alone).
    pub fn batch_budget(&self) -> usize {
        self.limit.shared_budget(Compression::NoCompression)
    }

    /// Produces one record and waits for Kafka's acknowledgement; returns (partition, offset).
    /// Transient trouble (a broker restarting, a leader moving) is retried inside; an error that
    /// [`KafkaError::is_permanent`] will not go away by sending the same record again, such as
    /// [`KafkaError::RecordTooLarge`].
    pub async fn send(&self, outgoing: &OutgoingRecord) -> Result<(i32, i64), KafkaError> {
        let _waiting = Waiting::new(&self.waiting);
        let PreparedRecord {
            partition,
            record,
            lone_bytes: lone,
            codec,
            exact_headers,
            ..
        } = self.prepare(outgoing)?;
        if let Some(headers) = exact_headers {
            return self
                .send_verbatim(partition, record, headers, lone, codec)
                .await;
        }
        let budget = self.limit.shared_budget(self.compression);
        let in_batch = encoded_len(&record) + IN_BATCH_SLACK;
        let producer = self.producer(partition).await?;
        let alone = in_batch > budget;
        let first = producer
            .produce(SizedRecord {
                record: record.clone(),
                bytes: in_batch,
                alone,
            })
            .await;
        let result = match first {
            // Refused in the company of others (compression added more than the margin): the
            // record may well fit on its own.
            Err(e) if refused_as_too_large(&e) && !alone => {
                producer
                    .produce(SizedRecord {
                        record,
                        bytes: in_batch,
                        alone: true,
                    })
                    .await
            }
            other => other,
        };
        match result {
            Ok(offset) => Ok((partition, offset)),
            Err(e) if refused_as_too_large(&e) => {
                Err(self.too_large(lone, codec, SizeLimit::Broker))
            }
            Err(source) => Err(KafkaError::Produce {
                topic: self.topic.clone(),
                partition,
                source,
            }),
        }
    }
}

impl ResponseProducer {
    /// Sends `record` with `headers` over this service's own connection (see
    /// [`OutgoingRecord::exact_headers`]).
    async fn send_verbatim(
        &self,
        partition: i32,
        record: Record,
        headers: Vec<Header>,
        lone: usize,
        codec: Option<&'static str>,
    ) -> Result<(i32, i64), KafkaError> {
        let record = record_batch::Record {
            offset: 0,
            timestamp: record.timestamp.timestamp_millis(),
            key: record.key,
            value: record.value,
            headers,
        };
        let sent = self.verbatim.lock().await.send(partition, record).await;
        let (reason, permanent) = match sent {
            Ok(offset) => return Ok((partition, offset)),
            Err(Unwritten::TooLarge) => return Err(self.too_large(lone, codec, SizeLimit::Broker)),
            Err(Unwritten::TopicMissing) => {
                return Err(KafkaError::NoSuchTopic {
                    topic: self.topic.clone(),
                });
            }
            Err(Unwritten::Refused(reason)) => (reason, true),
            Err(Unwritten::Retry(reason)) => (reason, false),
        };
        Err(KafkaError::Verbatim {
            topic: self.topic.clone(),
            partition,
            reason,
            permanent,
        })
    }
}

/// The batch codec of `compression_type`.
fn codec_of(c: config::Compression) -> Codec {
    match c {
        config::Compression::None => Codec::None,
        config::Compression::Gzip => Codec::Gzip,
        config::Compression::Snappy => Codec::Snappy,
        #[cfg(feature = "lz4")]
        config::Compression::Lz4 => Codec::Lz4,
        #[cfg(feature = "zstd")]
        config::Compression::Zstd => Codec::Zstd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Record {
        Record {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
            timestamp: Utc::now(),
        }
    }

    #[test]
    fn the_measured_length_is_the_encoded_length() {
        let long = vec![b'v'; 70_000];
        for r in [
            record(None, None, &[]),
            record(Some(b"k"), Some(b"{}"), &[("hd-job-id", b"abc")]),
            record(
                Some(&[7; 200]),
                Some(&long),
                &[("a", b""), ("b", &[1; 300])],
            ),
        ] {
            assert_eq!(encode(&r).len(), encoded_len(&r), "{r:?}");
        }
        // Length 8 (zigzag 16), attributes, two zero deltas, null key (-1), a 2-byte value, no
        // headers.
        assert_eq!(
            encode(&record(None, Some(b"{}"), &[])),
            vec![16, 0, 0, 0, 1, 4, b'{', b'}', 0]
        );
    }

    #[test]
    fn the_smaller_limit_binds_and_says_which_it_is() {
        let l = BatchLimit::new(1 << 20, Some(1_048_588));
        assert_eq!((l.bytes, l.exceeded), (1 << 20, SizeLimit::MaxRequestSize));
        let l = BatchLimit::new(5 << 20, Some(1_048_588));
        assert_eq!(
            (l.bytes, l.exceeded),
            (1_048_588, SizeLimit::TopicMaxMessageBytes)
        );
        let l = BatchLimit::new(5 << 20, None);
        assert_eq!((l.bytes, l.exceeded), (5 << 20, SizeLimit::MaxRequestSize));
    }

    #[test]
    fn a_record_is_measured_compressed_only_when_it_does_not_fit_plain() {
        let compressible = vec![b'x'; 2_000_000];
        let r = record(None, Some(&compressible), &[]);
        let plain = BATCH_HEADER_BYTES + encoded_len(&r);
        assert_eq!(
            lone_batch_bytes(&r, Compression::Gzip, 3_000_000),
            (plain, None)
        );
        assert_eq!(
            lone_batch_bytes(&r, Compression::NoCompression, 1 << 20),
            (plain, None)
        );
        let (gz, codec) = lone_batch_bytes(&r, Compression::Gzip, 1 << 20);
        assert_eq!(codec, Some("gzip"));
        assert!(gz < 20_000, "{gz}");
        let (sn, codec) = lone_batch_bytes(&r, Compression::Snappy, 1 << 20);
        assert_eq!(codec, Some("snappy"));
        assert!(sn < 200_000, "{sn}");
    }

    fn sized(bytes: usize, alone: bool) -> SizedRecord {
        SizedRecord {
            record: record(None, Some(b"x"), &[]),
            bytes,
            alone,
        }
    }

    #[test]
    fn batches_fill_to_the_budget_and_lone_records_go_by_themselves() {
        let mut a = ResponseAggregator {
            budget: 100,
            bytes: 0,
            alone: false,
            records: Vec::new(),
        };
        assert!(matches!(
            a.try_push(sized(60, false)).unwrap(),
            TryPush::Aggregated(0)
        ));
        assert!(matches!(
            a.try_push(sized(40, false)).unwrap(),
            TryPush::Aggregated(1)
        ));
        assert!(matches!(
            a.try_push(sized(1, false)).unwrap(),
            TryPush::NoCapacity(_)
        ));
        assert_eq!(a.flush().unwrap().0.len(), 2);
        // Larger than the budget, or marked alone: accepted into an empty batch only, and
        // nothing joins it.
        assert!(matches!(
            a.try_push(sized(500, false)).unwrap(),
            TryPush::Aggregated(0)
        ));
        assert!(matches!(
            a.try_push(sized(1, false)).unwrap(),
            TryPush::NoCapacity(_)
        ));
        assert_eq!(a.flush().unwrap().0.len(), 1);
        assert!(matches!(
            a.try_push(sized(1, false)).unwrap(),
            TryPush::Aggregated(0)
        ));
        assert!(matches!(
            a.try_push(sized(1, true)).unwrap(),
            TryPush::NoCapacity(_)
        ));
        assert_eq!(a.flush().unwrap().0.len(), 1);
        assert!(matches!(
            a.try_push(sized(1, true)).unwrap(),
            TryPush::Aggregated(0)
        ));
        assert!(matches!(
            a.try_push(sized(1, false)).unwrap(),
            TryPush::NoCapacity(_)
        ));
    }

    #[test]
    fn a_refusal_names_size_limit_and_what_raises_it() {
        let r = RecordTooLarge {
            topic: "responses".into(),
            bytes: 6_000_123,
            compression: None,
            limit: 1_048_576,
            exceeded: SizeLimit::MaxRequestSize,
            topic_limit: Some(1_048_588),
            max_request_size: 1_048_576,
        };
        let text = r.to_string();
        for part in [
            "6000123 bytes",
            "1048576",
            "max_request_size",
            "max.message.bytes",
            "responses",
        ] {
            assert!(text.contains(part), "{part:?} missing in {text}");
        }
        let r = RecordTooLarge {
            compression: Some("gzip"),
            bytes: 2_000_000,
            limit: 1_048_588,
            exceeded: SizeLimit::TopicMaxMessageBytes,
            max_request_size: 5 << 20,
            ..r
        };
        let text = r.to_string();
        assert!(
            text.contains("2000000 bytes after gzip compression"),
            "{text}"
        );
        assert!(text.contains("--add-config max.message.bytes="), "{text}");
        assert!(!text.contains("max_request_size"), "{text}");
    }

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
