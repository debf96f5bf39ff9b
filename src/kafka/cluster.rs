//! Which broker leads which partition, as Metadata says, for this service's own connections
//! (the transactional producer and the fetch loops); rskafka keeps its own view private.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, TopicName, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;

use super::security::{BrokerAuth, SecurityError};
use super::wire::{BrokerConnection, WireError};

const METADATA_VERSIONS: RangeInclusive<i16> = 1..=12;

/// A partition as (topic, partition).
pub(crate) type PartitionKey = (String, i32);

/// The brokers and partition leaders last heard of, and how to ask again.
#[derive(Debug, Clone)]
pub struct ClusterMap {
    bootstrap: Vec<String>,
    client_id: String,
    auth: BrokerAuth,
    /// node id -> host:port.
    brokers: HashMap<i32, String>,
    /// (topic, partition) -> leader's node id.
    leaders: HashMap<PartitionKey, i32>,
}

impl ClusterMap {
    /// Knows no leader yet: the first lookup asks `bootstrap`.
    pub fn new(bootstrap: Vec<String>, client_id: &str, auth: BrokerAuth) -> ClusterMap {
        ClusterMap {
            bootstrap,
            client_id: client_id.to_owned(),
            auth,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
        }
    }

    /// The leader of `key`, when known.
    pub(crate) fn leader(&self, key: &PartitionKey) -> Option<i32> {
        self.leaders.get(key).copied()
    }

    /// Forgets the leader of `key` (it said it is not, or stopped answering).
    pub(crate) fn forget(&mut self, key: &PartitionKey) {
        self.leaders.remove(key);
    }

    /// A new connection to node `node`.
    pub(crate) async fn connect(&self, node: i32) -> Result<BrokerConnection, WireError> {
        let address = self
            .brokers
            .get(&node)
            .ok_or_else(|| WireError::Codec(format!("node {node} is not known")))?;
        BrokerConnection::open(address, &self.client_id, &self.auth).await
    }

    /// Asks a broker (a known one first, then the bootstrap ones) for the leaders of `topics`;
    /// returns those of them that do not exist. `Ok(Err(why))` when no broker answered (worth
    /// asking again), `Err` when the connection cannot be set up as configured.
    pub(crate) async fn refresh(
        &mut self,
        topics: &[&str],
    ) -> Result<Result<Vec<String>, String>, SecurityError> {
        let mut candidates: Vec<String> = self.brokers.values().cloned().collect();
        candidates.extend(self.bootstrap.iter().cloned());
        let mut last = String::from("no broker to ask");
        for broker in candidates {
            let mut conn = match BrokerConnection::open(&broker, &self.client_id, &self.auth).await
            {
                Ok(c) => c,
                Err(WireError::Security(e)) => return Err(e),
                Err(e) => {
                    last = format!("{broker}: {e}");
                    continue;
                }
            };
            let version = match conn.version(ApiKey::Metadata, "Metadata", METADATA_VERSIONS) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e.to_string())),
            };
            let request = MetadataRequest::default()
                .with_topics(Some(
                    topics
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string((*t).to_owned()))))
                        })
                        .collect(),
                ))
                .with_allow_auto_topic_creation(false);
            let r = match conn.call(&request, version).await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{broker}: {e}");
                    continue;
                }
            };
            self.brokers = r
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
                .collect();
            let mut missing: Vec<String> = topics
                .iter()
                .filter(|t| {
                    !r.topics
                        .iter()
                        .any(|m| m.name.as_ref().is_some_and(|n| n.0.as_str() == **t))
                })
                .map(|t| (*t).to_owned())
                .collect();
            for t in r.topics {
                let Some(name) = t.name else { continue };
                if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
                    missing.push(name.0.to_string());
                }
                for p in t.partitions {
                    let key = (name.0.to_string(), p.partition_index);
                    if p.leader_id.0 >= 0 {
                        self.leaders.insert(key, p.leader_id.0);
                    } else {
                        self.leaders.remove(&key);
                    }
                }
            }
            return Ok(Ok(missing));
        }
        Ok(Err(last))
    }
}
