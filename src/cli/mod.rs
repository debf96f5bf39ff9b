//! The command line: `serve`, `exec`, `prepare`, `check`. It parses arguments, reads stdin and
//! prints; the work is the library's. `anyhow` lives here, at the edge, and nowhere else.

mod exec;
mod host_slot;
mod serve;
mod store;

use std::process::ExitCode;

use clap::{Arg, Parser, Subcommand};
use hd_kafka_exec::config::Flags;

/// The arguments: one command and its flags.
#[derive(Debug, Parser)]
#[command(
    name = "hd-kafka-exec",
    version,
    about = "Executes hetida designer transformations on request from Kafka"
)]
struct Cli {
    /// The command to run.
    #[command(subcommand)]
    command: Command,
}

/// The commands; each variant's doc comment is its `--help` text.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: a supervisor and its worker processes (configured like hetida's backend).
    Serve {
        /// The service's configuration, on top of hetida's environment variables.
        #[command(flatten)]
        flags: Flags,
    },
    /// Produce one request (stdin) to the request topic and print its response when it arrives.
    // `serve`'s flags that mean nothing to one request are accepted (one command line serves
    // both) but not listed in `exec --help`.
    #[command(
        mut_arg("workers", hide),
        mut_arg("timeout", hide),
        mut_arg("graceful_timeout", hide),
        mut_arg("metrics_addr", hide),
        mut_arg("exactly_once", hide),
        mut_arg("pid_file", hide),
        mut_arg("partitioning", hide),
        mut_arg("max_in_flight", hide),
        mut_arg("store", hide),
        mut_arg("dead_letter_topic", hide),
        mut_arg("runtime_url", hide),
        mut_arg("runtime_timeout", hide),
        mut_arg("runtime_retry_budget", hide),
        mut_arg("ca_bundle", hide),
        mut_arg("response_key", hide),
        mut_arg("latest_ttl", hide)
    )]
    Exec {
        /// The same configuration as `serve`: the request goes to the topic the service reads.
        #[command(flatten)]
        flags: Flags,
        /// Key of the request record (the console producer's `key:` part).
        #[arg(long)]
        key: Option<String>,
        /// Seconds to wait for the response.
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
    },
    /// Print the runtime request the service would POST for the request on stdin (or the failure response).
    Prepare {
        /// Where revisions come from: `dir:PATH`.
        #[arg(long, default_value = "dir:transformations")]
        store: String,
    },
    /// List the revisions of a store directory, or every problem with it.
    Check {
        /// Where revisions come from: `dir:PATH`.
        #[arg(long, default_value = "dir:transformations")]
        store: String,
    },
}

/// Parses the arguments and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let outcome = match Cli::parse().command {
        Command::Serve { flags } => serve::serve(flags),
        Command::Exec { flags, key, wait } => exec::exec(flags, key, wait),
        Command::Prepare { store } => store::prepare(&store),
        Command::Check { store } => store::check(&store),
    };
    match outcome {
        // The reader of stdout went away (`prepare … | head -c 600`): it has what it wanted, so
        // the command ends quietly, as Unix tools do, instead of reporting an error.
        Err(e) if closed_stdout(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Whether `e` is a write to a pipe whose reader has closed it.
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Leaves a flag out of a command's `--help`.
fn hide(arg: Arg) -> Arg {
    arg.hide(true)
}
