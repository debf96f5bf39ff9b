//! A partition's tenure at this worker, and giving it up: the rules that keep a partition from
//! being answered by two members (design decision 2). Plain types driven by events and time,
//! no IO: the fetch loops, the executions and the member tasks report to them.
//!
//! A tenure starts when the group gives this worker a partition and ends when the worker has
//! given it up. Every record fetched in it counts as *executing* until its done token completes
//! or is dropped; an execution that has its answer ready *claims* the right to produce it,
//! which only a tenure not yet lost grants. Giving a partition up ([`GiveUp`]) waits for the
//! executions to finish; at its deadline the tenure is *lost*: executions still running may
//! finish, but their answers are dropped (the partition's next owner runs those requests
//! again), and only the answers already being produced are waited for, briefly. After that
//! nothing of the tenure reaches Kafka, so the next owner's answers are the only ones.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Where a tenure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The partition is this worker's: its records are executed and answered.
    Held,
    /// Being given up: records not started are not executed; those running finish and are
    /// answered.
    GivingUp,
    /// Given up past its deadline, or taken away by the group without a say: answers not yet
    /// claimed are dropped.
    Lost,
    /// Given up and done with: a claimed answer still being produced stops retrying.
    Ended,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Records handed out whose done token still lives.
    executing: usize,
    /// Answers claimed and not yet produced (or dropped).
    answering: usize,
}

/// One partition's tenure; shared by its fetch loop, its records' done tokens and the member.
#[derive(Debug)]
pub struct Tenure {
    partition: i32,
    state: Mutex<State>,
}

impl Tenure {
    pub fn new(partition: i32) -> Arc<Tenure> {
        Arc::new(Tenure {
            partition,
            state: Mutex::new(State {
                phase: Phase::Held,
                executing: 0,
                answering: 0,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds consistent counts.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn phase(&self) -> Phase {
        self.state().phase
    }

    /// Whether answers of this tenure may no longer be produced (lost, or ended).
    pub fn lost(&self) -> bool {
        matches!(self.phase(), Phase::Lost | Phase::Ended)
    }

    /// Whether a record of this tenure that has not started may still be executed.
    pub fn held(&self) -> bool {
        self.phase() == Phase::Held
    }

    /// A record of this tenure was handed out for execution.
    pub fn handed_out(&self) {
        self.state().executing += 1;
    }

    /// A record's done token completed or was dropped.
    pub fn finished(&self) {
        let mut s = self.state();
        s.executing = s.executing.saturating_sub(1);
    }

    /// The right to produce an answer of this tenure, held until the answer is in Kafka or
    /// given up on; `None` once the tenure is lost.
    pub fn claim(self: &Arc<Self>) -> Option<Claim> {
        let mut s = self.state();
        if matches!(s.phase, Phase::Lost | Phase::Ended) {
            return None;
        }
        // Checked and counted under one lock: a give-up losing the tenure in between would
        // not wait for this answer.
        s.answering += 1;
        Some(Claim(self.clone()))
    }

    /// How many records still execute, and how many of their answers are being produced.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state();
        (s.executing, s.answering)
    }

    fn giving_up(&self) {
        let mut s = self.state();
        if s.phase == Phase::Held {
            s.phase = Phase::GivingUp;
        }
    }

    /// Answers not claimed yet will be dropped; returns how many records still execute
    /// without a claim (their answers are the ones dropped).
    pub fn lose(&self) -> usize {
        let mut s = self.state();
        if s.phase != Phase::Ended {
            s.phase = Phase::Lost;
        }
        s.executing.saturating_sub(s.answering)
    }

    fn end(&self) {
        self.state().phase = Phase::Ended;
    }
}

/// The right to produce one answer of a tenure (see [`Tenure::claim`]); dropped when the
/// answer is in Kafka or given up on.
#[derive(Debug)]
pub struct Claim(Arc<Tenure>);

impl Claim {
    /// The tenure was lost (or ended) since the claim was made: an answer not yet in Kafka is
    /// not to be produced any more.
    pub fn lost(&self) -> bool {
        self.0.lost()
    }

    /// The give-up stopped waiting for this answer: producing it now could answer a request
    /// its next owner answers too, so a retry loop should stop.
    pub fn abandoned(&self) -> bool {
        self.0.phase() == Phase::Ended
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.answering = s.answering.saturating_sub(1);
    }
}

/// What a give-up asks of the member after a look at its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Executions or answers are still under way: look again later (by [`GiveUp::next_look`]
    /// at the latest).
    Wait,
    /// Nothing of these partitions will reach Kafka any more: commit what is done (when
    /// `commit`), forget them, and let the group go on.
    Finish { commit: bool },
}

/// Giving up some partitions: wait for their executions until `deadline`, then for answers
/// already being produced until `deadline + answer_grace`; see the module docs.
#[derive(Debug)]
pub struct GiveUp {
    tenures: Vec<Arc<Tenure>>,
    deadline: Instant,
    answer_grace: Duration,
    /// Set once the tenures are lost (deadline passed, or the group went on).
    lost_at: Option<Instant>,
    /// Whether the group still takes this member's commit for the partitions.
    commit: bool,
    /// Answers dropped when the tenures were lost (for the one log line and the metric).
    dropped: usize,
}

impl GiveUp {
    /// Starts giving up `tenures`: their records not started are not executed from now on.
    pub fn new(tenures: Vec<Arc<Tenure>>, deadline: Instant, answer_grace: Duration) -> GiveUp {
        for t in &tenures {
            t.giving_up();
        }
        GiveUp {
            tenures,
            deadline,
            answer_grace,
            lost_at: None,
            commit: true,
            dropped: 0,
        }
    }

    /// The partitions being given up.
    pub fn partitions(&self) -> Vec<i32> {
        self.tenures.iter().map(|t| t.partition()).collect()
    }

    /// The group went on without this member (its generation or epoch is over): nothing more
    /// is answered and nothing committed.
    pub fn lose(&mut self, now: Instant) {
        self.commit = false;
        self.lose_tenures(now);
    }

    /// As [`lose`](Self::lose), and nothing is waited for: answers still being produced stop
    /// retrying (the worker is refused for good, or the group took everything at once).
    pub fn abandon(&mut self, now: Instant) {
        self.lose(now);
        let _ = self.finish();
    }

    fn lose_tenures(&mut self, now: Instant) {
        if self.lost_at.is_none() {
            self.lost_at = Some(now);
            self.dropped = self.tenures.iter().map(|t| t.lose()).sum();
        }
    }

    /// How many executions were still running, unclaimed, when the tenures were lost: their
    /// answers are dropped.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Whether the deadline passed (or the group went on) before the executions finished.
    pub fn expired(&self) -> bool {
        self.lost_at.is_some()
    }

    /// When a look is due at the latest: the deadline, then the end of the answers' grace.
    pub fn next_look(&self) -> Instant {
        match self.lost_at {
            None => self.deadline,
            Some(at) => at + self.answer_grace,
        }
    }

    /// Looks at the partitions at `now`: finished when no execution runs any more, or (past
    /// the deadline) no answer is being produced any more, or (past the grace) regardless.
    pub fn step(&mut self, now: Instant) -> Step {
        let (executing, answering) = self
            .tenures
            .iter()
            .map(|t| t.counts())
            .fold((0, 0), |(e, a), (te, ta)| (e + te, a + ta));
        if executing == 0 {
            return self.finish();
        }
        if self.lost_at.is_none() && now >= self.deadline {
            self.lose_tenures(now);
        }
        match self.lost_at {
            Some(_) if answering == 0 => self.finish(),
            Some(at) if now >= at + self.answer_grace => {
                tracing::error!(
                    partitions = ?self.partitions(),
                    answering,
                    "answers of given-up partitions are still being produced (Kafka slow or unreachable): they stop retrying now, but one already sent may still arrive beside the next owner's"
                );
                self.finish()
            }
            _ => Step::Wait,
        }
    }

    fn finish(&mut self) -> Step {
        for t in &self.tenures {
            t.end();
        }
        Step::Finish {
            commit: self.commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(1);

    fn give_up(tenures: &[Arc<Tenure>], after: Duration) -> GiveUp {
        GiveUp::new(tenures.to_vec(), Instant::now() + after, GRACE)
    }

    #[tokio::test(start_paused = true)]
    async fn a_give_up_without_executions_finishes_at_once_and_commits() {
        let t = Tenure::new(0);
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(10));
        assert_eq!(t.phase(), Phase::GivingUp);
        assert!(!t.held(), "records not started are not executed");
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: true });
        assert!(t.claim().is_none(), "an ended tenure answers nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn executions_that_finish_before_the_deadline_are_answered_and_committed() {
        let t = Tenure::new(3);
        t.handed_out();
        t.handed_out();
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(10));
        assert_eq!(g.step(Instant::now()), Step::Wait);
        let claim = t.claim().expect("a tenure being given up still answers");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(g.step(Instant::now()), Step::Wait);
        drop(claim);
        t.finished();
        t.finished();
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: true });
        assert!(!g.expired());
        assert_eq!(g.dropped(), 0);
    }

    /// The defect issue 25 names: an execution that outlives the deadline must not be answered
    /// by the old owner once its partition went to the next.
    #[tokio::test(start_paused = true)]
    async fn an_execution_past_the_deadline_loses_its_answer() {
        let t = Tenure::new(1);
        t.handed_out();
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: true });
        assert!(g.expired());
        assert_eq!(g.dropped(), 1);
        // The execution ends later and tries to answer.
        assert!(t.claim().is_none());
        t.finished();
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_being_produced_at_the_deadline_is_waited_for_within_the_grace() {
        let t = Tenure::new(2);
        t.handed_out();
        t.handed_out();
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(10));
        let producing = t.claim().expect("claimed before the deadline");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            g.step(Instant::now()),
            Step::Wait,
            "its produce is under way"
        );
        assert_eq!(g.dropped(), 1, "the other one, still executing, is dropped");
        assert_eq!(g.next_look(), Instant::now() + GRACE);
        assert!(t.claim().is_none());
        drop(producing);
        t.finished();
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: true });
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_stuck_in_production_is_abandoned_after_the_grace() {
        let t = Tenure::new(2);
        t.handed_out();
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(10));
        let producing = t.claim().expect("claimed");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(g.step(Instant::now()), Step::Wait);
        assert!(!producing.abandoned());
        tokio::time::advance(GRACE).await;
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: true });
        assert!(producing.abandoned(), "its retries stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_member_commits_nothing_and_answers_nothing_more() {
        let t = Tenure::new(4);
        t.handed_out();
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(1)).await;
        g.lose(Instant::now());
        assert!(t.claim().is_none());
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: false });
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_give_up_stops_answers_being_produced() {
        let t = Tenure::new(5);
        t.handed_out();
        t.handed_out();
        let producing = t.claim().expect("claimed");
        let mut g = give_up(std::slice::from_ref(&t), Duration::from_secs(30));
        g.abandon(Instant::now());
        assert!(producing.abandoned());
        assert!(t.claim().is_none());
        assert_eq!(g.dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_give_up_covers_every_partition_it_names() {
        let (a, b) = (Tenure::new(0), Tenure::new(1));
        a.handed_out();
        b.handed_out();
        let mut g = give_up(&[a.clone(), b.clone()], Duration::from_secs(10));
        assert_eq!(g.partitions(), vec![0, 1]);
        assert_eq!(g.step(Instant::now()), Step::Wait, "both still execute");
        a.finished();
        assert_eq!(
            g.step(Instant::now()),
            Step::Wait,
            "a record of 1 still executes"
        );
        b.finished();
        assert_eq!(g.step(Instant::now()), Step::Finish { commit: true });
    }
}
