//! `whyfail diagnose [FILE|-]`: one event in, one resolution out; `--batch` for JSON Lines.
//!
//! In batch mode every input line gives exactly one output line, in order: a resolution, or
//! `{"line": N, "error": {...}}` for a line that is not a valid event, and the batch goes on.

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::path::PathBuf;

use serde_json::json;
use whyfail::render::{self, Format};
use whyfail_engine::{Audience, FactProvider, Library, Options, diagnose_json};
use whyfail_providers::FixtureProvider;

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
}

fn parse_audience(s: &str) -> Result<Audience, String> {
    s.parse()
}

fn read_input(input: &str) -> io::Result<Box<dyn BufRead>> {
    if input == "-" {
        Ok(Box::new(io::BufReader::new(io::stdin())))
    } else {
        Ok(Box::new(io::BufReader::new(std::fs::File::open(input)?)))
    }
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
    // Live network providers are not wired yet: without a fixture every run is offline.
    let provider: Option<&dyn FactProvider> = if args.offline {
        None
    } else {
        fixture.as_ref().map(|f| f as &dyn FactProvider)
    };
    let _ = &args.allow_host;
    let opts = Options {
        audience: args.audience,
        provider,
    };

    let mut reader = match read_input(&args.input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whyfail: cannot read `{}`: {e}", args.input);
            return USAGE;
        }
    };
    if args.batch {
        batch(&lib, &opts, args.format, reader.as_mut())
    } else {
        let mut text = String::new();
        if let Err(e) = reader.read_to_string(&mut text) {
            eprintln!("whyfail: cannot read `{}`: {e}", args.input);
            return USAGE;
        }
        match diagnose_json(&lib, &text, &opts) {
            Ok(res) => {
                super::emit(&render::render(&res, args.format, false));
                OK
            }
            Err(e) => {
                eprintln!(
                    "whyfail: {}: {e}",
                    if args.input == "-" {
                        "<stdin>"
                    } else {
                        &args.input
                    }
                );
                FOUND_ERRORS
            }
        }
    }
}

fn batch(lib: &Library, opts: &Options<'_>, format: Format, reader: &mut dyn BufRead) -> u8 {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    // Lines are read as bytes so one line that is not UTF-8 is that line's error, not the
    // end of the batch.
    let mut bytes = Vec::new();
    let mut n = 0usize;
    loop {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("whyfail: reading input: {e}");
                return USAGE;
            }
        }
        n += 1;
        let line = match std::str::from_utf8(&bytes) {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => Ok(l),
            Err(e) => Err(format!(
                "the line is not valid UTF-8 (byte {})",
                e.valid_up_to()
            )),
        };
        let result = line.and_then(|l| diagnose_json(lib, l, opts).map_err(|e| e.to_string()));
        let rendered = match result {
            Ok(res) => render::render(&res, format, true),
            Err(message) => {
                json!({"line": n, "error": {"code": "invalid_event", "message": message}})
                    .to_string()
            }
        };
        let sep = if format == Format::Json {
            "\n"
        } else {
            "\n---\n"
        };
        if out
            .write_all(rendered.as_bytes())
            .and_then(|_| out.write_all(sep.as_bytes()))
            .is_err()
        {
            return OK; // reader went away (broken pipe): stop quietly
        }
    }
    let _ = out.flush();
    OK
}
