//! The one way this service builds its HTTP clients (to hetida's runtime and to its backend):
//! a keep-alive pool, `TCP_NODELAY` (small requests must not wait for Nagle's algorithm; uvicorn
//! sets it on its side too) and a bounded connect, plus the bearer-token header both send.

use std::time::Duration;

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
