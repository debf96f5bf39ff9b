//! The one way the worker answers a request, whatever the delivery behind it: at-least-once
//! (the response produced with acks=all, then its offset done) or exactly-once (the response
//! and its offset in one transaction). Either way an answer goes out only under a claim on its
//! partition's tenure ([`super::tenure`]): a partition given up past its deadline, or lost,
//! answers nothing more, as its next owner answers.

use std::time::Duration;

use super::consumer::DoneToken;
use super::error::KafkaError;
use super::producer::OutgoingRecord;
use super::producer::ResponseProducer;
use super::transaction::{Finished, Outcome, TransactionalAnswers};
use crate::backoff::Backoff;

/// Why Kafka did not take a response, for the failure response that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The response is larger than the topic or the producer takes (else: another error that
    /// retrying cannot fix).
    pub too_large: bool,
    /// What happened, in words a failure response can carry.
    pub reason: String,
}

/// What to produce for one request.
pub struct Reply<'a> {
    /// The response record.
    pub response: OutgoingRecord,
    /// For a record that is no request: the record itself, for the dead-letter topic.
    pub dead_letter: Option<OutgoingRecord>,
    /// Builds the failure response that replaces `response` should Kafka not take it.
    pub fallback: &'a dyn Fn(&Refusal) -> OutgoingRecord,
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
    /// Neither the response nor its failure response could be produced.
    Failed(String),
}

/// Hands answers to Kafka; one per worker, shared by its executions.
#[derive(Debug)]
pub struct Answers {
    /// The response topic's producer.
    responses: ResponseProducer,
    /// The dead-letter topic's producer; `None` when off or missing.
    dead_letters: Option<ResponseProducer>,
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
            responses,
            dead_letters,
            transactions,
        }
    }

    /// The largest runtime answer worth reading: any larger cannot be delivered.
    pub fn largest_useful_answer(&self) -> u64 {
        self.responses.largest_useful_answer()
    }

    /// What an operator can raise so that larger responses fit.
    pub fn limit_advice(&self) -> String {
        self.responses.limit_advice()
    }

    /// Answers the record of `done` with `reply` and marks it done once the answer is in
    /// Kafka. Producing is retried until it succeeds, retrying cannot help (then the fallback
    /// goes instead), or the partition's give-up stops waiting for it.
    pub async fn answer(&self, done: DoneToken, reply: Reply<'_>) -> Delivery {
        let (partition, offset) = (done.partition(), done.offset());
        let Some(claim) = done.claim() else {
            return dropped(partition, offset);
        };
        // Boxed: the two ways' futures nest rskafka's and the transaction task's deeply.
        let delivery = match &self.transactions {
            Some(transactions) => Box::pin(self.in_transaction(transactions, done, reply)).await,
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
        if let (Some(dead_letter), Some(dlq)) = (&reply.dead_letter, &self.dead_letters) {
            // Failing to is logged only: the failure response still answers the request.
            match produce_until_done(dlq, dead_letter, claim).await {
                Ok(()) => crate::metrics::worker().dead_letter(),
                Err(Unproduced::Refused(e)) => {
                    tracing::error!("the dead letter cannot be produced: {e}")
                }
                Err(Unproduced::Abandoned) => {}
            }
        }
        let e = match produce_until_done(&self.responses, &reply.response, claim).await {
            Ok(()) => {
                done.complete();
                return Delivery::Answered { replaced: None };
            }
            Err(Unproduced::Abandoned) => return Delivery::Dropped,
            Err(Unproduced::Refused(e)) => e,
        };
        let refusal = refusal(e, size(&reply.response));
        let failure = (reply.fallback)(&refusal);
        match produce_until_done(&self.responses, &failure, claim).await {
            Ok(()) => {
                done.complete();
                Delivery::Answered {
                    replaced: Some(refusal),
                }
            }
            Err(Unproduced::Abandoned) => Delivery::Dropped,
            // Left uncommitted: it runs again after a restart, and commits of this partition
            // stop below it, which shows.
            Err(Unproduced::Refused(e)) => Delivery::Failed(format!(
                "not even the failure response can be produced ({}): {e}",
                refusal.reason
            )),
        }
    }

    /// Exactly-once: hands the response (and the dead letter) to the next transaction and
    /// waits until it committed with the request's offset. A response larger than the topic
    /// takes is replaced by its fallback, here or (when the broker refuses it with limits not
    /// known here) in the transaction.
    async fn in_transaction(
        &self,
        transactions: &TransactionalAnswers,
        done: DoneToken,
        reply: Reply<'_>,
    ) -> Delivery {
        let size = size(&reply.response);
        let refused_by_broker = Refusal {
            too_large: true,
            reason: format!(
                "Kafka refused the response ({size} bytes) as too large; {}",
                self.responses.limit_advice()
            ),
        };
        let fallback = match self
            .responses
            .prepare(&(reply.fallback)(&refused_by_broker))
        {
            Ok(f) => f,
            Err(e) => {
                return Delivery::Failed(format!(
                    "not even a failure response fits the response topic: {e}"
                ));
            }
        };
        let (response, mut replaced) = match self.responses.prepare(&reply.response) {
            Ok(p) => (p, None),
            Err(e) => {
                let refusal = refusal(e, size);
                match self.responses.prepare(&(reply.fallback)(&refusal)) {
                    Ok(p) => (p, Some(refusal)),
                    Err(e) => {
                        return Delivery::Failed(format!(
                            "not even the failure response can be produced ({}): {e}",
                            refusal.reason
                        ));
                    }
                }
            }
        };
        let dead_letter = match (&reply.dead_letter, &self.dead_letters) {
            (Some(record), Some(dlq)) => match dlq.prepare(record) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!("the dead letter cannot be produced: {e}");
                    None
                }
            },
            _ => None,
        };
        let with_dead_letter = dead_letter.is_some();
        let finished = Finished {
            response,
            fallback,
            dead_letter,
            done,
        };
        match transactions.answer(finished).await {
            Outcome::Committed {
                replaced: by_broker,
            } => {
                if with_dead_letter {
                    crate::metrics::worker().dead_letter();
                }
                if by_broker {
                    replaced = Some(refused_by_broker);
                }
                Delivery::Answered { replaced }
            }
            Outcome::Dropped => Delivery::Dropped,
        }
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
enum Unproduced {
    /// Kafka refused it for good (too large, say): retrying cannot help.
    Refused(KafkaError),
    /// Its partition's give-up stopped waiting for it.
    Abandoned,
}

/// Produces with retries until Kafka acknowledges the record; gives up on errors that
/// retrying cannot help (e.g. a record larger than the broker accepts), or when the
/// partition's give-up stops waiting for the answer.
async fn produce_until_done(
    producer: &ResponseProducer,
    record: &OutgoingRecord,
    claim: &super::tenure::Claim,
) -> Result<(), Unproduced> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match producer.send(record).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_permanent() => return Err(Unproduced::Refused(e)),
            Err(e) => {
                if claim.abandoned() {
                    return Err(Unproduced::Abandoned);
                }
                tracing::warn!(topic = producer.topic(), "producing failed, retrying: {e}");
                crate::metrics::worker().produce_retry();
                // Retrying goes on through a stop's grace period; the worker aborts this task
                // when the grace period ends, leaving the record uncommitted.
                backoff.wait().await;
            }
        }
    }
}
