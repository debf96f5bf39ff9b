//! The consumer group as Kafka's own tool sees it, and hetida's consumer stand-in: an aiokafka
//! 0.10 consumer configured as hetida configures it (roundrobin, the group id, earliest here),
//! which answers each request with a response naming itself and commits after producing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::kafka::{kafka_dir, python_with_aiokafka, scripts_kafka};
use super::wait::{eventually, executions};

/// One member in `kafka-consumer-groups --describe --members --verbose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub consumer_id: String,
    /// Empty for a dynamic member.
    pub instance_id: String,
    pub client_id: String,
    /// Partitions of `topic` assigned to it.
    pub partitions: Vec<i32>,
}

/// The group's members and their partitions of `topic`, from Kafka's own tool (run against
/// the cluster in `dir`).
pub fn members_in(dir: &std::path::Path, group: &str, topic: &str) -> Vec<MemberRow> {
    let out = scripts_kafka("members", dir, &[group]);
    // Columns are padded to fixed widths and a dynamic member's instance id is blank, so the
    // header's column positions say where each value is.
    let Some(header) = out.lines().find(|l| l.starts_with("GROUP ")) else {
        return Vec::new();
    };
    let columns = [
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "CURRENT-EPOCH",
        "CURRENT-ASSIGNMENT",
    ];
    // GROUP-INSTANCE-ID is there only when some member is static. Kafka before 4.0 (3.x, 2.8)
    // names the assignment column ASSIGNMENT and has no CURRENT-EPOCH.
    let starts: Vec<Option<usize>> = columns
        .iter()
        .map(|c| match (*c, header.find(c)) {
            ("CURRENT-ASSIGNMENT", None) => header.find(" ASSIGNMENT").map(|i| i + 1),
            (_, found) => found,
        })
        .collect();
    let next_start = |i: usize| starts[i + 1..].iter().flatten().next().copied();
    let cell = |line: &str, i: usize| -> String {
        let Some(start) = starts[i] else {
            return String::new();
        };
        let end = next_start(i).unwrap_or(line.len()).min(line.len());
        line.get(start..end).unwrap_or("").trim().to_owned()
    };
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| l.starts_with(&format!("{group} "))) {
        let assignment = line
            .get(starts[6].expect("an assignment column")..)
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("-")
            // Kafka before 4.0 writes `topic(0,1),other(2)` for 4.0's `topic:0,1,other:2`.
            .replace('(', ":")
            .replace(')', "");
        let mut current: Option<String> = None;
        let mut partitions = Vec::new();
        for part in assignment.split(',') {
            let (t, p) = match part.rsplit_once(':') {
                Some((t, p)) => {
                    current = Some(t.to_owned());
                    (t.to_owned(), p)
                }
                None => (current.clone().unwrap_or_default(), part),
            };
            // Kafka 3.9.1's tool leaves the topic out (`(0,1,2)`): the groups here consume
            // one topic each, so partitions without a topic are that topic's.
            if (t == topic || t.is_empty())
                && let Ok(p) = p.parse::<i32>()
            {
                partitions.push(p);
            }
        }
        rows.push(MemberRow {
            consumer_id: cell(line, 0),
            instance_id: cell(line, 1),
            client_id: cell(line, 3),
            partitions,
        });
    }
    rows
}

/// The shared cluster's group members.
pub fn members(group: &str, topic: &str) -> Vec<MemberRow> {
    members_in(&kafka_dir(), group, topic)
}

/// Waits until `check` holds for the group's members, or panics after `timeout`.
#[track_caller]
pub fn wait_for_members(
    dir: &std::path::Path,
    group: &str,
    topic: &str,
    timeout: Duration,
    check: impl Fn(&[MemberRow]) -> bool,
) -> Vec<MemberRow> {
    eventually(
        timeout,
        format!("the members of {group} to get there"),
        || {
            let rows = members_in(dir, group, topic);
            if check(&rows) { Ok(rows) } else { Err(rows) }
        },
    )
}

/// Whether every partition `0..partitions` has exactly one owner among `rows`.
pub fn one_owner_each(rows: &[MemberRow], partitions: i32) -> bool {
    let mut all: Vec<i32> = rows.iter().flat_map(|r| r.partitions.clone()).collect();
    all.sort_unstable();
    all == (0..partitions).collect::<Vec<_>>()
}

const STAND_IN: &str = r#"
import asyncio, json, signal, sys
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

bootstrap, group, requests, responses, name = sys.argv[1:6]

def say(**event):
    print(json.dumps(event), flush=True)

class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        pass
    def on_partitions_assigned(self, assigned):
        say(event="assigned", partitions=sorted(tp.partition for tp in assigned))

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # As hetida configures its consumer (roundrobin is aiokafka's default), but committing
    # only after the response is produced, so the stand-in loses nothing either.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                client_id=name)
    consumer.subscribe([requests], listener=Listener())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    say(event="started")
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    try:
                        job = json.loads(r.value)["job_id"]
                    except Exception:
                        job = None
                    body = json.dumps({"job_id": job, "result": "ok", "answered_by": name})
                    await producer.send_and_wait(responses, body.encode(), key=r.key)
                    say(event="record", partition=tp.partition, offset=r.offset)
                try:
                    await consumer.commit({tp: records[-1].offset + 1})
                except (CommitFailedError, IllegalStateError) as e:
                    # The group rebalanced while the batch was answered and the partition may
                    # have gone: its new owner answers from the last commit on (at-least-once),
                    # as one of hetida's consumers would; the stand-in consumes on.
                    say(event="commit refused", partition=tp.partition, error=type(e).__name__)
    finally:
        await consumer.stop()
        await producer.stop()
        say(event="stopped")

asyncio.run(main())
"#;

/// An aiokafka member of the group standing in for one of hetida's backend workers.
#[derive(Debug)]
pub struct AiokafkaMember {
    child: Child,
    /// Its lines (JSON events, and stderr lines as events), read as they come.
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl AiokafkaMember {
    pub fn start(
        bootstrap: &str,
        group: &str,
        requests: &str,
        responses: &str,
        name: &str,
    ) -> AiokafkaMember {
        let mut child = python_with_aiokafka()
            .args(["-c", STAND_IN, bootstrap, group, requests, responses, name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = events.clone();
        Self::read_lines(stdout, move |line| serde_json::from_str(&line).ok(), sink);
        // Python's own complaints (a traceback, aiokafka's warnings) join the events, so a
        // failure that shows the events shows why the stand-in stopped.
        let stderr = child.stderr.take().unwrap();
        let sink = events.clone();
        let as_event = |line: String| Some(serde_json::json!({"event": "stderr", "line": line}));
        Self::read_lines(stderr, as_event, sink);
        let member = AiokafkaMember { child, events };
        member.wait_for("started", Duration::from_secs(60));
        member
    }

    /// Reads `from` line by line on a thread of its own into `sink`, as `event` makes them.
    fn read_lines(
        from: impl std::io::Read + Send + 'static,
        event: impl Fn(String) -> Option<serde_json::Value> + Send + 'static,
        sink: Arc<Mutex<Vec<serde_json::Value>>>,
    ) {
        #[allow(
            clippy::disallowed_methods,
            reason = "a test's reader thread; the ban is for the service"
        )]
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if let Some(v) = event(line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
    }

    /// Waits for an event of `kind`.
    #[track_caller]
    pub fn wait_for(&self, kind: &str, timeout: Duration) {
        eventually(
            timeout,
            format!("a {kind} event of the aiokafka member"),
            || {
                let events = self.events.lock().unwrap();
                if events.iter().any(|e| e["event"] == kind) {
                    Ok(())
                } else {
                    Err(events.clone())
                }
            },
        );
    }

    /// Its last assignment.
    pub fn assigned(&self) -> Option<Vec<i32>> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["event"] == "assigned")
            .map(|e| {
                e["partitions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_i64().unwrap() as i32)
                    .collect()
            })
    }

    /// (partition, offset) of every record it answered.
    pub fn answered(&self) -> Vec<(i32, i64)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "record")
            .map(|e| {
                (
                    e["partition"].as_i64().unwrap() as i32,
                    e["offset"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// SIGTERM: it commits, leaves the group and exits.
    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for AiokafkaMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the group of `topics` (on the test broker) has `members` members and each of the
/// request topic's `partitions` has exactly one owner, shared out evenly (as every assignor does
/// for one topic).
#[track_caller]
pub fn wait_for_split(
    topics: &super::service::Topics,
    members: usize,
    partitions: i32,
) -> Vec<MemberRow> {
    wait_for_members(
        &kafka_dir(),
        &topics.group,
        &topics.requests,
        Duration::from_secs(120),
        |rows| {
            rows.len() == members
                && one_owner_each(rows, partitions)
                && rows
                    .iter()
                    .all(|r| r.partitions.len().abs_diff(partitions as usize / members) <= 1)
        },
    )
}

/// How many of `jobs` have no response in `answered` (keyed by job id).
pub fn unanswered<V>(
    jobs: &[uuid::Uuid],
    answered: &std::collections::HashMap<String, V>,
) -> usize {
    jobs.iter()
        .filter(|j| !answered.contains_key(&j.to_string()))
        .count()
}

/// The coordinator failover both group protocols must survive: on a cluster of three with
/// replicated topics, `serve --workers 2` (consumer options `options` given the bootstrap and
/// group) works through 800 requests while the broker that coordinates its group stops for
/// 10 s; asserts that the stop came with requests in flight and that none is lost. Returns the
/// cluster, topics and service for further checks.
pub async fn coordinator_stops_under_load(
    prefix: &str,
    options: impl Fn(&str, &str) -> String,
) -> (
    Arc<super::kafka::OwnCluster>,
    super::service::Topics,
    super::service::ServiceProcess,
) {
    use super::service::{
        ServiceProcess, Topics, job_of, keyed_requests, produce_requests, read_jobs,
    };
    let wait = Duration::from_secs(120);
    let cluster = super::kafka::OwnCluster::start(3);
    let double = super::runtime_double::RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(20));
    let client = cluster.client().await;
    let topics = Topics::create_replicated(&client, prefix, 6, 3).await;
    let service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        &double.engine_url(),
        &["--workers", "2"],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &options(&cluster.bootstrap, &topics.group),
        )],
    );
    wait_for_members(
        &cluster.dir(),
        &topics.group,
        &topics.requests,
        wait,
        |rows| rows.len() == 2 && one_owner_each(rows, 6),
    );
    let coordinator = cluster.coordinator_node(&topics.group);
    let (jobs, records) = keyed_requests(800);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 50, wait).await;
    let cluster = Arc::new(cluster);
    let restart = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.restart_nodes(Some(coordinator), Duration::from_secs(10))
    });
    assert!(
        double.calls() < jobs.len() as u64,
        "all done before the coordinator stopped"
    );
    restart.await.unwrap();
    let client = cluster.client().await;
    let responses = read_jobs(&client, &topics.responses, &jobs, wait).await;
    let answered: std::collections::HashMap<String, ()> = responses
        .iter()
        .map(|(_, r)| (job_of(r.record.value.as_deref().unwrap()), ()))
        .collect();
    assert_eq!(
        unanswered(&jobs, &answered),
        0,
        "log:\n{}",
        service.log_text()
    );
    (cluster, topics, service)
}
