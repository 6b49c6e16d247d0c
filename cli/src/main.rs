//! `d3hr-cli`: distill an image dataset with D3HR. See `d3hr-cli --help`.
//!
//! This file parses the command line, sets up the reporter, hands the command to its module
//! (`commands/`) and turns the result into the exit code.

mod commands;

use anyhow::Result;
use clap::Parser;
use d3hr_cli::cli::{Cli, Command};
use d3hr_cli::progress::{Reporter, err_line, out_line, stdout_failed};
use serde_json::json;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rep = Reporter::new(cli.global.quiet, cli.global.json);
    let result = run(&cli, &rep);
    if let Err(e) = &result {
        if cli.global.json {
            out_line(&json!({"event": "error", "message": format!("{e:#}")}).to_string());
        }
        err_line(&format!("error: {e:#}"));
    }
    if cli.global.json && stdout_failed() {
        err_line(
            "error: --json: could not write every line to stdout (closed pipe or full device)",
        );
        return ExitCode::FAILURE;
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(cli: &Cli, rep: &Reporter) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Distill(a) => commands::distill::run(g, a, rep),
        Command::Invert(a) => commands::invert::run(g, a, rep),
        Command::Sample(a) => commands::sample::run(g, a, rep),
        Command::Merge(a) => commands::merge::run(a, rep),
        Command::Inspect(a) => commands::inspect::run(a),
    }
}
