//! Where each setting comes from: its flag, else its `HETIDA_DESIGNER_*` (or `HD_*`) variable,
//! else its default; and the checks that need more than one setting. The aiokafka option
//! objects are handed to [`super::aiokafka`] to read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::aiokafka::{self, ConsumerOptions, ProducerOptions, SecurityOptions, split_servers};
use super::*;

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

    pub(super) fn from_pairs<K: Into<String>, V: Into<String>>(
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
        kafka.rebalance_timeout = rebalance_timeout(&kafka, &runtime, &supervisor, &mut notices);
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

/// `rebalance_timeout_ms` as given (zero: not given), or its default: long enough for the
/// longest execution and the give-up's own commit, so that with default settings no execution
/// overlaps its re-execution on the partition's next owner; never shorter than the grace period
/// plus 5 s, as before. A rebalance timeout that cannot cover the longest execution is kept, or
/// is the fallback, with a warning that says what it costs; not under `--partitioning index`,
/// where no group rebalances.
fn rebalance_timeout(
    kafka: &KafkaSettings,
    runtime: &RuntimeSettings,
    supervisor: &SupervisorSettings,
    notices: &mut Vec<String>,
) -> Duration {
    const GIVEN_UP: &str = "executions longer than the rebalance timeout's give-up budget are given up: their partition's next owner runs them again while the first run may still be going on the runtime, and the first run's answer is dropped";
    let given = kafka.rebalance_timeout;
    let mut warn = |notice: String| {
        if kafka.partitioning == Partitioning::Group {
            notices.push(notice);
        }
    };
    let longest = runtime.longest_execution();
    let covering = longest.saturating_add(GIVE_UP_COMMIT_RESERVE);
    let floor = supervisor
        .graceful_timeout
        .saturating_add(REBALANCE_OVER_GRACE)
        .min(MAX_REBALANCE_TIMEOUT);
    if !given.is_zero() {
        if given < covering {
            warn(format!(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS: rebalance_timeout_ms ({given:?}) is shorter than the longest execution ({longest:?}: --runtime-timeout + --runtime-retry-budget) plus the {GIVE_UP_COMMIT_RESERVE:?} a member giving partitions up keeps for its commit: {GIVEN_UP}; {covering:?} or more avoids this"
            ));
        }
        return given;
    }
    if covering > MAX_REBALANCE_TIMEOUT {
        warn(format!(
            "--runtime-timeout + --runtime-retry-budget ({longest:?}) is longer than Kafka's longest rebalance timeout ({} ms, about 24.8 days), so rebalance_timeout_ms defaults to --graceful-timeout + {REBALANCE_OVER_GRACE:?} ({floor:?}): {GIVEN_UP}",
            MAX_REBALANCE_TIMEOUT.as_millis()
        ));
        return floor;
    }
    covering.max(floor)
}

impl KafkaSettings {
    /// hetida's two aiokafka option objects, with the flags and topic variables over them.
    fn load(flags: &Flags, env: &Env, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        let (consumer, producer) = option_objects(env, notices)?;
        let (consumer_security, producer_security) =
            kafka_security(flags, env, &consumer.security, &producer.security, notices)?;
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
        refuse_loop("--response-topic", &response_topic, &request_topic)?;
        if let Some(dead_letters) = &dead_letter_topic {
            refuse_loop("--dead-letter-topic", dead_letters, &request_topic)?;
        }
        let group_id = flags.group_id.clone().unwrap_or(consumer.group_id);
        if group_id.is_empty() {
            // Named where it came from: the flag, or hetida's consumer options.
            let source = if flags.group_id.is_some() {
                "--group-id"
            } else {
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS: group_id"
            };
            return Err(invalid(source, "must not be empty"));
        }
        let exactly_once = exactly_once(flags, env, &producer, &group_id)?;
        let partitioning = partitioning(flags, consumer.group_protocol)?;
        if consumer.group_protocol == GroupProtocol::Share {
            share_group_fits(exactly_once.is_some(), consumer.auto_offset_reset)?;
        }
        Ok(KafkaSettings {
            consumer_bootstrap: flag_bootstrap.clone().unwrap_or(consumer.bootstrap),
            producer_bootstrap: flag_bootstrap.unwrap_or(producer.bootstrap),
            client_id: consumer.client_id,
            group_id,
            auto_offset_reset: consumer.auto_offset_reset,
            isolation_level: consumer.isolation_level,
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

/// Reads hetida's two aiokafka option objects. Both variables are parsed before either is read
/// option by option, so a variable that is not JSON is reported before a bad option in the
/// other.
fn option_objects(
    env: &Env,
    notices: &mut Vec<String>,
) -> Result<(ConsumerOptions, ProducerOptions), ConfigError> {
    let object = |name: &'static str, default: &'static str| {
        aiokafka::parse_object(name, env.get(name).unwrap_or(default))
    };
    let consumer = object(
        "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
        DEFAULT_CONSUMER_OPTIONS,
    )?;
    let producer = object(
        "HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS",
        DEFAULT_PRODUCER_OPTIONS,
    )?;
    let consumer = ConsumerOptions::from_map(consumer, notices)?;
    let producer = ProducerOptions::from_map(producer, notices)?;
    Ok((consumer, producer))
}

/// How the consumer side and the producer side connect: each option object's protocol and
/// SASL settings, with the one set of TLS files (`HD_KAFKA_SSL_*`) both share, checked here
/// when either uses TLS.
fn kafka_security(
    flags: &Flags,
    env: &Env,
    consumer: &SecurityOptions,
    producer: &SecurityOptions,
    notices: &mut Vec<String>,
) -> Result<(KafkaSecurity, KafkaSecurity), ConfigError> {
    let tls = kafka_tls_files(flags, env)?;
    let consumer = consumer.finish("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &tls, notices)?;
    let producer = producer.finish("HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS", &tls, notices)?;
    if consumer.protocol.uses_tls() || producer.protocol.uses_tls() {
        crate::tls::check(&tls).map_err(|e| invalid("HD_KAFKA_SSL_*", &e.to_string()))?;
    } else if tls != TlsFiles::system() {
        notices.push(
            "HD_KAFKA_SSL_* have no effect: neither option object's security_protocol is SSL or SASL_SSL".into(),
        );
    }
    Ok((consumer, producer))
}

/// Whether responses go out exactly once (`--exactly-once`, `HD_EXACTLY_ONCE`, or the producer
/// options' `transactional_id`), and whether the producer options fit that choice.
fn exactly_once(
    flags: &Flags,
    env: &Env,
    producer: &ProducerOptions,
    group_id: &str,
) -> Result<Option<ExactlyOnce>, ConfigError> {
    let exactly_once = (flags.exactly_once
        || env_flag(env, "HD_EXACTLY_ONCE")?
        || producer.transactional_id.is_some())
    .then(|| ExactlyOnce {
        transactional_id_prefix: producer
            .transactional_id
            .clone()
            .unwrap_or_else(|| group_id.to_owned()),
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
    Ok(exactly_once)
}

/// `--partitioning`, which a fixed split cannot combine with KIP-848's group protocol.
fn partitioning(flags: &Flags, group_protocol: GroupProtocol) -> Result<Partitioning, ConfigError> {
    let partitioning = flags.partitioning.unwrap_or_default();
    if group_protocol != GroupProtocol::Classic && partitioning == Partitioning::Index {
        let name = match group_protocol {
            GroupProtocol::Share => "share",
            _ => "consumer",
        };
        return Err(invalid(
            "--partitioning index",
            &format!(
                "workers of a fixed split join no group, so group_protocol `{name}` has no group to speak it in; use --partitioning group"
            ),
        ));
    }
    Ok(partitioning)
}

/// What a share group (`"group_protocol": "share"`) cannot combine with.
fn share_group_fits(exactly_once: bool, reset: OffsetReset) -> Result<(), ConfigError> {
    if exactly_once {
        return Err(invalid(
            "--exactly-once",
            "a share group acknowledges records outside any transaction (Kafka has no transactional acknowledgement yet, KIP-1289), so responses cannot be exactly-once; drop group_protocol `share` (a consumer group) or --exactly-once",
        ));
    }
    if reset == OffsetReset::Never {
        return Err(ConfigError::UnsupportedOption {
            variable: "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS".into(),
            option: "auto_offset_reset".into(),
            reason: "a share group starts from `earliest` or `latest` (Kafka's share.auto.offset.reset has no `none`)".into(),
        });
    }
    Ok(())
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

/// A topic the service writes to must not be the one it reads requests from: every response or
/// dead letter would come back as a record to answer, and answering it writes another, without
/// end (an independent test saw one request become 9,454 records in 20 s).
fn refuse_loop(name: &str, topic: &str, request_topic: &str) -> Result<(), ConfigError> {
    if topic == request_topic {
        return Err(invalid(
            name,
            &format!(
                "`{topic}` is also the request topic: what the service writes there would come \
                 back to it as requests, without end; name another topic"
            ),
        ));
    }
    Ok(())
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
            call_timeout: runtime_timeout(flags.runtime_timeout)?,
            retry_budget: seconds(
                "--runtime-retry-budget",
                flags.runtime_retry_budget,
                DEFAULT_RUNTIME_RETRY_BUDGET,
            )?,
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
        let max_in_flight = flags.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
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
            latest_ttl: seconds("--latest-ttl", flags.latest_ttl, DEFAULT_LATEST_TTL)?,
            cache_capacity: STORE_CACHE_CAPACITY,
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
            timeout: seconds("--timeout", flags.timeout, DEFAULT_WORKER_TIMEOUT)?,
            graceful_timeout: seconds(
                "--graceful-timeout",
                flags.graceful_timeout,
                DEFAULT_GRACEFUL_TIMEOUT,
            )?,
            pid_file: flags.pid_file.clone(),
            metrics_addr: metrics_addr(flags, env)?,
            metrics_addr_chosen: flags.metrics_addr.is_some()
                || env.get("HD_METRICS_ADDR").is_some(),
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

/// `--runtime-timeout`: a call to the runtime may take this long. Zero is refused rather than
/// read as "no limit" (as `--timeout 0` is): every call would time out at once and fail its
/// request although the runtime ran it, and a call without limit could hold a partition that is
/// being given up for ever, since the group's rebalance timeout is derived from this one.
fn runtime_timeout(value: Option<f64>) -> Result<Duration, ConfigError> {
    let timeout = seconds("--runtime-timeout", value, DEFAULT_RUNTIME_TIMEOUT)?;
    if timeout.is_zero() {
        return Err(invalid(
            "--runtime-timeout",
            &format!(
                "0 would time every runtime call out at once, failing requests the runtime runs; \
                 give the longest an execution may take, in seconds (default {}); there is no \
                 \"no limit\": the group's rebalance timeout is derived from it",
                DEFAULT_RUNTIME_TIMEOUT.as_secs()
            ),
        ));
    }
    Ok(timeout)
}

/// A number of seconds from its flag, else `default`.
fn seconds(name: &str, value: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
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
    fn auto_offset_reset_takes_aiokafkas_three_values() {
        let reset = |value: &str| {
            load(&[(
                "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
                &format!(r#"{{"auto_offset_reset": "{value}"}}"#),
            )])
            .map(|c| c.kafka.auto_offset_reset)
        };
        assert_eq!(reset("latest").unwrap(), OffsetReset::Latest);
        assert_eq!(reset("earliest").unwrap(), OffsetReset::Earliest);
        assert_eq!(reset("none").unwrap(), OffsetReset::Never);
        let refused = reset("smallest").unwrap_err().to_string();
        assert!(
            refused.contains("auto_offset_reset") && refused.contains("latest, earliest, none"),
            "{refused}"
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
        let e = load(&[("HETIDA_DESIGNER_RUNTIME_ENGINE_URL", "ftp://rt/engine/")]).unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
    }

    /// Loads with `flags` (as on the command line) and the consumer options `consumer`.
    fn load_with(flags: &[(&str, f64)], consumer: &str) -> Config {
        let mut f = Flags::default();
        for (flag, value) in flags {
            let slot = match *flag {
                "--runtime-timeout" => &mut f.runtime_timeout,
                "--runtime-retry-budget" => &mut f.runtime_retry_budget,
                "--graceful-timeout" => &mut f.graceful_timeout,
                other => panic!("no such flag here: {other}"),
            };
            *slot = Some(*value);
        }
        let env = Env::from_pairs([("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", consumer)]);
        Config::load(&f, &env).unwrap()
    }

    /// The warnings about the rebalance timeout among `c`'s notices.
    fn rebalance_warnings(c: &Config) -> Vec<&String> {
        c.notices
            .iter()
            .filter(|n| n.contains("give-up budget"))
            .collect()
    }

    #[test]
    fn the_rebalance_timeout_defaults_to_the_longest_execution_and_its_commit() {
        let c = load(&[]).unwrap();
        // 300 s runtime call + 30 s retry budget + 20 s for the give-up's commit.
        assert_eq!(c.runtime.longest_execution(), Duration::from_secs(330));
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_secs(350));
        assert!(rebalance_warnings(&c).is_empty(), "{:?}", c.notices);

        let c = load_with(
            &[("--runtime-timeout", 10.0), ("--runtime-retry-budget", 5.5)],
            "{}",
        );
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_millis(35_500));
        // Never below the old default: a rebalance gives executions as long as a stop does.
        let c = load_with(
            &[("--runtime-timeout", 1.0), ("--graceful-timeout", 60.0)],
            "{}",
        );
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_secs(65));
        // A call timeout under a second adds exactly, as any other.
        let c = load_with(&[("--runtime-timeout", 0.5)], "{}");
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_millis(50_500));
        // 0 is "not given", as before.
        let c = load_with(&[], r#"{"rebalance_timeout_ms": 0}"#);
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_secs(350));
        assert!(rebalance_warnings(&c).is_empty(), "{:?}", c.notices);
    }

    #[test]
    fn an_empty_group_id_is_reported_where_it_was_given() {
        let e = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"group_id": ""}"#,
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS: group_id"),
            "{e}"
        );
        let f = Flags {
            group_id: Some(String::new()),
            ..Flags::default()
        };
        let e = Config::load(&f, &Env::default()).unwrap_err().to_string();
        assert!(e.contains("--group-id"), "{e}");
    }

    #[test]
    fn a_zero_runtime_timeout_is_refused_with_what_to_give_instead() {
        let f = Flags {
            runtime_timeout: Some(0.0),
            ..Flags::default()
        };
        let e = Config::load(&f, &Env::default()).unwrap_err().to_string();
        assert!(e.contains("--runtime-timeout"), "{e}");
        assert!(e.contains("default 300"), "{e}");
    }

    #[test]
    fn a_topic_written_to_that_is_the_request_topic_is_refused() {
        // From the flag, and from hetida's variable: either way the service would feed itself.
        let f = Flags {
            response_topic: Some(DEFAULT_REQUEST_TOPIC.into()),
            ..Flags::default()
        };
        let e = Config::load(&f, &Env::default()).unwrap_err().to_string();
        assert!(
            e.contains("--response-topic") && e.contains("also the request topic"),
            "{e}"
        );
        let env = Env::from_pairs([
            ("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC", "requests"),
            ("HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC", "requests"),
        ]);
        assert!(Config::load(&Flags::default(), &env).is_err());
        let f = Flags {
            dead_letter_topic: Some(DEFAULT_REQUEST_TOPIC.into()),
            ..Flags::default()
        };
        let e = Config::load(&f, &Env::default()).unwrap_err().to_string();
        assert!(
            e.contains("--dead-letter-topic") && e.contains("`hd-execution-topic`"),
            "{e}"
        );
        // Distinct topics load.
        let f = Flags {
            response_topic: Some("answers".into()),
            dead_letter_topic: Some("dead".into()),
            ..Flags::default()
        };
        assert!(Config::load(&f, &Env::default()).is_ok());
    }

    #[test]
    fn a_runtime_timeout_beyond_what_kafka_carries_falls_back_to_the_grace_period() {
        // A "practically never" timeout: the default cannot cover it, and says so.
        let c = load_with(&[("--runtime-timeout", 1e12)], "{}");
        assert_eq!(
            c.kafka.rebalance_timeout,
            c.supervisor.graceful_timeout + Duration::from_secs(5)
        );
        let warnings = rebalance_warnings(&c);
        assert_eq!(warnings.len(), 1, "{:?}", c.notices);
        assert!(
            warnings[0].starts_with("--runtime-timeout + --runtime-retry-budget"),
            "{}",
            warnings[0]
        );
        // Just within what Kafka carries, the default covers it.
        let c = load_with(&[("--runtime-timeout", 2_000_000.0)], "{}");
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_secs(2_000_050));
        assert!(rebalance_warnings(&c).is_empty(), "{:?}", c.notices);
        // A grace period beyond it is capped, not overflowed.
        let c = load_with(&[("--graceful-timeout", 1.8e19)], "{}");
        assert_eq!(c.kafka.rebalance_timeout, MAX_REBALANCE_TIMEOUT);
    }

    #[test]
    fn a_given_rebalance_timeout_shorter_than_an_execution_is_kept_with_one_warning() {
        let c = load_with(&[], r#"{"rebalance_timeout_ms": 60000}"#);
        assert_eq!(c.kafka.rebalance_timeout, Duration::from_secs(60));
        let warnings = rebalance_warnings(&c);
        assert_eq!(warnings.len(), 1, "{:?}", c.notices);
        let w = warnings[0];
        assert!(
            w.starts_with("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS: rebalance_timeout_ms (60s)")
                && w.contains("longest execution (330s")
                && w.contains("next owner runs them again")
                && w.contains("answer is dropped"),
            "{w}"
        );
        // Covering the longest execution and the commit: no warning; one millisecond less is
        // not enough for the give-up's commit.
        let c = load_with(&[], r#"{"rebalance_timeout_ms": 350000}"#);
        assert!(rebalance_warnings(&c).is_empty(), "{:?}", c.notices);
        let c = load_with(&[], r#"{"rebalance_timeout_ms": 349999}"#);
        assert_eq!(rebalance_warnings(&c).len(), 1, "{:?}", c.notices);
        // Without a group, nothing rebalances.
        let flags = Flags {
            partitioning: Some(Partitioning::Index),
            ..Flags::default()
        };
        let env = Env::from_pairs([(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"rebalance_timeout_ms": 60000}"#,
        )]);
        let c = Config::load(&flags, &env).unwrap();
        assert!(rebalance_warnings(&c).is_empty(), "{:?}", c.notices);
        // Shorter executions make a short rebalance timeout enough.
        let c = load_with(
            &[("--runtime-timeout", 20.0), ("--runtime-retry-budget", 5.0)],
            r#"{"rebalance_timeout_ms": 45000}"#,
        );
        assert!(rebalance_warnings(&c).is_empty(), "{:?}", c.notices);
    }

    #[test]
    fn settings_that_must_fit_together_are_checked_together() {
        let e = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            r#"{"session_timeout_ms": 3000, "heartbeat_interval_ms": 3000}"#,
        )])
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("heartbeat_interval_ms must be shorter"),
            "{e}"
        );
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
    fn a_share_group_is_refused_with_what_it_cannot_do() {
        let share =
            |extra: &str| format!(r#"{{"group_id": "jobs", "group_protocol": "share"{extra}}}"#);
        let ok = load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &share(""))]).unwrap();
        assert_eq!(ok.kafka.group_protocol, GroupProtocol::Share);

        let e = load(&[
            ("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", &share("")),
            ("HD_EXACTLY_ONCE", "true"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("KIP-1289") && e.contains("--exactly-once"),
            "{e}"
        );

        let e = load(&[(
            "HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS",
            &share(r#", "auto_offset_reset": "none""#),
        )])
        .unwrap_err()
        .to_string();
        assert!(e.contains("no `none`"), "{e}");

        let flags = Flags {
            partitioning: Some(Partitioning::Index),
            ..Flags::default()
        };
        let env = Env::from_pairs([("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", share("").as_str())]);
        let e = Config::load(&flags, &env).unwrap_err().to_string();
        assert!(e.contains("`share` has no group"), "{e}");
    }
}
