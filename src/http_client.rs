//! The one way this service builds its HTTP clients (to hetida's runtime and to its backend):
//! a keep-alive pool, `TCP_NODELAY` (small requests must not wait for Nagle's algorithm; uvicorn
//! sets it on its side too) and a bounded connect, over plain TCP or TLS (rustls, feature `tls`),
//! plus the bearer-token header both send.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::secret::Secret;
use crate::tls::{TlsError, TlsFiles};

/// A pooled client; `B` is the request body type. With the `tls` feature its connector speaks
/// TLS to an https:// server, without it plain TCP only.
#[cfg(feature = "tls")]
pub type HttpClient<B> = Client<hyper_rustls::HttpsConnector<HttpConnector>, B>;
/// A pooled client; `B` is the request body type. With the `tls` feature its connector speaks
/// TLS to an https:// server, without it plain TCP only.
#[cfg(not(feature = "tls"))]
pub type HttpClient<B> = Client<HttpConnector, B>;

/// How long connecting may take before the attempt counts as failed (and is retried by the
/// caller within its own budget). With TLS this bounds the TCP connect; the handshake is part
/// of the caller's call timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections are closed after this; a busy worker keeps reusing its own.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client with this service's connection settings: `tls` is `None` for a server at an
/// http:// URL and names the trust for one at an https:// URL. Each client serves one server,
/// so the caller knows which it needs; TLS is set up (files read) only where it is used, so an
/// http:// deployment does not depend on the system's CA certificates.
pub fn client<B>(tls: Option<&TlsFiles>) -> Result<HttpClient<B>, TlsError>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(POOL_IDLE_TIMEOUT);
    #[cfg(feature = "tls")]
    {
        // The TLS layer sees the https:// URL; the TCP connector below it must let it pass.
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match tls {
            Some(files) => https
                .with_tls_config(std::sync::Arc::unwrap_or_clone(crate::tls::client_config(
                    files,
                )?))
                .https_only(),
            None => https.with_tls_config(plain_only()).https_or_http(),
        }
        .enable_http1()
        .wrap_connector(tcp);
        Ok(builder.build(connector))
    }
    #[cfg(not(feature = "tls"))]
    {
        if tls.is_some() {
            return Err(TlsError::NotBuilt);
        }
        Ok(builder.build(tcp))
    }
}

/// The TLS configuration of a client for an http:// server: never used for a handshake, since
/// every URL such a client calls is its server's. Should an https:// URL reach it all the same,
/// the empty trust store refuses every server instead of trusting some by accident.
#[cfg(feature = "tls")]
fn plain_only() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// The token is not a valid header value (a line break, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bearer token contains characters not allowed in a header")]
pub struct InvalidBearerToken;

/// The `Authorization` header for `token`, if any; marked sensitive, so that its `Debug` (a
/// client's) does not show the token and HTTP/2 would not index it.
pub fn bearer(token: Option<&Secret>) -> Result<Option<HeaderValue>, InvalidBearerToken> {
    token
        .map(|t| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| InvalidBearerToken)?;
            value.set_sensitive(true);
            Ok(value)
        })
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
