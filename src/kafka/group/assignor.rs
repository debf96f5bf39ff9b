//! What the members of a consumer group tell each other through the coordinator, and how the
//! leader splits the partitions among them. Pure data and pure functions, no IO.
//!
//! # The embedded consumer protocol
//!
//! JoinGroup carries each member's subscription, SyncGroup each member's assignment, as bytes
//! the coordinator does not read (protocol type `consumer`): an `int16` version, then the body
//! of Kafka's `ConsumerProtocolSubscription` or `ConsumerProtocolAssignment` schema in that
//! version. The `kafka-protocol` crate codes the body only; the version prefix is written and
//! read here. A version newer than the crate knows is read as the newest it knows, trailing
//! bytes ignored, as Java (`ConsumerProtocol.checkSubscriptionVersion`) and aiokafka
//! (`Struct.decode` reads its fields and stops) do: versions only ever append fields.
//!
//! # The assignors
//!
//! hetida's consumers are aiokafka 0.10 members that offer `roundrobin` alone (aiokafka's
//! default; hetida's JSON options cannot name another). Whichever member the coordinator makes
//! leader computes everyone's assignment, so ours is aiokafka's to the partition, with the same
//! order of topics, members and partitions: a group then looks the same to its members and to
//! Kafka's tooling whether a hetida consumer or one of ours leads. The rules are aiokafka's
//! (`aiokafka/coordinator/assignors/{roundrobin,range}.py`); `tests/group_assignor.rs` checks
//! them against aiokafka's own classes on generated groups.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The subscription version we send: 0, as aiokafka does (Java sends 3).
///
/// Every member reads every version (see the module doc), so the question is only what the
/// later fields would buy. `owned_partitions` (v1) and `generation_id` (v2) serve cooperative
/// rebalancing (Java's `cooperative-sticky`), `rack_id` (v3) rack-aware assignment. We offer
/// only the eager `roundrobin` and `range`, and hetida's members only `roundrobin`, so the
/// group never selects an assignor that reads them. Version 0 makes our bytes identical to
/// aiokafka's, so the leader, whoever it is, reads the same subscription from either kind of
/// member.
pub const SUBSCRIPTION_VERSION: i16 = 0;

/// The assignment version we send as leader: 0, as aiokafka does. Versions 0–3 have the same
/// fields (Java writes 3), and every member reads 0.
pub const ASSIGNMENT_VERSION: i16 = 0;

/// Names the subscription in errors.
const SUBSCRIPTION: &str = "subscription";
/// Names the assignment in errors.
const ASSIGNMENT: &str = "assignment";

/// An embedded subscription or assignment that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerProtocolError {
    /// Fewer than the two bytes of the version prefix. The coordinator hands a member an empty
    /// assignment when the leader's SyncGroup left it out; a caller that reads that as "nothing
    /// assigned" checks for empty bytes before decoding.
    #[error("consumer protocol {what} of {len} byte(s) has no version prefix")]
    NoVersion {
        /// `subscription` or `assignment`.
        what: &'static str,
        /// How many bytes there were.
        len: usize,
    },
    /// A version below 0, which no client writes (Java rejects it too).
    #[error("consumer protocol {what} has version {version}; versions start at 0")]
    NegativeVersion {
        /// `subscription` or `assignment`.
        what: &'static str,
        /// The version in the prefix.
        version: i16,
    },
    /// The body does not follow the schema of its version: truncated, a negative or
    /// impossible length, a topic that is not UTF-8.
    #[error("consumer protocol {what} v{version} is malformed: {reason}")]
    Malformed {
        /// `subscription` or `assignment`.
        what: &'static str,
        /// The version in the prefix (the body was read as `min(version, 3)`).
        version: i16,
        /// What the decoder found wrong.
        reason: String,
    },
    /// The message cannot be written in that version: a version the crate does not know, or
    /// a string or array too long for its length field.
    #[error("consumer protocol {what} cannot be written as v{version}: {reason}")]
    Unencodable {
        /// `subscription` or `assignment`.
        what: &'static str,
        /// The version asked for.
        version: i16,
        /// What the encoder refused.
        reason: String,
    },
}

/// The subscription a member sends for `topics`, as aiokafka builds it: the topics in the
/// order given and empty (not null) user data. Encode it with [`encode_subscription`] and
/// [`SUBSCRIPTION_VERSION`].
pub fn subscription_for<S: AsRef<str>>(
    topics: impl IntoIterator<Item = S>,
) -> ConsumerProtocolSubscription {
    ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .into_iter()
                .map(|topic| StrBytes::from_string(topic.as_ref().to_owned()))
                .collect(),
        )
        .with_user_data(Some(Bytes::new()))
}

/// `subscription` as the bytes of a JoinGroup protocol: the version, then the body in it.
pub fn encode_subscription(
    subscription: &ConsumerProtocolSubscription,
    version: i16,
) -> Result<Bytes, ConsumerProtocolError> {
    encode_prefixed(SUBSCRIPTION, subscription, version)
}

/// A member's subscription from the bytes of its JoinGroup protocol. Fields its version lacks
/// keep the crate's defaults: no owned partitions, generation -1, no rack.
pub fn decode_subscription(
    bytes: &[u8],
) -> Result<ConsumerProtocolSubscription, ConsumerProtocolError> {
    decode_prefixed(SUBSCRIPTION, bytes, |layout, version| {
        layout.array(2, Layout::string)?; // topics
        layout.bytes()?; // user_data
        if version >= 1 {
            layout.array(6, Layout::topic_partitions)?; // owned_partitions
        }
        if version >= 2 {
            layout.int32()?; // generation_id
        }
        if version >= 3 {
            layout.string()?; // rack_id
        }
        Ok(())
    })
}

/// The assignment message for one member's `partitions`, as aiokafka builds it: topics in
/// order, empty (not null) user data. Encode it with [`encode_assignment`] and
/// [`ASSIGNMENT_VERSION`].
pub fn assignment_for(partitions: &TopicPartitions) -> ConsumerProtocolAssignment {
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            partitions
                .iter()
                .map(|(topic, partitions)| {
                    AssignedTopic::default()
                        .with_topic(StrBytes::from_string(topic.clone()).into())
                        .with_partitions(partitions.clone())
                })
                .collect(),
        )
        .with_user_data(Some(Bytes::new()))
}

/// `assignment` as the bytes of one member's entry in SyncGroup: the version, then the body.
pub fn encode_assignment(
    assignment: &ConsumerProtocolAssignment,
    version: i16,
) -> Result<Bytes, ConsumerProtocolError> {
    encode_prefixed(ASSIGNMENT, assignment, version)
}

/// A member's assignment from the bytes SyncGroup answered with.
pub fn decode_assignment(
    bytes: &[u8],
) -> Result<ConsumerProtocolAssignment, ConsumerProtocolError> {
    decode_prefixed(ASSIGNMENT, bytes, |layout, _version| {
        layout.array(6, Layout::topic_partitions)?; // assigned_partitions
        layout.bytes()?; // user_data
        Ok(())
    })
}

/// The partitions of a decoded assignment, per topic, in the order the leader listed them. A
/// topic the leader listed twice (no client does) gets the partitions of both entries.
pub fn assigned_partitions(assignment: &ConsumerProtocolAssignment) -> TopicPartitions {
    let mut partitions = TopicPartitions::new();
    for entry in &assignment.assigned_partitions {
        partitions
            .entry(entry.topic.as_str().to_owned())
            .or_default()
            .extend_from_slice(&entry.partitions);
    }
    partitions
}

/// Writes the version prefix, then the crate's body in that version.
fn encode_prefixed<M: Encodable + Message>(
    what: &'static str,
    message: &M,
    version: i16,
) -> Result<Bytes, ConsumerProtocolError> {
    let unencodable = |reason: String| ConsumerProtocolError::Unencodable {
        what,
        version,
        reason,
    };
    if !(M::VERSIONS.min..=M::VERSIONS.max).contains(&version) {
        return Err(unencodable(format!(
            "this client writes versions {}..={}",
            M::VERSIONS.min,
            M::VERSIONS.max
        )));
    }
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| unencodable(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// Reads the version prefix, checks the body's lengths with `layout` (see [`Layout`]), then
/// decodes the body with the crate as `min(version, newest it knows)`, trailing bytes ignored.
fn decode_prefixed<M: Decodable + Message>(
    what: &'static str,
    bytes: &[u8],
    layout: impl FnOnce(&mut Layout<'_>, i16) -> Result<(), String>,
) -> Result<M, ConsumerProtocolError> {
    let Some((prefix, mut body)) = bytes.split_first_chunk::<2>() else {
        return Err(ConsumerProtocolError::NoVersion {
            what,
            len: bytes.len(),
        });
    };
    let version = i16::from_be_bytes(*prefix);
    if version < M::VERSIONS.min {
        return Err(ConsumerProtocolError::NegativeVersion { what, version });
    }
    let read_as = version.min(M::VERSIONS.max);
    let malformed = |reason: String| ConsumerProtocolError::Malformed {
        what,
        version,
        reason,
    };
    layout(&mut Layout { rest: body }, read_as).map_err(malformed)?;
    M::decode(&mut body, read_as).map_err(|e| malformed(format!("{e:#}")))
}

/// A walk over a body's layout that checks every length against the bytes left, before the
/// crate decodes it.
///
/// Why: the crate's array decoder reserves `Vec::with_capacity(count)` for a count read from
/// the bytes before it reads a single element. Garbage such as `7fffffff` then asks for tens of
/// gigabytes, and a failed allocation aborts the whole worker (it is not a panic a task could
/// survive). The bytes come from other members, so they are outside input (design decision
/// 14). The walk only rejects what the crate would reject too (a body shorter than its lengths
/// say); what it lets through, the crate decodes with allocations bounded by the input's size.
#[derive(Debug)]
struct Layout<'a> {
    /// The bytes not walked yet.
    rest: &'a [u8],
}

impl Layout<'_> {
    /// Steps over `n` bytes.
    fn skip(&mut self, n: usize) -> Result<(), String> {
        match self.rest.get(n..) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            None => Err(format!("{n} byte(s) needed, {} left", self.rest.len())),
        }
    }

    /// Reads an `int16`.
    fn int16(&mut self) -> Result<i16, String> {
        let Some((value, rest)) = self.rest.split_first_chunk::<2>() else {
            return Err(format!("an int16 needed, {} byte(s) left", self.rest.len()));
        };
        self.rest = rest;
        Ok(i16::from_be_bytes(*value))
    }

    /// Reads an `int32`.
    fn int32(&mut self) -> Result<i32, String> {
        let Some((value, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(format!("an int32 needed, {} byte(s) left", self.rest.len()));
        };
        self.rest = rest;
        Ok(i32::from_be_bytes(*value))
    }

    /// A (nullable) string: `int16` length, then the bytes. A negative length reads as none
    /// here; the crate decides whether it is allowed.
    fn string(&mut self) -> Result<(), String> {
        let len = self.int16()?;
        self.skip(usize::try_from(len).unwrap_or(0))
    }

    /// (Nullable) bytes: `int32` length, then the bytes.
    fn bytes(&mut self) -> Result<(), String> {
        let len = self.int32()?;
        self.skip(usize::try_from(len).unwrap_or(0))
    }

    /// An array whose elements take at least `min_element` bytes each: its count must fit in
    /// the bytes left, then each element is walked.
    fn array(
        &mut self,
        min_element: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let count = usize::try_from(self.int32()?).unwrap_or(0);
        if count > self.rest.len() / min_element {
            return Err(format!(
                "an array of {count} elements cannot fit in the {} byte(s) left",
                self.rest.len()
            ));
        }
        (0..count).try_for_each(|_| element(self))
    }

    /// A topic and its partitions: a string and an array of `int32`.
    fn topic_partitions(&mut self) -> Result<(), String> {
        self.string()?;
        self.array(4, |layout| layout.skip(4))
    }
}

/// One member's partitions: topic → partition ids.
pub type TopicPartitions = BTreeMap<String, Vec<i32>>;

/// A whole group's assignment: member id → its partitions. Every member is in it, those that
/// get nothing with no topics (aiokafka sends them an empty assignment too).
pub type GroupAssignment = BTreeMap<String, TopicPartitions>;

/// One member of the group as the leader learns it from the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The id the coordinator gave it: the assignors order members by it, and the result is
    /// keyed by it.
    pub member_id: String,
    /// Its static membership id (KIP-345), if any. aiokafka's assignors ignore it (Java's
    /// order static members by it), so ours do too; it is here for the leader's logs.
    pub group_instance_id: Option<String>,
    /// The topics of its subscription.
    pub topics: Vec<String>,
}

impl Member {
    /// A member from its entry in the JoinGroup response: ids and subscription bytes.
    pub fn from_metadata(
        member_id: &str,
        group_instance_id: Option<&str>,
        metadata: &[u8],
    ) -> Result<Member, ConsumerProtocolError> {
        let subscription = decode_subscription(metadata)?;
        Ok(Member {
            member_id: member_id.to_owned(),
            group_instance_id: group_instance_id.map(str::to_owned),
            topics: subscription
                .topics
                .iter()
                .map(|topic| topic.as_str().to_owned())
                .collect(),
        })
    }
}

/// The coordinator selected an assignor this member does not implement. It selects only
/// protocols every member offered, so this means a bug on our side, never a peer's choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the coordinator selected assignor {name:?}, which this member does not implement")]
pub struct UnknownAssignor {
    /// The protocol name the coordinator selected.
    pub name: String,
}

/// A partition assignment strategy, by its protocol name in JoinGroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// `roundrobin`: all partitions of all subscribed topics, sorted by topic then partition,
    /// dealt in turn to the members sorted by id; a member not subscribed to a partition's
    /// topic is passed over for it, and the turn carries on across topics.
    RoundRobin,
    /// `range`: per topic, its subscribers sorted by id each get a contiguous run of its
    /// partitions; the first `partitions % subscribers` of them get one more.
    Range,
}

impl Assignor {
    /// What we offer in JoinGroup, most preferred first. The coordinator selects a protocol
    /// every member offers, and each member votes for the first of those it listed: every
    /// hetida consumer offers `roundrobin` alone, so with `roundrobin` first our members agree
    /// with them and a group of only our members selects the same.
    pub const OFFERED: [Assignor; 2] = [Assignor::RoundRobin, Assignor::Range];

    /// The protocol name in JoinGroup and SyncGroup.
    pub const fn name(self) -> &'static str {
        match self {
            Assignor::RoundRobin => "roundrobin",
            Assignor::Range => "range",
        }
    }

    /// The assignor of a protocol name, if we implement it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::OFFERED
            .into_iter()
            .find(|assignor| assignor.name() == name)
    }

    /// Every member's partitions, computed as aiokafka 0.10 computes them.
    ///
    /// `partition_counts` has the partition count of each subscribed topic the leader found in
    /// the metadata; a subscribed topic missing from it is left out, as aiokafka leaves out a
    /// topic it has no metadata for. Members are keyed by id; when an id repeats (the
    /// coordinator never sends that) the last entry counts, as in aiokafka's dict. A topic
    /// listed twice in one subscription counts once (aiokafka's `range` would deal that member
    /// two runs and keep the second, leaving the first unassigned; no client sends repeats).
    pub fn assign(
        self,
        members: &[Member],
        partition_counts: &BTreeMap<String, i32>,
    ) -> GroupAssignment {
        let subscriptions: BTreeMap<&str, BTreeSet<&str>> = members
            .iter()
            .map(|member| {
                let topics = member.topics.iter().map(String::as_str).collect();
                (member.member_id.as_str(), topics)
            })
            .collect();
        match self {
            Assignor::RoundRobin => round_robin(&subscriptions, partition_counts),
            Assignor::Range => range(&subscriptions, partition_counts),
        }
    }
}

impl std::fmt::Display for Assignor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The leader's assignment for the protocol the coordinator selected (`protocol_name` of the
/// JoinGroup response). See [`Assignor::assign`].
pub fn assign(
    protocol_name: &str,
    members: &[Member],
    partition_counts: &BTreeMap<String, i32>,
) -> Result<GroupAssignment, UnknownAssignor> {
    let assignor = Assignor::from_name(protocol_name).ok_or_else(|| UnknownAssignor {
        name: protocol_name.to_owned(),
    })?;
    Ok(assignor.assign(members, partition_counts))
}

/// Every member with nothing assigned yet.
fn nothing_for(subscriptions: &BTreeMap<&str, BTreeSet<&str>>) -> GroupAssignment {
    subscriptions
        .keys()
        .map(|&member| (member.to_owned(), TopicPartitions::new()))
        .collect()
}

/// The partition ids of a topic with `count` partitions.
fn partitions_of(count: i32) -> impl Iterator<Item = i32> {
    0..count.max(0)
}

/// aiokafka's `RoundRobinPartitionAssignor.assign`.
fn round_robin(
    subscriptions: &BTreeMap<&str, BTreeSet<&str>>,
    partition_counts: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let mut assignment = nothing_for(subscriptions);
    // Sorted by member id, as `sorted(member_metadata.keys())`.
    let members: Vec<(&str, &BTreeSet<&str>)> = subscriptions
        .iter()
        .map(|(&member, topics)| (member, topics))
        .collect();
    // Sorted topics with ascending partitions: `all_topic_partitions.sort()`.
    let topics: BTreeSet<&str> = subscriptions.values().flatten().copied().collect();
    // One cycle over the members for all partitions of all topics: never restarted per topic.
    let mut turn = 0;
    for topic in topics {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        for partition in partitions_of(count) {
            // The next member in turn subscribed to `topic`. One exists: `topic` came from a
            // subscription (aiokafka loops forever otherwise; here the search is bounded).
            let Some(next) = (0..members.len())
                .map(|step| (turn + step) % members.len())
                .find(|&at| members[at].1.contains(topic))
            else {
                break;
            };
            turn = (next + 1) % members.len();
            if let Some(partitions) = assignment.get_mut(members[next].0) {
                partitions
                    .entry(topic.to_owned())
                    .or_default()
                    .push(partition);
            }
        }
    }
    assignment
}

/// aiokafka's `RangePartitionAssignor.assign`.
fn range(
    subscriptions: &BTreeMap<&str, BTreeSet<&str>>,
    partition_counts: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let mut assignment = nothing_for(subscriptions);
    let topics: BTreeSet<&str> = subscriptions.values().flatten().copied().collect();
    for topic in topics {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        // Sorted by member id, as `consumers_for_topic.sort()`.
        let consumers: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(&member, _)| member)
            .collect();
        let partitions: Vec<i32> = partitions_of(count).collect();
        let per_consumer = partitions.len() / consumers.len();
        let with_extra = partitions.len() % consumers.len();
        for (i, member) in consumers.into_iter().enumerate() {
            let start = per_consumer * i + i.min(with_extra);
            let len = per_consumer + usize::from(i < with_extra);
            // Even an empty run is listed: aiokafka assigns `partitions[start:start + 0]`, so a
            // subscriber left without partitions still gets the topic with none.
            let run = partitions.iter().skip(start).take(len).copied().collect();
            if let Some(partitions) = assignment.get_mut(member) {
                partitions.insert(topic.to_owned(), run);
            }
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> Member {
        Member {
            member_id: id.to_owned(),
            group_instance_id: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    /// A topic and its partitions.
    type Run<'a> = (&'a str, &'a [i32]);

    /// `[(member, [(topic, [partitions])])]` as a [`GroupAssignment`].
    fn expected(members: &[(&str, &[Run<'_>])]) -> GroupAssignment {
        members
            .iter()
            .map(|(member, topics)| {
                let topics = topics
                    .iter()
                    .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                    .collect();
                ((*member).to_owned(), topics)
            })
            .collect()
    }

    #[test]
    fn round_robin_deals_sorted_partitions_to_sorted_members() {
        // The example of aiokafka's docstring.
        let members = [member("C1", &["t1", "t0"]), member("C0", &["t0", "t1"])];
        let got = Assignor::RoundRobin.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
        let want = expected(&[
            ("C0", &[("t0", &[0, 2]), ("t1", &[1])]),
            ("C1", &[("t0", &[1]), ("t1", &[0, 2])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn round_robin_passes_over_members_not_subscribed_and_keeps_the_turn_across_topics() {
        // The second example of aiokafka's docstring.
        let members = [
            member("C0", &["t0"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1", "t2"]),
        ];
        let got =
            Assignor::RoundRobin.assign(&members, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        let want = expected(&[
            ("C0", &[("t0", &[0])]),
            ("C1", &[("t1", &[0])]),
            ("C2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn range_gives_the_first_members_the_remainder() {
        let members = [
            member("b", &["t"]),
            member("a", &["t"]),
            member("c", &["t"]),
        ];
        let got = Assignor::Range.assign(&members, &counts(&[("t", 7)]));
        let want = expected(&[
            ("a", &[("t", &[0, 1, 2])]),
            ("b", &[("t", &[3, 4])]),
            ("c", &[("t", &[5, 6])]),
        ]);
        assert_eq!(got, want);
        // The docstring's example: two topics of three partitions, two members.
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let got = Assignor::Range.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
        let want = expected(&[
            ("C0", &[("t0", &[0, 1]), ("t1", &[0, 1])]),
            ("C1", &[("t0", &[2]), ("t1", &[2])]),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn range_lists_a_topic_with_no_partitions_for_a_subscriber_left_without() {
        let members = [member("a", &["t"]), member("b", &["t"]), member("c", &[])];
        let got = Assignor::Range.assign(&members, &counts(&[("t", 1)]));
        let want = expected(&[("a", &[("t", &[0])]), ("b", &[("t", &[])]), ("c", &[])]);
        assert_eq!(got, want);
        // roundrobin lists only topics it dealt a partition of.
        let got = Assignor::RoundRobin.assign(&members, &counts(&[("t", 1)]));
        let want = expected(&[("a", &[("t", &[0])]), ("b", &[]), ("c", &[])]);
        assert_eq!(got, want);
    }

    #[test]
    fn topics_without_metadata_are_left_out_and_repeats_count_once() {
        let members = [member("a", &["t", "t", "gone"]), member("b", &["t"])];
        let partitions = counts(&[("t", 4)]);
        let got = Assignor::RoundRobin.assign(&members, &partitions);
        let want = expected(&[("a", &[("t", &[0, 2])]), ("b", &[("t", &[1, 3])])]);
        assert_eq!(got, want);
        let got = Assignor::Range.assign(&members, &partitions);
        let want = expected(&[("a", &[("t", &[0, 1])]), ("b", &[("t", &[2, 3])])]);
        assert_eq!(got, want);
    }

    #[test]
    fn an_empty_group_or_no_subscriptions_assign_nothing() {
        for assignor in Assignor::OFFERED {
            assert!(assignor.assign(&[], &counts(&[("t", 3)])).is_empty());
            let got = assignor.assign(&[member("a", &[])], &counts(&[("t", 3)]));
            assert_eq!(got, expected(&[("a", &[])]));
        }
    }

    #[test]
    fn names_round_trip_and_an_unknown_name_is_an_error() {
        for assignor in Assignor::OFFERED {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        assert_eq!(Assignor::OFFERED[0].name(), "roundrobin");
        assert_eq!(Assignor::from_name("cooperative-sticky"), None);
        let err = assign("sticky", &[], &BTreeMap::new()).unwrap_err();
        assert_eq!(err.name, "sticky");
        assert!(assign("range", &[], &BTreeMap::new()).is_ok());
    }

    #[test]
    fn our_subscription_is_aiokafkas_bytes() {
        // aiokafka: ConsumerProtocolMemberMetadata(0, ["requests"], b"").encode()
        let bytes =
            encode_subscription(&subscription_for(["requests"]), SUBSCRIPTION_VERSION).unwrap();
        let mut want = vec![0, 0, 0, 0, 0, 1, 0, 8];
        want.extend_from_slice(b"requests");
        want.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(bytes.as_ref(), want.as_slice());
        let member = Member::from_metadata("m", Some("host-w0"), &bytes).unwrap();
        assert_eq!(member.topics, ["requests"]);
        assert_eq!(member.group_instance_id.as_deref(), Some("host-w0"));
    }

    #[test]
    fn an_assignment_round_trips() {
        let partitions: TopicPartitions = [("a".to_owned(), vec![0, 3]), ("b".to_owned(), vec![])]
            .into_iter()
            .collect();
        let bytes = encode_assignment(&assignment_for(&partitions), ASSIGNMENT_VERSION).unwrap();
        let decoded = decode_assignment(&bytes).unwrap();
        assert_eq!(assigned_partitions(&decoded), partitions);
        assert_eq!(decoded.user_data, Some(Bytes::new()));
    }

    #[test]
    fn a_huge_array_count_is_an_error_not_an_abort() {
        // The crate alone would reserve 2^31 - 1 elements here and abort the process.
        let bytes = [0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        let err = decode_assignment(&bytes).unwrap_err();
        assert!(
            matches!(err, ConsumerProtocolError::Malformed { .. }),
            "{err}"
        );
        let err = decode_subscription(&bytes).unwrap_err();
        assert!(
            matches!(err, ConsumerProtocolError::Malformed { .. }),
            "{err}"
        );
        // Owned partitions (v1) with a huge count of partitions in one topic.
        let bytes = [
            0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 1, b't',
        ]
        .into_iter()
        .chain([0x7f, 0xff, 0xff, 0xf0])
        .collect::<Vec<u8>>();
        let err = decode_subscription(&bytes).unwrap_err();
        assert!(
            matches!(err, ConsumerProtocolError::Malformed { .. }),
            "{err}"
        );
    }

    #[test]
    fn versions_out_of_range_are_errors() {
        assert_eq!(
            decode_subscription(&[0]),
            Err(ConsumerProtocolError::NoVersion {
                what: "subscription",
                len: 1
            })
        );
        assert_eq!(
            decode_assignment(&[0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ConsumerProtocolError::NegativeVersion {
                what: "assignment",
                version: -1
            })
        );
        let err = encode_subscription(&subscription_for(["t"]), 4).unwrap_err();
        assert!(matches!(
            err,
            ConsumerProtocolError::Unencodable { version: 4, .. }
        ));
        let err = encode_assignment(&ConsumerProtocolAssignment::default(), -1).unwrap_err();
        assert!(matches!(
            err,
            ConsumerProtocolError::Unencodable { version: -1, .. }
        ));
    }
}
