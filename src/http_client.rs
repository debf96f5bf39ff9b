//! The one way this service builds its HTTP clients (to hetida's runtime and to its backend):
//! a keep-alive pool, `TCP_NODELAY` (small requests must not wait for Nagle's algorithm; uvicorn
//! sets it on its side too) and a bounded connect, plus the bearer-token header both send.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A pooled client over plain TCP; `B` is the request body type.
pub type HttpClient<B> = Client<HttpConnector, B>;

/// How long connecting may take before the attempt counts as failed (and is retried by the
/// caller within its own budget).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections are closed after this; a busy worker keeps reusing its own.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client with this service's connection settings.
pub fn client<B>() -> HttpClient<B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// The token is not a valid header value (a line break, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bearer token contains characters not allowed in a header")]
pub struct InvalidBearerToken;

/// The `Authorization` header for `token`, if any.
pub fn bearer(token: Option<&str>) -> Result<Option<HeaderValue>, InvalidBearerToken> {
    token
        .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| InvalidBearerToken))
        .transpose()
}

/// Why reading an answer's body stopped before its end.
#[derive(Debug)]
pub enum BodyError {
    /// It is larger than the limit: refused at its Content-Length, or at the piece that
    /// crossed the limit, so nothing beyond it is buffered.
    TooLarge {
        /// Bytes received when it was refused (0 when the Content-Length said enough).
        read: u64,
        /// The length the answer announced, if it did.
        content_length: Option<u64>,
    },
    /// The connection broke in the middle.
    Broken {
        /// What arrived before it broke, for the error message.
        partial: Bytes,
        /// The error chain, e.g. "connection reset by peer".
        cause: String,
    },
}

/// Reads a body whole, but never more than `limit` bytes; `progress` hears the bytes read so
/// far after each piece (for a caller's error message if it is cancelled meanwhile).
pub async fn read_limited<B>(
    mut body: B,
    limit: u64,
    mut progress: impl FnMut(u64),
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error,
{
    let hint = body.size_hint();
    if hint.lower() > limit {
        return Err(BodyError::TooLarge {
            read: 0,
            content_length: hint.exact(),
        });
    }
    let mut out = BytesMut::with_capacity(usize::try_from(hint.lower()).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken {
            partial: out.clone().freeze(),
            cause: error_chain(&e),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let read = out.len() as u64 + data.len() as u64;
        if read > limit {
            return Err(BodyError::TooLarge {
                read,
                content_length: hint.exact(),
            });
        }
        out.extend_from_slice(&data);
        progress(read);
    }
    Ok(out.freeze())
}

/// An error and its sources, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
