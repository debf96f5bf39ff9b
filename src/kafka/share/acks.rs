//! Acknowledgements of acquired records (KIP-932), IO-free: what this worker says of each
//! record it acquired, collected per partition and sent as Kafka's acknowledgement batches.

use std::collections::BTreeMap;

/// What becomes of an acquired record (Kafka's `AcknowledgeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckType {
    /// An acquired offset with no data record (a control record, a compacted one): archived.
    Gap = 0,
    /// Answered: its response is in Kafka. Acknowledged for good.
    Accept = 1,
    /// Not answered here: available again, for this member or another (the delivery count
    /// stays as it is).
    Release = 2,
    /// Never to be delivered again: archived. This service sends none (every request is
    /// answered); the type is Kafka's, and its metric shows the zero.
    #[allow(dead_code)]
    Reject = 3,
}

/// One acknowledgement batch as the wire carries it: offsets `first..=last` and either one
/// type for all of them or one per offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckBatch {
    pub first: i64,
    pub last: i64,
    pub types: Vec<i8>,
}

/// Acknowledgements waiting to go to one broker, per partition.
#[derive(Debug, Default)]
pub(crate) struct PendingAcks {
    by_partition: BTreeMap<i32, BTreeMap<i64, AckType>>,
}

impl PendingAcks {
    pub fn add(&mut self, partition: i32, offset: i64, ack: AckType) {
        self.by_partition
            .entry(partition)
            .or_default()
            .insert(offset, ack);
    }

    pub fn is_empty(&self) -> bool {
        self.by_partition.is_empty()
    }

    /// How many offsets wait.
    pub fn len(&self) -> usize {
        self.by_partition.values().map(BTreeMap::len).sum()
    }

    /// Everything waiting, as batches per partition; nothing waits afterwards.
    pub fn take(&mut self) -> Vec<(i32, Vec<AckBatch>)> {
        std::mem::take(&mut self.by_partition)
            .into_iter()
            .map(|(p, offsets)| (p, batches(&offsets)))
            .collect()
    }
}

/// Runs of consecutive offsets, each one batch: with one type when all its offsets share it
/// (the broker applies a single type to the whole range), else one type per offset.
fn batches(offsets: &BTreeMap<i64, AckType>) -> Vec<AckBatch> {
    let mut out: Vec<AckBatch> = Vec::new();
    let mut run: Vec<(i64, AckType)> = Vec::new();
    let flush = |run: &mut Vec<(i64, AckType)>, out: &mut Vec<AckBatch>| {
        let (Some(&(first, kind)), Some(&(last, _))) = (run.first(), run.last()) else {
            return;
        };
        let types = if run.iter().all(|(_, t)| *t == kind) {
            vec![kind as i8]
        } else {
            run.iter().map(|(_, t)| *t as i8).collect()
        };
        out.push(AckBatch { first, last, types });
        run.clear();
    };
    for (&offset, &ack) in offsets {
        if run.last().is_some_and(|&(last, _)| last + 1 != offset) {
            flush(&mut run, &mut out);
        }
        run.push((offset, ack));
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i64, last: i64, types: &[AckType]) -> AckBatch {
        AckBatch {
            first,
            last,
            types: types.iter().map(|t| *t as i8).collect(),
        }
    }

    #[test]
    fn consecutive_offsets_of_one_type_are_one_batch_with_one_type() {
        let mut acks = PendingAcks::default();
        for o in [12, 10, 11] {
            acks.add(0, o, AckType::Accept);
        }
        assert_eq!(
            acks.take(),
            vec![(0, vec![batch(10, 12, &[AckType::Accept])])]
        );
        assert!(acks.is_empty());
    }

    #[test]
    fn mixed_types_in_a_run_are_listed_per_offset_and_holes_split_runs() {
        let mut acks = PendingAcks::default();
        acks.add(3, 5, AckType::Accept);
        acks.add(3, 6, AckType::Gap);
        acks.add(3, 7, AckType::Accept);
        acks.add(3, 9, AckType::Release);
        acks.add(1, 0, AckType::Reject);
        assert_eq!(acks.len(), 5);
        assert_eq!(
            acks.take(),
            vec![
                (1, vec![batch(0, 0, &[AckType::Reject])]),
                (
                    3,
                    vec![
                        batch(5, 7, &[AckType::Accept, AckType::Gap, AckType::Accept]),
                        batch(9, 9, &[AckType::Release]),
                    ]
                ),
            ]
        );
    }

    #[test]
    fn the_last_word_on_an_offset_counts() {
        let mut acks = PendingAcks::default();
        acks.add(0, 4, AckType::Release);
        acks.add(0, 4, AckType::Accept);
        assert_eq!(
            acks.take(),
            vec![(0, vec![batch(4, 4, &[AckType::Accept])])]
        );
    }
}
