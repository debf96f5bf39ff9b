//! Fetch requests to a partition's leader over this service's own connection, read with this
//! service's own record-batch reader ([`record_batch`](super::record_batch)): rskafka's reader
//! refuses batches the Java consumer reads, and ignores the aborted transactions a fetch
//! response lists.
//!
//! [`LeaderFetch`] is one partition's reads (its leader, a connection to it, the isolation
//! level); [`Transactions`] is the Java consumer's rule for skipping records of aborted
//! transactions under read_committed, IO-free.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::cluster::ClusterMap;
use super::record_batch::{self, ControlType, Decoded, RecordBatch};
use super::security::SecurityError;
use super::wire::{BrokerConnection, WireError, error_name};
use crate::config::IsolationLevel;

/// v4 brings isolation levels and aborted transactions; v13 would name topics by id.
const FETCH_VERSIONS: RangeInclusive<i16> = 4..=12;
/// How much longer than the fetch's own wait an answer may take.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// What one fetch returned for the partition.
#[derive(Debug)]
pub(super) struct Fetched {
    /// The batches in the response, in order (a truncated last one left out).
    pub(super) batches: Vec<Decoded>,
    /// Which of them to skip as records of aborted transactions (read_committed).
    pub(super) transactions: Transactions,
}

/// Why a fetch returned no records.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    /// The offset is not in the log (deleted by retention, or past its end).
    #[error("offset out of range")]
    OffsetOutOfRange,
    /// The connection cannot be set up as configured; retrying will not help.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// Worth trying again (leader moved, broker away, ...).
    #[error("{0}")]
    Retry(String),
}

/// One partition's fetches from its leader.
#[derive(Debug)]
pub(super) struct LeaderFetch {
    topic: String,
    partition: i32,
    /// Who leads what; asked again when the leader is not known or said it is not.
    cluster: ClusterMap,
    /// The leader's node id and a connection to it (one fetch at a time).
    connection: Option<(i32, BrokerConnection)>,
    isolation: IsolationLevel,
    /// Bytes one fetch asks for (`max_partition_fetch_bytes`).
    max_bytes: i32,
    /// How long the leader may wait for records (`fetch_max_wait_ms`).
    max_wait_ms: i32,
}

impl LeaderFetch {
    /// Fetches of `topic`/`partition` through the brokers `cluster` knows.
    pub(super) fn new(
        cluster: ClusterMap,
        topic: &str,
        partition: i32,
        isolation: IsolationLevel,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> LeaderFetch {
        LeaderFetch {
            topic: topic.to_owned(),
            partition,
            cluster,
            connection: None,
            isolation,
            max_bytes,
            max_wait_ms,
        }
    }

    /// The batches from `offset` on (those the leader has; none after `max_wait_ms` if it has
    /// none).
    pub(super) async fn fetch(&mut self, offset: i64) -> Result<Fetched, FetchError> {
        let key = (self.topic.clone(), self.partition);
        let request = self.request(offset);
        // A leader that stops answering without closing the connection must not hold the
        // partition: past its wait and a margin, the connection is given up.
        let patience = Duration::from_millis(self.max_wait_ms.max(0) as u64) + ANSWER_MARGIN;
        let connection = self.connection().await?;
        let version = connection
            .version(ApiKey::Fetch, "Fetch", FETCH_VERSIONS)
            .map_err(|e| FetchError::Retry(e.to_string()))?;
        let response =
            match tokio::time::timeout(patience, connection.call(&request, version)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(self.lost(e)),
                Err(_) => {
                    return Err(self.lost(WireError::Codec(format!(
                        "no answer to a fetch within {patience:?}"
                    ))));
                }
            };
        if response.error_code != 0 {
            return Err(FetchError::Retry(error_name(response.error_code)));
        }
        let partition = response
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == self.topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == self.partition)
            .ok_or_else(|| FetchError::Retry("the answer leaves the partition out".into()))?;
        match ResponseError::try_from_code(partition.error_code) {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => return Err(FetchError::OffsetOutOfRange),
            Some(_) => {
                // Whatever it is (not the leader any more, the topic gone, storage), the next
                // try asks who leads now.
                self.cluster.forget(&key);
                self.connection = None;
                return Err(FetchError::Retry(error_name(partition.error_code)));
            }
        }
        let aborted = match (self.isolation, partition.aborted_transactions) {
            (IsolationLevel::ReadCommitted, Some(list)) => list
                .into_iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect(),
            _ => Vec::new(),
        };
        let batches = partition
            .records
            .map(|bytes| record_batch::decode(&bytes))
            .unwrap_or_default();
        Ok(Fetched {
            batches,
            transactions: Transactions::new(self.isolation, aborted),
        })
    }

    fn request(&self, offset: i64) -> FetchRequest {
        let isolation = match self.isolation {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        };
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(self.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(self.max_bytes)
            .with_isolation_level(isolation)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(self.topic.clone())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(self.partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(self.max_bytes),
                    ]),
            ])
            .with_rack_id(StrBytes::from_static_str(""))
    }

    /// The connection to the partition's leader, asking who it is first when not known.
    async fn connection(&mut self) -> Result<&mut BrokerConnection, FetchError> {
        let key = (self.topic.clone(), self.partition);
        let leader = match self.cluster.leader(&key) {
            Some(leader) => leader,
            None => {
                if let Err(why) = self.cluster.refresh(&[&self.topic]).await? {
                    return Err(FetchError::Retry(format!("metadata: {why}")));
                }
                self.cluster.leader(&key).ok_or_else(|| {
                    FetchError::Retry("the partition has no leader (or does not exist)".into())
                })?
            }
        };
        if self
            .connection
            .as_ref()
            .is_none_or(|(node, _)| *node != leader)
        {
            let conn = match self.cluster.connect(leader).await {
                Ok(c) => c,
                Err(e) => return Err(self.lost(e)),
            };
            self.connection = Some((leader, conn));
        }
        Ok(&mut self.connection.as_mut().expect("set above").1)
    }

    /// The connection failed: drop it and the leader it was to, and say why.
    fn lost(&mut self, e: WireError) -> FetchError {
        self.connection = None;
        self.cluster.forget(&(self.topic.clone(), self.partition));
        match e {
            WireError::Security(e) => FetchError::Security(e),
            other => FetchError::Retry(other.to_string()),
        }
    }
}

/// Which batches of one fetch response hold records of aborted transactions: the Java
/// consumer's rule. The response lists each aborted transaction by producer id and first
/// offset; a transactional batch of a producer is void from its transaction's first offset on
/// until that producer's abort marker.
#[derive(Debug)]
pub(super) struct Transactions {
    /// Whether anything is skipped at all (read_committed).
    read_committed: bool,
    /// Aborted transactions not yet reached, by first offset (lowest first).
    pending: BinaryHeap<Reverse<(i64, i64)>>,
    /// Producers whose aborted transaction is open at the batch being looked at.
    aborting: HashSet<i64>,
}

impl Transactions {
    /// The rule for one response: `aborted` is its list of (producer id, first offset).
    pub(super) fn new(isolation: IsolationLevel, aborted: Vec<(i64, i64)>) -> Transactions {
        Transactions {
            read_committed: isolation == IsolationLevel::ReadCommitted,
            pending: aborted
                .into_iter()
                .map(|(producer, first)| Reverse((first, producer)))
                .collect(),
            aborting: HashSet::new(),
        }
    }

    /// Whether the records of `batch` are to be handed out; batches must come in order.
    /// Control batches never are (they hold markers, not data).
    pub(super) fn keep(&mut self, batch: &RecordBatch) -> bool {
        if self.read_committed && batch.producer_id >= 0 {
            let last = batch.next_offset() - 1;
            while let Some(Reverse((first, producer))) = self.pending.peek().copied() {
                if first > last {
                    break;
                }
                self.pending.pop();
                self.aborting.insert(producer);
            }
            if batch.control_type() == Some(ControlType::Abort) {
                self.aborting.remove(&batch.producer_id);
            } else if batch.transactional && self.aborting.contains(&batch.producer_id) {
                return false;
            }
        }
        !batch.control
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::record_batch::{Codec, Record};

    fn batch(base: i64, producer: i64, transactional: bool, control: Option<i16>) -> RecordBatch {
        let key = control.map(|kind| {
            let mut k = 0i16.to_be_bytes().to_vec();
            k.extend_from_slice(&kind.to_be_bytes());
            k
        });
        RecordBatch {
            base_offset: base,
            partition_leader_epoch: 0,
            codec: Codec::None,
            log_append_time: false,
            transactional,
            control: control.is_some(),
            delete_horizon: false,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: producer,
            producer_epoch: 0,
            base_sequence: 0,
            records: vec![Record {
                offset: base,
                timestamp: 0,
                key,
                value: None,
                headers: vec![],
            }],
        }
    }

    /// Producer 1 aborts (offsets 0, 2; marker 4), producer 2 commits (1, 3; marker 5),
    /// producer 1 then commits (6; marker 7), a plain record at 8.
    fn log() -> Vec<RecordBatch> {
        vec![
            batch(0, 1, true, None),
            batch(1, 2, true, None),
            batch(2, 1, true, None),
            batch(3, 2, true, None),
            batch(4, 1, true, Some(0)),
            batch(5, 2, true, Some(1)),
            batch(6, 1, true, None),
            batch(7, 1, true, Some(1)),
            batch(8, -1, false, None),
        ]
    }

    fn kept(isolation: IsolationLevel, aborted: Vec<(i64, i64)>) -> Vec<i64> {
        let mut t = Transactions::new(isolation, aborted);
        log()
            .iter()
            .filter(|b| t.keep(b))
            .map(|b| b.base_offset)
            .collect()
    }

    #[test]
    fn read_committed_skips_an_aborted_transaction_up_to_its_marker_only() {
        assert_eq!(
            kept(IsolationLevel::ReadCommitted, vec![(1, 0)]),
            vec![1, 3, 6, 8]
        );
    }

    #[test]
    fn read_uncommitted_keeps_every_data_record_and_no_marker() {
        assert_eq!(
            kept(IsolationLevel::ReadUncommitted, vec![(1, 0)]),
            vec![0, 1, 2, 3, 6, 8]
        );
    }

    #[test]
    fn an_aborted_transaction_starting_later_leaves_earlier_batches_alone() {
        // Producer 1's second transaction (from 6) aborted, its first one not listed.
        assert_eq!(
            kept(IsolationLevel::ReadCommitted, vec![(1, 6)]),
            vec![0, 1, 2, 3, 8]
        );
    }
}
