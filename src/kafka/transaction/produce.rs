//! Produce requests of a transactional producer: one record batch per partition, marked
//! transactional, with the producer's id, epoch and per-partition sequence numbers, sent to
//! the partition's leader with acks=all. rskafka's producer cannot carry a producer id, so this
//! speaks Produce itself (kafka-protocol's codec and record batch encoder) over this service's
//! own broker connections.
//!
//! A batch whose answer is lost is sent again with the same sequence numbers: the leader
//! recognises a repeat and does not write it twice.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, TopicName, TransactionalId,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::calls::ProducerIdentity;
use crate::backoff::Backoff;
use crate::config;
use crate::kafka::cluster::{ClusterMap, PartitionKey};
use crate::kafka::producer::PreparedRecord;
use crate::kafka::record_batch::{self, Codec, Header, Record, RecordBatch};
use crate::kafka::security::BrokerAuth;
use crate::kafka::wire::{BrokerConnection, WireError, error_name};

/// v3+ carries the transactional id; v12+ would mean transaction version 2, v13 topic ids.
const PRODUCE_VERSIONS: RangeInclusive<i16> = 3..=11;
/// How long a leader waits for the in-sync replicas before it answers.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// The records of one partition in one transaction.
#[derive(Debug)]
pub struct PartitionBatch {
    /// The topic written to (responses, dead letters).
    pub topic: String,
    /// The partition written to; its leader gets the batch.
    pub partition: i32,
    /// The sequence number of the first record.
    pub base_sequence: i32,
    /// The records, in order; their sequence numbers follow `base_sequence`.
    pub records: Vec<PreparedRecord>,
}

/// Why a transaction's records could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The leader refused the batch as too large for the topic.
    #[error("{topic}/{partition}: the record batch is too large for the topic ({name})")]
    TooLarge {
        /// The topic written to.
        topic: String,
        /// The partition whose batch was refused; it gets one record per batch from then on.
        partition: i32,
        /// Kafka's error name (`MESSAGE_TOO_LARGE`, `RECORD_LIST_TOO_LARGE`).
        name: String,
    },
    /// The transaction cannot commit: abort it (fencing shows when the producer is initialised
    /// again).
    #[error("{topic}/{partition}: Produce failed with Kafka error {code} ({name})")]
    Refused {
        /// The topic written to.
        topic: String,
        /// The partition whose batch was refused.
        partition: i32,
        /// Kafka's error code.
        code: i16,
        /// Its name, for the log.
        name: String,
    },
    /// Brokers unreachable or leaders unknown until the deadline.
    #[error("producing gave up after {waited:?}: {last}")]
    OutOfTime {
        /// How long producing was tried.
        waited: Duration,
        /// The last reason a partition could not be written.
        last: String,
    },
    /// The connection cannot be set up as configured (credentials, certificates).
    #[error("{0}")]
    Security(String),
}

/// The partition leaders of the topics produced to, and a connection to each.
#[derive(Debug)]
pub struct Leaders {
    /// Codec of every batch (`compression_type`): none, gzip or snappy.
    compression: Codec,
    /// Brokers and partition leaders (Metadata).
    cluster: ClusterMap,
    connections: HashMap<i32, BrokerConnection>,
}

/// Kafka's codes that a repeat of the same batch (to the leader as it is then) can get past.
fn retriable(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
                | ResponseError::NotLeaderOrFollower
                | ResponseError::RequestTimedOut
                | ResponseError::NetworkException
                | ResponseError::NotEnoughReplicas
                | ResponseError::NotEnoughReplicasAfterAppend
                | ResponseError::KafkaStorageError
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::ConcurrentTransactions
        )
    )
}

/// What the leader's answer `code` for the batch of `key` means: `Ok(None)` written,
/// `Ok(Some(why))` worth sending again, `Err` the transaction cannot commit.
fn partition_answer(key: &PartitionKey, code: i16) -> Result<Option<String>, ProduceError> {
    match code {
        0 => Ok(None),
        // The leader had this batch already: a repeat of an answer that was lost.
        c if c == ResponseError::DuplicateSequenceNumber.code() => Ok(None),
        c if retriable(c) => Ok(Some(format!("{}/{}: {}", key.0, key.1, error_name(c)))),
        c if c == ResponseError::MessageTooLarge.code()
            || c == ResponseError::RecordListTooLarge.code() =>
        {
            Err(ProduceError::TooLarge {
                topic: key.0.clone(),
                partition: key.1,
                name: error_name(c),
            })
        }
        c => Err(ProduceError::Refused {
            topic: key.0.clone(),
            partition: key.1,
            code: c,
            name: error_name(c),
        }),
    }
}

impl Leaders {
    /// Knows no leader yet: the first [`Leaders::produce`] asks `bootstrap` for them.
    pub fn new(
        bootstrap: Vec<String>,
        client_id: &str,
        auth: BrokerAuth,
        compression: config::Compression,
    ) -> Leaders {
        Leaders {
            compression: match compression {
                config::Compression::Gzip => Codec::Gzip,
                config::Compression::Snappy => Codec::Snappy,
                // Refused with exactly-once when the configuration is read.
                _ => Codec::None,
            },
            cluster: ClusterMap::new(bootstrap, client_id, auth),
            connections: HashMap::new(),
        }
    }

    /// The topics of `topics` the brokers say do not exist (deleted while the service runs);
    /// `Ok(Err(why))` when no broker answered.
    pub async fn missing_topics(
        &mut self,
        topics: &[&str],
    ) -> Result<Result<Vec<String>, String>, ProduceError> {
        self.cluster
            .refresh(topics)
            .await
            .map_err(|e| ProduceError::Security(e.to_string()))
    }

    /// Writes `batches` (one per partition) in the transaction of `transactional_id`, retrying
    /// what a repeat can get past until `deadline`.
    pub async fn produce(
        &mut self,
        transactional_id: &str,
        who: ProducerIdentity,
        batches: &[PartitionBatch],
        deadline: Instant,
    ) -> Result<(), ProduceError> {
        let started = Instant::now();
        let encoded = batches
            .iter()
            .map(|b| {
                encode(b, who, self.compression)
                    .map(|bytes| ((b.topic.clone(), b.partition), bytes))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let mut remaining: Vec<PartitionKey> = encoded.keys().cloned().collect();
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        let mut last = String::new();
        while !remaining.is_empty() {
            self.look_up_missing_leaders(&remaining, &mut last).await?;
            let (by_leader, mut still) = self.by_leader(&remaining);
            for (leader, keys) in by_leader {
                let again = self
                    .send_to_leader(
                        leader,
                        transactional_id,
                        keys,
                        &encoded,
                        deadline,
                        &mut last,
                    )
                    .await?;
                still.extend(again);
            }
            remaining = still;
            if !remaining.is_empty() {
                let pause = backoff.next_pause();
                if Instant::now() + pause >= deadline {
                    return Err(ProduceError::OutOfTime {
                        waited: started.elapsed(),
                        last,
                    });
                }
                tracing::debug!("produce retried in {pause:?}: {last}");
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    /// Asks for the leaders of the topics of `remaining` if any of its partitions has none
    /// known; `last` says why when no broker answered (the partitions then wait for the next
    /// round).
    async fn look_up_missing_leaders(
        &mut self,
        remaining: &[PartitionKey],
        last: &mut String,
    ) -> Result<(), ProduceError> {
        if remaining.iter().all(|k| self.cluster.leader(k).is_some()) {
            return Ok(());
        }
        let mut topics: Vec<&str> = remaining.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        match self.missing_topics(&topics).await? {
            Err(e) => *last = format!("metadata: {e}"),
            Ok(missing) if !missing.is_empty() => {
                *last = format!("topic(s) {} do not exist", missing.join(", "));
            }
            Ok(_) => {}
        }
        Ok(())
    }

    /// The partitions of `remaining` grouped by their known leader (one Produce request each),
    /// and those whose leader is not known, which wait for the next round.
    fn by_leader(
        &self,
        remaining: &[PartitionKey],
    ) -> (BTreeMap<i32, Vec<PartitionKey>>, Vec<PartitionKey>) {
        let mut by_leader: BTreeMap<i32, Vec<PartitionKey>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for key in remaining {
            match self.cluster.leader(key) {
                Some(leader) => by_leader.entry(leader).or_default().push(key.clone()),
                None => unknown.push(key.clone()),
            }
        }
        (by_leader, unknown)
    }

    /// Sends the batches of `keys` to their `leader` and returns the partitions to send again
    /// (their leader forgotten, to be asked for anew; `last` says why). `Err` when the
    /// transaction cannot commit.
    async fn send_to_leader(
        &mut self,
        leader: i32,
        transactional_id: &str,
        keys: Vec<PartitionKey>,
        encoded: &HashMap<PartitionKey, Bytes>,
        deadline: Instant,
        last: &mut String,
    ) -> Result<Vec<PartitionKey>, ProduceError> {
        // A leader that stops answering (without closing) must not hold the transaction past
        // its budget.
        let sent = tokio::time::timeout_at(
            deadline,
            self.send(leader, transactional_id, &keys, encoded),
        )
        .await
        .unwrap_or_else(|_| Err(WireError::Codec("no answer".into())));
        let answers = match sent {
            Ok(answers) => answers,
            Err(WireError::Security(e)) => return Err(ProduceError::Security(e.to_string())),
            Err(e) => {
                *last = format!("broker {leader}: {e}");
                self.connections.remove(&leader);
                for key in &keys {
                    self.cluster.forget(key);
                }
                return Ok(keys);
            }
        };
        let mut again = Vec::new();
        for (key, code) in answers {
            if let Some(why) = partition_answer(&key, code)? {
                *last = why;
                self.cluster.forget(&key);
                again.push(key);
            }
        }
        Ok(again)
    }

    /// One Produce request to `leader` with the batches of `keys`; the error code per partition.
    async fn send(
        &mut self,
        leader: i32,
        transactional_id: &str,
        keys: &[(String, i32)],
        encoded: &HashMap<(String, i32), Bytes>,
    ) -> Result<Vec<((String, i32), i16)>, WireError> {
        if !self.connections.contains_key(&leader) {
            let conn = self.cluster.connect(leader).await?;
            self.connections.insert(leader, conn);
        }
        let conn = self.connections.get_mut(&leader).expect("inserted above");
        let version = conn
            .version(ApiKey::Produce, "Produce", PRODUCE_VERSIONS)
            .map_err(|e| WireError::Codec(e.to_string()))?;
        let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
        for key in keys {
            topics.entry(key.0.as_str()).or_default().push(
                PartitionProduceData::default()
                    .with_index(key.1)
                    .with_records(encoded.get(key).cloned()),
            );
        }
        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                transactional_id.to_owned(),
            ))))
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partition_data(partitions)
                    })
                    .collect(),
            );
        let response = conn.call(&request, version).await?;
        let mut answers = Vec::new();
        for t in response.responses {
            for p in t.partition_responses {
                answers.push(((t.name.0.to_string(), p.index), p.error_code));
            }
        }
        // A partition the answer leaves out was not written.
        for key in keys {
            if !answers.iter().any(|(k, _)| k == key) {
                answers.push((key.clone(), ResponseError::NetworkException.code()));
            }
        }
        Ok(answers)
    }
}

/// The record batch (v2) of `batch`: transactional, with the producer's identity and the
/// sequence numbers base_sequence, base_sequence + 1, ... Written with this service's own
/// encoder: a dead letter's headers go exactly as the request had them.
fn encode(
    batch: &PartitionBatch,
    who: ProducerIdentity,
    codec: Codec,
) -> Result<Bytes, ProduceError> {
    let records: Vec<Record> = batch
        .records
        .iter()
        .enumerate()
        .map(|(i, p)| Record {
            offset: i as i64,
            timestamp: p.record.timestamp.timestamp_millis(),
            key: p.record.key.clone(),
            value: p.record.value.clone(),
            headers: p.exact_headers.clone().unwrap_or_else(|| {
                p.record
                    .headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: k.clone().into_bytes(),
                        value: Some(v.clone()),
                    })
                    .collect()
            }),
        })
        .collect();
    let refused = |why: String| ProduceError::Refused {
        topic: batch.topic.clone(),
        partition: batch.partition,
        code: -1,
        name: format!("the record batch cannot be encoded: {why}"),
    };
    let last_offset_delta =
        i32::try_from(records.len().saturating_sub(1)).map_err(|e| refused(e.to_string()))?;
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let batch = RecordBatch {
        base_offset: 0,
        partition_leader_epoch: -1,
        codec,
        log_append_time: false,
        transactional: true,
        control: false,
        delete_horizon: false,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: who.id,
        producer_epoch: who.epoch,
        base_sequence: batch.base_sequence,
        records,
    };
    record_batch::encode(&batch)
        .map(Bytes::from)
        .map_err(|e| refused(e.to_string()))
}
