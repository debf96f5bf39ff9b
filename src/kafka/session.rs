//! One worker's hold on Kafka: its clients, the fetch loops over the request partitions it
//! owns, its producers and its committer. The worker sees requests ([`RequestRecord`]s with
//! their done tokens), producers to answer on and a commit call; clients, partition start-up,
//! offsets and compression stay here.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use rskafka::client::Client;
use tokio::sync::{mpsc, watch};

use super::client::{connect, partition_client, partition_count};
use super::consumer::{FetchOptions, start_position};
use super::{
    Committer, GroupCoordinator, KafkaError, ProducerSettings, RequestConsumer, RequestRecord,
    ResponseProducer,
};
use crate::config::{KafkaSettings, OffsetReset};

/// Which partitions of the request topic a worker consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Worker `index` of `count` owns the partitions p with p mod count == index (design
    /// decision 2, first wave: a "simple consumer" without group membership).
    ByIndex { index: usize, count: usize },
}

impl Ownership {
    /// The partitions owned of a topic with `partition_count` partitions.
    pub fn partitions(self, partition_count: i32) -> Vec<i32> {
        match self {
            Ownership::ByIndex { index, count } => (0..partition_count)
                .filter(|p| (*p as usize) % count == index)
                .collect(),
        }
    }
}

/// What opening a session hands the worker.
#[derive(Debug)]
pub struct Opened {
    /// Commits, partition discovery, stopping.
    pub session: Session,
    /// Requests in offset order per partition, as the in-flight window allows.
    pub records: mpsc::Receiver<RequestRecord>,
    /// Produces to the response topic.
    pub responses: ResponseProducer,
    /// Produces to the dead-letter topic; `None` when it is off or does not exist.
    pub dead_letters: Option<ResponseProducer>,
}

/// A worker's Kafka session; see the module docs.
#[derive(Debug)]
pub struct Session {
    /// The consumer side's client (fetching, partition discovery).
    client: Arc<Client>,
    /// Topics, group and options, as configured.
    settings: KafkaSettings,
    /// Which partitions are this worker's, also when the topic grows.
    ownership: Ownership,
    /// Partitions of the request topic when last looked.
    partition_count: i32,
    /// The partitions this worker fetches, in order.
    owned: Vec<i32>,
    /// The fetch loops.
    consumer: RequestConsumer,
    /// Commits what the fetch loops' watermarks say is done.
    committer: Committer,
}

impl Session {
    /// Connects, reads the group's committed offsets, starts a fetch loop per owned partition
    /// (at its committed offset, else per `auto_offset_reset`) and the producers. Requests come
    /// out of `records` with at most `max_in_flight` undone at a time.
    pub async fn open(
        settings: &KafkaSettings,
        ownership: Ownership,
        max_in_flight: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Opened, KafkaError> {
        let k = settings;
        let client = connect(&k.consumer_bootstrap, &k.client_id).await?;
        let producer_client = if k.producer_bootstrap == k.consumer_bootstrap {
            client.clone()
        } else {
            connect(&k.producer_bootstrap, &k.client_id).await?
        };
        let count = partition_count(&client, &k.request_topic)
            .await?
            .ok_or_else(|| KafkaError::NoRequestTopic {
                topic: k.request_topic.clone(),
            })?;
        let owned = ownership.partitions(count);
        let mut coordinator =
            GroupCoordinator::new(k.consumer_bootstrap.clone(), &k.group_id, &k.client_id);
        let committed = coordinator.fetch(&k.request_topic, &owned).await?;
        let starts = start_positions(&client, k, &owned, &committed, k.auto_offset_reset).await?;

        let producer_settings = ProducerSettings::from_config(k);
        let responses = ResponseProducer::new(
            producer_client.clone(),
            &k.response_topic,
            &producer_settings,
        )
        .await?;
        let dead_letters = dead_letter_producer(producer_client, k, &producer_settings).await?;

        let (consumer, records) = RequestConsumer::start(
            client.clone(),
            FetchOptions {
                topic: k.request_topic.clone(),
                max_in_flight,
                max_wait: k.fetch_max_wait,
                max_bytes: k.fetch_max_bytes,
                reset: k.auto_offset_reset,
            },
            starts.clone().into_iter().collect(),
            shutdown,
        )
        .await?;
        let committer = Committer::new(
            coordinator,
            &k.request_topic,
            consumer.watermarks.clone(),
            &committed,
        );
        tracing::debug!(topic = %k.request_topic, starts = ?starts, "fetch loops started");
        Ok(Opened {
            session: Session {
                client,
                settings: k.clone(),
                ownership,
                partition_count: count,
                owned,
                consumer,
                committer,
            },
            records,
            responses,
            dead_letters,
        })
    }

    /// The partitions of the request topic this worker fetches.
    pub fn owned(&self) -> &[i32] {
        &self.owned
    }

    /// Commits every watermark that moved; returns what it committed.
    pub async fn commit_due(&mut self) -> Result<Vec<(i32, i64)>, KafkaError> {
        Ok(self.committer.commit_due().await?)
    }

    /// Starts fetching partitions added to the request topic since the last look that this
    /// worker owns. A partition created while the service runs starts at its beginning,
    /// whatever `auto_offset_reset` says: its first requests came after the service started,
    /// so "latest" would skip them. Returns the partitions it started.
    pub async fn pick_up_added_partitions(&mut self) -> Result<Vec<i32>, KafkaError> {
        let topic = &self.settings.request_topic;
        let count = partition_count(&self.client, topic)
            .await?
            .unwrap_or(self.partition_count);
        if count <= self.partition_count {
            return Ok(Vec::new());
        }
        let known = self.partition_count;
        let new: Vec<i32> = self
            .ownership
            .partitions(count)
            .into_iter()
            .filter(|p| *p >= known)
            .collect();
        tracing::info!(%topic, from = known, to = count, new = ?new, "request topic has more partitions");
        if !new.is_empty() {
            let committed = self.committer.fetch(&new).await?;
            let starts = start_positions(
                &self.client,
                &self.settings,
                &new,
                &committed,
                OffsetReset::Earliest,
            )
            .await?;
            for (p, offset) in starts {
                self.consumer.add_partition(p, offset).await?;
                self.owned.push(p);
            }
        }
        self.partition_count = count;
        Ok(new)
    }

    /// Waits until every fetch loop has stopped (the shutdown signal was sent); nothing more
    /// comes out of `records`. Commit once more after the in-flight executions are done.
    pub async fn stop_fetching(&mut self) {
        self.consumer.join().await;
    }
}

/// Where each of `partitions` starts: its committed offset, else per `reset`. Warns of records a
/// reset to `latest` passes over.
async fn start_positions(
    client: &Client,
    k: &KafkaSettings,
    partitions: &[i32],
    committed: &HashMap<i32, Option<i64>>,
    reset: OffsetReset,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut starts = BTreeMap::new();
    let mut skipped = Vec::new();
    for &p in partitions {
        let pc = partition_client(client, &k.request_topic, p).await?;
        let start = start_position(&pc, committed.get(&p).copied().flatten(), reset)
            .await
            .map_err(|source| KafkaError::Client {
                context: format!("start offset of {}/{p}", k.request_topic),
                source,
            })?;
        if let Some(range) = start.skipped {
            skipped.push((p, range));
        }
        starts.insert(p, start.offset);
    }
    warn_of_skipped(&k.group_id, &k.request_topic, &skipped);
    Ok(starts)
}

/// A group that has never committed and starts at `latest` (hetida's default) never executes
/// the requests already in the topic. That is Kafka's rule, kept for compatibility, but a new
/// user who produced a request first and started the service second sees nothing happen: say so.
fn warn_of_skipped(group: &str, topic: &str, skipped: &[(i32, Range<i64>)]) {
    if skipped.is_empty() {
        return;
    }
    let count: i64 = skipped.iter().map(|(_, r)| r.end - r.start).sum();
    let ranges = skipped
        .iter()
        .map(|(p, r)| format!("{topic}/{p} offsets {}..{}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::warn!(
        "group {group} has no committed offset and auto_offset_reset is \"latest\", so the \
         {count} record(s) already in the topic are not executed ({ranges}); set \
         \"auto_offset_reset\": \"earliest\" in HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS to \
         execute requests produced before the group's first start"
    );
}

/// The dead-letter producer, or `None` (with a warning) when the topic does not exist: a
/// missing dead-letter topic costs only the copy of undecodable records, never an answer.
async fn dead_letter_producer(
    client: Arc<Client>,
    k: &KafkaSettings,
    settings: &ProducerSettings,
) -> Result<Option<ResponseProducer>, KafkaError> {
    let Some(topic) = &k.dead_letter_topic else {
        return Ok(None);
    };
    match ResponseProducer::new(client, topic, settings).await {
        Ok(p) => Ok(Some(p)),
        Err(KafkaError::NoSuchTopic { topic }) => {
            tracing::warn!(%topic, "dead-letter topic does not exist: undecodable records get a failure response only");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for count in 1..6 {
            let mut all: Vec<i32> = (0..count)
                .flat_map(|index| Ownership::ByIndex { index, count }.partitions(8))
                .collect();
            all.sort();
            assert_eq!(all, (0..8).collect::<Vec<_>>(), "{count} workers");
        }
        assert_eq!(
            Ownership::ByIndex { index: 1, count: 3 }.partitions(8),
            vec![1, 4, 7]
        );
    }
}
