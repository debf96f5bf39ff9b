//! The metrics process: forked by the supervisor as its sidecar, it serves `/metrics`,
//! `/livez` and `/readyz` from the board and the group's lag. A process of its own because the
//! supervisor must stay single-threaded and free of anything async (it forks), and because a
//! scrape must not depend on any one worker being alive. The lag comes from the [`LagSource`]
//! its starter hands [`run`].

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::board::{Board, Reading, WorkerState, monotonic_ms};
use super::exposition::{Format, Scrape, encode};
use super::lag::{LagSource, PartitionLag};

/// The metrics process' name (`/proc/PID/comm`, what `ps` shows): the workers keep the
/// binary's.
pub const PROCESS_NAME: &std::ffi::CStr = c"hd-metrics";

/// How long the supervisor's loop may stand still before `/livez` fails: it turns at least
/// every 500 ms, so this is a stuck supervisor, not a busy one.
const SUPERVISOR_SILENCE: Duration = Duration::from_secs(5);
/// A scrape waits this long for the lag; after it, the lag families are left out of that
/// scrape (Prometheus marks them stale) rather than the scrape timing out.
const LAG_BUDGET: Duration = Duration::from_secs(3);
/// Scrapes closer together than this share one lag reading.
const LAG_REUSE: Duration = Duration::from_millis(500);

/// What the metrics process needs besides the board and the lag.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// A worker silent for longer counts as hung for `/livez`.
    pub hung_after: Duration,
}

/// How long a worker may be silent before `/livez` calls it hung: half the supervisor's
/// `--timeout` (which replaces it at the full timeout), between 2 and 10 s; 10 s when the
/// supervisor's check is off.
pub fn hung_after(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        return Duration::from_secs(10);
    }
    (timeout / 2).clamp(Duration::from_secs(2), Duration::from_secs(10))
}

/// `/livez`: the supervisor's loop turns and every worker beats.
pub fn liveness(r: &Reading, now_ms: u64, hung_after: Duration) -> Result<(), String> {
    let silent = |since: u64| Duration::from_millis(now_ms.saturating_sub(since));
    if r.supervisor_tick_ms == 0 || silent(r.supervisor_tick_ms) > SUPERVISOR_SILENCE {
        return Err(format!(
            "the supervisor's loop has not turned for {:.1} s",
            silent(r.supervisor_tick_ms).as_secs_f64()
        ));
    }
    for w in &r.workers {
        let quiet = silent(w.beat_ms);
        if quiet > hung_after {
            return Err(format!(
                "worker {} (pid {}) has been silent for {:.1} s: hung",
                w.index,
                w.pid,
                quiet.as_secs_f64()
            ));
        }
    }
    Ok(())
}

/// `/readyz`: every worker the supervisor means to run has booted and owns its partitions.
pub fn readiness(r: &Reading) -> Result<(), String> {
    if r.supervisor_tick_ms == 0 {
        return Err("the supervisor has not started".into());
    }
    if r.stopping {
        return Err("the service is stopping".into());
    }
    for index in 0..r.target_workers {
        match r.workers.iter().find(|w| w.index == index) {
            None => return Err(format!("worker {index} is not running")),
            Some(w) if w.state != WorkerState::Consuming => {
                return Err(format!("worker {index} is {}", w.state.label()));
            }
            Some(w) if w.kafka_unreachable => {
                return Err(format!("worker {index} cannot reach Kafka"));
            }
            Some(w) if !w.topics_missing.is_empty() => {
                let topics: Vec<&str> = w.topics_missing.iter().map(|t| t.label()).collect();
                let verb = if topics.len() > 1 { "are" } else { "is" };
                return Err(format!(
                    "worker {index} cannot produce: the {} {verb} missing",
                    topics.join(" and the ")
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The lag of the last read, and when it was read.
#[derive(Debug, Default)]
struct LagCache {
    at: Option<Instant>,
    partitions: Option<Vec<PartitionLag>>,
    /// When a failed read was last logged (once a minute is enough).
    warned: Option<Instant>,
}

/// The process' state, shared by its connections (one thread: `Rc`).
#[derive(Debug)]
struct Endpoint<L> {
    board: Board,
    hung_after: Duration,
    /// `None` when the process was started without one (then no lag is shown). Behind an async
    /// lock: a read holds it across awaits, and concurrent scrapes wait for its result.
    lag: Option<tokio::sync::Mutex<L>>,
    cache: RefCell<LagCache>,
}

impl<L: LagSource> Endpoint<L> {
    async fn lag(&self) -> Option<(String, Vec<PartitionLag>)> {
        let reader = self.lag.as_ref()?;
        let mut reader = reader.lock().await;
        let topic = reader.topic().to_owned();
        {
            let cache = self.cache.borrow();
            if cache.at.is_some_and(|at| at.elapsed() < LAG_REUSE) {
                return cache.partitions.clone().map(|p| (topic, p));
            }
        }
        let read = reader.read(LAG_BUDGET).await;
        let mut cache = self.cache.borrow_mut();
        cache.at = Some(Instant::now());
        cache.partitions = match read {
            Ok(partitions) => Some(partitions),
            Err(e) => {
                if cache
                    .warned
                    .is_none_or(|at| at.elapsed() > Duration::from_secs(60))
                {
                    cache.warned = Some(Instant::now());
                    tracing::warn!("metrics: the consumer lag cannot be read: {e}");
                }
                None
            }
        };
        cache.partitions.clone().map(|p| (topic, p))
    }

    async fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match req.uri().path() {
            "/metrics" => {
                let format = Format::negotiate(
                    req.headers()
                        .get(hyper::header::ACCEPT)
                        .and_then(|a| a.to_str().ok()),
                );
                let lag = self.lag().await;
                let body = encode(
                    Scrape {
                        reading: self.board.read(),
                        lag,
                    },
                    format,
                );
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(format.content_type()),
                );
                response
            }
            "/livez" => probe(liveness(
                &self.board.read(),
                monotonic_ms(),
                self.hung_after,
            )),
            "/readyz" => probe(readiness(&self.board.read())),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /livez and /readyz are served here\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn probe(result: Result<(), String>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Runs the metrics process on `listener` (bound by the supervisor before it forked, so a port
/// in use fails the start, not a child), showing the lag `lag` reads (none without one).
/// Returns its exit code.
pub fn run<L: LagSource + 'static>(
    listener: std::net::TcpListener,
    board: Board,
    settings: EndpointSettings,
    lag: Option<L>,
) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("metrics: cannot start its async runtime: {e}");
            return 1;
        }
    };
    let endpoint = Rc::new(Endpoint {
        board,
        hung_after: settings.hung_after,
        lag: lag.map(tokio::sync::Mutex::new),
        cache: RefCell::new(LagCache::default()),
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        if let Err(e) = listener.set_nonblocking(true) {
            tracing::error!("metrics: {e}");
            return 1;
        }
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("metrics: {e}");
                return 1;
            }
        };
        // SIGTERM ends this process by its default action (the supervisor sees to that):
        // nothing here needs a graceful end.
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!("metrics: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let endpoint = endpoint.clone();
            tokio::task::spawn_local(async move {
                let service = hyper::service::service_fn(move |req| {
                    let endpoint = endpoint.clone();
                    async move { Ok::<_, Infallible>(endpoint.answer(&req).await) }
                });
                // One request per connection: a probe or scrape costs one accept, and a client
                // that stalls holds its connection 30 s at most.
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::board::{Board, Produced};

    #[test]
    fn ready_once_every_configured_worker_consumes() {
        let board = Board::private();
        assert!(
            readiness(&board.read())
                .unwrap_err()
                .contains("not started")
        );
        board.supervisor_turn(2, false);
        assert_eq!(
            readiness(&board.read()).unwrap_err(),
            "worker 0 is not running"
        );
        for (index, pid) in [(0, 10), (1, 11)] {
            board.worker_forking(index);
            board.worker_forked(index, pid);
        }
        assert_eq!(readiness(&board.read()).unwrap_err(), "worker 0 is booting");
        board.slot(0).set_state(WorkerState::Consuming);
        board.slot(1).set_state(WorkerState::Joining);
        assert_eq!(readiness(&board.read()).unwrap_err(), "worker 1 is joining");
        board.slot(1).set_state(WorkerState::Consuming);
        assert_eq!(readiness(&board.read()), Ok(()));
        board.slot(1).set_kafka_unreachable(true);
        assert_eq!(
            readiness(&board.read()).unwrap_err(),
            "worker 1 cannot reach Kafka"
        );
        board.slot(1).set_kafka_unreachable(false);
        assert_eq!(readiness(&board.read()), Ok(()));
        board.slot(0).set_topic_missing(Produced::Responses, true);
        board.slot(0).set_topic_missing(Produced::DeadLetters, true);
        assert_eq!(
            readiness(&board.read()).unwrap_err(),
            "worker 0 cannot produce: the response topic and the dead-letter topic are missing"
        );
        board.slot(0).set_topic_missing(Produced::Responses, false);
        assert_eq!(
            readiness(&board.read()).unwrap_err(),
            "worker 0 cannot produce: the dead-letter topic is missing"
        );
        board
            .slot(0)
            .set_topic_missing(Produced::DeadLetters, false);
        assert_eq!(readiness(&board.read()), Ok(()));
        // TTOU: slot 1 retired; the one left suffices.
        board.supervisor_turn(1, false);
        board.worker_exited(1, None);
        assert_eq!(readiness(&board.read()), Ok(()));
        board.supervisor_turn(1, true);
        assert!(readiness(&board.read()).unwrap_err().contains("stopping"));
    }

    #[test]
    fn live_while_the_supervisor_turns_and_every_worker_beats() {
        let board = Board::private();
        board.supervisor_turn(1, false);
        board.worker_forking(0);
        board.worker_forked(0, 10);
        let now = monotonic_ms();
        let hung = Duration::from_secs(4);
        assert_eq!(liveness(&board.read(), now, hung), Ok(()));
        let later = now + 6_000;
        let err = liveness(&board.read(), later, hung).unwrap_err();
        assert!(err.contains("supervisor"), "{err}");
        board.supervisor_turn(1, false);
        let err = liveness(&board.read(), monotonic_ms() + 4_500, hung).unwrap_err();
        assert!(err.contains("worker 0 (pid 10)"), "{err}");
        board.slot(0).beat();
        assert_eq!(liveness(&board.read(), monotonic_ms(), hung), Ok(()));
    }

    #[test]
    fn hung_after_follows_the_supervisors_timeout() {
        assert_eq!(hung_after(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(hung_after(Duration::from_secs(8)), Duration::from_secs(4));
        assert_eq!(hung_after(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(hung_after(Duration::ZERO), Duration::from_secs(10));
    }
}
