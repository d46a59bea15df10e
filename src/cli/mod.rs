//! The command line: `bridgewarden <command>`.
//!
//! The edge of the program: parses arguments, calls into the library, prints, and maps
//! outcomes to exit codes (0 ok, 1 a problem was found, 2 bad usage). `anyhow` is used here
//! and nowhere deeper. Must not hold domain logic.

mod audit;
mod config;
mod policy;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bridgewarden",
    version,
    about = "A Matrix <-> IRC bridge with a declarative moderation policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bridge daemon.
    Run(run::RunArgs),
    /// Check, test, evaluate and explain policy files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Read the audit log: list, show, export, stats.
    Audit(audit::AuditArgs),
    /// Check a daemon config file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
        Command::Audit(args) => audit::run(args),
        Command::Config(cmd) => config::run(cmd),
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bridgewarden: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
