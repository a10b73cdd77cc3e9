//! `whyfail`: the command line. Parses arguments, calls the engine, renders; nothing more.
//!
//! Exit codes (also in the README):
//! - 0: the command ran (for `diagnose`, whatever the diagnosis; for `check`, no errors);
//! - 1: `check` found errors in playbooks, or `diagnose` was given an event it cannot read;
//! - 2: usage error, or a file or directory could not be read.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Why did this workflow step fail, and what to do next.
#[derive(Parser)]
#[command(name = "whyfail", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Diagnose one failure event (JSON), or a JSON Lines batch with --batch.
    Diagnose(cmd::diagnose::Args),
    /// Validate playbooks; reports every problem with file, line, column and a hint.
    Check(cmd::check::Args),
    /// Print a JSON Schema: playbook, event or resolution.
    Schema(cmd::schema::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Diagnose(a) => cmd::diagnose::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Schema(a) => cmd::schema::run(a),
    };
    ExitCode::from(code)
}
