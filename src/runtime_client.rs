//! The HTTP client that POSTs prepared requests to hetida's runtime service (spec §6.1).
//!
//! One keep-alive connection pool per worker process. Unlike the reference, every call has a
//! timeout, and a runtime that cannot be reached is retried with capped exponential backoff
//! for a bounded time before the request gets a failure response (design decision 8). Whatever
//! status and body the runtime answers are handed on: the protocol decides what they mean.
//!
//! The runtime is outside input too: an answer is read up to `max_answer_bytes` and no further,
//! and a call that fails says how — not connected, no answer in time, the connection broken
//! before or during the answer (with the status and the start of what arrived), too large, a
//! TLS handshake refused (with the certificate problem in words).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};

use crate::http_client::{BodyError, error_chain, read_limited};
use crate::protocol::error::body_start;
use crate::protocol::{ProtocolError, RuntimeBody};
use crate::secret::Secret;
use crate::tls::{TlsError, TlsFiles};

/// How much of a broken answer an error quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// Where and how to call the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// `HETIDA_DESIGNER_RUNTIME_ENGINE_URL`; requests go to `<base>/runtime`.
    pub engine_url: String,
    /// Sent as `Authorization: Bearer`; never in Debug output or errors.
    pub bearer_token: Option<Secret>,
    /// One call, from sending the request to the end of the answer's body.
    pub call_timeout: Duration,
    /// Total time spent retrying a runtime that cannot be connected to.
    pub retry_budget: Duration,
    /// First step between connection attempts; doubles up to `backoff_max` (with jitter, see
    /// [`Backoff`](crate::backoff::Backoff)).
    pub backoff_initial: Duration,
    /// The largest step between connection attempts.
    pub backoff_max: Duration,
    /// The largest answer body read, in bytes: a larger one is refused, and no more than this
    /// is ever buffered. A response must fit into one Kafka record, so the worker sets it from
    /// the producer's limit; an answer beyond that could not be delivered anyway.
    pub max_answer_bytes: u64,
    /// Trust for an https:// runtime (`HD_CA_BUNDLE`, `HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS`);
    /// unused for http://.
    pub tls: TlsFiles,
}

impl RuntimeOptions {
    /// The options for the runtime at `engine_url`, everything else at its default.
    pub fn new(engine_url: impl Into<String>) -> Self {
        RuntimeOptions {
            engine_url: engine_url.into(),
            bearer_token: None,
            call_timeout: Duration::from_secs(300),
            retry_budget: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_answer_bytes: 64 * 1024 * 1024,
            tls: TlsFiles::system(),
        }
    }
}

/// What the runtime answered, whatever the status.
#[derive(Debug, Clone)]
pub struct RuntimeAnswer {
    /// The HTTP status: the runtime reports a failed execution in the body, so any status is
    /// read, and quoted when the body is not a result.
    pub status: u16,
    /// The whole body, at most `max_answer_bytes`.
    pub body: Bytes,
}

/// Why a runtime call gave no usable answer; each becomes a failure response naming the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configured engine URL cannot be called (not http(s), no host); a configuration
    /// error, found before any request.
    #[error("runtime URL `{url}` is not usable: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// HTTPS to the runtime cannot be set up (a CA bundle unreadable, a build without TLS).
    #[error("runtime at {url}: HTTPS cannot be set up: {source}")]
    Tls {
        /// The runtime's URL.
        url: String,
        /// Why the TLS configuration cannot be built.
        #[source]
        source: TlsError,
    },
    /// No connection could be made within the retry budget: the runtime is down or not where
    /// the URL says. The request has not reached it, so this is safe to answer as a failure.
    #[error("runtime at {url} unreachable after {attempts} attempt(s) over {elapsed:.1?}: {cause}")]
    Unreachable {
        /// The runtime's URL.
        url: String,
        /// How many connections were tried.
        attempts: u32,
        /// How long they were tried for (the retry budget, give or take a step).
        elapsed: Duration,
        /// Why the last attempt failed.
        cause: String,
    },
    /// The call took longer than the call timeout; the runtime may still be executing.
    #[error("runtime at {url} {}", timed_out(*.answer, *.timeout))]
    Timeout {
        /// The runtime's URL.
        url: String,
        /// The call timeout that ran out.
        timeout: Duration,
        /// Status and body bytes read, when the answer had begun.
        answer: Option<(u16, u64)>,
    },
    /// The runtime was reached, but the call failed (no answer, a broken or too large one, a
    /// failed TLS handshake); not retried, since the runtime may have executed the request.
    #[error("runtime at {url}: {failure}")]
    Failed {
        /// The runtime's URL.
        url: String,
        /// How the call failed.
        failure: CallFailure,
    },
}

fn timed_out(answer: Option<(u16, u64)>, timeout: Duration) -> String {
    match answer {
        None => format!("did not answer within the call timeout of {timeout:?}"),
        Some((status, read)) => format!(
            "answered HTTP {status} but did not finish the answer within the call timeout of \
             {timeout:?} ({read} bytes of the body read)"
        ),
    }
}

/// How a call that reached the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// The request could not be sent, or the connection broke before an answer began.
    #[error("no answer: {cause}")]
    NoAnswer {
        /// The error chain as hyper wrote it.
        cause: String,
    },
    /// The TLS handshake failed in a way trying again cannot mend (see
    /// [`crate::tls::explain_handshake_failure`]).
    #[error("TLS handshake failed: {problem} ({cause})")]
    Handshake {
        /// The problem in an operator's words, e.g. "the server's certificate is not trusted…".
        problem: &'static str,
        /// The error chain as hyper and rustls wrote it.
        cause: String,
    },
    /// The answer began, then the connection broke.
    #[error(
        "the answer (HTTP {status}) broke off after {read} bytes of the body: {cause}; it began: {body_start}"
    )]
    BrokenAnswer {
        /// The status the answer began with.
        status: u16,
        /// Bytes of the body received before the break.
        read: u64,
        /// Why it broke, as hyper wrote it.
        cause: String,
        /// The start of what was received, for telling what answered.
        body_start: String,
    },
    /// The answer is larger than `max_answer_bytes`.
    #[error(
        "the answer (HTTP {status}) is larger than the {limit} bytes a worker reads: {}",
        match .content_length {
            Some(announced) if announced > limit => format!("it announced {announced} bytes, refused before reading them"),
            _ => format!("refused after {read} bytes"),
        }
    )]
    TooLarge {
        /// The status of the answer.
        status: u16,
        /// `max_answer_bytes`.
        limit: u64,
        /// Bytes received when it was refused, the one piece that crossed the limit included.
        read: u64,
        /// The size the answer announced, if it did: one larger than the limit is refused
        /// before any of its body is read.
        content_length: Option<u64>,
    },
}

/// The failure the worker answers with when a runtime call fails. The error type is the
/// reference's for the same case: TrafoExecutionRuntimeConnectionError for a failed call
/// (httpx's errors); an answer over the limit is a response that Kafka would not take
/// (MessageSizeTooLargeError, what hetida's producer raises for it).
impl From<RuntimeError> for ProtocolError {
    fn from(e: RuntimeError) -> ProtocolError {
        match &e {
            RuntimeError::Failed {
                failure: CallFailure::TooLarge { .. },
                ..
            } => ProtocolError::RuntimeAnswerTooLarge {
                reason: e.to_string(),
            },
            _ => ProtocolError::RuntimeUnreachable {
                reason: e.to_string(),
            },
        }
    }
}

/// The runtime endpoint of one worker.
#[derive(Debug, Clone)]
pub struct RuntimeClient {
    http: crate::http_client::HttpClient<PiecesBody>,
    uri: Uri,
    authorization: Option<HeaderValue>,
    options: RuntimeOptions,
}

/// The HTTP body of one attempt: the pieces of a [`RuntimeBody`], each handed to hyper as a
/// frame of its own. hyper queues large frames and writes them with `writev`, so the shared
/// pieces go from the prepared revision to the socket without a copy. The exact size makes
/// hyper send a `Content-Length` (the runtime's server expects one), not chunked encoding.
#[derive(Debug)]
struct PiecesBody {
    pieces: std::vec::IntoIter<Bytes>,
}

impl PiecesBody {
    fn new(body: &RuntimeBody) -> PiecesBody {
        PiecesBody {
            pieces: body.pieces().to_vec().into_iter(),
        }
    }
}

impl Body for PiecesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.pieces.by_ref().find(|p| !p.is_empty());
        Poll::Ready(next.map(|p| Ok(Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.as_slice().iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.pieces.as_slice().iter().map(|p| p.len() as u64).sum())
    }
}

/// `…/engine/` and `…/engine` both become `…/engine/runtime`, like POSIX path joining.
pub fn runtime_url(engine_url: &str) -> String {
    if engine_url.ends_with('/') {
        format!("{engine_url}runtime")
    } else {
        format!("{engine_url}/runtime")
    }
}

impl RuntimeClient {
    /// Must be called inside a tokio runtime (the pool spawns its connection tasks there).
    pub fn new(options: RuntimeOptions) -> Result<RuntimeClient, RuntimeError> {
        let url = runtime_url(&options.engine_url);
        let bad = |reason: String| RuntimeError::BadUrl {
            url: url.clone(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some(&options.tls),
            _ => return Err(bad("must be an http:// or https:// URL".into())),
        };
        let authorization = crate::http_client::bearer(options.bearer_token.as_ref())
            .map_err(|e| bad(e.to_string()))?;
        let http = crate::http_client::client(tls).map_err(|source| RuntimeError::Tls {
            url: url.clone(),
            source,
        })?;
        Ok(RuntimeClient {
            http,
            uri,
            authorization,
            options,
        })
    }

    /// The runtime's URL, for log lines and messages.
    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// POSTs one runtime request; retries only while the runtime cannot be connected to.
    pub async fn run(&self, body: impl Into<RuntimeBody>) -> Result<RuntimeAnswer, RuntimeError> {
        let body = body.into();
        let started = tokio::time::Instant::now();
        let mut backoff =
            crate::backoff::Backoff::new(self.options.backoff_initial, self.options.backoff_max);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut progress = None;
            let call = tokio::time::timeout(
                self.options.call_timeout,
                self.call_once(&body, &mut progress),
            )
            .await;
            match call.unwrap_or(Err(Attempt::Timeout)) {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Connect(cause)) => {
                    let elapsed = started.elapsed();
                    let pause = backoff.next_pause();
                    if elapsed + pause > self.options.retry_budget {
                        return Err(RuntimeError::Unreachable {
                            url: self.url(),
                            attempts,
                            elapsed,
                            cause,
                        });
                    }
                    tracing::warn!(url = %self.uri, attempts, "runtime unreachable, retrying in {pause:?}: {cause}");
                    tokio::time::sleep(pause).await;
                }
                Err(Attempt::Timeout) => {
                    return Err(RuntimeError::Timeout {
                        url: self.url(),
                        timeout: self.options.call_timeout,
                        answer: progress,
                    });
                }
                Err(Attempt::Failed(failure)) => {
                    return Err(RuntimeError::Failed {
                        url: self.url(),
                        failure,
                    });
                }
            }
        }
    }

    /// One attempt; `progress` follows the status and the body bytes read, for a timeout to
    /// report.
    async fn call_once(
        &self,
        body: &RuntimeBody,
        progress: &mut Option<(u16, u64)>,
    ) -> Result<RuntimeAnswer, Attempt> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("hd-kafka-exec/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request.body(PiecesBody::new(body)).map_err(|e| {
            Attempt::Failed(CallFailure::NoAnswer {
                cause: format!("the request cannot be built: {e}"),
            })
        })?;
        let response = self.http.request(request).await.map_err(|e| {
            let cause = error_chain(&e);
            // A refused handshake is a connect error to hyper, but unlike a runtime that is
            // down or restarting it will not mend within the retry budget: the certificate, the
            // trust or the server's port stay what they are until an operator changes them.
            // Retrying would hold an execution slot for the whole budget per request and only
            // delay the same failure; the request gets its failure response at once instead.
            if let Some(problem) = crate::tls::explain_handshake_failure(&cause) {
                Attempt::Failed(CallFailure::Handshake { problem, cause })
            } else if e.is_connect() {
                Attempt::Connect(cause)
            } else {
                Attempt::Failed(CallFailure::NoAnswer { cause })
            }
        })?;
        let status = response.status().as_u16();
        *progress = Some((status, 0));
        let limit = self.options.max_answer_bytes;
        // Dropping the body unread (on any error below) closes the connection rather than
        // returning it to the pool: nothing of this answer can reach the next call.
        let body = read_limited(response.into_body(), limit, |read| {
            *progress = Some((status, read));
        })
        .await
        .map_err(|e| {
            Attempt::Failed(match e {
                BodyError::TooLarge {
                    read,
                    content_length,
                } => CallFailure::TooLarge {
                    status,
                    limit,
                    read,
                    content_length,
                },
                BodyError::Broken { partial, cause } => CallFailure::BrokenAnswer {
                    status,
                    read: partial.len() as u64,
                    cause,
                    body_start: body_start(&partial, QUOTED_BODY_CHARS),
                },
            })
        })?;
        Ok(RuntimeAnswer { status, body })
    }
}

enum Attempt {
    Connect(String),
    Timeout,
    Failed(CallFailure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_url_joins_like_posix_paths() {
        assert_eq!(
            runtime_url("http://rt:8090/engine/"),
            "http://rt:8090/engine/runtime"
        );
        assert_eq!(
            runtime_url("http://rt:8090/engine"),
            "http://rt:8090/engine/runtime"
        );
    }

    #[tokio::test]
    async fn other_schemes_are_a_clear_error() {
        let e = RuntimeClient::new(RuntimeOptions::new("ftp://rt/engine/")).unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn https_with_an_unreadable_ca_bundle_names_the_file() {
        let mut options = RuntimeOptions::new("https://rt/engine/");
        options.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let e = RuntimeClient::new(options).unwrap_err();
        assert!(matches!(e, RuntimeError::Tls { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn https_without_the_tls_feature_names_the_feature() {
        let e = RuntimeClient::new(RuntimeOptions::new("https://rt/engine/")).unwrap_err();
        assert!(e.to_string().contains("`tls` feature"), "{e}");
    }
}
