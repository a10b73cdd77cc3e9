//! `whyfail diagnose [FILE|-]`: one event in, one resolution out; `--batch` for JSON Lines.
//!
//! In batch mode every input line gives exactly one output line, in order: a resolution, or
//! `{"line": N, "error": {...}}` for a line that is not a valid event, and the batch goes on.
//!
//! Input is bounded: one event (or one batch line) may be at most `--max-event-size` bytes
//! (16 MiB by default). A larger single event fails with exit code 1 after reading no more than
//! that; a longer batch line is that line's `event_too_large` error, and the rest of it is
//! skipped unread into memory. Input that has no end of line within 16 times the limit
//! (`/dev/zero`, a binary file) ends the batch with exit code 1.
//!
//! Live checks are on unless `--offline`: facts a check declares in `needs:` are fetched by
//! the live providers (guarded, cached, within `--deadline`), or served from `--facts FILE`.

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use whyfail::render::{self, Format};
use whyfail_engine::{Audience, Event, FactProvider, Library, Options, Resolution};
use whyfail_providers::{FixtureProvider, LiveConfig, LiveProvider, RecordingProvider};

use super::{FOUND_ERRORS, OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Event file, or `-` for standard input.
    #[arg(default_value = "-")]
    input: String,
    /// JSON Lines in, JSON Lines out.
    #[arg(long)]
    batch: bool,
    /// Directory (or file) of playbooks that add to or override the built-in library; repeatable.
    #[arg(long = "playbooks", value_name = "DIR")]
    playbooks: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Voice of the explanation.
    #[arg(long, default_value = "user", value_parser = parse_audience)]
    audience: Audience,
    /// No live checks: decide from the event alone.
    #[arg(long)]
    offline: bool,
    /// Let live checks reach HOST even if it is private (tests, on-prem); repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_host: Vec<String>,
    /// Serve live facts from a JSON file (`{"fact.name": value}`) instead of the network.
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// Time budget for live facts per diagnosis, in milliseconds; checks whose facts are not in
    /// by then are `unknown`.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    deadline: u64,
    /// Upper bound for one probe, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2500)]
    probe_timeout: u64,
    /// Carry out this action when the diagnosis recommends it (only `refresh_token`); the new
    /// tokens are returned in `new_credentials`.
    #[arg(long = "act", value_name = "ACTION", value_parser = clap::builder::PossibleValuesParser::new(whyfail::act::ACTIONS))]
    act: Vec<String>,
    /// Record every script evaluated (applies_when, steps, checks): its source, the event values
    /// and live facts it read (secrets masked), its outcome and time; in `trace` (JSON) or as a
    /// listing after the resolution (text).
    #[arg(long)]
    trace: bool,
    /// Save the event (secrets masked) and every live fact fetched as a `whyfail test` case.
    #[arg(long, value_name = "FILE", conflicts_with = "batch")]
    record: Option<PathBuf>,
    /// Largest event, or batch line, in bytes; larger input is refused with an error.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_EVENT_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    max_event_size: u64,
}

/// Default `--max-event-size`: 16 MiB, far above any real failure event.
pub const DEFAULT_MAX_EVENT_SIZE: u64 = 16 << 20;

/// A batch line longer than the limit is skipped up to this many times the limit; input with no
/// end of line within that is not JSON Lines, and the batch stops.
const MAX_SKIP_FACTOR: u64 = 16;

fn parse_audience(s: &str) -> Result<Audience, String> {
    s.parse()
}

/// The input, buffered, and its size when it is a regular file.
fn read_input(input: &str) -> io::Result<(Box<dyn BufRead>, Option<u64>)> {
    if input == "-" {
        Ok((
            Box::new(io::BufReader::with_capacity(1 << 16, io::stdin())),
            None,
        ))
    } else {
        let f = std::fs::File::open(input)?;
        let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        Ok((Box::new(io::BufReader::with_capacity(1 << 16, f)), len))
    }
}

/// Reads one whole event of at most `max` bytes; `Ok(None)` when there is more than that
/// (having read only `max + 1` bytes).
fn read_event(
    reader: &mut dyn BufRead,
    size: Option<u64>,
    max: u64,
) -> io::Result<Option<Vec<u8>>> {
    // Sized from the file when known, so a large event is not copied while the buffer grows.
    let mut bytes = Vec::with_capacity(size.map_or(0, |n| n.min(max + 1)) as usize);
    reader.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq)]
enum Line {
    /// A line (in the buffer, with its newline if it had one).
    Read,
    /// End of input.
    End,
    /// A line longer than the limit, skipped; `len` bytes long without its newline.
    TooLong { len: u64 },
    /// More than the limit times [`MAX_SKIP_FACTOR`] without an end of line.
    Endless,
}

/// Reads one line into `buf` (cleared first), never holding more than `max` bytes of it.
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: u64) -> io::Result<Line> {
    buf.clear();
    let mut skipped: Option<u64> = None;
    loop {
        let avail = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(match skipped {
                Some(len) => Line::TooLong { len },
                None if buf.is_empty() => Line::End,
                None => Line::Read,
            });
        }
        let (chunk, ends) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let content = (chunk - usize::from(ends)) as u64;
        match &mut skipped {
            None if buf.len() as u64 + content <= max => buf.extend_from_slice(&avail[..chunk]),
            None => {
                skipped = Some(buf.len() as u64 + content);
                buf.clear();
                buf.shrink_to(1 << 16);
            }
            Some(len) => *len += content,
        }
        reader.consume(chunk);
        if let Some(len) = skipped {
            if ends {
                return Ok(Line::TooLong { len });
            }
            if len > max.saturating_mul(MAX_SKIP_FACTOR) {
                return Ok(Line::Endless);
            }
        } else if ends {
            return Ok(Line::Read);
        }
    }
}

fn too_large(max: u64) -> String {
    format!("the event is larger than --max-event-size ({max} bytes)")
}

pub fn run(args: Args) -> u8 {
    let (lib, diags) = whyfail::load_library(&args.playbooks, true);
    for d in &diags {
        eprintln!("{d}");
    }
    let fixture = match &args.facts {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                serde_json::from_str::<serde_json::Value>(&t)
                    .map_err(|e| e.to_string())
                    .and_then(|v| FixtureProvider::from_json(&v))
            }) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("whyfail: cannot use facts file `{}`: {e}", path.display());
                return USAGE;
            }
        },
        None => None,
    };
    let deadline = Duration::from_millis(args.deadline);
    let live = if args.offline || fixture.is_some() {
        None
    } else {
        match LiveProvider::new(LiveConfig {
            allow_hosts: args.allow_host.clone(),
            probe_timeout: Duration::from_millis(args.probe_timeout),
            ..LiveConfig::default()
        }) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("whyfail: cannot start the live providers: {e}");
                return USAGE;
            }
        }
    };
    if !args.act.is_empty() && live.is_none() {
        eprintln!("whyfail: --act needs live providers (drop --offline and --facts)");
        return USAGE;
    }
    let provider: Option<&dyn FactProvider> = if args.offline {
        None
    } else if let Some(f) = &fixture {
        Some(f)
    } else {
        live.as_ref().map(|l| l as &dyn FactProvider)
    };
    let opts = Options {
        audience: args.audience,
        provider,
        deadline: Some(deadline),
        trace: args.trace,
        cancel: None,
    };
    let run = Run {
        lib: &lib,
        opts,
        live: live.as_ref(),
        act: &args.act,
        deadline,
    };
    if let Some(dest) = &args.record
        && dest.exists()
    {
        eprintln!(
            "whyfail: `{}` exists; --record writes a new test file",
            dest.display()
        );
        return USAGE;
    }

    let (mut reader, size) = match read_input(&args.input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whyfail: cannot read `{}`: {e}", args.input);
            return USAGE;
        }
    };
    let name = if args.input == "-" {
        "<stdin>"
    } else {
        &args.input
    };
    if args.batch {
        batch(&run, args.format, reader.as_mut(), args.max_event_size)
    } else {
        let text = match read_event(reader.as_mut(), size, args.max_event_size) {
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    eprintln!(
                        "whyfail: cannot read `{}`: stream did not contain valid UTF-8",
                        args.input
                    );
                    return USAGE;
                }
            },
            Ok(None) => {
                eprintln!("whyfail: {name}: {}", too_large(args.max_event_size));
                return FOUND_ERRORS;
            }
            Err(e) => {
                eprintln!("whyfail: cannot read `{}`: {e}", args.input);
                return USAGE;
            }
        };
        drop(reader);
        let (result, recorded) = match &args.record {
            Some(_) => {
                let recorder = RecordingProvider::new(run.opts.provider);
                let result = run.with_provider(&text, Some(&recorder));
                // The event parsed, so it is JSON; the test file keeps it as written.
                let file = match (&result, serde_json::from_str(&text)) {
                    (Ok(res), Ok(value)) => Some(whyfail::record::test_file(
                        &value,
                        res,
                        &recorder.recorded(),
                    )),
                    _ => None,
                };
                (result, file)
            }
            None => {
                // The text is not needed once parsed: a large event is not held twice.
                let event = Event::parse(&text);
                drop(text);
                (event.map(|e| run.event(&e, run.opts.provider)), None)
            }
        };
        // The diagnosis is still printed; a test file that cannot be written fails the command.
        let mut code = OK;
        if let (Some(dest), Some(file)) = (&args.record, recorded) {
            match std::fs::write(dest, file) {
                Ok(()) => eprintln!("whyfail: recorded as a test in {}", dest.display()),
                Err(e) => {
                    eprintln!("whyfail: cannot write `{}`: {e}", dest.display());
                    code = USAGE;
                }
            }
        }
        match result {
            Ok(res) => {
                super::emit(&render::render(&res, args.format, false));
                code
            }
            Err(e) => {
                eprintln!("whyfail: {name}: {e}");
                FOUND_ERRORS
            }
        }
    }
}

/// What one diagnosis needs, shared by single and batch mode.
struct Run<'a> {
    lib: &'a Library,
    opts: Options<'a>,
    live: Option<&'a LiveProvider>,
    act: &'a [String],
    deadline: Duration,
}

impl Run<'_> {
    fn one(&self, json: &str) -> Result<Resolution, whyfail_engine::EventError> {
        self.with_provider(json, self.opts.provider)
    }

    /// Diagnoses with `provider` in place of the run's (a recording wrapper, for `--record`),
    /// then carries out the `--act` actions.
    fn with_provider(
        &self,
        json: &str,
        provider: Option<&dyn FactProvider>,
    ) -> Result<Resolution, whyfail_engine::EventError> {
        Event::parse(json).map(|e| self.event(&e, provider))
    }

    fn event(&self, event: &Event, provider: Option<&dyn FactProvider>) -> Resolution {
        let opts = Options {
            provider,
            ..self.opts
        };
        whyfail::act::diagnose_and_act(self.lib, event, &opts, self.live, self.act, self.deadline)
    }
}

fn batch(run: &Run<'_>, format: Format, reader: &mut dyn BufRead, max: u64) -> u8 {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    // Lines are read as bytes so one line that is not UTF-8 is that line's error, not the
    // end of the batch.
    let mut bytes = Vec::new();
    let mut n = 0usize;
    let sep = if format == Format::Json {
        "\n"
    } else {
        "\n---\n"
    };
    let mut code = OK;
    loop {
        let got = match read_line(reader, &mut bytes, max) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("whyfail: reading input: {e}");
                return USAGE;
            }
        };
        if got == Line::End {
            break;
        }
        n += 1;
        let result = match got {
            Line::Read => match std::str::from_utf8(&bytes) {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => run.one(l).map_err(|e| ("invalid_event", e.to_string())),
                Err(e) => Err((
                    "invalid_event",
                    format!("the line is not valid UTF-8 (byte {})", e.valid_up_to()),
                )),
            },
            Line::TooLong { len } => Err((
                "event_too_large",
                format!("the line is {len} bytes long, more than --max-event-size ({max} bytes)"),
            )),
            Line::Endless | Line::End => Err((
                "event_too_large",
                format!(
                    "no end of line within {} bytes (--max-event-size {max} times {MAX_SKIP_FACTOR}): the input is not JSON Lines; stopping",
                    max.saturating_mul(MAX_SKIP_FACTOR)
                ),
            )),
        };
        let rendered = match result {
            Ok(res) => render::render(&res, format, true),
            Err((code, message)) => {
                json!({"line": n, "error": {"code": code, "message": message}}).to_string()
            }
        };
        if out
            .write_all(rendered.as_bytes())
            .and_then(|_| out.write_all(sep.as_bytes()))
            .is_err()
        {
            return OK; // reader went away (broken pipe): stop quietly
        }
        if got == Line::Endless {
            eprintln!("whyfail: line {n}: no end of line in sight; the batch stops here");
            code = FOUND_ERRORS;
            break;
        }
    }
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: u64, chunk: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = io::BufReader::with_capacity(chunk, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, &mut buf, max).expect("read");
            if l == Line::End {
                return out;
            }
            let stop = l == Line::Endless;
            out.push((l, buf.clone()));
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn lines_at_and_over_the_limit() {
        for chunk in [1, 3, 64] {
            let got = lines(b"abcd\nabcde\n\nabcdefghij\nab", 5, chunk);
            assert_eq!(
                got,
                [
                    (Line::Read, b"abcd\n".to_vec()),
                    (Line::Read, b"abcde\n".to_vec()),
                    (Line::Read, b"\n".to_vec()),
                    (Line::TooLong { len: 10 }, Vec::new()),
                    (Line::Read, b"ab".to_vec()),
                ],
                "chunk {chunk}"
            );
            // An over-long last line without a newline.
            assert_eq!(
                lines(b"abcdefg", 5, chunk),
                [(Line::TooLong { len: 7 }, Vec::new())]
            );
        }
    }

    #[test]
    fn no_end_of_line_stops_after_the_skip_bound() {
        let zeros = vec![0u8; 5 * MAX_SKIP_FACTOR as usize + 100];
        let got = lines(&zeros, 5, 64);
        assert_eq!(got, [(Line::Endless, Vec::new())]);
    }
}
