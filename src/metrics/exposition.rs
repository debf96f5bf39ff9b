//! The board (and the group's lag) in Prometheus' OpenMetrics text, through the
//! prometheus-client crate: a collector that encodes one reading per scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::board::{
    BYTE_BUCKETS, DURATION_BUCKETS, ERROR_TYPES, HistogramTotals, Produced, Reading, Totals,
    WorkerState,
};
use super::lag::PartitionLag;
use crate::supervisor::ExitCause;

/// Every metric's name starts with this (`hd_kafka_exec_requests_total`, ...).
pub const PREFIX: &str = "hd_kafka_exec";

/// The features this binary was built with, for `build_info`.
pub fn features() -> String {
    let mut on = Vec::new();
    if cfg!(feature = "tls") {
        on.push("tls");
    }
    if cfg!(feature = "lz4") {
        on.push("lz4");
    }
    if cfg!(feature = "zstd") {
        on.push("zstd");
    }
    if cfg!(feature = "test-hooks") {
        on.push("test-hooks");
    }
    on.join(",")
}

/// What one scrape shows.
#[derive(Debug)]
pub struct Scrape {
    /// The board.
    pub reading: Reading,
    /// The group's position per partition of `topic`; `None` when it could not be read.
    pub lag: Option<(String, Vec<PartitionLag>)>,
}

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (what Prometheus asks for first).
    OpenMetrics,
    /// Prometheus' classic text format 0.0.4 (curl, promtool, older scrapers).
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics only when named, as Prometheus'
    /// own client libraries decide.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The scrape as text in `format`.
pub fn encode(scrape: Scrape, format: Format) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
    }
    .expect("writing to a String cannot fail");
    out
}

/// One sample of a counter or gauge.
fn counter(e: &mut MetricEncoder<'_>, v: u64) -> std::fmt::Result {
    e.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(e: &mut MetricEncoder<'_>, v: i64) -> std::fmt::Result {
    e.encode_gauge(&v)
}

/// A histogram from its per-bucket counts (the encoder makes them cumulative); `scale` turns
/// the stored integer sum into the base unit.
fn histogram(
    e: &mut MetricEncoder<'_>,
    h: &HistogramTotals,
    bounds: &[f64],
    scale: f64,
) -> std::fmt::Result {
    let mut buckets: Vec<(f64, u64)> = bounds
        .iter()
        .copied()
        .zip(h.buckets.iter().copied())
        .collect();
    let bounded: u64 = h.buckets.iter().sum();
    // A bucket is added before the count (board.rs): never show fewer in all than in the
    // buckets, which Prometheus would take for a broken histogram.
    let count = h.count.max(bounded);
    buckets.push((f64::INFINITY, count - bounded));
    e.encode_histogram::<NoLabelSet>(h.sum_units as f64 * scale, count, &buckets, None)
}

impl Collector for Scrape {
    /// Family by family, in the order scrapes have always shown them: the requests, what else
    /// happened, the gauges of now, the lag, the build.
    fn encode(&self, mut d: DescriptorEncoder<'_>) -> std::fmt::Result {
        let r = &self.reading;
        requests(&mut d, &r.totals)?;
        events(&mut d, r)?;
        gauges(&mut d, r)?;
        if let Some((topic, partitions)) = &self.lag {
            lag(&mut d, topic, partitions)?;
        }
        build_info(&mut d)
    }
}

/// The requests answered, by result, and the histograms of their durations and sizes.
fn requests(d: &mut DescriptorEncoder<'_>, t: &Totals) -> std::fmt::Result {
    {
        let mut e = d.encode_descriptor(
            "requests",
            "Requests answered: responses acknowledged by Kafka, by result and error type",
            None,
            MetricType::Counter,
        )?;
        counter(&mut e.encode_family(&[("result", "ok")])?, t.ok)?;
        for (error_type, n) in ERROR_TYPES.iter().zip(t.failures) {
            let labels = [("result", "failure"), ("error_type", *error_type)];
            counter(&mut e.encode_family(&labels)?, n)?;
        }
    }
    let durations = [
        (
            "request_duration",
            "From the request record fetched to its response acknowledged by Kafka",
            &t.request_duration,
        ),
        (
            "runtime_call_duration",
            "The runtime call (POST /runtime) alone, retries included",
            &t.runtime_duration,
        ),
    ];
    for (name, help, h) in durations {
        let mut e = d.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        histogram(&mut e, h, &DURATION_BUCKETS, 1e-9)?;
    }
    let mut e = d.encode_descriptor(
        "runtime_request",
        "Size of the runtime request bodies sent",
        Some(&Unit::Bytes),
        MetricType::Histogram,
    )?;
    histogram(&mut e, &t.runtime_bytes, &BYTE_BUCKETS, 1.0)
}

/// The counters of what happened besides answers: Kafka's side, the cache, the restarts.
fn events(d: &mut DescriptorEncoder<'_>, r: &Reading) -> std::fmt::Result {
    let t = &r.totals;
    let counters = [
        (
            "dead_letters",
            "Records that are no request, copied to the dead-letter topic",
            t.dead_letters,
        ),
        (
            "answers_dropped",
            "Answers not produced because their partition had been given up past the rebalance deadline or lost: its next owner answers",
            t.answers_dropped,
        ),
        (
            "requests_unanswerable",
            "Requests committed past without an answer: not even a failure response without their key and headers could be produced (dead-lettered if possible)",
            t.unanswerable,
        ),
        (
            "dead_letters_lost",
            "Dead letters given up on: refused by Kafka, or their topic missing for longer than a dead letter waits",
            t.dead_letters_lost,
        ),
        (
            "produce_retries",
            "Produce attempts of responses and dead letters that failed and were retried",
            t.produce_retries,
        ),
        (
            "commits",
            "Offset commits the group coordinator accepted (exactly-once: transactions committed)",
            t.commits,
        ),
        (
            "commit_failures",
            "Offset commits that failed (exactly-once: transactions aborted)",
            t.commit_failures,
        ),
        (
            "revision_cache_hits",
            "Requests whose prepared revision came from a worker's cache",
            t.cache_hits,
        ),
        (
            "revision_cache_misses",
            "Requests whose revision was loaded from the store",
            t.cache_misses,
        ),
        (
            "rebalances",
            "Assignments the workers received from the consumer group (the first included)",
            t.rebalances,
        ),
        (
            "share_records_acquired",
            "Share groups: records this service's members acquired",
            t.share_acquired,
        ),
        (
            "share_records_accepted",
            "Share groups: records acknowledged as accepted (their answer is in Kafka)",
            t.share_acks[1],
        ),
        (
            "share_records_released",
            "Share groups: records given back unanswered, delivered again (a stopping worker, an answer that could not be produced, a batch this build cannot read)",
            t.share_acks[2],
        ),
        (
            "share_records_rejected",
            "Share groups: records rejected (archived unanswered); this service rejects none",
            t.share_acks[3],
        ),
        (
            "share_gaps_acknowledged",
            "Share groups: acquired offsets without a request (control records, compacted ones)",
            t.share_acks[0],
        ),
        (
            "share_redeliveries",
            "Share groups: records delivered that had been delivered before (a lock ran out, a member stopped or died)",
            t.share_redelivered,
        ),
        (
            "share_acknowledgements_refused",
            "Share groups: acknowledgements the broker refused, mostly because the record's acquisition lock had run out; those records are delivered again",
            t.share_acks_refused,
        ),
    ];
    for (name, help, v) in counters {
        counter(
            &mut d.encode_descriptor(name, help, None, MetricType::Counter)?,
            v,
        )?;
    }
    let mut e = d.encode_descriptor(
        "worker_restarts",
        "Workers replaced after ending unasked, by cause",
        None,
        MetricType::Counter,
    )?;
    for (cause, n) in ExitCause::ALL.iter().zip(r.restarts) {
        counter(&mut e.encode_family(&[("cause", cause.label())])?, n)?;
    }
    Ok(())
}

/// The gauges of now: the work in hand, then the worker processes.
fn gauges(d: &mut DescriptorEncoder<'_>, r: &Reading) -> std::fmt::Result {
    let t = &r.totals;
    let gauges = [
        (
            "executions_in_flight",
            "Requests being executed or answered now",
            t.in_flight,
        ),
        (
            "assigned_partitions",
            "Partitions of the request topic the workers own",
            t.assigned,
        ),
        (
            "parked_partitions",
            "Partitions waiting at a record batch they cannot read or an offset out of range",
            t.parked,
        ),
    ];
    for (name, help, v) in gauges {
        gauge(
            &mut d.encode_descriptor(name, help, None, MetricType::Gauge)?,
            v as i64,
        )?;
    }
    {
        let mut e = d.encode_descriptor(
            "workers",
            "Worker processes by state (booting, joining the group, consuming, stopping)",
            None,
            MetricType::Gauge,
        )?;
        for state in [
            WorkerState::Booting,
            WorkerState::Joining,
            WorkerState::Consuming,
            WorkerState::Stopping,
        ] {
            let n = r.workers.iter().filter(|w| w.state == state).count();
            gauge(&mut e.encode_family(&[("state", state.label())])?, n as i64)?;
        }
    }
    {
        let mut e = d.encode_descriptor(
            "workers_without_kafka",
            "Workers whose calls to the group coordinator fail now: Kafka is unreachable",
            None,
            MetricType::Gauge,
        )?;
        let n = r.workers.iter().filter(|w| w.kafka_unreachable).count();
        gauge(&mut e, n as i64)?;
    }
    {
        let mut e = d.encode_descriptor(
            "workers_missing_topic",
            "Workers that find a topic they produce to missing now (deleted): responses or dead letters wait",
            None,
            MetricType::Gauge,
        )?;
        for (topic, label) in [
            (Produced::Responses, "responses"),
            (Produced::DeadLetters, "dead_letters"),
        ] {
            let n = r
                .workers
                .iter()
                .filter(|w| w.topics_missing.contains(&topic))
                .count();
            gauge(&mut e.encode_family(&[("topic", label)])?, n as i64)?;
        }
    }
    let mut e = d.encode_descriptor(
        "workers_configured",
        "Worker processes the supervisor means to run (--workers, TTIN/TTOU)",
        None,
        MetricType::Gauge,
    )?;
    gauge(&mut e, r.target_workers as i64)
}

/// The group's position per partition of `topic`: one family per column, a partition with no
/// value in a column (no commit yet) left out of it.
fn lag(
    d: &mut DescriptorEncoder<'_>,
    topic: &str,
    partitions: &[PartitionLag],
) -> std::fmt::Result {
    type Column = fn(&PartitionLag) -> Option<i64>;
    let columns: [(&str, &str, Column); 3] = [
        (
            "committed_offset",
            "The group's committed offset per partition of the request topic",
            |p| p.committed,
        ),
        (
            "log_end_offset",
            "The offset the next request record written to the partition will get",
            |p| Some(p.log_end),
        ),
        (
            "consumer_lag",
            "Request records not yet committed by the group (log end - committed offset)",
            |p| Some(p.lag()),
        ),
    ];
    for (name, help, value) in columns {
        let mut e = d.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for p in partitions {
            if let Some(v) = value(p) {
                let partition = p.partition.to_string();
                let labels = [("topic", topic), ("partition", &partition)];
                gauge(&mut e.encode_family(&labels)?, v)?;
            }
        }
    }
    Ok(())
}

/// A gauge of 1 carrying labels (Prometheus' `*_build_info` convention) rather than
/// OpenMetrics' info type, which Prometheus' own text parser (promtool) refuses.
fn build_info(d: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let mut e = d.encode_descriptor(
        "build_info",
        "The running binary: version and cargo features (always 1)",
        None,
        MetricType::Gauge,
    )?;
    let features = features();
    let labels = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("features", features.as_str()),
    ];
    gauge(&mut e.encode_family(&labels)?, 1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::board::Board;

    #[test]
    fn the_text_has_every_family_with_its_values() {
        let board = Board::private();
        let slot = board.slot(0);
        slot.request_done(None, Duration::from_millis(2));
        slot.request_done(Some("ValidationError"), Duration::from_millis(2));
        slot.runtime_call(Duration::from_millis(1), 2000);
        board.worker_exited(0, Some(ExitCause::Hung));
        let scrape = || Scrape {
            reading: board.read(),
            lag: Some((
                "hd-execution-topic".into(),
                vec![PartitionLag {
                    partition: 2,
                    committed: Some(5),
                    log_end: 9,
                    log_start: 0,
                }],
            )),
        };
        let text = encode(scrape(), Format::OpenMetrics);
        for line in [
            "hd_kafka_exec_requests_total{result=\"ok\"} 1",
            "hd_kafka_exec_requests_total{result=\"failure\",error_type=\"ValidationError\"} 1",
            "hd_kafka_exec_request_duration_seconds_count 2",
            "hd_kafka_exec_request_duration_seconds_bucket{le=\"0.0025\"} 2",
            "hd_kafka_exec_request_duration_seconds_bucket{le=\"0.001\"} 0",
            "hd_kafka_exec_request_duration_seconds_sum 0.004",
            "hd_kafka_exec_runtime_request_bytes_bucket{le=\"4096.0\"} 1",
            "hd_kafka_exec_worker_restarts_total{cause=\"hung\"} 1",
            "hd_kafka_exec_consumer_lag{topic=\"hd-execution-topic\",partition=\"2\"} 4",
            "hd_kafka_exec_committed_offset{topic=\"hd-execution-topic\",partition=\"2\"} 5",
            "# EOF",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
        assert!(
            text.contains("hd_kafka_exec_build_info{version=\""),
            "{text}"
        );
        // The classic format names the counter family with its `_total`, as its parsers expect.
        let classic = encode(scrape(), Format::Prometheus);
        assert!(
            classic.contains("# TYPE hd_kafka_exec_requests_total counter"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }

    #[test]
    fn every_family_is_shown_once_in_its_order_with_a_sample() {
        let board = Board::private();
        let lag = vec![PartitionLag {
            partition: 0,
            committed: Some(1),
            log_end: 2,
            log_start: 0,
        }];
        let families = |text: &str| -> Vec<String> {
            let types = text
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE hd_kafka_exec_"));
            types.map(str::to_owned).collect()
        };
        let all = [
            "requests counter",
            "request_duration_seconds histogram",
            "runtime_call_duration_seconds histogram",
            "runtime_request_bytes histogram",
            "dead_letters counter",
            "answers_dropped counter",
            "requests_unanswerable counter",
            "dead_letters_lost counter",
            "produce_retries counter",
            "commits counter",
            "commit_failures counter",
            "revision_cache_hits counter",
            "revision_cache_misses counter",
            "rebalances counter",
            "share_records_acquired counter",
            "share_records_accepted counter",
            "share_records_released counter",
            "share_records_rejected counter",
            "share_gaps_acknowledged counter",
            "share_redeliveries counter",
            "share_acknowledgements_refused counter",
            "worker_restarts counter",
            "executions_in_flight gauge",
            "assigned_partitions gauge",
            "parked_partitions gauge",
            "workers gauge",
            "workers_without_kafka gauge",
            "workers_missing_topic gauge",
            "workers_configured gauge",
            "committed_offset gauge",
            "log_end_offset gauge",
            "consumer_lag gauge",
            "build_info gauge",
        ];
        let reading = board.read();
        let lag = Some(("hd-execution-topic".into(), lag));
        let text = encode(Scrape { reading, lag }, Format::OpenMetrics);
        assert_eq!(families(&text), all, "{text}");
        for family in all {
            let (name, kind) = family.split_once(' ').unwrap();
            let sample = match kind {
                "counter" => format!("hd_kafka_exec_{name}_total"),
                "histogram" => format!("hd_kafka_exec_{name}_count"),
                _ => format!("hd_kafka_exec_{name}"),
            };
            let shown = text.lines().any(|l| {
                l.strip_prefix(&sample)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            });
            assert!(shown, "no sample of {name} in\n{text}");
        }
        // Without a lag reading only the lag's families go.
        let lag_families = ["committed_offset", "log_end_offset", "consumer_lag"];
        let without_lag: Vec<&str> = all
            .into_iter()
            .filter(|f| !lag_families.iter().any(|l| f.starts_with(&format!("{l} "))))
            .collect();
        let text = encode(
            Scrape {
                reading: board.read(),
                lag: None,
            },
            Format::OpenMetrics,
        );
        assert_eq!(families(&text), without_lag, "{text}");
    }

    #[test]
    fn a_histogram_read_in_the_middle_of_an_observation_counts_what_its_buckets_hold() {
        let board = Board::private();
        board.slot(0).request_done(None, Duration::from_millis(2));
        let mut reading = board.read();
        // The bucket written, the count not yet: what a scrape can read while a worker writes.
        reading.totals.request_duration.count -= 1;
        let text = encode(Scrape { reading, lag: None }, Format::OpenMetrics);
        for line in [
            "hd_kafka_exec_request_duration_seconds_count 1",
            "hd_kafka_exec_request_duration_seconds_bucket{le=\"+Inf\"} 1",
        ] {
            assert!(text.contains(line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
    }
}
