//! The one owner of a worker's request partitions: their fetch loops, watermarks and commits
//! behind three moves — [`take`](Partitions::take), [`give_up`](Partitions::give_up) (then
//! [`end_give_up`](Partitions::end_give_up)) and [`lose_all`](Partitions::lose_all). Membership
//! (the classic member, the KIP-848 member, the by-index split) only decides *which*
//! partitions the worker should own and calls these; the rules of giving up live in
//! [`super::tenure`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rskafka::client::Client;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::committer::CommitterClient;
use super::consumer::RequestConsumer;
use super::consumer::start_positions;
use super::error::KafkaError;
use super::tenure::{GiveUp, Step};
use super::watermark::Watermarks;
use crate::config::{KafkaSettings, OffsetReset};

/// A worker's partitions; cheap to clone into the task that decides ownership.
#[derive(Debug, Clone)]
pub struct Partitions {
    /// The fetch loops (one per owned partition).
    consumer: Arc<Mutex<RequestConsumer>>,
    /// What is handed out and done per partition; shared with done tokens and the committer.
    watermarks: Arc<Mutex<Watermarks>>,
    /// Commits given-up partitions before the group moves them on.
    committer: CommitterClient,
    /// Partition clients for the start positions.
    client: Arc<Client>,
    /// The request topic and `auto_offset_reset`.
    kafka: Arc<KafkaSettings>,
}

impl Partitions {
    pub(super) fn new(
        consumer: RequestConsumer,
        committer: CommitterClient,
        client: Arc<Client>,
        kafka: &KafkaSettings,
    ) -> Partitions {
        Partitions {
            watermarks: consumer.watermarks.clone(),
            consumer: Arc::new(Mutex::new(consumer)),
            committer,
            client,
            kafka: Arc::new(kafka.clone()),
        }
    }

    fn consumer(&self) -> MutexGuard<'_, RequestConsumer> {
        self.consumer.lock().expect("consumer lock")
    }

    /// The partitions fetched now.
    pub fn owned(&self) -> Vec<i32> {
        self.consumer().fetching()
    }

    /// The group's committed offsets of `partitions` (`None` where it has none), asked through
    /// the committer's connection.
    pub async fn committed(
        &self,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, KafkaError> {
        let fetched = self
            .committer
            .fetch(partitions.to_vec())
            .await
            .map_err(|gone| KafkaError::Stopped {
                what: "reading committed offsets",
                reason: gone.to_string(),
            })?;
        Ok(fetched?)
    }

    /// Starts fetching `partitions` at their `committed` offsets, else per `reset`; returns
    /// where each starts.
    pub async fn take(
        &self,
        partitions: &[i32],
        committed: &HashMap<i32, Option<i64>>,
        reset: OffsetReset,
    ) -> Result<BTreeMap<i32, i64>, KafkaError> {
        let starts =
            start_positions(&self.client, &self.kafka, partitions, committed, reset).await?;
        let mut consumer = self.consumer();
        for (&p, &offset) in &starts {
            consumer.add_partition(p, offset);
        }
        crate::metrics::worker().set_assigned(consumer.fetching().len());
        Ok(starts)
    }

    /// Starts giving up `partitions`: fetching stops, records not started are not executed,
    /// and the executions in flight get until `budget` from now; drive the returned
    /// [`GiveUp`] with [`GiveUp::step`] and end it with [`end_give_up`](Self::end_give_up).
    pub fn give_up(&self, partitions: &[i32], budget: Duration, answer_grace: Duration) -> GiveUp {
        let tenures = self.consumer().revoke(partitions);
        GiveUp::new(tenures, Instant::now() + budget, answer_grace)
    }

    /// Ends a give-up that [`GiveUp::step`] finished: commits what is done (when the group
    /// still takes this member's commit; bounded by `commit_budget`, as the group waits) and
    /// forgets the partitions.
    pub async fn end_give_up(&self, give_up: &GiveUp, commit: bool, commit_budget: Duration) {
        let partitions = give_up.partitions();
        if give_up.expired() && give_up.dropped() > 0 {
            if commit {
                tracing::warn!(
                    group = %self.kafka.group_id,
                    partitions = ?partitions,
                    dropped = give_up.dropped(),
                    "executions of the given-up partitions did not finish in time: their answers are dropped, and their partitions' next owner runs them again"
                );
            } else {
                tracing::warn!(
                    group = %self.kafka.group_id,
                    partitions = ?partitions,
                    dropped = give_up.dropped(),
                    "the group went on without this member: the answers of its executions in flight are dropped, and their partitions' next owner runs them again"
                );
            }
        }
        if commit {
            self.commit_given_up(commit_budget).await;
        }
        let mut watermarks = self.watermarks.lock().expect("watermark lock");
        for p in &partitions {
            watermarks.forget(*p);
        }
        drop(watermarks);
        crate::metrics::worker().set_assigned(self.owned().len());
    }

    /// The group went on without this member: every partition is lost at once, without a
    /// commit (the group would refuse it); answers not yet being produced are dropped.
    pub fn lose_all(&self) {
        let all = self.owned();
        // Nothing is waited for: the next owners may start at once.
        self.give_up(&all, Duration::ZERO, Duration::ZERO)
            .abandon(Instant::now());
        let mut watermarks = self.watermarks.lock().expect("watermark lock");
        for p in watermarks.partitions().collect::<Vec<_>>() {
            watermarks.forget(p);
        }
        drop(watermarks);
        crate::metrics::worker().set_assigned(0);
    }

    /// Drives `give_up` to its end, looking every `settle` and calling `between` meanwhile
    /// (the classic member heartbeats there; `false` from it means the group went on).
    pub async fn wait_out(
        &self,
        give_up: &mut GiveUp,
        mut between: impl AsyncFnMut() -> bool,
        every: Duration,
    ) -> bool {
        let mut settle = tokio::time::interval(Duration::from_millis(20));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            if let Step::Finish { commit } = give_up.step(Instant::now()) {
                return commit;
            }
            tokio::select! {
                _ = settle.tick() => {}
                _ = tick.tick() => {
                    if !between().await {
                        give_up.lose(Instant::now());
                    }
                }
            }
        }
    }

    async fn commit_given_up(&self, budget: Duration) {
        // Bounded: an exactly-once commit is a transaction, which can wait for its outcome
        // much longer than a plain commit's retry budget, while the group waits for us.
        match tokio::time::timeout(budget, self.committer.commit_now()).await {
            Ok(Ok(Ok(committed))) => {
                tracing::debug!(committed = ?committed, "committed the given-up partitions")
            }
            Ok(Ok(Err(e))) => tracing::warn!(
                "committing the given-up partitions failed (their next owner repeats what was not committed): {e}"
            ),
            Ok(Err(gone)) => tracing::warn!("committing the given-up partitions failed: {gone}"),
            Err(_) => tracing::warn!(
                "committing the given-up partitions took longer than {budget:?}; their next owner repeats what was not committed"
            ),
        }
    }

    /// The fetch loops, taken out to be joined (or aborted) when the worker stops.
    pub(super) fn take_loops(&self) -> JoinSet<()> {
        self.consumer().take_loops()
    }
}
