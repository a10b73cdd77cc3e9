//! One module per subcommand: an `Args` struct and a `run` returning the exit code.

pub mod check;
pub mod diagnose;
pub mod graph;
pub mod new;
pub mod schema;
pub mod serve;
mod signal_examples;
mod status_only;
pub mod test;

/// Exit code: the command ran and found nothing wrong.
pub const OK: u8 = 0;
/// Exit code: the input (playbooks or event) has errors.
pub const FOUND_ERRORS: u8 = 1;
/// Exit code: usage error or unreadable file.
pub const USAGE: u8 = 2;

/// Writes a result to standard output. A closed pipe (`whyfail ... | head`) is not an error
/// worth a panic: the reader has what it wanted.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
}
