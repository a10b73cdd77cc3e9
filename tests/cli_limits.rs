//! `whyfail diagnose` input limits (issue 13, item 6): `--max-event-size` for one event and for
//! each batch line, a clear error per line, and bounded memory on endless input. Memory is
//! bounded by running the binary under a data-segment limit (`ulimit -d`): a reader that
//! buffers the whole input dies there instead of answering.

use std::io::Write;
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = common::spawn_whyfail(args);
    let mut pipe = child.stdin.take().expect("stdin");
    // The binary may stop reading early (that is the point); a broken pipe is expected then.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An event of exactly `len` bytes (padded in its message).
fn event_of(len: usize) -> String {
    let bare = json!({"event_id": "big", "error": {"status": 429, "message": ""}}).to_string();
    let pad = "x".repeat(len - bare.len());
    let e = json!({"event_id": "big", "error": {"status": 429, "message": pad}}).to_string();
    assert_eq!(e.len(), len);
    e
}

#[test]
fn a_single_event_over_the_limit_is_refused_with_exit_1() {
    let at = event_of(1000);
    let o = run(
        &["diagnose", "--offline", "--max-event-size", "1000", "-"],
        at.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let res: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(res["event_id"], "big");

    let over = event_of(1001);
    let o = run(
        &["diagnose", "--offline", "--max-event-size", "1000", "-"],
        over.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("<stdin>: the event is larger than --max-event-size (1000 bytes)"),
        "{}",
        stderr(&o)
    );
    let o = run(&["diagnose", "--max-event-size", "0", "-"], b"{}");
    assert_eq!(o.status.code(), Some(2), "a zero limit is a usage error");
}

#[test]
fn a_batch_line_over_the_limit_is_that_lines_error_and_the_batch_goes_on() {
    let input = format!(
        "{}\n{}\n\n{}\n{}",
        event_of(900),
        event_of(5000),
        event_of(1000),
        event_of(1200) // the last line, without a newline
    );
    let o = run(
        &[
            "diagnose",
            "--offline",
            "--batch",
            "--max-event-size",
            "1000",
            "-",
        ],
        input.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["event_id"], "big");
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"]["code"], "event_too_large");
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("5000 bytes") && m.contains("--max-event-size (1000")),
        "{}",
        lines[1]
    );
    // Line numbers count the blank line too: they are the input's own.
    assert_eq!(lines[2]["event_id"], "big");
    assert_eq!(lines[3]["line"], 5);
    assert_eq!(lines[3]["error"]["code"], "event_too_large");
}

/// Runs the binary with its data segment (heap and private mappings) limited to `mb`.
fn under_memory_limit(mb: u64, args: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -d {} && exec \"$0\" {args}", mb * 1024))
        .arg(env!("CARGO_BIN_EXE_whyfail"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run whyfail")
}

#[test]
fn endless_input_ends_with_an_error_in_bounded_memory() {
    if !std::path::Path::new("/dev/zero").exists() {
        eprintln!("no /dev/zero here: skipped");
        return;
    }
    let o = under_memory_limit(300, "diagnose --offline /dev/zero");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("/dev/zero: the event is larger than --max-event-size (16777216 bytes)"),
        "{}",
        stderr(&o)
    );

    let o = under_memory_limit(300, "diagnose --offline --batch /dev/zero");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out: Value = serde_json::from_slice(&o.stdout).expect("one json line");
    assert_eq!(out["line"], 1);
    assert_eq!(out["error"]["code"], "event_too_large");
    assert!(stderr(&o).contains("no end of line"), "{}", stderr(&o));
}
