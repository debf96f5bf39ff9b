//! The runtime double: the project's one stand-in for hetida's Python runtime service, which is
//! outside this project. Tests and benches use it instead of the real runtime.
//!
//! It serves `POST /engine/runtime` on 127.0.0.1, checks every request strictly against the spec
//! (§5: fields, components and code modules, node-tree references, wiring completeness) and
//! answers like the real runtime: the recorded `runtime_response.json` of the vector case the
//! request belongs to (read from `../shared/vectors/cases`, with the request's job id), or a
//! computed valid `WorkflowExecutionResult`. Latency and misbehaviour (HTTP 500 text, non-JSON,
//! an invalid result, dropped connections, being down) can be switched while it runs. It serves
//! plain HTTP ([`RuntimeDouble::start`]) or HTTPS with a given certificate
//! ([`RuntimeDouble::start_tls`]).
//!
//! It can also hold executions ([`RuntimeDouble::hold`]): a call is accepted and counted but not
//! answered until the test releases it, by job id and call number (the first call of a job, or
//! its re-execution), so a test can put a rebalance in the middle of long executions and choose
//! which of two executions of one request ends first. A held call's answer names which call of
//! its job it was (see [`CALL_OUTPUT`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hd_kafka_exec::protocol::pyjson::{self, Json};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the double answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Like the real runtime.
    Normal,
    /// 500 with `Internal Server Error` as text, as the real runtime does for NaN outputs.
    Http500Text,
    /// 200 with a body that is not JSON.
    NonJson,
    /// 200 with `{"foo": 1}`.
    BadResult,
    /// A valid result with one output `large`: a string of this many bytes that compresses
    /// poorly (like the base64 of a plot image), for Kafka's size limits.
    LargeResult(usize),
    /// A valid result, but with HTTP status 500 (the reference accepts it).
    ValidResultWith500,
    /// Accept, read the request, close without answering.
    DropConnection,
    /// Nobody listens on the port: connections are refused.
    Down,
}

#[derive(Debug, Default)]
struct Counters {
    calls: u64,
    by_job: HashMap<String, u64>,
    trafo_by_job: HashMap<String, String>,
    violations: Vec<String>,
    /// The body of each job's last call, once a test asked for them ([`RuntimeDouble::keep_bodies`]).
    bodies: Option<HashMap<String, Bytes>>,
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    /// Off in benches: the double then answers without parsing and checking the request, so
    /// that the machine's cores measure the service, not the double.
    strict: std::sync::atomic::AtomicBool,
    latency: Mutex<Duration>,
    counters: Mutex<Counters>,
    connections: AtomicU64,
    /// TLS handshakes that did not complete (a client refusing the certificate, say).
    failed_handshakes: AtomicU64,
    recorded: HashMap<String, (u16, String, String)>,
    /// Calls held back from their answer, see [`RuntimeDouble::hold`].
    holds: Mutex<Holds>,
}

/// The output a held call's answer adds to `output_results_by_output_name`: its call number
/// (1 for the first call of its job id, 2 for the next, …). The service passes outputs through
/// unchanged, so the response record tells which execution answered.
pub const CALL_OUTPUT: &str = "runtime_double_call";

/// One call of a job: its job id and call number (1-based, in order of arrival).
pub type Call = (String, u64);

#[derive(Debug, Default)]
struct Holds {
    /// Whether calls that arrive now are held.
    on: bool,
    /// Jobs whose calls are held even while `on` is not (see [`RuntimeDouble::hold_jobs`]).
    jobs: HashSet<String>,
    /// Held calls not released yet, each with what releases it.
    waiting: HashMap<Call, tokio::sync::oneshot::Sender<()>>,
    /// Held calls whose answer the double has handed to their connection after release.
    answered: HashSet<Call>,
}

/// A held call in its handler: when the handler is done with it, it is answered (if released)
/// or abandoned (the connection went away), and not waiting any more either way.
struct HeldCall {
    shared: Arc<Shared>,
    call: Call,
    released: bool,
}

impl Drop for HeldCall {
    fn drop(&mut self) {
        let mut holds = self.shared.holds.lock().unwrap();
        holds.waiting.remove(&self.call);
        if self.released {
            holds.answered.insert(self.call.clone());
        }
    }
}

/// A running double; dropping it stops it.
#[derive(Debug)]
pub struct RuntimeDouble {
    addr: SocketAddr,
    /// `https` when it serves TLS, else `http`.
    scheme: &'static str,
    shared: Arc<Shared>,
    listening: watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

fn vectors() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/cases")
}

/// What identifies a vector case's runtime request apart from random ids.
fn request_key(req: &Value) -> String {
    let mut wirings: Vec<String> = req["workflow_wiring"]["input_wirings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| format!("{}={}", w["workflow_input_name"], w["filters"]))
                .collect()
        })
        .unwrap_or_default();
    wirings.sort();
    format!(
        "{}|{}|{}|{}",
        req["trafo_id"],
        req["configuration"]["run_pure_plot_operators"],
        wirings.join(";"),
        req["workflow_wiring"]["output_wirings"]
    )
}

fn load_recorded() -> HashMap<String, (u16, String, String)> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(vectors()) else {
        return out;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let (Ok(req), Ok(resp), Ok(meta)) = (
            std::fs::read(dir.join("runtime_request.json")),
            std::fs::read_to_string(dir.join("runtime_response.json")),
            std::fs::read(dir.join("case.json")),
        ) else {
            continue;
        };
        let req: Value = serde_json::from_slice(&req).unwrap();
        let meta: Value = serde_json::from_slice(&meta).unwrap();
        // Only answers of the real runtime (behind the recording proxy on :8091); the fake
        // runtime's misbehaviour is what `Mode` reproduces.
        if !meta["runtime_url_configured"]
            .as_str()
            .unwrap_or_default()
            .contains(":8091/")
        {
            continue;
        }
        let status = meta["runtime_http_exchanges"][0]["status"]
            .as_u64()
            .unwrap_or(200) as u16;
        let job = req["job_id"].as_str().unwrap_or_default().to_owned();
        out.insert(request_key(&req), (status, resp, job));
    }
    out
}

impl RuntimeDouble {
    /// Serves plain HTTP.
    pub async fn start() -> RuntimeDouble {
        Self::serve(None).await
    }

    /// Serves HTTPS, presenting the certificate chain and key in these PEM files (see
    /// `support::pki`).
    pub async fn start_tls(cert: &Path, key: &Path) -> RuntimeDouble {
        Self::serve(Some(super::pki::tls_acceptor(cert, key))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> RuntimeDouble {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Normal),
            strict: std::sync::atomic::AtomicBool::new(true),
            latency: Mutex::new(Duration::ZERO),
            counters: Mutex::new(Counters::default()),
            connections: AtomicU64::new(0),
            failed_handshakes: AtomicU64::new(0),
            recorded: load_recorded(),
            holds: Mutex::new(Holds::default()),
        });
        let (listening, mut rx) = watch::channel(true);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                match &listener {
                    Some(l) => {
                        tokio::select! {
                            accepted = l.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                // Like uvicorn: small answers go out at once, not after a delayed ACK.
                                let _ = stream.set_nodelay(true);
                                s.connections.fetch_add(1, Ordering::Relaxed);
                                let s = s.clone();
                                let mut up = rx.clone();
                                let tls = tls.clone();
                                tokio::spawn(async move {
                                    let failed_handshakes = s.clone();
                                    let service = service_fn(move |req| handle(s.clone(), req));
                                    let conn = async move {
                                        let http = http1::Builder::new();
                                        match tls {
                                            None => {
                                                let _ = http
                                                    .serve_connection(TokioIo::new(stream), service)
                                                    .await;
                                            }
                                            Some(acceptor) => match acceptor.accept(stream).await {
                                                Ok(stream) => {
                                                    let _ = http
                                                        .serve_connection(TokioIo::new(stream), service)
                                                        .await;
                                                }
                                                Err(_) => {
                                                    failed_handshakes
                                                        .failed_handshakes
                                                        .fetch_add(1, Ordering::Relaxed);
                                                }
                                            },
                                        }
                                    };
                                    // Going down closes kept-alive connections too: a down
                                    // runtime is unreachable, not just deaf to new clients.
                                    tokio::select! {
                                        _ = conn => {}
                                        _ = up.wait_for(|listening| !*listening) => {}
                                    }
                                });
                            }
                            changed = rx.changed() => {
                                if changed.is_err() { return; }
                                if !*rx.borrow() { listener = None; }
                            }
                        }
                    }
                    None => {
                        if rx.changed().await.is_err() {
                            return;
                        }
                        if *rx.borrow() {
                            // Rebind the same port so clients find the runtime where it was.
                            for _ in 0..100 {
                                match TcpListener::bind(addr).await {
                                    Ok(l) => {
                                        listener = Some(l);
                                        break;
                                    }
                                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                                }
                            }
                            assert!(listener.is_some(), "could not rebind {addr}");
                        }
                    }
                }
            }
        });
        RuntimeDouble {
            addr,
            scheme,
            shared,
            listening,
            _task: task,
        }
    }

    /// `HETIDA_DESIGNER_RUNTIME_ENGINE_URL` pointing at the double (https:// when it serves
    /// TLS; the address is an IP, which the test certificates name).
    pub fn engine_url(&self) -> String {
        format!("{}://{}/engine/", self.scheme, self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        let _ = self.listening.send(mode != Mode::Down);
    }

    /// With `false`, requests are answered with a computed result without being checked.
    pub fn set_strict(&self, strict: bool) {
        self.shared.strict.store(strict, Ordering::Relaxed);
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    /// Requests received (answered or not).
    pub fn calls(&self) -> u64 {
        self.shared.counters.lock().unwrap().calls
    }

    /// How often a job id was executed.
    pub fn calls_for_job(&self, job_id: &str) -> u64 {
        self.shared
            .counters
            .lock()
            .unwrap()
            .by_job
            .get(job_id)
            .copied()
            .unwrap_or(0)
    }

    /// The revision (`trafo_id`) a job executed.
    pub fn trafo_of_job(&self, job_id: &str) -> Option<String> {
        self.shared
            .counters
            .lock()
            .unwrap()
            .trafo_by_job
            .get(job_id)
            .cloned()
    }

    /// From now on, keeps the body of each job's call, for [`body_of_job`](Self::body_of_job).
    pub fn keep_bodies(&self) {
        self.shared.counters.lock().unwrap().bodies = Some(HashMap::new());
    }

    /// The body of the last call for `job_id` since [`keep_bodies`](Self::keep_bodies).
    pub fn body_of_job(&self, job_id: &str) -> Option<Bytes> {
        let counters = self.shared.counters.lock().unwrap();
        counters.bodies.as_ref()?.get(job_id).cloned()
    }

    /// Requests that broke the spec, with the reason.
    pub fn violations(&self) -> Vec<String> {
        self.shared.counters.lock().unwrap().violations.clone()
    }

    /// TCP connections accepted so far (keep-alive reuse keeps this low).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed so far (the client refused the certificate, or hung up).
    pub fn failed_handshakes(&self) -> u64 {
        self.shared.failed_handshakes.load(Ordering::Relaxed)
    }

    /// With `true`, every checked call that arrives from now on is held: counted, then left
    /// unanswered until [`release`](Self::release) or [`release_all`](Self::release_all). With
    /// `false`, calls arriving later are answered at once (held ones stay held). Not in benches'
    /// unchecked mode ([`set_strict`](Self::set_strict)).
    pub fn hold(&self, on: bool) {
        self.shared.holds.lock().unwrap().on = on;
    }

    /// Holds every call of these jobs from now on, as [`hold`](Self::hold) holds all: a fault
    /// test holds a burst's last request so that "not everything was executed before the
    /// fault" is true by construction. [`stop_holding`](Self::stop_holding) ends it.
    pub fn hold_jobs<'a>(&self, jobs: impl IntoIterator<Item = &'a str>) {
        let mut holds = self.shared.holds.lock().unwrap();
        holds.jobs.extend(jobs.into_iter().map(str::to_owned));
    }

    /// Holds nothing from now on and releases every call held now.
    pub fn stop_holding(&self) {
        {
            let mut holds = self.shared.holds.lock().unwrap();
            holds.on = false;
            holds.jobs.clear();
        }
        self.release_all();
    }

    /// Releases call number `call` of `job` (1 = its first); whether it was held.
    pub fn release(&self, job: &str, call: u64) -> bool {
        let sender = self
            .shared
            .holds
            .lock()
            .unwrap()
            .waiting
            .remove(&(job.to_owned(), call));
        sender.is_some_and(|s| s.send(()).is_ok())
    }

    /// Releases every call held now.
    pub fn release_all(&self) {
        let waiting = std::mem::take(&mut self.shared.holds.lock().unwrap().waiting);
        for (_, sender) in waiting {
            let _ = sender.send(());
        }
    }

    /// The calls held now, in order.
    pub fn held(&self) -> Vec<Call> {
        let mut held: Vec<Call> = self
            .shared
            .holds
            .lock()
            .unwrap()
            .waiting
            .keys()
            .cloned()
            .collect();
        held.sort();
        held
    }

    /// The numbers of `job`'s calls held now, in order.
    pub fn held_calls(&self, job: &str) -> Vec<u64> {
        self.held()
            .into_iter()
            .filter(|(j, _)| j == job)
            .map(|(_, call)| call)
            .collect()
    }

    /// Whether call number `call` of `job` was held, released, and its answer handed to its
    /// connection.
    pub fn answered(&self, job: &str, call: u64) -> bool {
        self.shared
            .holds
            .lock()
            .unwrap()
            .answered
            .contains(&(job.to_owned(), call))
    }
}

/// The call number a response value's [`CALL_OUTPUT`] names: which call of its job the double
/// answered it from (`None` for an answer of a call that was not held).
pub fn call_of_response(value: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(value).ok()?;
    v["output_results_by_output_name"][CALL_OUTPUT].as_u64()
}

/// `answer` (a runtime result as JSON text) with [`CALL_OUTPUT`] `call` among its outputs; the
/// text is edited rather than parsed, as recorded answers may hold what serde_json refuses.
fn with_call_number(answer: &str, call: u64) -> String {
    let Some(at) = answer.find("\"output_results_by_output_name\"") else {
        return answer.to_owned();
    };
    let Some(open) = answer[at..].find('{').map(|i| at + i + 1) else {
        return answer.to_owned();
    };
    let empty = answer[open..].trim_start().starts_with('}');
    format!(
        "{}\"{CALL_OUTPUT}\": {call}{}{}",
        &answer[..open],
        if empty { "" } else { ", " },
        &answer[open..]
    )
}

/// Holds `call` when holding is on: returns once the test released it, with the guard that
/// records the answer. `None` when holding is off.
async fn hold_if_asked(shared: &Arc<Shared>, call: Call) -> Option<HeldCall> {
    let released = {
        let mut holds = shared.holds.lock().unwrap();
        if !holds.on && !holds.jobs.contains(&call.0) {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        holds.waiting.insert(call.clone(), tx);
        rx
    };
    let mut held = HeldCall {
        shared: shared.clone(),
        call,
        released: false,
    };
    // Only `release`/`release_all` end the wait (a sender dropped unsent would be the double
    // going away).
    let _ = released.await;
    held.released = true;
    Some(held)
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = req.uri().path().to_owned();
    if req.method() == hyper::Method::GET && path == "/engine/info" {
        return Ok(respond(200, "application/json", r#"{"version":"double"}"#));
    }
    if req.method() != hyper::Method::POST
        || !(path == "/engine/runtime" || path == "/engine/runtime/")
    {
        return Ok(respond(
            404,
            "application/json",
            r#"{"detail":"Not Found"}"#,
        ));
    }
    // The reference (httpx) sends JSON with a Content-Length, never chunked.
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_length = header(hyper::header::CONTENT_LENGTH);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let chunked = header(hyper::header::TRANSFER_ENCODING).is_some();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let mut framing = Vec::new();
    if chunked || content_length != Some(body.len().to_string()) {
        framing.push(format!(
            "body of {} bytes sent with Content-Length {content_length:?}{}",
            body.len(),
            if chunked { " and chunked" } else { "" }
        ));
    }
    if content_type.as_deref() != Some("application/json") {
        framing.push(format!(
            "Content-Type is {content_type:?}, not application/json"
        ));
    }
    let latency = *shared.latency.lock().unwrap();
    if !shared.strict.load(Ordering::Relaxed) {
        return Ok(unchecked_answer(&shared, &body, latency).await);
    }
    let parsed = python_json(&body);
    let call = count_call(&shared, parsed.as_ref().ok());
    if let (Some((job, _)), Some(bodies)) = (&call, shared.counters.lock().unwrap().bodies.as_mut())
    {
        bodies.insert(job.clone(), body.clone());
    }
    let held = match call {
        Some(call) => hold_if_asked(&shared, call).await,
        None => None,
    };
    // Read before the latency, as the call arrived; after a hold, as it is released.
    let mode = *shared.mode.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(misbehaviour) = misbehave(mode, parsed.as_ref().ok()) {
        return misbehaviour;
    }
    let forced_status = (mode == Mode::ValidResultWith500).then_some(500u16);
    let request = match parsed {
        Ok(v) => v,
        Err(e) => return Ok(reject(&shared, vec![format!("body is not JSON: {e}")])),
    };
    let mut violations = check_request(&request);
    violations.extend(framing);
    if !violations.is_empty() {
        return Ok(reject(&shared, violations));
    }
    let job = request["job_id"].as_str().unwrap_or_default().to_owned();
    let (status, answer) = match shared.recorded.get(&request_key(&request)) {
        Some((status, recorded, recorded_job)) => {
            (*status, recorded.replace(recorded_job.as_str(), &job))
        }
        None => (200, computed_result(&request).to_string()),
    };
    let answer = match &held {
        Some(held) => with_call_number(&answer, held.call.1),
        None => answer,
    };
    Ok(respond(
        forced_status.unwrap_or(status),
        "application/json",
        answer,
    ))
}

/// The body as the real runtime (FastAPI, Python's `json.loads`) reads it: lone surrogates
/// (`"\ud800"`, which hetida's backend passes on from a request) too, here as U+FFFD, since
/// nothing the double checks looks into such a string.
fn python_json(body: &[u8]) -> Result<Value, String> {
    fn value(v: &Json<'_>) -> Value {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            Json::Str(s) => Value::String(s.to_text_lossy()),
            Json::List(items) => Value::Array(items.iter().map(value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_text_lossy(), value(v)))
                    .collect(),
            ),
        }
    }
    serde_json::from_slice(body).or_else(|e| match pyjson::parse(body) {
        Ok(tree) => Ok(value(&tree)),
        Err(_) => Err(e.to_string()),
    })
}

/// Benches' answer: a computed result for the job id found in the text, nothing checked, so
/// that the machine's cores measure the service, not the double.
async fn unchecked_answer(
    shared: &Shared,
    body: &[u8],
    latency: Duration,
) -> Response<Full<Bytes>> {
    // The job id is the second-to-last field the service writes.
    let text = String::from_utf8_lossy(body);
    let job = text
        .rfind("\"job_id\": \"")
        .map(|i| text[i + 11..i + 47].to_owned())
        .unwrap_or_default();
    shared.counters.lock().unwrap().calls += 1;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = computed_result(
        &json!({"job_id": job, "workflow_wiring": {"output_wirings": [{"workflow_output_name": "score", "adapter_id": 1}]}}),
    );
    respond(200, "application/json", result.to_string())
}

/// Counts a checked call; for a request that is JSON, returns which call of its job id it is.
fn count_call(shared: &Shared, request: Option<&Value>) -> Option<Call> {
    let mut c = shared.counters.lock().unwrap();
    c.calls += 1;
    let v = request?;
    let job = v["job_id"].as_str().unwrap_or_default().to_owned();
    c.trafo_by_job.insert(
        job.clone(),
        v["trafo_id"].as_str().unwrap_or_default().to_owned(),
    );
    let n = c.by_job.entry(job.clone()).or_default();
    *n += 1;
    Some((job, *n))
}

/// The answer of a misbehaving runtime in `mode`; `None` when it answers like the real one.
fn misbehave(
    mode: Mode,
    request: Option<&Value>,
) -> Option<Result<Response<Full<Bytes>>, std::io::Error>> {
    Some(Ok(match mode {
        Mode::Http500Text => respond(500, "text/plain; charset=utf-8", "Internal Server Error"),
        Mode::NonJson => respond(200, "text/html", "<html>proxy error</html>"),
        Mode::BadResult => respond(200, "application/json", r#"{"foo": 1}"#),
        Mode::DropConnection => return Some(Err(std::io::Error::other("dropping the connection"))),
        Mode::LargeResult(bytes) => {
            let job = request.map(|v| v["job_id"].clone()).unwrap_or_default();
            let mut result = computed_result(&json!({"job_id": job}));
            result["output_results_by_output_name"] = json!({"large": poorly_compressible(bytes)});
            respond(200, "application/json", result.to_string())
        }
        Mode::Normal | Mode::Down | Mode::ValidResultWith500 => return None,
    }))
}

fn reject(shared: &Shared, violations: Vec<String>) -> Response<Full<Bytes>> {
    let detail: Vec<Value> = violations
        .iter()
        .map(|v| json!({"loc": ["body"], "msg": v, "type": "value_error"}))
        .collect();
    shared
        .counters
        .lock()
        .unwrap()
        .violations
        .extend(violations);
    respond(
        422,
        "application/json",
        json!({"detail": detail}).to_string(),
    )
}

/// `len` characters of base64's alphabet from a fixed xorshift sequence: gzip shrinks them only
/// to about three quarters.
pub fn poorly_compressible(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

/// A valid result for a request no vector recorded: every direct-provisioned output gets 1.0.
fn computed_result(req: &Value) -> Value {
    let mut outputs = serde_json::Map::new();
    for w in req["workflow_wiring"]["output_wirings"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if w["adapter_id"] == json!(1) || w["adapter_id"] == json!("direct_provisioning") {
            outputs.insert(
                w["workflow_output_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                json!(1.0),
            );
        }
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let step = |name: &str| json!({"name": name, "start": now, "end": now, "duration": 0.0});
    json!({
        "error": null,
        "output_results_by_output_name": outputs,
        "traceback": null,
        "job_id": req["job_id"],
        "measured_steps": {
            "internal_full": null, "prepare_execution_input": null, "run_execution_input": null,
            "runtime_service_handling": step("RUNTIME_SERVICE"),
            "pure_execution": step("EXECUTING_COMPONENT_CODE"),
            "load_data": step("LOADING_DATA_FROM_ADAPTERS"),
            "send_data": step("SENDING_DATA_TO_ADAPTERS"),
        },
        "result": "ok",
        "node_results": null
    })
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

/// Every way `req` breaks spec §5, as messages.
pub fn check_request(req: &Value) -> Vec<String> {
    let mut v = Vec::new();
    for (field, ok) in [
        ("code_modules", req["code_modules"].is_array()),
        ("components", req["components"].is_array()),
        ("workflow", req["workflow"].is_object()),
        ("configuration", req["configuration"].is_object()),
        ("workflow_wiring", req["workflow_wiring"].is_object()),
        ("job_id", is_uuid(&req["job_id"])),
        ("trafo_id", is_uuid(&req["trafo_id"])),
    ] {
        if !ok {
            v.push(format!("`{field}` missing or of the wrong type"));
        }
    }
    if !v.is_empty() {
        return v;
    }
    let modules: Vec<&str> = req["code_modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["uuid"].as_str())
        .collect();
    let components: Vec<&str> = req["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["uuid"].as_str())
        .collect();
    if modules.iter().collect::<HashSet<_>>().len() != modules.len() {
        v.push("Code Modules not unique!".into());
    }
    if components.iter().collect::<HashSet<_>>().len() != components.len() {
        v.push("Components not unique!".into());
    }
    for c in req["components"].as_array().unwrap() {
        let module = c["code_module_uuid"].as_str().unwrap_or_default();
        if !modules.contains(&module) {
            v.push(format!(
                "component {} has no code module {module}",
                c["uuid"]
            ));
        }
        if c["function_name"] != "main" {
            v.push(format!("component {} function_name is not main", c["uuid"]));
        }
    }
    for conf in [
        "engine",
        "run_pure_plot_operators",
        "return_individual_node_results",
    ] {
        if req["configuration"].get(conf).is_none() {
            v.push(format!("configuration.{conf} missing"));
        }
    }
    check_node(&req["workflow"], &components, &mut v);

    let wf = &req["workflow"];
    let wiring = &req["workflow_wiring"];
    let inputs = wf["inputs"].as_array().cloned().unwrap_or_default();
    let outputs = wf["outputs"].as_array().cloned().unwrap_or_default();
    let wired_in: Vec<&str> = wiring["input_wirings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["workflow_input_name"].as_str())
        .collect();
    let wired_out: Vec<&str> = wiring["output_wirings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["workflow_output_name"].as_str())
        .collect();
    for i in &inputs {
        let name = i["name"].as_str().unwrap_or_default();
        if i["constant"] == json!(false)
            && i["default"] == json!(false)
            && !wired_in.contains(&name)
        {
            v.push(format!(
                "Wiring Incomplete: Workflow Input '{name}' has no wiring!"
            ));
        }
    }
    for w in &wired_in {
        if !inputs
            .iter()
            .any(|i| i["constant"] == json!(false) && i["name"] == json!(w))
        {
            v.push(format!(
                "Wiring does not match: There is no workflow input '{w}'!"
            ));
        }
    }
    for o in &outputs {
        let name = o["name"].as_str().unwrap_or_default();
        if !wired_out.contains(&name) {
            v.push(format!("workflow output '{name}' has no output wiring"));
        }
    }
    for w in &wired_out {
        if !outputs.iter().any(|o| o["name"] == json!(w)) {
            v.push(format!(
                "Wiring does not match: There is no workflow output '{w}'!"
            ));
        }
    }
    v
}

fn check_node(node: &Value, components: &[&str], v: &mut Vec<String>) {
    for field in [
        "id",
        "sub_nodes",
        "connections",
        "inputs",
        "outputs",
        "name",
        "tr_id",
        "tr_name",
        "tr_tag",
    ] {
        if node.get(field).is_none() {
            v.push(format!("workflow node {} lacks `{field}`", node["id"]));
        }
    }
    let subs = node["sub_nodes"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = subs.iter().filter_map(|s| s["id"].as_str()).collect();
    for s in &subs {
        if let Some(cu) = s.get("component_uuid") {
            if !components.contains(&cu.as_str().unwrap_or_default()) {
                v.push(format!(
                    "sub node {} uses component {cu} not in components",
                    s["id"]
                ));
            }
        } else {
            check_node(s, components, v);
        }
    }
    for c in node["connections"].as_array().into_iter().flatten() {
        for end in ["input_in_workflow_id", "output_in_workflow_id"] {
            if !ids.contains(&c[end].as_str().unwrap_or_default()) {
                v.push(format!(
                    "connection {end} {} is no sub node of {}",
                    c[end], node["id"]
                ));
            }
        }
    }
    for io in node["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(node["outputs"].as_array().into_iter().flatten())
    {
        if !ids.contains(&io["id_of_sub_node"].as_str().unwrap_or_default()) {
            v.push(format!(
                "io {} refers to unknown sub node {}",
                io["id"], io["id_of_sub_node"]
            ));
        }
    }
}
