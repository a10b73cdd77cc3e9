//! whyfail's engine: failure events in, resolution paths out.
//!
//! The pipeline, one module per stage:
//! 1. [`load`]: playbook files into raw [`model::playbook`] types, with positions;
//! 2. [`compile`]: scripts compiled once, references resolved, graphs validated, into an
//!    immutable [`Library`] (share it behind an `Arc`);
//! 3. [`eval`]: an [`Event`] walked through the library's playbooks into a [`Resolution`];
//! 4. [`explain`]: the resolution told for a user, a support engineer or a developer.
//!
//! Problems in playbooks are [`Diagnostic`]s; live facts come through [`FactProvider`].
//!
//! ```
//! use whyfail_engine::{Library, Options, Source, diagnose_json};
//! let playbook = r#"
//! id: rate_limited
//! title: The service is rate limiting requests
//! applies_when: error.status == 429
//! causes:
//!   - id: rate_limited
//!     title: Too many requests
//!     fallback: true   # the generic reading of a 429: never more than likely
//!     checks:
//!       - id: status_429
//!         expr: error.status == 429
//!         evidence: "The service answered 429 Too Many Requests"
//!     actions: [wait_and_retry]
//! actions:
//!   - id: wait_and_retry
//!     title: Wait, then retry
//!     actor: platform
//!     automatic: true
//!     disposition: retry_after
//!     params:
//!       retry_after_seconds: retry_after_seconds(header("retry-after"))
//! "#;
//! let (lib, diags) = Library::load(&[vec![Source::new("rate.yaml", playbook)]]);
//! assert!(diags.is_empty());
//! let res = diagnose_json(&lib, r#"{"error":{"status":429,"headers":{"retry-after":"30"}}}"#, &Options::default()).unwrap();
//! assert_eq!(res.root_causes[0].id, "rate_limited");
//! assert_eq!(res.disposition.retry_after_seconds, Some(30));
//! ```

pub mod addr;
pub mod compile;
pub mod diag;
pub mod eval;
pub mod explain;
pub mod facts;
pub mod load;
pub mod model;
pub mod sandbox;
pub mod schema;
pub mod scrub;
pub mod signals;
pub mod time;
pub mod wait;
mod yaml_path;

pub use compile::Library;
pub use diag::{Diagnostic, Severity};
pub use eval::{ENGINE_VERSION, Event, EventError, Options, diagnose, diagnose_json, lint_budgets};
pub use explain::Audience;
pub use facts::{FactError, FactProvider, FactRequest};
pub use load::Source;
pub use model::resolution::Resolution;
