//! Per-partition contiguous watermarks (design decision 4): executions finish out of order, but
//! the committed offset only ever moves to the lowest offset whose response is not yet in Kafka,
//! so a restart never skips a request.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default, Clone)]
struct Partition {
    /// Handed out, response not yet acknowledged.
    outstanding: BTreeSet<i64>,
    /// Next offset the fetch loop will hand out.
    next: i64,
}

/// The watermarks of every partition a worker owns.
#[derive(Debug, Default, Clone)]
pub struct Watermarks {
    /// Each partition's handed-out and done offsets.
    partitions: HashMap<i32, Partition>,
}

impl Watermarks {
    /// Starts tracking `partition` at `offset` (the first one to be handed out).
    pub fn start(&mut self, partition: i32, offset: i64) {
        self.partitions.insert(
            partition,
            Partition {
                outstanding: BTreeSet::new(),
                next: offset,
            },
        );
    }

    /// `offset` of `partition` was handed out for execution.
    pub fn handed_out(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.outstanding.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    /// Offsets were skipped (e.g. reset after retention deleted them): nothing before `next`
    /// is outstanding any more unless handed out.
    pub fn skip_to(&mut self, partition: i32, next: i64) {
        let p = self.partitions.entry(partition).or_default();
        p.next = next;
    }

    /// The response for `offset` of `partition` is in Kafka.
    pub fn done(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.outstanding.remove(&offset);
        }
    }

    /// Stops tracking `partition` (it was revoked and its last offsets committed): later
    /// completions of its records change nothing, and it is not committed again.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The offset to commit for `partition`: the lowest not yet done.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .map(|p| p.outstanding.first().copied().unwrap_or(p.next))
    }

    /// Whether `offset` of `partition` was handed out and waits for its response (the
    /// partition is owned, not forgotten, and the offset not done).
    pub fn is_outstanding(&self, partition: i32, offset: i64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.outstanding.contains(&offset))
    }

    /// Of `partition`'s outstanding offsets, the run from the lowest on that `ready` accepts,
    /// and the offset to commit once their responses are in Kafka (the lowest outstanding
    /// offset after the run, else the next to be handed out). A transaction may answer only
    /// such a run: its commit must cover every response it makes visible. `None` when the
    /// partition is not tracked.
    pub fn ready_run(
        &self,
        partition: i32,
        ready: impl Fn(i64) -> bool,
    ) -> Option<(Vec<i64>, i64)> {
        let p = self.partitions.get(&partition)?;
        let mut run = Vec::new();
        for &offset in &p.outstanding {
            if !ready(offset) {
                return Some((run, offset));
            }
            run.push(offset);
        }
        Some((run, p.next))
    }

    /// How many handed-out offsets still wait for their response.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.outstanding.len()).sum()
    }

    /// The partitions tracked, for the committer to ask each for its committable offset.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_ready_run_stops_at_the_first_offset_not_ready() {
        let mut w = Watermarks::default();
        w.start(0, 10);
        assert_eq!(w.ready_run(0, |_| true), Some((vec![], 10)));
        for o in [10, 11, 13, 14] {
            w.handed_out(0, o);
        }
        // 12 was no request (a transaction marker, say): never outstanding, never waited for.
        assert_eq!(w.ready_run(0, |o| o != 13), Some((vec![10, 11], 13)));
        assert_eq!(w.ready_run(0, |o| o != 10), Some((vec![], 10)));
        assert_eq!(w.ready_run(0, |_| true), Some((vec![10, 11, 13, 14], 15)));
        w.done(0, 10);
        assert_eq!(w.ready_run(0, |o| o == 11), Some((vec![11], 13)));
        assert_eq!(w.ready_run(1, |_| true), None);
        assert!(w.is_outstanding(0, 11) && !w.is_outstanding(0, 10) && !w.is_outstanding(1, 11));
    }

    #[test]
    fn out_of_order_completion_commits_only_the_contiguous_prefix() {
        let mut w = Watermarks::default();
        w.start(0, 10);
        assert_eq!(w.committable(0), Some(10));
        for o in 10..15 {
            w.handed_out(0, o);
        }
        w.done(0, 12);
        w.done(0, 11);
        assert_eq!(w.committable(0), Some(10));
        w.done(0, 10);
        assert_eq!(w.committable(0), Some(13));
        w.done(0, 13);
        w.done(0, 14);
        assert_eq!(w.committable(0), Some(15));
        assert_eq!(w.committable(1), None);
    }

    /// One step of a fetch loop and its executions, for the model test below.
    #[derive(Debug, Clone)]
    enum Step {
        /// Hand out the next record, `gap` offsets after the previous one (compaction,
        /// transaction markers and skipped offsets leave gaps).
        HandOut { gap: i64 },
        /// Finish the `pick`-th outstanding record (modulo how many there are).
        Done { pick: usize },
        /// A marker or a reset moves the next offset on by `by` without handing anything out.
        Skip { by: i64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0i64..3).prop_map(|gap| Step::HandOut { gap }),
            any::<usize>().prop_map(|pick| Step::Done { pick }),
            (1i64..4).prop_map(|by| Step::Skip { by }),
        ]
    }

    proptest! {
        /// Interleaved hand-outs, completions in any order and skips, against the plainest
        /// model: a list of handed-out offsets with a done flag each, and the next offset. After
        /// every step the committable offset is the lowest handed out and not done, else the
        /// next offset; it never moves backwards.
        #[test]
        fn committable_follows_the_model_through_any_interleaving(
            start in 0i64..1_000,
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let mut w = Watermarks::default();
            w.start(7, start);
            let mut handed: Vec<(i64, bool)> = Vec::new();
            let mut next = start;
            let mut last = start;
            for s in steps {
                match s {
                    Step::HandOut { gap } => {
                        let offset = next + gap;
                        w.handed_out(7, offset);
                        handed.push((offset, false));
                        next = offset + 1;
                    }
                    Step::Done { pick } => {
                        let open: Vec<usize> =
                            (0..handed.len()).filter(|i| !handed[*i].1).collect();
                        if let Some(&i) = open.get(pick % open.len().max(1)) {
                            w.done(7, handed[i].0);
                            handed[i].1 = true;
                        }
                    }
                    Step::Skip { by } => {
                        next += by;
                        w.skip_to(7, next);
                    }
                }
                let expected = handed.iter().find(|(_, done)| !done).map_or(next, |(o, _)| *o);
                let got = w.committable(7);
                prop_assert_eq!(got, Some(expected));
                prop_assert!(expected >= last, "committable went back from {} to {}", last, expected);
                last = expected;
                prop_assert_eq!(w.in_flight(), handed.iter().filter(|(_, d)| !d).count());
            }
        }
        /// Against a model: the committable offset is the smallest offset handed out and not
        /// done, or the next offset when all are done.
        #[test]
        fn committable_is_lowest_not_done(start in 0i64..1000, n in 1usize..60, order in proptest::collection::vec(any::<u32>(), 60), done_count in 0usize..60) {
            let mut w = Watermarks::default();
            w.start(3, start);
            let offsets: Vec<i64> = (0..n as i64).map(|i| start + i).collect();
            for o in &offsets { w.handed_out(3, *o); }
            let mut shuffled = offsets.clone();
            shuffled.sort_by_key(|o| order[(*o - start) as usize % order.len()]);
            let finished: Vec<i64> = shuffled.into_iter().take(done_count.min(n)).collect();
            for o in &finished { w.done(3, *o); }
            let expected = offsets.iter().find(|o| !finished.contains(o)).copied().unwrap_or(start + n as i64);
            prop_assert_eq!(w.committable(3), Some(expected));
            prop_assert_eq!(w.in_flight(), n - finished.len());
        }
    }
}
