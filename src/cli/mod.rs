//! The command line: `serve`, `exec`, `prepare`, `check`. It parses arguments, reads stdin and
//! prints; the work is the library's. `anyhow` lives here, at the edge, and nowhere else.

mod exec;
mod serve;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    match Cli::parse().command {
        Command::Serve { flags } => serve::serve(flags),
        Command::Exec { flags, key, wait } => exec::exec(flags, key, wait),
        Command::Prepare { store } => store::prepare(&store),
        Command::Check { store } => store::check(&store),
    }
}
