//! Author-facing diagnostics: every file under `tests/playbooks/broken/` declares the
//! diagnostics it must produce (`# expect: CODE LINE:COL PATH`, `# hint: ...`); loading it on top
//! of the built-in library must give exactly those, and the built-in library must still load.

use std::path::{Path, PathBuf};

use whyfail_engine::{Library, Source, load};

fn broken_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/playbooks/broken")
}

/// The broken playbooks, sorted by path.
fn broken_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(broken_dir())
        .expect("broken dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| load::is_playbook_file(p))
        .collect();
    files.sort();
    files
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Expect {
    code: String,
    line: u64,
    column: u64,
    path: String,
}

fn expectations(text: &str) -> (Vec<Expect>, Vec<String>) {
    let mut exp = Vec::new();
    let mut hints = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# expect:") {
            let mut parts = rest.split_whitespace();
            let code = parts.next().unwrap_or_default().to_string();
            let (l, c) = parts
                .next()
                .and_then(|p| p.split_once(':'))
                .unwrap_or(("0", "0"));
            let path = parts.next().unwrap_or("").to_string();
            exp.push(Expect {
                code,
                line: l.parse().unwrap_or(0),
                column: c.parse().unwrap_or(0),
                path,
            });
        } else if let Some(h) = line.strip_prefix("# hint:") {
            hints.push(h.trim().to_string());
        }
    }
    exp.sort();
    (exp, hints)
}

#[test]
fn each_broken_playbook_reports_exactly_its_mistakes() {
    let files = broken_files();
    assert!(
        files.len() >= 10,
        "expected at least ten kinds of mistakes, found {}",
        files.len()
    );
    let stdlib = whyfail::stdlib_sources();
    let builtin: Vec<String> = Library::load(std::slice::from_ref(&stdlib))
        .0
        .playbooks()
        .iter()
        .map(|p| p.id.clone())
        .collect();
    let mut failures = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).expect("read");
        let (expected, hints) = expectations(&text);
        assert!(!expected.is_empty(), "{name} declares no `# expect:` line");
        let (lib, diags) = Library::load(&[stdlib.clone(), vec![Source::new(name.clone(), text)]]);
        let mut got: Vec<Expect> = diags
            .iter()
            .filter(|d| d.file == name)
            .map(|d| Expect {
                code: d.code.to_string(),
                line: d.line.unwrap_or(0),
                column: d.column.unwrap_or(0),
                path: d.yaml_path.clone(),
            })
            .collect();
        got.sort();
        let others: Vec<String> = diags
            .iter()
            .filter(|d| d.file != name)
            .map(|d| d.to_string())
            .collect();
        if got != expected || !others.is_empty() {
            let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  got:\n    {}",
                shown.join("\n    ")
            ));
            continue;
        }
        for h in &hints {
            if !diags
                .iter()
                .any(|d| d.hint.as_deref().is_some_and(|dh| dh.contains(h.as_str())))
            {
                failures.push(format!("{name}: no hint contains `{h}`"));
            }
        }
        // A broken playbook never takes the others down.
        for id in &builtin {
            assert!(
                lib.playbook(id).is_some(),
                "{name}: built-in playbook `{id}` must still load"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn diagnostics_render_with_position_code_and_hint() {
    let path = broken_dir().join("dangling.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let (_, diags) = Library::load(&[
        whyfail::stdlib_sources(),
        vec![Source::new("dangling.yaml", text)],
    ]);
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "dangling.yaml:9:15: error[dangling_reference]: `scope_mising` is not a step or cause of this playbook (at `steps[0].on_fail[0]`)\n  hint: did you mean `scope_missing`?"
                .to_string()
        ]
    );
}

/// Snapshots of what `whyfail check` prints for each broken playbook (the header line, the
/// quoted line with the offending token underlined, the hint), in `NAME.check.txt` beside it.
/// After an intended change: `WHYFAIL_BLESS=1 cargo test --test diagnostics`.
#[test]
fn check_messages_match_their_snapshots() {
    let bless = std::env::var_os("WHYFAIL_BLESS").is_some();
    let files = broken_files();
    let mut stale = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .expect("under the crate")
            .to_string_lossy()
            .into_owned();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_whyfail"))
            .args(["check", &rel])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run whyfail check");
        assert_eq!(out.status.code(), Some(1), "{rel} must fail check");
        let got = format!(
            "{}{}\n",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
        let snap = f.with_extension("check.txt");
        if bless {
            std::fs::write(&snap, &got).expect("write snapshot");
            continue;
        }
        let want = std::fs::read_to_string(&snap).unwrap_or_default();
        if want != got {
            stale.push(format!("--- {}\n{want}+++ got\n{got}", snap.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "check messages differ from their snapshots (bless with WHYFAIL_BLESS=1):\n{}",
        stale.join("\n")
    );
}

/// Files are parsed and playbooks compiled on every core; what a load reports must not depend
/// on which thread finished first. Every broken file loaded at once gives the same diagnostics
/// in the same order on every load, and each file's own diagnostics come in the order that
/// file gives them when loaded alone.
#[test]
fn a_load_of_many_broken_files_reports_in_one_order() {
    let files = broken_files();
    let sources: Vec<Source> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            Source::new(f.display().to_string(), text)
        })
        .collect();
    let stdlib = whyfail::stdlib_sources();
    let shown = |layer: Vec<Source>| -> Vec<String> {
        Library::load(&[stdlib.clone(), layer])
            .1
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    let together = shown(sources.clone());
    assert!(together.len() >= files.len(), "{together:#?}");
    for _ in 0..20 {
        assert_eq!(shown(sources.clone()), together);
    }
    for src in &sources {
        let alone = shown(vec![src.clone()]);
        let own: Vec<String> = together
            .iter()
            .filter(|d| d.starts_with(&format!("{}:", src.name)))
            .cloned()
            .collect();
        assert_eq!(own, alone, "{}", src.name);
    }
}
