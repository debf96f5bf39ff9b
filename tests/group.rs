//! Every worker a member of the Kafka consumer group, with either group protocol: classic (the
//! members' leader assigns, as aiokafka's roundrobin does) or KIP-848's consumer protocol
//! (`group_protocol` `consumer`, Kafka 4.x: the broker assigns, and a member joining or leaving
//! moves only the partitions that must move). Instances share the partitions, hetida's aiokafka
//! consumers can be members beside them, and rebalances lose nothing.
//!
//! The scenarios both protocols must pass (kill -9, HUP, TTIN and TTOU, a member joining under
//! load, the coordinator's broker stopping, a rebalance storm) are written once, for a
//! [`Protocol`], and run as one test per protocol (`<scenario>::classic`,
//! `<scenario>::consumer`); where the protocols promise different things (a generation that
//! stays, partitions that stay), the scenario asserts each protocol's promise. The tests of one
//! protocol's own behaviour come after them. Each test asserts what the group looks like in
//! Kafka's own tool before it relies on it.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::Value;
use support::group::{
    AiokafkaMember, MemberRow, members, one_owner_each, unanswered, wait_for_members,
    wait_for_split,
};
use support::kafka::{client, kafka_bootstrap, kafka_dir};
use support::runtime_double::RuntimeDouble;
use support::service::{
    KeyValue, ServiceProcess, Topics, job_of, keyed_requests, produce_requests, read_jobs,
};
use support::wait::{Shown, eventually, eventually_async, executions};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// How often a classic leader looks at the request topic's partition count in these tests.
const PARTITION_CHECK: Duration = Duration::from_millis(500);

/// The group protocol a scenario's workers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// JoinGroup/SyncGroup; our leader assigns with aiokafka's roundrobin.
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat; the broker assigns.
    Consumer,
}

impl Protocol {
    /// A topic and group name prefix, so that the two runs of a scenario never share a name
    /// and a broker's log tells them apart.
    fn prefix(self, scenario: &str) -> String {
        match self {
            Protocol::Classic => format!("grp-{scenario}"),
            Protocol::Consumer => format!("kip848-{scenario}"),
        }
    }

    /// The option that picks the protocol, after hetida's usual consumer options.
    fn option(self) -> &'static str {
        match self {
            Protocol::Classic => "",
            Protocol::Consumer => r#", "group_protocol": "consumer""#,
        }
    }

    /// hetida's consumer options for `group` with static members named `<instance>-<i>`. A
    /// classic leader looks at the partition count every `PARTITION_CHECK`, so that a test sees
    /// within moments whether it mistakes the topic for grown.
    fn options(self, bootstrap: &str, group: &str, instance: &str) -> String {
        let metadata = match self {
            Protocol::Classic => format!(
                r#", "metadata_max_age_ms": {}"#,
                PARTITION_CHECK.as_millis()
            ),
            Protocol::Consumer => String::new(),
        };
        format!(
            r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest", "group_instance_id": "{instance}"{metadata}{}}}"#,
            self.option()
        )
    }

    /// The field of a "worker consuming" line that counts the group's rebalances: the
    /// generation (classic) or the member's epoch (consumer protocol).
    fn generation_field(self) -> &'static str {
        match self {
            Protocol::Classic => "generation=",
            Protocol::Consumer => "epoch=",
        }
    }
}

/// One test per protocol for the scenario `async fn $scenario(protocol: Protocol)`.
macro_rules! for_both_protocols {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread")]
            async fn classic() {
                super::$scenario(super::Protocol::Classic).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn consumer() {
                super::$scenario(super::Protocol::Consumer).await;
            }
        }
    )*};
}

for_both_protocols!(
    two_instances_share_the_partitions_and_answer_each_request_once,
    a_member_joining_under_load_takes_its_share_and_nothing_is_lost,
    kill_9_of_a_whole_instance_hands_its_partitions_to_the_other,
    kill_9_of_a_worker_loses_nothing,
    hup_replaces_each_static_member_and_it_keeps_its_partitions,
    ttin_and_ttou_add_and_remove_one_member_each,
    the_coordinators_broker_stopping_under_load_loses_nothing,
    a_rebalance_storm_loses_nothing,
);

fn start(
    protocol: Protocol,
    topics: &Topics,
    url: &str,
    workers: &str,
    instance: &str,
) -> ServiceProcess {
    let bootstrap = kafka_bootstrap().join(",");
    ServiceProcess::start_with(
        topics,
        url,
        &["--workers", workers],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &protocol.options(&bootstrap, &topics.group, instance),
        )],
    )
}

/// Issue 27: a second `serve` of the same group on the same host, both with default settings.
/// Their default instance ids (`<host>-<i>`) would collide, and the second would fence the first;
/// instead the second takes the host's next slot: instance ids `<host>.2-<i>` and the default
/// metrics port + 1. Both stay members, share the partitions and answer each request once.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_with_default_settings_on_one_host_serves_beside_the_first() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "host-slots", 4).await;
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let second_port = 9465; // src/config's DEFAULT_METRICS_ADDR + 1
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", second_port)).is_ok(),
        "the premise: port {second_port} is free"
    );
    let first = ServiceProcess::start(&topics, &double.engine_url(), &["--workers", "1"]);
    first.wait_workers(1, WAIT);
    let second = ServiceProcess::start_with_default_metrics(
        &topics,
        &double.engine_url(),
        &["--workers", "1"],
    );
    let rows = wait_for_members(
        &kafka_dir(),
        &topics.group,
        &topics.requests,
        WAIT,
        |rows| {
            rows.len() == 2
                && one_owner_each(rows, 4)
                && rows.iter().all(|r| !r.partitions.is_empty())
        },
    );
    let mut ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = [format!("{host}-0"), format!("{host}.2-0")];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{rows:?}");
    let log = second.log_text();
    assert!(log.contains("takes the next slot"), "{log}");
    assert!(
        log.contains(&format!("0.0.0.0:{second_port}")) && log.contains("metrics at /metrics"),
        "the second serves metrics on the next port:\n{log}"
    );

    let (jobs, requests) = keyed_requests(40);
    produce_requests(&client, &topics.requests, &requests).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let answered: Vec<String> = responses
        .iter()
        .map(|(_, r)| job_of(r.record.value.as_ref().unwrap()))
        .collect();
    let once: HashSet<&String> = answered.iter().collect();
    assert_eq!(answered.len(), jobs.len(), "each request answered once");
    assert_eq!(once.len(), jobs.len());
    for (name, service) in [("first", &first), ("second", &second)] {
        let log = service.log_text();
        assert!(
            !log.contains("ERROR"),
            "the {name} serve has not been fenced or failed:\n{log}"
        );
        assert_eq!(
            service.workers().len(),
            1,
            "the {name} serve runs its worker"
        );
    }
}

/// Lets a classic leader look at the partition count several times. This pause is the point:
/// what is tested is that nothing happens (a leader that came back as the same static member
/// must not mistake the topic for grown and rebalance), and no condition says that it will not.
async fn several_partition_checks() {
    tokio::time::sleep(PARTITION_CHECK * 5).await;
}

/// Responses per job id.
fn answers(records: &[(i32, rskafka::record::RecordAndOffset)]) -> HashMap<String, Vec<Value>> {
    let mut by_job: HashMap<String, Vec<Value>> = HashMap::new();
    for (_, r) in records {
        let value = r.record.value.as_deref().unwrap();
        let v: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
        by_job.entry(job_of(value)).or_default().push(v);
    }
    by_job
}

/// Per job, when each of its responses was written.
fn answered_at(
    records: &[(i32, rskafka::record::RecordAndOffset)],
) -> HashMap<String, Vec<DateTime<Utc>>> {
    let mut at: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for (_, r) in records {
        at.entry(job_of(r.record.value.as_deref().unwrap()))
            .or_default()
            .push(r.record.timestamp);
    }
    at
}

/// The generations (classic) or epochs (consumer protocol) the workers of `log` consumed in,
/// in order of their "worker consuming" lines.
fn generations(protocol: Protocol, log: &str) -> Vec<i64> {
    let field = protocol.generation_field();
    log.lines()
        .filter(|l| l.contains("worker consuming"))
        .filter_map(|l| {
            let at = l.find(field)? + field.len();
            l[at..].split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Whether the worker `pid` has logged that it consumes (every line names its process).
fn consumes(log: &str, pid: i32) -> bool {
    let process = format!(" pid={pid} ");
    log.lines()
        .any(|l| l.contains("worker consuming") && l.contains(&process))
}

/// Partition -> owning instance id.
fn owners(rows: &[MemberRow]) -> BTreeMap<i32, String> {
    rows.iter()
        .flat_map(|r| r.partitions.iter().map(|p| (*p, r.instance_id.clone())))
        .collect()
}

fn assert_each_once<V>(jobs: &[Uuid], by_job: &HashMap<String, Vec<V>>, log: &str) {
    let lost: Vec<&Uuid> = jobs
        .iter()
        .filter(|j| !by_job.contains_key(&j.to_string()))
        .collect();
    assert!(lost.is_empty(), "{} lost; log:\n{log}", lost.len());
    let repeated = jobs
        .iter()
        .filter(|j| by_job[&j.to_string()].len() > 1)
        .count();
    assert_eq!(
        repeated, 0,
        "{repeated} answered more than once; log:\n{log}"
    );
}

/// Produces `batch` requests every 100 ms until `stop`; returns every job with its partition.
async fn steady_load(
    client: Arc<rskafka::client::Client>,
    topic: String,
    partitions: i32,
    batch: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(Uuid, i32)> {
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let (jobs, records): (Vec<Uuid>, Vec<KeyValue>) = keyed_requests(batch);
        produce_requests(&client, &topic, &records).await;
        for (job, (key, _)) in jobs.into_iter().zip(&records) {
            let p = hd_kafka_exec::kafka::producer::partition_for_key(
                key.as_deref().unwrap(),
                partitions,
            );
            sent.push((job, p));
        }
    }
    sent
}

/// Acceptance: two instances of two workers each on one group and eight partitions: four
/// members, every partition owned by exactly one, and 2,000 requests answered exactly once.
async fn two_instances_share_the_partitions_and_answer_each_request_once(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("two"), 8).await;
    let a = start(protocol, &topics, &double.engine_url(), "2", "instance-a");
    let b = start(protocol, &topics, &double.engine_url(), "2", "instance-b");
    let rows = wait_for_split(&topics, 4, 8);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "instance-a-0",
            "instance-a-1",
            "instance-b-0",
            "instance-b-1"
        ]
    );
    assert!(
        rows.iter().all(|r| r.client_id == "hd-kafka-exec"),
        "{rows:?}"
    );

    let (jobs, records) = keyed_requests(2000);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let log = format!("{}\n{}", a.log_text(), b.log_text());
    assert_each_once(&jobs, &answers(&responses), &log);
    for j in &jobs {
        assert_eq!(
            double.calls_for_job(&j.to_string()),
            1,
            "job {j} executed once"
        );
    }
}

/// A third instance joins two under load: it takes its share of the partitions and each
/// request is answered exactly once. With the consumer protocol, only the new member's share
/// moves, and every partition that stays is answered on all through the rebalance (a classic
/// rebalance stops them all, and roundrobin may move more than the share).
async fn a_member_joining_under_load_takes_its_share_and_nothing_is_lost(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(2));
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("join"), 6).await;
    let url = double.engine_url();
    let a = start(protocol, &topics, &url, "1", "cp-a");
    let b = start(protocol, &topics, &url, "1", "cp-b");
    let before = owners(&wait_for_split(&topics, 2, 6));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(steady_load(
        client.clone(),
        topics.requests.clone(),
        6,
        12,
        stopped,
    ));
    // The load is being answered before the member joins, and still after it has its share.
    executions(&double, 24, WAIT).await;
    let joined = Utc::now();
    let c = start(protocol, &topics, &url, "1", "cp-c");
    let after = owners(&wait_for_split(&topics, 3, 6));
    let settled = Utc::now();
    executions(&double, double.calls() + 24, WAIT).await;
    stop.send(true).unwrap();
    let sent = load.await.unwrap();
    let jobs: Vec<Uuid> = sent.iter().map(|(j, _)| *j).collect();
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let log = format!("{}\n{}\n{}", a.log_text(), b.log_text(), c.log_text());

    let at = answered_at(&responses);
    let lost = unanswered(&jobs, &at);
    assert_eq!(lost, 0, "{lost} of {} lost; log:\n{log}", jobs.len());
    let repeated = at.values().filter(|v| v.len() > 1).count();
    assert_eq!(repeated, 0, "{repeated} answered twice; log:\n{log}");

    let moved: Vec<i32> = (0..6).filter(|p| before[p] != after[p]).collect();
    if protocol == Protocol::Consumer {
        assert_eq!(
            moved.len(),
            2,
            "only the new member's share moves: {before:?} -> {after:?}"
        );
        assert!(
            moved.iter().all(|p| after[p] == "cp-c-0"),
            "what moved went to the new member: {before:?} -> {after:?}"
        );
        let staying: Vec<i32> = (0..6).filter(|p| !moved.contains(p)).collect();
        let rebalance = (joined, settled);
        assert_answered_throughout(&sent, &at, &staying, rebalance, &after, &log);
    }
}

/// Every partition of `staying` was answered in both halves of the rebalance from `joined` to
/// `settled`: an eager rebalance stops them all for most of it.
fn assert_answered_throughout(
    sent: &[(Uuid, i32)],
    at: &HashMap<String, Vec<DateTime<Utc>>>,
    staying: &[i32],
    (joined, settled): (DateTime<Utc>, DateTime<Utc>),
    owners: &BTreeMap<i32, String>,
    log: &str,
) {
    // The premise: the rebalance took long enough to see whether the others paused (the
    // broker hands the new member its partitions at heartbeats seconds apart).
    let window = settled - joined;
    assert!(
        window >= chrono::TimeDelta::seconds(1),
        "the rebalance took only {window}: too short to tell"
    );
    let middle = joined + window / 2;
    for p in staying {
        let times: Vec<DateTime<Utc>> = sent
            .iter()
            .filter(|(_, q)| q == p)
            .flat_map(|(j, _)| at[&j.to_string()].clone())
            .collect();
        for (from, to) in [(joined, middle), (middle, settled)] {
            assert!(
                times.iter().any(|t| *t >= from && *t < to),
                "partition {p} (staying with {}) had no response between {from} and {to}; log:\n{log}",
                owners[p]
            );
        }
    }
}

/// Acceptance: kill -9 of a whole instance under load: after the session timeout (the
/// client's under classic, the broker's 45 s under the consumer protocol) the other instance
/// owns every partition, and nothing is lost.
async fn kill_9_of_a_whole_instance_hands_its_partitions_to_the_other(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(20));
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("kill"), 4).await;
    let a = start(protocol, &topics, &double.engine_url(), "1", "doomed");
    let b = start(protocol, &topics, &double.engine_url(), "1", "survivor");
    wait_for_split(&topics, 2, 4);
    let (jobs, records) = keyed_requests(600);
    produce_requests(&client, &topics.requests, &records).await;
    executions(&double, 50, WAIT).await;
    for pid in a.workers() {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }
    a.signal(Signal::SIGKILL);
    assert!(
        double.calls() < jobs.len() as u64,
        "all done before the kill: the test proves nothing"
    );
    let rows = wait_for_split(&topics, 1, 4);
    assert_eq!(rows[0].instance_id, "survivor-0");
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let lost = unanswered(&jobs, &answers(&responses));
    assert_eq!(lost, 0, "log:\n{}", b.log_text());
}

/// A static member killed with -9 is replaced by the supervisor under the same instance id; the
/// group gives the partitions back (under the consumer protocol after the old member's session,
/// as it could not leave), and nothing is lost.
async fn kill_9_of_a_worker_loses_nothing(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("killw"), 4).await;
    let service = start(protocol, &topics, &double.engine_url(), "2", "cp-k");
    wait_for_split(&topics, 2, 4);
    let (jobs, records) = keyed_requests(600);
    produce_requests(&client, &topics.requests, &records).await;
    let victim = service.workers()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let lost = unanswered(&jobs, &answered_at(&responses));
    assert_eq!(lost, 0, "log:\n{}", service.log_text());
    let rows = wait_for_split(&topics, 2, 4);
    assert!(
        rows.iter().all(|r| r.instance_id.starts_with("cp-k-")),
        "{rows:?}"
    );
    assert!(
        !service.workers().contains(&victim),
        "the killed worker was replaced"
    );
}

/// HUP replaces the workers one by one; each leaves as a static member that comes back (classic:
/// it does not leave; consumer protocol: epoch -2), so its replacement takes the same partitions
/// over and no partition moves. Under classic the generation stays: no rebalance at all.
async fn hup_replaces_each_static_member_and_it_keeps_its_partitions(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("hup"), 6).await;
    let service = start(protocol, &topics, &double.engine_url(), "2", "cp-h");
    let before = owners(&wait_for_split(&topics, 2, 6));
    let settled = *generations(protocol, &service.log_text())
        .iter()
        .max()
        .unwrap();
    let old: Vec<i32> = service.workers();
    let count = generations(protocol, &service.log_text()).len();
    service.signal(Signal::SIGHUP);
    eventually(WAIT, "both workers replaced and consuming", || {
        let now = service.workers();
        let log = service.log_text();
        let replaced = now.len() == 2 && now.iter().all(|p| !old.contains(p));
        if replaced && now.iter().all(|p| consumes(&log, *p)) {
            Ok(())
        } else {
            Err(Shown(format!("workers {now:?} (old {old:?}); log:\n{log}")))
        }
    });
    if protocol == Protocol::Classic {
        several_partition_checks().await;
        // Only the lines since the HUP: the first worker may have consumed alone in an earlier
        // generation before the second joined.
        let gens = generations(protocol, &service.log_text());
        assert!(
            gens[count..].iter().all(|g| *g == settled),
            "HUP rebalanced: {gens:?} (since the HUP: {:?})",
            &gens[count..]
        );
    }
    let after = owners(&wait_for_split(&topics, 2, 6));
    assert_eq!(
        before, after,
        "a static member's replacement gets its partitions"
    );
    // Each old worker left as a static member that comes back, so the broker let its
    // replacement have the instance id at once.
    let log = service.log_text();
    assert!(
        !log.contains("leaving the group failed") && !log.contains("still held by its previous"),
        "a replaced worker did not leave as a static member should; log:\n{log}"
    );
    let (jobs, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_each_once(&jobs, &answers(&responses), &service.log_text());
}

/// Acceptance: TTIN and TTOU under load add and remove one member each (TTOU retires the last
/// worker, which leaves at once, and the others take its partitions) and nothing is lost, not
/// even what comes after. Classic: one rebalance each. Consumer protocol: TTIN moves only the
/// new member's share.
async fn ttin_and_ttou_add_and_remove_one_member_each(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(5));
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("scale"), 6).await;
    let service = start(protocol, &topics, &double.engine_url(), "2", "scale");
    let before = owners(&wait_for_split(&topics, 2, 6));
    let settled = *generations(protocol, &service.log_text())
        .iter()
        .max()
        .unwrap();
    let workers = service.workers();
    let (jobs, records) = keyed_requests(1500);
    produce_requests(&client, &topics.requests, &records).await;
    service.signal(Signal::SIGTTIN);
    let grown = owners(&wait_for_split(&topics, 3, 6));
    assert!(
        workers.iter().all(|p| service.workers().contains(p)),
        "the old workers kept running"
    );
    if protocol == Protocol::Consumer {
        let moved = (0..6).filter(|p| before[p] != grown[p]).count();
        assert_eq!(
            moved, 2,
            "only the new member's share moves: {before:?} -> {grown:?}"
        );
    }
    service.signal(Signal::SIGTTOU);
    let rows = wait_for_split(&topics, 2, 6);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["scale-0", "scale-1"]);
    let (later, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let all: Vec<Uuid> = jobs.into_iter().chain(later).collect();
    let responses = read_jobs(&client, &topics.responses, &all, WAIT).await;
    let lost = unanswered(&all, &answers(&responses));
    assert_eq!(lost, 0, "log:\n{}", service.log_text());
    if protocol == Protocol::Classic {
        let top = *generations(protocol, &service.log_text())
            .iter()
            .max()
            .unwrap();
        assert_eq!(top, settled + 2, "one rebalance each");
    }
}

/// Acceptance: on a cluster of three, the broker that coordinates the group stops for 10 s
/// under load: the members find the new coordinator (or are fenced and rejoin), nothing is
/// lost, and the group is whole again under the new coordinator.
async fn the_coordinators_broker_stopping_under_load_loses_nothing(protocol: Protocol) {
    let (cluster, topics, _service) = support::group::coordinator_stops_under_load(
        &protocol.prefix("coord"),
        |bootstrap, group| {
            format!(
                r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest", "group_instance_id": "coord"{}}}"#,
                protocol.option()
            )
        },
    )
    .await;
    wait_for_members(
        &cluster.dir(),
        &topics.group,
        &topics.requests,
        WAIT,
        |rows| rows.len() == 2 && one_owner_each(rows, 6),
    );
}

/// Acceptance: a member joins or leaves every 2 s for 60 s under load: nothing is lost, and
/// repeats stay within the in-flight windows of the hand-overs.
async fn a_rebalance_storm_loses_nothing(protocol: Protocol) {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(5));
    let client = client().await;
    let topics = Topics::create(&client, &protocol.prefix("storm"), 6).await;
    let service = start(protocol, &topics, &double.engine_url(), "2", "storm");
    wait_for_split(&topics, 2, 6);
    let (jobs, records) = keyed_requests(3000);
    let producer = {
        let client = client.clone();
        let topic = topics.requests.clone();
        tokio::spawn(async move {
            for chunk in records.chunks(50) {
                produce_requests(&client, &topic, chunk).await;
                // Pacing: the requests arrive throughout the storm, not before it.
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        })
    };
    let storm_end = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut grow = true;
    let mut changes = 0;
    while tokio::time::Instant::now() < storm_end {
        service.signal(if grow {
            Signal::SIGTTIN
        } else {
            Signal::SIGTTOU
        });
        grow = !grow;
        changes += 1;
        // Pacing, the storm's own rhythm: the next change comes whether or not the group has
        // settled from this one.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    producer.await.unwrap();
    let responses = read_jobs(&client, &topics.responses, &jobs, Duration::from_secs(180)).await;
    let by_job = answers(&responses);
    let lost = unanswered(&jobs, &by_job);
    assert_eq!(lost, 0, "log:\n{}", service.log_text());
    let repeats: usize = by_job.values().map(|v| v.len() - 1).sum();
    assert!(
        repeats <= changes * 3 * 16,
        "{repeats} repeats over {changes} rebalances"
    );
    // Joins and leaves close together coalesce into one rebalance; most stand alone.
    let top = *generations(protocol, &service.log_text())
        .iter()
        .max()
        .unwrap();
    assert!(
        top > 10,
        "the storm happened: {top} generations for {changes} changes"
    );
}

/// Classic, acceptance: a group with an aiokafka consumer configured as hetida's (roundrobin):
/// the assignment is disjoint and complete whoever leads, our commits are accepted, and
/// requests on the aiokafka member's partitions are not executed by us.
async fn beside_an_aiokafka_member(aiokafka_leads: bool) {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-mixed", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let hetida = |topics: &Topics| {
        AiokafkaMember::start(
            &bootstrap,
            &topics.group,
            &topics.requests,
            &topics.responses,
            "hetida-backend",
        )
    };
    let classic = Protocol::Classic;
    let (theirs, ours) = if aiokafka_leads {
        let m = hetida(&topics);
        m.wait_for("assigned", WAIT);
        (
            m,
            start(classic, &topics, &double.engine_url(), "1", "ours"),
        )
    } else {
        let s = start(classic, &topics, &double.engine_url(), "1", "ours");
        s.wait_workers(1, WAIT);
        (hetida(&topics), s)
    };
    let rows = wait_for_split(&topics, 2, 4);
    let our_row: &MemberRow = rows.iter().find(|r| r.instance_id == "ours-0").unwrap();
    let our_partitions: HashSet<i32> = our_row.partitions.iter().copied().collect();
    let leader_line = ours
        .log_text()
        .lines()
        .rfind(|l| l.contains("worker consuming"))
        .unwrap()
        .to_owned();
    assert!(
        leader_line.contains(&format!("leader={}", !aiokafka_leads)),
        "the premise: {} leads; {leader_line}",
        if aiokafka_leads { "aiokafka" } else { "ours" }
    );

    let (jobs, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let by_job = answers(&responses);
    assert_each_once(&jobs, &by_job, &ours.log_text());
    let theirs_answered: HashSet<i32> = theirs.answered().iter().map(|(p, _)| *p).collect();
    assert!(
        theirs_answered.is_disjoint(&our_partitions),
        "{theirs_answered:?} vs {our_partitions:?}"
    );
    for (_, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
        if v.get("answered_by").is_none() {
            assert_eq!(double.calls_for_job(v["job_id"].as_str().unwrap()), 1);
        }
    }
    let executed: usize = jobs
        .iter()
        .filter(|j| double.calls_for_job(&j.to_string()) > 0)
        .count();
    assert!(
        executed > 0 && executed < jobs.len(),
        "both members took part: {executed} executed by us"
    );
    let mut ours_sorted: Vec<i32> = our_partitions.iter().copied().collect();
    ours_sorted.sort_unstable();
    commits_reach_the_ends(&client, &topics, &ours_sorted).await;
    theirs.stop();
}

/// Waits until the group's committed offsets of `partitions` are the ends of the request
/// topic's partitions: our commits were accepted.
async fn commits_reach_the_ends(
    client: &rskafka::client::Client,
    topics: &Topics,
    partitions: &[i32],
) {
    use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    eventually_async(WAIT, "our commits to reach the ends", || async {
        let mut coordinator =
            hd_kafka_exec::kafka::GroupCoordinator::new(kafka_bootstrap(), &topics.group, "test");
        let committed = coordinator
            .fetch(&topics.requests, partitions)
            .await
            .unwrap();
        let mut ends = BTreeMap::new();
        for p in partitions {
            let end = client
                .partition_client(topics.requests.clone(), *p, UnknownTopicHandling::Retry)
                .await
                .unwrap()
                .get_offset(OffsetAt::Latest)
                .await
                .unwrap();
            ends.insert(*p, end);
        }
        if ends
            .iter()
            .all(|(p, end)| committed.get(p).copied().flatten() == Some(*end))
        {
            Ok(())
        } else {
            Err(format!("committed {committed:?}, ends {ends:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_an_aiokafka_member_that_leads() {
    beside_an_aiokafka_member(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_an_aiokafka_member_when_ours_leads() {
    beside_an_aiokafka_member(false).await;
}

/// Classic, acceptance: rolling migration from hetida's consumers: two aiokafka members
/// consume, the service joins, the aiokafka members stop; requests arrive throughout. None is
/// lost, and repeats stay within the in-flight windows.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_migration_from_hetidas_consumers_loses_nothing() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-migrate", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let hetida = |name: &str| {
        AiokafkaMember::start(
            &bootstrap,
            &topics.group,
            &topics.requests,
            &topics.responses,
            name,
        )
    };
    let m1 = hetida("hetida-1");
    let m2 = hetida("hetida-2");
    wait_for_split(&topics, 2, 4);
    let (jobs, records) = keyed_requests(1200);
    let producer = {
        let client = client.clone();
        let topic = topics.requests.clone();
        tokio::spawn(async move {
            for chunk in records.chunks(20) {
                produce_requests(&client, &topic, chunk).await;
                // Pacing: the requests arrive throughout the migration.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // hetida's members are answering before the service joins.
    eventually(WAIT, "both aiokafka members answering", || {
        let answered = (m1.answered().len(), m2.answered().len());
        if answered.0 > 0 && answered.1 > 0 {
            Ok(())
        } else {
            Err(answered)
        }
    });
    let service = start(
        Protocol::Classic,
        &topics,
        &double.engine_url(),
        "2",
        "ours",
    );
    wait_for_split(&topics, 4, 4);
    m1.stop();
    m2.stop();
    let rows = wait_for_split(&topics, 2, 4);
    assert!(
        rows.iter().all(|r| r.instance_id.starts_with("ours-")),
        "{rows:?}"
    );
    producer.await.unwrap();
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let by_job = answers(&responses);
    let lost = unanswered(&jobs, &by_job);
    assert_eq!(lost, 0, "log:\n{}", service.log_text());
    let repeats: usize = by_job.values().map(|v| v.len() - 1).sum();
    // Each hand-over repeats at most what was in flight and uncommitted: two aiokafka members
    // (a fetch batch each) and our two workers' windows.
    assert!(repeats <= 2 * 500 + 2 * 16, "{repeats} repeats");
}

/// Classic, acceptance: with static membership a killed worker's replacement takes its
/// partitions back without a rebalance (the generation stays). How soon the replacement
/// consumes is the relay bench's "static replacement" row. (Under the consumer protocol the
/// broker refuses the replacement until the killed member's session ends, and the partitions
/// move meanwhile: `kill_9_of_a_worker_loses_nothing`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_static_members_replacement_comes_back_without_a_rebalance() {
    let classic = Protocol::Classic;
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-static", 4).await;
    let service = start(classic, &topics, &double.engine_url(), "2", "static");
    let before = wait_for_split(&topics, 2, 4);
    let settled = *generations(classic, &service.log_text())
        .iter()
        .max()
        .unwrap();

    let victim = service.workers()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    eventually(WAIT, "the killed worker's replacement consuming", || {
        let now = service.workers();
        let log = service.log_text();
        let replaced = now.len() == 2 && !now.contains(&victim);
        if replaced && now.iter().all(|p| consumes(&log, *p)) {
            Ok(())
        } else {
            Err(Shown(format!(
                "workers {now:?} (killed {victim}); log:\n{log}"
            )))
        }
    });
    let after = members(&topics.group, &topics.requests);
    let gens = generations(classic, &service.log_text());
    assert_eq!(
        *gens.last().unwrap(),
        settled,
        "a rebalance happened: {gens:?}"
    );
    let mut b: Vec<(String, Vec<i32>)> = before
        .iter()
        .map(|r| (r.instance_id.clone(), r.partitions.clone()))
        .collect();
    let mut a: Vec<(String, Vec<i32>)> = after
        .iter()
        .map(|r| (r.instance_id.clone(), r.partitions.clone()))
        .collect();
    b.sort();
    a.sort();
    assert_eq!(a, b, "the same instances own the same partitions");
    let (jobs, records) = keyed_requests(100);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_each_once(&jobs, &answers(&responses), &service.log_text());
}

/// Classic: two processes claiming one instance id: the one that joined first is fenced and
/// stops the service with an error saying so, instead of both taking the partitions in turns;
/// the other keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_with_the_same_instance_id_stops_the_first_clearly() {
    let classic = Protocol::Classic;
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-fence", 2).await;
    let mut first = start(classic, &topics, &double.engine_url(), "1", "twin");
    first.wait_workers(1, WAIT);
    let second = start(classic, &topics, &double.engine_url(), "1", "twin");
    let Some(status) = first.wait_exit(WAIT) else {
        panic!(
            "the fenced service stops by itself; first:\n{}\nsecond:\n{}",
            first.log_text(),
            second.log_text()
        );
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = first.log_text();
    assert!(log.contains("was fenced"), "log:\n{log}");
    assert!(log.contains("restarting cannot fix"), "log:\n{log}");
    second.wait_workers(1, WAIT);
    let (jobs, records) = keyed_requests(50);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_each_once(&jobs, &answers(&responses), &second.log_text());
    several_partition_checks().await;
    let gens = generations(classic, &second.log_text());
    assert!(
        gens.iter().all(|g| *g == gens[0]),
        "the replacing leader rebalanced: {gens:?}"
    );
    assert_eq!(second.workers().len(), 1, "the second keeps serving");
}

/// Consumer protocol: a group of an aiokafka consumer configured as hetida's (classic
/// protocol, roundrobin) that a consumer-protocol instance joins: Kafka converts the group
/// (online migration), the assignment is disjoint and complete, and each request is answered
/// once, by one or the other; the aiokafka member leaving and coming back loses nothing either.
#[tokio::test(flavor = "multi_thread")]
async fn beside_a_classic_aiokafka_member() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-mixed", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let hetida = || {
        AiokafkaMember::start(
            &bootstrap,
            &topics.group,
            &topics.requests,
            &topics.responses,
            "hetida-backend",
        )
    };
    let theirs = hetida();
    theirs.wait_for("assigned", WAIT);
    let ours = start(
        Protocol::Consumer,
        &topics,
        &double.engine_url(),
        "1",
        "cp-m",
    );
    let rows = wait_for_split(&topics, 2, 4);
    // The premise: the broker converted the classic group and assigns itself (its `uniform`
    // assignor, not the members' roundrobin).
    let state = support::kafka::scripts_kafka("state", &kafka_dir(), &[&topics.group]);
    assert!(
        state.contains("uniform"),
        "the group was not converted:\n{state}"
    );
    let our_partitions: Vec<i32> = rows
        .iter()
        .find(|r| r.instance_id == "cp-m-0")
        .unwrap()
        .partitions
        .clone();

    let (jobs, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let at = answered_at(&responses);
    assert_eq!(at.len(), jobs.len(), "log:\n{}", ours.log_text());
    assert!(
        at.values().all(|v| v.len() == 1),
        "a request answered twice"
    );
    let theirs_answered: Vec<i32> = theirs.answered().iter().map(|(p, _)| *p).collect();
    assert!(
        theirs_answered.iter().all(|p| !our_partitions.contains(p)),
        "{theirs_answered:?} vs ours {our_partitions:?}"
    );
    let executed = jobs
        .iter()
        .filter(|j| double.calls_for_job(&j.to_string()) > 0)
        .count();
    assert!(
        executed > 0 && executed < jobs.len(),
        "both members took part: {executed} of {} executed by us",
        jobs.len()
    );

    // The aiokafka member leaves (all partitions are ours), then comes back.
    theirs.stop();
    wait_for_split(&topics, 1, 4);
    let (jobs, records) = keyed_requests(100);
    produce_requests(&client, &topics.requests, &records).await;
    let back = hetida();
    back.wait_for("assigned", WAIT);
    wait_for_split(&topics, 2, 4);
    let (more, records) = keyed_requests(100);
    produce_requests(&client, &topics.requests, &records).await;
    let all: Vec<Uuid> = jobs.into_iter().chain(more).collect();
    let responses = read_jobs(&client, &topics.responses, &all, WAIT).await;
    let at = answered_at(&responses);
    let lost = unanswered(&all, &at);
    assert_eq!(lost, 0, "log:\n{}", ours.log_text());
    back.stop();
}

/// Consumer protocol: a broker that forbids converting a classic group
/// (`group.consumer.migration.policy` `disabled`) refuses a consumer-protocol member in a group
/// with a classic member: `serve` stops at once with the broker's reason instead of retrying
/// for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_forbids_the_migration_stops_serve_with_its_reason() {
    let cluster = support::kafka::OwnCluster::start(1);
    let properties = cluster.dir().join("node1/server.properties");
    let mut config = std::fs::read_to_string(&properties).unwrap();
    config.push_str("\ngroup.consumer.migration.policy=disabled\n");
    std::fs::write(&properties, config).unwrap();
    cluster.restart(Duration::from_secs(1));
    let client = cluster.client().await;
    let topics = Topics::create(&client, "kip848-nomig", 2).await;
    let theirs = AiokafkaMember::start(
        &cluster.bootstrap,
        &topics.group,
        &topics.requests,
        &topics.responses,
        "hetida-backend",
    );
    theirs.wait_for("assigned", WAIT);
    let options = format!(
        r#"{{"bootstrap_servers": "{}", "group_id": "{}", "group_protocol": "consumer"}}"#,
        cluster.bootstrap, topics.group
    );
    let mut service = ServiceProcess::start_on(
        &cluster.bootstrap,
        &topics,
        "http://127.0.0.1:1/",
        &["--workers", "1"],
        &[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &options)],
    );
    let status = service.wait_exit(WAIT).expect("serve stopped");
    assert!(!status.success(), "{status:?}");
    let log = service.log_text();
    assert!(
        log.contains("online upgrade is disabled"),
        "the broker's reason is in the log:\n{log}"
    );
    theirs.stop();
}

/// Consumer protocol: a worker stopped (SIGSTOP) longer than the broker's session timeout
/// (45 s) is expired: the other takes its partitions. Continued, its next heartbeat is refused
/// (fenced or unknown), so it drops its partitions without a commit and joins again with epoch
/// 0; the group ends whole, and every request is answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_expired_by_the_broker_rejoins_and_nothing_is_lost() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-fence", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        // No hung-worker check: the stopped worker must live on.
        &["--workers", "2", "--timeout", "0"],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &Protocol::Consumer.options(&bootstrap, &topics.group, "cp-f"),
        )],
    );
    wait_for_split(&topics, 2, 4);
    let victim = service.workers()[0];
    let pid = nix::unistd::Pid::from_raw(victim);
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
    // The broker expires it and gives everything to the other.
    let rows = wait_for_members(
        &kafka_dir(),
        &topics.group,
        &topics.requests,
        WAIT,
        |rows| rows.len() == 1 && one_owner_each(rows, 4),
    );
    let (jobs, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let stat = std::fs::read_to_string(format!("/proc/{victim}/stat")).unwrap();
    assert!(
        stat.contains(") T "),
        "the premise: the worker is stopped: {stat}"
    );
    nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
    wait_for_split(&topics, 2, 4);
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let at = answered_at(&responses);
    let lost = unanswered(&jobs, &at);
    assert_eq!(lost, 0, "log:\n{}", service.log_text());
    assert!(
        service.log_text().contains("joining again"),
        "the expired worker rejoined (after {rows:?}); log:\n{}",
        service.log_text()
    );
    assert!(
        service.workers().contains(&victim),
        "the same process rejoined"
    );
}
