//! The supervisor as users run it: `serve --workers N` with real processes, real Kafka and the
//! runtime double (standing in for hetida's runtime service).
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::kafka::client;
use support::runtime_double::RuntimeDouble;
use support::service::{
    ServiceProcess, Topics, add_request, job_of, keyed_requests, produce_requests, read_jobs,
};
use support::wait::{Shown, eventually, eventually_async, executions};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

fn answered(responses: &[(i32, rskafka::record::RecordAndOffset)]) -> BTreeSet<String> {
    responses
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect()
}

fn assert_all_answered(
    jobs: &[Uuid],
    responses: &[(i32, rskafka::record::RecordAndOffset)],
    log: &str,
) {
    let seen = answered(responses);
    let lost = jobs
        .iter()
        .filter(|j| !seen.contains(&j.to_string()))
        .count();
    assert_eq!(lost, 0, "{lost} request(s) without response; log:\n{log}");
}

/// The partitions each "worker consuming" line of the log claims, per generation.
fn ownership(log: &str) -> Vec<(u64, usize, Vec<i32>)> {
    log.lines()
        .filter(|l| l.contains("worker consuming"))
        .map(|l| {
            let field = |name: &str| {
                let start = l.find(&format!("{name}=")).unwrap() + name.len() + 1;
                l[start..]
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap()
                    .to_owned()
            };
            let start = l.find("partitions=[").unwrap() + "partitions=[".len();
            let parts: Vec<i32> = l[start..]
                .split(']')
                .next()
                .unwrap()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().parse().unwrap())
                .collect();
            (
                field("generation").parse().unwrap(),
                field("worker").parse().unwrap(),
                parts,
            )
        })
        .collect()
}

/// Whether a worker the supervisor started in its `generation` (after a HUP, say) consumes.
/// The group's generation in the "worker consuming" line is another count: a static member's
/// replacement keeps it.
fn replacement_consumes(log: &str, generation: u64) -> bool {
    let pids: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("worker started").map(|(_, rest)| rest))
        .filter(|rest| rest.contains(&format!(" generation={generation}")))
        .filter_map(|rest| rest.split(" pid=").nth(1)?.split(' ').next())
        .collect();
    log.lines().any(|l| {
        l.contains("worker consuming") && pids.iter().any(|p| l.contains(&format!(" pid={p} ")))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_split_eight_partitions_and_answer_a_thousand_requests() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "sup3", 8).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "3"]);
    service.wait_workers(3, WAIT);
    // The group's latest generation, once all three consume in it: the first worker may have
    // consumed alone in an earlier one before the others joined.
    let owners = eventually(WAIT, "a generation with all three workers", || {
        let log = service.log_text();
        let owners = ownership(&log);
        let latest = owners.iter().map(|(g, _, _)| *g).max().unwrap_or(0);
        let current: Vec<_> = owners
            .into_iter()
            .filter(|(g, _, _)| *g == latest)
            .collect();
        if current.len() == 3 {
            Ok(current)
        } else {
            Err(Shown(log))
        }
    });
    let mut all: Vec<i32> = owners.iter().flat_map(|(_, _, p)| p.clone()).collect();
    all.sort();
    assert_eq!(
        all,
        (0..8).collect::<Vec<_>>(),
        "every partition exactly one owner: {owners:?}"
    );
    let (jobs, records) = keyed_requests(1000);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_all_answered(&jobs, &responses, &service.log_text());
    assert_eq!(responses.len(), 1000, "no repeats without failures");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_is_restarted_and_nothing_is_lost() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(3));
    let client = client().await;
    let topics = Topics::create(&client, "supkill", 4).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    service.wait_workers(2, WAIT);
    let before = service.workers();
    let (jobs, records) = keyed_requests(1000);
    produce_requests(&client, &topics.requests, &records).await;
    let victim = before[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    eventually(
        Duration::from_secs(10),
        "the killed worker restarted",
        || {
            let now = service.workers();
            if now.len() == 2 && !now.contains(&victim) {
                Ok(())
            } else {
                Err(Shown(format!(
                    "workers {now:?}; log:\n{}",
                    service.log_text()
                )))
            }
        },
    );
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_all_answered(&jobs, &responses, &service.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn term_under_load_stops_within_the_grace_period_and_a_new_serve_repeats_nothing() {
    let double = RuntimeDouble::start().await;
    // 2 workers x 16 in flight at 200 ms each: about 160 requests a second, so 800 take 5 s and
    // most are still queued or in flight when TERM comes.
    double.set_latency(Duration::from_millis(200));
    let client = client().await;
    let topics = Topics::create(&client, "supterm", 4).await;
    let mut service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--graceful-timeout", "20"],
    );
    service.wait_workers(2, WAIT);
    let (jobs, records) = keyed_requests(800);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 32, WAIT).await;
    let stop = Instant::now();
    service.signal(Signal::SIGTERM);
    let at_term = double.calls();
    assert!(
        at_term < 800,
        "all {at_term} executed before TERM: the test proves nothing"
    );
    let status = service
        .wait_exit(Duration::from_secs(25))
        .expect("exits within the grace period");
    assert!(status.success(), "log:\n{}", service.log_text());
    assert!(stop.elapsed() < Duration::from_secs(21));
    assert!(service.workers().is_empty());

    let second = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    second.wait_workers(2, WAIT);
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_all_answered(&jobs, &responses, &second.log_text());
    for j in &jobs {
        assert_eq!(double.calls_for_job(&j.to_string()), 1, "job {j} ran once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ttin_and_ttou_by_index_stop_all_workers_so_no_partition_has_two_owners() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(2));
    let client = client().await;
    let topics = Topics::create(&client, "supttin", 6).await;
    let service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--partitioning", "index"],
    );
    service.wait_workers(2, WAIT);
    let (jobs, records) = keyed_requests(600);
    produce_requests(&client, &topics.requests, &records).await;
    service.signal(Signal::SIGTTIN);
    service.wait_workers(3, WAIT);
    let (jobs2, records2) = keyed_requests(300);
    produce_requests(&client, &topics.requests, &records2).await;
    service.signal(Signal::SIGTTOU);
    eventually(
        WAIT,
        "two workers consuming in generation 3 after TTOU",
        || {
            let log = service.log_text();
            let third = ownership(&log).iter().filter(|(g, _, _)| *g == 3).count();
            if service.workers().len() == 2 && third == 2 {
                Ok(())
            } else {
                Err(Shown(log))
            }
        },
    );
    let all_jobs: Vec<Uuid> = jobs.iter().chain(&jobs2).copied().collect();
    let responses = read_jobs(&client, &topics.responses, &all_jobs, WAIT).await;
    assert_all_answered(&all_jobs, &responses, &service.log_text());

    // Within each generation every partition has one owner, and a generation's workers consume
    // only after every worker of the one before has stopped.
    let log = service.log_text();
    for generation in 1..=3u64 {
        let mut parts: Vec<i32> = ownership(&log)
            .into_iter()
            .filter(|(g, _, _)| *g == generation)
            .flat_map(|(_, _, p)| p)
            .collect();
        parts.sort();
        assert_eq!(parts, (0..6).collect::<Vec<_>>(), "generation {generation}");
    }
    let lines: Vec<&str> = log.lines().collect();
    for generation in 2..=3u64 {
        let first_new = lines
            .iter()
            .position(|l| {
                l.contains("worker consuming") && l.contains(&format!("generation={generation}"))
            })
            .unwrap();
        let last_old_stop = lines
            .iter()
            .rposition(|l| {
                l.contains("worker stopped")
                    && l.contains(&format!("generation={}", generation - 1))
            })
            .unwrap();
        assert!(
            last_old_stop < first_new,
            "generation {generation} started before the old one stopped"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hup_reloads_the_store_and_the_new_revision_is_served() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "suphup", 2).await;
    let store = tempfile::tempdir().unwrap();
    let project =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("transformations/components");
    let original = std::fs::read_dir(&project)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&original).unwrap();
    std::fs::write(store.path().join("multiply-1.json"), &text).unwrap();
    let store_arg = format!("dir:{}", store.path().display());
    let service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "1", "--store", &store_arg, "--latest-ttl", "0"],
    );
    service.wait_workers(1, WAIT);

    let mut revision: serde_json::Value = serde_json::from_str(&text).unwrap();
    let group = revision["revision_group_id"].as_str().unwrap().to_owned();
    let v1 = revision["id"].as_str().unwrap().to_owned();
    let latest = |job: Uuid| {
        format!(r#"{{"revision_group_id": "{group}", "wiring": {{"input_wirings": [{{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {{"value": "2.0"}}}}]}}, "job_id": "{job}"}}"#).into_bytes()
    };
    let first = Uuid::new_v4();
    produce_requests(&client, &topics.requests, &[(None, Some(latest(first)))]).await;
    read_jobs(&client, &topics.responses, &[first], WAIT).await;
    assert_eq!(
        double.trafo_of_job(&first.to_string()).as_deref(),
        Some(v1.as_str())
    );

    let v2 = Uuid::new_v4().to_string();
    revision["id"] = v2.clone().into();
    revision["version_tag"] = "2.0.0".into();
    revision["released_timestamp"] = "2026-11-20T00:00:00+00:00".into();
    std::fs::write(store.path().join("multiply-2.json"), revision.to_string()).unwrap();
    service.signal(Signal::SIGHUP);
    eventually(WAIT, "a worker of the reload consuming", || {
        let log = service.log_text();
        if replacement_consumes(&log, 2) {
            Ok(())
        } else {
            Err(Shown(log))
        }
    });
    let second = Uuid::new_v4();
    produce_requests(&client, &topics.requests, &[(None, Some(latest(second)))]).await;
    read_jobs(&client, &topics.responses, &[second], WAIT).await;
    assert_eq!(
        double.trafo_of_job(&second.to_string()).as_deref(),
        Some(v2.as_str())
    );
}

/// HUP replaces the workers slot by slot, and the supervisor's loop keeps working meanwhile:
/// with every old worker draining slow executions, the replace takes long, and a TERM in the
/// middle of it stops the whole service within the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn term_during_a_rolling_replace_stops_within_the_grace_period() {
    let double = RuntimeDouble::start().await;
    // Each old worker has executions of 3 s in flight to finish before it stops, so replacing
    // four one after the other takes about 12 s.
    double.set_latency(Duration::from_secs(3));
    let client = client().await;
    let topics = Topics::create(&client, "suproll", 4).await;
    let mut service = ServiceProcess::start(
        &topics,
        &double.engine_url(),
        &["--workers", "4", "--graceful-timeout", "6"],
    );
    service.wait_workers(4, WAIT);
    let before = service.workers();
    let (_, records) = keyed_requests(400);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 40, WAIT).await;
    service.signal(Signal::SIGHUP);
    // Wait until the first slot is replaced (one old pid gone, a new one there), then TERM
    // while the others are still old.
    eventually(
        WAIT,
        "the first slot replaced, two or more still old",
        || {
            let now = service.workers();
            let replaced = now.iter().filter(|p| !before.contains(p)).count();
            let old = now.iter().filter(|p| before.contains(p)).count();
            if replaced >= 1 && old >= 2 {
                Ok(())
            } else {
                Err(Shown(format!(
                    "{before:?} -> {now:?}; log:\n{}",
                    service.log_text()
                )))
            }
        },
    );
    let stop = Instant::now();
    service.signal(Signal::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(20))
        .expect("serve did not stop during the rolling replace");
    let took = stop.elapsed();
    assert!(status.success(), "log:\n{}", service.log_text());
    assert!(
        took < Duration::from_secs(8),
        "stopping took {took:?}, the grace period is 6 s; log:\n{}",
        service.log_text()
    );
    assert!(service.workers().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_stop_by_themselves_when_the_supervisor_is_killed() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "suporphan", 2).await;
    let mut service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    service.wait_workers(2, WAIT);
    let workers = service.workers();
    service.signal(Signal::SIGKILL);
    service.wait_exit(WAIT).unwrap();
    eventually(Duration::from_secs(20), "the orphaned workers gone", || {
        let alive: Vec<&i32> = workers
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() { Ok(()) } else { Err(alive) }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_cannot_boot_makes_serve_fail_with_its_error() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let mut topics = Topics::create(&client, "supboot", 1).await;
    topics.requests = "no-such-request-topic".into();
    let mut service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    let status = service.wait_exit(WAIT).expect("serve gives up");
    assert!(!status.success());
    let log = service.log_text();
    assert!(
        log.contains("request topic no-such-request-topic does not exist"),
        "{log}"
    );
    assert!(log.contains("failed to boot 3 times"), "{log}");
}

/// Partitions added to the request topic are picked up (within a minute) by the worker that owns
/// them, from their beginning.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_added_while_running_are_consumed() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "supgrow", 2).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    service.wait_workers(2, WAIT);
    support::kafka::scripts_kafka(
        "partitions",
        &support::kafka::kafka_dir(),
        &[&topics.requests, "4"],
    );
    // Requests on the new partitions 2 and 3 (keys chosen by the partitioner for 4 partitions).
    let mut jobs = Vec::new();
    let mut records = Vec::new();
    while jobs.len() < 20 {
        let j = Uuid::new_v4();
        let p = hd_kafka_exec::kafka::producer::partition_for_key(j.to_string().as_bytes(), 4);
        if p >= 2 {
            jobs.push(j);
            records.push((Some(j.to_string().into_bytes()), Some(add_request(j))));
        }
    }
    eventually_async(Duration::from_secs(60), "the topic grown to 4", || async {
        let listed = client.list_topics().await.unwrap();
        let topic = listed.iter().find(|t| t.name == topics.requests);
        match topic.map(|t| t.partitions.len()) {
            Some(4) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, Duration::from_secs(90)).await;
    assert_all_answered(&jobs, &responses, &service.log_text());
    assert!(
        service
            .log_text()
            .contains("request topic has more partitions")
    );
}

/// One GET: the status and body, `None` while nothing listens.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    support::prometheus::http_get(&addr.to_string(), path)
        .ok()
        .map(|r| (r.status, r.text()))
}

/// The value of the sample `name` (labels included, as written) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The metrics process is the supervisor's like a worker: killed, it is forked again, and as the
/// counts live in the supervisor's memory, the new one shows what the old one did.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_metrics_process_is_restarted_and_the_counts_are_kept() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "supmetrics", 2).await;
    let service = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "2"]);
    service.wait_workers(2, WAIT);
    let addr = service.metrics_addr(WAIT);
    let (jobs, records) = keyed_requests(50);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_all_answered(&jobs, &responses, &service.log_text());
    let ok = r#"hd_kafka_exec_requests_total{result="ok"}"#;
    let count = || {
        http_get(addr, "/metrics")
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, body)| sample(&body, ok))
    };
    // Acknowledged before they were counted: the count catches up within moments.
    eventually(WAIT, "the ok count at 50", || match count() {
        Some(50.0) => Ok(()),
        other => Err(other),
    });

    let old = service.metrics_process().expect("a metrics process runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let new = eventually(WAIT, "a new metrics process", || {
        match service.metrics_process().filter(|p| *p != old) {
            Some(new) => Ok(new),
            None => Err(Shown(service.log_text())),
        }
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{old}")).exists(),
        "the killed metrics process is still there"
    );
    let after = eventually(
        WAIT,
        format!("the new metrics process ({new}) answering"),
        || count().ok_or("no count"),
    );
    assert_eq!(
        after, 50.0,
        "the counts did not survive the metrics process"
    );
    assert_eq!(service.workers().len(), 2, "the workers were not disturbed");
    assert_eq!(
        http_get(addr, "/readyz").map(|(s, _)| s),
        Some(200),
        "the workers consume on"
    );
}
