//! The reader of hetida's aiokafka option objects (`HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS`,
//! `HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS`): JSON objects with aiokafka's option names.
//!
//! Every option is one of three things. It changes what the service does and is read by
//! [`ConsumerOptions`] or [`ProducerOptions`] (security options by [`SecurityOptions`] for
//! both); or it changes nothing here and is judged by a table (`COMMON_RULES`,
//! `CONSUMER_RULES`, `PRODUCER_RULES`): its value is checked, then it is accepted with a notice
//! saying why it has no effect, or refused because it asks for what this build lacks; or it is
//! unknown, a startup error. The values are read from `serde_json::Value` by hand rather than
//! deserialised into structs: each error names the variable and the option and says what the
//! value must be, in aiokafka's terms, which serde's messages would not.

use std::time::Duration;

use serde_json::Value;

use super::*;

/// One aiokafka options variable: its name (for errors) and its JSON object.
pub(super) type OptionObject = (String, serde_json::Map<String, Value>);

/// The option object in `text`, the value of `variable` (or its default).
pub(super) fn parse_object(variable: &str, text: &str) -> Result<OptionObject, ConfigError> {
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

/// Bootstrap servers as aiokafka writes them in one string, `host:port,host:port`; `name` (a
/// flag, or a variable and its option) is what an error names.
pub(super) fn split_servers(name: &str, s: &str) -> Result<Vec<String>, ConfigError> {
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
pub(super) struct ConsumerOptions {
    /// `bootstrap_servers`; aiokafka's default `localhost:9092` when the object leaves it out.
    pub(super) bootstrap: Vec<String>,
    /// `client_id`; default `hd-kafka-exec`.
    pub(super) client_id: String,
    /// `group_id`; hetida's group when left out, and never `null` (offsets live in the group).
    pub(super) group_id: String,
    /// `auto_offset_reset`; default latest, as aiokafka.
    pub(super) auto_offset_reset: OffsetReset,
    /// `isolation_level`; default read_uncommitted, as aiokafka.
    pub(super) isolation_level: IsolationLevel,
    /// `auto_commit_interval_ms`; see [`KafkaSettings::commit_interval`].
    pub(super) commit_interval: Duration,
    /// `fetch_max_wait_ms`; see [`KafkaSettings::fetch_max_wait`].
    pub(super) fetch_max_wait: Duration,
    /// `max_partition_fetch_bytes`; see [`KafkaSettings::fetch_max_bytes`].
    pub(super) fetch_max_bytes: i32,
    /// `session_timeout_ms`; see [`KafkaSettings::session_timeout`].
    pub(super) session_timeout: Duration,
    /// `heartbeat_interval_ms`; see [`KafkaSettings::heartbeat_interval`].
    pub(super) heartbeat_interval: Duration,
    /// `rebalance_timeout_ms`, when given; see [`KafkaSettings::rebalance_timeout`].
    pub(super) rebalance_timeout: Option<Duration>,
    /// `metadata_max_age_ms`; see [`KafkaSettings::partition_check_interval`].
    pub(super) partition_check_interval: Duration,
    /// `group_instance_id`: absent means the host name as prefix, `null` dynamic membership.
    pub(super) membership: Membership,
    /// `group_protocol`; see [`KafkaSettings::group_protocol`].
    pub(super) group_protocol: GroupProtocol,
    /// `group_remote_assignor`; see [`KafkaSettings::remote_assignor`].
    pub(super) remote_assignor: Option<String>,
    /// `security_protocol` and the SASL options.
    pub(super) security: SecurityOptions,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            bootstrap: vec![AIOKAFKA_BOOTSTRAP.to_owned()],
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            group_id: DEFAULT_GROUP_ID.to_owned(),
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: IsolationLevel::ReadUncommitted,
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
    pub(super) fn from_map(
        options: OptionObject,
        notices: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
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
                    "none" => OffsetReset::Never,
                    other => {
                        return Err(
                            o.bad(&format!("`{other}` is not one of latest, earliest, none"))
                        );
                    }
                }
            }
            "isolation_level" => {
                self.isolation_level = match o.string()?.as_str() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    other => {
                        return Err(o.bad(&format!(
                            "`{other}` is not one of read_uncommitted, read_committed"
                        )));
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
                    "share" => GroupProtocol::Share,
                    other => {
                        return Err(
                            o.bad(&format!("`{other}` is not one of classic, consumer, share"))
                        );
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
pub(super) struct ProducerOptions {
    /// `bootstrap_servers`; aiokafka's default `localhost:9092` when the object leaves it out.
    pub(super) bootstrap: Vec<String>,
    /// `linger_ms`; default 0, as aiokafka.
    pub(super) linger: Duration,
    /// `compression_type`; default none, as aiokafka.
    pub(super) compression: Compression,
    /// `max_request_size`; default [`DEFAULT_MAX_REQUEST_SIZE`], as aiokafka.
    pub(super) max_request_size: usize,
    /// `security_protocol` and the SASL options.
    pub(super) security: SecurityOptions,
    /// `transactional_id`: the prefix of the workers' transactional ids; turns exactly-once on.
    pub(super) transactional_id: Option<String>,
    /// `transaction_timeout_ms`; default [`DEFAULT_TRANSACTION_TIMEOUT`].
    pub(super) transaction_timeout: Duration,
    /// `enable_idempotence`: only the transactional producer is idempotent.
    pub(super) idempotence: bool,
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
    pub(super) fn from_map(
        options: OptionObject,
        notices: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
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
pub(super) struct SecurityOptions {
    /// `security_protocol`; default PLAINTEXT, as aiokafka.
    protocol: SecurityProtocol,
    /// `sasl_mechanism`; default PLAIN, as aiokafka.
    mechanism: SaslMechanism,
    /// `sasl_plain_username`, required under SASL.
    username: Option<String>,
    /// `sasl_plain_password`, required under SASL.
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
    pub(super) fn finish(
        &self,
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
                    .clone()
                    .ok_or_else(|| missing("sasl_plain_username"))?,
                password: self
                    .password
                    .clone()
                    .ok_or_else(|| missing("sasl_plain_password"))?,
            })
        } else {
            for option in &self.sasl_given {
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
    fn group_options_are_read_and_checked() {
        let c = load(&[]).unwrap();
        assert_eq!(c.kafka.session_timeout, Duration::from_secs(10));
        assert_eq!(c.kafka.heartbeat_interval, Duration::from_secs(3));
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
            (r#"{"metadata_max_age_ms": 0}"#, "must be positive"),
            (r#"{"group_instance_id": ""}"#, "must not be empty"),
            (r#"{"group_id": null}"#, "a group is required"),
        ] {
            let e = load(&[("HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS", options)]).unwrap_err();
            assert!(e.to_string().contains(says), "{options}: {e}");
        }
    }
}
