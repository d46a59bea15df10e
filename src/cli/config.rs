//! `bridgewarden config check FILE`: validate a daemon config and the policy it names.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (and the policy it names): FILE:LINE:COL errors, exit 1.
    Check {
        file: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file, strict } = cmd;
    let (config, warnings) = match Config::load(&file) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &warnings {
        eprintln!("{w}");
    }
    let Some(policy) = super::policy::load_or_report(&config.policy) else {
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "{}: ok: {} bridged pair(s), IRC network(s): {}, policy {:?} ({}, {})",
        file.display(),
        config.bridges.len(),
        config
            .irc
            .iter()
            .map(|n| n.config.network.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        policy.name(),
        policy.short_hash(),
        policy.mode().name(),
    );
    if strict && !(warnings.is_empty() && policy.warnings().is_empty()) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
