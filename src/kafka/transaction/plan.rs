//! What the next transaction carries, IO-free: per request partition, the run of ready
//! answers from its lowest outstanding offset on (within the batch limits), and the offset
//! to commit after it. The rules that make exactly-once hold live here:
//!
//! * a response becomes visible only with a commit that covers its request, so a partition's
//!   answers go in offset order, without gaps: an answer waits for every lower offset of its
//!   partition to be answered too;
//! * a partition answered in a transaction is always committed in it too: that commit is what
//!   the group refuses a zombie (a member of an older generation);
//! * the generation is read before the partitions are: a transaction planned before a
//!   rebalance carries the old generation, so the group refuses its commit of partitions
//!   given up meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::kafka::coordinator::Generation;
use crate::kafka::watermark::Watermarks;

/// The records one answer puts into a transaction, as the planner weighs them.
pub(super) trait Weighed {
    /// Per record: the topic and partition it goes to, and what it adds to a batch there.
    fn weights(&self) -> Vec<(&str, i32, usize)>;
}

/// What bounds one transaction.
#[derive(Debug)]
pub(super) struct Limits<'a> {
    /// Bytes of records one batch may hold, per topic produced to.
    pub(super) budgets: &'a HashMap<String, usize>,
    /// Partitions produced to whose batches carry one record at a time.
    pub(super) solo: &'a HashSet<(String, i32)>,
    /// Most requests answered in one transaction.
    pub(super) max_requests: usize,
}

/// One transaction's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// (request partition, offset) of the answers in it.
    pub(super) answers: Vec<(i32, i64)>,
    /// How many records go to each partition produced to (the records themselves stay with
    /// their answers until the transaction is sent).
    pub(super) batches: BTreeMap<(String, i32), usize>,
    /// Offsets to commit with it.
    pub(super) offsets: Vec<(i32, i64)>,
    /// The member's generation when it was planned: the commit goes out under it.
    pub(super) generation: Generation,
}

impl Plan {
    /// Nothing to answer and no offset that moved.
    pub(super) fn is_empty(&self) -> bool {
        self.answers.is_empty() && self.offsets.is_empty()
    }
}

/// Plans the next transaction from the answers `pending` (by request partition and offset),
/// the partitions' `watermarks` and what the group holds (`committed`). `generation` must have
/// been read before `watermarks` were.
pub(super) fn plan<A: Weighed>(
    generation: Generation,
    pending: &BTreeMap<i32, BTreeMap<i64, A>>,
    watermarks: &Watermarks,
    committed: &HashMap<i32, i64>,
    limits: &Limits<'_>,
) -> Plan {
    let mut plan = Plan {
        answers: Vec::new(),
        batches: BTreeMap::new(),
        offsets: Vec::new(),
        generation,
    };
    let mut bytes: HashMap<(String, i32), usize> = HashMap::new();
    let mut partitions: BTreeSet<i32> = watermarks.partitions().collect();
    partitions.extend(pending.keys().copied());
    let empty = BTreeMap::new();
    for p in partitions {
        let queued = pending.get(&p).unwrap_or(&empty);
        let Some((run, after)) = watermarks.ready_run(p, |o| queued.contains_key(&o)) else {
            continue;
        };
        let mut commit = after;
        let answered_before = plan.answers.len();
        for o in run {
            let weights = queued[&o].weights();
            let fits = plan.answers.len() < limits.max_requests
                && weights.iter().all(|(topic, partition, size)| {
                    let key = ((*topic).to_owned(), *partition);
                    let used = bytes.get(&key).copied().unwrap_or(0);
                    let budget = limits.budgets.get(*topic).copied().unwrap_or(usize::MAX);
                    used == 0 || (!limits.solo.contains(&key) && used + size <= budget)
                });
            if !fits {
                commit = o;
                break;
            }
            for (topic, partition, size) in weights {
                let key = (topic.to_owned(), partition);
                *bytes.entry(key.clone()).or_default() += size;
                *plan.batches.entry(key).or_default() += 1;
            }
            plan.answers.push((p, o));
        }
        if committed.get(&p) != Some(&commit) || plan.answers.len() > answered_before {
            plan.offsets.push((p, commit));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer of `n` bytes to the response topic's partition 0.
    struct Sized(usize);

    impl Weighed for Sized {
        fn weights(&self) -> Vec<(&str, i32, usize)> {
            vec![("responses", 0, self.0)]
        }
    }

    fn generation(id: i32) -> Generation {
        Generation {
            id,
            member_id: "m".into(),
            instance_id: None,
        }
    }

    fn limits<'a>(
        budgets: &'a HashMap<String, usize>,
        solo: &'a HashSet<(String, i32)>,
    ) -> Limits<'a> {
        Limits {
            budgets,
            solo,
            max_requests: 2_000,
        }
    }

    fn pending(answers: &[(i32, i64, usize)]) -> BTreeMap<i32, BTreeMap<i64, Sized>> {
        let mut m: BTreeMap<i32, BTreeMap<i64, Sized>> = BTreeMap::new();
        for &(p, o, n) in answers {
            m.entry(p).or_default().insert(o, Sized(n));
        }
        m
    }

    fn handed_out(w: &mut Watermarks, p: i32, offsets: std::ops::Range<i64>) {
        w.start(p, offsets.start);
        for o in offsets {
            w.handed_out(p, o);
        }
    }

    #[test]
    fn an_answer_waits_for_every_lower_offset_of_its_partition() {
        let mut w = Watermarks::default();
        handed_out(&mut w, 0, 10..13);
        let (budgets, solo) = (HashMap::new(), HashSet::new());
        // 11 and 12 are ready, 10 is not: nothing of partition 0 goes, nothing moved.
        let p = plan(
            generation(1),
            &pending(&[(0, 11, 5), (0, 12, 5)]),
            &w,
            &HashMap::from([(0, 10)]),
            &limits(&budgets, &solo),
        );
        assert!(p.is_empty(), "{p:?}");
        let p = plan(
            generation(1),
            &pending(&[(0, 10, 5), (0, 12, 5)]),
            &w,
            &HashMap::from([(0, 10)]),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(0, 10)]);
        assert_eq!(
            p.offsets,
            vec![(0, 11)],
            "the commit covers exactly the run"
        );
    }

    #[test]
    fn a_partition_answered_is_always_committed_in_the_same_transaction() {
        let mut w = Watermarks::default();
        handed_out(&mut w, 3, 5..6);
        let (budgets, solo) = (HashMap::new(), HashSet::new());
        // Even when the group already holds the offset after the run (a zombie would see its
        // commit refused only if it commits).
        let p = plan(
            generation(4),
            &pending(&[(3, 5, 1)]),
            &w,
            &HashMap::from([(3, 6)]),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(3, 5)]);
        assert_eq!(p.offsets, vec![(3, 6)]);
    }

    /// A transaction planned before a rebalance keeps the generation it was planned under.
    #[test]
    fn a_plan_carries_the_generation_it_was_planned_under() {
        let mut w = Watermarks::default();
        handed_out(&mut w, 0, 0..1);
        let (budgets, solo) = (HashMap::new(), HashSet::new());
        let p = plan(
            generation(7),
            &pending(&[(0, 0, 1)]),
            &w,
            &HashMap::new(),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.generation.id, 7);
    }

    #[test]
    fn offsets_that_moved_without_answers_are_committed_alone() {
        let mut w = Watermarks::default();
        w.start(1, 40);
        w.skip_to(1, 42);
        let (budgets, solo) = (HashMap::new(), HashSet::new());
        let p = plan(
            generation(1),
            &BTreeMap::<i32, BTreeMap<i64, Sized>>::new(),
            &w,
            &HashMap::from([(1, 40)]),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![]);
        assert_eq!(p.offsets, vec![(1, 42)]);
        let p = plan(
            generation(1),
            &BTreeMap::<i32, BTreeMap<i64, Sized>>::new(),
            &w,
            &HashMap::from([(1, 42)]),
            &limits(&budgets, &solo),
        );
        assert!(p.is_empty(), "nothing moved: {p:?}");
    }

    #[test]
    fn a_batch_budget_ends_the_run_and_the_commit_stops_before_the_rest() {
        let mut w = Watermarks::default();
        handed_out(&mut w, 0, 0..4);
        let budgets = HashMap::from([("responses".to_owned(), 100)]);
        let solo = HashSet::new();
        let p = plan(
            generation(1),
            &pending(&[(0, 0, 60), (0, 1, 30), (0, 2, 30), (0, 3, 1)]),
            &w,
            &HashMap::new(),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(0, 0), (0, 1)]);
        assert_eq!(p.offsets, vec![(0, 2)]);
        assert_eq!(
            p.batches,
            BTreeMap::from([(("responses".to_owned(), 0), 2)])
        );
        // A record larger than the budget still goes, alone.
        let p = plan(
            generation(1),
            &pending(&[(0, 0, 500), (0, 1, 1)]),
            &w,
            &HashMap::new(),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(0, 0)]);
        // A partition refused a batch as too large: one record per batch from then on.
        let solo = HashSet::from([("responses".to_owned(), 0)]);
        let p = plan(
            generation(1),
            &pending(&[(0, 0, 1), (0, 1, 1)]),
            &w,
            &HashMap::new(),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(0, 0)]);
        assert_eq!(p.offsets, vec![(0, 1)]);
    }

    /// An answer of any number of records (none: a request nothing could answer).
    struct Records(Vec<usize>);

    impl Weighed for Records {
        fn weights(&self) -> Vec<(&str, i32, usize)> {
            self.0.iter().map(|n| ("responses", 0, *n)).collect()
        }
    }

    /// A request that cannot be answered at all (not even a failure response fits) still
    /// counts as answered: its offset commits in the transaction, without a record, and the
    /// answers behind it go on (issue 26).
    #[test]
    fn an_answer_without_records_commits_its_offset_and_the_partition_moves_on() {
        let mut w = Watermarks::default();
        handed_out(&mut w, 0, 0..3);
        let (budgets, solo) = (HashMap::new(), HashSet::new());
        let pending = BTreeMap::from([(
            0,
            BTreeMap::from([
                (0, Records(vec![5])),
                (1, Records(vec![])),
                (2, Records(vec![5])),
            ]),
        )]);
        let p = plan(
            generation(1),
            &pending,
            &w,
            &HashMap::from([(0, 0)]),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(0, 0), (0, 1), (0, 2)]);
        assert_eq!(p.offsets, vec![(0, 3)]);
        assert_eq!(
            p.batches,
            BTreeMap::from([(("responses".to_owned(), 0), 2)]),
            "no record for the request nothing answers"
        );
        // Alone, it is a transaction of its offset only.
        let alone = BTreeMap::from([(0, BTreeMap::from([(0, Records(vec![]))]))]);
        let p = plan(
            generation(1),
            &alone,
            &w,
            &HashMap::from([(0, 0)]),
            &limits(&budgets, &solo),
        );
        assert_eq!(p.answers, vec![(0, 0)]);
        assert!(p.batches.is_empty());
        assert_eq!(p.offsets, vec![(0, 1)]);
    }

    #[test]
    fn a_transaction_answers_at_most_its_request_limit() {
        let mut w = Watermarks::default();
        handed_out(&mut w, 0, 0..3);
        let (budgets, solo) = (HashMap::new(), HashSet::new());
        let p = plan(
            generation(1),
            &pending(&[(0, 0, 1), (0, 1, 1), (0, 2, 1)]),
            &w,
            &HashMap::new(),
            &Limits {
                budgets: &budgets,
                solo: &solo,
                max_requests: 2,
            },
        );
        assert_eq!(p.answers, vec![(0, 0), (0, 1)]);
        assert_eq!(p.offsets, vec![(0, 2)]);
    }
}
