//! `whyfail new NAME [--dir DIR]`: scaffolds `DIR/NAME.yaml` and `DIR/NAME.test.yaml`.
//!
//! The scaffold is a small but real playbook (a 401 from a service that uses API keys: the key
//! expired, or the service no longer accepts it) with a positive test and near misses, so that
//! `whyfail check DIR` and `whyfail test DIR` pass before the author has changed anything. An
//! author then edits a working example instead of starting from an empty page.

use std::path::{Path, PathBuf};

use super::{FOUND_ERRORS, OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Playbook id, snake_case (e.g. `trello_token_invalid`); also the file name.
    name: String,
    /// Folder to write into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// Same rule as the engine's ids: lower-case letters, digits and `_`, starting with a letter.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

fn title_of(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Where the editor finds the JSON Schema: the repository's `schemas/` next to the folder, or
/// a copy written beside the playbook.
fn schema_ref(dir: &Path) -> (String, Option<PathBuf>) {
    if dir.join("../schemas/playbook.schema.json").is_file() {
        return ("../schemas/playbook.schema.json".to_string(), None);
    }
    let local = dir.join("playbook.schema.json");
    let write = (!local.exists()).then_some(local);
    ("playbook.schema.json".to_string(), write)
}

pub fn run(args: Args) -> u8 {
    let name = args.name.trim();
    if !valid_name(name) {
        eprintln!(
            "whyfail: `{name}` is not a valid playbook name\n  hint: use snake_case: lower-case letters, digits and `_`, starting with a letter (e.g. `trello_token_invalid`)"
        );
        return USAGE;
    }
    let dir = &args.dir;
    let playbook = dir.join(format!("{name}.yaml"));
    let tests = dir.join(format!("{name}.test.yaml"));
    for p in [&playbook, &tests] {
        if p.exists() {
            eprintln!(
                "whyfail: `{}` already exists; not overwriting it\n  hint: pick another name, or delete the file first",
                p.display()
            );
            return FOUND_ERRORS;
        }
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("whyfail: cannot create `{}`: {e}", dir.display());
        return USAGE;
    }
    let (schema, write_schema) = schema_ref(dir);
    let shown_dir = dir.display().to_string();
    let fill = |t: &str| {
        t.replace("{NAME}", name)
            .replace("{TITLE}", &title_of(name))
            .replace("{DIR}", &shown_dir)
            .replace("{SCHEMA}", &schema)
    };
    let files = [(&playbook, fill(PLAYBOOK)), (&tests, fill(TESTS))];
    for (path, text) in &files {
        // `create_new`: never clobber a file that appeared since the check above.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        if let Err(e) = written {
            eprintln!("whyfail: cannot write `{}`: {e}", path.display());
            return USAGE;
        }
    }
    if let Some(path) = write_schema
        && let Some(schema) = whyfail_engine::schema::schema_json("playbook")
    {
        // Only for editor completion; a failure here is not worth failing the command.
        let _ = std::fs::write(&path, schema);
    }
    let builtin = whyfail::stdlib_sources()
        .iter()
        .any(|s| s.text.lines().any(|l| l.trim() == format!("id: {name}")));
    if builtin {
        eprintln!(
            "whyfail: note: `{name}` is the id of a built-in playbook; loaded with `--playbooks {shown_dir}`, yours replaces it"
        );
    }
    super::emit(&format!(
        "created {}\ncreated {}\nnext:\n  edit both files (every TODO), then\n  whyfail check {shown_dir}\n  whyfail test {shown_dir}\n  whyfail diagnose --playbooks {shown_dir} event.json",
        playbook.display(),
        tests.display()
    ));
    OK
}

const PLAYBOOK: &str = r#"# yaml-language-server: $schema={SCHEMA}
#
# {NAME}: one symptom, the causes that can explain it, the checks that tell them apart and
# the actions that fix them. Made by `whyfail new`: edit every TODO, then
#   whyfail check {DIR}     validates it (file:line:col and a hint for every mistake)
#   whyfail test {DIR}      runs {NAME}.test.yaml
# The format field by field, the script helpers and a checklist: docs/authoring.md.
id: {NAME}
title: {TITLE}
description: |
  TODO: which service, which errors, and what this playbook tells apart. As scaffolded, it
  diagnoses a 401 from a service that authenticates with an API key or token: either the key
  expired, or the service no longer accepts it (revoked or regenerated).
# Playbooks are tried from the highest priority down; the standard library uses 0 to 100.
# A playbook for one service goes above the general ones, so it gets the first word.
priority: 100

# Families of wordings (case-insensitive regular expressions), not one example string: every
# client and service words the same failure differently. Signal names are shared by the whole
# library, so these start with the playbook id.
signals:
  {NAME}_key_expired:
    - '(api[ _-]?)?(key|token) (has )?expired'
    - 'expired (api[ _-]?)?(key|token)'
  {NAME}_key_invalid:
    - 'invalid (api[ _-]?)?(key|token)'
    - '(api[ _-]?)?(key|token) (is )?(invalid|not valid|revoked|unknown)'

# When this playbook applies. TODO: your service's provider id and the status it answers.
applies_when: connection?.provider == "example" && error.status == 401

causes:
  - id: api_key_expired
    title: The API key has expired
    explain: The key saved in the connection has expired, so the service no longer accepts it.
    checks:
      - id: service_says_expired
        expr: signal("{NAME}_key_expired")
        evidence: "The service said: “{message()}”"
        evidence_fail: The service did not say that the key expired
      - id: expiry_date_passed
        role: support
        expr: past(connection?.api_key?.expires_at)
        evidence: The key's expiry date passed {ago(connection.api_key.expires_at)}
    actions: [update_api_key]

  - id: api_key_revoked
    title: The service no longer accepts the API key
    explain: The service no longer accepts the key saved in the connection; it was probably revoked or regenerated.
    checks:
      - id: service_says_invalid
        expr: signal("{NAME}_key_invalid")
        evidence: "The service said: “{message()}”"
        evidence_fail: The service did not say that the key is invalid
      - id: not_an_expiry
        expr: signal("{NAME}_key_expired") == false
        evidence: The service did not say the key expired
        evidence_fail: The service said the key expired, which explains the refusal better
    actions: [update_api_key, contact_admin]

# When the playbook applies but no cause is confirmed or likely.
inconclusive:
  actions: [update_api_key]
"#;

const TESTS: &str = r#"# Tests for {NAME}.yaml, run by `whyfail test {DIR}`.
# Each test is an event (merged onto `base`; `null` deletes a key), optional mocked live facts
# (`facts:`), and what the diagnosis must say (`expect:`). Give every cause one event that
# confirms it and a near miss that must not.
base:
  occurred_at: "2026-11-23T10:00:00Z"
  phase: request
  connection:
    provider: example  # TODO: the same provider id as in applies_when
    auth_type: api_key
  error:
    kind: http
    status: 401

tests:
  - name: key_invalid
    about: The service calls the key invalid
    event:
      error:
        message: "401 Unauthorized: invalid API key"
    expect:
      symptom: {NAME}
      root_cause: api_key_revoked
      confidence: confirmed
      first_action: update_api_key
      disposition: needs_user
      outcomes:
        api_key_expired: ruled_out

  - name: key_expired
    about: Near miss for api_key_revoked - the key merely expired
    event:
      error:
        message: "401: API key has expired"
      connection:
        api_key:
          expires_at: "2026-11-01T00:00:00Z"
    expect:
      root_cause: api_key_expired
      on_path: [expiry_date_passed]
      outcomes:
        api_key_revoked: ruled_out

  - name: other_service_is_not_ours
    about: Near miss for the whole playbook - the same 401 from another service
    event:
      connection:
        provider: github
      error:
        message: Bad credentials
    expect:
      not_on_path: [{NAME}]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case() {
        assert!(valid_name("trello_token_invalid"));
        assert!(!valid_name("Trello"));
        assert!(!valid_name("trello-token"));
        assert!(!valid_name("1st"));
        assert!(!valid_name(""));
        assert_eq!(title_of("trello_token_invalid"), "Trello token invalid");
    }
}
