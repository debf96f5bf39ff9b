//! Where the worker's transactional producer stands between transactions, and what it must
//! ask the coordinator before the next one may begin: a plain type, driven by the
//! coordinator's answers and the time, so that the order of the calls is tested without a
//! broker.
//!
//! A failed transaction is ended with EndTxn(abort) first and only then is the epoch bumped
//! with InitProducerId, as Java's producer does. Initialising straight away (KIP-360 allows it)
//! meets the transaction still Ongoing: the coordinator then fences the epoch itself to abort
//! it and answers CONCURRENT_TRANSACTIONS, and on Kafka 2.x (and 3.9.1) it forgets the epoch it
//! fenced, so the retry is answered PRODUCER_FENCED, as if another producer had taken the
//! transactional id over.

use std::time::Duration;

use tokio::time::Instant;

use super::calls::ProducerIdentity;

/// The producer between transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    /// No identity yet, or the coordinator fenced the one it had when it aborted a
    /// transaction of ours that had outlived its timeout.
    Uninitialised,
    /// Ready to begin a transaction.
    Ready(ProducerIdentity),
    /// A transaction was begun and neither committed nor aborted (its attempt failed or was
    /// cut short): it must be aborted before the next, or its records would commit with the
    /// next one's.
    Open {
        who: ProducerIdentity,
        since: Instant,
    },
    /// Nothing of ours is open at the coordinator any more: the epoch is bumped next, which
    /// fences a zombie of this worker and starts the sequences anew.
    Aborted(ProducerIdentity),
}

/// The next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Begin a transaction as this producer.
    Begin(ProducerIdentity),
    /// EndTxn(abort) of the open transaction.
    Abort(ProducerIdentity),
    /// InitProducerId, with the current identity (bumps its epoch) or without (the first time,
    /// fencing any earlier producer of the transactional id).
    Initialise(Option<ProducerIdentity>),
}

/// How the coordinator answered a call, as far as the standing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer<T> {
    Done(T),
    /// PRODUCER_FENCED or INVALID_PRODUCER_EPOCH.
    Fenced,
    /// Worth asking again: unreachable, moving, CONCURRENT_TRANSACTIONS.
    Transient,
    /// Any other refusal.
    Refused,
}

/// What the caller does after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Take the next step now.
    Next,
    /// Back off, then take the same step again.
    Retry,
    /// Another producer holds the transactional id: this worker stops.
    Fenced,
    /// Kafka refuses the call for good: this worker stops with the call's error.
    Refused,
}

impl Standing {
    pub(super) fn step(&self) -> Step {
        match *self {
            Standing::Uninitialised => Step::Initialise(None),
            Standing::Ready(who) => Step::Begin(who),
            Standing::Open { who, .. } => Step::Abort(who),
            Standing::Aborted(who) => Step::Initialise(Some(who)),
        }
    }

    /// A transaction begins as [`Step::Begin`]'s producer.
    pub(super) fn begin(&mut self, now: Instant) {
        if let Standing::Ready(who) = *self {
            *self = Standing::Open { who, since: now };
        }
    }

    /// The open transaction committed.
    pub(super) fn committed(&mut self) {
        if let Standing::Open { who, .. } = *self {
            *self = Standing::Ready(who);
        }
    }

    /// The answer to [`Step::Abort`]. `timeout` is the transaction timeout the producer
    /// registered.
    pub(super) fn aborted(&mut self, answer: Answer<()>, now: Instant, timeout: Duration) -> After {
        let Standing::Open { who, since } = *self else {
            return After::Next;
        };
        match answer {
            Answer::Done(()) => {
                *self = Standing::Aborted(who);
                After::Next
            }
            Answer::Transient => After::Retry,
            // The coordinator aborts a transaction left open past its timeout by fencing its
            // epoch, which looks like being fenced by another producer. Only a transaction of
            // ours that was open that long can have met that: start over without an identity
            // (group generations still fence a zombie's commits).
            Answer::Fenced if now.duration_since(since) >= timeout => {
                tracing::warn!(
                    "the coordinator aborted this worker's transaction after its timeout ({timeout:?}); initialising anew"
                );
                *self = Standing::Uninitialised;
                After::Next
            }
            Answer::Fenced => After::Fenced,
            // INVALID_TXN_STATE: nothing is open at the coordinator (the attempt failed before
            // the transaction began there). Anything else is for InitProducerId to settle,
            // which would abort an open transaction too.
            Answer::Refused => {
                *self = Standing::Aborted(who);
                After::Next
            }
        }
    }

    /// The answer to [`Step::Initialise`].
    pub(super) fn initialised(&mut self, answer: Answer<ProducerIdentity>) -> After {
        match answer {
            Answer::Done(who) => {
                *self = Standing::Ready(who);
                After::Next
            }
            Answer::Transient => After::Retry,
            Answer::Fenced => After::Fenced,
            Answer::Refused => After::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn who(epoch: i16) -> ProducerIdentity {
        ProducerIdentity { id: 7, epoch }
    }

    /// Ready as epoch 0, with a transaction begun at the time of the call.
    fn open() -> Standing {
        let mut s = Standing::Uninitialised;
        assert_eq!(s.initialised(Answer::Done(who(0))), After::Next);
        s.begin(Instant::now());
        s
    }

    #[test]
    fn a_new_producer_initialises_without_an_identity_and_then_begins() {
        let mut s = Standing::Uninitialised;
        assert_eq!(s.step(), Step::Initialise(None));
        assert_eq!(s.initialised(Answer::Transient), After::Retry);
        assert_eq!(s.step(), Step::Initialise(None));
        assert_eq!(s.initialised(Answer::Done(who(0))), After::Next);
        assert_eq!(s.step(), Step::Begin(who(0)));
    }

    #[test]
    fn a_committed_transaction_leaves_the_producer_ready_with_its_epoch() {
        let mut s = open();
        s.committed();
        assert_eq!(s.step(), Step::Begin(who(0)));
    }

    /// The bug this type exists for: on Kafka 2.x, InitProducerId meeting the Ongoing
    /// transaction fences the producer's own retry.
    #[test]
    fn a_failed_transaction_is_aborted_with_end_txn_before_the_epoch_is_bumped() {
        let mut s = open();
        assert_eq!(s.step(), Step::Abort(who(0)));
        assert_eq!(
            s.aborted(Answer::Transient, Instant::now(), TIMEOUT),
            After::Retry
        );
        assert_eq!(
            s.step(),
            Step::Abort(who(0)),
            "still open until EndTxn answers"
        );
        assert_eq!(
            s.aborted(Answer::Done(()), Instant::now(), TIMEOUT),
            After::Next
        );
        assert_eq!(s.step(), Step::Initialise(Some(who(0))));
        // CONCURRENT_TRANSACTIONS while the abort's markers are written.
        assert_eq!(s.initialised(Answer::Transient), After::Retry);
        assert_eq!(s.step(), Step::Initialise(Some(who(0))));
        assert_eq!(s.initialised(Answer::Done(who(1))), After::Next);
        assert_eq!(s.step(), Step::Begin(who(1)));
    }

    #[test]
    fn nothing_open_at_the_coordinator_goes_straight_to_the_epoch_bump() {
        let mut s = open();
        assert_eq!(
            s.aborted(Answer::Refused, Instant::now(), TIMEOUT),
            After::Next
        );
        assert_eq!(s.step(), Step::Initialise(Some(who(0))));
    }

    #[tokio::test(start_paused = true)]
    async fn fenced_soon_after_beginning_means_another_producer_took_the_id_over() {
        let mut s = open();
        tokio::time::advance(TIMEOUT - Duration::from_millis(1)).await;
        assert_eq!(
            s.aborted(Answer::Fenced, Instant::now(), TIMEOUT),
            After::Fenced
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fenced_after_the_transaction_timeout_means_the_coordinator_aborted_it() {
        let mut s = open();
        tokio::time::advance(TIMEOUT).await;
        assert_eq!(
            s.aborted(Answer::Fenced, Instant::now(), TIMEOUT),
            After::Next
        );
        assert_eq!(s.step(), Step::Initialise(None));
        assert_eq!(s.initialised(Answer::Done(who(2))), After::Next);
        assert_eq!(s.step(), Step::Begin(who(2)));
    }

    #[test]
    fn fenced_or_refused_initialising_stops_the_worker() {
        let mut s = Standing::Aborted(who(0));
        let mut t = s;
        assert_eq!(t.initialised(Answer::Fenced), After::Fenced);
        assert_eq!(s.initialised(Answer::Refused), After::Refused);
    }

    #[test]
    fn only_a_ready_producer_begins_and_only_an_open_transaction_commits() {
        let mut s = Standing::Aborted(who(0));
        s.begin(Instant::now());
        assert_eq!(s, Standing::Aborted(who(0)));
        s.committed();
        assert_eq!(s, Standing::Aborted(who(0)));
    }
}
