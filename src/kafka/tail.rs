//! Reading a topic from its current end on, all partitions at once: what a console consumer
//! started before a request is produced sees. The `exec` command finds its response this way.

use std::sync::Arc;

use rskafka::client::Client;
use rskafka::client::partition::OffsetAt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{partition_client, partition_count};
use super::cluster::ClusterMap;
use super::error::KafkaError;
use super::leader_fetch::{FetchError, LeaderFetch};
use super::record_batch::{Decoded, Header};
use super::security::BrokerAuth;
use crate::config::IsolationLevel;

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
    /// The record's headers as produced (`hd-job-id`, `content-type`, ...), in order.
    pub headers: Vec<Header>,
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
    /// Starts reading every partition of `topic` at its current end; `bootstrap`, `client_id`
    /// and `auth` are the brokers' the fetches go to (those of `client`).
    pub async fn from_end(
        client: &Arc<Client>,
        topic: &str,
        bootstrap: &[String],
        client_id: &str,
        auth: &BrokerAuth,
    ) -> Result<TopicTail, KafkaError> {
        let cluster = ClusterMap::new(bootstrap.to_vec(), client_id, auth.clone());
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
            // What a read_uncommitted console consumer sees: responses of transactions too.
            let leader = LeaderFetch::new(
                cluster.clone(),
                topic,
                partition,
                IsolationLevel::ReadUncommitted,
                MAX_BYTES,
                MAX_WAIT_MS,
            );
            loops.spawn(follow(
                leader,
                topic.to_owned(),
                partition,
                offset,
                tx.clone(),
            ));
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
    mut leader: LeaderFetch,
    topic: String,
    partition: i32,
    mut offset: i64,
    tx: mpsc::Sender<Result<TailRecord, KafkaError>>,
) {
    loop {
        let mut fetched = match leader.fetch(offset).await {
            Ok(fetched) => fetched,
            Err(e @ (FetchError::Retry(_) | FetchError::OffsetOutOfRange)) => {
                tracing::debug!(%topic, partition, offset, "fetch failed, retrying: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(FetchError::Security(e)) => {
                let _ = tx.send(Err(KafkaError::from(e))).await;
                return;
            }
        };
        for decoded in std::mem::take(&mut fetched.batches) {
            let batch = match decoded {
                Decoded::Batch(batch) => batch,
                Decoded::Unreadable(u) if u.named_offsets(offset).is_empty() => continue,
                Decoded::Unreadable(u) => {
                    let _ = tx
                        .send(Err(KafkaError::Undecodable {
                            topic,
                            partition,
                            offset,
                            reason: u.problem.to_string(),
                        }))
                        .await;
                    return;
                }
            };
            if batch.next_offset() <= offset {
                continue;
            }
            let next = batch.next_offset();
            if fetched.transactions.keep(&batch) {
                for r in batch.records.into_iter().filter(|r| r.offset >= offset) {
                    let record = TailRecord {
                        partition,
                        offset: r.offset,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    };
                    if tx.send(Ok(record)).await.is_err() {
                        return;
                    }
                }
            }
            offset = next;
        }
    }
}

/// Pause before a failed fetch is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(200);
