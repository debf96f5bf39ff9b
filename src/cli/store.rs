//! `prepare` and `check`: what a directory store holds and what the service would send for a
//! request, without Kafka or runtime.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use hd_kafka_exec::protocol::response::Failure;
use hd_kafka_exec::protocol::{PreparedRevision, Timings, failure_response, parse_request};
use hd_kafka_exec::store::DirIndex;

/// The directory of a `dir:PATH` store; these commands read no other kind.
fn dir_of(store: &str) -> anyhow::Result<PathBuf> {
    match store.strip_prefix("dir:") {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!("--store `{store}`: this command reads a directory store (`dir:PATH`)"),
    }
}

/// Prints the runtime request for the request on stdin, or the failure response the service
/// would produce instead (and exits with failure).
pub(super) fn prepare(store: &str) -> anyhow::Result<ExitCode> {
    let index = DirIndex::open(&dir_of(store)?)?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the request from stdin")?;
    let outcome = parse_request(Some(&input)).and_then(|request| {
        let id = index.resolve(request.target)?;
        let prepared = PreparedRevision::new(&index.tree(id)?)?;
        prepared.runtime_request(&request).map(|r| r.body.to_vec())
    });
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(body) => {
            stdout.write_all(&body)?;
            stdout.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let response = failure_response(&Failure {
                error: &error,
                job_id: None,
                output_types: &[],
                timings: &Timings::default(),
                process_id: None,
                extra: None,
            });
            stdout.write_all(&response)?;
            stdout.write_all(b"\n")?;
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Lists every revision of the directory with its file, or every problem that keeps the
/// service from opening it (and exits with failure).
pub(super) fn check(store: &str) -> anyhow::Result<ExitCode> {
    // Warnings while reading (on stderr) are part of what `check` is for.
    hd_kafka_exec::logging::init(hd_kafka_exec::config::LogFormat::Text);
    let dir = dir_of(store)?;
    // Written, not println!ed: a reader that closes the pipe (`| head`) ends this quietly
    // (see `cli::run`) instead of panicking.
    let mut stdout = std::io::stdout().lock();
    match DirIndex::open(&dir) {
        Ok(index) => {
            for (path, r) in index.iter() {
                writeln!(
                    stdout,
                    "{}  {:9}  {:8}  {} ({})  {}",
                    r.id,
                    format!("{:?}", r.kind).to_uppercase(),
                    format!("{:?}", r.state).to_uppercase(),
                    r.name,
                    r.version_tag,
                    path.display()
                )?;
            }
            writeln!(
                stdout,
                "{} revision(s) in {}, no problems",
                index.len(),
                dir.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems.0 {
                writeln!(stdout, "{p}")?;
            }
            eprintln!("{} problem(s) in {}", problems.0.len(), dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
