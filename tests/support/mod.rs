//! Test support shared by the integration tests: the real Kafka broker that `scripts/test` starts,
//! brokers of a test's own (plain, or secured with generated certificates), the peers (kcat,
//! aiokafka, Prometheus and promtool) `scripts/test` installs, and the runtime double. Each test
//! binary uses only part of it.
#![allow(dead_code)]

pub mod committed;
pub mod group;
pub mod hostile_runtime;
pub mod kafka;
pub mod normalise;
pub mod pki;
pub mod prometheus;
pub mod runtime_double;
pub mod secure_kafka;
pub mod service;
pub mod wait;
