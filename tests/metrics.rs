//! Prometheus metrics and the health endpoints (issue 17), as an operator sees them: a real
//! Prometheus scrapes `serve --metrics-addr`, promtool lints what it serves, and `/livez` and
//! `/readyz` follow the workers. Real Kafka and the runtime double, as everywhere.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::kafka::{OwnCluster, client};
use support::prometheus::{Labels, Prometheus, Response, http_get, http_get_accepting, promtool};
use support::runtime_double::RuntimeDouble;
use support::service::{KeyValue, ServiceProcess, Topics, add_request, produce_requests, read_all};
use support::wait::{Shown, eventually};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// Where `service` serves its metrics and probes: a port of its own (the support starts every
/// service with `HD_METRICS_ADDR=127.0.0.1:0`, and the supervisor logs the port it got).
fn metrics_addr(service: &ServiceProcess) -> String {
    service.metrics_addr(WAIT).to_string()
}

/// `GET path` on the metrics process, `None` while it does not answer.
fn get(addr: &str, path: &str) -> Option<Response> {
    http_get(addr, path).ok()
}

fn status(addr: &str, path: &str) -> Option<u16> {
    get(addr, path).map(|r| r.status)
}

/// Waits until `path` answers `want`, and returns that answer.
#[track_caller]
fn wait_status(addr: &str, path: &str, want: u16, service: &ServiceProcess) -> Response {
    eventually(WAIT, format!("{path} to answer {want}"), || {
        match get(addr, path) {
            Some(r) if r.status == want => Ok(r),
            other => {
                let last = other.map(|r| (r.status, r.text()));
                Err(Shown(format!("{last:?}; log:\n{}", service.log_text())))
            }
        }
    })
}

/// A request for a revision id no store holds: answered with `TrafoExecutionNotFoundError`.
fn unknown_revision_request(job: Uuid) -> Vec<u8> {
    let valid = String::from_utf8(add_request(job)).unwrap();
    valid
        .replace(
            "2abf72f6-68c9-7398-7175-165d31b3ced7",
            &Uuid::new_v4().to_string(),
        )
        .into_bytes()
}

/// `ok` Add requests, `unknown` for an unknown revision and `undecodable` records that are no
/// JSON at all, keyed by job id, interleaved so every partition gets some of each.
fn burst(ok: usize, unknown: usize, undecodable: usize) -> Vec<KeyValue> {
    let mut records = Vec::new();
    for i in 0..ok.max(unknown).max(undecodable) {
        let mut push = |value: Vec<u8>, job: Uuid| {
            records.push((Some(job.to_string().into_bytes()), Some(value)));
        };
        if i < ok {
            let job = Uuid::new_v4();
            push(add_request(job), job);
        }
        if i < unknown {
            let job = Uuid::new_v4();
            push(unknown_revision_request(job), job);
        }
        if i < undecodable {
            push(b"this is no JSON {".to_vec(), Uuid::new_v4());
        }
    }
    records
}

/// Responses per `(result, error type)` (the type empty for ok), read from the response JSON.
fn tally(responses: &[(i32, rskafka::record::RecordAndOffset)]) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for (_, r) in responses {
        let v: Value = serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
        let result = v["result"].as_str().unwrap().to_owned();
        let error_type = v["error"]["type"].as_str().unwrap_or_default().to_owned();
        *counts.entry((result, error_type)).or_default() += 1;
    }
    counts
}

fn total(counts: &BTreeMap<(String, String), u64>, result: &str) -> u64 {
    counts
        .iter()
        .filter(|((r, _), _)| r == result)
        .map(|(_, n)| n)
        .sum()
}

/// Waits until Prometheus has `hd_kafka_exec_requests_total` equal to `counts`: per result,
/// and per error type of the failures.
fn wait_for_counts(
    prometheus: &Prometheus,
    counts: &BTreeMap<(String, String), u64>,
    service: &ServiceProcess,
) {
    let mut expected: Vec<(String, u64)> = ["ok", "failure"]
        .iter()
        .map(|result| {
            (
                format!(r#"sum(hd_kafka_exec_requests_total{{result="{result}"}})"#),
                total(counts, result),
            )
        })
        .collect();
    for ((result, error_type), n) in counts {
        if result == "failure" {
            expected.push((
                format!(
                    r#"sum(hd_kafka_exec_requests_total{{result="failure", error_type="{error_type}"}})"#
                ),
                *n,
            ));
        }
    }
    for (expr, n) in expected {
        let what = format!("{expr} at {n}, as many such responses as are in the topic");
        eventually(WAIT, what, || match prometheus.query(&expr) {
            Some(v) if v == n as f64 => Ok(()),
            last => Err(Shown(format!(
                "{last:?}; scrapes: {}; log:\n{}",
                prometheus.targets(),
                service.log_text()
            ))),
        });
    }
}

/// Every counter series (`_total`, and histograms' `_count`) Prometheus has of the service now.
fn counters(prometheus: &Prometheus) -> Vec<(Labels, f64)> {
    prometheus
        .query_vector(r#"{__name__=~"hd_kafka_exec_.+_(total|count)"}"#)
        .into_iter()
        .map(|(mut labels, v)| {
            // The same target throughout: instance and job say nothing here.
            labels.remove("instance");
            labels.remove("job");
            (labels, v)
        })
        .collect()
}

/// Kills worker `victim` with SIGKILL and waits until its replacement consumes and `/readyz`
/// says every worker owns its partitions again.
fn kill_and_wait_for_replacement(service: &ServiceProcess, victim: i32, addr: &str) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    eventually(
        WAIT,
        format!("worker {victim} replaced by one consuming"),
        || {
            let workers = service.workers();
            let replaced = workers.len() == 2 && !workers.contains(&victim);
            if replaced && workers.iter().all(|p| service.consumes(*p)) {
                Ok(())
            } else {
                Err(Shown(format!(
                    "workers {workers:?}; log:\n{}",
                    service.log_text()
                )))
            }
        },
    );
    wait_status(addr, "/readyz", 200, service);
}

/// Acceptance: Prometheus scraping `serve --workers 2` under load counts every response by
/// result and error type as the response topic has them, the consumer lag returns to 0, and
/// the counters survive a worker's kill -9 (they live in the supervisor's shared memory): none
/// goes down, and the next burst adds exactly its responses.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_counts_every_response_and_the_counters_survive_a_kill_9() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "met-load", 4).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    let addr = metrics_addr(&service);
    service.wait_workers(2, WAIT);
    wait_status(&addr, "/readyz", 200, &service);
    let prometheus = Prometheus::start(&addr);
    // Prometheus parses the scrape with its own (strict) OpenMetrics parser: `up` is 1 only
    // when the whole exposition parsed.
    prometheus.wait_until(r#"up{job="hd-kafka-exec"}"#, |v| v == Some(1.0), WAIT);

    let first = burst(260, 30, 10);
    produce_requests(&client, &topics.requests, &first).await;
    let responses = read_all(&client, &topics.responses, first.len(), WAIT).await;
    assert_eq!(
        responses.len(),
        first.len(),
        "one response per request; log:\n{}",
        service.log_text()
    );
    let counts = tally(&responses);
    let want: BTreeMap<(String, String), u64> = [
        (("ok".into(), String::new()), 260),
        (("failure".into(), "TrafoExecutionNotFoundError".into()), 30),
        (("failure".into(), "UndecodableRequestError".into()), 10),
    ]
    .into();
    assert_eq!(counts, want, "the premise: what the burst is answered with");
    wait_for_counts(&prometheus, &counts, &service);
    prometheus.wait_until(
        "sum(hd_kafka_exec_dead_letters_total)",
        |v| v == Some(10.0),
        WAIT,
    );
    // Every request committed: the lag of each of the request topic's partitions is 0, its
    // committed offsets add up to the burst.
    let lag = format!(
        r#"hd_kafka_exec_consumer_lag{{topic="{}"}}"#,
        topics.requests
    );
    prometheus.wait_until(&format!("count({lag})"), |v| v == Some(4.0), WAIT);
    prometheus.wait_until(&format!("sum({lag})"), |v| v == Some(0.0), WAIT);
    prometheus.wait_until(
        &format!(
            r#"sum(hd_kafka_exec_committed_offset{{topic="{}"}})"#,
            topics.requests
        ),
        |v| v == Some(first.len() as f64),
        WAIT,
    );

    // kill -9 of an idle worker (everything committed, nothing in flight).
    let before = counters(&prometheus);
    assert!(before.len() >= 5, "the counters are scraped: {before:?}");
    let victim = service.workers()[0];
    kill_and_wait_for_replacement(&service, victim, &addr);
    prometheus.wait_for_scrape_after(SystemTime::now(), WAIT);
    let after: HashMap<Labels, f64> = counters(&prometheus).into_iter().collect();
    for (labels, was) in &before {
        let now = after.get(labels).copied();
        assert!(
            now.is_some_and(|now| now >= *was),
            "{labels:?} went from {was} to {now:?} across the kill; log:\n{}",
            service.log_text()
        );
    }
    prometheus.wait_until(
        r#"sum(hd_kafka_exec_worker_restarts_total{cause="signal"})"#,
        |v| v.is_some_and(|v| v >= 1.0),
        WAIT,
    );

    // The next burst adds exactly its responses to the counts from before the kill.
    let second = burst(200, 20, 5);
    produce_requests(&client, &topics.requests, &second).await;
    let all = first.len() + second.len();
    let responses = read_all(&client, &topics.responses, all, WAIT).await;
    assert_eq!(
        responses.len(),
        all,
        "one response per request; log:\n{}",
        service.log_text()
    );
    let counts = tally(&responses);
    assert_eq!(total(&counts, "ok"), 460, "the premise: {counts:?}");
    wait_for_counts(&prometheus, &counts, &service);
    prometheus.wait_until(
        "sum(hd_kafka_exec_dead_letters_total)",
        |v| v == Some(15.0),
        WAIT,
    );
    prometheus.wait_until(&format!("sum({lag})"), |v| v == Some(0.0), WAIT);
}

/// Whether the first node of `cluster` accepts connections.
fn up(cluster: &OwnCluster) -> bool {
    std::net::TcpStream::connect(cluster.node_address(1)).is_ok()
}

/// Acceptance: `/readyz` is 503 while the workers have no partitions and 200 once they own
/// them; `/livez` is 200 meanwhile. "Before" is made certain, not raced: the service starts
/// while its Kafka is down, so its workers cannot join the group until the broker is back.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_until_the_workers_own_partitions_and_livez_is_200_meanwhile() {
    let cluster = Arc::new(OwnCluster::start(1));
    let double = RuntimeDouble::start().await;
    let client = cluster.client().await;
    let topics = Topics::create(&client, "met-ready", 2).await;
    let outage = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart(Duration::from_secs(40))
    });
    eventually(WAIT, "the broker stopped", || match up(&cluster) {
        true => Err("it accepts connections"),
        false => Ok(()),
    });
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--timeout", "5"],
        &[],
    );
    let addr = metrics_addr(&service);
    // The premise: both workers run (waiting for Kafka, which is down), and the endpoint
    // answers.
    eventually(WAIT, "two workers and the metrics endpoint", || {
        if service.workers().len() == 2 && status(&addr, "/readyz").is_some() {
            Ok(())
        } else {
            Err(Shown(service.log_text()))
        }
    });
    // For longer than a worker may be silent (clamp(5 s / 2, 2 s, 10 s) = 2.5 s): the workers
    // beat while they wait for Kafka, so they are alive; none owns a partition, so not ready.
    // The fixed period and the pause between looks are the point: nothing may change in it.
    let checks_end = Instant::now() + Duration::from_secs(6);
    let mut reason = String::new();
    while Instant::now() < checks_end {
        let ready = get(&addr, "/readyz").unwrap();
        assert_eq!(
            ready.status,
            503,
            "ready without partitions: {}; log:\n{}",
            ready.text(),
            service.log_text()
        );
        reason = ready.text();
        let live = get(&addr, "/livez").unwrap();
        assert_eq!(
            live.status,
            200,
            "not alive while waiting for Kafka: {}; log:\n{}",
            live.text(),
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!reason.trim().is_empty(), "503 says why");
    assert!(
        !up(&cluster),
        "Kafka came back during the checks: the test proves nothing"
    );
    outage.await.unwrap();

    wait_status(&addr, "/readyz", 200, &service);
    service.wait_workers(2, WAIT);
    assert_eq!(status(&addr, "/livez"), Some(200));
}

/// Acceptance: `promtool check metrics` passes on what `/metrics` serves after requests of
/// each kind (so every labelled family has series). Served as Prometheus' classic text format
/// to a client that does not ask for OpenMetrics (promtool parses only that one), and as
/// OpenMetrics to one that does, as Prometheus' scrapes do (their strict parser is the other
/// test's `up == 1`).
#[tokio::test(flavor = "multi_thread")]
async fn promtool_check_metrics_passes_on_the_scrape() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "met-lint", 2).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    let addr = metrics_addr(&service);
    service.wait_workers(1, WAIT);
    let requests = burst(5, 2, 1);
    produce_requests(&client, &topics.requests, &requests).await;
    let responses = read_all(&client, &topics.responses, requests.len(), WAIT).await;
    assert_eq!(responses.len(), requests.len(), "{}", service.log_text());
    let undecodable =
        r#"hd_kafka_exec_requests_total{result="failure",error_type="UndecodableRequestError"}"#;
    let scrape = eventually(WAIT, "the failures counted", || {
        let scrape = wait_status(&addr, "/metrics", 200, &service);
        if sample(&scrape.text(), undecodable) == Some(1.0) {
            Ok(scrape)
        } else {
            Err(Shown(scrape.text()))
        }
    });
    assert_eq!(
        scrape.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = scrape.text();
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\non:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let open = http_get_accepting(
        &addr,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .unwrap();
    assert_eq!(open.status, 200);
    assert_eq!(
        open.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        open.text().ends_with("# EOF\n"),
        "an OpenMetrics exposition ends so:\n{}",
        open.text()
    );
}

/// The state letter of `/proc/<pid>/stat` (R, S, T, Z…), `None` once the process is gone.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The value of the sample `series` (name and labels exactly as exposed) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Acceptance: `/livez` fails while a worker is stopped (SIGSTOP: it cannot beat), and is 200
/// again once the supervisor has killed it as hung (`--timeout`) and replaced it.
#[tokio::test(flavor = "multi_thread")]
async fn livez_fails_while_a_worker_is_stopped_and_recovers_once_it_is_replaced() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "met-live", 2).await;
    // Silent for clamp(8 s / 2, 2 s, 10 s) = 4 s: not alive; for 8 s: killed and replaced.
    let service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--timeout", "8"],
    );
    let addr = metrics_addr(&service);
    service.wait_workers(2, WAIT);
    wait_status(&addr, "/readyz", 200, &service);
    wait_status(&addr, "/livez", 200, &service);

    let victim = service.workers()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGSTOP).unwrap();
    eventually(
        WAIT,
        format!("worker {victim} stopped"),
        || match proc_state(victim) {
            Some('T') => Ok(()),
            other => Err(other),
        },
    );
    let failed = eventually(
        WAIT,
        format!("/livez failing, worker {victim} stopped"),
        || {
            let live = get(&addr, "/livez").unwrap();
            if live.status != 200 {
                Ok(live)
            } else {
                Err(Shown(service.log_text()))
            }
        },
    );
    assert_eq!(
        proc_state(victim),
        Some('T'),
        "the premise: /livez failed while the worker was stopped ({})",
        failed.text()
    );
    assert!(!failed.text().trim().is_empty(), "the failure says why");

    // The supervisor kills the silent worker and starts another in its place.
    eventually(WAIT, format!("worker {victim} gone and replaced"), || {
        let workers = service.workers();
        let state = proc_state(victim);
        if state.is_none() && workers.len() == 2 && !workers.contains(&victim) {
            Ok(())
        } else {
            Err(Shown(format!(
                "{state:?}, workers {workers:?}; log:\n{}",
                service.log_text()
            )))
        }
    });
    wait_status(&addr, "/livez", 200, &service);
    let scrape = wait_status(&addr, "/metrics", 200, &service).text();
    let hung = sample(
        &scrape,
        r#"hd_kafka_exec_worker_restarts_total{cause="hung"}"#,
    );
    assert!(
        hung.is_some_and(|n| n >= 1.0),
        "the restart counted as hung: {hung:?} in\n{scrape}"
    );
}

/// Issue 27: a second service on a host, both with default settings: the default metrics port
/// is taken, and the endpoint is optional for a Kafka consumer, so the service warns once, names
/// the port and the setting, and runs on without it, answering requests.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_metrics_port_taken_costs_a_warning_not_the_service() {
    let port = 9464; // src/config's DEFAULT_METRICS_ADDR
    // The premise: the port is taken, by this test or by whatever already holds it.
    let _held = std::net::TcpListener::bind(("0.0.0.0", port));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "nothing listens on {port}: the test proves nothing"
    );
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "met-taken", 1).await;
    let service = ServiceProcess::start_with_default_metrics(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
    );
    service.wait_workers(1, WAIT);
    let job = Uuid::new_v4();
    produce_requests(
        &client,
        &topics.requests,
        &[(Some(job.to_string().into_bytes()), Some(add_request(job)))],
    )
    .await;
    let responses = read_all(&client, &topics.responses, 1, WAIT).await;
    assert_eq!(responses.len(), 1, "log:\n{}", service.log_text());
    let log = service.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("metrics port 9464 is taken"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("--metrics-addr"), "{log}");
    assert!(!log.contains("metrics at /metrics"), "{log}");
}

/// An address the operator chose and cannot get stops `serve`: something counts on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_chosen_metrics_address_taken_stops_the_service() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "met-chosen", 1).await;
    let mut service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
        &[("HD_METRICS_ADDR", addr.as_str())],
    );
    let status = service.wait_exit(WAIT).expect("serve still runs");
    assert!(!status.success());
    let log = service.log_text();
    assert!(
        log.contains(&format!("--metrics-addr {addr}: cannot listen there")),
        "{log}"
    );
}
