//! The share group's own configuration (group configs, Kafka's GROUP resource), set before
//! this member joins: where a new group starts (`share.auto.offset.reset`, from
//! `auto_offset_reset`), what it reads (`share.isolation.level`, from `isolation_level`) and how
//! long a record's acquisition lock lasts (`share.record.lock.duration.ms`, raised to cover the
//! longest execution when the brokers' bounds allow it); then read back, with the delivery limit.

use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::DEFAULT_DELIVERY_LIMIT;
use crate::config::{IsolationLevel, OffsetReset};
use crate::kafka::security::BrokerAuth;
use crate::kafka::wire::{BrokerConnection, error_name};

const DESCRIBE_CONFIGS_VERSIONS: RangeInclusive<i16> = 1..=4;
const ALTER_CONFIGS_VERSIONS: RangeInclusive<i16> = 0..=1;
/// `resource_type` of a group (KIP-848's group configs).
const GROUP_RESOURCE: i8 = 32;
/// `resource_type` of a broker.
const BROKER_RESOURCE: i8 = 4;
const SET: i8 = 0;

const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
const ISOLATION_LEVEL: &str = "share.isolation.level";
const LOCK_DURATION: &str = "share.record.lock.duration.ms";
/// Per group since Kafka 4.3; the brokers' `group.share.delivery.count.limit` before.
const DELIVERY_LIMIT: &str = "share.delivery.count.limit";
const BROKER_DELIVERY_LIMIT: &str = "group.share.delivery.count.limit";

/// What the group runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSetup {
    /// Deliveries after which Kafka archives a record unanswered.
    pub delivery_limit: i16,
    /// The acquisition lock, as the group has it; `None` when it could not be read.
    pub lock_duration: Option<Duration>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Sets the group's configs and reads back what it runs with. Never fatal: what cannot be
/// set or read is logged, and the group runs on Kafka's defaults.
pub(crate) async fn prepare(
    bootstrap: &[String],
    client_id: &str,
    auth: &BrokerAuth,
    group: &str,
    reset: OffsetReset,
    isolation: IsolationLevel,
    longest_execution: Duration,
) -> GroupSetup {
    let mut last = String::from("no bootstrap server configured");
    for broker in bootstrap {
        let mut conn = match BrokerConnection::open(broker, client_id, auth).await {
            Ok(c) => c,
            Err(e) => {
                last = format!("{broker}: {e}");
                continue;
            }
        };
        return prepare_on(&mut conn, group, reset, isolation, longest_execution).await;
    }
    tracing::warn!(%group, "the share group's configuration could not be set ({last}): it runs on Kafka's defaults (new groups start at the log end)");
    GroupSetup {
        delivery_limit: DEFAULT_DELIVERY_LIMIT,
        lock_duration: None,
    }
}

async fn prepare_on(
    conn: &mut BrokerConnection,
    group: &str,
    reset: OffsetReset,
    isolation: IsolationLevel,
    longest_execution: Duration,
) -> GroupSetup {
    let defaults = GroupSetup {
        delivery_limit: DEFAULT_DELIVERY_LIMIT,
        lock_duration: None,
    };
    // A broker without share groups has no group configs either: the member's first heartbeat
    // says what is missing, in one line.
    if conn
        .version(ApiKey::ShareGroupHeartbeat, "ShareGroupHeartbeat", 1..=1)
        .is_err()
    {
        return defaults;
    }
    let reset = match reset {
        OffsetReset::Earliest => "earliest",
        // `none` is refused by the configuration.
        OffsetReset::Latest | OffsetReset::Never => "latest",
    };
    let isolation = match isolation {
        IsolationLevel::ReadCommitted => "read_committed",
        IsolationLevel::ReadUncommitted => "read_uncommitted",
    };
    // A lock shorter than an execution lets another member take the record while it runs.
    // Kafka's lower bound (group.share.min.record.lock.duration.ms) is 15 s by default.
    let lock = (longest_execution + Duration::from_secs(10)).max(Duration::from_secs(15));
    let wanted = [
        (AUTO_OFFSET_RESET, reset.to_owned()),
        (ISOLATION_LEVEL, isolation.to_owned()),
        (LOCK_DURATION, millis(lock)),
    ];
    if let Err(e) = alter(conn, group, &wanted).await {
        // Most likely the lock: the brokers bound it (group.share.max.record.lock.duration.ms,
        // 60 s by default). Set the rest, and say what the lock is.
        tracing::warn!(%group, "setting the share group's {LOCK_DURATION} to {} ms failed ({e}); raise group.share.max.record.lock.duration.ms on the brokers to at least that", lock.as_millis());
        if let Err(e) = alter(conn, group, &wanted[..2]).await {
            tracing::warn!(%group, "setting the share group's {AUTO_OFFSET_RESET} and {ISOLATION_LEVEL} failed: {e}; it runs on Kafka's defaults (new groups start at the log end)");
        }
    }
    let configs = describe(conn, GROUP_RESOURCE, group)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(%group, "reading the share group's configuration failed: {e}");
            Vec::new()
        });
    let get = |key: &str| {
        configs
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    };
    let lock_duration = get(LOCK_DURATION)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut delivery_limit = get(DELIVERY_LIMIT).and_then(|v| v.parse::<i16>().ok());
    if delivery_limit.is_none() {
        // Kafka 4.2 has the limit only as a broker setting, which a broker reports of itself
        // (its static value included) when asked by its id.
        if let Some(id) = any_broker_id(conn).await {
            delivery_limit = describe(conn, BROKER_RESOURCE, &id.to_string())
                .await
                .ok()
                .and_then(|c| c.into_iter().find(|(k, _)| k == BROKER_DELIVERY_LIMIT))
                .and_then(|(_, v)| v?.parse::<i16>().ok());
        }
        if delivery_limit.is_none() {
            tracing::warn!(%group, "the share group's delivery limit could not be read: taken to be Kafka's default, {DEFAULT_DELIVERY_LIMIT}");
        }
    }
    let delivery_limit = delivery_limit.unwrap_or(DEFAULT_DELIVERY_LIMIT);
    let starts = get(AUTO_OFFSET_RESET).unwrap_or("latest (Kafka's default)");
    match lock_duration {
        Some(l) if l < longest_execution => tracing::warn!(
            %group,
            lock_ms = l.as_millis() as u64,
            longest_execution_ms = longest_execution.as_millis() as u64,
            "the share group's acquisition lock is shorter than the longest execution: a request running longer is delivered again to another member (answered twice, at-least-once)"
        ),
        _ => {}
    }
    tracing::info!(
        %group,
        starts_from = starts,
        lock_ms = lock_duration.map(|l| l.as_millis() as u64),
        delivery_limit,
        "share group configured: a new group starts from `starts_from`; requests are answered, not executed, on their last delivery"
    );
    GroupSetup {
        delivery_limit,
        lock_duration,
    }
}

/// The id of a broker of the cluster (Metadata), to ask for broker settings.
async fn any_broker_id(conn: &mut BrokerConnection) -> Option<i32> {
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let response = call(conn, ApiKey::Metadata, "Metadata", 1..=12, &request)
        .await
        .ok()?;
    response.brokers.first().map(|b| b.node_id.0)
}

async fn alter(
    conn: &mut BrokerConnection,
    group: &str,
    configs: &[(&str, String)],
) -> Result<(), String> {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(GROUP_RESOURCE)
            .with_resource_name(s(group))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(SET)
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            ),
    ]);
    let response = call(
        conn,
        ApiKey::IncrementalAlterConfigs,
        "IncrementalAlterConfigs",
        ALTER_CONFIGS_VERSIONS,
        &request,
    )
    .await?;
    for r in response.responses {
        refused(r.error_code, r.error_message)?;
    }
    Ok(())
}

/// Every config of a resource: (name, value).
async fn describe(
    conn: &mut BrokerConnection,
    resource_type: i8,
    name: &str,
) -> Result<Vec<(String, Option<String>)>, String> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]);
    let response = call(
        conn,
        ApiKey::DescribeConfigs,
        "DescribeConfigs",
        DESCRIBE_CONFIGS_VERSIONS,
        &request,
    )
    .await?;
    let mut out = Vec::new();
    for r in response.results {
        refused(r.error_code, r.error_message)?;
        out.extend(
            r.configs
                .into_iter()
                .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string()))),
        );
    }
    Ok(out)
}

/// Sends `request` in the highest version both sides speak.
async fn call<R: Request>(
    conn: &mut BrokerConnection,
    api: ApiKey,
    name: &'static str,
    versions: RangeInclusive<i16>,
    request: &R,
) -> Result<R::Response, String> {
    let version = conn
        .version(api, name, versions)
        .map_err(|e| e.to_string())?;
    conn.call(request, version).await.map_err(|e| e.to_string())
}

/// A resource's error code and message as the error to report; `Ok` for no error.
fn refused(code: i16, message: Option<StrBytes>) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        error_name(code),
        message.map(|m| format!(": {m}")).unwrap_or_default()
    ))
}
