//! The transaction APIs of Kafka's transaction version 1 (KIP-98, with KIP-447's fencing by
//! group generation and KIP-360's epoch bump): InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn and EndTxn to the transactional id's coordinator, TxnOffsetCommit to the
//! group's. Every broker since 2.5 speaks them; Kafka 4.x decides per transaction by the
//! request versions, so versions that would mean transaction version 2 (EndTxn 5+,
//! TxnOffsetCommit 5+) are never sent.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic},
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::super::coordinator::{CoordinatorError, Generation, GroupCoordinator};

/// InitProducerId v3+ takes the current producer id and epoch (KIP-360): the coordinator
/// aborts that producer's open transaction and bumps the epoch, or answers PRODUCER_FENCED
/// when another producer took the transactional id over meanwhile.
const INIT_PRODUCER_ID_VERSIONS: RangeInclusive<i16> = 0..=5;
/// v4+ batches transactions for brokers (KIP-890); clients send v3 and below.
const ADD_PARTITIONS_VERSIONS: RangeInclusive<i16> = 0..=3;
const ADD_OFFSETS_VERSIONS: RangeInclusive<i16> = 0..=3;
/// v3+ carries the member's generation (KIP-447); v5 would mean transaction version 2.
const TXN_OFFSET_COMMIT_VERSIONS: RangeInclusive<i16> = 3..=4;
/// v5 would mean transaction version 2.
const END_TXN_VERSIONS: RangeInclusive<i16> = 0..=4;

/// Who produces: the producer id and epoch the coordinator gave this transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// The coordinator of one transactional id.
#[derive(Debug)]
pub struct TransactionCoordinator {
    /// A coordinator client keyed by the transactional id.
    client: GroupCoordinator,
    transactional_id: String,
    /// `transaction_timeout_ms`.
    timeout_ms: i32,
}

impl TransactionCoordinator {
    /// `client` must be [`GroupCoordinator::for_transactions`] of `transactional_id`.
    pub fn new(client: GroupCoordinator, transactional_id: &str, timeout_ms: i32) -> Self {
        TransactionCoordinator {
            client,
            transactional_id: transactional_id.to_owned(),
            timeout_ms,
        }
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(str_bytes(&self.transactional_id))
    }

    /// Initialises the transactional id: the first time (`current` `None`) fencing any earlier
    /// producer of it and aborting its open transaction; after a failure, with the current
    /// identity, aborting this producer's own open transaction. Returns the identity to produce
    /// with (a new epoch: sequences start at 0 again).
    pub async fn init(
        &mut self,
        current: Option<ProducerIdentity>,
    ) -> Result<ProducerIdentity, CoordinatorError> {
        let txn_id = self.txn_id();
        let timeout_ms = self.timeout_ms;
        self.client
            .retrying("InitProducerId", async |c: &mut GroupCoordinator| {
                c.exchange(
                    ApiKey::InitProducerId,
                    "InitProducerId",
                    INIT_PRODUCER_ID_VERSIONS,
                    |version| {
                        let request = InitProducerIdRequest::default()
                            .with_transactional_id(Some(txn_id.clone()))
                            .with_transaction_timeout_ms(timeout_ms);
                        if version < 3 {
                            return request;
                        }
                        let (id, epoch) = current.map_or((-1, -1), |p| (p.id, p.epoch));
                        request
                            .with_producer_id(ProducerId(id))
                            .with_producer_epoch(epoch)
                    },
                    |r, answered| {
                        answered.check(r.error_code)?;
                        Ok(ProducerIdentity {
                            id: r.producer_id.0,
                            epoch: r.producer_epoch,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Adds partitions (topic -> partitions) to the open transaction, before producing to them.
    pub async fn add_partitions(
        &mut self,
        who: ProducerIdentity,
        partitions: &BTreeMap<String, Vec<i32>>,
    ) -> Result<(), CoordinatorError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.txn_id())
            .with_v3_and_below_producer_id(ProducerId(who.id))
            .with_v3_and_below_producer_epoch(who.epoch)
            .with_v3_and_below_topics(
                partitions
                    .iter()
                    .map(|(topic, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(ps.clone())
                    })
                    .collect(),
            );
        self.client
            .retrying("AddPartitionsToTxn", async |c: &mut GroupCoordinator| {
                c.exchange(
                    ApiKey::AddPartitionsToTxn,
                    "AddPartitionsToTxn",
                    ADD_PARTITIONS_VERSIONS,
                    |_| request.clone(),
                    |r, answered| {
                        // One failed partition fails the others with OPERATION_NOT_ATTEMPTED
                        // (55): report the cause, not the consequence.
                        let mut failure = None;
                        for t in &r.results_by_topic_v3_and_below {
                            for p in &t.results_by_partition {
                                let code = p.partition_error_code;
                                if code != 0 && (failure.is_none() || code != 55) {
                                    failure = Some((
                                        code,
                                        format!(" for {}/{}", t.name.0, p.partition_index),
                                    ));
                                }
                            }
                        }
                        match failure {
                            Some((code, context)) => Err(answered.fail(code, context)),
                            None => Ok(()),
                        }
                    },
                )
                .await
            })
            .await
    }

    /// Adds the group's offsets to the open transaction, before TxnOffsetCommit.
    pub async fn add_offsets(
        &mut self,
        who: ProducerIdentity,
        group: &str,
    ) -> Result<(), CoordinatorError> {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(self.txn_id())
            .with_producer_id(ProducerId(who.id))
            .with_producer_epoch(who.epoch)
            .with_group_id(GroupId(str_bytes(group)));
        self.acknowledged(
            ApiKey::AddOffsetsToTxn,
            "AddOffsetsToTxn",
            ADD_OFFSETS_VERSIONS,
            request,
            |r| r.error_code,
        )
        .await
    }

    /// Commits (or aborts) the open transaction.
    pub async fn end(
        &mut self,
        who: ProducerIdentity,
        commit: bool,
    ) -> Result<(), CoordinatorError> {
        let request = EndTxnRequest::default()
            .with_transactional_id(self.txn_id())
            .with_producer_id(ProducerId(who.id))
            .with_producer_epoch(who.epoch)
            .with_committed(commit);
        self.acknowledged(ApiKey::EndTxn, "EndTxn", END_TXN_VERSIONS, request, |r| {
            r.error_code
        })
        .await
    }

    /// Sends `request` (retrying as the coordinator client does) and checks the one error
    /// code its answer carries.
    async fn acknowledged<R: Request + Clone>(
        &mut self,
        api: ApiKey,
        name: &'static str,
        versions: RangeInclusive<i16>,
        request: R,
        error_code: impl Fn(&R::Response) -> i16,
    ) -> Result<(), CoordinatorError> {
        self.client
            .retrying(name, async |c: &mut GroupCoordinator| {
                c.exchange(
                    api,
                    name,
                    versions.clone(),
                    |_| request.clone(),
                    |r, answered| answered.check(error_code(&r)),
                )
                .await
            })
            .await
    }
}

/// Commits `offsets` of `topic` inside the open transaction of `transactional_id`, as the
/// group member `generation` names: the group refuses a member whose generation is over, so a
/// zombie's transaction cannot commit (KIP-447).
pub async fn txn_offset_commit(
    group: &mut GroupCoordinator,
    transactional_id: &str,
    who: ProducerIdentity,
    generation: &Generation,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Result<(), CoordinatorError> {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(str_bytes(transactional_id)))
        .with_group_id(GroupId(str_bytes(group.group())))
        .with_producer_id(ProducerId(who.id))
        .with_producer_epoch(who.epoch)
        .with_generation_id(generation.id)
        .with_member_id(str_bytes(&generation.member_id))
        .with_group_instance_id(generation.instance_id.as_deref().map(str_bytes))
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(p, o)| {
                            TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                        })
                        .collect(),
                ),
        ]);
    group
        .retrying("TxnOffsetCommit", async |c: &mut GroupCoordinator| {
            c.exchange(
                ApiKey::TxnOffsetCommit,
                "TxnOffsetCommit",
                TXN_OFFSET_COMMIT_VERSIONS,
                |_| request.clone(),
                |r, answered| {
                    for t in r.topics {
                        for p in t.partitions {
                            if p.error_code != 0 {
                                return Err(answered.fail(
                                    p.error_code,
                                    format!(" for {topic}/{}", p.partition_index),
                                ));
                            }
                        }
                    }
                    Ok(())
                },
            )
            .await
        })
        .await
}
