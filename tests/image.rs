//! The image `docker/Dockerfile` builds, run for real. `scripts/check-docker` builds it with
//! podman (the Dockerfile's final stage around the static musl binary built here) and runs this
//! file with `HD_TEST_IMAGE` (the image) and `HD_TEST_PODMAN` (podman with this machine's
//! settings). Plain `cargo test` leaves it out (`test = false` in Cargo.toml): before that script
//! there is no image to run.
//!
//! The container runs as an operator runs it: the image's entrypoint (`hd-kafka-exec serve`), the
//! revisions mounted read-only at /transformations, hetida's variables, and the host's network,
//! where the test broker and the runtime double listen on 127.0.0.1.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use support::kafka::{client, kafka_bootstrap, kcat, unique_topic};
use support::normalise;
use support::prometheus::{free_port, http_get};
use support::runtime_double::RuntimeDouble;
use support::service::{Topics, job_of, read_all, vectors};
use support::wait::{Shown, eventually, within};

const WAIT: Duration = Duration::from_secs(120);

/// The user the Dockerfile names (`USER 10001:10001`).
const IMAGE_USER: &str = "10001";

/// podman with the settings this machine needs (`HD_TEST_PODMAN`, a wrapper `scripts/check-docker`
/// writes).
fn podman() -> Command {
    let bin = std::env::var_os("HD_TEST_PODMAN").expect(
        "HD_TEST_PODMAN is not set: scripts/check-docker builds the image and runs this test",
    );
    Command::new(bin)
}

/// The image under test (`HD_TEST_IMAGE`).
fn image() -> String {
    std::env::var("HD_TEST_IMAGE").expect(
        "HD_TEST_IMAGE is not set: scripts/check-docker builds the image and runs this test",
    )
}

/// A `podman run` of the image in the foreground, its output in a log; removed when dropped.
#[derive(Debug)]
struct Container {
    name: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Container {
    /// `podman run` of the image with these `podman run` options and arguments for its
    /// entrypoint.
    fn run(options: &[String], args: &[&str]) -> Container {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("container.log");
        let name = unique_topic("hd-kafka-exec-image");
        let out = std::fs::File::create(&log).unwrap();
        let child = podman()
            .args(["run", "--rm", "--name", &name, "--network", "host"])
            .args(options)
            .arg(image())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Container {
            name,
            child,
            log,
            _dir: dir,
        }
    }

    /// `serve` against the test broker and the runtime at `engine_url`, configured with
    /// hetida's variables, its metrics on 127.0.0.1:`metrics_port`.
    fn serve(topics: &Topics, engine_url: &str, metrics_port: u16) -> Container {
        let bootstrap = kafka_bootstrap().join(",");
        let env = [
            format!(
                r#"HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS={{"bootstrap_servers": "{bootstrap}", "group_id": "{}", "auto_offset_reset": "earliest"}}"#,
                topics.group
            ),
            format!(
                r#"HETIDA_DESIGNER_KAFKA_PRODUCER_OPTIONS={{"bootstrap_servers": "{bootstrap}"}}"#
            ),
            format!("HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC={}", topics.requests),
            format!("HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC={}", topics.responses),
            format!("HETIDA_DESIGNER_RUNTIME_ENGINE_URL={engine_url}"),
            format!("HD_METRICS_ADDR=127.0.0.1:{metrics_port}"),
            "RUST_LOG=info,rskafka::client::producer::broadcast=error".to_owned(),
        ];
        // Canonical: vectors() goes through `..`, which a volume's source must not.
        let revisions = std::fs::canonicalize(vectors().join("transformations")).unwrap();
        let store = format!("{}:/transformations:ro", revisions.display());
        let mut options = vec!["--volume".to_owned(), store];
        for e in env {
            options.extend(["--env".to_owned(), e]);
        }
        // The arguments replace the image's CMD (`--store dir:/transformations`), so it is named
        // again beside the test's own dead-letter topic.
        let args = [
            "--store",
            "dir:/transformations",
            "--dead-letter-topic",
            &topics.dead_letters,
            "--workers",
            "2",
        ];
        Container::run(&options, &args)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How the container exited, or `None` while it still runs.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// `podman top`: the user and group of every process in the container.
    fn users(&self) -> Vec<(String, String)> {
        let out = podman()
            .args(["top", &self.name, "user", "group"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman top: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((words.next()?.to_owned(), words.next()?.to_owned()))
            })
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seed's first console line (`exec_job_1:{...}`, the workflow by id), typed into kcat.
fn produce_seed_request(topic: &str, request: &str) {
    let mut child = kcat()
        .args(["-P", "-b", &kafka_bootstrap().join(","), "-t", topic, "-K:"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.take().unwrap(),
        "exec_job_1:{}",
        request.trim_end()
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

/// The image serves as the README runs it: its entrypoint starts `serve` as user 10001, the
/// workers consume and `/readyz` says so, the seed's `exec_job_1` line gets the reference's
/// response, and `podman stop` (TERM to the supervisor, PID 1 in the container) ends it cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_serves_the_seeds_request_as_user_10001_and_stops_cleanly() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::create(&client, "image", 8).await;
    let port = free_port();
    let mut container = Container::serve(&topics, &double.engine_url(), port);

    let metrics = format!("127.0.0.1:{port}");
    eventually(WAIT, "/readyz of the container answers 200", || {
        if let Some(status) = container.exited() {
            panic!("the container exited ({status}):\n{}", container.log_text());
        }
        match http_get(&metrics, "/readyz") {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{}: {}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        }
    });
    // The supervisor, the metrics process and two workers, none of them root.
    let users = container.users();
    assert!(users.len() >= 4, "podman top: {users:?}");
    for (user, group) in &users {
        assert_eq!(
            (user.as_str(), group.as_str()),
            (IMAGE_USER, IMAGE_USER),
            "{users:?}"
        );
    }

    let case = vectors().join("cases/volatility_by_id");
    let request = std::fs::read_to_string(case.join("request.json")).unwrap();
    produce_seed_request(&topics.requests, &request);
    let responses = read_all(&client, &topics.responses, 1, WAIT).await;
    assert_eq!(responses.len(), 1, "log:\n{}", container.log_text());
    let record = &responses[0].1.record;
    assert_eq!(record.key.as_deref(), Some(&b"exec_job_1"[..]));
    let value = record.value.as_ref().unwrap();
    let known =
        normalise::known_uuids(&vectors().join("transformations"), Some(request.as_bytes()));
    let reference = std::fs::read(case.join("response.json")).unwrap();
    assert_eq!(
        normalise::normalise(&serde_json::from_slice(value).unwrap(), &known),
        normalise::normalise(&serde_json::from_slice(&reference).unwrap(), &known),
        "the response differs from the reference's"
    );
    assert_eq!(record.headers["hd-job-id"], job_of(value).as_bytes());
    assert!(double.violations().is_empty(), "{:?}", double.violations());

    let stop = podman()
        .args(["stop", "--time", "40", &container.name])
        .output()
        .unwrap();
    assert!(
        stop.status.success(),
        "podman stop: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let status = within(WAIT, || {
        container.exited().ok_or(Shown(container.log_text()))
    })
    .expect("the container exits after podman stop");
    assert!(status.success(), "{status}; log:\n{}", container.log_text());
}

/// What `exec` prints, in the image, with a configuration that asks for TLS to Kafka (so the
/// TLS roots are loaded before stdin is read), an empty stdin and `options` for `podman run`.
fn exec_with_tls(options: &[String]) -> String {
    let mut all = vec![
        "--entrypoint".to_owned(),
        "hd-kafka-exec".to_owned(),
        "--env".to_owned(),
        r#"HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS={"bootstrap_servers": "127.0.0.1:9", "security_protocol": "SSL"}"#.to_owned(),
    ];
    all.extend_from_slice(options);
    let mut container = Container::run(&all, &["exec"]);
    let status = eventually(WAIT, "`exec` in the container exits", || {
        container.exited().ok_or(Shown(container.log_text()))
    });
    let log = container.log_text();
    assert!(
        !status.success(),
        "exec with an empty stdin succeeded:\n{log}"
    );
    log
}

/// The CA bundle the image holds is where the binary looks by itself (no SSL_CERT_FILE): with it,
/// `exec` gets past the TLS roots to the empty request; with an empty file mounted over it, it
/// stops at the roots (the control that the check can fail).
#[test]
fn the_image_finds_its_ca_bundle() {
    let found = |log: &str| match (
        log.contains("not JSON"),
        log.contains("no CA certificates found"),
    ) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    };
    let with = exec_with_tls(&[]);
    assert_eq!(found(&with), Some(true), "with the image's bundle:\n{with}");

    let empty = tempfile::NamedTempFile::new().unwrap();
    // Readable by the image's user, so that what it meets is an empty bundle, not a refusal.
    std::fs::set_permissions(
        empty.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let over = format!(
        "{}:/etc/ssl/certs/ca-certificates.crt:ro",
        empty.path().display()
    );
    let without = exec_with_tls(&["--volume".to_owned(), over]);
    assert_eq!(
        found(&without),
        Some(false),
        "with an empty bundle:\n{without}"
    );
}
