//! Issue 28's rows: one request partition, a share group (`"group_protocol": "share"`) against
//! a consumer group (the classic protocol), side by side in one run, each `serve` started
//! afresh on a topic and group of its own. Executions go to the project's runtime double
//! (strict mode, as in the tests, so that it can hold the slow request).
//!
//! - Throughput: `n` requests produced at once, `--max-in-flight 1`, the runtime double taking
//!   50 ms per execution, `--workers` 1, 2 and 4. A consumer group gives the one partition to one
//!   worker; a share group's workers all take from it.
//! - Behind a slow request: one request held 5 s by the runtime double and 50 fast ones behind
//!   it in the same partition, `--workers 2 --max-in-flight 1`: how long the fast ones take
//!   (their response's timestamp against the moment they were produced).

use std::time::Duration;

use chrono::Utc;
use rskafka::client::ClientBuilder;

use crate::support::runtime_double::RuntimeDouble;
use crate::support::service::{
    ServiceProcess, Topics, job_of, keyed_requests, produce_requests, read_jobs,
};

/// The scenario names, as `HD_BENCH_ONLY` selects them.
pub const THROUGHPUT: &str = "share group against consumer group, one partition, runtime +50 ms";
pub const SLOW: &str = "share group against consumer group, 50 fast requests behind a slow one";

const WAIT: Duration = Duration::from_secs(180);

/// One row of the report.
#[derive(Debug)]
pub struct Row {
    pub scenario: &'static str,
    pub protocol: &'static str,
    pub workers: usize,
    pub requests: usize,
    /// Throughput rows: answered per second, produce to last response.
    pub per_second: Option<f64>,
    /// Behind-a-slow-one rows: the fast requests' latencies in ms (p50, p99, max).
    pub fast_ms: Option<(f64, f64, f64)>,
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Consumer,
    Share,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Consumer => "consumer group (classic)",
            Protocol::Share => "share group",
        }
    }

    fn options(self, bootstrap: &str, group: &str) -> String {
        let protocol = match self {
            Protocol::Consumer => "",
            Protocol::Share => r#", "group_protocol": "share""#,
        };
        format!(
            r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest", "group_instance_id": null{protocol}}}"#
        )
    }
}

/// Starts `serve` and waits until each worker said it consumes, and a moment for the group
/// to settle.
async fn start(
    bootstrap: &str,
    topics: &Topics,
    double: &RuntimeDouble,
    protocol: Protocol,
    workers: usize,
) -> ServiceProcess {
    let options = protocol.options(bootstrap, &topics.group);
    let service = ServiceProcess::start_on(
        bootstrap,
        topics,
        &double.engine_url(),
        &["--workers", &workers.to_string(), "--max-in-flight", "1"],
        &[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &options)],
    );
    let started = std::time::Instant::now();
    while service.log_text().matches("worker consuming").count() < workers {
        assert!(
            started.elapsed() < WAIT,
            "serve did not come up; log:\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    service
}

/// Runs the rows; `full` under `--bench`, else one small pass to prove the harness.
pub async fn run(bootstrap: &str, full: bool, only: impl Fn(&str) -> bool) -> Vec<Row> {
    let client = std::sync::Arc::new(
        ClientBuilder::new(vec![bootstrap.to_owned()])
            .build()
            .await
            .unwrap(),
    );
    let mut rows = Vec::new();
    let protocols = [Protocol::Consumer, Protocol::Share];
    if only(THROUGHPUT) {
        let (workers, n): (&[usize], usize) = if full { (&[1, 2, 4], 200) } else { (&[2], 20) };
        for &w in workers {
            for protocol in protocols {
                let double = RuntimeDouble::start().await;
                double.set_latency(Duration::from_millis(50));
                let topics = Topics::create(&client, "bench-share-tp", 1).await;
                let _service = start(bootstrap, &topics, &double, protocol, w).await;
                let (jobs, records) = keyed_requests(n);
                let t0 = Utc::now();
                produce_requests(&client, &topics.requests, &records).await;
                let answered = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
                let last = answered
                    .iter()
                    .map(|(_, r)| r.record.timestamp)
                    .max()
                    .unwrap();
                let seconds = (last - t0).num_milliseconds() as f64 / 1000.0;
                rows.push(Row {
                    scenario: THROUGHPUT,
                    protocol: protocol.name(),
                    workers: w,
                    requests: n,
                    per_second: Some(n as f64 / seconds),
                    fast_ms: None,
                });
            }
        }
    }
    if only(SLOW) {
        let (hold, fast) = if full {
            (Duration::from_secs(5), 50)
        } else {
            (Duration::from_secs(1), 5)
        };
        for protocol in protocols {
            let double = std::sync::Arc::new(RuntimeDouble::start().await);
            let topics = Topics::create(&client, "bench-share-slow", 1).await;
            let _service = start(bootstrap, &topics, &double, protocol, 2).await;
            let (jobs, records) = keyed_requests(fast + 1);
            let slow = jobs[0].to_string();
            double.hold_jobs([slow.as_str()]);
            let t0 = Utc::now();
            produce_requests(&client, &topics.requests, &records).await;
            let releaser = {
                let double = double.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    double.stop_holding();
                })
            };
            let answered = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
            releaser.await.unwrap();
            let mut ms: Vec<f64> = answered
                .iter()
                .filter(|(_, r)| job_of(r.record.value.as_ref().unwrap()) != slow)
                .map(|(_, r)| (r.record.timestamp - t0).num_microseconds().unwrap() as f64 / 1e3)
                .collect();
            ms.sort_by(f64::total_cmp);
            let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
            rows.push(Row {
                scenario: SLOW,
                protocol: protocol.name(),
                workers: 2,
                requests: fast + 1,
                per_second: None,
                fast_ms: Some((at(0.5), at(0.99), at(1.0))),
            });
        }
    }
    rows
}

/// The rows as Markdown tables.
pub fn print(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!("\n### {THROUGHPUT}\n");
    println!("| protocol | --workers | requests | answered/s |");
    println!("|---|---|---|---|");
    for r in rows.iter().filter(|r| r.scenario == THROUGHPUT) {
        println!(
            "| {} | {} | {} | {:.1} |",
            r.protocol,
            r.workers,
            r.requests,
            r.per_second.unwrap_or_default()
        );
    }
    println!("\n### {SLOW} (held 5 s; --workers 2 --max-in-flight 1)\n");
    println!("| protocol | fast requests | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for r in rows.iter().filter(|r| r.scenario == SLOW) {
        let (p50, p99, max) = r.fast_ms.unwrap_or_default();
        println!(
            "| {} | {} | {p50:.0} | {p99:.0} | {max:.0} |",
            r.protocol,
            r.requests - 1
        );
    }
}
