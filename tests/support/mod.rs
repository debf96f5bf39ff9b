//! Test support shared by the integration tests: the real Kafka broker that `scripts/test` starts,
//! the peers (kcat, aiokafka) it installs, and the runtime double. Each test binary uses only
//! part of it.
#![allow(dead_code)]

pub mod group;
pub mod hostile_runtime;
pub mod kafka;
pub mod normalise;
pub mod pki;
pub mod runtime_double;
pub mod service;
