//! A Kafka broker of a test's own with secured listeners (`scripts/kafka start --security`): SSL,
//! MTLS (client certificate required), SASL_PLAINTEXT and SASL_SSL (PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512), with certificates the test generates ([`Pki`]), beside the PLAINTEXT listener.
//!
//! Kafka's own console tools, run by `scripts/kafka` through any listener, produce, consume and
//! describe groups, so what our client wrote or committed over a secured connection is checked by
//! a client that is not ours. Like [`OwnCluster`](super::kafka::OwnCluster) it fails, never
//! skips, when Kafka cannot start, and it is stopped and removed when dropped.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

use super::kafka::scripts_kafka;
use super::pki::Pki;

/// The user `scripts/kafka` creates when given none, for SCRAM (both) and PLAIN alike.
const USER: (&str, &str) = ("hd-kafka-exec", "hd-kafka-exec-secret");

const SCRIPTS_KAFKA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");

pub struct SecureCluster {
    // Dropped after `Drop::drop` has stopped the broker, which reads both while it runs.
    dir: tempfile::TempDir,
    _pki_dir: tempfile::TempDir,
    pki: Pki,
    listeners: HashMap<String, String>,
}

impl SecureCluster {
    /// Generates a PKI and starts one broker that uses it; panics when Kafka does not start.
    pub fn start() -> SecureCluster {
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(pki_dir.path());
        // Under cargo's scratch directory for integration tests (target/tmp): the broker's logs
        // of a run killed before the drop are found there, and `cargo clean` removes them.
        let dir = tempfile::Builder::new()
            .prefix("secure-kafka-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let cluster = dir.path().join("cluster");
        let user = format!("{}:{}", USER.0, USER.1);
        let certs = pki.dir.to_str().unwrap();
        scripts_kafka("start", &cluster, &["--security", certs, "--user", &user]);
        let listeners = std::fs::read_to_string(cluster.join("listeners"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(name, address)| (name.to_owned(), address.to_owned()))
            .collect();
        SecureCluster {
            dir,
            _pki_dir: pki_dir,
            pki,
            listeners,
        }
    }

    /// The certificates the broker presents and trusts (`server.*`, `ca.pem`), and the client's.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The directory `scripts/kafka` knows the cluster by.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// host:port of listener `name`: PLAINTEXT, SSL, MTLS, SASL_PLAINTEXT or SASL_SSL.
    pub fn listener(&self, name: &str) -> String {
        self.listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.listeners))
            .clone()
    }

    /// The SASL user (name, password), known to PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    pub fn user(&self) -> (&str, &str) {
        USER
    }

    pub fn plaintext_bootstrap(&self) -> String {
        self.listener("PLAINTEXT")
    }

    /// Creates `name` over PLAINTEXT (rskafka: a JVM tool would take seconds) and waits until
    /// its partitions have leaders.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let bootstrap = self.plaintext_bootstrap();
        block_on(async {
            let client = ClientBuilder::new(vec![bootstrap]).build().await.unwrap();
            super::kafka::create_topic(&client, name, partitions).await;
        });
    }

    /// The offset the next record of `topic`'s `partition` will get, read over PLAINTEXT.
    pub fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        let bootstrap = self.plaintext_bootstrap();
        block_on(async {
            let client = ClientBuilder::new(vec![bootstrap]).build().await.unwrap();
            client
                .partition_client(topic, partition, UnknownTopicHandling::Error)
                .await
                .unwrap()
                .get_offset(OffsetAt::Latest)
                .await
                .unwrap()
        })
    }

    /// Kafka's console producer writes `lines` to `topic`, one record each, through `listener`
    /// (with SASL `mechanism`, default SCRAM-SHA-512, as [`user`](Self::user)); panics when it
    /// fails.
    pub fn produce(&self, listener: &str, mechanism: Option<&str>, topic: &str, lines: &[String]) {
        let out = self.try_produce(listener, &mechanism_option(mechanism), topic, lines);
        assert!(
            out.status.success(),
            "the console producer over {listener} {mechanism:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Like [`produce`](Self::produce) with any `scripts/kafka` connection options (`--user`,
    /// `--mechanism`, `--no-client-cert`), returning what happened, for the refusals.
    pub fn try_produce(
        &self,
        listener: &str,
        options: &[&str],
        topic: &str,
        lines: &[String],
    ) -> Output {
        let mut input = lines.join("\n");
        input.push('\n');
        let mut args = vec!["--listener", listener];
        args.extend_from_slice(options);
        args.push(topic);
        self.tool("produce", &args, Some(input.as_bytes()))
    }

    /// Kafka's console consumer reads `topic` from the beginning through `listener` until it has
    /// `max` values or none came for `timeout`; the values it got, in order.
    pub fn consume(
        &self,
        listener: &str,
        mechanism: Option<&str>,
        topic: &str,
        max: usize,
        timeout: Duration,
    ) -> Vec<String> {
        self.consume_in(None, listener, mechanism, topic, max, timeout)
    }

    /// Like [`consume`](Self::consume) as a member of `group`, which commits what it read.
    pub fn consume_in_group(
        &self,
        group: &str,
        listener: &str,
        mechanism: Option<&str>,
        topic: &str,
        max: usize,
        timeout: Duration,
    ) -> Vec<String> {
        self.consume_in(Some(group), listener, mechanism, topic, max, timeout)
    }

    fn consume_in(
        &self,
        group: Option<&str>,
        listener: &str,
        mechanism: Option<&str>,
        topic: &str,
        max: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let (max, timeout) = (max.to_string(), timeout.as_millis().to_string());
        let mut args = vec!["--listener", listener, topic, "--max", &max];
        args.extend(["--timeout-ms", &timeout]);
        args.extend(mechanism_option(mechanism));
        if let Some(group) = group {
            args.extend(["--group", group]);
        }
        let out = self.tool("consume", &args, None);
        assert!(
            out.status.success(),
            "the console consumer over {listener} {mechanism:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Kafka's `kafka-consumer-groups --describe --group GROUP` through `listener`: the text with
    /// each partition's committed offset, end offset and lag.
    pub fn groups(&self, listener: &str, mechanism: Option<&str>, group: &str) -> String {
        let mut args = vec!["--listener", listener, group];
        args.extend(mechanism_option(mechanism));
        let out = self.tool("groups", &args, None);
        assert!(
            out.status.success(),
            "kafka-consumer-groups over {listener} {mechanism:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `scripts/kafka COMMAND --dir DIR ARGS…` with `stdin` as its input.
    fn tool(&self, command: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(SCRIPTS_KAFKA)
            .arg(command)
            .arg("--dir")
            .arg(self.dir())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        // Written from a scope thread while the output is read, so that neither pipe can fill
        // up and stall the other side.
        std::thread::scope(|scope| {
            if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
                // A tool that exits early (refused authentication) closes the pipe: not our error.
                scope.spawn(move || pipe.write_all(bytes));
            }
            child.wait_with_output().unwrap()
        })
    }
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        // Not `scripts_kafka`: a drop must not panic.
        let _ = Command::new(SCRIPTS_KAFKA)
            .args(["stop", "--dir"])
            .arg(self.dir())
            .output();
    }
}

fn mechanism_option(mechanism: Option<&str>) -> Vec<&str> {
    mechanism.map_or_else(Vec::new, |m| vec!["--mechanism", m])
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
