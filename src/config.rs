//! Configuration: flags > hetida's environment variables > defaults, validated once.
//!
//! The supervisor loads and validates the whole configuration before it forks, so a mistake is one
//! clear startup error instead of N crashing workers. hetida's variables keep their meaning (spec
//! §9): `HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS` / `..._PRODUCER_OPTIONS` are JSON objects with
//! aiokafka's option names. Every option is either used, accepted with a logged reason why it has
//! no effect here, or rejected: nothing is silently ignored.
//!
//! [`Config::load`] reads one section after the other (Kafka, runtime, execution, store,
//! supervisor), each from its flags and variables; the first wrong setting in that order is the
//! error reported. In the aiokafka option objects, the options that change what the service
//! does are read by `ConsumerOptions` and `ProducerOptions`; the ones that do not are judged by
//! the tables `COMMON_RULES`, `CONSUMER_RULES` and `PRODUCER_RULES`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::tls::TlsFiles;

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

/// A password or token: readable where it is used ([`Secret::expose`]), never in `Debug`
/// output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
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
    pub mechanism: SaslMechanism,
    pub username: String,
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
    Text,
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
    /// executions in flight, commit and rejoin. Default: the grace period plus 5 s, so that a
    /// rebalance gives executions as long as a stop does.
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
    Static { prefix: String },
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
    /// Options accepted that do nothing here, with why; logged once at startup.
    pub notices: Vec<String>,
}

/// Flags; each overrides its environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Where revisions come from: `dir:PATH` or the hetida backend API URL (`backend` = $HETIDA_DESIGNER_BACKEND_API_URL).
    #[arg(long)]
    pub store: Option<String>,
    /// Bootstrap servers for consumer and producer (overrides the *_OPTIONS variables), comma separated.
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Consumer group for committed offsets.
    #[arg(long)]
    pub group_id: Option<String>,
    /// Request topic [env: HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC].
    #[arg(long)]
    pub request_topic: Option<String>,
    /// Response topic [env: HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC].
    #[arg(long)]
    pub response_topic: Option<String>,
    /// Dead-letter topic for records that are not requests at all; empty turns it off.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    /// Who assigns the request topic's partitions to workers: the consumer group (every worker
    /// a member, default) or the fixed split by worker index (one instance per group only).
    #[arg(long, value_enum)]
    pub partitioning: Option<Partitioning>,
    /// CA bundle (PEM) trusted for Kafka's SSL and SASL_SSL instead of the system's CAs [env: HD_KAFKA_SSL_CAFILE].
    #[arg(long)]
    pub kafka_ssl_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for Kafka listeners that authenticate clients by certificate [env: HD_KAFKA_SSL_CERTFILE].
    #[arg(long)]
    pub kafka_ssl_certfile: Option<PathBuf>,
    /// Private key (PEM) of the client certificate; its password only from HD_KAFKA_SSL_PASSWORD [env: HD_KAFKA_SSL_KEYFILE].
    #[arg(long)]
    pub kafka_ssl_keyfile: Option<PathBuf>,
    /// Runtime base URL [env: HETIDA_DESIGNER_RUNTIME_ENGINE_URL].
    #[arg(long)]
    pub runtime_url: Option<String>,
    /// Seconds one runtime call may take before the request gets a failure response.
    #[arg(long)]
    pub runtime_timeout: Option<f64>,
    /// Seconds spent retrying an unreachable runtime before the request gets a failure response.
    #[arg(long)]
    pub runtime_retry_budget: Option<f64>,
    /// PEM bundle of the CAs trusted for an https:// runtime and backend, instead of the
    /// system's [env: HD_CA_BUNDLE].
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// Executions run at once per worker.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Key of response records.
    #[arg(long, value_enum)]
    pub response_key: Option<ResponseKey>,
    /// Seconds "latest released revision of a group" is cached.
    #[arg(long)]
    pub latest_ttl: Option<f64>,
    /// Worker processes [env: HD_WORKERS, WEB_CONCURRENCY; default: number of CPUs].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seconds a worker may stay silent before it is killed and replaced (0 = off).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Seconds workers get to finish in-flight executions on stop.
    #[arg(long)]
    pub graceful_timeout: Option<f64>,
    /// Write the supervisor's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Serve /metrics, /livez and /readyz at HOST:PORT (`:PORT` for every interface); an
    /// empty value turns the endpoint off [env: HD_METRICS_ADDR; default: 0.0.0.0:9464].
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Log line format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Produce each response and commit its request's offset in one Kafka transaction, so
    /// read_committed readers see exactly one response per request [env: HD_EXACTLY_ONCE].
    #[arg(long)]
    pub exactly_once: bool,
}

/// The process environment, looked up case-insensitively like pydantic settings do.
#[derive(Debug, Clone, Default)]
pub struct Env(
    /// Every variable, its name upper-cased so that a lookup in any case finds it.
    BTreeMap<String, String>,
);

impl Env {
    /// The environment of this process.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.into().to_ascii_uppercase(), v.into()))
            .collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_uppercase()).map(String::as_str)
    }

    /// A setting from its flag if given, else from its variable, else `default`.
    fn setting(&self, flag: Option<&str>, variable: &str, default: &str) -> String {
        flag.or_else(|| self.get(variable))
            .unwrap_or(default)
            .to_owned()
    }
}

impl Config {
    /// Builds and validates the configuration from flags and the environment.
    pub fn load(flags: &Flags, env: &Env) -> Result<Config, ConfigError> {
        let mut notices = Vec::new();
        let kafka = KafkaSettings::load(flags, env, &mut notices)?;
        let runtime = RuntimeSettings::load(flags, env, &mut notices)?;
        let execution = ExecutionSettings::load(flags, env)?;
        let store = StoreSettings::load(flags, env, runtime.bearer_token.clone(), &mut notices)?;
        let supervisor = SupervisorSettings::load(flags, env)?;
        let mut kafka = kafka;
        if kafka.rebalance_timeout.is_zero() {
            kafka.rebalance_timeout = supervisor.graceful_timeout + Duration::from_secs(5);
        }
        if kafka.heartbeat_interval >= kafka.session_timeout {
            return Err(invalid(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                "heartbeat_interval_ms must be shorter than session_timeout_ms",
            ));
        }
        Ok(Config {
            kafka,
            runtime,
            execution,
            store,
            supervisor,
            log_format: flags.log_format.unwrap_or_default(),
            notices,
        })
    }
}

impl KafkaSettings {
    /// hetida's two aiokafka option objects, with the flags and topic variables over them.
    fn load(flags: &Flags, env: &Env, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        // Both variables are parsed before either is read option by option, so a variable that
        // is not JSON is reported before a bad option in the other.
        let consumer = aiokafka_options(
            env,
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            DEFAULT_CONSUMER_OPTIONS,
        )?;
        let producer = aiokafka_options(
            env,
            "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
            DEFAULT_PRODUCER_OPTIONS,
        )?;
        let consumer = ConsumerOptions::from_map(consumer, notices)?;
        let producer = ProducerOptions::from_map(producer, notices)?;
        let tls = kafka_tls_files(flags, env)?;
        let consumer_security =
            consumer
                .security
                .finish("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &tls, notices)?;
        let producer_security =
            producer
                .security
                .finish("HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS", &tls, notices)?;
        let uses_tls =
            consumer_security.protocol.uses_tls() || producer_security.protocol.uses_tls();
        if uses_tls {
            crate::tls::check(&tls).map_err(|e| invalid("HD_KAFKA_SSL_*", &e.to_string()))?;
        } else if tls != TlsFiles::system() {
            notices.push(
                "HD_KAFKA_SSL_* have no effect: neither option object's security_protocol is SSL or SASL_SSL".into(),
            );
        }

        let flag_bootstrap = flags
            .bootstrap_servers
            .as_deref()
            .map(|s| split_servers("--bootstrap-servers", s))
            .transpose()?;
        let dead_letter_topic = dead_letter_topic(flags)?;
        let request_topic = topic(
            env,
            flags.request_topic.as_deref(),
            "HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC",
            DEFAULT_REQUEST_TOPIC,
        )?;
        let response_topic = topic(
            env,
            flags.response_topic.as_deref(),
            "HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC",
            DEFAULT_RESPONSE_TOPIC,
        )?;
        let group_id = flags.group_id.clone().unwrap_or(consumer.group_id);
        if group_id.is_empty() {
            return Err(invalid("--group-id", "must not be empty"));
        }
        let exactly_once = (flags.exactly_once
            || env_flag(env, "HD_EXACTLY_ONCE")?
            || producer.transactional_id.is_some())
        .then(|| ExactlyOnce {
            transactional_id_prefix: producer
                .transactional_id
                .clone()
                .unwrap_or_else(|| group_id.clone()),
            transaction_timeout: producer.transaction_timeout,
        });
        if exactly_once.is_some()
            && !matches!(
                producer.compression,
                Compression::None | Compression::Gzip | Compression::Snappy
            )
        {
            return Err(ConfigError::UnsupportedOption {
                variable: "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS".into(),
                option: "compression_type".into(),
                reason: "exactly-once compresses with gzip or snappy only".into(),
            });
        }
        if producer.idempotence && exactly_once.is_none() {
            return Err(ConfigError::UnsupportedOption {
                variable: "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS".into(),
                option: "enable_idempotence".into(),
                reason: "only the transactional producer is idempotent: turn on --exactly-once \
                         (or set transactional_id); otherwise responses carry the job id so \
                         readers can drop repeats"
                    .into(),
            });
        }
        let partitioning = flags.partitioning.unwrap_or_default();
        if consumer.group_protocol == GroupProtocol::Consumer && partitioning == Partitioning::Index
        {
            return Err(invalid(
                "--partitioning index",
                "workers of a fixed split join no group, so group_protocol `consumer` has no group to speak it in; use --partitioning group",
            ));
        }
        Ok(KafkaSettings {
            consumer_bootstrap: flag_bootstrap.clone().unwrap_or(consumer.bootstrap),
            producer_bootstrap: flag_bootstrap.unwrap_or(producer.bootstrap),
            client_id: consumer.client_id,
            group_id,
            auto_offset_reset: consumer.auto_offset_reset,
            request_topic,
            response_topic,
            dead_letter_topic,
            commit_interval: consumer.commit_interval,
            fetch_max_wait: consumer.fetch_max_wait,
            fetch_max_bytes: consumer.fetch_max_bytes,
            linger: producer.linger,
            compression: producer.compression,
            max_request_size: producer.max_request_size,
            partitioning,
            session_timeout: consumer.session_timeout,
            heartbeat_interval: consumer.heartbeat_interval,
            // Filled in by Config::load, which knows the grace period, when not given.
            rebalance_timeout: consumer.rebalance_timeout.unwrap_or_default(),
            partition_check_interval: consumer.partition_check_interval,
            membership: consumer.membership,
            group_protocol: consumer.group_protocol,
            remote_assignor: consumer.remote_assignor,
            consumer_security,
            producer_security,
            exactly_once,
        })
    }
}

/// A boolean variable: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off` (any case); unset or
/// empty is false.
fn env_flag(env: &Env, name: &str) -> Result<bool, ConfigError> {
    match env.get(name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(invalid(
            name,
            &format!("`{other}` is not a boolean (true or false)"),
        )),
    }
}

/// The TLS files for Kafka from their flags and variables (aiokafka takes an `ssl_context`
/// object, which JSON cannot express, so these live beside the option objects, named after
/// `create_ssl_context`'s parameters). The key's password only comes from the environment: a
/// flag would show it in the process list.
fn kafka_tls_files(flags: &Flags, env: &Env) -> Result<TlsFiles, ConfigError> {
    let path = |flag: &Option<PathBuf>, variable: &str| -> Result<Option<PathBuf>, ConfigError> {
        match flag
            .clone()
            .or_else(|| env.get(variable).map(PathBuf::from))
        {
            Some(p) if p.as_os_str().is_empty() => Ok(None),
            Some(p) if !p.is_file() => Err(invalid(
                variable,
                &format!("{} is not a readable file", p.display()),
            )),
            other => Ok(other),
        }
    };
    Ok(TlsFiles {
        ca_file: path(&flags.kafka_ssl_cafile, "HD_KAFKA_SSL_CAFILE")?,
        cert_file: path(&flags.kafka_ssl_certfile, "HD_KAFKA_SSL_CERTFILE")?,
        key_file: path(&flags.kafka_ssl_keyfile, "HD_KAFKA_SSL_KEYFILE")?,
        key_password: env
            .get("HD_KAFKA_SSL_PASSWORD")
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        verify_server: true,
    })
}

/// The host's name, the default prefix of static members' instance ids; `hd-kafka-exec` where
/// the system does not tell.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned())
}

/// A topic from its flag, its variable or hetida's default; a bad name is reported under the
/// variable's name, whichever of the three gave it.
fn topic(
    env: &Env,
    flag: Option<&str>,
    variable: &str,
    default: &str,
) -> Result<String, ConfigError> {
    let name = env.setting(flag, variable, default);
    validate_topic(variable, &name)?;
    Ok(name)
}

/// The dead-letter topic is on by default; `--dead-letter-topic ''` turns it off.
fn dead_letter_topic(flags: &Flags) -> Result<Option<String>, ConfigError> {
    let topic = match &flags.dead_letter_topic {
        Some(t) if t.is_empty() => None,
        Some(t) => Some(t.clone()),
        None => Some(DEFAULT_DEAD_LETTER_TOPIC.to_owned()),
    };
    if let Some(t) = &topic {
        validate_topic("--dead-letter-topic", t)?;
    }
    Ok(topic)
}

impl RuntimeSettings {
    fn load(flags: &Flags, env: &Env, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        let engine_url = env.setting(
            flags.runtime_url.as_deref(),
            "HETIDA_DESIGNER_RUNTIME_ENGINE_URL",
            DEFAULT_RUNTIME_URL,
        );
        let tls = https_trust(flags, env, "HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS")?;
        check_https(
            "HETIDA_DESIGNER_RUNTIME_ENGINE_URL",
            &engine_url,
            &tls,
            "HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS",
            notices,
        )?;
        Ok(RuntimeSettings {
            engine_url,
            bearer_token: outgoing_token(env)?,
            call_timeout: seconds("--runtime-timeout", flags.runtime_timeout, 300.0)?,
            retry_budget: seconds("--runtime-retry-budget", flags.runtime_retry_budget, 30.0)?,
            tls,
        })
    }
}

/// The trust of one HTTPS peer: the one CA bundle for both peers, and hetida's own switch for
/// verifying that peer's certificate (`verify_variable`, a bool in hetida's `config.py`).
fn https_trust(flags: &Flags, env: &Env, verify_variable: &str) -> Result<TlsFiles, ConfigError> {
    // An empty variable counts as unset, as a compose file's `HD_CA_BUNDLE:` would leave it.
    let ca_file = flags.ca_bundle.clone().or_else(|| {
        env.get("HD_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let verify_server = match env.get(verify_variable) {
        None => true,
        Some(v) => lenient_bool(v)
            .ok_or_else(|| invalid(verify_variable, &format!("`{v}` is not a boolean")))?,
    };
    Ok(TlsFiles {
        ca_file,
        verify_server,
        ..TlsFiles::system()
    })
}

/// Refuses a URL that is neither http:// nor https://; for https:// checks the trust as the
/// workers will build it, so a missing CA bundle or a build without TLS stops the service at
/// startup, and notes when the peer's certificate will not be verified.
fn check_https(
    name: &str,
    url: &str,
    tls: &TlsFiles,
    verify_variable: &str,
    notices: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if url.starts_with("http://") {
        return Ok(());
    }
    if !url.starts_with("https://") {
        return Err(invalid(
            name,
            &format!("`{url}` must be an http:// or https:// URL"),
        ));
    }
    crate::tls::check(tls).map_err(|e| invalid(name, &format!("`{url}`: {e}")))?;
    if !tls.verify_server {
        notices.push(format!(
            "{verify_variable} is false: the certificate of {url} is not verified; the connection is encrypted, but to whoever answers"
        ));
    }
    Ok(())
}

impl ExecutionSettings {
    fn load(flags: &Flags, env: &Env) -> Result<Self, ConfigError> {
        let max_in_flight = flags.max_in_flight.unwrap_or(16);
        if max_in_flight == 0 {
            return Err(invalid("--max-in-flight", "must be at least 1"));
        }
        // hetida fills `process_id` unless told not to.
        let report_process_id = match env.get("HD_ADVANCED_PERFORMANCE_MEASUREMENT_INFORMATION") {
            None => true,
            Some(v) => lenient_bool(v).ok_or_else(|| {
                invalid(
                    "HD_ADVANCED_PERFORMANCE_MEASUREMENT_INFORMATION",
                    &format!("`{v}` is not a boolean"),
                )
            })?,
        };
        Ok(ExecutionSettings {
            max_in_flight,
            response_key: flags.response_key.unwrap_or_default(),
            report_process_id,
        })
    }
}

impl StoreSettings {
    /// `bearer_token` is the runtime's: hetida sends one outgoing token to both.
    fn load(
        flags: &Flags,
        env: &Env,
        bearer_token: Option<Secret>,
        notices: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let spec = flags
            .store
            .clone()
            .unwrap_or_else(|| DEFAULT_STORE.to_owned());
        // `backend` spares the operator writing the URL hetida's other services already know.
        let spec = if spec == "backend" {
            env.get("HETIDA_DESIGNER_BACKEND_API_URL")
                .unwrap_or(DEFAULT_BACKEND_API_URL)
                .to_owned()
        } else {
            spec
        };
        let tls = https_trust(flags, env, "HETIDA_DESIGNER_BACKEND_VERIFY_CERTS")?;
        // `dir:` and anything else `serve` rejects by name are not checked here.
        if spec.starts_with("https://") {
            check_https(
                "--store",
                &spec,
                &tls,
                "HETIDA_DESIGNER_BACKEND_VERIFY_CERTS",
                notices,
            )?;
        }
        Ok(StoreSettings {
            spec,
            bearer_token,
            latest_ttl: seconds("--latest-ttl", flags.latest_ttl, 10.0)?,
            cache_capacity: 1024,
            tls,
        })
    }
}

impl SupervisorSettings {
    fn load(flags: &Flags, env: &Env) -> Result<Self, ConfigError> {
        // HD_WORKERS is ours; WEB_CONCURRENCY is gunicorn's, which hetida's backend runs under.
        let workers = match flags.workers {
            Some(n) => n,
            None => match env.get("HD_WORKERS").or_else(|| env.get("WEB_CONCURRENCY")) {
                Some(v) => v.trim().parse().map_err(|_| {
                    invalid(
                        "HD_WORKERS/WEB_CONCURRENCY",
                        &format!("`{v}` is not a number"),
                    )
                })?,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        };
        if workers == 0 {
            return Err(invalid("--workers", "must be at least 1"));
        }
        Ok(SupervisorSettings {
            workers,
            timeout: seconds("--timeout", flags.timeout, 30.0)?,
            graceful_timeout: seconds("--graceful-timeout", flags.graceful_timeout, 30.0)?,
            pid_file: flags.pid_file.clone(),
            metrics_addr: metrics_addr(flags, env)?,
        })
    }
}

/// `--metrics-addr`, else `HD_METRICS_ADDR`, else the default; empty turns the endpoint off.
fn metrics_addr(flags: &Flags, env: &Env) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    use std::net::ToSocketAddrs;
    let (name, value) = match (&flags.metrics_addr, env.get("HD_METRICS_ADDR")) {
        (Some(v), _) => ("--metrics-addr", v.as_str()),
        (None, Some(v)) => ("HD_METRICS_ADDR", v),
        (None, None) => ("--metrics-addr", DEFAULT_METRICS_ADDR),
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let full = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.to_owned(),
    };
    let bad = |why: String| {
        invalid(
            name,
            &format!("`{value}`: {why} (expected HOST:PORT, :PORT, or empty for no endpoint)"),
        )
    };
    full.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .map(Some)
        .ok_or_else(|| bad("names no address".into()))
}

fn invalid(name: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

fn seconds(name: &str, value: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    Duration::try_from_secs_f64(v).map_err(|_| {
        invalid(
            name,
            &format!("`{v}` is not a non-negative number of seconds"),
        )
    })
}

/// Kafka's own rule for topic names, checked here so a typo fails at startup, not in every worker.
fn validate_topic(name: &str, topic: &str) -> Result<(), ConfigError> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            name,
            &format!("`{topic}` is not a valid Kafka topic name"),
        ))
    }
}

/// hetida's outgoing auth to the runtime and backend (spec §9, `HD_INTERNAL_AUTH_MODE`).
fn outgoing_token(env: &Env) -> Result<Option<Secret>, ConfigError> {
    let mode = env
        .get("HD_INTERNAL_AUTH_MODE")
        .unwrap_or("FORWARD_OR_FIXED")
        .to_ascii_uppercase();
    match mode.as_str() {
        "OFF" => Ok(None),
        // There is no incoming request to forward a token from on the Kafka path.
        "FORWARD_OR_FIXED" => Ok(env
            .get("HD_BEARER_TOKEN_FOR_OUTGOING_REQUESTS")
            .filter(|t| !t.is_empty())
            .map(Secret::new)),
        "CLIENT" => Err(invalid(
            "HD_INTERNAL_AUTH_MODE",
            "CLIENT (OAuth client credentials) is not supported; use FORWARD_OR_FIXED with HD_BEARER_TOKEN_FOR_OUTGOING_REQUESTS",
        )),
        other => Err(invalid(
            "HD_INTERNAL_AUTH_MODE",
            &format!("`{other}` is not one of OFF, FORWARD_OR_FIXED, CLIENT"),
        )),
    }
}

/// pydantic's lenient bool parsing (spec §2.1).
fn lenient_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// One aiokafka options variable: its name (for errors) and its JSON object.
type OptionObject = (String, serde_json::Map<String, Value>);

fn aiokafka_options(env: &Env, variable: &str, default: &str) -> Result<OptionObject, ConfigError> {
    let text = env.get(variable).unwrap_or(default);
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok((variable.to_owned(), map)),
        Ok(other) => Err(ConfigError::NotAJsonObject {
            variable: variable.to_owned(),
            reason: format!("found {other}"),
        }),
        Err(e) => Err(ConfigError::NotAJsonObject {
            variable: variable.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn split_servers(name: &str, s: &str) -> Result<Vec<String>, ConfigError> {
    let servers: Vec<String> = s
        .split(',')
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(invalid(name, "no bootstrap server given"));
    }
    for server in &servers {
        let port_ok = server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(invalid(name, &format!("`{server}` is not host:port")));
        }
    }
    Ok(servers)
}

/// Reads one option object: each option is judged by `COMMON_RULES` or the client's `rules`, or
/// read by `take` (which answers `false` for a name it does not know), or it is unknown.
fn read_options(
    (variable, map): &OptionObject,
    rules: &[(&[&str], Rule)],
    notices: &mut Vec<String>,
    mut take: impl FnMut(&OptionValue<'_>, &mut Vec<String>) -> Result<bool, ConfigError>,
) -> Result<(), ConfigError> {
    for (option, value) in map {
        let o = OptionValue {
            variable,
            option,
            value,
        };
        let rule = COMMON_RULES
            .iter()
            .chain(rules)
            .find(|(names, _)| names.contains(&option.as_str()));
        if let Some((_, rule)) = rule {
            o.judge(*rule, notices)?;
        } else if !take(&o, notices)? {
            return Err(ConfigError::UnknownOption {
                variable: variable.clone(),
                option: option.clone(),
            });
        }
    }
    Ok(())
}

/// How an option that changes nothing here is judged. aiokafka would reject a value of the
/// wrong kind, so the value is checked even where the option has no effect: a typo is caught
/// where the operator expects it to be.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Accepted once the value has this shape; a notice says why it has no effect.
    NoEffect(Shape, &'static str),
    /// Only `null` (aiokafka's default) is accepted; any value asks for what this build lacks.
    OnlyNull(&'static str),
    /// Only `value` is accepted: it is what the service does anyway. Any other string is
    /// unsupported, and the error quotes it before `reason`.
    Only {
        value: &'static str,
        reason: &'static str,
    },
}

/// The kind of value an option without effect must still have.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Any value; not checked.
    Any,
    /// `true` or `false`.
    Bool,
    /// A string.
    String,
    /// Milliseconds: a non-negative integer.
    Millis,
    /// A count or a size that may be zero.
    Count,
    /// A size that must be positive.
    Size,
}

/// Options of both aiokafka clients that change nothing here.
const COMMON_RULES: &[(&[&str], Rule)] = &[
    (
        &["ssl_context"],
        Rule::OnlyNull(
            "an SSL context object cannot be written in JSON; name the CA bundle, client certificate and key with HD_KAFKA_SSL_CAFILE, HD_KAFKA_SSL_CERTFILE, HD_KAFKA_SSL_KEYFILE (and HD_KAFKA_SSL_PASSWORD); the system's CAs are trusted by default",
        ),
    ),
    (
        &["sasl_kerberos_service_name", "sasl_kerberos_domain_name"],
        Rule::OnlyNull("GSSAPI (Kerberos) is not supported; use PLAIN or SCRAM"),
    ),
    (
        &["sasl_oauth_token_provider"],
        Rule::OnlyNull("OAUTHBEARER is not supported; use PLAIN or SCRAM"),
    ),
    (
        &[
            "request_timeout_ms",
            "retry_backoff_ms",
            "connections_max_idle_ms",
        ],
        Rule::NoEffect(
            Shape::Millis,
            "hd-kafka-exec uses its own timeouts and backoff for Kafka calls",
        ),
    ),
    (
        &["api_version"],
        Rule::NoEffect(
            Shape::String,
            "protocol versions are negotiated with the broker",
        ),
    ),
];

/// Consumer options that change nothing here.
const CONSUMER_RULES: &[(&[&str], Rule)] = &[
    (
        &["enable_auto_commit"],
        Rule::NoEffect(
            Shape::Bool,
            "offsets are always committed, and only after the request's response is in Kafka",
        ),
    ),
    (
        &["fetch_max_bytes"],
        Rule::NoEffect(
            Shape::Size,
            "each partition is fetched on its own, sized by max_partition_fetch_bytes",
        ),
    ),
    (
        &["isolation_level"],
        Rule::Only {
            value: "read_uncommitted",
            reason: "only read_uncommitted",
        },
    ),
    (
        &["max_poll_interval_ms"],
        Rule::NoEffect(
            Shape::Millis,
            "workers fetch continuously; an execution never holds up fetching or heartbeats",
        ),
    ),
    (
        &["consumer_timeout_ms"],
        Rule::NoEffect(Shape::Millis, "fetching is continuous"),
    ),
    (
        &["partition_assignment_strategy"],
        Rule::NoEffect(
            Shape::Any,
            "workers offer the roundrobin and range assignors, roundrobin first, as hetida's consumers offer roundrobin",
        ),
    ),
    (
        &["max_poll_records", "fetch_min_bytes"],
        Rule::NoEffect(
            Shape::Count,
            "fetching is sized by max_partition_fetch_bytes and --max-in-flight",
        ),
    ),
    (
        &["check_crcs", "exclude_internal_topics"],
        Rule::NoEffect(Shape::Bool, "not applicable to this client"),
    ),
];

/// Producer options that change nothing here.
const PRODUCER_RULES: &[(&[&str], Rule)] = &[
    (
        &["metadata_max_age_ms"],
        Rule::NoEffect(
            Shape::Millis,
            "the producer follows partition leaders as Kafka reports them moved",
        ),
    ),
    (
        &["client_id"],
        Rule::NoEffect(Shape::String, "the consumer's client_id names this service"),
    ),
    (
        &["max_batch_size"],
        Rule::NoEffect(
            Shape::Count,
            "responses are batched up to max_request_size (measured after compression)",
        ),
    ),
    (
        &["partitioner"],
        Rule::NoEffect(
            Shape::Any,
            "keyed responses use Kafka's default murmur2 partitioner, keyless ones round robin",
        ),
    ),
];

/// One option's value, read with the variable and option named in every error.
struct OptionValue<'a> {
    /// The environment variable the option came from.
    variable: &'a str,
    /// The option's name, as written.
    option: &'a str,
    /// Its JSON value.
    value: &'a Value,
}

impl OptionValue<'_> {
    fn bad(&self, reason: &str) -> ConfigError {
        ConfigError::BadOption {
            variable: self.variable.to_owned(),
            option: self.option.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn unsupported(&self, reason: &str) -> ConfigError {
        ConfigError::UnsupportedOption {
            variable: self.variable.to_owned(),
            option: self.option.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn string(&self) -> Result<String, ConfigError> {
        self.value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.bad(&format!("must be a string, found {}", self.value)))
    }

    fn millis(&self) -> Result<Duration, ConfigError> {
        self.value
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| {
                self.bad(&format!(
                    "must be a non-negative integer, found {}",
                    self.value
                ))
            })
    }

    fn servers(&self) -> Result<Vec<String>, ConfigError> {
        let joined = match self.value {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.bad("must be a string or a list of strings"))?
                .join(","),
            other => {
                return Err(self.bad(&format!(
                    "must be a string or a list of strings, found {other}"
                )));
            }
        };
        split_servers(&format!("{}: {}", self.variable, self.option), &joined)
    }

    fn notice(&self, reason: &str) -> String {
        format!(
            "{}: option `{}` has no effect: {reason}",
            self.variable, self.option
        )
    }

    /// Applies `rule`: an error, or acceptance (with a notice when the rule has one).
    fn judge(&self, rule: Rule, notices: &mut Vec<String>) -> Result<(), ConfigError> {
        match rule {
            Rule::NoEffect(shape, reason) => {
                self.check_shape(shape)?;
                notices.push(self.notice(reason));
            }
            Rule::OnlyNull(reason) => {
                if !self.value.is_null() {
                    return Err(self.unsupported(reason));
                }
            }
            Rule::Only { value, reason } => {
                let v = self.string()?;
                if v != value {
                    return Err(self.unsupported(&format!("`{v}`: {reason}")));
                }
            }
        }
        Ok(())
    }

    fn check_shape(&self, shape: Shape) -> Result<(), ConfigError> {
        let v = self.value;
        let require = |ok: bool, reason: &str| if ok { Ok(()) } else { Err(self.bad(reason)) };
        match shape {
            Shape::Any => Ok(()),
            Shape::Bool => require(v.is_boolean(), "must be a boolean"),
            Shape::String => self.string().map(drop),
            Shape::Millis => self.millis().map(drop),
            Shape::Count => require(v.is_u64(), "must be a non-negative integer"),
            Shape::Size => require(
                v.as_i64().is_some_and(|n| n > 0),
                "must be a positive integer",
            ),
        }
    }
}

/// What the consumer option object sets.
struct ConsumerOptions {
    /// `bootstrap_servers`; aiokafka's default `localhost:9092` when the object leaves it out.
    bootstrap: Vec<String>,
    /// `client_id`; default `hd-kafka-exec`.
    client_id: String,
    /// `group_id`; hetida's group when left out, and never `null` (offsets live in the group).
    group_id: String,
    /// `auto_offset_reset`; default latest, as aiokafka.
    auto_offset_reset: OffsetReset,
    /// `auto_commit_interval_ms`; see [`KafkaSettings::commit_interval`].
    commit_interval: Duration,
    /// `fetch_max_wait_ms`; see [`KafkaSettings::fetch_max_wait`].
    fetch_max_wait: Duration,
    /// `max_partition_fetch_bytes`; see [`KafkaSettings::fetch_max_bytes`].
    fetch_max_bytes: i32,
    /// `session_timeout_ms`; see [`KafkaSettings::session_timeout`].
    session_timeout: Duration,
    /// `heartbeat_interval_ms`; see [`KafkaSettings::heartbeat_interval`].
    heartbeat_interval: Duration,
    /// `rebalance_timeout_ms`, when given; see [`KafkaSettings::rebalance_timeout`].
    rebalance_timeout: Option<Duration>,
    /// `metadata_max_age_ms`; see [`KafkaSettings::partition_check_interval`].
    partition_check_interval: Duration,
    /// `group_instance_id`: absent means the host name as prefix, `null` dynamic membership.
    membership: Membership,
    /// `group_protocol`; see [`KafkaSettings::group_protocol`].
    group_protocol: GroupProtocol,
    /// `group_remote_assignor`; see [`KafkaSettings::remote_assignor`].
    remote_assignor: Option<String>,
    /// `security_protocol` and the SASL options.
    security: SecurityOptions,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            bootstrap: vec![AIOKAFKA_BOOTSTRAP.to_owned()],
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            group_id: DEFAULT_GROUP_ID.to_owned(),
            auto_offset_reset: OffsetReset::Latest,
            // Commits only happen when a watermark moved; often, so that a crash repeats little.
            commit_interval: Duration::from_millis(100),
            // aiokafka's fetch_max_wait_ms.
            fetch_max_wait: Duration::from_millis(500),
            // aiokafka's max_partition_fetch_bytes: each fetch loop asks for one partition.
            fetch_max_bytes: 1_048_576,
            // aiokafka's session_timeout_ms and heartbeat_interval_ms.
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: None,
            partition_check_interval: Duration::from_secs(30),
            membership: Membership::Static {
                prefix: host_name(),
            },
            group_protocol: GroupProtocol::Classic,
            remote_assignor: None,
            security: SecurityOptions::default(),
        }
    }
}

impl ConsumerOptions {
    fn from_map(options: OptionObject, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        let mut opts = ConsumerOptions::default();
        read_options(&options, CONSUMER_RULES, notices, |o, _| opts.take(o))?;
        Ok(opts)
    }

    /// Reads `o` if it is a consumer option that changes what the service does.
    fn take(&mut self, o: &OptionValue<'_>) -> Result<bool, ConfigError> {
        match o.option {
            "bootstrap_servers" => self.bootstrap = o.servers()?,
            "client_id" => self.client_id = o.string()?,
            "group_id" => {
                if o.value.is_null() {
                    return Err(o.unsupported(
                        "a group is required: committed offsets in the group are how progress survives restarts",
                    ));
                }
                self.group_id = o.string()?;
            }
            "auto_offset_reset" => {
                self.auto_offset_reset = match o.string()?.as_str() {
                    "latest" => OffsetReset::Latest,
                    "earliest" => OffsetReset::Earliest,
                    other => {
                        return Err(o.bad(&format!("`{other}` is not one of latest, earliest")));
                    }
                }
            }
            "auto_commit_interval_ms" => self.commit_interval = o.millis()?,
            "session_timeout_ms" => self.session_timeout = o.millis()?,
            "heartbeat_interval_ms" => self.heartbeat_interval = o.millis()?,
            "rebalance_timeout_ms" => self.rebalance_timeout = Some(o.millis()?),
            "metadata_max_age_ms" => {
                self.partition_check_interval = o.millis()?;
                if self.partition_check_interval.is_zero() {
                    return Err(o.bad("must be positive"));
                }
            }
            "group_instance_id" => {
                self.membership = if o.value.is_null() {
                    Membership::Dynamic
                } else {
                    let prefix = o.string()?;
                    if prefix.is_empty() {
                        return Err(o.bad("must not be empty (null turns static membership off)"));
                    }
                    Membership::Static { prefix }
                };
            }
            "group_protocol" => {
                self.group_protocol = match o.string()?.to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    other => {
                        return Err(o.bad(&format!("`{other}` is not one of classic, consumer")));
                    }
                }
            }
            "group_remote_assignor" => {
                self.remote_assignor = if o.value.is_null() {
                    None
                } else {
                    let name = o.string()?;
                    if name.is_empty() {
                        return Err(o.bad("must not be empty (null: the broker's default)"));
                    }
                    Some(name)
                };
            }
            "fetch_max_wait_ms" => self.fetch_max_wait = o.millis()?,
            "max_partition_fetch_bytes" => {
                self.fetch_max_bytes = o
                    .value
                    .as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| o.bad("must be a positive 32-bit integer"))?;
            }
            _ => return self.security.take(o),
        }
        Ok(true)
    }
}

/// What the producer option object sets.
struct ProducerOptions {
    /// `bootstrap_servers`; aiokafka's default `localhost:9092` when the object leaves it out.
    bootstrap: Vec<String>,
    /// `linger_ms`; default 0, as aiokafka.
    linger: Duration,
    /// `compression_type`; default none, as aiokafka.
    compression: Compression,
    /// `max_request_size`; default [`DEFAULT_MAX_REQUEST_SIZE`], as aiokafka.
    max_request_size: usize,
    /// `security_protocol` and the SASL options.
    security: SecurityOptions,
    /// `transactional_id`: the prefix of the workers' transactional ids; turns exactly-once on.
    transactional_id: Option<String>,
    /// `transaction_timeout_ms`; default [`DEFAULT_TRANSACTION_TIMEOUT`].
    transaction_timeout: Duration,
    /// `enable_idempotence`: only the transactional producer is idempotent.
    idempotence: bool,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            bootstrap: vec![AIOKAFKA_BOOTSTRAP.to_owned()],
            linger: Duration::ZERO,
            compression: Compression::None,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            security: SecurityOptions::default(),
            transactional_id: None,
            transaction_timeout: DEFAULT_TRANSACTION_TIMEOUT,
            idempotence: false,
        }
    }
}

impl ProducerOptions {
    fn from_map(options: OptionObject, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        let mut opts = ProducerOptions::default();
        read_options(&options, PRODUCER_RULES, notices, |o, notices| {
            opts.take(o, notices)
        })?;
        Ok(opts)
    }

    /// Reads `o` if it is a producer option that changes what the service does.
    fn take(
        &mut self,
        o: &OptionValue<'_>,
        notices: &mut Vec<String>,
    ) -> Result<bool, ConfigError> {
        match o.option {
            "bootstrap_servers" => self.bootstrap = o.servers()?,
            "acks" => {
                let all = matches!(o.value, Value::String(s) if s == "all")
                    || o.value.as_i64() == Some(-1);
                if !all && !matches!(o.value.as_i64(), Some(0 | 1)) {
                    return Err(o.bad("must be 0, 1, -1 or \"all\""));
                }
                if !all {
                    notices.push(o.notice(
                        "responses are always produced with acks=all so that a committed request's response is durable",
                    ));
                }
            }
            "linger_ms" => self.linger = o.millis()?,
            "transactional_id" => {
                self.transactional_id = if o.value.is_null() {
                    None
                } else {
                    let prefix = o.string()?;
                    if prefix.is_empty() {
                        return Err(o.bad("must not be empty (null: no transactions)"));
                    }
                    Some(prefix)
                };
            }
            "transaction_timeout_ms" => {
                self.transaction_timeout = o.millis()?;
                // Kafka's InitProducerId takes an int32 of milliseconds, at least 1.
                if self.transaction_timeout.is_zero()
                    || self.transaction_timeout.as_millis() > i32::MAX as u128
                {
                    return Err(o.bad("must be between 1 and 2147483647 (milliseconds)"));
                }
            }
            "enable_idempotence" => {
                self.idempotence = o
                    .value
                    .as_bool()
                    .ok_or_else(|| o.bad("must be a boolean"))?;
            }
            "compression_type" => self.compression = compression(o)?,
            "max_request_size" => {
                self.max_request_size = match o.value.as_u64() {
                    Some(n) if n > 0 => usize::try_from(n)
                        .map_err(|_| o.bad("must fit this machine's address size"))?,
                    _ => return Err(o.bad("must be a positive integer (bytes)")),
                };
            }
            _ => return self.security.take(o),
        }
        Ok(true)
    }
}

/// The security options of one aiokafka option object, as read; [`SecurityOptions::finish`]
/// checks that they fit together.
#[derive(Default)]
struct SecurityOptions {
    protocol: SecurityProtocol,
    mechanism: SaslMechanism,
    username: Option<String>,
    password: Option<Secret>,
    /// The SASL options that were given, for the notice when the protocol has no SASL.
    sasl_given: Vec<&'static str>,
}

impl SecurityOptions {
    /// Reads `o` if it is a security option.
    fn take(&mut self, o: &OptionValue<'_>) -> Result<bool, ConfigError> {
        let optional_string = |o: &OptionValue<'_>| -> Result<Option<String>, ConfigError> {
            if o.value.is_null() {
                Ok(None)
            } else {
                o.string().map(Some)
            }
        };
        match o.option {
            "security_protocol" => {
                self.protocol = match o.string()?.to_ascii_uppercase().as_str() {
                    "PLAINTEXT" => SecurityProtocol::Plaintext,
                    "SSL" => SecurityProtocol::Ssl,
                    "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
                    "SASL_SSL" => SecurityProtocol::SaslSsl,
                    other => {
                        return Err(o.bad(&format!(
                            "`{other}` is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
                        )));
                    }
                };
                if self.protocol.uses_tls() && !crate::tls::BUILT_IN {
                    return Err(o.unsupported(&format!(
                        "`{}` needs TLS, and this binary was built without the `tls` feature",
                        self.protocol.name()
                    )));
                }
            }
            "sasl_mechanism" => {
                self.sasl_given.push("sasl_mechanism");
                self.mechanism = match o.string()?.to_ascii_uppercase().as_str() {
                    "PLAIN" => SaslMechanism::Plain,
                    "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                    "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                    other @ ("GSSAPI" | "OAUTHBEARER") => {
                        return Err(o.unsupported(&format!(
                            "`{other}` is not supported; PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are"
                        )));
                    }
                    other => {
                        return Err(o.bad(&format!(
                            "`{other}` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                        )));
                    }
                };
            }
            "sasl_plain_username" => {
                self.sasl_given.push("sasl_plain_username");
                self.username = optional_string(o)?;
            }
            "sasl_plain_password" => {
                self.sasl_given.push("sasl_plain_password");
                // Never echoed: a wrong type says what it is, not what it holds.
                if !(o.value.is_null() || o.value.is_string()) {
                    return Err(o.bad("must be a string"));
                }
                self.password = o.value.as_str().map(Secret::new);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The client's security: SASL needs a username and a password (as aiokafka asserts);
    /// SASL options under a protocol without SASL change nothing, and say so.
    fn finish(
        self,
        variable: &str,
        tls: &TlsFiles,
        notices: &mut Vec<String>,
    ) -> Result<KafkaSecurity, ConfigError> {
        let sasl = if self.protocol.uses_sasl() {
            let missing = |option: &str| ConfigError::BadOption {
                variable: variable.to_owned(),
                option: option.to_owned(),
                reason: format!(
                    "is required with security_protocol {} (used for {} as aiokafka does)",
                    self.protocol.name(),
                    self.mechanism.name()
                ),
            };
            Some(SaslCredentials {
                mechanism: self.mechanism,
                username: self
                    .username
                    .ok_or_else(|| missing("sasl_plain_username"))?,
                password: self
                    .password
                    .ok_or_else(|| missing("sasl_plain_password"))?,
            })
        } else {
            for option in self.sasl_given {
                notices.push(format!(
                    "{variable}: option `{option}` has no effect: security_protocol is {}",
                    self.protocol.name()
                ));
            }
            None
        };
        Ok(KafkaSecurity {
            protocol: self.protocol,
            sasl,
            tls: tls.clone(),
        })
    }
}

/// `compression_type`: a codec this build has, or an error that says which feature would add it.
fn compression(o: &OptionValue<'_>) -> Result<Compression, ConfigError> {
    #[cfg(not(all(feature = "lz4", feature = "zstd")))]
    let left_out = |codec: &str| {
        o.unsupported(&format!(
            "`{codec}` needs C code and this build was made without the `{codec}` feature; gzip and snappy are built in"
        ))
    };
    Ok(match o.value.as_str() {
        None if o.value.is_null() => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some("snappy") => Compression::Snappy,
        #[cfg(feature = "lz4")]
        Some("lz4") => Compression::Lz4,
        #[cfg(not(feature = "lz4"))]
        Some("lz4") => return Err(left_out("lz4")),
        #[cfg(feature = "zstd")]
        Some("zstd") => Compression::Zstd,
        #[cfg(not(feature = "zstd"))]
        Some("zstd") => return Err(left_out("zstd")),
        _ => {
            return Err(o.bad("must be null, \"gzip\", \"snappy\", \"lz4\" or \"zstd\""));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Flags::default(), &Env::from_pairs(env.iter().copied()))
    }

    #[test]
    fn hetida_defaults_apply_without_any_setting() {
        let c = load(&[]).unwrap();
        assert_eq!(c.kafka.consumer_bootstrap, vec!["kafka:19092"]);
        assert_eq!(c.kafka.group_id, "hd_kafka_consumer_group");
        assert_eq!(c.kafka.request_topic, "hd-execution-topic");
        assert_eq!(c.kafka.response_topic, "hd-execution-response-topic");
        assert_eq!(c.kafka.auto_offset_reset, OffsetReset::Latest);
        assert_eq!(
            c.runtime.engine_url,
            "http://hetida-designer-runtime:8090/engine/"
        );
        assert!(c.execution.report_process_id);
        assert_eq!(c.store.spec, "dir:transformations");
    }

    #[test]
    fn hetida_variables_are_read_case_insensitively() {
        let c = load(&[
            (
                "hetida_designer_kafka_consumer_options",
                r#"{"bootstrap_servers": ["a:1", "b:2"], "group_id": "g", "auto_offset_reset": "earliest"}"#,
            ),
            ("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", "req"),
            ("HD_BEARER_TOKEN_FOR_OUTGOING_REQUESTS", "tok"),
        ])
        .unwrap();
        assert_eq!(c.kafka.consumer_bootstrap, vec!["a:1", "b:2"]);
        assert_eq!(c.kafka.group_id, "g");
        assert_eq!(c.kafka.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.kafka.request_topic, "req");
        assert_eq!(c.runtime.bearer_token, Some(Secret::new("tok")));
        assert!(
            !format!("{c:?}").contains("\"tok\""),
            "the token stays out of Debug output"
        );
    }

    #[test]
    fn exactly_once_is_turned_on_by_flag_variable_or_transactional_id() {
        let producer = |json: &str| load(&[("HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS", json)]);
        assert_eq!(load(&[]).unwrap().kafka.exactly_once, None);
        let group = load(&[]).unwrap().kafka.group_id;
        let on = load(&[("HD_EXACTLY_ONCE", "true")]).unwrap().kafka;
        assert_eq!(
            on.exactly_once,
            Some(ExactlyOnce {
                transactional_id_prefix: group.clone(),
                transaction_timeout: DEFAULT_TRANSACTION_TIMEOUT,
            })
        );
        assert_eq!(
            load(&[("HD_EXACTLY_ONCE", "off")])
                .unwrap()
                .kafka
                .exactly_once,
            None
        );
        let e = load(&[("HD_EXACTLY_ONCE", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HD_EXACTLY_ONCE") && e.contains("not a boolean"),
            "{e}"
        );
        let flags = Flags {
            exactly_once: true,
            ..Flags::default()
        };
        let k = Config::load(&flags, &Env::default()).unwrap().kafka;
        assert!(k.exactly_once.is_some());

        let k = producer(r#"{"transactional_id": "hd-exec", "transaction_timeout_ms": 30000, "enable_idempotence": true}"#)
            .unwrap()
            .kafka;
        let eos = k.exactly_once.clone().unwrap();
        assert_eq!(eos.transactional_id_prefix, "hd-exec");
        assert_eq!(eos.transaction_timeout, Duration::from_secs(30));
        // Static members: the instance id names the worker for good; dynamic: host and index.
        let host_a = Membership::Static {
            prefix: "host-a".into(),
        };
        let static_id = eos.transactional_id(&host_a, Partitioning::Group, 3);
        assert_eq!(static_id, "hd-exec-host-a-3");
        assert_eq!(
            eos.transactional_id(&host_a, Partitioning::Index, 3),
            "hd-exec-3"
        );
        let dynamic_id = eos.transactional_id(&Membership::Dynamic, Partitioning::Group, 3);
        assert!(
            dynamic_id.starts_with("hd-exec-") && dynamic_id.ends_with("-3"),
            "{dynamic_id}"
        );
        assert_eq!(
            producer(r#"{"transactional_id": null}"#)
                .unwrap()
                .kafka
                .exactly_once,
            None
        );
        for (json, expected) in [
            (r#"{"transactional_id": ""}"#, "must not be empty"),
            (r#"{"transactional_id": 7}"#, "must be a string"),
            (r#"{"transaction_timeout_ms": 0}"#, "between 1 and"),
            (r#"{"enable_idempotence": "yes"}"#, "must be a boolean"),
            (
                r#"{"enable_idempotence": true}"#,
                "only the transactional producer is idempotent",
            ),
        ] {
            let e = producer(json).unwrap_err().to_string();
            assert!(e.contains(expected), "{json}: {e}");
        }
        assert!(producer(r#"{"enable_idempotence": false}"#).is_ok());
    }

    #[test]
    fn group_protocol_and_remote_assignor_are_read_and_checked() {
        let consumer = |json: &str| load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", json)]);
        let k = load(&[]).unwrap().kafka;
        assert_eq!(
            (k.group_protocol, k.remote_assignor),
            (GroupProtocol::Classic, None)
        );
        let k = consumer(r#"{"group_protocol": "CONSUMER", "group_remote_assignor": "range"}"#)
            .unwrap()
            .kafka;
        assert_eq!(k.group_protocol, GroupProtocol::Consumer);
        assert_eq!(k.remote_assignor.as_deref(), Some("range"));
        let e = consumer(r#"{"group_protocol": "streams"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not one of classic, consumer"), "{e}");
        let e = consumer(r#"{"group_remote_assignor": ""}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must not be empty"), "{e}");
        let flags = Flags {
            partitioning: Some(Partitioning::Index),
            ..Flags::default()
        };
        let env = Env::from_pairs([(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"group_protocol": "consumer"}"#,
        )]);
        let e = Config::load(&flags, &env).unwrap_err().to_string();
        assert!(e.contains("--partitioning group"), "{e}");
    }

    #[test]
    fn the_metrics_endpoint_is_on_by_default_and_off_when_empty() {
        let addr = |flag: Option<&str>, env: &[(&str, &str)]| {
            let flags = Flags {
                metrics_addr: flag.map(str::to_owned),
                ..Flags::default()
            };
            Config::load(&flags, &Env::from_pairs(env.iter().copied()))
                .map(|c| c.supervisor.metrics_addr.map(|a| a.to_string()))
        };
        assert_eq!(addr(None, &[]).unwrap().as_deref(), Some("0.0.0.0:9464"));
        assert_eq!(addr(Some(""), &[]).unwrap(), None);
        assert_eq!(addr(None, &[("HD_METRICS_ADDR", " ")]).unwrap(), None);
        assert_eq!(
            addr(None, &[("HD_METRICS_ADDR", ":9100")])
                .unwrap()
                .as_deref(),
            Some("0.0.0.0:9100")
        );
        assert_eq!(
            addr(Some("127.0.0.1:1"), &[("HD_METRICS_ADDR", ":9100")])
                .unwrap()
                .as_deref(),
            Some("127.0.0.1:1")
        );
        let e = addr(Some("9464"), &[]).unwrap_err().to_string();
        assert!(
            e.contains("--metrics-addr") && e.contains("HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn flags_override_environment() {
        let flags = Flags {
            bootstrap_servers: Some("127.0.0.1:9092".into()),
            request_topic: Some("mine".into()),
            workers: Some(3),
            ..Flags::default()
        };
        let env = Env::from_pairs([
            ("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", "theirs"),
            ("HD_WORKERS", "7"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.kafka.consumer_bootstrap, vec!["127.0.0.1:9092"]);
        assert_eq!(c.kafka.producer_bootstrap, vec!["127.0.0.1:9092"]);
        assert_eq!(c.kafka.request_topic, "mine");
        assert_eq!(c.supervisor.workers, 3);
    }

    #[test]
    fn unknown_and_unsupported_options_are_startup_errors() {
        let e = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"bootstrap_server": "a:1"}"#,
        )])
        .unwrap_err();
        assert!(
            e.to_string().contains("unknown option `bootstrap_server`"),
            "{e}"
        );
        let e = load(&[(
            "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
            r#"{"bootstrap_servers": "a:1", "sasl_mechanism": "GSSAPI"}"#,
        )])
        .unwrap_err();
        assert!(e.to_string().contains("`GSSAPI` is not supported"), "{e}");
        let zstd = load(&[(
            "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
            r#"{"compression_type": "zstd"}"#,
        )]);
        #[cfg(not(feature = "zstd"))]
        {
            let e = zstd.unwrap_err().to_string();
            assert!(e.contains("`zstd` feature"), "{e}");
        }
        #[cfg(feature = "zstd")]
        assert_eq!(zstd.unwrap().kafka.compression, Compression::Zstd);
        let lz4 = load(&[(
            "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
            r#"{"compression_type": "lz4"}"#,
        )]);
        #[cfg(not(feature = "lz4"))]
        {
            let e = lz4.unwrap_err().to_string();
            assert!(e.contains("`lz4` feature"), "{e}");
        }
        #[cfg(feature = "lz4")]
        assert_eq!(lz4.unwrap().kafka.compression, Compression::Lz4);
        let e = load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", "[1]")]).unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        let e = load(&[("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", "ftp://rt/engine/")]).unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
    }

    /// A PEM CA bundle (one self-signed certificate) in a directory that lives as long as the
    /// returned guard.
    #[cfg(feature = "tls")]
    fn ca_bundle() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["test-ca".to_owned()]).unwrap();
        std::fs::write(&path, ca.cert.pem()).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    }

    #[cfg(feature = "tls")]
    #[test]
    fn https_runtime_and_backend_carry_their_trust() {
        let (_dir, bundle) = ca_bundle();
        let flags = Flags {
            store: Some("backend".into()),
            ..Flags::default()
        };
        let env = Env::from_pairs([
            (
                "HETIDA_DESIGNER_RUNTIME_ENGINE_URL",
                "https://rt:8090/engine/",
            ),
            (
                "HETIDA_DESIGNER_BACKEND_API_URL",
                "https://backend:8090/api/",
            ),
            ("hd_ca_bundle", bundle.as_str()),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.runtime.engine_url, "https://rt:8090/engine/");
        assert_eq!(c.store.spec, "https://backend:8090/api/");
        for tls in [&c.runtime.tls, &c.store.tls] {
            assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new(&bundle)));
            assert!(tls.verify_server);
        }
        assert!(c.notices.is_empty(), "{:?}", c.notices);

        // The flag wins over the variable; an empty variable is no bundle.
        let flags = Flags {
            ca_bundle: Some(PathBuf::from(&bundle)),
            ..Flags::default()
        };
        let env = Env::from_pairs([
            ("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", "https://rt/engine/"),
            ("HD_CA_BUNDLE", "/nonexistent/ca.pem"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.runtime.tls.ca_file, Some(PathBuf::from(&bundle)));
        let c = load(&[("HD_CA_BUNDLE", "")]).unwrap();
        assert_eq!(c.runtime.tls.ca_file, None);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn an_unusable_ca_bundle_stops_an_https_service_at_startup() {
        let e = load(&[
            ("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", "https://rt/engine/"),
            ("HD_CA_BUNDLE", "/nonexistent/ca.pem"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("HETIDA_DESIGNER_RUNTIME_ENGINE_URL"), "{e}");
        assert!(e.contains("CA file /nonexistent/ca.pem"), "{e}");

        let (dir, _) = ca_bundle();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "no certificate here").unwrap();
        let flags = Flags {
            store: Some("https://backend/api/".into()),
            ca_bundle: Some(not_pem),
            ..Flags::default()
        };
        let e = Config::load(&flags, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--store"), "{e}");
        assert!(e.contains("holds no PEM certificate"), "{e}");

        // Over http:// the bundle is not used, so it is not read either.
        load(&[("HD_CA_BUNDLE", "/nonexistent/ca.pem")]).unwrap();
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn https_without_the_tls_feature_names_the_feature() {
        let e = load(&[("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", "https://rt/engine/")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("HETIDA_DESIGNER_RUNTIME_ENGINE_URL"), "{e}");
        assert!(e.contains("`tls` feature"), "{e}");
        let flags = Flags {
            store: Some("https://backend/api/".into()),
            ..Flags::default()
        };
        let e = Config::load(&flags, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tls` feature"), "{e}");
    }

    #[test]
    fn hetidas_verify_certs_variables_are_lenient_booleans() {
        let c = load(&[]).unwrap();
        assert!(c.runtime.tls.verify_server && c.store.tls.verify_server);
        for (value, verify) in [
            ("false", false),
            ("False", false),
            ("0", false),
            ("off", false),
            ("n", false),
            ("true", true),
            ("YES", true),
            ("1", true),
            ("on", true),
        ] {
            let c = load(&[
                ("HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS", value),
                ("hetida_designer_backend_verify_certs", value),
            ])
            .unwrap();
            assert_eq!(c.runtime.tls.verify_server, verify, "{value}");
            assert_eq!(c.store.tls.verify_server, verify, "{value}");
        }
        for variable in [
            "HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS",
            "HETIDA_DESIGNER_BACKEND_VERIFY_CERTS",
        ] {
            let e = load(&[(variable, "maybe")]).unwrap_err().to_string();
            assert!(
                e.starts_with(variable) && e.contains("not a boolean"),
                "{e}"
            );
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn an_unverified_https_peer_is_reported_at_startup() {
        let flags = Flags {
            store: Some("https://backend/api/".into()),
            ..Flags::default()
        };
        let env = Env::from_pairs([
            ("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", "https://rt/engine/"),
            ("HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS", "false"),
            ("HETIDA_DESIGNER_BACKEND_VERIFY_CERTS", "false"),
            // Not read when nothing is verified.
            ("HD_CA_BUNDLE", "/nonexistent/ca.pem"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.notices.len(), 2, "{:?}", c.notices);
        assert!(
            c.notices[0].starts_with("HETIDA_DESIGNER_RUNTIME_VERIFY_CERTS is false")
                && c.notices[0].contains("https://rt/engine/"),
            "{:?}",
            c.notices
        );
        assert!(
            c.notices[1].starts_with("HETIDA_DESIGNER_BACKEND_VERIFY_CERTS is false"),
            "{:?}",
            c.notices
        );
    }

    #[test]
    fn kafka_security_options_are_read_and_checked() {
        let c = load(&[
            (
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                r#"{"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "alice", "sasl_plain_password": "pw-0123456789"}"#,
            ),
            (
                "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
                r#"{"security_protocol": "SASL_PLAINTEXT", "sasl_plain_username": "bob",
                    "sasl_plain_password": "pw-9876543210"}"#,
            ),
        ])
        .unwrap();
        let consumer = c.kafka.consumer_security.sasl.as_ref().unwrap();
        assert_eq!(
            c.kafka.consumer_security.protocol,
            SecurityProtocol::SaslPlaintext
        );
        assert_eq!(consumer.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(consumer.username, "alice");
        assert_eq!(consumer.password.expose(), "pw-0123456789");
        // aiokafka's default mechanism.
        let producer = c.kafka.producer_security.sasl.as_ref().unwrap();
        assert_eq!(producer.mechanism, SaslMechanism::Plain);
        // Neither Debug output (the whole configuration) nor the summary shows a password.
        let shown = format!("{c:?} {}", c.kafka.consumer_security);
        assert!(!shown.contains("pw-0123456789") && !shown.contains("pw-9876543210"));
        assert!(
            c.kafka
                .consumer_security
                .to_string()
                .contains("SCRAM-SHA-512 as user `alice`"),
            "{}",
            c.kafka.consumer_security
        );

        let err = |options: &str| {
            load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", options)])
                .unwrap_err()
                .to_string()
        };
        let e = err(r#"{"security_protocol": "SASL_PLAINTEXT", "sasl_plain_username": "a"}"#);
        assert!(
            e.contains("`sasl_plain_password` is required with security_protocol SASL_PLAINTEXT"),
            "{e}"
        );
        let e = err(r#"{"security_protocol": "TLS"}"#);
        assert!(e.contains("not one of PLAINTEXT, SSL"), "{e}");
        let e = err(r#"{"sasl_mechanism": "SCRAM-SHA-1"}"#);
        assert!(e.contains("not one of PLAIN, SCRAM-SHA-256"), "{e}");
        let e = err(r#"{"sasl_plain_password": 12345678}"#);
        assert!(
            e.contains("must be a string") && !e.contains("12345678"),
            "{e}"
        );
        let e = err(r#"{"ssl_context": {}}"#);
        assert!(e.contains("HD_KAFKA_SSL_CAFILE"), "{e}");

        // SASL settings under PLAINTEXT change nothing, and say so.
        let c = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"sasl_plain_username": "a", "sasl_plain_password": "b"}"#,
        )])
        .unwrap();
        assert!(c.kafka.consumer_security.sasl.is_none());
        assert!(
            c.notices
                .iter()
                .any(|n| n.contains("sasl_plain_password") && n.contains("PLAINTEXT")),
            "{:?}",
            c.notices
        );
    }

    #[test]
    fn kafka_tls_files_are_checked_at_startup() {
        let dir = std::env::temp_dir().join(format!("hd-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ssl = (
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"security_protocol": "SSL"}"#,
        );
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "no certificate here").unwrap();
        let cafile = ("HD_KAFKA_SSL_CAFILE", not_pem.to_str().unwrap());
        #[cfg(feature = "tls")]
        {
            let missing = dir.join("missing.pem");
            let e = load(&[ssl, ("HD_KAFKA_SSL_CAFILE", missing.to_str().unwrap())])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("HD_KAFKA_SSL_CAFILE") && e.contains("missing.pem"),
                "{e}"
            );
            let e = load(&[ssl, cafile]).unwrap_err().to_string();
            assert!(e.contains("holds no PEM certificate"), "{e}");
        }
        #[cfg(not(feature = "tls"))]
        {
            let e = load(&[ssl]).unwrap_err().to_string();
            assert!(e.contains("`tls` feature"), "{e}");
        }
        // Files for TLS while nothing uses TLS: a notice, not silence.
        let c = load(&[cafile]).unwrap();
        assert!(
            c.notices.iter().any(|n| n.contains("HD_KAFKA_SSL_*")),
            "{:?}",
            c.notices
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn options_without_effect_are_reported_not_ignored() {
        let c = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"bootstrap_servers": "k:1", "group_id": "g", "enable_auto_commit": true, "max_poll_interval_ms": 300000}"#,
        )])
        .unwrap();
        assert_eq!(c.notices.len(), 2, "{:?}", c.notices);
        assert!(c.notices.iter().any(|n| n.contains("enable_auto_commit")));
    }

    #[test]
    fn bad_values_name_variable_and_option() {
        let e = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"bootstrap_servers": "nohostport", "group_id": "g"}"#,
        )])
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS"),
            "{e}"
        );
        let e = load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", "bad topic!")]).unwrap_err();
        assert!(e.to_string().contains("valid Kafka topic"), "{e}");
        let e = load(&[("HD_INTERNAL_AUTH_MODE", "CLIENT")]).unwrap_err();
        assert!(e.to_string().contains("CLIENT"), "{e}");
    }
    #[test]
    fn group_options_are_read_and_checked() {
        let c = load(&[]).unwrap();
        assert_eq!(c.kafka.session_timeout, Duration::from_secs(10));
        assert_eq!(c.kafka.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(
            c.kafka.rebalance_timeout,
            c.supervisor.graceful_timeout + Duration::from_secs(5)
        );
        assert_eq!(c.kafka.partition_check_interval, Duration::from_secs(30));
        assert!(matches!(c.kafka.membership, Membership::Static { .. }));

        let c = load(&[
            (
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                r#"{"session_timeout_ms": 30000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 60000, "metadata_max_age_ms": 2000, "group_instance_id": null}"#,
            ),
            (
                "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
                r#"{"metadata_max_age_ms": 300000}"#,
            ),
        ])
        .unwrap();
        assert_eq!(c.kafka.session_timeout, Duration::from_secs(30));
        assert_eq!(c.kafka.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_secs(60));
        assert_eq!(c.kafka.partition_check_interval, Duration::from_secs(2));
        assert_eq!(c.kafka.membership, Membership::Dynamic);
        assert!(
            c.notices.iter().any(|n| n.contains("metadata_max_age_ms")),
            "the producer's metadata_max_age_ms is reported as without effect: {:?}",
            c.notices
        );

        for (options, says) in [
            (
                r#"{"session_timeout_ms": 3000, "heartbeat_interval_ms": 3000}"#,
                "heartbeat_interval_ms must be shorter",
            ),
            (r#"{"metadata_max_age_ms": 0}"#, "must be positive"),
            (r#"{"group_instance_id": ""}"#, "must not be empty"),
            (r#"{"group_id": null}"#, "a group is required"),
        ] {
            let e = load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", options)]).unwrap_err();
            assert!(e.to_string().contains(says), "{options}: {e}");
        }
    }
}
