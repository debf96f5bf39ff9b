//! The hetida designer execution protocol (spec: `shared/spec/hetida-protocol.md`).
//!
//! Pure data and pure functions, no IO: what crosses Kafka (requests, responses), what is stored
//! (transformation revisions), and what crosses the runtime HTTP API (runtime request and result).

pub mod revision;
pub mod wiring;
