//! Reading a topic from its current end on, all partitions at once: what a console consumer
//! started before a request is produced sees. The `exec` command finds its response this way.

use std::collections::BTreeMap;
use std::sync::Arc;

use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, PartitionClient};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{partition_client, partition_count};
use super::consumer::{Fetched, fetch};
use super::error::KafkaError;

/// One record read from the tail of a topic.
#[derive(Debug, Clone)]
pub struct TailRecord {
    /// Where it was read.
    pub partition: i32,
    /// Its offset in the partition, so that a reader can tell repeats and order.
    pub offset: i64,
    /// The record's key as produced.
    pub key: Option<Vec<u8>>,
    /// The record's value as produced; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The record's headers as produced (`hd-job-id`, `content-type`, ...).
    pub headers: BTreeMap<String, Vec<u8>>,
}

/// The records of a topic from the moment [`TopicTail::from_end`] returned.
#[derive(Debug)]
pub struct TopicTail {
    /// Records of every partition as they arrive, or the error that ended a partition's loop.
    records: mpsc::Receiver<Result<TailRecord, KafkaError>>,
    /// One fetch loop per partition; aborted when the tail is dropped.
    loops: JoinSet<()>,
}

/// How long one fetch waits for records to arrive.
const MAX_WAIT_MS: i32 = 500;
/// Large enough for the largest response a topic may hold.
const MAX_BYTES: i32 = 64 << 20;

impl TopicTail {
    /// Starts reading every partition of `topic` at its current end.
    pub async fn from_end(client: &Arc<Client>, topic: &str) -> Result<TopicTail, KafkaError> {
        let partitions =
            partition_count(client, topic)
                .await?
                .ok_or_else(|| KafkaError::NoSuchTopic {
                    topic: topic.to_owned(),
                })?;
        let (tx, records) = mpsc::channel(64);
        let mut loops = JoinSet::new();
        for partition in 0..partitions {
            let pc = partition_client(client, topic, partition).await?;
            let offset =
                pc.get_offset(OffsetAt::Latest)
                    .await
                    .map_err(|source| KafkaError::Client {
                        context: format!("end offset of {topic}/{partition}"),
                        source,
                    })?;
            loops.spawn(follow(pc, topic.to_owned(), offset, tx.clone()));
        }
        Ok(TopicTail { records, loops })
    }

    /// The next record of any partition; an error when a partition cannot be read (rskafka has
    /// retried what can be retried by then). `None` once every partition failed.
    pub async fn next(&mut self) -> Option<Result<TailRecord, KafkaError>> {
        self.records.recv().await
    }
}

impl Drop for TopicTail {
    fn drop(&mut self) {
        self.loops.abort_all();
    }
}

async fn follow(
    pc: PartitionClient,
    topic: String,
    mut offset: i64,
    tx: mpsc::Sender<Result<TailRecord, KafkaError>>,
) {
    let partition = pc.partition();
    loop {
        let records = match fetch(&pc, offset, MAX_BYTES, MAX_WAIT_MS).await {
            Ok(Fetched::Records(records)) => records,
            Ok(Fetched::Marker) => {
                offset += 1;
                continue;
            }
            Ok(Fetched::Undecodable(batch)) => {
                let _ = tx
                    .send(Err(KafkaError::Undecodable {
                        topic,
                        partition,
                        offset,
                        reason: batch.reason,
                    }))
                    .await;
                return;
            }
            Err(source) => {
                let _ = tx
                    .send(Err(KafkaError::Client {
                        context: format!("fetching {topic}/{partition} at {offset}"),
                        source,
                    }))
                    .await;
                return;
            }
        };
        // A fetch returns whole batches, which may start before the asked offset.
        let from = offset;
        for r in records.into_iter().filter(|r| r.offset >= from) {
            offset = r.offset + 1;
            let record = TailRecord {
                partition,
                offset: r.offset,
                key: r.record.key,
                value: r.record.value,
                headers: r.record.headers,
            };
            if tx.send(Ok(record)).await.is_err() {
                return;
            }
        }
    }
}
