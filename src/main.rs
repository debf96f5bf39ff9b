//! Thin command line edge: parses arguments and hands over to the library.
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hd-kafka-exec",
    version,
    about = "Executes hetida designer transformations on request from Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and exit.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("hd-kafka-exec {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
