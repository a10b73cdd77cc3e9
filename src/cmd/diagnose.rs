//! `whyfail diagnose [FILE|-]`: one event in, one resolution out; `--batch` for JSON Lines.
//!
//! In batch mode every input line gives exactly one output line, in order: a resolution, or
//! `{"line": N, "error": {...}}` for a line that is not a valid event, and the batch goes on.
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

    let mut reader = match read_input(&args.input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("whyfail: cannot read `{}`: {e}", args.input);
            return USAGE;
        }
    };
    if args.batch {
        batch(&run, args.format, reader.as_mut())
    } else {
        let mut text = String::new();
        if let Err(e) = reader.read_to_string(&mut text) {
            eprintln!("whyfail: cannot read `{}`: {e}", args.input);
            return USAGE;
        }
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
            None => (run.one(&text), None),
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
        let event = Event::parse(json)?;
        let opts = Options {
            provider,
            ..self.opts
        };
        Ok(whyfail::act::diagnose_and_act(
            self.lib,
            &event,
            &opts,
            self.live,
            self.act,
            self.deadline,
        ))
    }
}

fn batch(run: &Run<'_>, format: Format, reader: &mut dyn BufRead) -> u8 {
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
        let result = line.and_then(|l| run.one(l).map_err(|e| e.to_string()));
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
