//! Every Kafka detail of the service; the worker opens a [`Session`] and sees request records
//! and one [`Answers`] handle.
//!
//! * `session`: one worker's clients, partitions, membership task, committer and answers
//!   ([`Session`]).
//! * `partitions`: the one owner of the worker's partitions (fetch loops, watermarks, give-up
//!   commits): take, give up, lose; membership only decides which.
//! * `tenure`: a partition's tenure at this worker and giving it up, IO-free: an answer goes
//!   out only under a claim, which a partition given up past its deadline refuses.
//! * `answer`: the one answer path ([`Answers`]): at-least-once or exactly-once behind it.
//! * [`client`]: how rskafka clients are built (one backoff), partition counts and clients.
//! * `coordinator`: the group coordinator client: committed offsets, and (in [`member`]) the
//!   classic group protocol's calls (rskafka has no group APIs).
//! * [`member`]: this worker as one member of the consumer group: join, assignment,
//!   heartbeats, rebalances; the classic protocol, or the consumer protocol of KIP-848.
//! * [`group`]: the group's shared rules: the embedded consumer protocol and aiokafka's
//!   assignors.
//! * `share`: share groups (KIP-932, `"group_protocol": "share"`): the worker as a share-group
//!   member, its share sessions, acquired records and their acknowledgements.
//! * `committer`: commits the watermarks that moved.
//! * [`transaction`]: exactly-once (opt-in): responses and offsets in one Kafka transaction,
//!   in the committer's place.
//! * `watermark`: per partition, the lowest offset whose response is not yet in Kafka.
//! * [`consumer`]: long-poll fetch loops over the owned partitions of the request topic, with
//!   back-pressure, handing out [`RequestRecord`]s.
//! * `leader_fetch`: Fetch requests to a partition's leader over this service's own
//!   connections, and the read_committed rule for aborted transactions.
//! * [`record_batch`]: Kafka's record batches as bytes, read and written without IO (rskafka's
//!   reader refuses batches the Java consumer reads).
//! * `cluster`: which broker leads which partition (Metadata), for this service's own
//!   connections.
//! * [`producer`]: responses (and dead letters) with acks=all, partitioned like Java's client,
//!   within `max_request_size` and the topic's `max.message.bytes`.
//! * `topic_config`: a topic's configuration as the brokers report it (DescribeConfigs).
//! * `trouble`: a topic's spell of produce failures, IO-free: one WARN per interval, however
//!   many records wait.
//! * `tail`: a topic read from its end on (the `exec` command's response).
//! * `lag`: the group's committed offsets against the log ends (the metrics' consumer lag).
//! * [`security`]: TLS and SASL as configured, for rskafka's clients and this service's own
//!   connections; the errors that mean "fix the configuration", not "retry".
//! * [`wire`]: one request/response connection to a broker on the `kafka-protocol` codec, for
//!   the APIs rskafka lacks.

mod answer;
pub mod client;
mod cluster;
mod committer;
pub mod consumer;
mod coordinator;
mod error;
pub mod group;
mod lag;
mod leader_fetch;
pub mod member;
mod partitions;
pub mod producer;
pub mod record_batch;
pub mod security;
mod session;
mod share;
mod tail;
mod tenure;
mod too_large;
mod topic_config;
pub mod transaction;
mod trouble;
mod verbatim;
mod watermark;
pub mod wire;

pub use answer::{Answers, DEAD_LETTER_WAIT, Delivery, Keeping, Refusal, Reply};
pub use client::backoff;
pub use cluster::ClusterMap;
pub use committer::Committer;
pub use consumer::{DoneToken, RequestConsumer, RequestRecord};
pub use coordinator::{CoordinatorError, Generation, GroupCoordinator};
pub use error::{KafkaError, Refused};
pub use lag::LagReader;
pub use member::MemberSettings;
pub use producer::{OutgoingRecord, PreparedRecord, ProducerSettings, ResponseProducer};
pub use security::{BrokerAuth, SecurityError};
pub use session::{Opened, Ownership, Session};
pub use tail::{TailRecord, TopicTail};
pub use too_large::{RecordTooLarge, SizeLimit};
pub use watermark::Watermarks;
