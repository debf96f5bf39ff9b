//! The group coordinator client under faults a single real broker never shows on demand: a
//! coordinator that moves, loads, drops the connection, never answers, or speaks older versions.
//! A scripted stand-in broker on loopback answers with the Kafka wire format (kafka-protocol's
//! broker-side codecs); the round trip against real Kafka is in tests/kafka.rs.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hd_kafka_exec::kafka::wire::UnsupportedVersion;
use hd_kafka_exec::kafka::{CoordinatorError, GroupCoordinator};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FindCoordinatorRequest,
    FindCoordinatorResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the stand-in does with the next OffsetCommit or OffsetFetch.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Answer with this error code (0 = success).
    Answer(i16),
    /// Close the connection without answering.
    Drop,
    /// Keep the connection open and never answer.
    Silence,
}

#[derive(Debug, Default)]
struct Script {
    /// (api key, version) of every request received, in order.
    calls: Vec<(i16, i16)>,
    /// Version ranges announced in ApiVersions; missing APIs are not announced.
    versions: HashMap<i16, (i16, i16)>,
    /// Answer ApiVersions v3+ with UNSUPPORTED_VERSION in the v0 layout, as an old broker does.
    only_api_versions_v0: bool,
    /// Addresses handed out by FindCoordinator, in turn (the last one repeats); empty = self.
    coordinators: VecDeque<SocketAddr>,
    /// Steps for OffsetCommit and OffsetFetch calls, in turn; then success.
    steps: VecDeque<Step>,
    /// The group's committed offsets: (topic, partition) -> offset.
    committed: HashMap<(String, i32), i64>,
}

#[derive(Debug, Clone)]
struct StandIn {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

fn all_versions() -> HashMap<i16, (i16, i16)> {
    HashMap::from([
        (ApiKey::ApiVersions as i16, (0, 4)),
        (ApiKey::FindCoordinator as i16, (0, 6)),
        (ApiKey::OffsetFetch as i16, (1, 9)),
        (ApiKey::OffsetCommit as i16, (2, 9)),
    ])
}

impl StandIn {
    async fn start(script: Script) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script));
        let shared = script.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream, addr, shared.clone()));
            }
        });
        StandIn { addr, script }
    }

    fn bootstrap(&self) -> Vec<String> {
        vec![self.addr.to_string()]
    }

    fn calls(&self, api: ApiKey) -> Vec<i16> {
        let s = self.script.lock().unwrap();
        s.calls
            .iter()
            .filter(|(k, _)| *k == api as i16)
            .map(|(_, v)| *v)
            .collect()
    }

    fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let s = self.script.lock().unwrap();
        s.committed.get(&(topic.to_owned(), partition)).copied()
    }
}

fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    response: &R,
    version: i16,
) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    response.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

async fn serve(mut stream: TcpStream, me: SocketAddr, script: Arc<Mutex<Script>>) {
    loop {
        let Ok(len) = stream.read_i32().await else {
            return;
        };
        let mut body = vec![0u8; len as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut body = Bytes::from(body);
        let key = (&body[0..2]).get_i16();
        let version = (&body[2..4]).get_i16();
        let api = ApiKey::try_from(key).unwrap();
        let header = kafka_protocol::protocol::decode_request_header_from_buffer(&mut body)
            .unwrap_or_else(|e| panic!("request header of {api:?} v{version}: {e}"));
        let cid = header.correlation_id;
        script.lock().unwrap().calls.push((key, version));
        let out = match api {
            ApiKey::ApiVersions => {
                let s = script.lock().unwrap();
                if s.only_api_versions_v0 && version > 0 {
                    let r = ApiVersionsResponse::default()
                        .with_error_code(35)
                        .with_api_keys(vec![ApiVersion::default().with_api_key(18)]);
                    encode_response(cid, &r, 0)
                } else {
                    ApiVersionsRequest::decode(&mut body, version).unwrap();
                    let keys = s
                        .versions
                        .iter()
                        .map(|(k, (min, max))| {
                            ApiVersion::default()
                                .with_api_key(*k)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect();
                    let r = ApiVersionsResponse::default().with_api_keys(keys);
                    encode_response(cid, &r, version)
                }
            }
            ApiKey::FindCoordinator => {
                let req = FindCoordinatorRequest::decode(&mut body, version).unwrap();
                let target = {
                    let mut s = script.lock().unwrap();
                    if s.coordinators.len() > 1 {
                        s.coordinators.pop_front().unwrap()
                    } else {
                        s.coordinators.front().copied().unwrap_or(me)
                    }
                };
                let host = StrBytes::from_string(target.ip().to_string());
                let r = if version >= 4 {
                    FindCoordinatorResponse::default().with_coordinators(vec![
                        Coordinator::default()
                            .with_key(req.coordinator_keys[0].clone())
                            .with_node_id(BrokerId(1))
                            .with_host(host)
                            .with_port(target.port() as i32),
                    ])
                } else {
                    FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(1))
                        .with_host(host)
                        .with_port(target.port() as i32)
                };
                encode_response(cid, &r, version)
            }
            ApiKey::OffsetCommit | ApiKey::OffsetFetch => {
                let step = script
                    .lock()
                    .unwrap()
                    .steps
                    .pop_front()
                    .unwrap_or(Step::Answer(0));
                let code = match step {
                    Step::Drop => return,
                    Step::Silence => {
                        // A broker that takes the request and never answers: the pause stands
                        // for ever, as far as the client can tell.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    Step::Answer(code) => code,
                };
                if api == ApiKey::OffsetCommit {
                    offset_commit(&script, &mut body, version, code, cid)
                } else {
                    offset_fetch(&script, &mut body, version, code, cid)
                }
            }
            other => panic!("the stand-in broker got an unexpected {other:?}"),
        };
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn offset_commit(
    script: &Mutex<Script>,
    body: &mut Bytes,
    version: i16,
    code: i16,
    cid: i32,
) -> Bytes {
    let req = OffsetCommitRequest::decode(body, version).unwrap();
    assert_eq!(req.generation_id_or_member_epoch, -1, "a simple commit");
    assert!(req.member_id.is_empty(), "a simple commit has no member id");
    let mut s = script.lock().unwrap();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    if code == 0 {
                        s.committed.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode_response(
        cid,
        &OffsetCommitResponse::default().with_topics(topics),
        version,
    )
}

fn offset_fetch(
    script: &Mutex<Script>,
    body: &mut Bytes,
    version: i16,
    code: i16,
    cid: i32,
) -> Bytes {
    let req = OffsetFetchRequest::decode(body, version).unwrap();
    let s = script.lock().unwrap();
    let offset = |topic: &str, p: i32| {
        s.committed
            .get(&(topic.to_owned(), p))
            .copied()
            .unwrap_or(-1)
    };
    let r = if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        OffsetFetchResponseTopics::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset(&t.name.0, p))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(code)
                    .with_topics(topics)
            })
            .collect();
        OffsetFetchResponse::default().with_groups(groups)
    } else {
        let topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|&p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset(&t.name.0, p))
                                    // v1 has no top-level error code: the error goes per partition.
                                    .with_error_code(if version < 2 { code } else { 0 })
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetFetchResponse::default()
            .with_topics(topics)
            .with_error_code(if version >= 2 { code } else { 0 })
    };
    encode_response(cid, &r, version)
}

/// A generous bound that only keeps a broken client from hanging the test run.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn guarded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("the coordinator client hung")
}

#[tokio::test]
async fn commits_and_fetches_with_the_highest_versions_both_sides_speak() {
    for (find, fetch, commit) in [
        ((0, 6), (1, 9), (2, 9)),
        ((0, 3), (1, 7), (2, 8)),
        ((0, 0), (1, 1), (2, 2)),
    ] {
        let broker = StandIn::start(Script {
            versions: HashMap::from([
                (ApiKey::ApiVersions as i16, (0, 4)),
                (ApiKey::FindCoordinator as i16, find),
                (ApiKey::OffsetFetch as i16, fetch),
                (ApiKey::OffsetCommit as i16, commit),
            ]),
            ..Script::default()
        })
        .await;
        let mut c = GroupCoordinator::new(broker.bootstrap(), "g", "test");
        guarded(c.commit("t", &[(0, 5), (3, 9)])).await.unwrap();
        let fetched = guarded(c.fetch("t", &[0, 1, 3])).await.unwrap();
        assert_eq!(
            fetched,
            HashMap::from([(0, Some(5)), (1, None), (3, Some(9))])
        );
        assert_eq!(broker.calls(ApiKey::FindCoordinator), vec![find.1]);
        assert_eq!(broker.calls(ApiKey::OffsetCommit), vec![commit.1]);
        assert_eq!(broker.calls(ApiKey::OffsetFetch), vec![fetch.1]);
    }
}

#[tokio::test]
async fn a_broker_without_a_common_version_is_a_clear_error() {
    let broker = StandIn::start(Script {
        versions: HashMap::from([
            (ApiKey::ApiVersions as i16, (0, 4)),
            (ApiKey::FindCoordinator as i16, (0, 6)),
            (ApiKey::OffsetCommit as i16, (10, 12)),
        ]),
        ..Script::default()
    })
    .await;
    let mut c = GroupCoordinator::new(broker.bootstrap(), "g", "test");
    let e = guarded(c.commit("t", &[(0, 1)])).await.unwrap_err();
    assert!(
        matches!(
            e,
            CoordinatorError::Unsupported {
                source: UnsupportedVersion {
                    api: "OffsetCommit",
                    broker_min: 10,
                    broker_max: 12,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(broker.calls(ApiKey::OffsetCommit).is_empty());
}

#[tokio::test]
async fn an_old_broker_is_asked_for_its_versions_in_v0() {
    let broker = StandIn::start(Script {
        versions: all_versions(),
        only_api_versions_v0: true,
        ..Script::default()
    })
    .await;
    let mut c = GroupCoordinator::new(broker.bootstrap(), "g", "test");
    guarded(c.commit("t", &[(2, 40)])).await.unwrap();
    assert_eq!(broker.committed("t", 2), Some(40));
    let asked = broker.calls(ApiKey::ApiVersions);
    assert!(asked.contains(&3) && asked.contains(&0), "{asked:?}");
}

#[tokio::test]
async fn a_moved_coordinator_is_found_anew() {
    let new_home = StandIn::start(Script {
        versions: all_versions(),
        ..Script::default()
    })
    .await;
    let old_home = StandIn::start(Script {
        versions: all_versions(),
        steps: VecDeque::from([Step::Answer(16)]), // NOT_COORDINATOR
        ..Script::default()
    })
    .await;
    let bootstrap = StandIn::start(Script {
        versions: all_versions(),
        coordinators: VecDeque::from([old_home.addr, new_home.addr]),
        ..Script::default()
    })
    .await;
    let mut c = GroupCoordinator::new(bootstrap.bootstrap(), "g", "test");
    guarded(c.commit("t", &[(1, 77)])).await.unwrap();
    assert_eq!(bootstrap.calls(ApiKey::FindCoordinator).len(), 2);
    assert_eq!(old_home.committed("t", 1), None);
    assert_eq!(new_home.committed("t", 1), Some(77));
}

#[tokio::test]
async fn a_loading_or_unavailable_coordinator_and_a_dropped_connection_are_waited_out() {
    let broker = StandIn::start(Script {
        versions: all_versions(),
        steps: VecDeque::from([
            Step::Answer(14), // COORDINATOR_LOAD_IN_PROGRESS
            Step::Drop,
            Step::Answer(15), // COORDINATOR_NOT_AVAILABLE
            Step::Answer(0),  // the commit
            Step::Answer(14), // the fetch, first try
        ]),
        ..Script::default()
    })
    .await;
    let mut c = GroupCoordinator::new(broker.bootstrap(), "g", "test");
    guarded(c.commit("t", &[(0, 3)])).await.unwrap();
    assert_eq!(broker.calls(ApiKey::OffsetCommit).len(), 4);
    let fetched = guarded(c.fetch("t", &[0])).await.unwrap();
    assert_eq!(fetched, HashMap::from([(0, Some(3))]));
    assert_eq!(broker.calls(ApiKey::OffsetFetch).len(), 2);
}

#[tokio::test]
async fn a_rejected_commit_fails_at_once_naming_partition_and_offset() {
    let broker = StandIn::start(Script {
        versions: all_versions(),
        steps: VecDeque::from([Step::Answer(25)]), // UNKNOWN_MEMBER_ID: the group has live members
        ..Script::default()
    })
    .await;
    let mut c = GroupCoordinator::new(broker.bootstrap(), "g", "test");
    let e = guarded(c.commit("t", &[(4, 12)])).await.unwrap_err();
    assert_eq!(e.kafka_code(), Some(25), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("t/4") && text.contains("offset 12") && text.contains("group g"),
        "{text}"
    );
    assert_eq!(broker.calls(ApiKey::OffsetCommit).len(), 1);
}

#[tokio::test]
async fn a_silent_coordinator_or_no_broker_at_all_ends_the_call_within_its_budget() {
    let silent = StandIn::start(Script {
        versions: all_versions(),
        steps: VecDeque::from([Step::Silence; 100]),
        ..Script::default()
    })
    .await;
    let mut c = GroupCoordinator::new(silent.bootstrap(), "g", "test")
        .with_retry_budget(Duration::from_millis(500));
    let e = guarded(c.commit("t", &[(0, 1)])).await.unwrap_err();
    assert!(
        matches!(
            e,
            CoordinatorError::OutOfTime {
                api: "OffsetCommit",
                ..
            }
        ),
        "{e}"
    );

    // A port nobody listens on (bound, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = free.local_addr().unwrap().to_string();
    drop(free);
    let mut c = GroupCoordinator::new(vec![nowhere.clone()], "g", "test")
        .with_retry_budget(Duration::from_millis(500));
    let e = guarded(c.fetch("t", &[0])).await.unwrap_err();
    match e {
        CoordinatorError::OutOfTime { ref last, .. } => assert!(
            matches!(**last, CoordinatorError::Unreachable { .. })
                && e.to_string().contains(&nowhere),
            "{e}"
        ),
        other => panic!("expected OutOfTime, got {other}"),
    }
}
