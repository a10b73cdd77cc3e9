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
    /// Worker threads for `--batch` (default: every core); 1 diagnoses on the calling thread.
    /// Output stays in input order either way.
    #[arg(long, value_name = "N", requires = "batch", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    jobs: Option<usize>,
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

/// Batch input: buffered, and able to say whether its next line is already in memory.
pub(crate) trait Input: BufRead + Send {
    /// A whole line is buffered: reading it cannot wait on the source.
    fn line_ready(&self) -> bool;
}

impl<R: io::Read + Send> Input for io::BufReader<R> {
    fn line_ready(&self) -> bool {
        // Stops at the first end of line: the next line's length, not the buffer's.
        self.buffer().contains(&b'\n')
    }
}

/// The input, buffered, and its size when it is a regular file.
fn read_input(input: &str) -> io::Result<(Box<dyn Input>, Option<u64>)> {
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
    // Never dropped: the process ends with this command, and the OS takes its memory back at
    // once, where freeing the library's ~100,000 allocations one by one cost ~3 ms at exit.
    let lib = std::mem::ManuallyDrop::new(lib);
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
        let jobs = args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        batch(
            &run,
            args.format,
            reader.as_mut(),
            args.max_event_size,
            jobs,
        )
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

/// How many lines may be read ahead of the output per worker: enough to keep every core busy
/// while one slow event holds the head of the line, small enough that memory stays flat.
const WINDOW_PER_JOB: usize = 64;

/// Batches whose progress is worth showing: a progress line appears after this long.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// One batch line, read and classified by the reader.
enum Item {
    /// A line to diagnose.
    Event(Vec<u8>),
    /// A bad line: its error code and message.
    Bad(&'static str, String),
}

/// One output line, in input order (`n` is the 1-based input line number).
struct Out {
    n: usize,
    text: Vec<u8>,
    bad: bool,
    /// The input had no end of line in sight: the batch stops after this line.
    endless: bool,
}

/// What the reader found next.
enum Next {
    /// A line (and whether the input has no end of line in sight: the batch stops after it).
    Item(Item, bool),
    End,
    /// No whole line is in memory and the caller would rather not wait for one.
    NotReady,
}

/// Reads the next non-blank batch line. Unless `wait`, it returns `NotReady` rather than wait
/// on the source for a line that is not buffered yet.
fn next_item(
    reader: &mut dyn Input,
    bytes: &mut Vec<u8>,
    n: &mut usize,
    max: u64,
    wait: bool,
) -> io::Result<Next> {
    loop {
        if !wait && !reader.line_ready() {
            return Ok(Next::NotReady);
        }
        let got = read_line(reader, bytes, max)?;
        if got == Line::End {
            return Ok(Next::End);
        }
        *n += 1;
        let item = match got {
            Line::Read => match std::str::from_utf8(bytes) {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(_) => Item::Event(std::mem::take(bytes)),
                Err(e) => Item::Bad(
                    "invalid_event",
                    format!("the line is not valid UTF-8 (byte {})", e.valid_up_to()),
                ),
            },
            Line::TooLong { len } => Item::Bad(
                "event_too_large",
                format!("the line is {len} bytes long, more than --max-event-size ({max} bytes)"),
            ),
            Line::Endless | Line::End => Item::Bad(
                "event_too_large",
                format!(
                    "no end of line within {} bytes (--max-event-size {max} times {MAX_SKIP_FACTOR}): the input is not JSON Lines; stopping",
                    max.saturating_mul(MAX_SKIP_FACTOR)
                ),
            ),
        };
        return Ok(Next::Item(item, got == Line::Endless));
    }
}

/// Diagnoses (or reports) one line and renders it into `text` (an empty buffer, reused by the
/// one-thread batch so a resolution's JSON is serialised without growing a new string).
fn process(
    run: &Run<'_>,
    format: Format,
    n: usize,
    item: Item,
    endless: bool,
    mut text: Vec<u8>,
) -> Out {
    let result = match item {
        // The reader checked that the line is UTF-8.
        Item::Event(bytes) => match std::str::from_utf8(&bytes) {
            Ok(l) => run.one(l).map_err(|e| ("invalid_event", e.to_string())),
            Err(_) => Err(("invalid_event", "the line is not valid UTF-8".to_string())),
        },
        Item::Bad(code, message) => Err((code, message)),
    };
    let bad = result.is_err();
    match result {
        // Exactly `render::render(&res, Format::Json, true)`, written in place.
        Ok(res) if format == Format::Json => render::write_json(&mut text, &res),
        Ok(res) => text.extend_from_slice(render::render(&res, format, true).as_bytes()),
        Err((code, message)) => text.extend_from_slice(
            json!({"line": n, "error": {"code": code, "message": message}})
                .to_string()
                .as_bytes(),
        ),
    }
    Out {
        n,
        text,
        bad,
        endless,
    }
}

/// Writes output lines and, when stderr is a terminal and the batch is long, keeps a progress
/// line there (events, rate, bad lines).
struct Writer<W: Write> {
    out: W,
    sep: &'static str,
    done: usize,
    bad: usize,
    start: std::time::Instant,
    next_progress: std::time::Instant,
    progress: bool,
    shown: bool,
}

impl<W: Write> Writer<W> {
    fn new(out: W, sep: &'static str) -> Self {
        let start = std::time::Instant::now();
        Writer {
            out,
            sep,
            done: 0,
            bad: 0,
            start,
            next_progress: start + PROGRESS_AFTER,
            progress: std::io::IsTerminal::is_terminal(&io::stderr()),
            shown: false,
        }
    }

    /// Writes one line; `Err` when the reader went away, or the input was endless.
    fn write(&mut self, o: &Out) -> Result<(), u8> {
        if self
            .out
            .write_all(&o.text)
            .and_then(|_| self.out.write_all(self.sep.as_bytes()))
            .is_err()
        {
            return Err(OK); // reader went away (broken pipe): stop quietly
        }
        self.done += 1;
        self.bad += usize::from(o.bad);
        if o.endless {
            self.finish();
            eprintln!(
                "whyfail: line {}: no end of line in sight; the batch stops here",
                o.n
            );
            return Err(FOUND_ERRORS);
        }
        if self.progress && self.done.is_multiple_of(256) {
            let now = std::time::Instant::now();
            if now >= self.next_progress {
                self.next_progress = now + Duration::from_millis(500);
                self.show(now);
            }
        }
        Ok(())
    }

    fn show(&mut self, now: std::time::Instant) {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        eprint!(
            "\rwhyfail: {} events, {:.0} events/s, {} bad lines ",
            self.done,
            self.done as f64 / secs,
            self.bad
        );
        self.shown = true;
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
        if self.shown {
            self.show(std::time::Instant::now());
            eprintln!();
            self.shown = false;
        }
    }
}

fn batch(run: &Run<'_>, format: Format, reader: &mut dyn Input, max: u64, jobs: usize) -> u8 {
    let stdout = io::stdout();
    let sep = if format == Format::Json {
        "\n"
    } else {
        "\n---\n"
    };
    let mut w = Writer::new(BufWriter::with_capacity(1 << 16, stdout.lock()), sep);
    // Lines are read as bytes so one line that is not UTF-8 is that line's error, not the
    // end of the batch.
    let mut bytes = Vec::new();
    let mut n = 0usize;
    let mut text = Vec::new();
    let code = if jobs <= 1 {
        loop {
            match next_item(reader, &mut bytes, &mut n, max, true) {
                Ok(Next::Item(item, endless)) => {
                    let out = process(run, format, n, item, endless, std::mem::take(&mut text));
                    if let Err(code) = w.write(&out) {
                        break code;
                    }
                    // A caller feeding events one at a time gets each answer at once.
                    if !reader.line_ready() {
                        w.flush();
                    }
                    text = out.text;
                    text.clear();
                }
                Ok(Next::End | Next::NotReady) => break OK,
                Err(e) => {
                    eprintln!("whyfail: reading input: {e}");
                    break USAGE;
                }
            }
        }
    } else {
        parallel(run, format, reader, max, jobs, &mut w)
    };
    w.finish();
    code
}

/// Lines handed to a worker in one message, at most: one channel send and one wake-up per
/// chunk instead of per line (with a message per line, futex calls were a fifth of the CPU of
/// a two-worker batch). A chunk is sent early when its next line is not in memory yet, so
/// lines streamed one at a time are answered one at a time.
const CHUNK: usize = 16;

/// A chunk of lines: `(line number, line, endless)` each.
type Chunk = Vec<(usize, Item, bool)>;

/// The batch on `jobs` worker threads: a reader thread reads and hands out chunks of lines;
/// this thread puts the results back in input order and writes them. At most
/// `jobs * WINDOW_PER_JOB` lines are between the reader and the output at any time, so memory
/// stays flat whatever the input's length.
fn parallel<W: Write>(
    run: &Run<'_>,
    format: Format,
    reader: &mut dyn Input,
    max: u64,
    jobs: usize,
    w: &mut Writer<W>,
) -> u8 {
    use std::collections::VecDeque;
    use std::sync::mpsc::{channel, sync_channel};
    use std::sync::{Arc, Mutex};

    let window = (jobs * WINDOW_PER_JOB).div_ceil(CHUNK);
    // A slot is taken per chunk read and given back per chunk written.
    let (slot_back, slots) = sync_channel::<()>(window);
    for _ in 0..window {
        let _ = slot_back.send(());
    }
    let (work_tx, work_rx) = sync_channel::<(usize, Chunk)>(jobs);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = channel::<(usize, Vec<Out>)>();
    // Chunks handed out so far: when every one is written, the output is flushed.
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let sent = &sent;
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            s.spawn(move || {
                loop {
                    let next = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, chunk))) = next else {
                        break;
                    };
                    let outs = chunk
                        .into_iter()
                        .map(|(n, item, endless)| {
                            process(run, format, n, item, endless, Vec::with_capacity(8 << 10))
                        })
                        .collect();
                    if done_tx.send((seq, outs)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(work_rx);
        let read = s.spawn(move || {
            let mut bytes = Vec::new();
            let mut n = 0usize;
            let mut seq = 0usize;
            loop {
                // No slot comes back once the output stopped (broken pipe, endless input).
                if slots.recv().is_err() {
                    return OK;
                }
                // Chunks grow (1, 2, 3, ... lines) to their full size: a short batch is
                // still spread over every worker.
                let size = CHUNK.min(seq + 1);
                let mut chunk = Vec::with_capacity(size);
                let mut stop = None;
                while chunk.len() < size {
                    // The first line of a chunk is waited for; later ones only if buffered.
                    match next_item(reader, &mut bytes, &mut n, max, chunk.is_empty()) {
                        Ok(Next::Item(item, endless)) => {
                            chunk.push((n, item, endless));
                            if endless {
                                stop = Some(OK);
                                break;
                            }
                        }
                        Ok(Next::NotReady) => break,
                        Ok(Next::End) => {
                            stop = Some(OK);
                            break;
                        }
                        Err(e) => {
                            eprintln!("whyfail: reading input: {e}");
                            stop = Some(USAGE);
                            break;
                        }
                    }
                }
                if !chunk.is_empty() {
                    seq += 1;
                    sent.store(seq, std::sync::atomic::Ordering::Release);
                    if work_tx.send((seq - 1, chunk)).is_err() {
                        return OK;
                    }
                }
                if let Some(code) = stop {
                    return code;
                }
            }
        });
        let mut pending: VecDeque<Option<Vec<Out>>> = VecDeque::new();
        let mut next = 0usize;
        let mut wrote = Ok(());
        'out: for (seq, outs) in &done_rx {
            let at = seq - next;
            if pending.len() <= at {
                pending.resize_with(at + 1, || None);
            }
            pending[at] = Some(outs);
            while let Some(Some(_)) = pending.front() {
                let Some(Some(outs)) = pending.pop_front() else {
                    break;
                };
                next += 1;
                for out in &outs {
                    wrote = w.write(out);
                    if wrote.is_err() {
                        break 'out;
                    }
                }
                let _ = slot_back.send(());
            }
            // Nothing else in flight: a caller feeding events one at a time gets each answer
            // at once.
            if next == sent.load(std::sync::atomic::Ordering::Acquire) {
                w.flush();
            }
        }
        // Stops the reader and the workers if the output ended early.
        drop(slot_back);
        drop(done_rx);
        let read = read.join().unwrap_or(USAGE);
        wrote.err().unwrap_or(read)
    })
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
