//! The hetida backend's REST API as a revision store (spec §8): revision by id, the RELEASED
//! revisions of a group, a revision with everything nested in it.
//!
//! Connection failures are retried with capped exponential backoff within a budget; a 404 is an
//! answer ("not found"), never retried; neither is a refused TLS handshake. Requests carry the
//! bearer token when one is configured. An https:// backend is trusted as `HttpOptions::tls`
//! says.

use crate::backoff::Backoff;
use crate::http_client::{BodyError, error_chain, read_limited};
use crate::secret::Secret;
use crate::tls::TlsFiles;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue, USER_AGENT};
use hyper::{Request, Uri};
use uuid::Uuid;

use super::error::StoreError;
use crate::protocol::revision::TransformationRevision;

/// Where the backend is and how to call it.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `HETIDA_DESIGNER_BACKEND_API_URL`, e.g. `http://hetida-designer-backend:8090/api/`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <token>` with every request when set.
    pub bearer_token: Option<Secret>,
    /// One request, from sending to the end of the body.
    pub timeout: Duration,
    /// Total time spent retrying a backend that cannot be connected to.
    pub retry_budget: Duration,
    /// An answer larger than this is refused instead of read: the backend is outside input,
    /// and a worker's memory must stay bounded whatever it answers.
    pub max_answer_bytes: u64,
    /// Trust for an https:// backend (`HD_CA_BUNDLE`, `HETIDA_DESIGNER_BACKEND_VERIFY_CERTS`);
    /// unused for http://.
    pub tls: TlsFiles,
}

impl HttpOptions {
    /// The backend at `base_url`, without a token: 30 s per request, 10 s of retrying.
    pub fn new(base_url: impl Into<String>) -> HttpOptions {
        HttpOptions {
            base_url: base_url.into(),
            bearer_token: None,
            timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(10),
            max_answer_bytes: 64 << 20,
            tls: TlsFiles::system(),
        }
    }
}

/// A client of the backend's read endpoints.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    /// The keep-alive connection pool; clones of the backend share it.
    http: crate::http_client::HttpClient<Empty<Bytes>>,
    /// `options.base_url` ending in `/`, so that endpoint paths are appended to it.
    base: String,
    /// The header built once from `options.bearer_token`; `None` sends none.
    authorization: Option<HeaderValue>,
    /// As given; every call reads `timeout` and `retry_budget`.
    options: HttpOptions,
}

/// How one GET failed, which decides whether [`HttpBackend::get`] tries again.
enum Attempt {
    /// No connection could be made: retried while the budget lasts. Holds the cause, for the
    /// error when it runs out.
    Connect(String),
    /// Anything else (an unexpected status, a broken body, no answer in time, a refused TLS
    /// handshake): returned at once.
    Fatal(StoreError),
}

impl HttpOptions {
    /// Checks what can be checked without connecting: the supervisor calls it before it forks,
    /// so a bad URL or token stops `serve` at once instead of failing every worker's boot.
    /// Returns the base URL ending in `/` and the authorization header.
    pub fn validate(&self) -> Result<(String, Option<HeaderValue>), StoreError> {
        let bad = |reason: &str| StoreError::BadSpec {
            spec: self.base_url.clone(),
            reason: reason.to_owned(),
        };
        if self.base_url.starts_with("https://") {
            if !crate::tls::BUILT_IN {
                return Err(bad(&crate::tls::TlsError::NotBuilt.to_string()));
            }
        } else if !self.base_url.starts_with("http://") {
            return Err(bad(
                "the backend API URL must be an http:// or https:// URL",
            ));
        }
        let mut base = self.base_url.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        base.parse::<Uri>().map_err(|e| bad(&e.to_string()))?;
        let authorization = crate::http_client::bearer(self.bearer_token.as_ref())
            .map_err(|e| bad(&e.to_string()))?;
        Ok((base, authorization))
    }
}

impl HttpBackend {
    /// Checks the options and builds the client. It connects on the first call only; calls
    /// must run inside a tokio runtime, which their connections' tasks are spawned on.
    pub fn new(options: HttpOptions) -> Result<HttpBackend, StoreError> {
        let (base, authorization) = options.validate()?;
        let tls = base.starts_with("https://").then_some(&options.tls);
        let http = crate::http_client::client(tls).map_err(|e| StoreError::BadSpec {
            spec: options.base_url.clone(),
            reason: format!("HTTPS cannot be set up: {e}"),
        })?;
        Ok(HttpBackend {
            http,
            base,
            authorization,
            options,
        })
    }

    /// GETs `path` (relative to the API base); `None` for a 404.
    async fn get(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        let url = format!("{}{}", self.base, path);
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.get_once(&url).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Connect(cause)) => {
                    let pause = backoff.next_pause();
                    if started.elapsed() + pause > self.options.retry_budget {
                        return Err(StoreError::Unavailable {
                            reason: format!(
                                "{url}: unreachable after {attempts} attempt(s): {cause}"
                            ),
                        });
                    }
                    tracing::warn!(%url, "revision backend unreachable, retrying in {pause:?}: {cause}");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn get_once(&self, url: &str) -> Result<Option<Bytes>, Attempt> {
        let mut request = Request::get(url).header(ACCEPT, "application/json").header(
            USER_AGENT,
            concat!("hd-kafka-exec/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request.body(Empty::new()).map_err(|e| {
            Attempt::Fatal(StoreError::Unavailable {
                reason: format!("{url}: {e}"),
            })
        })?;
        let call = async {
            let response = self.http.request(request).await.map_err(|e| {
                let cause = error_chain(&e);
                // A refused handshake will not mend by retrying (see the runtime client): the
                // request fails at once, saying what is wrong with the certificate.
                if let Some(problem) = crate::tls::explain_handshake_failure(&cause) {
                    Attempt::Fatal(StoreError::Unavailable {
                        reason: format!("{url}: TLS handshake failed: {problem} ({cause})"),
                    })
                } else if e.is_connect() {
                    Attempt::Connect(cause)
                } else {
                    Attempt::Fatal(StoreError::Unavailable {
                        reason: format!("{url}: {cause}"),
                    })
                }
            })?;
            let status = response.status().as_u16();
            let limit = self.options.max_answer_bytes;
            let body = read_limited(response.into_body(), limit, |_| {})
                .await
                .map_err(|e| {
                    Attempt::Fatal(StoreError::Unavailable {
                        reason: match e {
                            BodyError::TooLarge {
                                read,
                                content_length,
                            } => format!(
                                "{url} answered HTTP {status} with more than {limit} bytes (the limit of a backend answer; {} bytes)",
                                content_length.unwrap_or(read)
                            ),
                            BodyError::Broken { partial, cause } => format!(
                                "{url}: the answer broke off after {} bytes: {cause}",
                                partial.len()
                            ),
                        },
                    })
                })?;
            match status {
                200 => Ok(Some(body)),
                404 => Ok(None),
                _ => Err(Attempt::Fatal(StoreError::Unavailable {
                    reason: format!(
                        "{url} answered HTTP {status}: {}",
                        crate::protocol::error::body_start(&body, 200)
                    ),
                })),
            }
        };
        match tokio::time::timeout(self.options.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::Fatal(StoreError::Unavailable {
                reason: format!("{url} did not answer within {:?}", self.options.timeout),
            })),
        }
    }

    fn parse_one(path: &str, body: &[u8]) -> Result<TransformationRevision, StoreError> {
        serde_json::from_slice(body).map_err(|e| StoreError::Unavailable {
            reason: format!(
                "{path}: the backend answered something that is not a transformation revision: {e}"
            ),
        })
    }

    fn parse_list(path: &str, body: &[u8]) -> Result<Vec<TransformationRevision>, StoreError> {
        serde_json::from_slice(body).map_err(|e| StoreError::Unavailable {
            reason: format!("{path}: the backend answered something that is not a list of transformation revisions: {e}"),
        })
    }

    /// `GET transformations/{id}`.
    pub async fn revision(&self, id: Uuid) -> Result<Option<TransformationRevision>, StoreError> {
        let path = format!("transformations/{id}");
        match self.get(&path).await? {
            Some(body) => Ok(Some(Self::parse_one(&path, &body)?)),
            None => Ok(None),
        }
    }

    /// `GET transformations?revision_group_id=G&state=RELEASED`.
    pub async fn released_of_group(
        &self,
        group: Uuid,
    ) -> Result<Vec<Arc<TransformationRevision>>, StoreError> {
        let path = format!("transformations?revision_group_id={group}&state=RELEASED");
        let body = self
            .get(&path)
            .await?
            .unwrap_or_else(|| Bytes::from_static(b"[]"));
        Ok(Self::parse_list(&path, &body)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    /// `GET transformations?id=X&include_dependencies=true`: `id` first, then every nested
    /// revision, each once (the backend repeats one per nested operator).
    pub async fn with_dependencies(
        &self,
        id: Uuid,
    ) -> Result<Vec<Arc<TransformationRevision>>, StoreError> {
        let path = format!("transformations?id={id}&include_dependencies=true");
        let body = self
            .get(&path)
            .await?
            .unwrap_or_else(|| Bytes::from_static(b"[]"));
        let mut seen = HashSet::new();
        Ok(Self::parse_list(&path, &body)?
            .into_iter()
            .filter(|r| seen.insert(r.id))
            .map(Arc::new)
            .collect())
    }
}
