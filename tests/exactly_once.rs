//! Exactly-once (`serve --exactly-once`, `HD_EXACTLY_ONCE=true` or the producer option
//! `transactional_id`): each worker answers a batch of requests in one Kafka transaction that
//! holds the responses and the requests' offsets, so a `read_committed` reader of the response
//! topic sees exactly one response per request whatever fails: a worker killed with `kill -9`,
//! the broker restarting, the transaction coordinator's broker stopping, a worker stopped past
//! its session and coming back as a zombie.
//!
//! The responses are read by two readers that share no code with the service: Kafka's own
//! console consumer and aiokafka (tests/support/committed.rs), each with `read_committed` and
//! `read_uncommitted`. The first test checks the readers themselves against transactions
//! aiokafka's transactional producer writes. The runtime is the project's double
//! (tests/support/runtime_double.rs) with a latency, so that executions are in flight when the
//! fault strikes; every test asserts that they were.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::committed::{
    FourReads, Isolation, Until, aiokafka_read, aiokafka_read_to_end, console_read, stable_offsets,
    wait_committed,
};
use support::group::{members, one_owner_each, wait_for_members, wait_for_split};
use support::kafka::{
    OwnCluster, client, create_topic, kafka_bootstrap, kafka_dir, python_with_aiokafka,
    scripts_kafka, unique_topic,
};
use support::runtime_double::RuntimeDouble;
use support::service::{
    ServiceProcess, Topics, is_metrics_process, keyed_requests, produce_requests,
};
use support::wait::{Shown, eventually, eventually_async};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// Writes, with aiokafka's transactional producer, one transaction per entry of `batches`
/// (values `{"job_id": …}` spread over two partitions), committing or aborting it as the entry
/// says; with `leave_open`, one more transaction of those jobs that stays open while the
/// returned process lives (it prints `open` once its records are written).
fn transactional_writer(
    topic: &str,
    batches: &[(&[Uuid], bool)],
    leave_open: &[Uuid],
) -> std::process::Child {
    let script = r#"
import asyncio, json, sys
from aiokafka import AIOKafkaProducer

async def main(bootstrap, topic, plan):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic + "-writer")
    await producer.start()
    async def write(jobs):
        for i, job in enumerate(jobs):
            value = json.dumps({"job_id": job}).encode()
            await producer.send_and_wait(topic, value, partition=i % 2)
    try:
        for step in plan:
            jobs = [j for j in step[1:].split(",") if j]
            await producer.begin_transaction()
            await write(jobs)
            if step[0] == "c":
                await producer.commit_transaction()
            elif step[0] == "a":
                await producer.abort_transaction()
            else:
                print("open", flush=True)
                await asyncio.sleep(3600)  # open until the test kills this writer
        print("done", flush=True)
    finally:
        await producer.stop()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
"#;
    let join = |jobs: &[Uuid]| {
        jobs.iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut plan: Vec<String> = batches
        .iter()
        .map(|(jobs, commit)| format!("{}{}", if *commit { "c" } else { "a" }, join(jobs)))
        .collect();
    if !leave_open.is_empty() {
        plan.push(format!("o{}", join(leave_open)));
    }
    python_with_aiokafka()
        .args(["-c", script, &kafka_bootstrap().join(","), topic])
        .args(&plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn uuids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

/// The readers themselves: a committed, an aborted and a committed transaction, then one left
/// open. Both `read_committed` readers see the two committed ones and nothing else, both
/// `read_uncommitted` readers see all four; aiokafka reading to the end with `read_committed`
/// does not get past the open transaction, reading what is readable stops before it, and the
/// partitions' last stable offsets are below their high watermarks.
#[tokio::test(flavor = "multi_thread")]
async fn the_readers_tell_committed_from_aborted_transactions() {
    let client = client().await;
    let topic = unique_topic("eos-readers");
    create_topic(&client, &topic, 2).await;
    let (first, aborted, second, open) = (uuids(5), uuids(4), uuids(3), uuids(2));
    let committed: Vec<Uuid> = first.iter().chain(&second).copied().collect();
    let all: Vec<Uuid> = committed
        .iter()
        .chain(&aborted)
        .chain(&open)
        .copied()
        .collect();
    let bootstrap = kafka_bootstrap().join(",");

    let mut writer = transactional_writer(
        &topic,
        &[(&first, true), (&aborted, false), (&second, true)],
        &open,
    );
    let stdout = writer.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().next().map(Result::unwrap)
    })
    .await
    .unwrap();
    if line.as_deref() != Some("open") {
        let out = writer.wait_with_output().unwrap();
        panic!(
            "the transactional writer failed: {line:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let topic2 = topic.clone();
    let bootstrap2 = bootstrap.clone();
    let committed2 = committed.clone();
    tokio::task::spawn_blocking(move || {
        let dir = kafka_dir();
        // What is readable now: the two committed transactions, the open one not yet.
        let seen = wait_committed(&bootstrap2, &topic2, &committed2, WAIT);
        seen.assert_exactly_once(&committed2, "readable with read_committed");
        let console = console_read(&dir, &topic2, Isolation::ReadCommitted, committed2.len());
        console.assert_exactly_once(&committed2, "console, read_committed");
        // To the end: not while a transaction is open.
        let stuck = aiokafka_read(
            &bootstrap2,
            &topic2,
            Isolation::ReadCommitted,
            Until::End,
            Duration::from_secs(3),
        );
        assert!(
            !stuck.reached,
            "read_committed got past an open transaction: {}",
            stuck.positions
        );
        stuck
            .seen
            .assert_exactly_once(&committed2, "read_committed behind an open transaction");
        // The open transaction wrote to both partitions: each has records past its last stable
        // offset.
        let offsets = stable_offsets(&bootstrap2, &topic2, &[0, 1]);
        assert!(
            offsets.len() == 2 && offsets.iter().all(|(_, lso, hw)| lso < hw),
            "(partition, last stable offset, high watermark): {offsets:?}"
        );
        // read_uncommitted: every record, aborted and open ones included, to the end.
        let seen = aiokafka_read_to_end(
            &bootstrap2,
            &topic2,
            Isolation::ReadUncommitted,
            Duration::from_secs(60),
        );
        seen.assert_exactly_once(&all, "aiokafka, read_uncommitted");
        let console = console_read(&dir, &topic2, Isolation::ReadUncommitted, all.len());
        console.assert_exactly_once(&all, "console, read_uncommitted");
    })
    .await
    .unwrap();
    let _ = writer.kill();
    let _ = writer.wait();
}

// ---------------------------------------------------------------------------------------------
// The service

/// hetida's consumer options for `topics` at `bootstrap`, plus `extra` (`"key": value, …`).
fn consumer_options(bootstrap: &str, topics: &Topics, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{}", "auto_offset_reset": "earliest"{extra}}}"#,
        topics.group
    )
}

/// One "transactional producer ready" line of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ready {
    /// The worker process that logged it.
    pid: i32,
    transactional_id: String,
    producer_id: i64,
    epoch: i64,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    Some(line[at..].split_whitespace().next()?.trim_matches('"'))
}

/// The workers' "transactional producer ready" lines, in order.
fn ready(log: &str) -> Vec<Ready> {
    log.lines()
        .filter(|l| l.contains("transactional producer ready"))
        .map(|l| Ready {
            pid: field(l, "pid")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no pid in: {l}")),
            transactional_id: field(l, "transactional_id")
                .unwrap_or_else(|| panic!("no transactional_id in: {l}"))
                .to_owned(),
            producer_id: field(l, "producer_id")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no producer_id in: {l}")),
            epoch: field(l, "epoch")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no epoch in: {l}")),
        })
        .collect()
}

/// Waits until the service has logged `n` "transactional producer ready" lines; returns them.
#[track_caller]
fn wait_ready(service: &ServiceProcess, n: usize) -> Vec<Ready> {
    let what = format!("{n} transactional producers ready (is exactly-once on?)");
    eventually(WAIT, what, || {
        let log = service.log_text();
        let lines = ready(&log);
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(Shown(format!("{} ready; log:\n{log}", lines.len())))
        }
    })
}

/// How many of `jobs` the runtime has executed at least once.
fn executed(double: &RuntimeDouble, jobs: &[Uuid]) -> usize {
    jobs.iter()
        .filter(|j| {
            let job = j.to_string();
            // A call the double holds has not been executed (yet).
            double.calls_for_job(&job) > double.held_calls(&job).len() as u64
        })
        .count()
}

/// Waits until the runtime has executed `n` of `jobs`.
async fn wait_executed(double: &RuntimeDouble, jobs: &[Uuid], n: usize) {
    let what = format!("{n} of {} requests executed", jobs.len());
    eventually_async(WAIT, what, || async {
        let done = executed(double, jobs);
        if done >= n { Ok(()) } else { Err(done) }
    })
    .await;
}

/// Waits (off the runtime's threads) until a `read_committed` reader sees every job, then reads
/// the topic with all four readers and asserts exactly one committed response per job.
async fn assert_exactly_once(
    dir: std::path::PathBuf,
    bootstrap: &str,
    topic: &str,
    jobs: &[Uuid],
    log: impl Fn() -> String,
) -> FourReads {
    let (bootstrap, topic, jobs2) = (bootstrap.to_owned(), topic.to_owned(), jobs.to_vec());
    let reads = tokio::task::spawn_blocking(move || {
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_committed(&bootstrap, &topic, &jobs2, WAIT)
        }));
        waited.map(|_| FourReads::read(&dir, &bootstrap, &topic, jobs2.len()))
    })
    .await
    .unwrap();
    let reads = reads.unwrap_or_else(|e| {
        panic!(
            "{}; log:\n{}",
            e.downcast_ref::<String>().cloned().unwrap_or_default(),
            log()
        )
    });
    reads.assert_exactly_once_committed(jobs, &format!("{}; log:\n{}", reads.summary(), log()));
    reads
}

/// How often [`freeze_in_open_transaction`] looks before it gives up.
const LOOKS: usize = 60;

/// Stops worker `pid` (SIGSTOP) until Kafka's own tool (run against the cluster in `dir`) shows
/// its transactional id `id` with a transaction open on the response topic `responses` and
/// that transaction — its producer, `producer_id` — has written responses there (the partition
/// lists the producer with an open transaction's start offset), and returns with the worker
/// stopped there. Between looks it lets the worker go on for a moment. Returns how many looks
/// it took. (A partition's last stable offset below its end is no proof: the other worker's
/// transaction may hold it there, as two request partitions can answer into one response
/// partition.)
async fn freeze_in_open_transaction(
    dir: &std::path::Path,
    pid: i32,
    id: &str,
    producer_id: i64,
    responses: &str,
    log: impl Fn() -> String,
) -> usize {
    let worker = nix::unistd::Pid::from_raw(pid);
    let mut states = Vec::new();
    // Each look is a JVM start (a second or more); most find one within a few, some need many.
    for look in 1..=LOOKS {
        nix::sys::signal::kill(worker, Signal::SIGSTOP).unwrap();
        let (dir2, id2) = (dir.to_owned(), id.to_owned());
        let txn = tokio::task::spawn_blocking(move || describe_transaction(&dir2, &id2))
            .await
            .unwrap();
        let ours: Vec<i32> = txn
            .partitions
            .iter()
            .filter_map(|p| p.strip_prefix(&format!("{responses}-")))
            .filter_map(|p| p.parse().ok())
            .collect();
        if txn.state == "Ongoing" {
            for partition in ours {
                let (dir2, topic) = (dir.to_owned(), responses.to_owned());
                let start = tokio::task::spawn_blocking(move || {
                    open_transaction_start(&dir2, &topic, partition, producer_id)
                })
                .await
                .unwrap();
                if start.is_some() {
                    return look;
                }
            }
        }
        states.push(format!("{} {:?}", txn.state, txn.partitions));
        nix::sys::signal::kill(worker, Signal::SIGCONT).unwrap();
        // Long enough for its due work (a heartbeat, the next step of a transaction) to get
        // out, short enough that it does not work off its share of the burst between looks
        // (each look is a JVM start, a second or more).
        tokio::time::sleep(Duration::from_millis(8 + 4 * (look as u64 % 4))).await;
    }
    let own = format!("pid={pid} ");
    let log = log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&own)
                && (l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("producer ready"))
        })
        .collect();
    panic!(
        "worker {pid} (alive: {}): no open transaction on {responses} in {LOOKS} looks: {states:?}; \
         its warnings:\n{}",
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        lines.join("\n")
    );
}

/// Restarts node `node` (all nodes: `None`) of `cluster`, down for `down`, while worker `pid`
/// is frozen in an open transaction (see [`freeze_in_open_transaction`]); lets the worker go on
/// once the node's process is gone, so that it meets the outage mid-transaction. Returns once
/// the node runs again.
async fn restart_under_open_transaction(
    cluster: &std::sync::Arc<OwnCluster>,
    node: Option<u32>,
    down: Duration,
    pid: i32,
) {
    let broker_pid: i32 = std::fs::read_to_string(
        cluster
            .dir()
            .join(format!("node{}", node.unwrap_or(1)))
            .join("pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let restart = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart_nodes(node, down)
    });
    let what = format!("the broker (pid {broker_pid}) stopped");
    eventually_async(WAIT, what, || async {
        match std::path::Path::new(&format!("/proc/{broker_pid}")).exists() {
            true => Err("it runs"),
            false => Ok(()),
        }
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    // restart_nodes returns once the node stopped (its process gone) and started again.
    restart.await.unwrap();
}

/// kill -9 of a worker in the middle of a 2,000-request burst, five times (4 partitions, two
/// workers, static members): after each round every request has exactly one response for
/// `read_committed` readers, none lost. Each round asserts its premise: the pid killed was a
/// worker; it died in a transaction that Kafka's own tool showed open on the response topic
/// and that had written responses there (held with SIGSTOP while looked at, see
/// [`freeze_in_open_transaction`]); requests of the burst were still unexecuted (so
/// unanswered) after the kill; and the supervisor replaced it with a worker that took over its
/// transactional id (a new producer epoch or id), which aborts the dead one's transaction.
///
/// What that transaction wrote stays in the log, aborted: each round `read_uncommitted` readers
/// see more records beyond `read_committed`'s than the round before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_worker_mid_burst_leaves_one_committed_response_per_request() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(25));
    let client = client().await;
    let topics = Topics::create(&client, "eos-kill", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        // The looks hold a worker stopped for many JVM starts with moments between: on a busy
        // machine that adds up past the default 30 s of silence after which the supervisor
        // replaces a worker as hung, which this test does not test.
        &["--workers", "2", "--exactly-once", "--timeout", "600"],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            // A session longer than a frozen look (a few JVM starts on a busy machine): the
            // group does not go on without the frozen worker while it is looked at. Its kill
            // costs nothing of it: the replacement rejoins under the same static instance id.
            &consumer_options(
                &bootstrap,
                &topics,
                r#""group_instance_id": "eos-kill", "session_timeout_ms": 60000"#,
            ),
        )],
    );
    wait_for_split(&topics, 2, 4);
    wait_ready(&service, 2);
    let mut jobs_so_far: Vec<Uuid> = Vec::new();
    // Records only read_uncommitted sees, by console consumer and aiokafka, after each round.
    let mut aborted = [0usize; 2];
    for round in 0..5 {
        let (jobs, records) = keyed_requests(2000);
        jobs_so_far.extend(&jobs);
        // The burst's last request (the last of its partition: nothing waits behind it) is
        // held until the worker is killed, so not all were executed before the kill.
        let last = jobs.last().unwrap().to_string();
        double.hold_jobs([last.as_str()]);
        produce_requests(&client, &topics.requests, &records).await;
        wait_executed(&double, &jobs, 200).await;

        let workers = service.workers();
        assert_eq!(workers.len(), 2, "round {round}: workers {workers:?}");
        let victim = workers[round % 2];
        assert!(!is_metrics_process(victim));
        let before = ready(&service.log_text());
        let id = before
            .iter()
            .rfind(|r| r.pid == victim)
            .unwrap_or_else(|| panic!("round {round}: worker {victim} has no producer: {before:?}"))
            .clone();
        let looks = freeze_in_open_transaction(
            &kafka_dir(),
            victim,
            &id.transactional_id,
            id.producer_id,
            &topics.responses,
            || service.log_text(),
        )
        .await;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
        let done = executed(&double, &jobs);
        assert!(
            done < jobs.len(),
            "round {round}: all {done} requests executed before the kill: it proves nothing"
        );

        // Replaced: two workers again, the victim gone, and the new worker's transactional
        // producer has the victim's id, with a higher epoch or a new producer id.
        let what = format!("round {round}: worker {victim} replaced by one with a producer");
        let new = eventually(WAIT, what, || {
            let workers = service.workers();
            let log = service.log_text();
            let replacement = workers
                .iter()
                .find(|p| !before.iter().any(|r| r.pid == **p));
            if let (2, Some(r), false) = (workers.len(), replacement, workers.contains(&victim))
                && let Some(line) = ready(&log).into_iter().find(|l| l.pid == *r)
            {
                Ok(line)
            } else {
                Err(Shown(format!("workers {workers:?}; log:\n{log}")))
            }
        });
        assert_eq!(
            new.transactional_id, id.transactional_id,
            "round {round}: the replacement does not take over the killed worker's id"
        );
        assert!(
            (new.producer_id, new.epoch) != (id.producer_id, id.epoch),
            "round {round}: the replacement did not bump the producer epoch: {id:?} -> {new:?}"
        );
        double.stop_holding();

        let round_reads = assert_exactly_once(
            kafka_dir(),
            &bootstrap,
            &topics.responses,
            &jobs_so_far,
            || service.log_text(),
        )
        .await;
        println!(
            "round {round}: killed worker {victim} in an open transaction (look {looks}) after \
             {done} of 2000 executed; {}",
            round_reads.summary()
        );
        let now = [
            round_reads.console_uncommitted.records - round_reads.console_committed.records,
            round_reads.aiokafka_uncommitted.records - round_reads.aiokafka_committed.records,
        ];
        assert!(
            now[0] > aborted[0] && now[1] > aborted[1],
            "round {round}: the killed worker's open transaction had written responses, yet \
             read_uncommitted sees no more aborted ones than before ({aborted:?} -> {now:?}): {}",
            round_reads.summary()
        );
        aborted = now;
    }
}

/// The broker (a cluster of one of the test's own) restarts in the middle of a 2,000-request
/// burst, down for 5 s: exactly one committed response per request. The premise, made sure of:
/// one worker is held (SIGSTOP) in a transaction that Kafka's own tool shows open with
/// responses written, the broker stops, and only then does the worker go on, into the outage.
/// Exactly-once is turned on by the producer option `transactional_id` here, which also names
/// the workers' transactional ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_transaction_leaves_one_committed_response_per_request() {
    let cluster = OwnCluster::start(1);
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(25));
    let client = cluster.client().await;
    let topics = Topics::create(&client, "eos-restart", 4).await;
    let prefix = unique_topic("eos-restart-tx");
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        // Not replaced as hung while the looks hold a worker stopped (see the kill -9 test).
        &["--workers", "2", "--timeout", "600"],
        &[
            (
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                &consumer_options(
                    &cluster.bootstrap,
                    &topics,
                    r#""group_instance_id": "eos-restart""#,
                ),
            ),
            (
                "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
                &format!(
                    r#"{{"bootstrap_servers": "{}", "transactional_id": "{prefix}"}}"#,
                    cluster.bootstrap
                ),
            ),
        ],
    );
    wait_for_members(
        &cluster.dir(),
        &topics.group,
        &topics.requests,
        WAIT,
        |rows| rows.len() == 2 && one_owner_each(rows, 4),
    );
    let ready_lines = wait_ready(&service, 2);
    assert!(
        ready_lines
            .iter()
            .all(|r| r.transactional_id.starts_with(&format!("{prefix}-"))),
        "the transactional ids are <transactional_id>-<suffix>: {ready_lines:?}"
    );

    let (jobs, records) = keyed_requests(2000);
    // The burst's last request (the last of its partition: nothing waits behind it) is held
    // until the broker is back, so not all were executed before it stopped.
    let last = jobs.last().unwrap().to_string();
    double.hold_jobs([last.as_str()]);
    produce_requests(&client, &topics.requests, &records).await;
    wait_executed(&double, &jobs, 200).await;
    let cluster = std::sync::Arc::new(cluster);
    let frozen = ready_lines[0].clone();
    let looks = freeze_in_open_transaction(
        &cluster.dir(),
        frozen.pid,
        &frozen.transactional_id,
        frozen.producer_id,
        &topics.responses,
        || service.log_text(),
    )
    .await;
    let before = executed(&double, &jobs);
    assert!(
        before < jobs.len(),
        "all executed before the broker stopped: it proves nothing"
    );
    restart_under_open_transaction(&cluster, None, Duration::from_secs(5), frozen.pid).await;
    double.stop_holding();
    let reads = assert_exactly_once(
        cluster.dir(),
        &cluster.bootstrap,
        &topics.responses,
        &jobs,
        || service.log_text(),
    )
    .await;
    println!(
        "broker restarted after {before} of 2000 executed, while worker {} had a transaction \
         open (look {looks}); {}",
        frozen.pid,
        reads.summary()
    );
}

/// A transactional id as Kafka's own kafka-transactions tool describes it.
#[derive(Debug)]
struct Transaction {
    /// The broker (= node, 1-based, in scripts/kafka) coordinating it.
    coordinator: u32,
    /// `Ongoing`, `CompleteCommit`, `CompleteAbort`, `Empty`, …
    state: String,
    /// The partitions of its open transaction.
    partitions: Vec<String>,
}

fn describe_transaction(dir: &std::path::Path, id: &str) -> Transaction {
    let out = scripts_kafka("transaction", dir, &[id]);
    // Tab-separated columns, padded with blanks; TopicPartitions (last) may be empty.
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split('\t')
        .map(str::trim)
        .collect();
    let row: Vec<&str> = lines
        .find(|l| l.split('\t').any(|c| c.trim() == id))
        .unwrap_or_else(|| panic!("no row of {id} in: {out}"))
        .split('\t')
        .map(str::trim)
        .collect();
    let column = |name: &str| -> &str {
        header
            .iter()
            .position(|c| *c == name)
            .and_then(|i| row.get(i).copied())
            .unwrap_or_else(|| panic!("no {name} column in: {out}"))
    };
    Transaction {
        coordinator: column("CoordinatorId")
            .parse()
            .unwrap_or_else(|_| panic!("no coordinator id in: {out}")),
        state: column("TransactionState").to_owned(),
        partitions: column("TopicPartitions")
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// Where the open transaction of producer `producer_id` started on `topic`'s `partition`, by
/// Kafka's own `kafka-transactions describe-producers`; `None` while it has written nothing
/// there in an open transaction.
fn open_transaction_start(
    dir: &std::path::Path,
    topic: &str,
    partition: i32,
    producer_id: i64,
) -> Option<i64> {
    let out = scripts_kafka("producers", dir, &[topic, &partition.to_string()]);
    // Tab-separated columns with a header row.
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split('\t')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no {name} column in: {out}"))
    };
    let (id_at, start_at) = (
        column("ProducerId"),
        column("CurrentTransactionStartOffset"),
    );
    lines
        .map(|l| l.split('\t').map(str::trim).collect::<Vec<_>>())
        .find(|row| row.get(id_at).and_then(|v| v.parse().ok()) == Some(producer_id))
        .and_then(|row| row.get(start_at).and_then(|v| v.parse::<i64>().ok()))
        .filter(|start| *start >= 0)
}

/// On a cluster of three with every topic and the transaction state log replicated three
/// times, the broker that coordinates a worker's transactions stops for 10 s in the middle of a
/// 2,000-request burst: exactly one committed response per request. As in the broker restart,
/// the worker is held in an open transaction until its coordinator's process is gone, so its
/// AddOffsetsToTxn, TxnOffsetCommit and EndTxn meet the failover. Exactly-once is turned on by
/// `HD_EXACTLY_ONCE=true` here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_transaction_coordinator_stopping_leaves_one_committed_response_per_request() {
    let cluster = OwnCluster::start(3);
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(25));
    let client = cluster.client().await;
    let topics = Topics::create_replicated(&client, "eos-coord", 4, 3).await;
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        // Not replaced as hung while the looks hold a worker stopped (see the kill -9 test).
        &["--workers", "2", "--timeout", "600"],
        &[
            (
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                &consumer_options(
                    &cluster.bootstrap,
                    &topics,
                    r#""group_instance_id": "eos-coord""#,
                ),
            ),
            ("HD_EXACTLY_ONCE", "true"),
        ],
    );
    wait_for_members(
        &cluster.dir(),
        &topics.group,
        &topics.requests,
        WAIT,
        |rows| rows.len() == 2 && one_owner_each(rows, 4),
    );
    let ready_lines = wait_ready(&service, 2);
    let frozen = ready_lines[0].clone();
    let id = frozen.transactional_id.clone();
    assert!(
        id.starts_with(&format!("{}-", topics.group)),
        "the transactional id's prefix is the group id by default: {ready_lines:?}"
    );
    let coordinator = describe_transaction(&cluster.dir(), &id).coordinator;
    let group_coordinator = cluster.coordinator_node(&topics.group);

    let (jobs, records) = keyed_requests(2000);
    // The burst's last request (the last of its partition: nothing waits behind it) is held
    // until the coordinator is back, so not all were executed before it stopped.
    let last = jobs.last().unwrap().to_string();
    double.hold_jobs([last.as_str()]);
    produce_requests(&client, &topics.requests, &records).await;
    wait_executed(&double, &jobs, 200).await;
    let cluster = std::sync::Arc::new(cluster);
    let looks = freeze_in_open_transaction(
        &cluster.dir(),
        frozen.pid,
        &id,
        frozen.producer_id,
        &topics.responses,
        || service.log_text(),
    )
    .await;
    let before = executed(&double, &jobs);
    assert!(
        before < jobs.len(),
        "all executed before the coordinator stopped: it proves nothing"
    );
    restart_under_open_transaction(
        &cluster,
        Some(coordinator),
        Duration::from_secs(10),
        frozen.pid,
    )
    .await;
    double.stop_holding();
    let reads = assert_exactly_once(
        cluster.dir(),
        &cluster.bootstrap,
        &topics.responses,
        &jobs,
        || service.log_text(),
    )
    .await;
    println!(
        "node {coordinator} (transaction coordinator of {id}; the group's: node \
         {group_coordinator}) stopped after {before} of 2000 executed, while its worker had \
         a transaction open (look {looks}); {}",
        reads.summary()
    );
}

/// Whether process `pid` is stopped (state T in /proc/PID/stat).
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "T"))
        })
        .unwrap_or(false)
}

/// A zombie: a worker stopped (SIGSTOP) with requests in flight stays stopped past its 10 s
/// session (dynamic members, the supervisor's `--timeout` far off), the other worker takes its
/// partitions and answers all their requests; then the stopped worker goes on (SIGCONT). The
/// group refuses its transaction's offsets (its generation is gone), it aborts and rejoins, and
/// `read_committed` readers see exactly one response per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zombie_worker_coming_back_adds_no_committed_response() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(50));
    let client = client().await;
    let topics = Topics::create(&client, "eos-zombie", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        &["--workers", "2", "--exactly-once", "--timeout", "600"],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &consumer_options(
                &bootstrap,
                &topics,
                r#""group_instance_id": null, "session_timeout_ms": 10000, "heartbeat_interval_ms": 1000"#,
            ),
        )],
    );
    wait_for_split(&topics, 2, 4);
    wait_ready(&service, 2);

    let (jobs, records) = keyed_requests(1000);
    produce_requests(&client, &topics.requests, &records).await;
    wait_executed(&double, &jobs, 100).await;
    let workers = service.workers();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let zombie = workers[0];
    assert!(!is_metrics_process(zombie));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(zombie), Signal::SIGSTOP).unwrap();
    let done = executed(&double, &jobs);
    assert!(
        done < jobs.len(),
        "all {done} executed before the stop: it proves nothing"
    );

    // Its session expires and the other worker owns all four partitions.
    let rows = tokio::task::spawn_blocking({
        let (group, requests) = (topics.group.clone(), topics.requests.clone());
        move || {
            wait_for_members(&kafka_dir(), &group, &requests, WAIT, |rows| {
                rows.len() == 1 && one_owner_each(rows, 4)
            })
        }
    })
    .await
    .unwrap();
    let (b2, r2, j2) = (bootstrap.clone(), topics.responses.clone(), jobs.clone());
    tokio::task::spawn_blocking(move || wait_committed(&b2, &r2, &j2, WAIT))
        .await
        .unwrap();
    assert!(
        is_stopped(zombie) && service.workers().contains(&zombie),
        "the premise: worker {zombie} is still there, stopped, while {rows:?} answered all"
    );
    // Requests it had taken were answered by the other: run twice, once by each.
    let twice = jobs
        .iter()
        .filter(|j| double.calls_for_job(&j.to_string()) > 1)
        .count();
    assert!(
        twice > 0,
        "the premise: the stopped worker had requests in flight (none ran twice)"
    );

    let log_before = service.log_text().len();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(zombie), Signal::SIGCONT).unwrap();
    eventually(WAIT, "the zombie aborting or rejoining", || {
        let log = service.log_text();
        let since = &log[log_before.min(log.len())..];
        if since.contains("transaction aborted") || since.contains("worker consuming") {
            Ok(())
        } else {
            Err(Shown(log))
        }
    });
    // It is a member again.
    tokio::task::spawn_blocking({
        let topics = topics.clone();
        move || wait_for_split(&topics, 2, 4)
    })
    .await
    .unwrap();
    assert_eq!(members(&topics.group, &topics.requests).len(), 2);
    let reads = assert_exactly_once(kafka_dir(), &bootstrap, &topics.responses, &jobs, || {
        service.log_text()
    })
    .await;
    println!(
        "zombie {zombie} stopped after {done} of 1000 executed, {twice} ran twice; {}",
        reads.summary()
    );
    // What the zombie did when it went on, for the output: an abort, a refused heartbeat.
    let log = service.log_text();
    let own = format!("pid={zombie} ");
    for line in log[log_before.min(log.len())..]
        .lines()
        .filter(|l| l.contains(&own) && (l.contains(" WARN ") || l.contains(" ERROR ")))
        .take(10)
    {
        println!("  {line}");
    }
}

/// Two services that claim one transactional id (the same `transactional_id` prefix and the same
/// instance names, on different groups and topics): the second's producer fences the first's,
/// which says so at its next transaction and stops the service, as a fenced static member does,
/// instead of both writing under one id in turns; the second keeps serving, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_process_with_the_same_transactional_id_stops_the_first_clearly() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let bootstrap = kafka_bootstrap().join(",");
    let prefix = unique_topic("eos-twin-tx");
    let start = |topics: &Topics| {
        ServiceProcess::start_with(
            topics,
            &double.engine_url(),
            &["--workers", "1"],
            &[
                (
                    "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                    &consumer_options(&bootstrap, topics, r#""group_instance_id": "twin""#),
                ),
                (
                    "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
                    &format!(
                        r#"{{"bootstrap_servers": "{bootstrap}", "transactional_id": "{prefix}"}}"#
                    ),
                ),
            ],
        )
    };
    let first_topics = Topics::create(&client, "eos-twin-a", 1).await;
    let second_topics = Topics::create(&client, "eos-twin-b", 1).await;
    let mut first = start(&first_topics);
    first.wait_workers(1, WAIT);
    let first_ready = wait_ready(&first, 1);
    // The first at work before the second comes: its first transactions are behind it.
    let (warm_up, records) = keyed_requests(5);
    produce_requests(&client, &first_topics.requests, &records).await;
    let (b, r, j) = (
        bootstrap.clone(),
        first_topics.responses.clone(),
        warm_up.clone(),
    );
    tokio::task::spawn_blocking(move || wait_committed(&b, &r, &j, WAIT))
        .await
        .unwrap();
    let second = start(&second_topics);
    second.wait_workers(1, WAIT);
    let second_ready = wait_ready(&second, 1);
    assert_eq!(
        first_ready[0].transactional_id, second_ready[0].transactional_id,
        "the premise: one transactional id"
    );

    // The first's next transaction, for these, meets the fence. Fewer requests than its
    // window: its fetch loop has handed them all over and waits for more when the fence is
    // met, so the worker must stop it itself.
    let (jobs, records) = keyed_requests(5);
    produce_requests(&client, &first_topics.requests, &records).await;
    let Some(status) = first.wait_exit(WAIT) else {
        panic!(
            "the fenced service stops by itself; first:\n{}\nsecond:\n{}",
            first.log_text(),
            second.log_text()
        );
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = first.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("fenced")),
        "log:\n{log}"
    );
    // Nothing the fenced producer wrote became visible: the warm-up's responses alone.
    let (b, r) = (bootstrap.clone(), first_topics.responses.clone());
    let fenced = tokio::task::spawn_blocking(move || {
        aiokafka_read_to_end(&b, &r, Isolation::ReadCommitted, Duration::from_secs(60))
    })
    .await
    .unwrap();
    fenced.assert_exactly_once(
        &warm_up,
        &format!("the fenced producer's responses to {jobs:?} must not be visible"),
    );

    let (jobs, records) = keyed_requests(50);
    produce_requests(&client, &second_topics.requests, &records).await;
    assert_exactly_once(
        kafka_dir(),
        &bootstrap,
        &second_topics.responses,
        &jobs,
        || second.log_text(),
    )
    .await;
    assert_eq!(second.workers().len(), 1, "the second keeps serving");
}
