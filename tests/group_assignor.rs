//! The embedded consumer protocol and the assignors against aiokafka 0.10, the client of
//! hetida's consumers, and against Java's layouts built by hand from the schemas.
//!
//! aiokafka's own classes run in the venv's Python (`HD_TEST_PYTHON`, which `scripts/test`
//! sets after creating `target/venv` with aiokafka 0.10.0): the generated groups go to it as
//! JSON on stdin, its subscriptions and assignments come back as the bytes it would send.
//! Without that Python the test fails: it never skips.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use hd_kafka_exec::kafka::group::assignor::{
    ASSIGNMENT_VERSION, Assignor, ConsumerProtocolError, GroupAssignment, Member,
    SUBSCRIPTION_VERSION, assigned_partitions, assignment_for, decode_assignment,
    decode_subscription, encode_assignment, encode_subscription, subscription_for,
};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use serde_json::{Value, json};

/// The bytes of an embedded message written by hand, field by field, from the schema
/// (`ConsumerProtocolSubscription.json`, `ConsumerProtocolAssignment.json`): what a Java member
/// sends, without trusting the codec under test to build it.
#[derive(Debug, Default)]
struct Body(Vec<u8>);

impl Body {
    /// Starts with the `int16` version prefix.
    fn version(version: i16) -> Body {
        Body::default().int16(version)
    }
    fn int16(mut self, value: i16) -> Body {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn int32(mut self, value: i32) -> Body {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Body {
        self.0.extend_from_slice(bytes);
        self
    }
    /// A nullable string: `int16` length (-1 for null), then UTF-8.
    fn string(self, value: Option<&str>) -> Body {
        match value {
            None => self.int16(-1),
            Some(s) => self.int16(s.len().try_into().unwrap()).raw(s.as_bytes()),
        }
    }
    /// Nullable bytes: `int32` length (-1 for null), then the bytes.
    fn bytes(self, value: Option<&[u8]>) -> Body {
        match value {
            None => self.int32(-1),
            Some(b) => self.int32(b.len().try_into().unwrap()).raw(b),
        }
    }
    /// An array of strings.
    fn strings(self, values: &[&str]) -> Body {
        let start = self.int32(values.len().try_into().unwrap());
        values.iter().fold(start, |b, s| b.string(Some(s)))
    }
    /// An array of (topic, [partition]).
    fn topic_partitions(self, values: &[(&str, &[i32])]) -> Body {
        let start = self.int32(values.len().try_into().unwrap());
        values.iter().fold(start, |b, (topic, partitions)| {
            let b = b
                .string(Some(topic))
                .int32(partitions.len().try_into().unwrap());
            partitions.iter().fold(b, |b, p| b.int32(*p))
        })
    }
}

fn topics_of(subscription: &ConsumerProtocolSubscription) -> Vec<&str> {
    subscription.topics.iter().map(|t| t.as_str()).collect()
}

/// A Java 4.x member's subscription: v3, null user data (range and roundrobin have none),
/// owned partitions, generation and rack.
fn java_v3_subscription() -> Vec<u8> {
    Body::version(3)
        .strings(&["requests", "other"])
        .bytes(None)
        .topic_partitions(&[("requests", &[0, 2]), ("other", &[5])])
        .int32(7)
        .string(Some("rack-1"))
        .0
}

#[test]
fn java_subscriptions_v1_to_v3_decode() {
    let v1 = Body::version(1)
        .strings(&["requests"])
        .bytes(None)
        .topic_partitions(&[("requests", &[1])])
        .0;
    let s = decode_subscription(&v1).unwrap();
    assert_eq!(topics_of(&s), ["requests"]);
    assert_eq!(s.user_data, None);
    assert_eq!(s.owned_partitions.len(), 1);
    assert_eq!(s.owned_partitions[0].topic.as_str(), "requests");
    assert_eq!(s.owned_partitions[0].partitions, [1]);
    assert_eq!(s.generation_id, -1, "v1 has no generation");

    let v2 = Body::version(2)
        .strings(&["requests"])
        .bytes(Some(b"\x01\x02"))
        .topic_partitions(&[])
        .int32(12)
        .0;
    let s = decode_subscription(&v2).unwrap();
    assert_eq!(s.user_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert!(s.owned_partitions.is_empty());
    assert_eq!(s.generation_id, 12);
    assert_eq!(s.rack_id, None);

    let s = decode_subscription(&java_v3_subscription()).unwrap();
    assert_eq!(topics_of(&s), ["requests", "other"]);
    assert_eq!(s.owned_partitions.len(), 2);
    assert_eq!(s.owned_partitions[1].topic.as_str(), "other");
    assert_eq!(s.owned_partitions[1].partitions, [5]);
    assert_eq!(s.generation_id, 7);
    assert_eq!(s.rack_id.as_deref(), Some("rack-1"));

    let member = Member::from_metadata("m-1", None, &java_v3_subscription()).unwrap();
    assert_eq!(member.topics, ["requests", "other"]);

    // What we would write as v3 is what Java writes.
    let ours = encode_subscription(&s, 3).unwrap();
    assert_eq!(ours.as_ref(), java_v3_subscription().as_slice());
}

#[test]
fn newer_versions_are_read_as_the_newest_known_and_trailing_bytes_are_ignored() {
    // A v4 subscription from some future client: v3's fields, then something new.
    let v4 = Body::version(4)
        .raw(&java_v3_subscription()[2..])
        .raw(b"\x00\x00\x00\x2a future field")
        .0;
    let s = decode_subscription(&v4).unwrap();
    assert_eq!(topics_of(&s), ["requests", "other"]);
    assert_eq!(s.rack_id.as_deref(), Some("rack-1"));

    // A v0 subscription with bytes after it (aiokafka stops reading there too).
    let v0 = Body::version(0)
        .strings(&["requests"])
        .bytes(Some(b""))
        .raw(b"\xff\xff")
        .0;
    assert_eq!(topics_of(&decode_subscription(&v0).unwrap()), ["requests"]);

    // Assignments: Java's v3 (null user data) and a future v9 with a trailing field.
    let v3 = Body::version(3)
        .topic_partitions(&[("requests", &[3, 1])])
        .bytes(None)
        .0;
    let a = decode_assignment(&v3).unwrap();
    assert_eq!(a.user_data, None);
    let partitions = assigned_partitions(&a);
    assert_eq!(partitions["requests"], [3, 1]);
    let v9 = Body::version(9).raw(&v3[2..]).int16(0).0;
    assert_eq!(
        assigned_partitions(&decode_assignment(&v9).unwrap()),
        partitions
    );
}

#[test]
fn truncated_and_malformed_bytes_are_errors() {
    let subscription = java_v3_subscription();
    for len in 0..subscription.len() {
        let err = decode_subscription(&subscription[..len]).unwrap_err();
        let want_no_version = len < 2;
        assert_eq!(
            matches!(err, ConsumerProtocolError::NoVersion { .. }),
            want_no_version,
            "{len}: {err}"
        );
    }
    let assignment = encode_assignment(
        &assignment_for(&[("requests".to_owned(), vec![0, 1])].into_iter().collect()),
        ASSIGNMENT_VERSION,
    )
    .unwrap();
    for len in 0..assignment.len() {
        assert!(decode_assignment(&assignment[..len]).is_err(), "{len}");
    }

    let malformed = [
        // A topic that is not UTF-8.
        Body::version(0)
            .int32(1)
            .int16(2)
            .raw(b"\xc3\x28")
            .bytes(None)
            .0,
        // A null topic.
        Body::version(0).int32(1).string(None).bytes(None).0,
        // A negative topic count, a null array.
        Body::version(0).int32(-2).bytes(None).0,
        Body::version(0).int32(-1).bytes(None).0,
        // Counts far beyond the bytes there are (the crate alone would abort on these).
        Body::version(0).int32(i32::MAX).bytes(None).0,
        Body::version(1)
            .strings(&[])
            .bytes(None)
            .int32(1)
            .string(Some("t"))
            .int32(i32::MAX - 1)
            .0,
        // A user data length beyond the end.
        Body::version(0).strings(&["t"]).int32(1 << 30).0,
    ];
    for bytes in malformed {
        let err = decode_subscription(&bytes).unwrap_err();
        assert!(
            matches!(err, ConsumerProtocolError::Malformed { .. }),
            "{bytes:02x?}: {err}"
        );
    }
    let err = decode_assignment(&Body::version(-3).0).unwrap_err();
    assert!(matches!(
        err,
        ConsumerProtocolError::NegativeVersion { version: -3, .. }
    ));

    // Garbage, and valid messages with a few bytes changed: an error or a value, never a
    // panic or an abort.
    let mut rng = fastrand::Rng::with_seed(15);
    let valid = [subscription, assignment.to_vec()];
    for _ in 0..20_000 {
        let bytes = if rng.bool() {
            let mut bytes = valid[rng.usize(0..valid.len())].clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(0..bytes.len());
                bytes[at] = rng.u8(..);
            }
            bytes
        } else {
            (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect()
        };
        let _ = decode_subscription(&bytes);
        let _ = decode_assignment(&bytes);
    }
}

/// aiokafka's classes on the cases of stdin; its subscriptions and assignments on stdout, as
/// hex of the bytes it would send.
const AIOKAFKA: &str = r#"
import json, logging, sys
import aiokafka
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocol

# Quiet its "No partition metadata for topic" warnings: stderr is for failures.
logging.getLogger("aiokafka").setLevel(logging.ERROR)
ASSIGNORS = {a.name: a for a in (RoundRobinPartitionAssignor, RangePartitionAssignor)}

class Cluster:
    """The one method of aiokafka's ClusterMetadata the assignors call."""
    def __init__(self, counts):
        self.counts = counts
    def partitions_for_topic(self, topic):
        n = self.counts.get(topic)
        return None if n is None else set(range(n))

def hex_of(struct):
    # Not inline: a Struct's encode() holds the struct weakly, so it must still be alive.
    return struct.encode().hex()

results = []
for case in json.load(sys.stdin):
    assignor = ASSIGNORS[case["assignor"]]
    members, metadata = {}, {}
    for m in case["members"]:
        # As aiokafka's leader does: decode each member's metadata from the JoinGroup response.
        members[m["id"]] = ConsumerProtocol.METADATA.decode(bytes.fromhex(m["metadata"]))
        metadata[m["id"]] = hex_of(assignor.metadata(m["topics"]))
    assignment = assignor.assign(Cluster(case["partitions"]), members)
    results.append({
        "metadata": metadata,
        "assignment": {member: hex_of(a) for member, a in assignment.items()},
    })
json.dump({"aiokafka": aiokafka.__version__, "results": results}, sys.stdout)
"#;

/// The Python with aiokafka: `HD_TEST_PYTHON`, else this checkout's `target/venv` when a
/// developer ran `scripts/test` before. Neither: the test fails.
fn python_with_aiokafka() -> Command {
    let dev_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
    let bin = match std::env::var_os("HD_TEST_PYTHON") {
        Some(bin) => bin,
        None if dev_venv.exists() => dev_venv.into_os_string(),
        None => panic!(
            "no Python with aiokafka: set HD_TEST_PYTHON, or run scripts/test, which creates \
             target/venv with aiokafka 0.10.0 and sets it"
        ),
    };
    Command::new(bin)
}

/// Runs [`AIOKAFKA`] on `cases`.
fn run_aiokafka(cases: &Value) -> Value {
    let mut python = python_with_aiokafka();
    let program = python.get_program().to_owned();
    let mut child = python
        .args(["-c", AIOKAFKA])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {program:?} (HD_TEST_PYTHON; scripts/test creates target/venv \
                 with aiokafka): {e}"
            )
        });
    let input = serde_json::to_vec(cases).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from a scope thread while the child's output is read, so neither side's pipe
    // buffer can fill up and stall the other.
    let (written, output) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().unwrap();
        (writer.join().unwrap(), output)
    });
    assert!(
        output.status.success(),
        "aiokafka's assignors failed (does HD_TEST_PYTHON have aiokafka? scripts/test creates \
         target/venv with it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    written.unwrap();
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        answer["aiokafka"], "0.10.0",
        "the rules implemented are aiokafka 0.10.0's, the version hetida pins"
    );
    answer
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A member id in one of the shapes clients and coordinators make, or an odd one whose
/// characters sort differently by case, punctuation and beyond ASCII.
fn member_id(rng: &mut fastrand::Rng) -> (String, Option<String>) {
    let uuid = uuid::Uuid::from_u128(rng.u128(..));
    match rng.u8(0..4) {
        0 => (format!("aiokafka-0.10.0-{uuid}"), None),
        1 => (
            format!("consumer-hd_kafka_consumer_group-{}-{uuid}", rng.u8(1..9)),
            None,
        ),
        2 => {
            let instance = format!(
                "{}-w{}",
                ["node-a", "node-B", "Node-a"][rng.usize(0..3)],
                rng.u8(0..8)
            );
            (format!("{instance}-{uuid}"), Some(instance))
        }
        _ => {
            let alphabet = ['a', 'B', 'Z', '_', '-', '.', '0', 'é', '日', '😀'];
            let id = (0..rng.usize(1..6))
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            (id, None)
        }
    }
}

/// One generated group: 1–8 members with random ids, 1–3 topics of 1–40 partitions, each
/// member subscribed to a subset (now and then none, or a topic without metadata).
fn group(rng: &mut fastrand::Rng) -> (Vec<Member>, BTreeMap<String, i32>) {
    let mut pool = [
        "requests",
        "Requests",
        "hd-requests",
        "hd_requests",
        "hd.requests.v2",
        "a",
        "Z",
    ];
    rng.shuffle(&mut pool);
    let topics = &pool[..rng.usize(1..=3)];
    let counts: BTreeMap<String, i32> = topics
        .iter()
        .map(|t| ((*t).to_owned(), rng.i32(1..=40)))
        .collect();
    let mut ids = HashSet::new();
    let members = (0..rng.usize(1..=8))
        .map(|_| {
            let (id, instance) = loop {
                let (id, instance) = member_id(rng);
                if ids.insert(id.clone()) {
                    break (id, instance);
                }
            };
            let mut subscribed: Vec<String> = topics
                .iter()
                .filter(|_| rng.u8(0..10) < 6)
                .map(|t| (*t).to_owned())
                .collect();
            if subscribed.is_empty() && rng.u8(0..8) != 0 {
                subscribed.push(topics[rng.usize(0..topics.len())].to_owned());
            }
            if rng.u8(0..10) == 0 {
                subscribed.push("no-metadata".to_owned());
            }
            rng.shuffle(&mut subscribed);
            Member {
                member_id: id,
                group_instance_id: instance,
                topics: subscribed,
            }
        })
        .collect();
    (members, counts)
}

/// Every partition of every subscribed topic with metadata goes to exactly one of its
/// subscribers: what makes an assignment usable at all, whoever computed it.
fn assert_complete(members: &[Member], counts: &BTreeMap<String, i32>, got: &GroupAssignment) {
    let mut dealt = BTreeSet::new();
    for member in members {
        for (topic, partitions) in &got[&member.member_id] {
            assert!(member.topics.contains(topic), "{member:?} got {topic}");
            for p in partitions {
                assert!(dealt.insert((topic.clone(), *p)), "{topic}/{p} twice");
            }
        }
    }
    let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
    let want: BTreeSet<(String, i32)> = counts
        .iter()
        .filter(|(t, _)| subscribed.contains(t))
        .flat_map(|(t, n)| (0..*n).map(|p| (t.clone(), p)))
        .collect();
    assert_eq!(dealt, want);
}

#[test]
fn assignments_and_bytes_agree_with_aiokafka_on_generated_groups() {
    const GROUPS: usize = 2_000;
    let mut rng = fastrand::Rng::with_seed(0x15_a551);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..GROUPS {
        let (members, counts) = group(&mut rng);
        for assignor in Assignor::OFFERED {
            let subscriptions: Vec<Value> = members
                .iter()
                .map(|m| {
                    let bytes =
                        encode_subscription(&subscription_for(&m.topics), SUBSCRIPTION_VERSION)
                            .unwrap();
                    json!({"id": m.member_id, "topics": m.topics, "metadata": hex(&bytes)})
                })
                .collect();
            cases.push(json!({
                "assignor": assignor.name(),
                "partitions": counts,
                "members": subscriptions,
            }));
            let assignment = assignor.assign(&members, &counts);
            assert_complete(&members, &counts, &assignment);
            ours.push((members.clone(), counts.clone(), assignment));
        }
    }

    let answer = run_aiokafka(&Value::Array(cases));
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), ours.len());
    for (i, ((members, counts, assignment), theirs)) in ours.iter().zip(results).enumerate() {
        let assignor = Assignor::OFFERED[i % Assignor::OFFERED.len()];
        let context = || format!("case {i}: {assignor} of {counts:?} to {members:#?}");
        // Subscriptions: aiokafka's bytes are ours, and we read them.
        for member in members {
            let their_bytes = unhex(theirs["metadata"][&member.member_id].as_str().unwrap());
            let our_bytes =
                encode_subscription(&subscription_for(&member.topics), SUBSCRIPTION_VERSION)
                    .unwrap();
            assert_eq!(hex(&their_bytes), hex(&our_bytes), "{}", context());
            let decoded = Member::from_metadata(&member.member_id, None, &their_bytes).unwrap();
            assert_eq!(decoded.topics, member.topics, "{}", context());
        }
        // Assignments: the same members, the same partitions read from aiokafka's bytes, and
        // the same bytes from ours.
        let theirs = theirs["assignment"].as_object().unwrap();
        let their_members: BTreeSet<&str> = theirs.keys().map(String::as_str).collect();
        let our_members: BTreeSet<&str> = assignment.keys().map(String::as_str).collect();
        assert_eq!(their_members, our_members, "{}", context());
        for (member, partitions) in assignment {
            let their_bytes = unhex(theirs[member].as_str().unwrap());
            let their_partitions = assigned_partitions(&decode_assignment(&their_bytes).unwrap());
            assert_eq!(&their_partitions, partitions, "{member} in {}", context());
            let our_bytes =
                encode_assignment(&assignment_for(partitions), ASSIGNMENT_VERSION).unwrap();
            assert_eq!(
                hex(&our_bytes),
                hex(&their_bytes),
                "{member} in {}",
                context()
            );
        }
    }
}
