//! One request from record to response.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use tracing::Instrument;
use uuid::Uuid;

use super::admission::{Admission, Admitted};
use crate::config::{ExecutionSettings, ResponseKey};
use crate::kafka::record_batch::Header;
use crate::kafka::{
    Answers, Delivery, DoneToken, Keeping, OutgoingRecord, Refusal, Reply, RequestRecord,
};
use crate::metrics::board::RUNTIME_FAILURE;
use crate::protocol::response::Failure;
use crate::protocol::revision::DataType;
use crate::protocol::{
    BuiltResponse, DEAD_LETTER_REASON_HEADER, JOB_ID_HEADER, ProtocolError, Step, Timings,
    build_result_response, failure_response, parse_request,
};
use crate::runtime_client::RuntimeClient;
use crate::store::Store;

/// What every execution of a worker shares.
#[derive(Debug)]
pub struct Execution {
    /// Revisions and their prepared runtime requests, cached.
    store: Store,
    /// POSTs runtime requests to hetida's runtime (one keep-alive pool per worker).
    runtime: RuntimeClient,
    /// Where every response goes (and, untouched, records that are no request).
    answers: Answers,
    /// Response key and in-flight limit, as configured.
    settings: ExecutionSettings,
    /// Named in failure responses' `extra_information`.
    request_topic: String,
    /// This worker's pid, reported in responses as hetida does (unless turned off).
    process_id: Option<u32>,
    /// Refuses requests that ended workers before, and runs suspects alone.
    admission: Admission,
}

/// A request record without its done token: what executing it reads.
#[derive(Debug)]
struct Incoming {
    /// Where the record is, for failure responses and logs.
    partition: i32,
    offset: i64,
    /// Passed on to the response (and the dead letter) as configured.
    key: Option<Vec<u8>>,
    /// The request JSON.
    value: Option<Vec<u8>>,
    /// The record's headers as produced (keys as bytes, values possibly null, in order).
    headers: Vec<Header>,
    /// When it was fetched: the request's measured duration starts here.
    fetched: std::time::Instant,
    /// Why the record cannot be read at all (its record batch is corrupt).
    unreadable: Option<String>,
}

impl Incoming {
    fn split(record: RequestRecord) -> (Incoming, DoneToken) {
        let RequestRecord {
            partition,
            offset,
            key,
            value,
            headers,
            done,
            fetched,
            unreadable,
            ..
        } = record;
        (
            Incoming {
                partition,
                offset,
                key,
                value,
                headers,
                fetched,
                unreadable,
            },
            done,
        )
    }
}

/// Aborts the task when dropped: an answer task must not outlive the record's handling (which
/// the worker aborts when its grace period ends).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// The response value for a record, and whether the record also goes to the dead-letter topic.
struct Answer {
    /// The response JSON.
    value: Vec<u8>,
    /// The request's job id (or a fresh one when it has none that can be read).
    job_id: Uuid,
    /// `error.type` of a failure response (the runtime's own failures as one label); `None`
    /// for a result `ok`. What the response is counted under.
    error_type: Option<&'static str>,
    /// Why the record is no request at all, when it is not.
    dead_letter: Option<String>,
    /// The execution's steps, for a failure response that replaces the response.
    timings: Timings,
}

/// Why an execution ended without a runtime result, with what is known of the request.
struct Failed {
    /// What went wrong; decides the response's error type and message.
    error: ProtocolError,
    /// The request's job id, once the request could be read.
    job_id: Option<Uuid>,
    /// The revision's outputs, once it was prepared: a failure response lists them too.
    output_types: Vec<(String, DataType)>,
}

impl From<ProtocolError> for Failed {
    fn from(error: ProtocolError) -> Failed {
        Failed {
            error,
            job_id: None,
            output_types: Vec::new(),
        }
    }
}

impl Execution {
    /// What every execution task of the worker shares: the store, the runtime client, the
    /// answer handle and the settings.
    pub fn new(
        store: Store,
        runtime: RuntimeClient,
        answers: Answers,
        settings: ExecutionSettings,
        request_topic: String,
    ) -> Execution {
        Execution {
            store,
            runtime,
            answers,
            process_id: settings.report_process_id.then(std::process::id),
            settings,
            request_topic,
            admission: Admission::default(),
        }
    }

    async fn execute(
        &self,
        record: &Incoming,
        timings: &mut Timings,
        full_start: chrono::DateTime<Utc>,
    ) -> Result<(BuiltResponse, Uuid), Failed> {
        if let Some(reason) = &record.unreadable {
            return Err(ProtocolError::NotARequest {
                reason: reason.clone(),
            }
            .into());
        }
        let request = parse_request(record.value.as_deref())?;
        let job_id = request.job_id;
        tracing::Span::current().record(
            "revision",
            tracing::field::display(Revision(request.target)),
        );
        #[cfg(feature = "test-hooks")]
        super::test_hooks::panic_if_asked(job_id);
        #[cfg(feature = "test-hooks")]
        super::test_hooks::abort_if_asked(job_id);
        let with_job = |error: ProtocolError| Failed {
            error,
            job_id: Some(job_id),
            output_types: Vec::new(),
        };
        let prepare_start = Utc::now();
        let prepared = self
            .store
            .prepared(request.target)
            .await
            .map_err(with_job)?;
        let runtime_request = prepared.runtime_request(&request).map_err(with_job)?;
        let prepare_end = Utc::now();
        timings.prepare_execution_input = Some(Step {
            start: prepare_start,
            end: prepare_end,
        });
        let failed = |error: ProtocolError| Failed {
            error,
            job_id: Some(job_id),
            output_types: prepared.output_types().to_vec(),
        };
        let sent = runtime_request.body.len();
        let called = std::time::Instant::now();
        let answer = self.runtime.run(runtime_request.body).await;
        crate::metrics::worker().runtime_call(called.elapsed(), sent);
        let answer = answer.map_err(|e| {
            failed(match ProtocolError::from(e) {
                ProtocolError::RuntimeAnswerTooLarge { reason } => {
                    ProtocolError::RuntimeAnswerTooLarge {
                        reason: format!("{reason}; {}", self.answers.limit_advice()),
                    }
                }
                other => other,
            })
        })?;
        let end = Utc::now();
        timings.run_execution_input = Some(Step {
            start: prepare_end,
            end,
        });
        timings.internal_full = Some(Step {
            start: full_start,
            end,
        });
        let built = build_result_response(
            answer.status,
            &answer.body,
            prepared.output_types(),
            timings,
            self.process_id,
        )
        .map_err(failed)?;
        Ok((built, job_id))
    }

    /// Executes one record and produces its response; marks it done once the response is in
    /// Kafka. Producing is retried until it succeeds or the worker is stopping hard.
    pub async fn handle(self: Arc<Self>, record: RequestRecord) {
        let span = tracing::info_span!(
            "request",
            partition = record.partition,
            offset = record.offset,
            job_id = tracing::field::Empty,
            revision = tracing::field::Empty
        );
        // Before anything of it runs: a request that ended workers is not executed again.
        let admitted = self.admission.admit(&record).instrument(span.clone()).await;
        if !record.still_assigned() {
            tracing::debug!(
                partition = record.partition,
                offset = record.offset,
                "not executed: the partition was revoked before the record started"
            );
            return;
        }
        let _in_flight = InFlight::start();
        let (incoming, done) = Incoming::split(record);
        let incoming = Arc::new(incoming);
        let answer = match &admitted {
            Admitted::Run { .. } => {
                self.answer_contained(incoming.clone(), span.clone())
                    .instrument(span.clone())
                    .await
            }
            Admitted::Refused(reason) => Some(self.refusal_answer(&incoming, reason)),
        };
        let Some(answer) = answer else {
            return;
        };
        span.record("job_id", tracing::field::display(answer.job_id));
        self.deliver(&incoming, done, answer).instrument(span).await
    }

    /// Hands the answer to Kafka and counts what became of it.
    async fn deliver(&self, incoming: &Incoming, done: DoneToken, answer: Answer) {
        let Answer {
            value,
            job_id,
            error_type,
            dead_letter,
            timings,
        } = answer;
        let fallback = |refusal: &Refusal, keeping: Keeping| {
            let failure = self.failure_value(incoming, &refused(refusal), job_id, &timings);
            let record = self.response_record(incoming, job_id, failure);
            match keeping {
                Keeping::Request => record,
                // The last try: the request's key or headers may be what does not fit.
                Keeping::Nothing => OutgoingRecord {
                    key: None,
                    headers: record
                        .headers
                        .into_iter()
                        .filter(|(name, _)| name != "traceparent")
                        .collect(),
                    ..record
                },
            }
        };
        let unanswerable = |reason: &str| self.dead_letter_record(incoming, job_id, reason);
        let reply = Reply {
            dead_letter: dead_letter
                .as_deref()
                .map(|reason| self.dead_letter_record(incoming, job_id, reason)),
            // Moved, not copied: the response can be megabytes.
            response: self.response_record(incoming, job_id, value),
            fallback: &fallback,
            unanswerable: &unanswerable,
        };
        let metrics = crate::metrics::worker();
        match self.answers.answer(done, reply).await {
            Delivery::Answered { replaced: None } => {
                job_finished(error_type, incoming.fetched.elapsed());
                metrics.request_done(error_type, incoming.fetched.elapsed());
            }
            Delivery::Answered {
                replaced: Some(refusal),
            } => {
                let error = refused(&refusal);
                tracing::warn!(%job_id, "the response could not be produced, a failure response went instead: {error}");
                job_finished(Some(error.error_type()), incoming.fetched.elapsed());
                metrics.request_done(Some(error.error_type()), incoming.fetched.elapsed());
            }
            Delivery::Dropped => {
                tracing::debug!(%job_id, "not answered: the partition went to another member, which executes the request again")
            }
            // Logged at ERROR and counted by the answer path.
            Delivery::Unanswerable(_) => {}
        }
    }

    /// The answer to a record, computed in a task of its own. Outside input must never panic
    /// it (design decision 14); should a bug do so anyway, the record is still answered, with a
    /// failure response, and its offset completes: one bad request must not hold its
    /// partition's commits for good and run again after every restart. `None` when the worker
    /// is stopping hard (the task was cancelled).
    async fn answer_contained(
        self: &Arc<Self>,
        incoming: Arc<Incoming>,
        span: tracing::Span,
    ) -> Option<Answer> {
        let task = {
            let this = self.clone();
            let incoming = incoming.clone();
            AbortOnDrop(tokio::task::spawn_local(
                async move { this.answer(&incoming).await }.instrument(span),
            ))
        };
        match (&mut { task }).await {
            Ok(answer) => Some(answer),
            Err(e) if e.is_panic() => Some(self.panic_answer(&incoming, e.into_panic())),
            Err(_) => None,
        }
    }

    /// Executes and builds the response, a failure response if anything goes wrong.
    async fn answer(&self, incoming: &Incoming) -> Answer {
        let full_start = Utc::now();
        let mut timings = Timings::default();
        match self.execute(incoming, &mut timings, full_start).await {
            Ok((built, job_id)) => Answer {
                value: built.value,
                job_id,
                error_type: (!built.ok).then_some(RUNTIME_FAILURE),
                dead_letter: None,
                timings,
            },
            Err(failed) => self.failure_answer(incoming, failed, timings, full_start),
        }
    }

    /// The failure response for a request that is not executed because it ended workers.
    fn refusal_answer(&self, incoming: &Incoming, reason: &str) -> Answer {
        let failed = Failed {
            error: ProtocolError::Internal {
                reason: reason.to_owned(),
            },
            // Read without building the request: that may be what ended the workers.
            job_id: crate::protocol::job_id_only(incoming.value.as_deref()),
            output_types: Vec::new(),
        };
        self.failure_answer(incoming, failed, Timings::default(), Utc::now())
    }

    /// The failure response for an execution that panicked.
    fn panic_answer(&self, incoming: &Incoming, panic: Box<dyn std::any::Any + Send>) -> Answer {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        let job_id = std::panic::catch_unwind(|| parse_request(incoming.value.as_deref()))
            .ok()
            .and_then(|parsed| match parsed {
                Ok(request) => Some(request.job_id),
                Err(e) => e.job_id(),
            });
        tracing::error!(
            job_id = ?job_id,
            topic = %self.request_topic,
            partition = incoming.partition,
            offset = incoming.offset,
            "the execution panicked; answering with a failure response: {what}"
        );
        let failed = Failed {
            error: ProtocolError::Internal {
                reason: format!(
                    "the execution failed unexpectedly (a bug in hd-kafka-exec): {what}"
                ),
            },
            job_id,
            output_types: Vec::new(),
        };
        self.failure_answer(incoming, failed, Timings::default(), Utc::now())
    }

    /// The failure response for an execution that ended without a runtime result.
    fn failure_answer(
        &self,
        record: &Incoming,
        failed: Failed,
        mut timings: Timings,
        full_start: chrono::DateTime<Utc>,
    ) -> Answer {
        let job_id = failed
            .job_id
            .or_else(|| failed.error.job_id())
            .unwrap_or_else(Uuid::new_v4);
        timings.internal_full = Some(Step {
            start: full_start,
            end: Utc::now(),
        });
        tracing::warn!(%job_id, error_type = failed.error.error_type(), "request failed: {}", failed.error);
        let extra = self.extra_information(record);
        let value = failure_response(&Failure {
            error: &failed.error,
            job_id: Some(job_id),
            output_types: &failed.output_types,
            timings: &timings,
            process_id: self.process_id,
            extra: Some(&extra),
        });
        Answer {
            value,
            job_id,
            error_type: Some(failed.error.error_type()),
            // Of a corrupt batch, the record that carries its bytes stands for all of it.
            dead_letter: (failed.error.is_not_a_request()
                && (record.unreadable.is_none() || record.value.is_some()))
            .then(|| failed.error.to_string()),
            timings,
        }
    }

    /// The response record: key as configured, job id and content type headers, and the
    /// request's `traceparent` (design decision 7).
    fn response_record(&self, record: &Incoming, job_id: Uuid, value: Vec<u8>) -> OutgoingRecord {
        let job = job_id.hyphenated().to_string();
        let mut headers = BTreeMap::from([
            (JOB_ID_HEADER.to_owned(), job.clone().into_bytes()),
            ("content-type".to_owned(), b"application/json".to_vec()),
        ]);
        let traceparent = record
            .headers
            .iter()
            .find(|h| h.key == b"traceparent")
            .and_then(|h| h.value.clone());
        if let Some(tp) = traceparent {
            headers.insert("traceparent".to_owned(), tp);
        }
        let key = match self.settings.response_key {
            ResponseKey::Request => record.key.clone(),
            ResponseKey::JobId => Some(job.into_bytes()),
            ResponseKey::None => None,
        };
        OutgoingRecord {
            key,
            value: Some(value),
            headers,
            exact_headers: None,
        }
    }

    /// The record, untouched (key, value, every header in its order, null values and keys
    /// that are not UTF-8 included), for the dead-letter topic, with the reason and the job id
    /// in two headers after the request's own.
    fn dead_letter_record(&self, record: &Incoming, job_id: Uuid, reason: &str) -> OutgoingRecord {
        let mut exact = record.headers.clone();
        exact.push(Header {
            key: DEAD_LETTER_REASON_HEADER.as_bytes().to_vec(),
            value: Some(reason.as_bytes().to_vec()),
        });
        exact.push(Header {
            key: JOB_ID_HEADER.as_bytes().to_vec(),
            value: Some(job_id.hyphenated().to_string().into_bytes()),
        });
        OutgoingRecord {
            key: record.key.clone(),
            value: record.value.clone(),
            headers: BTreeMap::new(),
            exact_headers: Some(exact),
        }
    }

    /// A failure response's value for `error`.
    fn failure_value(
        &self,
        record: &Incoming,
        error: &ProtocolError,
        job_id: Uuid,
        timings: &Timings,
    ) -> Vec<u8> {
        let extra = self.extra_information(record);
        failure_response(&Failure {
            error,
            job_id: Some(job_id),
            output_types: &[],
            timings,
            process_id: self.process_id,
            extra: Some(&extra),
        })
    }

    /// `extra_information` of a failure response: where the request record is.
    fn extra_information(&self, record: &Incoming) -> serde_json::Value {
        serde_json::json!({
            "topic": self.request_topic,
            "partition": record.partition,
            "offset": record.offset,
        })
    }
}

/// Counts an execution in flight for as long as it lives (however its task ends: done,
/// abandoned at a revocation, or aborted when the grace period is over).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        crate::metrics::worker().in_flight(true);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::metrics::worker().in_flight(false);
    }
}

/// Why a response could not be produced, as the failure response that replaces it says.
fn refused(refusal: &Refusal) -> ProtocolError {
    let reason = refusal.reason.clone();
    if refusal.too_large {
        ProtocolError::ResponseTooLarge { reason }
    } else {
        ProtocolError::Internal { reason }
    }
}

/// Where the one line per finished job is logged: its own target, so an operator can turn it
/// off alone (`RUST_LOG=info,hd_kafka_exec::jobs=off`).
pub const JOB_LOG_TARGET: &str = "hd_kafka_exec::jobs";

/// The one INFO line per answered request, as hetida's backend logs one per job: the request's
/// span adds partition, offset, job id and revision; this adds the result and the time from
/// fetch to the answer in Kafka.
fn job_finished(error_type: Option<&'static str>, took: std::time::Duration) {
    let ms = format_args!("{:.1}", took.as_secs_f64() * 1000.0);
    match error_type {
        None => tracing::info!(target: JOB_LOG_TARGET, result = %"ok", %ms, "job finished"),
        Some(error_type) => tracing::info!(
            target: JOB_LOG_TARGET,
            result = %"failure",
            %error_type,
            %ms,
            "job finished"
        ),
    }
}

/// What a request asked to execute, as the job line shows it.
struct Revision(crate::protocol::Target);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            crate::protocol::Target::Id(id) => write!(f, "{id}"),
            crate::protocol::Target::LatestOfGroup(group) => write!(f, "latest of group {group}"),
        }
    }
}
