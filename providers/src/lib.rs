//! Live fact providers for whyfail, behind the engine's [`FactProvider`] trait.
//!
//! [`LiveProvider`] answers the facts checks declare in `needs:` by probing the real services:
//! network (`net.*`), OAuth servers (`oauth.*`), whoami endpoints (`whoami`) and status pages
//! (`status.page`). Every request passes the SSRF [`guard`]; answers are cached per connection
//! with single-flight, so a burst of failures on one connection makes one probe per fact.
//! [`FixtureProvider`] serves canned facts for tests and recorded cases.
//!
//! [`FactProvider`]: whyfail_engine::FactProvider

pub mod conn;
pub mod fixture;
pub mod guard;
pub mod live;
pub mod net;
pub mod oauth;
pub mod probe;
pub mod record;
pub mod shared;
pub mod status;
pub mod whoami;

pub use fixture::FixtureProvider;
pub use guard::Guard;
pub use live::{LiveConfig, LiveProvider, RefreshLease, RefreshTurn};
pub use record::RecordingProvider;
pub use shared::{InProcess, SharedState};
