//! Build script: decides whether the real-OAuth-server test (`tests/oauth.rs`,
//! `against_a_real_authorization_server`) runs or is reported as ignored. It runs when
//! `tests/oidc/node_modules` holds oidc-provider (after `npm ci` there) or when
//! `WHYFAIL_REQUIRE_OIDC=1` (CI), where a missing server then fails it instead of skipping it.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(oidc_server)");
    println!("cargo::rerun-if-env-changed=WHYFAIL_REQUIRE_OIDC");
    // The directory gains `node_modules` with `npm ci`.
    println!("cargo::rerun-if-changed=tests/oidc");
    println!("cargo::rerun-if-changed=build.rs");
    let installed = Path::new("tests/oidc/node_modules/oidc-provider").is_dir();
    let required = std::env::var("WHYFAIL_REQUIRE_OIDC").as_deref() == Ok("1");
    if installed || required {
        println!("cargo::rustc-cfg=oidc_server");
    }
}
