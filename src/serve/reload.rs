//! Hot reload: the playbook set is rebuilt in full (`whyfail::load_library`, exactly what the
//! CLI loads) when a `--playbooks` directory changes (debounced) or on SIGHUP.
//!
//! A set with any error-severity diagnostic is refused: the last good set keeps serving, and
//! the diagnostics are logged and kept for `GET /v1/status` in the shape of
//! `whyfail check --format json`. A good set is swapped in atomically; requests hold an `Arc`
//! to the set they started with, so in-flight diagnoses finish on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use whyfail_engine::{Diagnostic, Library, Severity};

use super::ServerState;

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Startup,
    Watch,
    Sighup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Watch => "watch",
            Trigger::Sighup => "sighup",
        }
    }
}

/// One playbook of the serving set, as `GET /v1/playbooks` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PlaybookInfo {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub file: String,
    pub priority: i64,
    /// From the built-in library (else from a `--playbooks` directory).
    pub builtin: bool,
    /// `sha256:` and 16 hex digits of the playbook file's text (the compiled library keeps no
    /// per-playbook hash, so this is computed from the sources at load time).
    pub hash: Option<String>,
}

/// A playbook set that passed validation and is (or was) serving.
pub struct Loaded {
    pub lib: Library,
    pub loaded_at: jiff::Timestamp,
    pub playbooks: Vec<PlaybookInfo>,
    /// Warnings of the set (errors would have kept it out).
    pub warnings: Vec<Diagnostic>,
}

/// The result of one reload attempt, for `GET /v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub at: String,
    pub trigger: Trigger,
    /// `ok` (swapped in), `unchanged` (same sources as serving) or `failed` (kept the last good set).
    pub result: &'static str,
    /// The rest is `whyfail check --format json` for the attempted set.
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
    pub playbooks: Vec<Value>,
    pub playbook_set: String,
}

/// Reload history.
#[derive(Debug, Default)]
pub struct Log {
    pub last: Option<Report>,
    pub last_failed: Option<Report>,
    pub ok: u64,
    pub failed: u64,
}

fn short_hash(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether `file` (as the loader names it) came from one of the `--playbooks` paths.
fn from_extra(file: &str, extra: &[PathBuf]) -> bool {
    let f = Path::new(file);
    extra
        .iter()
        .any(|p| f == p.as_path() || f.parent() == Some(p.as_path()))
}

fn infos(lib: &Library, extra: &[PathBuf]) -> Vec<PlaybookInfo> {
    let builtin = crate::stdlib_sources();
    lib.playbooks()
        .iter()
        .map(|pb| {
            let is_extra = from_extra(&pb.file, extra);
            let hash = if is_extra {
                // Read again right after the load: if the file changed in between, the watcher
                // has another reload queued that will correct this.
                std::fs::read_to_string(&pb.file)
                    .ok()
                    .map(|t| short_hash(&t))
            } else {
                builtin
                    .iter()
                    .find(|s| s.name == pb.file)
                    .map(|s| short_hash(&s.text))
            };
            PlaybookInfo {
                id: pb.id.clone(),
                title: pb.title.clone(),
                description: pb.description.clone(),
                file: pb.file.clone(),
                priority: pb.priority,
                builtin: !is_extra,
                hash,
            }
        })
        .collect()
}

/// Loads the set from scratch (blocking: reads files and compiles scripts).
fn load(extra: &[PathBuf]) -> (Library, Vec<Diagnostic>, Vec<PlaybookInfo>) {
    let (lib, diags) = crate::load_library(extra, true);
    let infos = infos(&lib, extra);
    (lib, diags, infos)
}

/// Reloads the set and swaps it in when it is valid. Reloads never overlap.
pub(crate) async fn reload(state: &Arc<ServerState>, trigger: Trigger) {
    let _one_at_a_time = state.reload_lock.lock().await;
    let extra = state.playbook_dirs.clone();
    let (lib, diags, infos) = match tokio::task::spawn_blocking(move || load(&extra)).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(target: "whyfail::reload", trigger = trigger.as_str(), error = %e, "reload crashed; keeping the current set");
            return;
        }
    };
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let current = state.current();
    let result = if errors > 0 {
        "failed"
    } else if current.as_ref().is_some_and(|c| c.lib.hash() == lib.hash()) {
        "unchanged"
    } else {
        "ok"
    };
    let report = Report {
        at: jiff::Timestamp::now().to_string(),
        trigger,
        result,
        ok: errors == 0,
        errors,
        warnings: diags.len() - errors,
        diagnostics: diags.clone(),
        playbooks: lib
            .playbooks()
            .iter()
            .map(|p| json!({"id": p.id, "title": p.title, "file": p.file, "priority": p.priority}))
            .collect(),
        playbook_set: lib.hash().to_string(),
    };
    state.metrics.reload(errors == 0);
    if errors > 0 {
        for d in &diags {
            tracing::warn!(
                target: "whyfail::reload",
                severity = ?d.severity,
                code = d.code,
                file = %d.file,
                line = d.line,
                column = d.column,
                yaml_path = %d.yaml_path,
                message = %d.message,
                "playbook diagnostic"
            );
        }
        match &current {
            Some(c) => tracing::error!(
                target: "whyfail::reload",
                trigger = trigger.as_str(),
                errors,
                rejected_set = %lib.hash(),
                serving_set = %c.lib.hash(),
                "the new playbook set has errors; the last good set keeps serving"
            ),
            None => tracing::error!(
                target: "whyfail::reload",
                trigger = trigger.as_str(),
                errors,
                "the playbook set has errors; not ready until they are fixed (save again or send SIGHUP)"
            ),
        }
    } else {
        for d in &diags {
            tracing::warn!(target: "whyfail::reload", code = d.code, file = %d.file, line = d.line, message = %d.message, "playbook warning");
        }
        if result == "ok" {
            tracing::info!(
                target: "whyfail::reload",
                trigger = trigger.as_str(),
                playbook_set = %lib.hash(),
                playbooks = lib.playbooks().len(),
                "playbook set loaded"
            );
            state.swap(Arc::new(Loaded {
                lib,
                loaded_at: jiff::Timestamp::now(),
                playbooks: infos,
                warnings: diags,
            }));
        }
    }
    let mut log = state.lock_log();
    if errors > 0 {
        log.failed += 1;
        log.last_failed = Some(report.clone());
    } else {
        log.ok += 1;
    }
    log.last = Some(report);
}

/// The running file watcher; dropping it stops watching.
pub(crate) type Watcher = Debouncer<RecommendedWatcher, RecommendedCache>;

/// Watches every `--playbooks` path (a file's directory, since editors save by rename) and
/// sends a signal per debounced batch of changes. The channel holds one pending signal: a
/// burst of saves while a reload runs coalesces into one more reload, which reads the newest
/// files anyway.
pub(crate) fn watch(
    paths: &[PathBuf],
    debounce: Duration,
    tx: mpsc::Sender<()>,
) -> Result<Watcher, String> {
    let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            if events
                .iter()
                .any(|e| !matches!(e.kind, EventKind::Access(_)))
            {
                let _ = tx.try_send(());
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(target: "whyfail::reload", error = %e, "file watcher error");
            }
        }
    })
    .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    for p in paths {
        let dir = if p.is_dir() {
            p.clone()
        } else {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))?;
    }
    Ok(debouncer)
}

/// The SIGHUP listener, installed at start-up so a signal sent right after the start-up line
/// reloads instead of killing the process (SIGHUP's default action).
#[cfg(unix)]
pub(crate) type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
pub(crate) type Hangup = ();

#[cfg(unix)]
pub(crate) fn hangup() -> Option<Hangup> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(target: "whyfail::reload", error = %e, "cannot listen for SIGHUP");
            None
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn hangup() -> Option<Hangup> {
    None
}

/// Runs reloads on watcher signals and SIGHUP until the channel closes.
#[allow(unused_mut)]
pub(crate) async fn reloader(
    state: Arc<ServerState>,
    mut rx: mpsc::Receiver<()>,
    mut hup: Option<Hangup>,
) {
    loop {
        #[cfg(unix)]
        let trigger = tokio::select! {
            got = rx.recv() => match got { Some(()) => Trigger::Watch, None => return },
            Some(()) = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => Trigger::Sighup,
        };
        #[cfg(not(unix))]
        let trigger = match rx.recv().await {
            Some(()) => Trigger::Watch,
            None => return,
        };
        if matches!(trigger, Trigger::Sighup) {
            state.reread_token();
        }
        reload(&state, trigger).await;
    }
}
