//! The data model: playbooks exactly as authors write them in YAML (`playbook`), the failure
//! event as platforms send it (`event`), and the resolution whyfail answers with (`resolution`).
//!
//! These are plain serde + schemars types; the JSON Schemas in `schemas/` are generated from
//! them. Compiled, evaluation-ready forms live in `crate::compile`.

pub mod event;
pub mod playbook;
pub mod resolution;
pub mod standard;
