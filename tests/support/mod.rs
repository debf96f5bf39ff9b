//! Test support shared by the integration tests: the real Kafka broker that `scripts/test` starts,
//! and the peers (kcat, aiokafka) it installs. Each test binary uses only part of it.
#![allow(dead_code)]

pub mod kafka;
