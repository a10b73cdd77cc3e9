//! Criterion benchmarks: loading the whole standard library, and diagnosing events with it
//! (parse + walk + serialise, the per-event cost of `diagnose --batch`), and each stage on its
//! own: `load_library` (with the built-in patterns analysed ahead of time, as the binary loads;
//! `load_library_unprepared` without), `diagnose/parse_only`, `diagnose/walk_only`, `diagnose/render_json`
//! (compact JSON, as `diagnose --batch` writes it).
//!
//! Run: `cargo bench -p whyfail-engine --bench diagnose`. Events are the cases under
//! `tests/cases/` and `examples/events/`, so the mix follows the library's own coverage.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use whyfail_engine::{Event, Library, Options, Source, diagnose, load};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sources() -> Vec<Source> {
    let mut diags = Vec::new();
    let s = load::read_sources(&repo().join("playbooks"), &mut diags);
    assert!(diags.is_empty(), "{diags:?}");
    s
}

fn events() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "json") {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).expect("read"))
                        .expect("json");
                out.push(if v.get("event").is_some() {
                    v["event"].to_string()
                } else {
                    v.to_string()
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("tests/cases"), &mut out);
    walk(&repo().join("examples/events"), &mut out);
    out
}

fn bench(c: &mut Criterion) {
    let srcs = sources();
    // As the binary loads it: with the patterns' analysis written ahead of time, and without.
    let prepared = whyfail_engine::signals::Prepared::from_json(
        &std::fs::read_to_string(repo().join("playbooks/signals.analysis.json"))
            .unwrap_or_default(),
    );
    c.bench_function("load_library", |b| {
        b.iter(|| {
            black_box(Library::load_prepared(
                black_box(std::slice::from_ref(&srcs)),
                &prepared,
            ))
        })
    });
    c.bench_function("load_library_unprepared", |b| {
        b.iter(|| black_box(Library::load(black_box(std::slice::from_ref(&srcs)))))
    });

    let (lib, _) = Library::load(&[srcs]);
    let events = events();
    let opts = Options::default();
    let mut g = c.benchmark_group("diagnose");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("parse_walk_serialise", |b| {
        b.iter(|| {
            for e in &events {
                let ev = Event::parse(e).expect("event");
                let res = diagnose(&lib, &ev, &opts);
                black_box(serde_json::to_string(&res).expect("json"));
            }
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| {
            for e in &events {
                black_box(Event::parse(black_box(e)).expect("event"));
            }
        })
    });
    let parsed: Vec<Event> = events
        .iter()
        .map(|e| Event::parse(e).expect("event"))
        .collect();
    let resolutions: Vec<_> = parsed.iter().map(|ev| diagnose(&lib, ev, &opts)).collect();
    g.bench_function("render_json", |b| {
        b.iter(|| {
            for res in &resolutions {
                black_box(serde_json::to_string(black_box(res)).expect("json"));
            }
        })
    });
    g.bench_function("walk_only", |b| {
        b.iter(|| {
            for ev in &parsed {
                black_box(diagnose(&lib, ev, &opts));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
