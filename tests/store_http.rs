//! The hetida backend REST store against a project-owned HTTP server that answers with the bodies
//! recorded from the real backend (`../shared/vectors/rest`, read in place), and its cache.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hd_kafka_exec::protocol::{Missing, Target};
use hd_kafka_exec::secret::Secret;
use hd_kafka_exec::store::{CacheOptions, HttpOptions, Store, StoreError, StoreSource};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use uuid::Uuid;

/// Serves the recorded GET exchanges; counts requests per path and query; can be slowed down
/// and can serve extra bodies (to play a backend whose content changes).
#[derive(Clone, Default)]
struct Backend {
    answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    authorization: Arc<Mutex<Vec<String>>>,
    delay: Arc<Mutex<Duration>>,
}

fn key(path: &str, query: Option<&str>) -> String {
    let mut pairs: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .collect();
    pairs.sort();
    format!("{path}?{}", pairs.join("&"))
}

impl Backend {
    fn recorded() -> Backend {
        let b = Backend::default();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/rest");
        for e in std::fs::read_dir(dir).unwrap() {
            let dir = e.unwrap().path();
            let case: Value =
                serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
            if case["request"]["method"] != "GET" {
                continue;
            }
            // Recorded as a list of pairs or as an object.
            let query: Option<String> = match &case["request"]["query"] {
                Value::Array(q) => Some(
                    q.iter()
                        .map(|p| format!("{}={}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
                        .collect::<Vec<_>>()
                        .join("&"),
                ),
                Value::Object(q) => Some(
                    q.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                        .collect::<Vec<_>>()
                        .join("&"),
                ),
                _ => None,
            };
            let body = std::fs::read_to_string(dir.join("response.json")).unwrap();
            let status = case["response"]["status"].as_u64().unwrap() as u16;
            b.answers.lock().unwrap().insert(
                key(case["request"]["path"].as_str().unwrap(), query.as_deref()),
                (status, body),
            );
        }
        b
    }

    fn set(&self, path: &str, query: Option<&str>, status: u16, body: String) {
        self.answers
            .lock()
            .unwrap()
            .insert(key(path, query), (status, body));
    }

    fn hits(&self, path: &str, query: Option<&str>) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(&key(path, query))
            .copied()
            .unwrap_or(0)
    }

    async fn serve(&self) -> SocketAddr {
        self.serve_with(None).await
    }

    /// Serves HTTPS through `tls` (see `support::pki::tls_acceptor`).
    #[cfg(feature = "tls")]
    async fn serve_tls(&self, tls: tokio_rustls::TlsAcceptor) -> SocketAddr {
        self.serve_with(Some(tls)).await
    }

    async fn serve_with(&self, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let me = me.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let me = me.clone();
                        async move {
                            let k = key(req.uri().path(), req.uri().query());
                            *me.hits.lock().unwrap().entry(k.clone()).or_default() += 1;
                            if let Some(a) = req.headers().get("authorization") {
                                me.authorization
                                    .lock()
                                    .unwrap()
                                    .push(a.to_str().unwrap().to_owned());
                            }
                            // A slow backend, as a test sets it: the pause is its answer time.
                            let delay = *me.delay.lock().unwrap();
                            tokio::time::sleep(delay).await;
                            let (status, body) = me
                                .answers
                                .lock()
                                .unwrap()
                                .get(&k)
                                .cloned()
                                .unwrap_or((404, r#"{"detail":"Not Found"}"#.into()));
                            Ok::<_, std::io::Error>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let http = http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        // A client refusing the certificate ends the connection here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        addr
    }
}

fn store(addr: SocketAddr, ttl: Duration) -> Store {
    let mut o = HttpOptions::new(format!("http://{addr}/api/"));
    o.bearer_token = Some(Secret::new("secret"));
    o.timeout = Duration::from_millis(500);
    o.retry_budget = Duration::from_millis(300);
    Store::new(
        &StoreSource::Http(o),
        CacheOptions {
            latest_ttl: ttl,
            capacity: 100,
        },
    )
    .unwrap()
}

const VOLATILITY: &str = "79ce1eb1-3ef8-4c74-9114-c856fd88dc89";
const NESTED: &str = "3d504361-e351-4d52-8734-391aa47e8f24";
const PROBE_GROUP: &str = "a7e5a7e5-0000-4000-8000-000000000000";

#[tokio::test]
async fn revisions_by_id_not_found_and_the_bearer_token() {
    let backend = Backend::recorded();
    let s = store(backend.serve().await, Duration::ZERO);
    assert!(
        !format!("{s:?}").contains("Bearer secret") && !format!("{s:?}").contains("\"secret\""),
        "the token stays out of Debug"
    );
    let r = s.revision(VOLATILITY.parse().unwrap()).await.unwrap();
    assert_eq!(r.name, "Volatility Detection Example");
    let dead: Uuid = "00000000-0000-0000-0000-00000000dead".parse().unwrap();
    assert_eq!(
        s.revision(dead).await.unwrap_err(),
        StoreError::Missing(Missing::Revision { id: dead })
    );
    assert_eq!(
        backend.hits(&format!("/api/transformations/{dead}"), None),
        1,
        "a 404 is not retried"
    );
    assert!(
        backend
            .authorization
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer secret")
    );
}

#[tokio::test]
async fn latest_of_a_group_and_a_tree_with_duplicated_dependencies() {
    let backend = Backend::recorded();
    let s = store(backend.serve().await, Duration::from_secs(60));
    let latest = s
        .latest_released(PROBE_GROUP.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        latest.id.to_string(),
        "a7e5a7e5-0000-4000-8000-000000000002",
        "newest RELEASED, not the DISABLED one"
    );
    let tree = s.tree(NESTED.parse().unwrap()).await.unwrap();
    assert_eq!(tree.root.name, "Linear RUL from last positive Step");
    assert_eq!(
        tree.nested.len(),
        13,
        "19 entries with duplicates are 13 distinct nested revisions"
    );
    let unknown: Uuid = "a7e5a7e5-0000-4000-8000-0000000000ff".parse().unwrap();
    assert_eq!(
        s.latest_released(unknown).await.unwrap_err(),
        StoreError::Missing(Missing::ReleasedOfGroup { group: unknown })
    );
}

#[tokio::test]
async fn released_revisions_are_fetched_once_drafts_every_time() {
    let backend = Backend::recorded();
    let addr = backend.serve().await;
    let s = store(addr, Duration::ZERO);
    let id: Uuid = VOLATILITY.parse().unwrap();
    for _ in 0..1000 {
        s.revision(id).await.unwrap();
    }
    assert_eq!(backend.hits(&format!("/api/transformations/{id}"), None), 1);
    for _ in 0..1000 {
        s.tree(NESTED.parse().unwrap()).await.unwrap();
    }
    assert_eq!(
        backend.hits(
            "/api/transformations",
            Some(&format!("id={NESTED}&include_dependencies=true"))
        ),
        1
    );

    // Prepared runtime requests of released revisions are kept too: the same object comes back.
    let first = s
        .prepared(Target::Id(NESTED.parse().unwrap()))
        .await
        .unwrap();
    for _ in 0..100 {
        let again = s
            .prepared(Target::Id(NESTED.parse().unwrap()))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }

    let draft = Uuid::new_v4();
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/vectors/rest/get_revision_component/response.json"),
        )
        .unwrap(),
    )
    .unwrap();
    body["id"] = draft.to_string().into();
    body["state"] = "DRAFT".into();
    body.as_object_mut().unwrap().remove("released_timestamp");
    backend.set(
        &format!("/api/transformations/{draft}"),
        None,
        200,
        body.to_string(),
    );
    for _ in 0..5 {
        s.revision(draft).await.unwrap();
    }
    assert_eq!(
        backend.hits(&format!("/api/transformations/{draft}"), None),
        5
    );
    // A draft may change between requests: prepared afresh each time.
    let dependencies = format!("id={draft}&include_dependencies=true");
    let mut with_dependencies = body.clone();
    with_dependencies["id"] = draft.to_string().into();
    backend.set(
        "/api/transformations",
        Some(&dependencies),
        200,
        Value::Array(vec![with_dependencies]).to_string(),
    );
    let a = s.prepared(Target::Id(draft)).await.unwrap();
    let b = s.prepared(Target::Id(draft)).await.unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(backend.hits("/api/transformations", Some(&dependencies)), 2);
}

#[tokio::test]
async fn latest_of_a_group_changes_after_the_ttl() {
    let backend = Backend::recorded();
    let addr = backend.serve().await;
    let s = store(addr, Duration::from_secs(300));
    let group: Uuid = PROBE_GROUP.parse().unwrap();
    let query = format!("revision_group_id={group}&state=RELEASED");
    let first = s.latest_released(group).await.unwrap();
    let mut list: Vec<Value> = serde_json::from_str(
        &backend.answers.lock().unwrap()[&key("/api/transformations", Some(&query))].1,
    )
    .unwrap();
    let mut newer = list[0].clone();
    newer["id"] = Uuid::new_v4().to_string().into();
    newer["released_timestamp"] = "2030-01-01T00:00:00+00:00".into();
    list.push(newer.clone());
    backend.set(
        "/api/transformations",
        Some(&query),
        200,
        serde_json::to_string(&list).unwrap(),
    );
    assert_eq!(
        s.latest_released(group).await.unwrap().id,
        first.id,
        "within the TTL"
    );
    // The store's clock is tokio's: step it past the TTL instead of sleeping through it.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(301)).await;
    tokio::time::resume();
    assert_eq!(
        s.latest_released(group).await.unwrap().id.to_string(),
        newer["id"].as_str().unwrap(),
        "after the TTL"
    );
}

#[tokio::test]
async fn unreachable_slow_and_broken_backends_are_clear_errors() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let e = store(closed, Duration::ZERO)
        .revision(Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable { reason } if reason.contains("unreachable")),
        "{e}"
    );

    let backend = Backend::recorded();
    let addr = backend.serve().await;
    *backend.delay.lock().unwrap() = Duration::from_secs(2);
    let e = store(addr, Duration::ZERO)
        .revision(VOLATILITY.parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable { reason } if reason.contains("did not answer")),
        "{e}"
    );

    *backend.delay.lock().unwrap() = Duration::ZERO;
    let s = store(addr, Duration::ZERO);
    let e = s.revision(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(e, StoreError::Missing(Missing::Revision { .. })));
    // The recorded 422 for a malformed id surfaces as an error naming the status.
    backend.set(
        "/api/transformations/00000000-0000-0000-0000-000000000bad",
        None,
        422,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/vectors/rest/get_revision_invalid_uuid/response.json"),
        )
        .unwrap(),
    );
    let e = s
        .revision("00000000-0000-0000-0000-000000000bad".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable { reason } if reason.contains("HTTP 422")),
        "{e}"
    );
}

/// A backend answer larger than the limit is refused with the limit named, not read whole.
#[tokio::test]
async fn an_answer_over_the_limit_is_refused() {
    let backend = Backend::recorded();
    let addr = backend.serve().await;
    let mut o = HttpOptions::new(format!("http://{addr}/api/"));
    o.max_answer_bytes = 1000;
    let s = Store::new(
        &StoreSource::Http(o),
        CacheOptions {
            latest_ttl: Duration::ZERO,
            capacity: 10,
        },
    )
    .unwrap();
    let e = s.revision(VOLATILITY.parse().unwrap()).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable { reason } if reason.contains("more than 1000 bytes")),
        "{e}"
    );
}

/// The backend over HTTPS, trusted through the CA bundle; a backend whose certificate comes from
/// a CA not in the bundle is refused at once, saying so, instead of being retried as if down.
#[cfg(feature = "tls")]
#[tokio::test]
async fn over_https_a_revision_loads_with_the_test_ca_and_an_unknown_ca_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki::Pki::generate(dir.path());
    let backend = Backend::recorded();
    let addr = backend
        .serve_tls(support::pki::tls_acceptor(
            &pki.server_cert(),
            &pki.server_key(),
        ))
        .await;
    let open = |ca: std::path::PathBuf| {
        let mut o = HttpOptions::new(format!("https://{addr}/api/"));
        o.bearer_token = Some(Secret::new("secret"));
        o.retry_budget = Duration::from_secs(20);
        o.tls.ca_file = Some(ca);
        Store::new(
            &StoreSource::Http(o),
            CacheOptions {
                latest_ttl: Duration::ZERO,
                capacity: 100,
            },
        )
        .unwrap()
    };
    let id: Uuid = VOLATILITY.parse().unwrap();

    let r = open(pki.ca()).revision(id).await.unwrap();
    assert_eq!(r.name, "Volatility Detection Example");
    assert_eq!(backend.hits(&format!("/api/transformations/{id}"), None), 1);
    assert_eq!(
        backend.authorization.lock().unwrap().as_slice(),
        ["Bearer secret"]
    );

    let started = tokio::time::Instant::now();
    let e = open(pki.rogue_ca()).revision(id).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "retried: {e}");
    let StoreError::Unavailable { reason } = &e else {
        panic!("{e}")
    };
    assert!(
        reason.starts_with(&format!(
            "https://{addr}/api/transformations/{id}: TLS handshake failed: the server's certificate is not trusted"
        )),
        "{reason}"
    );
    assert_eq!(
        backend.hits(&format!("/api/transformations/{id}"), None),
        1,
        "nothing reached the backend through the refused handshake"
    );
}
