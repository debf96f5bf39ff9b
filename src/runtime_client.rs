//! The HTTP client that POSTs prepared requests to hetida's runtime service (spec §6.1).
//!
//! One keep-alive connection pool per worker process. Unlike the reference, every call has a
//! timeout, and a runtime that cannot be reached is retried with capped exponential backoff
//! for a bounded time before the request gets a failure response (design decision 8). Whatever
//! status and body the runtime answers are handed on: the protocol decides what they mean.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};

use crate::protocol::RuntimeBody;

/// Where and how to call the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// `HETIDA_DESIGNER_RUNTIME_ENGINE_URL`; requests go to `<base>/runtime`.
    pub engine_url: String,
    pub bearer_token: Option<String>,
    /// One call, from sending the request to the end of the answer's body.
    pub call_timeout: Duration,
    /// Total time spent retrying a runtime that cannot be connected to.
    pub retry_budget: Duration,
    /// First pause between connection attempts; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl RuntimeOptions {
    pub fn new(engine_url: impl Into<String>) -> Self {
        RuntimeOptions {
            engine_url: engine_url.into(),
            bearer_token: None,
            call_timeout: Duration::from_secs(300),
            retry_budget: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// What the runtime answered, whatever the status.
#[derive(Debug, Clone)]
pub struct RuntimeAnswer {
    pub status: u16,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime URL `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("runtime at {url} unreachable after {attempts} attempt(s) over {elapsed:?}: {cause}")]
    Unreachable {
        url: String,
        attempts: u32,
        elapsed: Duration,
        cause: String,
    },
    #[error("runtime at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("runtime at {url}: the call failed: {cause}")]
    Failed { url: String, cause: String },
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
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "only http:// is supported (this build has no TLS: it contains no C code)".into(),
            ));
        }
        let authorization = crate::http_client::bearer(options.bearer_token.as_deref())
            .map_err(|e| bad(e.to_string()))?;
        let http = crate::http_client::client();
        Ok(RuntimeClient {
            http,
            uri,
            authorization,
            options,
        })
    }

    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// POSTs one runtime request; retries only while the runtime cannot be connected to.
    pub async fn run(&self, body: impl Into<RuntimeBody>) -> Result<RuntimeAnswer, RuntimeError> {
        let body = body.into();
        let started = tokio::time::Instant::now();
        let mut backoff = self.options.backoff_initial;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.call_once(&body).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Connect(cause)) => {
                    let elapsed = started.elapsed();
                    if elapsed + backoff > self.options.retry_budget {
                        return Err(RuntimeError::Unreachable {
                            url: self.url(),
                            attempts,
                            elapsed,
                            cause,
                        });
                    }
                    tracing::warn!(url = %self.uri, attempts, "runtime unreachable, retrying in {backoff:?}: {cause}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.backoff_max);
                }
                Err(Attempt::Timeout) => {
                    return Err(RuntimeError::Timeout {
                        url: self.url(),
                        timeout: self.options.call_timeout,
                    });
                }
                Err(Attempt::Other(cause)) => {
                    return Err(RuntimeError::Failed {
                        url: self.url(),
                        cause,
                    });
                }
            }
        }
    }

    async fn call_once(&self, body: &RuntimeBody) -> Result<RuntimeAnswer, Attempt> {
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
        let request = request
            .body(PiecesBody::new(body))
            .map_err(|e| Attempt::Other(e.to_string()))?;
        let call = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    Attempt::Connect(error_chain(&e))
                } else {
                    Attempt::Other(error_chain(&e))
                }
            })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Attempt::Other(format!("reading the answer: {}", error_chain(&e))))?
                .to_bytes();
            Ok(RuntimeAnswer { status, body })
        };
        tokio::time::timeout(self.options.call_timeout, call)
            .await
            .unwrap_or(Err(Attempt::Timeout))
    }
}

enum Attempt {
    Connect(String),
    Timeout,
    Other(String),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
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
    async fn https_is_a_clear_error() {
        let e = RuntimeClient::new(RuntimeOptions::new("https://rt/engine/")).unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
    }
}
