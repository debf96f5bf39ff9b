//! README.md's shell blocks, run as written (issue 27: a README that works verbatim).
//!
//! Every fenced `sh` block of the README is in [`TABLE`], keyed by its first command line, as
//! either *run* here — with the substitutions it needs on this machine, each named with its
//! reason — or *by hand*, with the reason it cannot run here (hetida's repository or images, a
//! container engine, a placeholder for the reader's own setup, minutes of CI time, or CI itself).
//! A block the table does not know, an entry whose block is gone, or a substitution whose text
//! the block no longer holds fails [`every_shell_block_of_the_readme_is_in_the_table`]: the
//! README and this test change together. `cargo test --test readme -- --nocapture` prints the
//! table with each block's line.
//!
//! The blocks marked *run* run through `bash -e -c` (a line that fails fails the block) from the
//! repository's root, as a reader pastes them into a terminal of a fresh clone: the quick start's
//! `serve` against the test broker (`HD_TEST_KAFKA_BOOTSTRAP`), with the **runtime double**
//! (`tests/support/runtime_double.rs`, the project's stand-in for hetida's runtime service,
//! which is not part of this project) where the README has hetida's runtime; the kcat and `exec`
//! demos against that `serve`; and the dev-broker commands of `scripts/kafka` against a broker of
//! their own, which they start and stop (the slowest part: about a minute of JVM start-ups).
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use support::kafka::{client, create_topic, kafka_bootstrap, kcat};
use support::runtime_double::RuntimeDouble;
use support::service::Topics;
use support::wait::{Shown, eventually, within};

const README: &str = include_str!("../README.md");

/// Long enough for a JVM tool or a group's first rebalance on a busy CI machine.
const WAIT: Duration = Duration::from_secs(90);

/// Where the dev-broker block's broker lives (relative to the repository's root, as the README's
/// `target/kafka-dev`): beside a developer's own `target/kafka-dev` and CI's `target/kafka-test`.
const DEV_DIR: &str = "target/readme-kafka-dev";

/// The request of the README's `exec` example: hetida's *Add* component.
macro_rules! add_request {
    () => {
        r#"{"id": "2abf72f6-68c9-7398-7175-165d31b3ced7", "wiring": {"input_wirings": [{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {"value": "1"}}, {"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {"value": "2.5"}}]}}"#
    };
}

/// What a substitution puts in place of the README's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    /// Nothing: the text goes.
    Nothing,
    /// The test broker's bootstrap list (`HD_TEST_KAFKA_BOOTSTRAP`).
    Bootstrap,
    /// The runtime double's `HETIDA_DESIGNER_RUNTIME_ENGINE_URL`.
    RuntimeDouble,
    /// The binary cargo built for the tests.
    TestBinary,
    /// The kcat `scripts/test` installed (`HD_TEST_KCAT`, else `kcat` on PATH).
    Kcat,
    /// A request topic the test created, fresh.
    RequestTopic,
    /// A response topic the test created, fresh.
    ResponseTopic,
    /// A consumer group no run used before.
    Group,
    /// The README's request for the *Rectangle Area* workflow of `./transformations`, quoted in
    /// the prose below the `exec` block.
    RectangleRequest,
    /// [`DEV_DIR`].
    DevDir,
}

/// One change to a block before it runs: `from` (which the block must hold) becomes `to`.
#[derive(Debug)]
struct Sub {
    from: &'static str,
    to: To,
    why: &'static str,
}

/// An environment variable the block runs with, besides the test's own.
#[derive(Debug)]
struct Env {
    name: &'static str,
    to: To,
    why: &'static str,
}

#[derive(Debug)]
enum How {
    /// Run by `test`, changed by `subs` (in this order), with `env`; `shows` is what the test
    /// asserts the block does.
    Run {
        test: &'static str,
        subs: &'static [Sub],
        env: &'static [Env],
        shows: &'static str,
    },
    /// Not run here, for this reason; run by hand (issue 27's closing note records it).
    ByHand(&'static str),
}

/// A README block by its first command line (its first line that is not a comment, without a
/// trailing comment), and how it is checked.
#[derive(Debug)]
struct Entry {
    first: &'static str,
    how: How,
}

const BOOTSTRAP: Sub = Sub {
    from: "localhost:9092",
    to: To::Bootstrap,
    why: "the test broker; the README's port may be taken by another broker, or by none",
};

const RELEASE_BINARY: Sub = Sub {
    from: "target/release/hd-kafka-exec",
    to: To::TestBinary,
    why: "the binary cargo built for the tests (CARGO_BIN_EXE_hd-kafka-exec), the same code: \
          CI builds no release binary",
};

/// The quick start and `exec` blocks use hetida's default topics, which they assume exist.
const TOPICS: &[Env] = &[
    Env {
        name: "HETIDA_DESIGNER_KAFKA_CONSUMER_TOPIC",
        to: To::RequestTopic,
        why: "topics the test creates (the README assumes the two exist), fresh: the shared \
              test broker keeps earlier runs' records",
    },
    Env {
        name: "HETIDA_DESIGNER_KAFKA_RESPONSE_TOPIC",
        to: To::ResponseTopic,
        why: "as the request topic",
    },
];

const QUICK_START: &str = "cargo build --release";
const KCAT_DEMO: &str = "kcat -P -b localhost:9092 -t hd-execution-topic -K:";
const EXEC_DEMO: &str = concat!("echo '", add_request!(), "' \\");
const DEV_BROKER: &str = "scripts/kafka start --dir target/kafka-dev";

const BY_DOCKER: &str = "needs a container engine, which CI has not (podman: scripts/check-docker \
                         builds and runs the image)";

/// Every `sh` block of the README, in its order.
const TABLE: &[Entry] = &[
    Entry {
        first: QUICK_START,
        how: How::Run {
            test: "the_quick_start_serves_and_answers_the_demo_requests",
            subs: &[
                Sub {
                    from: "cargo build --release\n",
                    to: To::Nothing,
                    why: "CI builds no release binary (the test runs the binary cargo built)",
                },
                RELEASE_BINARY,
                BOOTSTRAP,
                Sub {
                    from: "http://localhost:8090/engine/",
                    to: To::RuntimeDouble,
                    why: "the runtime double, the project's stand-in for hetida's runtime \
                          service, which is outside this project",
                },
                Sub {
                    from: "hd_kafka_consumer_group",
                    to: To::Group,
                    why: "a group no earlier run committed in",
                },
            ],
            env: TOPICS,
            shows: "serve with ./transformations comes up: both workers log `worker consuming` \
                    in one generation, sharing the request topic's two partitions; no ERROR",
        },
    },
    Entry {
        first: "target/release/hd-kafka-exec check --store dir:hetida-designer/runtime/transformations",
        how: How::ByHand(
            "needs a clone of hetida's repository (v0.9.8) beside this one; its output lists \
             hetida's store",
        ),
    },
    Entry {
        first: KCAT_DEMO,
        how: How::Run {
            test: "the_quick_start_serves_and_answers_the_demo_requests",
            subs: &[
                Sub {
                    from: "kcat",
                    to: To::Kcat,
                    why: "the kcat scripts/test installed (HD_TEST_KCAT)",
                },
                BOOTSTRAP,
                Sub {
                    from: "hd-execution-topic",
                    to: To::RequestTopic,
                    why: "the quick start's request topic (fresh, see its environment)",
                },
                Sub {
                    from: "hd-execution-response-topic",
                    to: To::ResponseTopic,
                    why: "the quick start's response topic",
                },
            ],
            env: &[],
            shows: "line by line: the first gets the README's exec_job_1:{...} line as the \
                    paste; the second, run until the answer is there, prints it keyed \
                    exec_job_1: a TrafoExecutionNotFoundError failure with the seed's job id \
                    (./transformations has no Volatility Detection workflow; hetida's store has)",
        },
    },
    Entry {
        first: EXEC_DEMO,
        how: How::Run {
            test: "the_quick_start_serves_and_answers_the_demo_requests",
            subs: &[
                Sub {
                    from: add_request!(),
                    to: To::RectangleRequest,
                    why: "hetida's Add is not in ./transformations, the quick start's store; the \
                          README's own request for its Rectangle Area workflow, quoted below the \
                          block",
                },
                BOOTSTRAP,
                RELEASE_BINARY,
            ],
            env: TOPICS,
            shows: "exec prints the response, result ok, exit 0; the runtime double executed \
                    the Rectangle Area workflow for its job id",
        },
    },
    Entry {
        first: r#"export HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS='{"bootstrap_servers": "broker:9096", "group_id": "hd_kafka_consumer_group","#,
        how: How::ByHand(
            "placeholders for the reader's SASL_SSL broker (broker:9096, the password …); \
             tests/security.rs runs the service over SASL_SSL with SCRAM-SHA-512",
        ),
    },
    Entry {
        first: r#"export HETIDA_DESIGNER_KAFKA_CONSUMER_OPTIONS='{"bootstrap_servers": "localhost:9092", "group_id": "hd_share_group", "group_protocol": "share", "auto_offset_reset": "earliest"}'"#,
        how: How::ByHand(
            "serves until stopped, against a broker on localhost:9092; tests/share_group.rs \
             runs serve with these consumer options",
        ),
    },
    Entry {
        first: "scripts/test",
        how: How::ByHand("is CI itself (.ci/run runs it; this test is one of its steps)"),
    },
    Entry {
        first: DEV_BROKER,
        how: How::Run {
            test: "the_dev_broker_commands_run",
            subs: &[
                Sub {
                    from: "scripts/kafka transaction --dir target/kafka-dev TRANSACTIONAL_ID   \
                           # its coordinator, producer epoch, state\n",
                    to: To::Nothing,
                    why: "TRANSACTIONAL_ID is a placeholder: one exists once a service ran with \
                          --exactly-once (tests/exactly_once.rs runs this command on real ones)",
                },
                Sub {
                    from: "target/kafka-dev",
                    to: To::DevDir,
                    why: "a broker of the test's own: a developer's target/kafka-dev may run",
                },
            ],
            env: &[],
            shows: "every line succeeds within 4 minutes: a broker starts, the two topics are \
                    created, Kafka's group tools answer (the group is not found: no service \
                    joined it), a 5 s outage and restart, the console consumer ends at its \
                    timeout with 0 messages, the broker stops and its directory is gone",
        },
    },
    Entry {
        first: "scripts/kafka start --dir target/kafka-dev --port 9092 --version 2.8.1",
        how: How::ByHand(
            "fetches two more Kafka versions from Maven Central and starts a 3-node cluster \
             (minutes on a fresh clone), and wants port 9092 free; scripts/test-compat runs \
             those versions",
        ),
    },
    Entry {
        first: "scripts/test-compat 2.8.1",
        how: How::ByHand("each line is a compatibility run of its own, minutes each"),
    },
    Entry {
        first: "scripts/kafka start --dir target/kafka-sec --security CERTDIR",
        how: How::ByHand(
            "CERTDIR is a placeholder for the reader's certificates; tests/security.rs and \
             tests/secure_cluster.rs start this secured broker with certificates they generate",
        ),
    },
    Entry {
        first: "docker build -f docker/Dockerfile -t hd-kafka-exec .",
        how: How::ByHand(BY_DOCKER),
    },
    Entry {
        first: "docker compose -f docker/docker-compose.yml up --build -d",
        how: How::ByHand(
            "needs a container engine with compose and pulls hetida's images (podman: \
             scripts/check-docker checks the compose file)",
        ),
    },
    Entry {
        first: "cargo build --release --features lz4,zstd",
        how: How::ByHand(
            "a release build with the C codecs (minutes) and a Docker build; scripts/test runs \
             cargo test --features lz4,zstd",
        ),
    },
];

/// A fenced code block of the README: the line of its opening fence, its info string (`sh`)
/// and its text, lines ending in `\n`.
#[derive(Debug)]
struct Fenced {
    line: usize,
    info: String,
    text: String,
}

/// Every fenced code block of `markdown`, in order.
fn fenced_blocks(markdown: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut open: Option<Fenced> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Fenced {
                    line: i + 1,
                    info: info.trim().to_owned(),
                    text: String::new(),
                })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => blocks.push(open.take().unwrap()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md: a code block is never closed");
    blocks
}

/// The README's shell blocks.
fn shell_blocks() -> Vec<Fenced> {
    fenced_blocks(README)
        .into_iter()
        .filter(|b| matches!(b.info.as_str(), "sh" | "bash" | "shell" | "console"))
        .collect()
}

/// A block's first command line: its first line that is not blank or a comment, without a
/// trailing comment.
fn first_command(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(" #").next().unwrap().trim_end())
        .unwrap_or_default()
}

fn entry(first: &str) -> &'static Entry {
    TABLE
        .iter()
        .find(|e| e.first == first)
        .unwrap_or_else(|| panic!("no table entry for the block `{first}`"))
}

/// The README's block that starts with `first`, changed as its entry says, and the environment
/// it runs with; `values` gives what the test made for it (topics, the double's URL …).
fn prepared(first: &str, values: &[(To, String)]) -> (String, Vec<(String, String)>) {
    let blocks = shell_blocks();
    let block = blocks
        .iter()
        .find(|b| first_command(&b.text) == first)
        .unwrap_or_else(|| panic!("README.md has no sh block starting `{first}`"));
    let How::Run { subs, env, .. } = &entry(first).how else {
        panic!("the block `{first}` is marked by hand in the table")
    };
    let value = |to: To| -> String {
        match to {
            To::Nothing => String::new(),
            To::TestBinary => env!("CARGO_BIN_EXE_hd-kafka-exec").to_owned(),
            To::DevDir => DEV_DIR.to_owned(),
            To::Kcat => std::env::var("HD_TEST_KCAT").unwrap_or_else(|_| "kcat".to_owned()),
            other => values
                .iter()
                .find(|(t, _)| *t == other)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("the test gives no value for {other:?}")),
        }
    };
    let mut script = block.text.clone();
    for sub in subs.iter() {
        assert!(
            script.contains(sub.from),
            "README.md line {}: the block no longer holds `{}`",
            block.line,
            sub.from
        );
        script = script.replace(sub.from, &value(sub.to));
    }
    let env = env
        .iter()
        .map(|e| (e.name.to_owned(), value(e.to)))
        .collect();
    (script, env)
}

/// `bash -e -c SCRIPT` from the repository's root, as a reader's terminal in a fresh clone.
fn bash(script: &str, env: &[(String, String)]) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-e", "-c", script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

#[test]
fn every_shell_block_of_the_readme_is_in_the_table() {
    let blocks = shell_blocks();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for block in &blocks {
        let first = first_command(&block.text);
        if !seen.insert(first) {
            problems.push(format!(
                "line {}: a second block starts `{first}`; make its first line tell it apart",
                block.line
            ));
        }
        match TABLE.iter().find(|e| e.first == first) {
            None => problems.push(format!(
                "line {}: the block `{first}` is not in tests/readme.rs's TABLE: add it, as run \
                 (with its substitutions) or by hand (with the reason)",
                block.line
            )),
            Some(Entry {
                how: How::Run { subs, .. },
                ..
            }) => {
                for sub in subs.iter().filter(|s| !block.text.contains(s.from)) {
                    problems.push(format!(
                        "line {}: the block no longer holds `{}` ({:?}: {})",
                        block.line, sub.from, sub.to, sub.why
                    ));
                }
            }
            Some(_) => {}
        }
    }
    for e in TABLE {
        if !blocks.iter().any(|b| first_command(&b.text) == e.first) {
            problems.push(format!(
                "TABLE names `{}`, which no sh block of README.md starts with: remove or update it",
                e.first
            ));
        }
    }
    for block in &blocks {
        println!("{}", described(block));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One block's line of the printed table.
fn described(block: &Fenced) -> String {
    let first = first_command(&block.text);
    let head = format!("README.md:{} `{first}`", block.line);
    match TABLE.iter().find(|e| e.first == first).map(|e| &e.how) {
        None => format!("{head}\n    NOT IN THE TABLE"),
        Some(How::ByHand(why)) => format!("{head}\n    by hand: {why}"),
        Some(How::Run {
            test,
            subs,
            env,
            shows,
        }) => {
            let mut s = format!("{head}\n    run by {test}: {shows}");
            for sub in subs.iter() {
                s += &format!(
                    "\n      `{}` -> {:?}: {}",
                    sub.from.trim_end(),
                    sub.to,
                    sub.why
                );
            }
            for e in env.iter() {
                s += &format!("\n      env {}={:?}: {}", e.name, e.to, e.why);
            }
            s
        }
    }
}

/// A block running in the background in a process group of its own, as a terminal runs a
/// foreground job, its stdin from a file and its output in files; stopped as Ctrl-C stops it
/// when dropped, so that nothing it started outlives the test.
struct Background {
    child: Child,
    dir: tempfile::TempDir,
}

/// How a block ended, and what it printed.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Background {
    /// Starts `script`; `stdin` is what the reader pastes (nothing: an empty stdin).
    fn start(script: &str, env: &[(String, String)], stdin: &str) -> Background {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("stdin");
        std::fs::write(&input, stdin).unwrap();
        let child = bash(script, env)
            .stdin(File::open(&input).unwrap())
            .stdout(File::create(dir.path().join("stdout")).unwrap())
            .stderr(File::create(dir.path().join("stderr")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        Background { child, dir }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for the end; a block still running after `timeout` fails the test (a command
    /// that waits for ever is a README that does not run as written).
    #[track_caller]
    fn finish(mut self, timeout: Duration) -> Finished {
        let status = within(timeout, || self.child.try_wait().unwrap().ok_or(()));
        let Ok(status) = status else {
            panic!(
                "the block still runs after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        };
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGINT);
        let _ = within(Duration::from_secs(40), || {
            self.child.try_wait().ok().flatten().ok_or(())
        });
        // Whatever of the group is left (workers finishing a stop): nothing outlives the test.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs `script` to its end (within `timeout`), with `stdin` as its input.
#[track_caller]
fn run(script: &str, env: &[(String, String)], stdin: &str, timeout: Duration) -> Finished {
    Background::start(script, env, stdin).finish(timeout)
}

/// Worker index → the partitions its last `worker consuming` line in the group's latest
/// generation claims.
fn latest_generation(log: &str) -> BTreeMap<u64, Vec<i32>> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..].split_whitespace().next()?.parse().ok()
    };
    let lines: Vec<(u64, u64, Vec<i32>)> = log
        .lines()
        .filter(|l| l.contains("worker consuming"))
        .filter_map(|l| {
            let start = l.find("partitions=[")? + "partitions=[".len();
            let partitions = l[start..]
                .split(']')
                .next()?
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            Some((field(l, "generation")?, field(l, "worker")?, partitions))
        })
        .collect();
    let latest = lines.iter().map(|(g, _, _)| *g).max().unwrap_or(0);
    lines
        .into_iter()
        .filter(|(g, _, _)| *g == latest)
        .map(|(_, w, p)| (w, p))
        .collect()
}

/// The README's `text` block that starts with `prefix`, its one line.
fn text_line(prefix: &str) -> String {
    fenced_blocks(README)
        .into_iter()
        .find(|b| b.info == "text" && b.text.starts_with(prefix))
        .unwrap_or_else(|| panic!("README.md has no text block starting `{prefix}`"))
        .text
        .trim_end()
        .to_owned()
}

/// The request for the *Rectangle Area* workflow, as the README's prose quotes it (a code span
/// over several lines, which Markdown reads with spaces for its line breaks).
fn rectangle_request() -> String {
    let start = README
        .find(r#"`{"id": "6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5f01""#)
        .expect("README.md quotes the request for Rectangle Area")
        + 1;
    let end = start + README[start..].find('`').unwrap();
    let request = README[start..end].replace('\n', " ");
    serde_json::from_str::<Value>(&request).unwrap_or_else(|e| {
        panic!("README.md's Rectangle Area request is not JSON ({e}): {request}")
    });
    request
}

/// The quick start's `serve`, then the kcat and `exec` demos against it, as a reader goes
/// through them: the three blocks share the service, its topics and its group.
#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_serves_and_answers_the_demo_requests() {
    let double = RuntimeDouble::start().await;
    let client = client().await;
    let topics = Topics::named("readme");
    // Two partitions: one for each of the quick start's two workers.
    create_topic(&client, &topics.requests, 2).await;
    create_topic(&client, &topics.responses, 2).await;
    kcat(); // fails the test, naming what is missing, when there is no kcat
    let values = [
        (To::Bootstrap, kafka_bootstrap().join(",")),
        (To::RuntimeDouble, double.engine_url()),
        (To::RequestTopic, topics.requests.clone()),
        (To::ResponseTopic, topics.responses.clone()),
        (To::Group, topics.group.clone()),
        (To::RectangleRequest, rectangle_request()),
    ];

    let (script, env) = prepared(QUICK_START, &values);
    let mut serve = Background::start(&script, &env, "");
    let consuming = eventually(WAIT, "both workers consuming in one generation", || {
        let log = serve.stderr();
        if let Some(status) = serve.child.try_wait().unwrap() {
            panic!("the quick start ended ({status}):\n{log}");
        }
        let latest = latest_generation(&log);
        let mut partitions: Vec<i32> = latest.values().flatten().copied().collect();
        partitions.sort_unstable();
        let workers: Vec<u64> = latest.keys().copied().collect();
        if workers == [0, 1] && partitions == [0, 1] {
            Ok(latest)
        } else {
            Err(Shown(log))
        }
    });
    println!("quick start: consuming {consuming:?}");

    kcat_demo(&values);
    exec_demo(&values, &double);

    let log = serve.stderr();
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ")),
        "the quick start logged an error:\n{log}"
    );
    assert_eq!(double.violations(), Vec::<String>::new());
}

/// The kcat block: the seed's exec_job_1 line pasted into its producer, its consumer read until
/// the answer is there.
fn kcat_demo(values: &[(To, String)]) {
    let (script, env) = prepared(KCAT_DEMO, values);
    let lines: Vec<&str> = script.lines().collect();
    let [produce, consume] = lines[..] else {
        panic!("the kcat block has two lines, a producer and a consumer: {script}")
    };
    let paste = text_line("exec_job_1:") + "\n";
    let produced = run(produce, &env, &paste, WAIT);
    assert!(produced.status.success(), "{produce}\n{produced:#?}");

    let answer = eventually(WAIT, "the answer keyed exec_job_1 from kcat -C", || {
        let read = run(consume, &env, "", WAIT);
        read.stdout
            .lines()
            .find_map(|l| l.strip_prefix("exec_job_1 => "))
            .map(str::to_owned)
            .ok_or(read)
    });
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["result"], "failure", "{answer}");
    assert_eq!(
        v["error"]["type"], "TrafoExecutionNotFoundError",
        "{answer}"
    );
    assert_eq!(
        v["job_id"], "00000000-0000-0000-0000-000000000002",
        "{answer}"
    );
}

/// The `exec` block with the README's Rectangle Area request: one request in, its answer out.
fn exec_demo(values: &[(To, String)], double: &RuntimeDouble) {
    let (script, env) = prepared(EXEC_DEMO, values);
    let done = run(&script, &env, "", WAIT);
    assert!(done.status.success(), "{script}\n{done:#?}");
    let stdout = &done.stdout;
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["result"], "ok", "{stdout}");
    assert_eq!(v["error"], Value::Null, "{stdout}");
    let job = v["job_id"].as_str().unwrap();
    assert_eq!(
        double.trafo_of_job(job).as_deref(),
        Some("6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5f01"),
        "the runtime executed Rectangle Area for job {job}"
    );
}

/// Stops the dev block's broker: one a failed earlier run left (before), and this run's should
/// it fail half-way (after).
struct DevBroker;

impl DevBroker {
    fn stop() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let _ = Command::new(root.join("scripts/kafka"))
            .args(["stop", "--dir"])
            .arg(root.join(DEV_DIR))
            .output();
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        DevBroker::stop();
    }
}

#[test]
fn the_dev_broker_commands_run() {
    DevBroker::stop();
    let _stop = DevBroker;
    let (script, env) = prepared(DEV_BROKER, &[]);
    let started = std::time::Instant::now();
    // A broker start, a restart after 5 s down and seven JVM tools: about a minute.
    let done = run(&script, &env, "", Duration::from_secs(240));
    println!(
        "the dev-broker block ran in {:?}:\n{done:#?}",
        started.elapsed()
    );
    assert!(done.status.success(), "{script}\n{done:#?}");
    for said in [
        "bootstrap=127.0.0.1:",
        "restarted (1 node(s), down 5 s)",
        "stopped",
    ] {
        assert!(done.stdout.contains(said), "no `{said}`:\n{done:#?}");
    }
    // The group tools answered about the group (on a new broker: that it is not there yet, as
    // the README says), and the console consumer ended at its timeout.
    let said = format!("{}{}", done.stdout, done.stderr);
    for shown in [
        "Group hd_kafka_consumer_group not found",
        "Processed a total of 0 messages",
    ] {
        assert!(said.contains(shown), "no `{shown}`:\n{done:#?}");
    }
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR")).join(DEV_DIR).exists(),
        "stop removes the broker's directory"
    );
}
