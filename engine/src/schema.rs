//! JSON Schemas generated from the model types: `playbook` (draft-07, so yaml-language-server
//! can validate and complete playbook files), `event` and `resolution` (draft 2020-12).

use schemars::generate::SchemaSettings;

use crate::model::{event::FailureEvent, playbook::RawPlaybook, resolution::Resolution};

/// The schemas whyfail publishes.
pub const KINDS: [&str; 3] = ["playbook", "event", "resolution"];

/// The schema `kind` as pretty JSON with a trailing newline, or `None` for an unknown kind.
pub fn schema_json(kind: &str) -> Option<String> {
    let schema = match kind {
        "playbook" => SchemaSettings::draft07()
            .into_generator()
            .into_root_schema_for::<RawPlaybook>(),
        "event" => SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<FailureEvent>(),
        "resolution" => SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Resolution>(),
        _ => return None,
    };
    serde_json::to_string_pretty(&schema).ok().map(|s| s + "\n")
}
