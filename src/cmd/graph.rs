//! `whyfail graph FILE [--format mermaid|dot|svg] [--event EVENT.json]`: a playbook's decision
//! graph, for reviewing a playbook as a picture and for seeing the path one event takes.
//!
//! symptom → steps → causes → checks → actions, shapes by kind (symptom stadium, step diamond,
//! check hexagon, cause box, action rounded) and edges labelled with what they mean (`pass`,
//! `fail`, `unknown`; `require`, `support`; `fix`). With `--event` the event is diagnosed
//! (offline, or with `--facts`) and visited nodes are coloured by outcome. The drawing and its
//! emitters are in the library (`whyfail::graph`), shared with the service.

use std::path::{Path, PathBuf};

use whyfail::graph::{Drawing, dot, mermaid, svg};
use whyfail_engine::{Event, FactProvider, Library, Options, Severity, diagnose, load};
use whyfail_providers::FixtureProvider;

use super::{FOUND_ERRORS, OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Playbook file, or the id of a built-in playbook (e.g. `oauth_refresh_failed`).
    playbook: String,
    /// Output format; `svg` needs Graphviz's `dot` on the PATH.
    #[arg(long, value_enum, default_value = "mermaid")]
    format: GFormat,
    /// Diagnose this event (offline) and highlight the nodes it visits, by outcome.
    #[arg(long, value_name = "FILE")]
    event: Option<PathBuf>,
    /// Serve live facts from a JSON file (`{"fact.name": value}`) for the `--event` run.
    #[arg(long, value_name = "FILE", requires = "event")]
    facts: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GFormat {
    Mermaid,
    Dot,
    Svg,
}

/// Loads the library with FILE layered over the built-in one, and finds FILE's playbook (or a
/// built-in playbook by id).
fn load(arg: &str) -> Result<(Library, String), (u8, String)> {
    let path = Path::new(arg);
    if path.exists() {
        let mut diags = Vec::new();
        let layer = load::read_sources(path, &mut diags);
        let names: Vec<String> = layer.iter().map(|s| s.name.clone()).collect();
        let (lib, more) = Library::load(&[whyfail::stdlib_sources(), layer]);
        diags.extend(more);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        if !errors.is_empty() {
            return Err((FOUND_ERRORS, errors.join("\n")));
        }
        let id = lib
            .playbooks()
            .iter()
            .find(|p| names.contains(&p.file))
            .map(|p| p.id.clone())
            .ok_or((
                FOUND_ERRORS,
                format!("`{arg}` holds no playbook (only shared actions or signals?)"),
            ))?;
        Ok((lib, id))
    } else {
        let (lib, _) = Library::load(&[whyfail::stdlib_sources()]);
        if lib.playbook(arg).is_some() {
            return Ok((lib, arg.to_string()));
        }
        let ids: Vec<&str> = lib.playbooks().iter().map(|p| p.id.as_str()).collect();
        Err((
            USAGE,
            format!(
                "`{arg}` is neither a file nor a built-in playbook id (built-in: {})",
                ids.join(", ")
            ),
        ))
    }
}

fn read_json(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

pub fn run(args: Args) -> u8 {
    let (lib, id) = match load(&args.playbook) {
        Ok(x) => x,
        Err((code, msg)) => {
            eprintln!("whyfail: {msg}");
            return code;
        }
    };
    let Some(pb) = lib.playbook(&id) else {
        return USAGE;
    };
    let mut drawing = Drawing::of(pb);
    if let Some(event_path) = &args.event {
        let fixture = match &args.facts {
            Some(f) => match read_json(f).and_then(|t| {
                serde_json::from_str::<serde_json::Value>(&t)
                    .map_err(|e| format!("`{}`: {e}", f.display()))
                    .and_then(|v| FixtureProvider::from_json(&v))
            }) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("whyfail: cannot use facts file: {e}");
                    return USAGE;
                }
            },
            None => None,
        };
        let text = match read_json(event_path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("whyfail: {e}");
                return USAGE;
            }
        };
        let event = match Event::parse(&text) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("whyfail: {}: {e}", event_path.display());
                return FOUND_ERRORS;
            }
        };
        let opts = Options {
            provider: fixture.as_ref().map(|f| f as &dyn FactProvider),
            ..Options::default()
        };
        let res = diagnose(&lib, &event, &opts);
        if res.symptom.as_ref().is_none_or(|s| s.id != pb.id) {
            eprintln!(
                "whyfail: note: the event is answered by {}, not `{}`: nothing is highlighted",
                res.symptom
                    .as_ref()
                    .map_or("no playbook".to_string(), |s| format!("`{}`", s.id)),
                pb.id
            );
        }
        drawing.highlight(pb, &res);
    }
    let text = match args.format {
        GFormat::Mermaid => mermaid(&drawing),
        GFormat::Dot => dot(&drawing, &pb.id),
        GFormat::Svg => match svg(&dot(&drawing, &pb.id)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("whyfail: {e}");
                return USAGE;
            }
        },
    };
    super::emit(text.trim_end());
    OK
}
