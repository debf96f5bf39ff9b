//! The whole service as users run it: `hd-kafka-exec serve` (supervisor and workers) against the
//! real Kafka broker, with the runtime double standing in for hetida's runtime service.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::hostile_runtime::{Act, Runtime as HostileRuntime};
use support::kafka::{OwnCluster, client, kafka_bootstrap, kcat};
use support::normalise;
use support::runtime_double::{Mode, RuntimeDouble};
use support::service::{
    KeyValue, ServiceProcess, Topics, add_request, job_of, keyed_requests, produce_requests,
    read_all, read_jobs, vectors,
};
use support::wait::{eventually, eventually_async};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

fn case_file(case: &str, name: &str) -> Option<Vec<u8>> {
    std::fs::read(vectors().join("cases").join(case).join(name)).ok()
}

fn assert_same(case: &str, ours: &[u8], reference: &[u8], request: Option<&[u8]>) {
    let known = normalise::known_uuids(&vectors().join("transformations"), request);
    let a = normalise::normalise(&serde_json::from_slice(ours).unwrap(), &known);
    let b = normalise::normalise(&serde_json::from_slice(reference).unwrap(), &known);
    assert_eq!(a, b, "{case}: response differs from the reference");
}

/// The seed's demo: the two console-producer lines (`exec_job_1:{...}` by id, `exec_job_2:{...}`
/// by revision group) typed into kcat; each yields one response equal to the reference's, keyed
/// like its request.
#[tokio::test(flavor = "multi_thread")]
async fn seed_messages_from_the_console_producer_get_the_references_responses() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "seed", 8).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    service.wait_workers(2, WAIT);

    let by_id = String::from_utf8(case_file("volatility_by_id", "request.json").unwrap()).unwrap();
    let by_group =
        String::from_utf8(case_file("volatility_latest_by_group", "request.json").unwrap())
            .unwrap();
    let mut child = kcat()
        .args([
            "-P",
            "-b",
            &kafka_bootstrap().join(","),
            "-t",
            &topics.requests,
            "-K:",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "exec_job_1:{}", by_id.trim_end()).unwrap();
        writeln!(stdin, "exec_job_2:{}", by_group.trim_end()).unwrap();
    }
    assert!(child.wait().unwrap().success());

    let responses = read_all(&client, &topics.responses, 2, WAIT).await;
    assert_eq!(responses.len(), 2, "log:\n{}", service.log_text());
    for (_, r) in &responses {
        let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
        let (case, request) = match key.as_str() {
            "exec_job_1" => ("volatility_by_id", &by_id),
            "exec_job_2" => ("volatility_latest_by_group", &by_group),
            other => panic!("unexpected key {other}"),
        };
        let value = r.record.value.as_ref().unwrap();
        assert_same(
            case,
            value,
            &case_file(case, "response.json").unwrap(),
            Some(request.as_bytes()),
        );
        assert_eq!(r.record.headers["hd-job-id"], job_of(value).as_bytes());
        assert_eq!(r.record.headers["content-type"], b"application/json");
        // One INFO line per finished job at the default level, as hetida's backend logs one:
        // its job id, revision, result and duration.
        let job = job_of(value);
        let log = service.log_text();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("job finished") && l.contains(&job))
            .collect();
        assert_eq!(lines.len(), 1, "{job}: {lines:?}\n{log}");
        assert!(lines[0].contains(" INFO "), "{}", lines[0]);
        assert!(
            lines[0].contains("result=ok") && lines[0].contains("ms="),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("revision="), "{}", lines[0]);
    }
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

/// Cases whose recorded runtime misbehaved; the double is switched to the same misbehaviour.
fn special_mode(case: &str) -> Option<Mode> {
    Some(match case {
        "invalid_runtime_unreachable" => Mode::Down,
        "invalid_runtime_bad_result" => Mode::BadResult,
        "invalid_runtime_text_500" | "invalid_runtime_nan_output" => Mode::Http500Text,
        "runtime_valid_result_with_500" => Mode::ValidResultWith500,
        _ => return None,
    })
}

fn check_case(case: &str, value: &[u8]) {
    let request = case_file(case, "request.json").or_else(|| case_file(case, "request.bin"));
    match case_file(case, "response.json") {
        Some(reference) => assert_same(case, value, &reference, request.as_deref()),
        None => {
            let v: Value = serde_json::from_slice(value).unwrap();
            let expected = normalise::expected_failure(case)
                .unwrap_or_else(|| panic!("{case}: no expectation"));
            assert_eq!(v["result"], "failure", "{case}: {v}");
            assert_eq!(v["error"]["type"], expected, "{case}: {v}");
            assert!(
                v["error"]["extra_information"]["topic"].as_str().is_some(),
                "{case}: {v}"
            );
        }
    }
}

/// Every recorded case through Kafka: the reference's response where it answered, our failure
/// response where it dropped the request, dead letters for what is no request at all — and the
/// workers keep running throughout.
#[tokio::test(flavor = "multi_thread")]
async fn every_vector_case_through_kafka() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "cases", 4).await;
    let mut service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--runtime-retry-budget", "1"],
    );
    service.wait_workers(2, WAIT);
    let workers_before = service.workers();

    let mut cases: Vec<String> = std::fs::read_dir(vectors().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 42);
    let value_of =
        |case: &str| case_file(case, "request.json").or_else(|| case_file(case, "request.bin"));
    let normal: Vec<&String> = cases.iter().filter(|c| special_mode(c).is_none()).collect();
    let records: Vec<KeyValue> = normal
        .iter()
        .map(|c| (Some(c.as_bytes().to_vec()), value_of(c)))
        .collect();
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_all(&client, &topics.responses, normal.len(), WAIT).await;
    assert_eq!(
        responses.len(),
        normal.len(),
        "one response per request; log:\n{}",
        service.log_text()
    );
    let mut seen = HashSet::new();
    for (_, r) in &responses {
        let case = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
        assert!(seen.insert(case.clone()), "{case} answered twice");
        check_case(&case, r.record.value.as_ref().unwrap());
    }

    let mut expected_total = normal.len();
    for case in cases.iter().filter(|c| special_mode(c).is_some()) {
        double.set_mode(special_mode(case).unwrap());
        produce_requests(
            &client,
            &topics.requests,
            &[(Some(case.as_bytes().to_vec()), value_of(case))],
        )
        .await;
        expected_total += 1;
        let all = read_all(&client, &topics.responses, expected_total, WAIT).await;
        let r = all
            .iter()
            .find(|(_, r)| r.record.key.as_deref() == Some(case.as_bytes()))
            .unwrap_or_else(|| panic!("{case}: no response; log:\n{}", service.log_text()));
        check_case(case, r.1.record.value.as_ref().unwrap());
        double.set_mode(Mode::Normal);
    }

    let dead = read_all(&client, &topics.dead_letters, 3, WAIT).await;
    let mut dead_keys: Vec<String> = dead
        .iter()
        .map(|(_, r)| String::from_utf8(r.record.key.clone().unwrap()).unwrap())
        .collect();
    dead_keys.sort();
    assert_eq!(
        dead_keys,
        ["invalid_non_utf8", "invalid_not_json", "invalid_tombstone"]
    );
    for (_, r) in &dead {
        let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
        assert_eq!(
            r.record.value,
            value_of(&key),
            "{key}: dead letter carries the value untouched"
        );
        assert!(r.record.headers.contains_key("hd-dead-letter-reason"));
    }
    assert_eq!(
        service.workers(),
        workers_before,
        "no worker died of a bad message"
    );
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    service.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(service.wait_exit(WAIT).unwrap().success());
}

/// The runtime is down for 10 s while requests arrive: all are answered once it is back.
#[tokio::test(flavor = "multi_thread")]
async fn requests_survive_a_runtime_outage_within_the_retry_budget() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "outage", 4).await;
    let service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "1", "--runtime-retry-budget", "60"],
    );
    service.wait_workers(1, WAIT);
    double.set_mode(Mode::Down);
    let jobs: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let records: Vec<_> = jobs
        .iter()
        .map(|j| (Some(j.to_string().into_bytes()), Some(add_request(*j))))
        .collect();
    produce_requests(&client, &topics.requests, &records).await;
    // The outage's length is the point: for 10 s of the 60 s retry budget nothing may be
    // answered (no failure response either), and no condition tells when 10 s have passed.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        read_all(&client, &topics.responses, 1, Duration::from_millis(100))
            .await
            .len(),
        0
    );
    double.set_mode(Mode::Normal);
    let responses = read_all(&client, &topics.responses, jobs.len(), WAIT).await;
    assert_eq!(responses.len(), jobs.len(), "log:\n{}", service.log_text());
    for (_, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["result"], "ok", "{v}");
    }
}

/// Beyond the retry budget the requests get failure responses, not silence.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_runtime_beyond_the_budget_gives_failure_responses() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "down", 2).await;
    let service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "1", "--runtime-retry-budget", "1"],
    );
    service.wait_workers(1, WAIT);
    double.set_mode(Mode::Down);
    let jobs: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let records: Vec<_> = jobs.iter().map(|j| (None, Some(add_request(*j)))).collect();
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_all(&client, &topics.responses, jobs.len(), WAIT).await;
    assert_eq!(responses.len(), jobs.len());
    for (_, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            v["error"]["type"], "TrafoExecutionRuntimeConnectionError",
            "{v}"
        );
        assert!(jobs.iter().any(|j| v["job_id"] == j.to_string()));
    }
}

/// An https:// runtime whose certificate the CA bundle (`HD_CA_BUNDLE`) trusts executes the
/// requests; one whose certificate comes from an unknown CA gets each request a failure
/// response saying so, at once: a certificate problem is not retried for the budget.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread")]
async fn an_https_runtime_is_trusted_through_the_ca_bundle_and_an_unknown_ca_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki::Pki::generate(dir.path());
    let trusted = RuntimeDouble::start_tls(&pki.server_cert(), &pki.server_key()).await;
    let rogue = RuntimeDouble::start_tls(&pki.rogue_server_cert(), &pki.rogue_server_key()).await;
    let client = client().await;
    let ca = pki.ca();
    let env = [("HD_CA_BUNDLE", ca.to_str().unwrap())];
    // A budget far beyond the wait below: responses within the wait were not retried for it.
    let args = ["--workers", "1", "--runtime-retry-budget", "600"];
    let ok_topics = Topics::create(&client, "https-ok", 2).await;
    let ok_service = ServiceProcess::start_with(&ok_topics, &trusted.engine_url(), &args, &env);
    let rogue_topics = Topics::create(&client, "https-rogue", 2).await;
    let rogue_service = ServiceProcess::start_with(&rogue_topics, &rogue.engine_url(), &args, &env);
    ok_service.wait_workers(1, WAIT);
    rogue_service.wait_workers(1, WAIT);

    let (ok_jobs, ok_records) = keyed_requests(5);
    produce_requests(&client, &ok_topics.requests, &ok_records).await;
    let (rogue_jobs, rogue_records) = keyed_requests(5);
    produce_requests(&client, &rogue_topics.requests, &rogue_records).await;

    let responses = read_jobs(&client, &ok_topics.responses, &ok_jobs, WAIT).await;
    assert_eq!(responses.len(), 5, "log:\n{}", ok_service.log_text());
    for (_, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["result"], "ok", "{v}");
        assert_eq!(v["output_results_by_output_name"]["sum"], 3.5, "{v}");
    }
    assert_eq!(trusted.calls(), 5);

    let responses = read_jobs(&client, &rogue_topics.responses, &rogue_jobs, WAIT).await;
    assert_eq!(responses.len(), 5, "log:\n{}", rogue_service.log_text());
    for (_, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["result"], "failure", "{v}");
        assert_eq!(
            v["error"]["type"], "TrafoExecutionRuntimeConnectionError",
            "{v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("TLS handshake failed: the server's certificate is not trusted"),
            "{message}"
        );
    }
    assert_eq!(rogue.calls(), 0, "no request reached the untrusted runtime");
    assert_eq!(
        rogue.connections(),
        5,
        "one handshake per request, none retried"
    );
}

/// kill -9 of a worker with 2,000 requests in flight, then it is restarted: every request has a
/// response, repeats stay within the in-flight window, and the committed positions cover all.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_a_worker_loses_no_request() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(5));
    let client = client().await;
    let topics = Topics::create(&client, "kill9", 4).await;
    let max_in_flight = 16;
    let consumer_options = format!(
        r#"{{"bootstrap_servers": "{}", "group_id": "{}", "auto_offset_reset": "earliest", "auto_commit_interval_ms": 10}}"#,
        kafka_bootstrap().join(","),
        topics.group
    );
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &[
            "--workers",
            "1",
            "--max-in-flight",
            &max_in_flight.to_string(),
        ],
        &[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &consumer_options)],
    );
    service.wait_workers(1, WAIT);
    let jobs: Vec<Uuid> = (0..2000).map(|_| Uuid::new_v4()).collect();
    let records: Vec<_> = jobs
        .iter()
        .map(|j| (Some(j.to_string().into_bytes()), Some(add_request(*j))))
        .collect();
    produce_requests(&client, &topics.requests, &records).await;
    // Kill once some responses are out, mid-stream.
    let some = read_all(&client, &topics.responses, 300, WAIT).await;
    assert!(some.len() >= 300);
    let victim = service.workers()[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, r) in &responses {
        *count
            .entry(job_of(r.record.value.as_ref().unwrap()))
            .or_default() += 1;
    }
    let lost: Vec<&Uuid> = jobs
        .iter()
        .filter(|j| !count.contains_key(&j.to_string()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} request(s) lost; log:\n{}",
        lost.len(),
        service.log_text()
    );
    let repeats: usize = count.values().map(|c| c - 1).sum();
    // Only what was after the last commit may repeat: the in-flight window, plus what finished
    // during the last commit round (10 ms interval here).
    assert!(
        repeats <= 2 * max_in_flight,
        "{repeats} repeats for a window of {max_in_flight}"
    );
    assert!(
        service.workers().len() == 1 && service.workers()[0] != victim,
        "worker restarted"
    );
    assert!(
        service.log_text().contains("worker killed by signal"),
        "the crash is logged"
    );
    eprintln!(
        "kill -9: {} responses for {} requests, {repeats} repeat(s)",
        responses.len(),
        jobs.len()
    );
}

/// A clean stop (TERM) and a new start execute nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn clean_stop_then_start_executes_nothing_twice() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(2));
    let client = client().await;
    let topics = Topics::create(&client, "restart", 4).await;
    let mut service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    service.wait_workers(2, WAIT);
    let jobs: Vec<Uuid> = (0..600).map(|_| Uuid::new_v4()).collect();
    let records: Vec<_> = jobs
        .iter()
        .map(|j| (Some(j.to_string().into_bytes()), Some(add_request(*j))))
        .collect();
    produce_requests(&client, &topics.requests, &records).await;
    let early = read_all(&client, &topics.responses, 200, WAIT).await;
    assert!(early.len() >= 200, "the premise: answering before the stop");
    service.signal(nix::sys::signal::Signal::SIGTERM);
    let status = service
        .wait_exit(WAIT)
        .expect("supervisor exits after TERM");
    assert!(status.success(), "log:\n{}", service.log_text());
    assert!(service.workers().is_empty());

    let second = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    second.wait_workers(2, WAIT);
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_eq!(
        responses.len(),
        jobs.len(),
        "log:\n{}\n{}",
        service.log_text(),
        second.log_text()
    );
    for j in &jobs {
        assert_eq!(
            double.calls_for_job(&j.to_string()),
            1,
            "job {j} executed once"
        );
    }
}

/// `hd-kafka-exec exec`: one request on stdin, its response on stdout.
#[tokio::test(flavor = "multi_thread")]
async fn exec_prints_the_response_to_a_request() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "exec", 2).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);
    let bootstrap = kafka_bootstrap().join(",");
    let run = |request: &'static str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hd-kafka-exec"))
            .args(["exec", "--key", "exec_job_1", "--wait", "60"])
            .env(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                format!(r#"{{"bootstrap_servers": "{bootstrap}"}}"#),
            )
            .env("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", &topics.requests)
            .env("HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC", &topics.responses)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // No job_id: exec adds one, so it can recognise the answer.
    let ok = run(
        r#"{"id": "2abf72f6-68c9-7398-7175-165d31b3ced7", "wiring": {"input_wirings": [{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {"value": "1"}}, {"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {"value": "2.5"}}]}}"#,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["result"], "ok");
    assert_eq!(v["output_results_by_output_name"]["sum"], 3.5);
    // Read as Python reads it and sent as written: a job id is added to a request with `NaN`.
    let python = run(
        r#"{"id": "2abf72f6-68c9-7398-7175-165d31b3ced7", "note": NaN, "wiring": {"input_wirings": [{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {"value": Infinity}}, {"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {"value": "\ud800"}}]}} "#,
    );
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let failed = run(
        r#"{"id": "00000000-0000-4000-8000-000000000000", "job_id": "00000000-0000-4000-8000-0000000000aa"}"#,
    );
    assert_eq!(
        failed.status.code(),
        Some(1),
        "a failure result exits non-zero"
    );
    let v: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(v["error"]["type"], "TrafoExecutionNotFoundError");
    assert_eq!(v["job_id"], "00000000-0000-4000-8000-0000000000aa");
}

/// Requests as Python's `json.loads` reads them, which hetida executes (spec §10): `NaN` and
/// `-Infinity` in a string field arrive at the runtime as Python's `str()` of them, a lone
/// surrogate as the escape it came as (`json.dumps`), and both jobs are answered.
#[tokio::test(flavor = "multi_thread")]
async fn requests_python_reads_execute_as_hetida_executes_them() {
    let double = RuntimeDouble::start().await;
    double.keep_bodies();
    let client = client().await;
    let topics = Topics::create(&client, "pyjson", 1).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);
    let request = |job: Uuid, a: &str, b: &str| {
        format!(
            r#"{{"id": "2abf72f6-68c9-7398-7175-165d31b3ced7", "note": [NaN, 1e400, "\udfff"], "wiring": {{"input_wirings": [{{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {{"value": {a}}}}}, {{"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {{"value": {b}}}}}]}}, "job_id": "{job}"}}"#
        )
        .into_bytes()
    };
    let (nan, lone) = (Uuid::new_v4(), Uuid::new_v4());
    produce_requests(
        &client,
        &topics.requests,
        &[
            (None, Some(request(nan, "NaN", "-Infinity"))),
            (
                None,
                Some(request(lone, r#""\ud800""#, r#""x\udc00\ud83d\ude00""#)),
            ),
        ],
    )
    .await;
    for job in [nan, lone] {
        let v = response_of(&client, &topics.responses, job).await;
        assert_eq!(v["result"], "ok", "{v}\nlog:\n{}", service.log_text());
    }
    assert_eq!(double.violations(), Vec::<String>::new());
    let body = |job: Uuid| {
        String::from_utf8(double.body_of_job(&job.to_string()).unwrap().to_vec()).unwrap()
    };
    for (job, a, b) in [
        (nan, r#""nan""#, r#""-inf""#),
        (lone, r#""\ud800""#, r#""x\udc00\ud83d\ude00""#),
    ] {
        let body = body(job);
        for value in [a, b] {
            let filters = format!(r#""filters": {{"value": {value}}}"#);
            assert!(body.contains(&filters), "{filters} not in\n{body}");
        }
    }
}

/// `serve --workers 1` whose group starts per `auto_offset_reset` `reset` (aiokafka's values).
fn start_with_reset(topics: &Topics, double: &RuntimeDouble, reset: &str) -> ServiceProcess {
    let bootstrap = kafka_bootstrap().join(",");
    ServiceProcess::start_with(
        topics,
        &double.engine_url(),
        &["--workers", "1"],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &format!(
                r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{}", "auto_offset_reset": "{reset}"}}"#,
                topics.group
            ),
        )],
    )
}

/// hetida's default `auto_offset_reset` is `latest`: a group that never committed does not
/// execute what is already in the topic. Kafka's rule, kept, but said at startup, with what is
/// passed over and the option that changes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_group_at_latest_warns_of_the_requests_it_passes_over() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "latest", 1).await;
    let (_, requests) = keyed_requests(3);
    produce_requests(&client, &topics.requests, &requests).await;
    let service = start_with_reset(&topics, &double, "latest");
    service.wait_workers(1, WAIT);
    let log = service.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("not executed"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    for part in [
        "3 record(s)",
        &format!("{}/0 offsets 0..3", topics.requests),
        r#""auto_offset_reset": "earliest""#,
    ] {
        assert!(warning.contains(part), "{part:?} missing in {warning}");
    }
    assert_eq!(double.calls(), 0, "latest executes none of them");
}

/// aiokafka's `auto_offset_reset: none`: a partition without a committed offset is not
/// consumed (aiokafka raises `NoOffsetForPartitionError`), with an ERROR that names it and the
/// way out; a partition with one is consumed from there as usual.
#[tokio::test(flavor = "multi_thread")]
async fn auto_offset_reset_none_consumes_only_partitions_with_a_committed_offset() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "reset-none", 2).await;
    let (jobs, requests) = keyed_requests(16);
    let partition_of = |job: &Uuid| {
        hd_kafka_exec::kafka::producer::partition_for_key(job.to_string().as_bytes(), 2)
    };
    let (started, unstarted): (Vec<Uuid>, Vec<Uuid>) =
        jobs.iter().partition(|j| partition_of(j) == 0);
    assert!(
        !started.is_empty() && !unstarted.is_empty(),
        "the premise: requests in both partitions"
    );
    produce_requests(&client, &topics.requests, &requests).await;
    let mut coordinator = hd_kafka_exec::kafka::GroupCoordinator::new(
        kafka_bootstrap(),
        &topics.group,
        "hd-kafka-exec-test",
    );
    coordinator
        .commit(&topics.requests, &[(0, 0)])
        .await
        .unwrap();
    let service = start_with_reset(&topics, &double, "none");
    let answered = read_jobs(&client, &topics.responses, &started, WAIT).await;
    let answered: HashSet<String> = answered
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect();
    for job in &started {
        assert!(
            answered.contains(&job.to_string()),
            "partition 0's {job} is answered"
        );
    }
    let log = service.log_text();
    let error = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("no committed offset"))
        .unwrap_or_else(|| panic!("no ERROR in:\n{log}"));
    for part in [
        "partitions=[1]",
        r#"auto_offset_reset is "none""#,
        "--reset-offsets",
    ] {
        assert!(error.contains(part), "{part:?} missing in {error}");
    }
    for job in &unstarted {
        assert_eq!(
            double.calls_for_job(&job.to_string()),
            0,
            "partition 1 is not consumed"
        );
        assert!(!answered.contains(&job.to_string()));
    }
}

/// Hostile runtime answers through the whole service: each request gets one response (`ok`
/// where hetida's backend would produce one, otherwise a failure saying what was wrong), the
/// offsets commit past all of them, and the worker is never restarted.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_runtime_answers_each_get_one_response_and_commit() {
    let runtime = HostileRuntime::start(Act::Hang).await;
    let client = client().await;
    let topics = Topics::create(&client, "hostile", 1).await;
    let service = ServiceProcess::start(
        &topics,
        &runtime.engine_url(),
        &[
            "--workers",
            "1",
            // Long enough for the 10 MB answers on a busy machine, which are to arrive; the
            // hanging runtime's case waits it out once.
            "--runtime-timeout",
            "10",
            "--runtime-retry-budget",
            "1",
        ],
    );
    service.wait_workers(1, WAIT);
    let workers = service.workers();
    let ok = |outputs: &str| {
        Act::Answer {
        status: 200,
        body: format!(
            r#"{{"error":null,"output_results_by_output_name":{outputs},"traceback":null,"job_id":"{{JOB}}","measured_steps":{{}},"result":"ok"}}"#
        )
        .into_bytes(),
    }
    };
    let ten_mb = format!(r#"{{"sum": "{}"}}"#, "x".repeat(10 << 20));
    // (case, what the runtime does, Ok(text in the response) or Err((error type, text in its message)))
    type Expected = Result<&'static str, (&'static str, &'static str)>;
    let cases: Vec<(&str, Act, Expected)> = vec![
        (
            "lone high surrogate",
            ok(r#"{"sum": "a\ud800b"}"#),
            Ok(r#""sum": "a\ud800b""#),
        ),
        (
            "lone low surrogate",
            ok(r#"{"sum": "\udfff"}"#),
            Ok(r#""sum": "\udfff""#),
        ),
        (
            "surrogate in a key",
            ok(r#"{"sum": {"\udc00k": 1}}"#),
            Ok(r#"{"\udc00k": 1}"#),
        ),
        (
            "NaN and infinities",
            ok(r#"{"sum": [NaN, Infinity, -Infinity]}"#),
            Ok("[NaN, Infinity, -Infinity]"),
        ),
        (
            "a 10 MB output",
            ok(&ten_mb),
            Err(("MessageSizeTooLargeError", "max_request_size")),
        ),
        (
            "invalid UTF-8",
            Act::Answer {
                status: 200,
                body: b"{\"result\": \"ok\", \"x\": \"\xff\"}".to_vec(),
            },
            Err(("TrafoExecutionResultValidationError", "UTF-8")),
        ),
        (
            "truncated JSON",
            Act::Answer {
                status: 200,
                body: br#"{"error":null,"output_results_by"#.to_vec(),
            },
            Err(("TrafoExecutionResultValidationError", "not JSON")),
        ),
        (
            "a reset in the middle of the body",
            Act::ResetMidBody {
                status: 200,
                announced: 1000,
                body: br#"{"error":null,"#.to_vec(),
            },
            Err(("TrafoExecutionRuntimeConnectionError", "broke")),
        ),
        (
            "no answer within --runtime-timeout",
            Act::Hang,
            Err((
                "TrafoExecutionRuntimeConnectionError",
                "call timeout of 10s",
            )),
        ),
    ];
    for (case, act, expected) in &cases {
        runtime.set_act(act.clone());
        let job = Uuid::new_v4();
        produce_requests(&client, &topics.requests, &[(None, Some(add_request(job)))]).await;
        let records = read_jobs(&client, &topics.responses, &[job], WAIT).await;
        let mine: Vec<&[u8]> = records
            .iter()
            .map(|(_, r)| r.record.value.as_deref().unwrap())
            .filter(|v| job_of(v) == job.to_string())
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{case}: one response; log:\n{}",
            service.log_text()
        );
        let text = std::str::from_utf8(mine[0]).unwrap();
        match expected {
            Ok(part) => {
                assert!(text.contains(r#""result": "ok""#), "{case}: {text}");
                assert!(text.contains(part), "{case}: {part} missing in {text}");
            }
            Err((kind, part)) => {
                let v: Value = serde_json::from_str(text).unwrap();
                assert_eq!(v["result"], "failure", "{case}: {text}");
                assert_eq!(v["error"]["type"], *kind, "{case}: {text}");
                let message = v["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(part),
                    "{case}: {part:?} missing in {message}"
                );
            }
        }
    }
    committed_to(&topics, cases.len() as i64).await;
    assert_eq!(service.workers(), workers, "the worker was never restarted");
}

/// Waits until the group's committed offset of the request topic's partition 0 is `offset`.
async fn committed_to(topics: &Topics, offset: i64) {
    let coordinator = tokio::sync::Mutex::new(hd_kafka_exec::kafka::GroupCoordinator::new(
        kafka_bootstrap(),
        &topics.group,
        "test",
    ));
    eventually_async(WAIT, format!("offset {offset} committed"), || async {
        let committed = coordinator.lock().await.fetch(&topics.requests, &[0]).await;
        match committed.unwrap().get(&0).copied().flatten() {
            Some(at) if at == offset => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// The one response to `job`, as JSON.
async fn response_of(
    client: &std::sync::Arc<rskafka::client::Client>,
    topic: &str,
    job: Uuid,
) -> Value {
    let responses = read_jobs(client, topic, &[job], WAIT).await;
    let mine: Vec<Value> = responses
        .iter()
        .map(|(_, r)| serde_json::from_slice::<Value>(r.record.value.as_ref().unwrap()).unwrap())
        .filter(|v| v["job_id"] == job.to_string())
        .collect();
    assert_eq!(mine.len(), 1, "one response for {job}");
    mine.into_iter().next().unwrap()
}

/// Answers as large as hetida's producer delivers get through: 990 kB with default options, and
/// 3 MB (over 1 MiB even after gzip) with gzip, `max_request_size` 5 MiB and the response
/// topic's `max.message.bytes` raised. A 6 MB answer with default options is answered with a
/// small failure response that names its size, the limit and what raises it; its offset commits.
#[tokio::test(flavor = "multi_thread")]
async fn responses_as_large_as_hetida_delivers_get_through_and_larger_ones_say_why_not() {
    let double = RuntimeDouble::start().await;
    let client = client().await;

    let topics = Topics::create(&client, "large", 1).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    service.wait_workers(1, WAIT);
    assert_large_answer_delivered(&client, &double, &topics, &service, 990_000).await;

    double.set_mode(Mode::LargeResult(6_000_000));
    let huge = Uuid::new_v4();
    produce_requests(
        &client,
        &topics.requests,
        &[(None, Some(add_request(huge)))],
    )
    .await;
    let v = response_of(&client, &topics.responses, huge).await;
    assert_eq!(v["result"], "failure", "{v}");
    assert_eq!(v["error"]["type"], "MessageSizeTooLargeError", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    for part in [
        "bytes",
        "1048576",
        "max_request_size",
        "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
    ] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    let size: usize = message
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
                .filter(|n| *n > 6_000_000)
        })
        .unwrap_or_else(|| panic!("no size over 6 MB in {message}"));
    assert!(size < 6_100_000, "{message}");
    // Done: the failure response is in Kafka, so the request's offset commits.
    committed_to(&topics, 2).await;
    drop(service);

    let raised = Topics::named("large-gzip");
    support::kafka::create_topic(&client, &raised.requests, 1).await;
    support::kafka::create_topic(&client, &raised.dead_letters, 1).await;
    support::kafka::scripts_kafka(
        "topic",
        &support::kafka::kafka_dir(),
        &[&raised.responses, "1", "max.message.bytes=5242880"],
    );
    let bootstrap = kafka_bootstrap().join(",");
    let service = ServiceProcess::start_with(
        &raised,
        &double.engine_url(),
        &["--workers", "1"],
        &[(
            "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
            &format!(
                r#"{{"bootstrap_servers": "{bootstrap}", "compression_type": "gzip", "max_request_size": 5242880}}"#
            ),
        )],
    );
    service.wait_workers(1, WAIT);
    assert_large_answer_delivered(&client, &double, &raised, &service, 3_000_000).await;
}

/// A request whose runtime answer has an output of `bytes` gets an `ok` response with it whole.
async fn assert_large_answer_delivered(
    client: &std::sync::Arc<rskafka::client::Client>,
    double: &RuntimeDouble,
    topics: &Topics,
    service: &ServiceProcess,
    bytes: usize,
) {
    double.set_mode(Mode::LargeResult(bytes));
    let job = Uuid::new_v4();
    produce_requests(client, &topics.requests, &[(None, Some(add_request(job)))]).await;
    let v = response_of(client, &topics.responses, job).await;
    assert_eq!(v["result"], "ok", "{}", service.log_text());
    let large = v["output_results_by_output_name"]["large"]
        .as_str()
        .unwrap();
    assert_eq!(large.len(), bytes);
}

/// Kafka nodes go away while requests are queued and in flight, and come back on the same
/// address with the same data. Runs on a cluster of the test's own (`brokers` nodes), never the
/// shared one; `node` picks the node to restart (all when `None`). With `during`, the second
/// wave of requests is produced while the node is down (the rest of the cluster must be able to
/// take them); otherwise after it is back. Every request must be answered, by the same workers.
async fn outage_loses_no_request(brokers: u32, node: Option<u32>, during: bool) {
    let cluster = OwnCluster::start(brokers);
    let double = RuntimeDouble::start().await;
    // 600 requests at 16 in flight and 50 ms each take about 2 s: Kafka loses its node while
    // most are queued or in flight.
    double.set_latency(Duration::from_millis(50));
    let client = cluster.client().await;
    let topics = Topics::create_replicated(&client, "outage", 8, brokers as i16).await;
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--max-in-flight", "8"],
        &[],
    );
    service.wait_workers(2, WAIT);
    let workers = service.workers();

    let (before, first_wave) = keyed_requests(600);
    produce_requests(&client, &topics.requests, &first_wave).await;
    let early = read_all(&client, &topics.responses, 30, WAIT).await;
    assert!(early.len() >= 30, "log:\n{}", service.log_text());
    assert!(
        early.len() < before.len(),
        "all answered before the outage: the test proves nothing"
    );

    let leaders_before = leaders(&cluster.bootstrap, &topics.requests);
    if let Some(n) = node {
        assert!(
            leaders_before.values().any(|l| *l == i64::from(n)),
            "node {n} leads no request partition: the test proves nothing ({leaders_before:?})"
        );
    }
    let down_node = node.unwrap_or(1);
    let address = cluster.node_address(down_node);
    let restart = tokio::task::spawn_blocking(move || {
        cluster.restart_nodes(node, Duration::from_secs(5));
        cluster
    });
    let (after, second_wave) = keyed_requests(100);
    let node_is_up = || std::net::TcpStream::connect(&address).is_ok();
    let cluster = if during {
        eventually(
            WAIT,
            format!("node {down_node} down"),
            || match node_is_up() {
                true => Err("it accepts connections"),
                false => Ok(()),
            },
        );
        produce_requests(&client, &topics.requests, &second_wave).await;
        assert!(
            !node_is_up(),
            "node {down_node} came back before the second wave was in: the test proves nothing"
        );
        restart.await.unwrap()
    } else {
        let cluster = restart.await.unwrap();
        let client = cluster.client().await;
        produce_requests(&client, &topics.requests, &second_wave).await;
        cluster
    };

    let client = cluster.client().await;
    let all: Vec<Uuid> = before.iter().chain(&after).copied().collect();
    let responses = read_jobs(&client, &topics.responses, &all, WAIT).await;
    let answered: HashSet<String> = responses
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect();
    let lost = all
        .iter()
        .filter(|j| !answered.contains(&j.to_string()))
        .count();
    assert!(
        lost == 0,
        "{lost} of {} requests lost; log:\n{}",
        all.len(),
        service.log_text()
    );
    let log = service.log_text();
    let troubles = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    let leaders_after = leaders(&cluster.bootstrap, &topics.requests);
    eprintln!(
        "{} answered before the outage; {} responses for {} requests in all; the workers \
         logged {troubles} warnings or errors; request partition leaders {leaders_before:?} \
         before, {leaders_after:?} after",
        early.len(),
        responses.len(),
        all.len(),
    );
    // The premise: the outage reached the workers. Restarting the only broker, they lose their
    // connections; a broker of three shuts down in a controlled way and hands its leaderships
    // over first (its clients are told so, no error), which shows in the leaders.
    match node {
        None => assert!(troubles > 0, "the outage went unnoticed; log:\n{log}"),
        Some(n) => assert!(
            leaders_after.values().all(|l| *l != i64::from(n)),
            "node {n} still leads: nothing moved ({leaders_after:?})"
        ),
    }
    assert_eq!(service.workers(), workers, "a worker died of the outage");
    for (_, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["result"], "ok", "{v}");
    }
}

/// Leader node of each partition of `topic`, as Kafka's metadata (read by kcat) says.
fn leaders(bootstrap: &str, topic: &str) -> std::collections::BTreeMap<i64, i64> {
    let out = kcat()
        .args(["-L", "-J", "-b", bootstrap, "-t", topic])
        .output()
        .unwrap();
    assert!(out.status.success(), "kcat -L: {out:?}");
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["topics"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["leader"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The one broker restarts (5 s down) under load; the second wave comes after it is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_under_load_loses_no_request() {
    outage_loses_no_request(1, None, false).await;
}

/// One of three brokers restarts under load (topics with three replicas): leaders and the group
/// coordinator move, and the second wave is produced while the node is down.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_broker_of_three_moves_leaders_and_loses_no_request() {
    outage_loses_no_request(3, Some(1), true).await;
}
