//! Records produced exactly as given — headers in their order, repeated keys, keys that are
//! not UTF-8, null values — over this service's own connection to the partition's leader:
//! rskafka's records hold headers in a map of strings. A dead letter keeps the request it
//! stands for this way (the README promises it untouched).

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::cluster::ClusterMap;
use super::record_batch::{self, Codec, Record, RecordBatch};
use super::wire::{BrokerConnection, WireError, error_name};

/// v3 is the first with record batches (v2); v10+ bring nothing needed here.
const PRODUCE_VERSIONS: RangeInclusive<i16> = 3..=9;
/// How long a leader waits for the in-sync replicas before it answers.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// How long an answer may take: the leader's own wait and a margin.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a record was not written.
#[derive(Debug)]
pub(super) enum Unwritten {
    /// The broker refused it as too large.
    TooLarge,
    /// Sending the same record again cannot help (a refusal, a connection set up wrongly).
    Refused(String),
    /// Worth sending again (leader moved, broker away, ...).
    Retry(String),
    /// The topic does not exist (deleted while the service runs): worth sending again once it
    /// is created.
    TopicMissing,
}

/// Writes single records verbatim to the partitions of one topic.
#[derive(Debug)]
pub(super) struct VerbatimProducer {
    topic: String,
    /// The brokers and who leads which partition.
    cluster: ClusterMap,
    /// node id -> connection, made on first use.
    connections: HashMap<i32, BrokerConnection>,
    /// Codec of every batch (the producer's `compression_type`).
    codec: Codec,
}

impl VerbatimProducer {
    pub(super) fn new(topic: &str, cluster: ClusterMap, codec: Codec) -> VerbatimProducer {
        VerbatimProducer {
            topic: topic.to_owned(),
            cluster,
            connections: HashMap::new(),
            codec,
        }
    }

    /// Writes `record` alone in one batch to `partition` with acks=all; returns its offset.
    pub(super) async fn send(&mut self, partition: i32, record: Record) -> Result<i64, Unwritten> {
        // Offset 0: the leader assigns the real one.
        let batch = RecordBatch::plain(
            0,
            self.codec,
            vec![Record {
                offset: 0,
                ..record
            }],
        );
        let bytes = record_batch::encode(&batch)
            .map_err(|e| Unwritten::Refused(format!("the record cannot be encoded: {e}")))?;
        let key = (self.topic.clone(), partition);
        let result = self.send_batch(partition, Bytes::from(bytes)).await;
        if matches!(result, Err(Unwritten::Retry(_) | Unwritten::TopicMissing)) {
            self.cluster.forget(&key);
        }
        result
    }

    async fn send_batch(&mut self, partition: i32, bytes: Bytes) -> Result<i64, Unwritten> {
        let key = (self.topic.clone(), partition);
        let leader = match self.cluster.leader(&key) {
            Some(leader) => leader,
            None => {
                match self.cluster.refresh(&[&self.topic]).await {
                    Err(e) => return Err(Unwritten::Refused(e.to_string())),
                    Ok(Err(why)) => return Err(Unwritten::Retry(format!("metadata: {why}"))),
                    Ok(Ok(missing)) if missing.contains(&self.topic) => {
                        return Err(Unwritten::TopicMissing);
                    }
                    Ok(Ok(_)) => {}
                }
                self.cluster
                    .leader(&key)
                    .ok_or_else(|| Unwritten::Retry("the partition has no leader".into()))?
            }
        };
        if !self.connections.contains_key(&leader) {
            let conn = self.cluster.connect(leader).await.map_err(lost)?;
            self.connections.insert(leader, conn);
        }
        let conn = self.connections.get_mut(&leader).expect("inserted above");
        let version = conn
            .version(ApiKey::Produce, "Produce", PRODUCE_VERSIONS)
            .map_err(|e| Unwritten::Refused(e.to_string()))?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(bytes)),
                    ]),
            ]);
        // A leader that stops answering without closing must not hold the record for good.
        let answered = tokio::time::timeout(ANSWER_WAIT, conn.call(&request, version)).await;
        let response = match answered {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.connections.remove(&leader);
                return Err(lost(e));
            }
            Err(_) => {
                self.connections.remove(&leader);
                return Err(Unwritten::Retry(format!(
                    "no answer within {ANSWER_WAIT:?}"
                )));
            }
        };
        let answer = response
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .find(|p| p.index == partition)
            .ok_or_else(|| Unwritten::Retry("the answer leaves the partition out".into()))?;
        partition_answer(answer.error_code).map(|()| answer.base_offset)
    }
}

/// A connection that failed or could not be made.
fn lost(e: WireError) -> Unwritten {
    match e {
        WireError::Security(e) => Unwritten::Refused(e.to_string()),
        other => Unwritten::Retry(other.to_string()),
    }
}

/// What the leader's answer `code` means for the record.
fn partition_answer(code: i16) -> Result<(), Unwritten> {
    let Some(error) = ResponseError::try_from_code(code) else {
        return Ok(());
    };
    match error {
        ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
            Err(Unwritten::TooLarge)
        }
        ResponseError::UnknownTopicOrPartition => Err(Unwritten::TopicMissing),
        e if e.is_retriable() || e == ResponseError::NotLeaderOrFollower => {
            Err(Unwritten::Retry(error_name(code)))
        }
        _ => Err(Unwritten::Refused(error_name(code))),
    }
}
