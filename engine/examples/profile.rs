//! Diagnoses the benchmark events in a loop, for profilers (`valgrind --tool=callgrind`, perf).
//! Usage: `cargo run --release -p whyfail-engine --example profile -- [ROUNDS]`.

use std::path::{Path, PathBuf};

use whyfail_engine::{Event, Library, Options, diagnose, load};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut diags = Vec::new();
    let sources = load::read_sources(&repo.join("playbooks"), &mut diags);
    let t = std::time::Instant::now();
    let (lib, _) = Library::load(&[sources]);
    eprintln!(
        "library load: {:.1} ms ({} playbooks)",
        t.elapsed().as_secs_f64() * 1e3,
        lib.playbooks().len()
    );
    let mut events = Vec::new();
    let mut stack = vec![repo.join("tests/cases")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p: PathBuf = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_default())
                        .unwrap_or_default();
                events.push(v["event"].to_string());
            }
        }
    }
    let start = std::time::Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for e in &events {
            if let Ok(ev) = Event::parse(e) {
                let res = diagnose(&lib, &ev, &Options::default());
                n += serde_json::to_string(&res).map(|s| s.len()).unwrap_or(0);
            }
        }
    }
    let per = start.elapsed().as_secs_f64() / (rounds * events.len()) as f64;
    eprintln!(
        "{} events x {rounds}: {:.1} us/event, {:.0} events/s ({n} bytes)",
        events.len(),
        per * 1e6,
        1.0 / per
    );
}
