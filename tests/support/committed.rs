//! What a response topic holds for a reader with a given isolation level: job id -> how many
//! responses. Two readers that share no code with the service: Kafka's own console consumer
//! (`scripts/kafka consume --isolation-level`) and aiokafka, the client hetida reads with. A
//! `read_committed` reader sees a transaction's records only once it committed and never those
//! of an aborted one; a `read_uncommitted` reader sees them all.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::kafka::python_with_aiokafka;
use super::service::job_of;
use super::wait::eventually;

/// Kafka's `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// What one reader saw of a topic.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which reader and isolation level, for messages.
    pub reader: String,
    /// Responses per job id (from each value's `job_id`).
    pub counts: BTreeMap<String, usize>,
    /// Records read.
    pub records: usize,
    /// The values read, in order, for tests that look beyond the job id.
    pub values: Vec<Vec<u8>>,
}

impl Seen {
    fn new(reader: String) -> Seen {
        Seen {
            reader,
            counts: BTreeMap::new(),
            records: 0,
            values: Vec::new(),
        }
    }

    fn add(&mut self, value: &[u8]) {
        *self.counts.entry(job_of(value)).or_default() += 1;
        self.records += 1;
        self.values.push(value.to_vec());
    }

    /// How many of `jobs` have no response.
    pub fn missing(&self, jobs: &[uuid::Uuid]) -> usize {
        jobs.iter()
            .filter(|j| !self.counts.contains_key(&j.to_string()))
            .count()
    }

    /// Whether every one of `jobs` has a response.
    pub fn has_all(&self, jobs: &[uuid::Uuid]) -> bool {
        self.missing(jobs) == 0
    }

    /// Job ids with more than one response, and how many each.
    pub fn repeated(&self) -> Vec<(&str, usize)> {
        self.counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(j, n)| (j.as_str(), *n))
            .collect()
    }

    /// Asserts that the topic holds exactly one response for each of `jobs` and nothing else.
    pub fn assert_exactly_once(&self, jobs: &[uuid::Uuid], context: &str) {
        let lost = self.missing(jobs);
        let repeated = self.repeated();
        let wanted: std::collections::HashSet<String> =
            jobs.iter().map(|j| j.to_string()).collect();
        let strangers: Vec<&String> = self
            .counts
            .keys()
            .filter(|j| !wanted.contains(*j))
            .collect();
        assert!(
            lost == 0 && repeated.is_empty() && strangers.is_empty() && self.records == jobs.len(),
            "{}: {} jobs, {} records: {lost} without a response, {} with more than one \
             (first: {:?}), {} unknown job ids (first: {:?}); {context}",
            self.reader,
            jobs.len(),
            self.records,
            repeated.len(),
            repeated.iter().take(5).collect::<Vec<_>>(),
            strangers.len(),
            strangers.iter().take(5).collect::<Vec<_>>(),
        );
    }
}

/// Kafka's console consumer reads `topic` of the cluster in `dir` from the beginning with
/// `isolation` until it gets nothing for a quiet period. The first quiet period is 3 s; while it
/// read fewer than `at_least` records (the consumer may spend the first one joining its group),
/// it reads again with twice the period, up to 24 s. Returns the last read.
pub fn console_read(dir: &Path, topic: &str, isolation: Isolation, at_least: usize) -> Seen {
    let mut quiet = Duration::from_secs(3);
    loop {
        let seen = console_read_once(dir, topic, isolation, quiet);
        if seen.records >= at_least || quiet >= Duration::from_secs(24) {
            return seen;
        }
        quiet *= 2;
    }
}

fn console_read_once(dir: &Path, topic: &str, isolation: Isolation, quiet: Duration) -> Seen {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka"))
        .args(["consume", "--dir"])
        .arg(dir)
        .args([topic, "--max", "1000000000", "--timeout-ms"])
        .arg(quiet.as_millis().to_string())
        .args(["--isolation-level", isolation.as_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/kafka consume failed: {stderr}"
    );
    let mut seen = Seen::new(format!("console consumer, {}", isolation.as_str()));
    for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        seen.add(line);
    }
    // One value a line only while no value holds a line break: the tool's own count says so.
    let processed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Processed a total of "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("the console consumer did not say what it read: {stderr}"));
    assert_eq!(
        processed, seen.records,
        "records read vs lines printed by the console consumer"
    );
    seen
}

/// Where the aiokafka reader stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Each partition's end when the read began (its high watermark; aiokafka's `end_offsets`
    /// asks with ListOffsets v1, which knows no isolation level). A `read_committed` reader gets
    /// there once every transaction that was open then has ended: until then its position stays
    /// at the last stable offset.
    End,
    /// What is readable now: the last stable offset (`read_committed`) or high watermark
    /// (`read_uncommitted`) the fetch answers report. For polling while transactions are open.
    Readable,
}

const AIOKAFKA_READER: &str = r#"
import asyncio, json, sys, time
from aiokafka import AIOKafkaConsumer, TopicPartition

bootstrap, topic, isolation, until, timeout = sys.argv[1:6]

async def main():
    deadline = time.monotonic() + float(timeout)
    # No group: the partitions are assigned by hand and nothing is committed.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        parts = None
        while not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no partitions of {topic}")
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        reached = False
        positions = {}
        while True:
            batches = await consumer.getmany(timeout_ms=300, max_records=5000)
            for records in batches.values():
                for r in records:
                    print("N" if r.value is None else "V " + r.value.hex())
            positions = {tp: await consumer.position(tp) for tp in tps}
            if until == "end":
                targets = ends
            elif isolation == "read_committed":
                targets = {tp: consumer.last_stable_offset(tp) for tp in tps}
            else:
                targets = {tp: consumer.highwater(tp) for tp in tps}
            if all(targets[tp] is not None and positions[tp] >= targets[tp] for tp in tps):
                reached = True
                break
            if time.monotonic() > deadline:
                break
        print("END " + json.dumps({
            "reached": reached,
            "positions": {tp.partition: positions.get(tp) for tp in tps},
            "ends": {tp.partition: ends[tp] for tp in tps},
        }), flush=True)
    finally:
        await consumer.stop()

asyncio.run(main())
"#;

/// What the aiokafka reader saw, and whether it got where it was asked to go.
#[derive(Debug, Clone)]
pub struct AiokafkaRead {
    pub seen: Seen,
    /// Whether it reached `until` in every partition before its timeout.
    pub reached: bool,
    /// Its positions and the partitions' ends (high watermarks) when it began, for messages.
    pub positions: String,
}

/// aiokafka reads `topic` at `bootstrap` from the beginning with `isolation` until `until` or
/// `timeout`.
pub fn aiokafka_read(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    until: Until,
    timeout: Duration,
) -> AiokafkaRead {
    let until_arg = match until {
        Until::End => "end",
        Until::Readable => "readable",
    };
    let out = python_with_aiokafka()
        .args(["-c", AIOKAFKA_READER, bootstrap, topic, isolation.as_str()])
        .arg(until_arg)
        .arg(timeout.as_secs_f64().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the aiokafka reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Seen::new(format!("aiokafka, {}", isolation.as_str()));
    let mut end = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(hex) = line.strip_prefix("V ") {
            seen.add(&from_hex(hex));
        } else if line == "N" {
            *seen.counts.entry("<no value>".to_owned()).or_default() += 1;
            seen.records += 1;
        } else if let Some(json) = line.strip_prefix("END ") {
            end = Some(serde_json::from_str::<serde_json::Value>(json).unwrap());
        }
    }
    let end = end.unwrap_or_else(|| {
        panic!(
            "the aiokafka reader did not finish: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    AiokafkaRead {
        seen,
        reached: end["reached"] == true,
        positions: format!("positions {} of ends {}", end["positions"], end["ends"]),
    }
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// aiokafka reads `topic` to its end: panics when it does not get there within `timeout` (a
/// `read_committed` reader stays behind a transaction that never ends).
pub fn aiokafka_read_to_end(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    timeout: Duration,
) -> Seen {
    let read = aiokafka_read(bootstrap, topic, isolation, Until::End, timeout);
    assert!(
        read.reached,
        "{} did not reach the end of {topic} in {timeout:?} (an open transaction?): {}; \
         saw {} records",
        read.seen.reader, read.positions, read.seen.records
    );
    read.seen
}

/// Polls aiokafka with `read_committed` until the committed responses include one for each of
/// `jobs`; returns that read. Panics after `timeout`, saying how many were missing.
#[track_caller]
pub fn wait_committed(
    bootstrap: &str,
    topic: &str,
    jobs: &[uuid::Uuid],
    timeout: Duration,
) -> Seen {
    let deadline = Instant::now() + timeout;
    let what = format!("a committed response to each of {} jobs", jobs.len());
    eventually(timeout, what, || {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = aiokafka_read(
            bootstrap,
            topic,
            Isolation::ReadCommitted,
            Until::Readable,
            left.clamp(Duration::from_secs(5), Duration::from_secs(30)),
        );
        if read.seen.has_all(jobs) {
            Ok(read.seen)
        } else {
            Err(format!(
                "{} jobs without ({}, {} records)",
                read.seen.missing(jobs),
                read.positions,
                read.seen.records
            ))
        }
    })
}

/// The four reads of a topic that is done changing: Kafka's console consumer and aiokafka, each
/// with `read_committed` and `read_uncommitted`, run at once. `at_least`: records the committed
/// view is known to hold (see [`console_read`]).
#[derive(Debug)]
pub struct FourReads {
    pub console_committed: Seen,
    pub aiokafka_committed: Seen,
    pub console_uncommitted: Seen,
    pub aiokafka_uncommitted: Seen,
}

impl FourReads {
    pub fn read(dir: &Path, bootstrap: &str, topic: &str, at_least: usize) -> FourReads {
        let timeout = Duration::from_secs(60);
        std::thread::scope(|s| {
            let cc = s.spawn(|| console_read(dir, topic, Isolation::ReadCommitted, at_least));
            let cu = s.spawn(|| console_read(dir, topic, Isolation::ReadUncommitted, at_least));
            let ac = s.spawn(|| {
                aiokafka_read_to_end(bootstrap, topic, Isolation::ReadCommitted, timeout)
            });
            let au = s.spawn(|| {
                aiokafka_read_to_end(bootstrap, topic, Isolation::ReadUncommitted, timeout)
            });
            FourReads {
                console_committed: cc.join().unwrap(),
                aiokafka_committed: ac.join().unwrap(),
                console_uncommitted: cu.join().unwrap(),
                aiokafka_uncommitted: au.join().unwrap(),
            }
        })
    }

    /// Both `read_committed` readers saw exactly one response per job of `jobs`, both
    /// `read_uncommitted` readers at least as many records as that (aborted transactions'
    /// records stay in the log), and every job.
    pub fn assert_exactly_once_committed(&self, jobs: &[uuid::Uuid], context: &str) {
        self.console_committed.assert_exactly_once(jobs, context);
        self.aiokafka_committed.assert_exactly_once(jobs, context);
        for u in [&self.console_uncommitted, &self.aiokafka_uncommitted] {
            assert!(
                u.records >= jobs.len() && u.has_all(jobs),
                "{}: {} records, {} jobs without any; {context}",
                u.reader,
                u.records,
                u.missing(jobs)
            );
        }
    }

    /// One line for the test's output.
    pub fn summary(&self) -> String {
        format!(
            "read_committed: console {} / aiokafka {} records; read_uncommitted: console {} / \
             aiokafka {} records ({} / {} jobs repeated)",
            self.console_committed.records,
            self.aiokafka_committed.records,
            self.console_uncommitted.records,
            self.aiokafka_uncommitted.records,
            self.console_uncommitted.repeated().len(),
            self.aiokafka_uncommitted.repeated().len(),
        )
    }
}

const STABLE_OFFSETS: &str = r#"
import asyncio, sys
from aiokafka import AIOKafkaConsumer, TopicPartition

bootstrap, topic, partitions = sys.argv[1], sys.argv[2], sys.argv[3:]

async def main():
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, int(p)) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        # A fetch at the end answers with the partition's last stable offset and high watermark.
        while any(consumer.last_stable_offset(tp) is None for tp in tps):
            await consumer.getmany(timeout_ms=100)
        for tp in tps:
            print(tp.partition, consumer.last_stable_offset(tp), consumer.highwater(tp), flush=True)
    finally:
        await consumer.stop()

asyncio.run(main())
"#;

/// Each of `partitions` of `topic` with its last stable offset and high watermark, from aiokafka
/// (fetch answers carry both): a last stable offset below the high watermark means a transaction
/// that is still open has written records there.
pub fn stable_offsets(bootstrap: &str, topic: &str, partitions: &[i32]) -> Vec<(i32, i64, i64)> {
    let out = python_with_aiokafka()
        .args(["-c", STABLE_OFFSETS, bootstrap, topic])
        .args(partitions.iter().map(i32::to_string))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reading stable offsets failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Vec<i64> = l.split_whitespace().map(|n| n.parse().unwrap()).collect();
            (v[0] as i32, v[1], v[2])
        })
        .collect()
}
