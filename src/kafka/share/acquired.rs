//! What a ShareFetch answer's acquired records are, IO-free: the answer holds whole log batches
//! and, apart, the ranges of offsets this member acquired (with their delivery counts). Only
//! acquired offsets are this member's; each gets exactly one fate.

use super::acks::AckType;
use crate::kafka::record_batch::{Decoded, Problem, Record};

/// The fate of one acquired offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// A request to execute.
    Deliver { record: Record, deliveries: i16 },
    /// An offset of a batch this build cannot read: answered as unreadable (a failure
    /// response and the dead letter), with the batch's bytes on its first offset.
    Unreadable {
        offset: i64,
        why: String,
        raw: Option<Vec<u8>>,
        deliveries: i16,
    },
    /// Acknowledged at once: a control record or an offset compaction removed (Gap), or a
    /// batch a build with the codec may read, given back for another try (Release).
    Ack { offset: i64, ack: AckType },
}

/// The fates of the offsets in `acquired` (first, last, delivery count), in offset order.
/// `last_delivery` says whether a count is the group's last: an unreadable batch that a
/// build with the codec could read is given back until then, and answered as unreadable on
/// its last delivery, so that it is not archived unanswered.
pub(crate) fn fates(
    batches: Vec<Decoded>,
    acquired: &[(i64, i64, i16)],
    last_delivery: impl Fn(i16) -> bool,
) -> Vec<Fate> {
    let mut out = Vec::new();
    let mut batches = batches.into_iter().peekable();
    let mut current: Option<Decoded> = None;
    let mut ranges: Vec<(i64, i64, i16)> = acquired.to_vec();
    ranges.sort_by_key(|r| r.0);
    for (first, last, deliveries) in ranges {
        for offset in first..=last.max(first) {
            // The batch that holds `offset`, if the answer has one.
            while current.as_ref().is_none_or(|b| end(b) <= offset) {
                match batches.next() {
                    Some(b) => current = Some(b),
                    None => {
                        current = None;
                        break;
                    }
                }
            }
            let fate = match &mut current {
                Some(b) if start(b) <= offset => fate_in(b, offset, deliveries, &last_delivery),
                // Acquired, yet its data is not in this answer: given back for another try; on
                // its last delivery answered as unreadable (released, Kafka would archive it
                // unanswered).
                _ if last_delivery(deliveries) => Fate::Unreadable {
                    offset,
                    why: "Kafka delivered the offset without its record, on its last delivery"
                        .to_owned(),
                    raw: None,
                    deliveries,
                },
                _ => Fate::Ack {
                    offset,
                    ack: AckType::Release,
                },
            };
            out.push(fate);
        }
    }
    out
}

fn start(b: &Decoded) -> i64 {
    match b {
        Decoded::Batch(b) => b.base_offset,
        Decoded::Unreadable(u) => u.base_offset,
    }
}

/// The offset after the batch.
fn end(b: &Decoded) -> i64 {
    match b {
        Decoded::Batch(b) => b.next_offset(),
        Decoded::Unreadable(u) => u.named_offsets(u.base_offset).end,
    }
}

fn fate_in(
    b: &mut Decoded,
    offset: i64,
    deliveries: i16,
    last_delivery: &impl Fn(i16) -> bool,
) -> Fate {
    match b {
        Decoded::Batch(batch) if batch.control => Fate::Ack {
            offset,
            ack: AckType::Gap,
        },
        Decoded::Batch(batch) => match batch.records.iter().position(|r| r.offset == offset) {
            Some(i) => Fate::Deliver {
                record: batch.records[i].clone(),
                deliveries,
            },
            None => Fate::Ack {
                offset,
                ack: AckType::Gap,
            },
        },
        Decoded::Unreadable(u) => {
            let readable_elsewhere = !matches!(u.problem, Problem::Corrupt(_));
            if readable_elsewhere && !last_delivery(deliveries) {
                return Fate::Ack {
                    offset,
                    ack: AckType::Release,
                };
            }
            Fate::Unreadable {
                offset,
                why: u.problem.to_string(),
                raw: (offset == u.base_offset).then(|| u.raw.clone()),
                deliveries,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::record_batch::{Codec, RecordBatch, Unreadable};

    fn record(offset: i64) -> Record {
        Record {
            offset,
            timestamp: 0,
            key: None,
            value: Some(format!("r{offset}").into_bytes()),
            headers: Vec::new(),
        }
    }

    fn batch(base: i64, offsets: &[i64], last: i64) -> Decoded {
        let mut b = RecordBatch::plain(
            base,
            Codec::None,
            offsets.iter().map(|o| record(*o)).collect(),
        );
        b.last_offset_delta = (last - base) as i32;
        Decoded::Batch(b)
    }

    fn delivered(fates: &[Fate]) -> Vec<(i64, i16)> {
        fates
            .iter()
            .filter_map(|f| match f {
                Fate::Deliver { record, deliveries } => Some((record.offset, *deliveries)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_acquired_offsets_are_delivered_with_their_counts() {
        let batches = vec![batch(0, &[0, 1, 2, 3], 3), batch(4, &[4, 5], 5)];
        let f = fates(batches, &[(1, 2, 1), (5, 5, 3)], |_| false);
        assert_eq!(delivered(&f), vec![(1, 1), (2, 1), (5, 3)]);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn compacted_offsets_and_control_records_are_gaps() {
        let mut control = RecordBatch::plain(3, Codec::None, vec![record(3)]);
        control.control = true;
        let batches = vec![batch(0, &[0, 2], 2), Decoded::Batch(control)];
        let f = fates(batches, &[(0, 3, 1)], |_| false);
        assert_eq!(delivered(&f), vec![(0, 1), (2, 1)]);
        assert!(f.contains(&Fate::Ack {
            offset: 1,
            ack: AckType::Gap
        }));
        assert!(f.contains(&Fate::Ack {
            offset: 3,
            ack: AckType::Gap
        }));
    }

    #[test]
    fn acquired_offsets_missing_from_the_answer_are_released_until_their_last_delivery() {
        let f = fates(vec![batch(0, &[0], 0)], &[(0, 1, 1)], |_| false);
        assert_eq!(
            f[1],
            Fate::Ack {
                offset: 1,
                ack: AckType::Release
            }
        );
        let last = fates(vec![batch(0, &[0], 0)], &[(0, 1, 5)], |d| d >= 5);
        assert!(matches!(
            &last[1],
            Fate::Unreadable {
                offset: 1,
                raw: None,
                ..
            }
        ));
    }

    #[test]
    fn an_unreadable_batch_is_given_back_until_its_last_delivery_and_then_answered() {
        let unreadable = || {
            vec![Decoded::Unreadable(Unreadable {
                base_offset: 10,
                last_offset_delta: Some(1),
                record_count: Some(2),
                problem: Problem::CodecNotBuilt(Codec::Zstd),
                raw: vec![1, 2, 3],
            })]
        };
        let early = fates(unreadable(), &[(10, 11, 2)], |d| d >= 5);
        assert!(early.iter().all(|f| matches!(
            f,
            Fate::Ack {
                ack: AckType::Release,
                ..
            }
        )));
        let last = fates(unreadable(), &[(10, 11, 5)], |d| d >= 5);
        assert!(matches!(
            &last[0],
            Fate::Unreadable { offset: 10, raw: Some(raw), .. } if raw == &vec![1, 2, 3]
        ));
        assert!(matches!(
            &last[1],
            Fate::Unreadable {
                offset: 11,
                raw: None,
                ..
            }
        ));
    }

    #[test]
    fn a_corrupt_batch_is_answered_at_once() {
        let corrupt = vec![Decoded::Unreadable(Unreadable {
            base_offset: 0,
            last_offset_delta: Some(0),
            record_count: Some(1),
            problem: Problem::Corrupt("crc".into()),
            raw: vec![9],
        })];
        let f = fates(corrupt, &[(0, 0, 1)], |_| false);
        assert!(matches!(&f[0], Fate::Unreadable { offset: 0, .. }));
    }
}
