//! Every worker a member of the Kafka consumer group (classic protocol): instances share the
//! partitions, hetida's aiokafka consumers can be members beside them, and rebalances lose
//! nothing. Each test asserts what the group looks like in Kafka's own tool before it relies
//! on it.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::group::{AiokafkaMember, MemberRow, members, unanswered, wait_for_split};
use support::kafka::{client, kafka_bootstrap};
use support::runtime_double::RuntimeDouble;
use support::service::{
    ServiceProcess, Topics, job_of, keyed_requests, produce_requests, read_jobs,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

/// How often the leader looks at the request topic's partition count in these tests.
const PARTITION_CHECK: Duration = Duration::from_millis(500);

/// hetida's consumer options for `topics`, with static members named `<prefix>-<i>`.
fn options(bootstrap: &str, topics: &Topics, prefix: &str) -> String {
    format!(
        r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{}", "auto_offset_reset": "earliest", "group_instance_id": "{prefix}", "metadata_max_age_ms": {}}}"#,
        topics.group,
        PARTITION_CHECK.as_millis()
    )
}

/// Lets the leader look at the partition count several times: a leader that came back as the
/// same static member must not mistake the topic for grown and rebalance.
async fn several_partition_checks() {
    tokio::time::sleep(PARTITION_CHECK * 5).await;
}

fn start(topics: &Topics, url: &str, workers: &str, prefix: &str) -> ServiceProcess {
    let bootstrap = kafka_bootstrap().join(",");
    ServiceProcess::start_with(
        topics,
        url,
        &["--workers", workers],
        &[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &options(&bootstrap, topics, prefix),
        )],
    )
}

/// Responses per job id, and which of them came from the aiokafka stand-in.
fn answers(records: &[(i32, rskafka::record::RecordAndOffset)]) -> HashMap<String, Vec<Value>> {
    let mut by_job: HashMap<String, Vec<Value>> = HashMap::new();
    for (_, r) in records {
        let value = r.record.value.as_deref().unwrap();
        let v: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
        by_job.entry(job_of(value)).or_default().push(v);
    }
    by_job
}

/// The generations the workers of `log` consumed in, in order of their "worker consuming" lines.
fn generations(log: &str) -> Vec<i64> {
    log.lines()
        .filter(|l| l.contains("worker consuming"))
        .filter_map(|l| {
            let at = l.find("generation=")? + "generation=".len();
            l[at..].split_whitespace().next()?.parse().ok()
        })
        .collect()
}

fn assert_each_once(jobs: &[Uuid], by_job: &HashMap<String, Vec<Value>>, log: &str) {
    let lost: Vec<&Uuid> = jobs
        .iter()
        .filter(|j| !by_job.contains_key(&j.to_string()))
        .collect();
    assert!(lost.is_empty(), "{} lost; log:\n{log}", lost.len());
    let repeated = jobs
        .iter()
        .filter(|j| by_job[&j.to_string()].len() > 1)
        .count();
    assert_eq!(repeated, 0, "{repeated} answered more than once");
}

/// Acceptance 1: two instances of two workers each on one group and eight partitions: four
/// members, every partition owned by exactly one, and 2,000 requests answered exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_partitions_and_answer_each_request_once() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-two", 8).await;
    let a = start(&topics, &double.engine_url(), "2", "instance-a");
    let b = start(&topics, &double.engine_url(), "2", "instance-b");
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

/// Acceptance 2: a group with an aiokafka consumer configured as hetida's (roundrobin): the
/// assignment is disjoint and complete whoever leads, our commits are accepted, and requests
/// on the aiokafka member's partitions are not executed by us.
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
    let (theirs, ours) = if aiokafka_leads {
        let m = hetida(&topics);
        m.wait_for("assigned", WAIT);
        (m, start(&topics, &double.engine_url(), "1", "ours"))
    } else {
        let s = start(&topics, &double.engine_url(), "1", "ours");
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
    for (p, r) in &responses {
        let v: Value = serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
        let by_them = v.get("answered_by").is_some();
        let _ = p;
        if !by_them {
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

    // Our commits were accepted: the group's offsets of our partitions reach their ends.
    let mut coordinator =
        hd_kafka_exec::kafka::GroupCoordinator::new(kafka_bootstrap(), &topics.group, "test");
    let ours_sorted: Vec<i32> = {
        let mut v: Vec<i32> = our_partitions.iter().copied().collect();
        v.sort_unstable();
        v
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = coordinator
            .fetch(&topics.requests, &ours_sorted)
            .await
            .unwrap();
        let mut all_done = true;
        for p in &ours_sorted {
            let end = client
                .partition_client(
                    topics.requests.clone(),
                    *p,
                    rskafka::client::partition::UnknownTopicHandling::Retry,
                )
                .await
                .unwrap()
                .get_offset(rskafka::client::partition::OffsetAt::Latest)
                .await
                .unwrap();
            all_done &= committed.get(p).copied().flatten() == Some(end);
        }
        if all_done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "our commits did not reach the ends: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    theirs.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_an_aiokafka_member_that_leads() {
    beside_an_aiokafka_member(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_an_aiokafka_member_when_ours_leads() {
    beside_an_aiokafka_member(false).await;
}

/// Acceptance 3: rolling migration from hetida's consumers: two aiokafka members consume, the
/// service joins, the aiokafka members stop; requests arrive throughout. None is lost, and
/// repeats stay within the in-flight windows.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_migration_from_hetidas_consumers_loses_nothing() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-migrate", 4).await;
    let bootstrap = kafka_bootstrap().join(",");
    let m1 = AiokafkaMember::start(
        &bootstrap,
        &topics.group,
        &topics.requests,
        &topics.responses,
        "hetida-1",
    );
    let m2 = AiokafkaMember::start(
        &bootstrap,
        &topics.group,
        &topics.requests,
        &topics.responses,
        "hetida-2",
    );
    wait_for_split(&topics, 2, 4);
    let (jobs, records) = keyed_requests(1200);
    let producer = {
        let client = client.clone();
        let topic = topics.requests.clone();
        tokio::spawn(async move {
            for chunk in records.chunks(20) {
                produce_requests(&client, &topic, chunk).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let service = start(&topics, &double.engine_url(), "2", "ours");
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

/// Acceptance 4: kill -9 of a whole instance under load: after the session timeout the other
/// instance owns every partition, and nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_a_whole_instance_hands_its_partitions_to_the_other() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(20));
    let client = client().await;
    let topics = Topics::create(&client, "grp-kill", 4).await;
    let a = start(&topics, &double.engine_url(), "1", "doomed");
    let b = start(&topics, &double.engine_url(), "1", "survivor");
    wait_for_split(&topics, 2, 4);
    let (jobs, records) = keyed_requests(600);
    produce_requests(&client, &topics.requests, &records).await;
    let deadline = Instant::now() + WAIT;
    while double.calls() < 50 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    let by_job = answers(&responses);
    let lost = unanswered(&jobs, &by_job);
    assert_eq!(lost, 0, "log:\n{}", b.log_text());
}

/// Acceptance 5: with static membership a killed worker's replacement takes its partitions
/// back without a rebalance (the generation stays); a HUP rolling replace rebalances nothing
/// either. How soon the replacement consumes is the relay bench's "static replacement" row.
#[tokio::test(flavor = "multi_thread")]
async fn static_members_come_back_without_a_rebalance() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-static", 4).await;
    let service = start(&topics, &double.engine_url(), "2", "static");
    let before = wait_for_split(&topics, 2, 4);
    let settled = *generations(&service.log_text()).iter().max().unwrap();

    let victim = service.workers()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + WAIT;
    while service.log_text().matches("worker consuming").count()
        < generations(&service.log_text()).len() + 1
        && generations(&service.log_text()).len() < 3
    {
        assert!(
            Instant::now() < deadline,
            "no replacement consumed; log:\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = members(&topics.group, &topics.requests);
    let gens = generations(&service.log_text());
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

    service.signal(Signal::SIGHUP);
    let count = generations(&service.log_text()).len();
    let deadline = Instant::now() + WAIT;
    while generations(&service.log_text()).len() < count + 2 {
        assert!(
            Instant::now() < deadline,
            "HUP did not replace both; log:\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    several_partition_checks().await;
    // Only the lines since the HUP: the first worker may have consumed alone in an earlier
    // generation before the second joined.
    let gens = generations(&service.log_text());
    assert!(
        gens[count..].iter().all(|g| *g == settled),
        "HUP rebalanced: {gens:?} (since the HUP: {:?})",
        &gens[count..]
    );
    let (jobs, records) = keyed_requests(100);
    produce_requests(&client, &topics.requests, &records).await;
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    assert_each_once(&jobs, &answers(&responses), &service.log_text());
}

/// Acceptance 6: TTIN and TTOU under load add and remove one member each, with one rebalance
/// each and nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn ttin_and_ttou_add_and_remove_one_member_each() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(5));
    let client = client().await;
    let topics = Topics::create(&client, "grp-scale", 6).await;
    let service = start(&topics, &double.engine_url(), "2", "scale");
    wait_for_split(&topics, 2, 6);
    let settled = *generations(&service.log_text()).iter().max().unwrap();
    let workers = service.workers();
    let (jobs, records) = keyed_requests(1500);
    produce_requests(&client, &topics.requests, &records).await;
    service.signal(Signal::SIGTTIN);
    wait_for_split(&topics, 3, 6);
    assert!(
        workers.iter().all(|p| service.workers().contains(p)),
        "the old workers kept running"
    );
    service.signal(Signal::SIGTTOU);
    let rows = wait_for_split(&topics, 2, 6);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.instance_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["scale-0", "scale-1"]);
    let responses = read_jobs(&client, &topics.responses, &jobs, WAIT).await;
    let by_job = answers(&responses);
    let lost = unanswered(&jobs, &by_job);
    assert_eq!(lost, 0, "log:\n{}", service.log_text());
    let top = *generations(&service.log_text()).iter().max().unwrap();
    assert_eq!(top, settled + 2, "one rebalance each");
}

/// Acceptance 7: on a cluster of three, the broker that coordinates the group stops under
/// load: the members find the new coordinator, and nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn the_coordinators_broker_stopping_under_load_loses_nothing() {
    support::group::coordinator_stops_under_load("grp-coord", |bootstrap, group| {
        format!(
            r#"{{"bootstrap_servers": "{bootstrap}", "group_id": "{group}", "auto_offset_reset": "earliest", "group_instance_id": "coord"}}"#
        )
    })
    .await;
}

/// Acceptance 8: a member joins or leaves every 2 s for 60 s under load: nothing is lost, and
/// repeats stay within the in-flight windows of the hand-overs.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_storm_loses_nothing() {
    let double = RuntimeDouble::start().await;
    double.set_latency(Duration::from_millis(5));
    let client = client().await;
    let topics = Topics::create(&client, "grp-storm", 6).await;
    let service = start(&topics, &double.engine_url(), "2", "storm");
    wait_for_split(&topics, 2, 6);
    let (jobs, records) = keyed_requests(3000);
    let producer = {
        let client = client.clone();
        let topic = topics.requests.clone();
        tokio::spawn(async move {
            for chunk in records.chunks(50) {
                produce_requests(&client, &topic, chunk).await;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        })
    };
    let storm_end = Instant::now() + Duration::from_secs(60);
    let mut grow = true;
    let mut changes = 0;
    while Instant::now() < storm_end {
        service.signal(if grow {
            Signal::SIGTTIN
        } else {
            Signal::SIGTTOU
        });
        grow = !grow;
        changes += 1;
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
    let top = *generations(&service.log_text()).iter().max().unwrap();
    assert!(
        top > 10,
        "the storm happened: {top} generations for {changes} changes"
    );
}

/// Two processes claiming one instance id: the one that joined first is fenced and stops the
/// service with an error saying so, instead of both taking the partitions in turns; the other
/// keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_with_the_same_instance_id_stops_the_first_clearly() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "grp-fence", 2).await;
    let mut first = start(&topics, &double.engine_url(), "1", "twin");
    first.wait_workers(1, WAIT);
    let second = start(&topics, &double.engine_url(), "1", "twin");
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
    let gens = generations(&second.log_text());
    assert!(
        gens.iter().all(|g| *g == gens[0]),
        "the replacing leader rebalanced: {gens:?}"
    );
    assert_eq!(second.workers().len(), 1, "the second keeps serving");
}
