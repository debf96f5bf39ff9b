//! Configuration: flags > hetida's environment variables > defaults, validated once.
//!
//! The supervisor loads and validates the whole configuration before it forks, so a mistake is one
//! clear startup error instead of N crashing workers. hetida's variables keep their meaning (spec
//! §9): `HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS` / `..._PRODUCER_OPTIONS` are JSON objects with
//! aiokafka's option names. Every option is either used, accepted with a logged reason why it has
//! no effect here, or rejected: nothing is silently ignored.
//!
//! * this module: the settings the rest of the crate reads ([`Config`] and its sections
//!   [`KafkaSettings`], [`RuntimeSettings`], [`ExecutionSettings`], [`StoreSettings`],
//!   [`SupervisorSettings`]), their named defaults, and [`ConfigError`];
//! * `sources`: where each setting comes from ([`Flags`], [`Env`], [`Config::load`]) and the
//!   checks across settings. It reads one section after the other (Kafka, runtime, execution,
//!   store, supervisor); the first wrong setting in that order is the error reported;
//! * `aiokafka`: the reader of hetida's two aiokafka option objects. The options that change
//!   what the service does are read by `ConsumerOptions` and `ProducerOptions`; the ones that
//!   do not are judged by the tables `COMMON_RULES`, `CONSUMER_RULES` and `PRODUCER_RULES`.

mod aiokafka;
mod sources;

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::tls::TlsFiles;

pub use sources::{Env, Flags};

// hetida's defaults (spec §9).

/// Topic requests are read from (`HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC`).
const DEFAULT_REQUEST_TOPIC: &str = "hd-execution-topic";
/// Topic responses are produced to (`HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC`).
const DEFAULT_RESPONSE_TOPIC: &str = "hd-execution-response-topic";
/// Not hetida's: the reference drops what is not a request, we keep it here (design decision 6).
const DEFAULT_DEAD_LETTER_TOPIC: &str = "hd-execution-dead-letter-topic";
/// `HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS` when it is not set.
const DEFAULT_CONSUMER_OPTIONS: &str =
    r#"{"bootstrap_servers": "kafka:19092", "group_id": "hd_kafka_consumer_group"}"#;
/// `HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS` when it is not set.
const DEFAULT_PRODUCER_OPTIONS: &str = r#"{"bootstrap_servers": "kafka:19092"}"#;
/// `HETIDA_DESIGNER_RUNTIME_ENGINE_URL` when it is not set.
const DEFAULT_RUNTIME_URL: &str = "http://hetida-designer-runtime:8090/engine/";
/// What `--store backend` means when `HETIDA_DESIGNER_BACKEND_API_URL` is not set.
const DEFAULT_BACKEND_API_URL: &str = "http://hetida-designer-backend:8090/api/";
/// The `transformations/` directory of the working directory (this repository's examples).
const DEFAULT_STORE: &str = "dir:transformations";
/// How the service names itself to the brokers when the consumer options give no `client_id`.
const DEFAULT_CLIENT_ID: &str = "hd-kafka-exec";
/// The group a consumer option object without `group_id` commits in: hetida's group.
const DEFAULT_GROUP_ID: &str = "hd_kafka_consumer_group";
/// aiokafka's `bootstrap_servers` default, for an option object that leaves it out.
const AIOKAFKA_BOOTSTRAP: &str = "localhost:9092";

// This service's own defaults.

/// `--runtime-timeout` when not given; see [`RuntimeSettings::call_timeout`].
const DEFAULT_RUNTIME_TIMEOUT: Duration = Duration::from_secs(300);
/// `--runtime-retry-budget` when not given; see [`RuntimeSettings::retry_budget`].
const DEFAULT_RUNTIME_RETRY_BUDGET: Duration = Duration::from_secs(30);
/// `--max-in-flight` when not given; see [`ExecutionSettings::max_in_flight`].
const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// `--latest-ttl` when not given; see [`StoreSettings::latest_ttl`].
const DEFAULT_LATEST_TTL: Duration = Duration::from_secs(10);
/// [`StoreSettings::cache_capacity`], which has no setting.
const STORE_CACHE_CAPACITY: usize = 1024;
/// `--timeout` when not given; see [`SupervisorSettings::timeout`].
const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(30);
/// `--graceful-timeout` when not given; see [`SupervisorSettings::graceful_timeout`].
const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);

// The rebalance timeout's default, from the settings that bound an execution.

/// What the default rebalance timeout adds to the longest execution: a member giving partitions
/// up stops waiting for their executions this much before the rebalance timeout at most, to
/// produce and commit in time (KIP-848's revocation keeps 15 s, the classic member 2 s).
pub const GIVE_UP_COMMIT_RESERVE: Duration = Duration::from_secs(20);
/// What the rebalance timeout's default adds to the grace period at least: a rebalance gives
/// executions no less time than a stop does.
const REBALANCE_OVER_GRACE: Duration = Duration::from_secs(5);
/// The longest rebalance timeout Kafka carries (JoinGroup and ConsumerGroupHeartbeat take an
/// int32 of milliseconds, about 24.8 days).
pub const MAX_REBALANCE_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// A configuration the service cannot start with. Each error names the flag, variable or option
/// to fix, because it is read by an operator at startup, not by code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An aiokafka options variable is not JSON, or JSON but not an object.
    #[error("{variable} is not a JSON object: {reason}")]
    NotAJsonObject {
        /// The environment variable (`HETIDA_DESIGNER_KAFKA_*_OPTIONS`).
        variable: String,
        /// The JSON parser's message, or what was found instead of an object.
        reason: String,
    },
    /// A known aiokafka option with a value aiokafka would not take either.
    #[error("{variable}: option `{option}` {reason}")]
    BadOption {
        /// The environment variable holding the option.
        variable: String,
        /// The option's aiokafka name.
        option: String,
        /// What the value must be (and, where it helps, what it was).
        reason: String,
    },
    /// An option aiokafka does not have: most likely a typo, which must not pass unnoticed.
    #[error("{variable}: unknown option `{option}` (aiokafka option names are expected)")]
    UnknownOption {
        /// The environment variable holding the option.
        variable: String,
        /// The option as written.
        option: String,
    },
    /// A valid aiokafka setting that asks for something this build cannot do (TLS, SASL,
    /// transactions, a codec left out); running without it would break the operator's intent.
    #[error("{variable}: option `{option}` is not supported by hd-kafka-exec: {reason}")]
    UnsupportedOption {
        /// The environment variable holding the option.
        variable: String,
        /// The option's aiokafka name.
        option: String,
        /// What is missing, and what to use instead where there is something.
        reason: String,
    },
    /// A flag or a plain variable with a value that cannot be used.
    #[error("{name}: {reason}")]
    Invalid {
        /// The flag or variable, as the operator writes it (`--workers`, `HD_INTERNAL_AUTH_MODE`).
        name: String,
        /// What is wrong with the value.
        reason: String,
    },
}

/// The error for a flag or plain variable `name` whose value cannot be used.
fn invalid(name: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// How a client talks to its brokers (aiokafka's `security_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// Neither encrypted nor authenticated (aiokafka's default).
    #[default]
    Plaintext,
    /// TLS: the brokers are authenticated by their certificates; the service by a client
    /// certificate where the listener asks for one.
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The name as aiokafka and Kafka write it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// aiokafka's `sasl_mechanism`s this service speaks (those hetida users can configure in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    /// Username and password in the clear (inside TLS, with SASL_SSL); aiokafka's default.
    #[default]
    Plain,
    /// Salted challenge-response: the password never crosses the wire.
    ScramSha256,
    /// As SCRAM-SHA-256, with the longer hash.
    ScramSha512,
}

impl SaslMechanism {
    /// The name as Kafka writes it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Who the service is to the brokers under SASL (`sasl_plain_username` and
/// `sasl_plain_password`, which aiokafka uses for SCRAM too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// `sasl_mechanism`: how the password is proven (PLAIN by default, as aiokafka).
    pub mechanism: SaslMechanism,
    /// `sasl_plain_username`: who the service is to the brokers.
    pub username: String,
    /// `sasl_plain_password`: only ever sent, never shown.
    pub password: Secret,
}

/// How one client (consumer side or producer side) connects to its brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `security_protocol` of the client's option object.
    pub protocol: SecurityProtocol,
    /// Set exactly when the protocol is SASL_PLAINTEXT or SASL_SSL.
    pub sasl: Option<SaslCredentials>,
    /// Trust and client certificate for SSL and SASL_SSL (`HD_KAFKA_SSL_*`, shared by both
    /// clients).
    pub tls: TlsFiles,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        KafkaSecurity {
            protocol: SecurityProtocol::Plaintext,
            sasl: None,
            tls: TlsFiles::system(),
        }
    }
}

impl std::fmt::Display for KafkaSecurity {
    /// For the startup summary and errors: never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.protocol.name())?;
        if let Some(sasl) = &self.sasl {
            write!(
                f,
                " ({} as user `{}`)",
                sasl.mechanism.name(),
                sasl.username
            )?;
        }
        if self.protocol.uses_tls() {
            match &self.tls.ca_file {
                Some(ca) => write!(f, ", trusting {}", ca.display())?,
                None => f.write_str(", trusting the system's CAs")?,
            }
            if let Some(cert) = &self.tls.cert_file {
                write!(f, ", client certificate {}", cert.display())?;
            }
        }
        Ok(())
    }
}

/// Where a partition without committed offset starts (aiokafka's `auto_offset_reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Only requests produced after the start are executed (aiokafka's default).
    #[default]
    Latest,
    /// From the oldest record still in the topic: nothing kept there is missed.
    Earliest,
    /// aiokafka's `none`: never reset. A partition without a committed offset is not consumed
    /// and one whose offset is out of range waits there, each with an ERROR (aiokafka raises
    /// `NoOffsetForPartitionError` / `OffsetOutOfRangeError`): the operator decides where it
    /// starts.
    Never,
}

/// Which records of transactions a fetch returns (aiokafka's `isolation_level`, sent as the
/// Fetch request's isolation level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, of open and aborted transactions too (aiokafka's and hetida's default).
    #[default]
    ReadUncommitted,
    /// Records of committed transactions and outside transactions only, up to the last stable
    /// offset; records of aborted transactions are skipped.
    ReadCommitted,
}

/// Which key a response record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ResponseKey {
    /// The request record's key, so responses follow requests' partitioning.
    #[default]
    Request,
    /// The job id, so all repeats of one job land on one partition.
    JobId,
    /// No key, like the reference.
    None,
}

/// How log lines are written: `text` (the default) for people reading a terminal, `json` one
/// object per line for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    // The variants are described above, not on themselves: clap would print a doc comment on a
    // variant in `serve --help`, and the help text stays as operators know it.
    #[default]
    #[allow(missing_docs)]
    Text,
    #[allow(missing_docs)]
    Json,
}

/// Compression of produced batches. gzip and snappy are pure Rust and always built in; lz4 and
/// zstd need C and exist only with the features of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Batches go as they are (aiokafka's default `compression_type`: null).
    #[default]
    None,
    /// `compression_type: "gzip"`.
    Gzip,
    /// `compression_type: "snappy"`.
    Snappy,
    /// `compression_type: "lz4"`; only with the `lz4` feature.
    #[cfg(feature = "lz4")]
    Lz4,
    /// `compression_type: "zstd"`; only with the `zstd` feature.
    #[cfg(feature = "zstd")]
    Zstd,
}

/// Everything Kafka-related a worker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// Brokers the consumer side (fetch, offsets) bootstraps from.
    pub consumer_bootstrap: Vec<String>,
    /// Brokers responses are produced to; hetida configures them separately.
    pub producer_bootstrap: Vec<String>,
    /// Names this service in the brokers' logs and quotas (the consumer's `client_id`, default
    /// `hd-kafka-exec`); the producer uses it too.
    pub client_id: String,
    /// Consumer group whose committed offsets record progress (hetida: `hd_kafka_consumer_group`).
    pub group_id: String,
    /// Where a partition without committed offset starts (default: latest, as aiokafka).
    pub auto_offset_reset: OffsetReset,
    /// Whether records of aborted transactions are read (`isolation_level`, default
    /// read_uncommitted as aiokafka).
    pub isolation_level: IsolationLevel,
    /// Requests are read from here (default `hd-execution-topic`).
    pub request_topic: String,
    /// Responses are produced here (default `hd-execution-response-topic`).
    pub response_topic: String,
    /// Undecodable records go here untouched; `None` turns the dead-letter topic off.
    pub dead_letter_topic: Option<String>,
    /// How often moved watermarks are committed (`auto_commit_interval_ms`, default 100 ms):
    /// often, so that a crash repeats little.
    pub commit_interval: Duration,
    /// How long a fetch waits on the broker for new records (`fetch_max_wait_ms`, default
    /// 500 ms as aiokafka).
    pub fetch_max_wait: Duration,
    /// Bytes one fetch asks for (`max_partition_fetch_bytes`, default 1 MiB as aiokafka): each
    /// fetch loop serves one partition, so the per-partition limit is the one that applies.
    pub fetch_max_bytes: i32,
    /// How long a response batch waits for more responses (`linger_ms`, default 0 as aiokafka).
    pub linger: Duration,
    /// Codec of produced batches (`compression_type`, default none).
    pub compression: Compression,
    /// aiokafka's `max_request_size`: no record batch of a response may be larger, measured
    /// after compression. Raising it lets larger answers through (with the response topic's
    /// `max.message.bytes`, which the broker enforces).
    pub max_request_size: usize,
    /// Who decides which worker fetches which partition: the consumer group (default) or the
    /// fixed split by worker index (`--partitioning`).
    pub partitioning: Partitioning,
    /// `session_timeout_ms`: a member silent this long is dropped by the group (aiokafka's
    /// 10 s).
    pub session_timeout: Duration,
    /// `heartbeat_interval_ms`: how often a member heartbeats (aiokafka's 3 s).
    pub heartbeat_interval: Duration,
    /// `rebalance_timeout_ms`: how long a rebalance waits for a member to finish its
    /// executions in flight, commit and rejoin; an execution still running when the member's
    /// give-up budget (this, less what it keeps for its own commit) is spent is given up and
    /// runs again on the partition's next owner. Default (also for 0): the longest an
    /// execution can take ([`RuntimeSettings::longest_execution`]) plus
    /// [`GIVE_UP_COMMIT_RESERVE`], so that no execution overlaps its re-execution, and no less
    /// than the grace period plus 5 s. Where that is longer than Kafka can carry
    /// ([`MAX_REBALANCE_TIMEOUT`]), the grace period plus 5 s, with a startup warning.
    pub rebalance_timeout: Duration,
    /// The consumer's `metadata_max_age_ms`: how often the request topic's partition count is
    /// checked, so that added partitions get fetched (by the group leader, or by the worker
    /// whose index they fall to). 30 s by default; aiokafka's 5 min is slower than needed.
    pub partition_check_interval: Duration,
    /// `group_instance_id`: static membership (the default, with the host name as prefix) or
    /// dynamic (`null`).
    pub membership: Membership,
    /// `group_protocol` (Java's `group.protocol`): the classic protocol (default), or the
    /// consumer protocol of KIP-848 (Kafka 4.0+: server-side assignment, incremental
    /// rebalances).
    pub group_protocol: GroupProtocol,
    /// `group_remote_assignor` (Java's `group.remote.assignor`): the broker's assignor a
    /// `consumer`-protocol member asks for (`uniform`, `range`); `None`: the broker's default.
    pub remote_assignor: Option<String>,
    /// How the consumer side (fetches, the group coordinator) connects: the consumer options'
    /// `security_protocol` and SASL settings.
    pub consumer_security: KafkaSecurity,
    /// How the producer side connects: the producer options' settings.
    pub producer_security: KafkaSecurity,
    /// Exactly-once responses (`--exactly-once`, or the producer options' `transactional_id`):
    /// each response and its request's offset in one Kafka transaction. `None`: at-least-once.
    pub exactly_once: Option<ExactlyOnce>,
}

/// How responses are produced exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactlyOnce {
    /// Worker i's transactional id is `<prefix>-<suffix>` (see [`ExactlyOnce::transactional_id`]);
    /// the producer options' `transactional_id`, else the group id.
    pub transactional_id_prefix: String,
    /// `transaction_timeout_ms` (default 60 s, as Kafka's clients): the coordinator aborts a
    /// transaction left open longer, e.g. by a worker that hangs.
    pub transaction_timeout: Duration,
}

impl ExactlyOnce {
    /// Worker `index`'s transactional id: stable across its restarts (so a replacement fences
    /// its predecessor and aborts its open transaction at once) and distinct between workers
    /// and hosts: the static instance id when there is one, else host name and index. By
    /// index there is one instance per group, and its workers commit without a group
    /// generation, so the id is the index alone: an instance started on another host (a
    /// rolling update) fences the one it replaces, which nothing else would.
    pub fn transactional_id(
        &self,
        membership: &Membership,
        partitioning: Partitioning,
        index: usize,
    ) -> String {
        let suffix = match partitioning {
            Partitioning::Index => index.to_string(),
            Partitioning::Group => membership
                .instance_id(index)
                .unwrap_or_else(|| format!("{}-{index}", host_name())),
        };
        format!("{}-{suffix}", self.transactional_id_prefix)
    }
}

/// Default of `transaction_timeout_ms`, as Kafka's Java client and aiokafka.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The consumer group protocol a worker speaks (`group_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat, eager rebalancing, client-side assignment (every Kafka,
    /// aiokafka's protocol).
    #[default]
    Classic,
    /// ConsumerGroupHeartbeat (KIP-848): the broker assigns, only partitions that must move
    /// do; Kafka 4.0+.
    Consumer,
    /// A share group (KIP-932, Kafka 4.2+): members consume the partitions together, each
    /// record acquired by one member and acknowledged on its own.
    Share,
}

/// Who decides which worker fetches which partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Partitioning {
    /// Every worker is a member of the consumer group, which assigns the partitions: instances
    /// on many hosts share them, beside hetida's own consumers.
    #[default]
    Group,
    /// Worker i of N fetches the partitions p with p mod N == i and commits without joining the
    /// group: one instance per group, nothing else consuming it.
    Index,
}

/// How a worker is known to the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Static membership (KIP-345): worker i is instance `<prefix>-<i>` for good, so a restarted
    /// or replaced worker gets its partitions back without a rebalance. Two instances on one
    /// host need distinct prefixes.
    Static {
        /// The start of every instance id: the host name, unless `group_instance_id` sets it.
        prefix: String,
    },
    /// A new member id on every join; every restart rebalances the group.
    Dynamic,
}

impl Membership {
    /// The instance id of worker `index`, if static.
    pub fn instance_id(&self, index: usize) -> Option<String> {
        match self {
            Membership::Static { prefix } => Some(format!("{prefix}-{index}")),
            Membership::Dynamic => None,
        }
    }
}

/// The host's name, the default prefix of static members' instance ids; `hd-kafka-exec` where
/// the system does not tell.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned())
}

/// aiokafka's default `max_request_size` (1 MiB), which hetida's producer runs with.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 1_048_576;

/// How the hetida runtime is called.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// Base URL; requests go to `<base>/runtime`.
    pub engine_url: String,
    /// Sent as `Authorization: Bearer` (hetida's FORWARD_OR_FIXED mode with a fixed token).
    pub bearer_token: Option<Secret>,
    /// Per call (default 300 s); the reference has none, so one hanging execution blocks it
    /// forever.
    pub call_timeout: Duration,
    /// Total time spent retrying connection failures before a failure response (default 30 s).
    pub retry_budget: Duration,
    /// Trust for an https:// runtime: the CA bundle (`--ca-bundle`, `HD_CA_BUNDLE`), else the
    /// system's CAs; `HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS=false` turns verification off, as
    /// in hetida. Checked at startup when the URL is https://.
    pub tls: TlsFiles,
}

impl RuntimeSettings {
    /// The longest one execution can take on the runtime: an unreachable runtime is retried
    /// for up to the retry budget, then one call may take up to the call timeout. A rebalance
    /// timeout shorter than this (and its give-up reserve) lets a partition's next owner
    /// execute a request while its first execution may still be running.
    pub fn longest_execution(&self) -> Duration {
        self.call_timeout.saturating_add(self.retry_budget)
    }
}

/// Execution behaviour of one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSettings {
    /// Executions running at once (default 16); a full window stops fetching (design decision 5).
    pub max_in_flight: usize,
    /// Which key response records carry (default: the request's).
    pub response_key: ResponseKey,
    /// Whether responses carry the worker's pid (`HD_ADVANCED_PERFORMANCE_MEASUREMENT_INFORMATION`,
    /// default true as hetida).
    pub report_process_id: bool,
}

/// Where revisions come from and how long "latest of a group" may be cached.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// `dir:PATH` or an http(s) URL of the hetida backend API.
    pub spec: String,
    /// Sent to the backend API as `Authorization: Bearer`: the same outgoing token as the
    /// runtime's (`HD_BEARER_TOKEN_FOR_OUTGOING_REQUESTS`), as in hetida.
    pub bearer_token: Option<Secret>,
    /// How long "latest released revision of a group" is answered from memory (default 10 s).
    pub latest_ttl: Duration,
    /// Released revisions (and their prepared requests) kept at most; 1024, not configurable.
    pub cache_capacity: usize,
    /// Trust for an https:// backend: the same CA bundle as the runtime's, verification by
    /// `HETIDA_DESIGNER_BACKEND_VERIFY_CERTS` (hetida's variable for calls to its backend).
    /// Checked at startup when the store is https://.
    pub tls: TlsFiles,
}

/// How the supervisor runs its workers.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorSettings {
    /// Worker processes (default: `HD_WORKERS`, else `WEB_CONCURRENCY`, else one per CPU).
    pub workers: usize,
    /// Silence after which a worker counts as hung and is replaced (default 30 s; zero: never).
    pub timeout: Duration,
    /// How long workers get to finish in-flight executions on a graceful stop (default 30 s).
    pub graceful_timeout: Duration,
    /// Where the supervisor writes its pid, for init systems that want one.
    pub pid_file: Option<PathBuf>,
    /// Where the metrics process serves `/metrics`, `/livez` and `/readyz` (default
    /// [`DEFAULT_METRICS_ADDR`]); `None`: no endpoint.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Whether the operator chose `metrics_addr` (flag or `HD_METRICS_ADDR`): an address chosen
    /// and not to be had stops `serve`; the default address taken (a second service on the
    /// host) is warned of and the service runs without the endpoint, which it does not need.
    pub metrics_addr_chosen: bool,
}

/// The metrics endpoint's address unless configured otherwise (OpenTelemetry's Prometheus
/// exporter's port, which nothing in a hetida stack uses).
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9464";

/// The validated configuration of one `serve` (and the parts `exec`/`prepare` share).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Brokers, topics, group and client tuning.
    pub kafka: KafkaSettings,
    /// Where and how executions are run.
    pub runtime: RuntimeSettings,
    /// What a worker does with each request.
    pub execution: ExecutionSettings,
    /// Where revisions come from.
    pub store: StoreSettings,
    /// How many workers, and how they are watched and stopped.
    pub supervisor: SupervisorSettings,
    /// Log line format (default text).
    pub log_format: LogFormat,
    /// What the operator should know about settings that were accepted: options that do
    /// nothing here (with why), peers whose certificates are not verified, a rebalance timeout
    /// shorter than an execution can take. Each is logged once, as a warning, at startup.
    pub notices: Vec<String>,
}
