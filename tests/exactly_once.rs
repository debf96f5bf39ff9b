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

use support::committed::{
    Isolation, Until, aiokafka_read, aiokafka_read_to_end, console_read, wait_committed,
};
use support::kafka::{
    client, create_topic, kafka_bootstrap, kafka_dir, python_with_aiokafka, unique_topic,
};
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
                await asyncio.sleep(3600)
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
/// does not get past the open transaction, and reading what is readable stops before it.
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
