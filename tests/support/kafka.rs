//! The real Apache Kafka broker started by `scripts/test` (or by hand with `scripts/kafka start`).
//!
//! Tests that need Kafka fail, never skip, when it is missing: a green run must mean the code was
//! exercised against a real broker.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rskafka::client::{Client, ClientBuilder};

/// `HD_TEST_KAFKA_BOOTSTRAP`, set by `scripts/test`.
pub fn kafka_bootstrap() -> Vec<String> {
    let v = std::env::var("HD_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "HD_TEST_KAFKA_BOOTSTRAP is not set: this test needs the real Kafka broker. \
             Run the tests with scripts/test, or start one with `scripts/kafka start --dir target/kafka-dev` \
             and export HD_TEST_KAFKA_BOOTSTRAP=$(cat target/kafka-dev/bootstrap)"
        )
    });
    v.split(',').map(str::to_owned).collect()
}

/// `HD_TEST_KAFKA_DIR`: the directory of the running cluster, for `scripts/kafka groups`.
pub fn kafka_dir() -> PathBuf {
    std::env::var_os("HD_TEST_KAFKA_DIR")
        .map(PathBuf::from)
        .expect("HD_TEST_KAFKA_DIR is not set: run the tests with scripts/test")
}

/// A topic name no other test (or earlier run against the same broker) uses.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

pub async fn client() -> Arc<Client> {
    Arc::new(
        ClientBuilder::new(kafka_bootstrap())
            .build()
            .await
            .expect("connecting to the test Kafka broker"),
    )
}

/// Creates `name` with `partitions` partitions and waits until its leaders are known.
pub async fn create_topic(client: &Client, name: &str, partitions: i32) {
    create_topic_replicated(client, name, partitions, 1).await;
}

/// Like [`create_topic`] with `replicas` copies of each partition (a cluster of that many).
pub async fn create_topic_replicated(client: &Client, name: &str, partitions: i32, replicas: i16) {
    let controller = client.controller_client().expect("controller client");
    controller
        .create_topic(name, partitions, replicas, 10_000)
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    let what = format!("topic {name} listed with {partitions} partitions");
    super::wait::eventually_async(std::time::Duration::from_secs(60), what, || async {
        let topics = client.list_topics().await.expect("listing topics");
        let listed = topics.iter().find(|t| t.name == name);
        match listed.map(|t| t.partitions.len()) {
            Some(n) if n == partitions as usize => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// A cluster of this test's own (`scripts/kafka start` in a temporary directory), for tests that
/// stop brokers, which the shared one must not be. Stopped and removed when dropped.
pub struct OwnCluster {
    dir: tempfile::TempDir,
    pub bootstrap: String,
}

impl OwnCluster {
    /// host:port of node `node` (1-based).
    pub fn node_address(&self, node: u32) -> String {
        self.bootstrap
            .split(',')
            .nth(node as usize - 1)
            .unwrap()
            .to_owned()
    }

    /// The directory `scripts/kafka` knows the cluster by.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// The node (1-based) whose broker coordinates `group` now, from Kafka's own tool.
    pub fn coordinator_node(&self, group: &str) -> u32 {
        let out = scripts_kafka("state", &self.dir(), &[group]);
        let line = out
            .lines()
            .find(|l| l.starts_with(group))
            .unwrap_or_else(|| panic!("no state of {group}: {out}"));
        let id = line
            .split('(')
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|id| id.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no coordinator id in: {line}"));
        // scripts/kafka numbers nodes from 1 and gives node i the broker id i.
        id
    }

    pub fn start(brokers: u32) -> OwnCluster {
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("cluster");
        scripts_kafka("start", &cluster, &["--brokers", &brokers.to_string()]);
        let bootstrap = std::fs::read_to_string(cluster.join("bootstrap"))
            .unwrap()
            .trim()
            .to_owned();
        OwnCluster { dir, bootstrap }
    }

    /// Stops every broker, waits `down`, starts them again with the same data and ports.
    pub fn restart(&self, down: std::time::Duration) {
        self.restart_nodes(None, down);
    }

    /// Like [`restart`](Self::restart) for node `node` (1-based) alone, or all of them.
    pub fn restart_nodes(&self, node: Option<u32>, down: std::time::Duration) {
        let node = node.map(|n| n.to_string()).unwrap_or_default();
        let down = down.as_secs().to_string();
        scripts_kafka(
            "restart",
            &self.dir.path().join("cluster"),
            &["--node", &node, "--down", &down],
        );
    }

    pub async fn client(&self) -> Arc<Client> {
        Arc::new(
            ClientBuilder::new(self.bootstrap.split(',').map(str::to_owned).collect())
                .build()
                .await
                .expect("connecting to the test's own cluster"),
        )
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // Not `scripts_kafka`: a drop must not panic.
        let _ = Command::new(SCRIPTS_KAFKA)
            .args(["stop", "--dir"])
            .arg(self.dir.path().join("cluster"))
            .output();
    }
}

const SCRIPTS_KAFKA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");

/// Runs `scripts/kafka COMMAND --dir DIR ARGS…` and returns what it printed; a failure panics
/// with its error output.
pub fn scripts_kafka(command: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(SCRIPTS_KAFKA)
        .arg(command)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/kafka {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `kcat` binary: `HD_TEST_KCAT`, else `kcat` on PATH.
pub fn kcat() -> Command {
    let bin = std::env::var("HD_TEST_KCAT").unwrap_or_else(|_| "kcat".to_owned());
    let probe = Command::new(&bin).arg("-V").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "kcat ({bin}) is not available: scripts/test installs it (apt-get install kcat)"
    );
    Command::new(bin)
}

/// The Python of the venv with aiokafka, `HD_TEST_PYTHON`.
pub fn python_with_aiokafka() -> Command {
    let bin = std::env::var("HD_TEST_PYTHON")
        .expect("HD_TEST_PYTHON is not set: scripts/test creates target/venv with aiokafka");
    Command::new(bin)
}
