//! `whyfail`: the command line. Parses arguments, calls the engine, renders; nothing more.
//!
//! Exit codes (also in the README):
//! - 0: the command ran (for `diagnose`, whatever the diagnosis; for `check`, no errors);
//! - 1: `check` found errors in playbooks, `test` had a failing test (or, with
//!   `--deny-unreached`, something unreached), `new` found the file exists, or `diagnose` was
//!   given an event it cannot read;
//! - 2: usage error, or a file or directory could not be read.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc, built without transparent huge pages (`no_thp`: with them, peak RSS grew by a
// third): 8-13% less CPU on a batch and 12% less load time than glibc's malloc, which spent a
// fifth of the load in `_int_malloc`/`_int_free`/`malloc_consolidate` (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run playbook tests (`NAME.test.yaml` beside `NAME.yaml`); last line `N passed, M failed`.
    Test(cmd::test::Args),
    /// Scaffold a playbook and its tests, which pass `check` and `test` at once.
    New(cmd::new::Args),
    /// Draw a playbook's decision graph (Mermaid, DOT or SVG), optionally with an event's path.
    Graph(cmd::graph::Args),
    /// Serve the diagnosis API over HTTP (bearer token from WHYFAIL_TOKEN or --token-file).
    Serve(cmd::serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Diagnose(a) => cmd::diagnose::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Schema(a) => cmd::schema::run(a),
        Command::Test(a) => cmd::test::run(a),
        Command::New(a) => cmd::new::run(a),
        Command::Graph(a) => cmd::graph::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    };
    ExitCode::from(code)
}
