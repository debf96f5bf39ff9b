//! The one way the worker answers a request, whatever the delivery behind it: at-least-once
//! (the response produced with acks=all, then its offset done) or exactly-once (the response
//! and its offset in one transaction). Either way an answer goes out only under a claim on its
//! partition's tenure ([`super::tenure`]): a partition given up past its deadline, or lost,
//! answers nothing more, as its next owner answers.
//!
//! No request stops its partition (design decision 14): a response Kafka refuses is replaced by
//! a failure response, that by one without the request's key and headers, and a request
//! nothing answers is committed past (dead-lettered if possible, logged, counted). A dead
//! letter never holds its response back: it waits [`DEAD_LETTER_WAIT`] at most. A topic that
//! goes missing is reported once per interval and shown in `/readyz`, and retried until it is
//! back.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::committer::OUTAGE_REPORT_INTERVAL;
use super::consumer::DoneToken;
use super::error::KafkaError;
use super::producer::{OutgoingRecord, PreparedRecord, ResponseProducer};
use super::transaction::{Finished, Outcome, TransactionalAnswers};
use super::trouble::{Report, Trouble};
use crate::backoff::Backoff;
use crate::metrics::board::Produced;

/// Why Kafka did not take a response, for the failure response that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The response is larger than the topic or the producer takes (else: another error that
    /// retrying cannot fix).
    pub too_large: bool,
    /// What happened, in words a failure response can carry.
    pub reason: String,
}

/// How long the error text of the last failure response may be: it must fit where nothing
/// else of the request does.
const SHORT_REASON_CHARS: usize = 400;

impl Refusal {
    /// The same refusal with its reason cut to a few hundred characters, for the last
    /// failure response.
    fn shortened(&self) -> Refusal {
        let reason = match self.reason.char_indices().nth(SHORT_REASON_CHARS) {
            Some((at, _)) => format!("{}…", &self.reason[..at]),
            None => self.reason.clone(),
        };
        Refusal {
            too_large: self.too_large,
            reason,
        }
    }
}

/// What of its request a failure response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeping {
    /// The request's key (as `--response-key` says) and its headers (`traceparent`), like
    /// every response.
    Request,
    /// Neither: the last try, for a request whose key or headers are too large themselves.
    Nothing,
}

/// What to produce for one request.
pub struct Reply<'a> {
    /// The response record.
    pub response: OutgoingRecord,
    /// For a record that is no request: the record itself, for the dead-letter topic.
    pub dead_letter: Option<OutgoingRecord>,
    /// Builds the failure response that replaces `response` should Kafka not take it; with
    /// [`Keeping::Nothing`] (tried when Kafka refuses the first) without the request's key and
    /// headers, and given a shortened refusal.
    pub fallback: &'a dyn Fn(&Refusal, Keeping) -> OutgoingRecord,
    /// Builds the request record, untouched, for the dead-letter topic with the given reason:
    /// the copy of a request that cannot be answered at all.
    pub unanswerable: &'a dyn Fn(&str) -> OutgoingRecord,
}

impl std::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("response", &self.response)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

/// What became of a [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// In Kafka (exactly-once: committed with its request's offset). `replaced`: the failure
    /// response went instead of the response, and why.
    Answered {
        /// Why Kafka refused the response, when its failure response went instead.
        replaced: Option<Refusal>,
    },
    /// Not answered: the partition is no longer this worker's (given up past its deadline, or
    /// lost), and its next owner runs the request again — or, exactly-once, the worker stopped
    /// before the transaction committed.
    Dropped,
    /// Neither the response nor any failure response could be produced: the request is
    /// committed past without an answer (and copied to the dead-letter topic if possible), so
    /// its partition moves on. Logged at ERROR with its partition and offset, and counted.
    Unanswerable(String),
}

/// How long a dead letter is retried while its topic is missing (or Kafka refuses it for a
/// while) before it is given up on, logged and counted: its request's offset waits for it
/// that long, its response does not.
pub const DEAD_LETTER_WAIT: Duration = Duration::from_secs(60);

/// A topic answers go to: its producer, what it is for, and its spell of failures.
#[derive(Debug)]
struct Target {
    producer: ResponseProducer,
    /// Named in `/readyz` while the topic is missing.
    role: Produced,
    trouble: Mutex<Trouble>,
}

impl Target {
    fn new(producer: ResponseProducer, role: Produced) -> Target {
        Target {
            producer,
            role,
            trouble: Mutex::new(Trouble::new(OUTAGE_REPORT_INTERVAL)),
        }
    }

    /// A send failed in a way worth retrying: says so once per interval, and shows a missing
    /// topic in `/readyz`.
    fn failed(&self, e: &KafkaError) {
        let missing = e.topic_missing();
        let report = self
            .trouble
            .lock()
            .expect("trouble lock")
            .failed(Instant::now());
        crate::metrics::worker().set_topic_missing(self.role, missing);
        let Report::Failing { for_ } = report else {
            return;
        };
        let topic = self.producer.topic();
        let waiting = self.producer.waiting().load(Ordering::Relaxed);
        let consequence = match self.role {
            Produced::Responses => {
                "their requests stay uncommitted and are answered once it works again; nothing is lost"
                    .to_owned()
            }
            Produced::DeadLetters => format!(
                "each is retried for {DEAD_LETTER_WAIT:?}, then given up (logged at ERROR and counted); responses go out regardless"
            ),
        };
        if missing {
            tracing::warn!(
                %topic,
                "the {} {topic} does not exist (deleted?) for {for_:.0?} now: {waiting} record(s) wait for it to be created again; {consequence}",
                self.role.label()
            );
        } else {
            tracing::warn!(
                %topic,
                "producing to {topic} has failed for {for_:.0?}, retrying: {e}; {waiting} record(s) wait; {consequence}"
            );
        }
    }

    /// A send went through: the spell (if any) is over.
    fn succeeded(&self) {
        let report = self
            .trouble
            .lock()
            .expect("trouble lock")
            .succeeded(Instant::now());
        if let Report::Recovered { after } = report {
            crate::metrics::worker().set_topic_missing(self.role, false);
            tracing::info!(
                topic = self.producer.topic(),
                "producing works again after {after:.0?}"
            );
        }
    }

    /// A record was given up on: with none left waiting, a missing topic no longer holds
    /// anything back, and `/readyz` stops saying so (until the next record finds it missing).
    fn gave_up(&self) {
        if self.producer.waiting().load(Ordering::Relaxed) == 0 {
            crate::metrics::worker().set_topic_missing(self.role, false);
        }
    }
}

/// Hands answers to Kafka; one per worker, shared by its executions.
#[derive(Debug)]
pub struct Answers {
    /// The response topic's producer.
    responses: Target,
    /// The dead-letter topic's producer; `None` when off or missing at start. Exactly-once
    /// also uses it, for dead letters a transaction had to leave out.
    dead_letters: Option<Target>,
    /// Exactly-once: the transaction task; `None`: produced at once, offsets committed after.
    transactions: Option<TransactionalAnswers>,
}

impl Answers {
    pub(super) fn new(
        responses: ResponseProducer,
        dead_letters: Option<ResponseProducer>,
        transactions: Option<TransactionalAnswers>,
    ) -> Answers {
        Answers {
            responses: Target::new(responses, Produced::Responses),
            dead_letters: dead_letters.map(|d| Target::new(d, Produced::DeadLetters)),
            transactions,
        }
    }

    /// The largest runtime answer worth reading: any larger cannot be delivered.
    pub fn largest_useful_answer(&self) -> u64 {
        self.responses.producer.largest_useful_answer()
    }

    /// What an operator can raise so that larger responses fit.
    pub fn limit_advice(&self) -> String {
        self.responses.producer.limit_advice()
    }

    /// Answers the record of `done` with `reply` and marks it done once the answer is in
    /// Kafka. Producing is retried until it succeeds, retrying cannot help (then the fallback
    /// goes instead, and if nothing fits, the request is committed past without an answer), or
    /// the partition's give-up stops waiting for it.
    pub async fn answer(&self, done: DoneToken, reply: Reply<'_>) -> Delivery {
        let (partition, offset) = (done.partition(), done.offset());
        let Some(claim) = done.claim() else {
            return dropped(partition, offset);
        };
        // Boxed: the two ways' futures nest rskafka's and the transaction task's deeply.
        let delivery = match &self.transactions {
            Some(transactions) => {
                Box::pin(self.in_transaction(transactions, done, reply, &claim)).await
            }
            None => Box::pin(self.at_least_once(done, reply, &claim)).await,
        };
        // Exactly-once also drops the answers of a worker that stops before they commit: not
        // counted as given up.
        if delivery == Delivery::Dropped && claim.lost() {
            return dropped(partition, offset);
        }
        delivery
    }

    async fn at_least_once(
        &self,
        done: DoneToken,
        reply: Reply<'_>,
        claim: &super::tenure::Claim,
    ) -> Delivery {
        let (partition, offset) = (done.partition(), done.offset());
        // At once, beside the response: a dead letter that waits (its topic missing) never
        // holds the response back, only the offset, and that for DEAD_LETTER_WAIT at most.
        let dead_letter = async {
            if let Some(record) = &reply.dead_letter {
                self.dead_letter(record, claim, partition, offset).await;
            }
        };
        let (_, answered) = tokio::join!(dead_letter, self.respond(&reply, claim));
        match answered {
            Ok(replaced) => {
                done.complete();
                Delivery::Answered { replaced }
            }
            Err(Unproduced::Abandoned) => Delivery::Dropped,
            Err(Unproduced::Refused(why) | Unproduced::OutOfTime(why)) => {
                let copied = match &reply.dead_letter {
                    Some(_) => None,
                    None => Some(
                        self.dead_letter(&(reply.unanswerable)(&why), claim, partition, offset)
                            .await,
                    ),
                };
                done.complete();
                unanswerable(partition, offset, why, copied.flatten())
            }
        }
    }

    /// Produces the response, else its failure response, else one without the request's key
    /// and headers. `Ok`: one of them is in Kafka (`Some`: a failure response, and why);
    /// `Refused`: none can be, and why.
    async fn respond(
        &self,
        reply: &Reply<'_>,
        claim: &super::tenure::Claim,
    ) -> Result<Option<Refusal>, Unproduced<String>> {
        let target = &self.responses;
        let e = match produce_until_done(target, &reply.response, claim, None).await {
            Ok(()) => return Ok(None),
            Err(e) => e.refused()?,
        };
        let refusal = refusal(e, size(&reply.response));
        let failure = (reply.fallback)(&refusal, Keeping::Request);
        let e = match produce_until_done(target, &failure, claim, None).await {
            Ok(()) => return Ok(Some(refusal)),
            Err(e) => e.refused()?,
        };
        tracing::warn!(
            "the failure response cannot be produced either ({e}); trying one without the request's key and headers"
        );
        let short = refusal.shortened();
        let bare = (reply.fallback)(&short, Keeping::Nothing);
        match produce_until_done(target, &bare, claim, None).await {
            Ok(()) => Ok(Some(short)),
            Err(last) => Err(Unproduced::Refused(format!(
                "the response cannot be produced ({}), nor its failure response ({e}), nor one without the request's key and headers ({})",
                refusal.reason,
                last.refused()?
            ))),
        }
    }

    /// Copies `record` to the dead-letter topic (if there is one), retrying for
    /// [`DEAD_LETTER_WAIT`] at most; a dead letter given up on is logged at ERROR and counted.
    /// Returns the topic it went to.
    async fn dead_letter(
        &self,
        record: &OutgoingRecord,
        claim: &super::tenure::Claim,
        partition: i32,
        offset: i64,
    ) -> Option<String> {
        let target = self.dead_letters.as_ref()?;
        let topic = target.producer.topic();
        let deadline = Instant::now() + DEAD_LETTER_WAIT;
        let e = match produce_until_done(target, record, claim, Some(deadline)).await {
            Ok(()) => {
                crate::metrics::worker().dead_letter();
                return Some(topic.to_owned());
            }
            Err(Unproduced::Abandoned) => return None,
            Err(Unproduced::Refused(e)) => e.to_string(),
            Err(Unproduced::OutOfTime(e)) => {
                target.gave_up();
                format!("still failing after {DEAD_LETTER_WAIT:?}: {e}")
            }
        };
        crate::metrics::worker().dead_letter_lost();
        tracing::error!(
            %topic,
            partition,
            offset,
            "the dead letter of the request record is lost, it cannot be produced to {topic} ({e}); the request is answered regardless"
        );
        None
    }
    /// Exactly-once: hands the response (and the dead letter) to the next transaction and
    /// waits until it committed with the request's offset. A response larger than the topic
    /// takes is replaced by its failure response, and that by one without the request's key
    /// and headers, here or (when the broker refuses it with limits not known here) in the
    /// transaction; when nothing fits, the offset commits alone.
    async fn in_transaction(
        &self,
        transactions: &TransactionalAnswers,
        done: DoneToken,
        reply: Reply<'_>,
        claim: &super::tenure::Claim,
    ) -> Delivery {
        let (partition, offset) = (done.partition(), done.offset());
        let (answers, refusals) = self.candidates(&reply);
        let unanswered = answers.is_empty().then(|| {
            format!(
                "neither the response nor a failure response fits the response topic ({})",
                self.responses.producer.limit_advice()
            )
        });
        let dead_letter_record = match (&reply.dead_letter, &unanswered) {
            (Some(record), _) => Some(record.clone()),
            (None, Some(why)) => Some((reply.unanswerable)(why)),
            (None, None) => None,
        };
        let dead_letter = match (&dead_letter_record, &self.dead_letters) {
            (Some(record), Some(dlq)) => match dlq.producer.prepare(record) {
                Ok(d) => Some(d),
                Err(e) => {
                    crate::metrics::worker().dead_letter_lost();
                    tracing::error!(
                        partition,
                        offset,
                        "the dead letter of the request record is lost, it cannot be produced: {e}"
                    );
                    None
                }
            },
            _ => None,
        };
        let candidates = answers.len();
        let finished = Finished {
            answers,
            dead_letter,
            done,
        };
        let (used, dead_lettered, left_out) = match transactions.answer(finished).await {
            Outcome::Committed {
                answered_with,
                dead_lettered,
                dead_letter_left_out,
            } => (answered_with, dead_lettered, dead_letter_left_out),
            Outcome::Dropped => return Delivery::Dropped,
        };
        let copied = match (left_out, &dead_letter_record) {
            // Its topic went missing: the transaction went on without it, and it is produced
            // on its own, as at-least-once does.
            (true, Some(record)) => self.dead_letter(record, claim, partition, offset).await,
            _ if dead_lettered => {
                crate::metrics::worker().dead_letter();
                self.dead_letters
                    .as_ref()
                    .map(|d| d.producer.topic().to_owned())
            }
            _ => None,
        };
        if used >= candidates {
            let why = unanswered.unwrap_or_else(|| {
                "Kafka refused the response and every failure response as too large".to_owned()
            });
            return unanswerable(partition, offset, why, copied);
        }
        Delivery::Answered {
            replaced: refusals.into_iter().nth(used).flatten(),
        }
    }

    /// What may answer a request in a transaction, best first, each with the refusal its
    /// failure response carries (`None` for the response itself): those that fit the response
    /// topic's limits as known here.
    fn candidates(&self, reply: &Reply<'_>) -> (Vec<PreparedRecord>, Vec<Option<Refusal>>) {
        let producer = &self.responses.producer;
        let size = size(&reply.response);
        let mut answers = Vec::new();
        let mut refusals = Vec::new();
        let refusal = match producer.prepare(&reply.response) {
            Ok(p) => {
                answers.push(p);
                refusals.push(None);
                // Should the broker refuse it with limits not known here.
                Refusal {
                    too_large: true,
                    reason: format!(
                        "Kafka refused the response ({size} bytes) as too large; {}",
                        producer.limit_advice()
                    ),
                }
            }
            Err(e) => refusal(e, size),
        };
        let short = refusal.shortened();
        for (refusal, keeping) in [(refusal, Keeping::Request), (short, Keeping::Nothing)] {
            if let Ok(p) = producer.prepare(&(reply.fallback)(&refusal, keeping)) {
                answers.push(p);
                refusals.push(Some(refusal));
            }
        }
        (answers, refusals)
    }
}

/// The answer of a record is not produced: its partition went to another member.
fn dropped(partition: i32, offset: i64) -> Delivery {
    crate::metrics::worker().answer_dropped();
    tracing::debug!(
        partition,
        offset,
        "not answered: the partition was given up (or lost) before the answer was ready; its next owner answers"
    );
    Delivery::Dropped
}

/// A request committed past without an answer: said at ERROR, counted.
fn unanswerable(partition: i32, offset: i64, why: String, copied: Option<String>) -> Delivery {
    crate::metrics::worker().unanswerable();
    let copy = match copied {
        Some(topic) => format!("the request record went to the dead-letter topic {topic}"),
        None => {
            "no copy of it was kept (no dead-letter topic, or it refused the record)".to_owned()
        }
    };
    tracing::error!(
        partition,
        offset,
        "the request cannot be answered and is committed past without a response: {why}; {copy}"
    );
    Delivery::Unanswerable(why)
}

fn size(record: &OutgoingRecord) -> usize {
    record.value.as_ref().map_or(0, Vec::len)
}

/// Why a response could not be produced, as the failure response that replaces it says.
fn refusal(e: KafkaError, size: usize) -> Refusal {
    match e {
        KafkaError::RecordTooLarge(too_large) => Refusal {
            too_large: true,
            reason: too_large.to_string(),
        },
        other => Refusal {
            too_large: false,
            reason: format!("the response ({size} bytes) could not be produced to Kafka: {other}"),
        },
    }
}

/// Why a record was not produced.
enum Unproduced<E = KafkaError> {
    /// Kafka refused it for good (too large, say): retrying cannot help.
    Refused(E),
    /// Its partition's give-up stopped waiting for it.
    Abandoned,
    /// It was still failing when its time to retry ran out.
    OutOfTime(E),
}

impl Unproduced {
    /// Why Kafka refused it for good (or, with a deadline, kept failing); `Err` when it was
    /// abandoned.
    fn refused<E>(self) -> Result<KafkaError, Unproduced<E>> {
        match self {
            Unproduced::Refused(e) | Unproduced::OutOfTime(e) => Ok(e),
            Unproduced::Abandoned => Err(Unproduced::Abandoned),
        }
    }
}

/// Produces with retries until Kafka acknowledges the record; gives up on errors that
/// retrying cannot help (e.g. a record larger than the broker accepts), at `deadline` if there
/// is one, or when the partition's give-up stops waiting for the answer. Failures are said
/// once per interval per topic (however many records wait), a missing topic shown in
/// `/readyz`.
async fn produce_until_done(
    target: &Target,
    record: &OutgoingRecord,
    claim: &super::tenure::Claim,
    deadline: Option<Instant>,
) -> Result<(), Unproduced> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        // Boxed: rskafka's producer future nests deeply, and callers join several of these.
        match Box::pin(target.producer.send(record)).await {
            Ok(_) => {
                target.succeeded();
                return Ok(());
            }
            Err(e) if e.is_permanent() => return Err(Unproduced::Refused(e)),
            Err(e) => {
                if claim.abandoned() {
                    return Err(Unproduced::Abandoned);
                }
                target.failed(&e);
                crate::metrics::worker().produce_retry();
                let pause = backoff.next_pause();
                if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                    return Err(Unproduced::OutOfTime(e));
                }
                // Retrying goes on through a stop's grace period; the worker aborts this task
                // when the grace period ends, leaving the record uncommitted.
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_failure_response_carries_a_shortened_reason() {
        let long = Refusal {
            too_large: true,
            reason: "é".repeat(5_000),
        };
        let short = long.shortened();
        assert!(short.too_large);
        assert_eq!(short.reason.chars().count(), SHORT_REASON_CHARS + 1);
        assert!(short.reason.ends_with('…'));
        let brief = Refusal {
            too_large: false,
            reason: "refused".into(),
        };
        assert_eq!(brief.shortened(), brief);
    }
}
