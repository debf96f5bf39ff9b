//! Workers as members of a consumer group that speaks the consumer protocol of KIP-848
//! (`group_protocol` `consumer`, Kafka 4.x): the broker assigns, and a member joining or leaving
//! moves only the partitions that must move while the others are consumed on. Each test asserts
//! the group's state in Kafka's own tool before it relies on it.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use support::group::{MemberRow, one_owner_each, unanswered, wait_for_members, wait_for_split};
use support::kafka::{client, kafka_bootstrap, kafka_dir};
use support::runtime_double::RuntimeDouble;
use support::service::{
    KeyValue, ServiceProcess, Topics, job_of, keyed_requests, produce_requests, read_jobs,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// hetida's consumer options for `topics` with the consumer protocol, static members named
/// `<prefix>-<i>`.
fn options(topics: &Topics, prefix: &str) -> String {
    format!(
        r#"{{"bootstrap_servers": "{}", "group_id": "{}", "auto_offset_reset": "earliest", "group_instance_id": "{prefix}", "group_protocol": "consumer"}}"#,
        kafka_bootstrap().join(","),
        topics.group,
    )
}

fn start(topics: &Topics, url: &str, workers: &str, prefix: &str) -> ServiceProcess {
    ServiceProcess::start_with(
        topics,
        url,
        &["--workers", workers],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &options(topics, prefix),
        )],
    )
}

/// Partition -> owning instance id.
fn owners(rows: &[MemberRow]) -> BTreeMap<i32, String> {
    rows.iter()
        .flat_map(|r| r.partitions.iter().map(|p| (*p, r.instance_id.clone())))
        .collect()
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

/// A third instance joins two under load: only its share of the partitions moves, every
/// partition that stays is answered on all through the rebalance, and each request is answered
/// exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_joining_moves_only_its_share_and_the_rest_go_on() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(2));
    let client = client().await;
    let topics = Topics::create(&client, "kip848-join", 6).await;
    let a = start(&topics, &double.engine_url(), "1", "cp-a");
    let b = start(&topics, &double.engine_url(), "1", "cp-b");
    let before = owners(&wait_for_split(&topics, 2, 6));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(steady_load(
        client.clone(),
        topics.requests.clone(),
        6,
        12,
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let joined = Utc::now();
    let c = start(&topics, &double.engine_url(), "1", "cp-c");
    let after = owners(&wait_for_split(&topics, 3, 6));
    let settled = Utc::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    assert_eq!(
        moved.len(),
        2,
        "only the new member's share moves: {before:?} -> {after:?}"
    );
    assert!(
        moved.iter().all(|p| after[p] == "cp-c-0"),
        "what moved went to the new member: {before:?} -> {after:?}"
    );
    // The premise: the rebalance took long enough to see whether the others paused (the
    // broker hands the new member its partitions at heartbeats seconds apart).
    let window = settled - joined;
    assert!(
        window >= chrono::TimeDelta::seconds(1),
        "the rebalance took only {window}: too short to tell"
    );
    // Every partition that stayed was answered in both halves of the rebalance: an eager
    // rebalance stops them all for most of it.
    let middle = joined + window / 2;
    for p in (0..6).filter(|p| !moved.contains(p)) {
        let times: Vec<DateTime<Utc>> = sent
            .iter()
            .filter(|(_, q)| *q == p)
            .flat_map(|(j, _)| at[&j.to_string()].clone())
            .collect();
        for (from, to) in [(joined, middle), (middle, settled)] {
            assert!(
                times.iter().any(|t| *t >= from && *t < to),
                "partition {p} (staying with {}) had no response between {from} and {to}; log:\n{log}",
                after[&p]
            );
        }
    }
}

/// A static member killed with -9 is replaced by the supervisor under the same instance id; the
/// group gives the partitions back (after the old member's session, if it did not leave), and
/// nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_a_worker_loses_nothing() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-kill", 4).await;
    let service = start(&topics, &double.engine_url(), "2", "cp-k");
    wait_for_split(&topics, 2, 4);
    let (jobs, records) = keyed_requests(600);
    produce_requests(&client, &topics.requests, &records).await;
    let victim = service.workers()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let at = answered_at(&responses);
    let lost = unanswered(&jobs, &at);
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

/// TTOU retires the last worker: it leaves the group at once (epoch -1), the others take its
/// partitions, and requests after that are answered.
#[tokio::test(flavor = "multi_thread")]
async fn ttou_hands_the_retired_workers_partitions_over() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-ttou", 4).await;
    let service = start(&topics, &double.engine_url(), "2", "cp-t");
    wait_for_split(&topics, 2, 4);
    service.signal(Signal::SIGTTOU);
    let rows = wait_for_split(&topics, 1, 4);
    assert_eq!(rows[0].instance_id, "cp-t-0", "{rows:?}");
    let (jobs, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_eq!(
        answered_at(&responses).len(),
        jobs.len(),
        "log:\n{}",
        service.log_text()
    );
}

/// A group of an aiokafka consumer configured as hetida's (classic protocol, roundrobin) that a
/// consumer-protocol instance joins: Kafka converts the group (online migration), the
/// assignment is disjoint and complete, and each request is answered once, by one or the other;
/// the aiokafka member leaving and coming back loses nothing either.
#[tokio::test(flavor = "multi_thread")]
async fn beside_a_classic_aiokafka_member() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-mixed", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let hetida = || {
        support::group::AiokafkaMember::start(
            &bootstrap,
            &topics.group,
            &topics.requests,
            &topics.responses,
            "hetida-backend",
        )
    };
    let theirs = hetida();
    theirs.wait_for("assigned", WAIT);
    let ours = start(&topics, &double.engine_url(), "1", "cp-m");
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

/// HUP replaces the workers one by one; each leaves as a static member that comes back
/// (epoch -2), so its replacement takes the same partitions over and the other worker's are
/// never moved. TTIN then adds a member, which takes a share.
#[tokio::test(flavor = "multi_thread")]
async fn hup_keeps_each_static_members_partitions_and_ttin_adds_a_member() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-hup", 6).await;
    let service = start(&topics, &double.engine_url(), "2", "cp-h");
    let before = owners(&wait_for_split(&topics, 2, 6));
    let old: Vec<i32> = service.workers();
    service.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = service.workers();
        let replaced = now.len() == 2 && now.iter().all(|p| !old.contains(p));
        let consuming = service.log_text().matches("worker consuming").count();
        // Two first assignments, then one per replacement.
        if replaced && consuming >= 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the workers were not replaced; log:\n{}",
            service.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
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

    service.signal(Signal::SIGTTIN);
    let grown = owners(&wait_for_split(&topics, 3, 6));
    let moved = (0..6).filter(|p| before[p] != grown[p]).count();
    assert_eq!(
        moved, 2,
        "only the new member's share moves: {before:?} -> {grown:?}"
    );
    let (jobs, records) = keyed_requests(200);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_eq!(
        answered_at(&responses).len(),
        jobs.len(),
        "log:\n{}",
        service.log_text()
    );
}

/// The broker that coordinates the group stops for 10 s under load (three brokers, topics
/// replicated): the coordinator moves, members heartbeat to the new one (or are fenced and
/// rejoin), and no request is lost.
#[tokio::test(flavor = "multi_thread")]
async fn the_coordinators_broker_stopping_under_load_loses_nothing() {
    let (cluster, topics, _service) =
        support::group::coordinator_stops_under_load("kip848-coord", |bootstrap, group| {
            format!(
                r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest", "group_instance_id": "cp-coord", "group_protocol": "consumer"}}"#
            )
        })
        .await;
    // And the group is whole again under the new coordinator.
    wait_for_members(
        &cluster.dir(),
        &topics.group,
        &topics.requests,
        WAIT,
        |rows| rows.len() == 2 && one_owner_each(rows, 6),
    );
}

/// A broker that forbids converting a classic group (`group.consumer.migration.policy`
/// `disabled`) refuses a consumer-protocol member in a group with a classic member: `serve`
/// stops at once with the broker's reason instead of retrying for ever.
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
    let theirs = support::group::AiokafkaMember::start(
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

/// A worker stopped (SIGSTOP) longer than the broker's session timeout (45 s) is expired: the
/// other takes its partitions. Continued, its next heartbeat is refused (fenced or unknown),
/// so it drops its partitions without a commit and joins again with epoch 0; the group ends
/// whole, and every request is answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_expired_by_the_broker_rejoins_and_nothing_is_lost() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "kip848-fence", 4).await;
    let service = ServiceProcess::start_with(
        &topics,
        &double.engine_url(),
        // No hung-worker check: the stopped worker must live on.
        &["--workers", "2", "--timeout", "0"],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &options(&topics, "cp-f"),
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
