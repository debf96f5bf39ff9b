//! The group's position in the request topic as the brokers see it: per partition the committed
//! offset (OffsetFetch), the log start and end (ListOffsets), hence the lag. Read from outside
//! the workers, as kafka_exporter does, so the numbers hold whatever state a worker is in, and
//! count hetida's own consumers of the group too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, PartitionClient};

use super::client::{connect, partition_client, partition_count};
use super::coordinator::GroupCoordinator;
use super::error::KafkaError;
use super::security::BrokerAuth;
use crate::config::KafkaSettings;
use crate::metrics::{LagSource, PartitionLag};

/// Reads the group's lag on the request topic; keeps its connections between reads.
#[derive(Debug)]
pub struct LagReader {
    /// Where and as whom to connect (the consumer side's settings).
    bootstrap: Vec<String>,
    client_id: String,
    auth: BrokerAuth,
    /// The request topic.
    topic: String,
    /// Committed offsets come from here.
    coordinator: GroupCoordinator,
    /// Connected on first use, and again after an error.
    client: Option<Arc<Client>>,
    /// Per partition, for ListOffsets.
    partitions: HashMap<i32, Arc<PartitionClient>>,
    /// The request topic's partition count and when it was read: metadata of the whole
    /// cluster (rskafka lists every topic), so not at every read.
    count: Option<(i32, Instant)>,
}

/// How long a committed-offsets call may take with its retries.
const COORDINATOR_BUDGET: Duration = Duration::from_secs(2);

/// How long a partition count is believed; partitions are added rarely, and a new one shows
/// within this.
const COUNT_TTL: Duration = Duration::from_secs(30);

impl LagReader {
    /// A reader for the configured group and request topic; connects on the first read.
    pub fn new(k: &KafkaSettings) -> Result<LagReader, KafkaError> {
        let auth = BrokerAuth::new(&k.consumer_security)?;
        let coordinator =
            GroupCoordinator::new(k.consumer_bootstrap.clone(), &k.group_id, &k.client_id)
                .with_auth(auth.clone())
                .with_retry_budget(COORDINATOR_BUDGET);
        Ok(LagReader {
            bootstrap: k.consumer_bootstrap.clone(),
            client_id: k.client_id.clone(),
            auth,
            topic: k.request_topic.clone(),
            coordinator,
            client: None,
            partitions: HashMap::new(),
            count: None,
        })
    }

    async fn read_once(&mut self) -> Result<Vec<PartitionLag>, KafkaError> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = connect(&self.bootstrap, &self.client_id, &self.auth).await?;
                self.client = Some(c.clone());
                c
            }
        };
        let count = match self.count {
            Some((count, at)) if at.elapsed() < COUNT_TTL => count,
            _ => {
                let Some(count) = partition_count(&client, &self.topic).await? else {
                    return Ok(Vec::new());
                };
                self.count = Some((count, Instant::now()));
                count
            }
        };
        let ids: Vec<i32> = (0..count).collect();
        for &partition in &ids {
            if !self.partitions.contains_key(&partition) {
                let pc = partition_client(&client, &self.topic, partition).await?;
                self.partitions.insert(partition, Arc::new(pc));
            }
        }
        // The log ends and starts of all partitions at once (rskafka sends requests to a
        // broker side by side), while the committed offsets are fetched.
        let mut ends = tokio::task::JoinSet::new();
        for &partition in &ids {
            let pc = self.partitions[&partition].clone();
            let topic = self.topic.clone();
            ends.spawn(async move {
                let list = |source| KafkaError::Client {
                    context: format!("ListOffsets of {topic}/{partition}"),
                    source,
                };
                let end = pc.get_offset(OffsetAt::Latest).await.map_err(list)?;
                let start = pc.get_offset(OffsetAt::Earliest).await.map_err(list)?;
                Ok::<_, KafkaError>((partition, start, end))
            });
        }
        let committed = self.coordinator.fetch(&self.topic, &ids).await?;
        let mut out = Vec::with_capacity(ids.len());
        while let Some(joined) = ends.join_next().await {
            let (partition, log_start, log_end) = joined.map_err(|e| KafkaError::Stopped {
                what: "reading the consumer lag",
                reason: e.to_string(),
            })??;
            out.push(PartitionLag {
                partition,
                committed: committed.get(&partition).copied().flatten(),
                log_end,
                log_start,
            });
        }
        out.sort_by_key(|p| p.partition);
        Ok(out)
    }
}

/// What the metrics process reads at scrape time (`serve` hands it this reader).
impl LagSource for LagReader {
    type Error = KafkaError;

    fn topic(&self) -> &str {
        &self.topic
    }

    /// An error or a timeout drops the connections, so the next read starts afresh (a broker
    /// may have moved, and a call cut off halfway leaves its connection unusable).
    async fn read(&mut self, budget: Duration) -> Result<Vec<PartitionLag>, KafkaError> {
        let read = match tokio::time::timeout(budget, self.read_once()).await {
            Ok(read) => read,
            Err(_) => Err(KafkaError::Stopped {
                what: "reading the consumer lag",
                reason: format!("no answer within {budget:?}"),
            }),
        };
        if read.is_err() {
            self.client = None;
            self.partitions.clear();
            self.count = None;
            self.coordinator = GroupCoordinator::new(
                self.bootstrap.clone(),
                self.coordinator.group(),
                &self.client_id,
            )
            .with_auth(self.auth.clone())
            .with_retry_budget(COORDINATOR_BUDGET);
        }
        read
    }
}
