//! hd-kafka-exec executes hetida designer workflows and components on request from Kafka.
//!
//! It is a drop-in for the hetida backend's Kafka execution consumer: same topics, same JSON,
//! same environment variables, same runtime HTTP API (see `shared/spec/hetida-protocol.md`).
//!
//! # Layout
//!
//! Data flows one way: [`kafka`] hands records to [`worker`], which asks [`store`] and
//! [`protocol`] for the runtime request, [`runtime_client`] for the result, and hands the
//! response back to [`kafka`].
//!
//! * [`backoff`]: the one retry pace (capped exponential backoff with jitter).
//! * [`config`]: flags > `HETIDA_DESIGNER_*` environment > defaults, validated once before forking:
//!   the settings types and their defaults, where each setting is read from, and the reader of
//!   hetida's aiokafka option objects.
//! * [`secret`]: passwords and tokens, which no `Debug` output, log line or error shows.
//! * [`protocol`]: the hetida execution protocol as pure data and pure functions (no IO):
//!   requests, wirings, transformation revisions, runtime request preparation, responses.
//! * [`store`]: where transformation revisions come from (a directory of JSON exports and `.py`
//!   component files, or the hetida backend's REST API) and the worker's one cache of them and
//!   their prepared runtime requests.
//! * [`runtime_client`]: the HTTP client that POSTs prepared requests to the hetida runtime.
//! * `http_client`: how every HTTP client of the service is built (runtime, backend store).
//! * [`tls`]: the rustls client configuration every TLS connection uses (Kafka and HTTPS):
//!   trust, client certificates, the `ring` provider (feature `tls`, on by default).
//! * [`kafka`]: every Kafka detail, in layers: the broker wire codec, the record-batch codec
//!   (requests are fetched and read by this service itself) and the group coordinator client; one owner of a worker's partitions (fetch loops, watermarks, commits,
//!   giving partitions up by IO-free rules); membership that only decides which partitions to
//!   own (classic, KIP-848, by index); one answer handle ([`kafka::Answers`]: at-least-once or
//!   exactly-once behind it). A worker opens a [`kafka::Session`].
//! * [`worker`]: one process: consume -> resolve -> prepare -> run -> answer; it sees records,
//!   done tokens and one answer handle, no Kafka client, producer or transaction.
//! * [`logging`]: log lines that say which process (supervisor, worker i, metrics) wrote them.
//! * [`metrics`]: what the service counts (in memory shared by all its processes) and the
//!   metrics process serving `/metrics`, `/livez` and `/readyz`.
//! * [`poison`]: requests that kill their worker: the table in shared memory where workers
//!   publish what they execute and the supervisor records what a dead worker was executing,
//!   so that a request that ended two workers is answered with a failure, not run again.
//! * [`supervisor`]: the gunicorn-style arbiter that forks, watches and restarts workers (and
//!   the metrics process). It is the only module allowed `unsafe` (for `fork` and the shared
//!   memory mapped before it).
//!
//! The command line (`serve`, `exec`, `prepare`, `check`) is the binary's: `src/main.rs` and
//! `src/cli/`, the one place `anyhow` is used.

#![warn(missing_docs)]

pub mod backoff;
pub mod config;
mod http_client;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod poison;
pub mod protocol;
pub mod runtime_client;
pub mod secret;
pub mod store;
#[allow(unsafe_code)]
pub mod supervisor;
pub mod tls;
pub mod worker;
