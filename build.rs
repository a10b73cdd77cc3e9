//! Embeds the standard playbook library (`playbooks/*.yaml`) into the binary, so `whyfail`
//! works from any directory; `--playbooks DIR` adds to or overrides it at run time. Also decides
//! whether the end-to-end OAuth tests (`tests/oauth_live.rs`) run against the real server: when
//! `providers/tests/oidc` has oidc-provider installed, or `WHYFAIL_REQUIRE_OIDC=1` (CI), where a
//! missing server then fails them instead of skipping them.

use std::path::Path;

fn main() {
    // The package's directory as cargo gives it to this run (`env!` would bake in the path of
    // whichever checkout first compiled this script, which a shared target directory reuses).
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&root);
    println!("cargo::rustc-check-cfg=cfg(oidc_server)");
    println!("cargo::rerun-if-env-changed=WHYFAIL_REQUIRE_OIDC");
    println!("cargo::rerun-if-changed=providers/tests/oidc");
    let installed = root
        .join("providers/tests/oidc/node_modules/oidc-provider")
        .is_dir();
    if installed || std::env::var("WHYFAIL_REQUIRE_OIDC").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=oidc_server");
    }
    let dir = root.join("playbooks");
    println!("cargo:rerun-if-changed={}", dir.display());
    // A binary without its standard library would answer `no_match` to everything: no build.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the standard library {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.retain(|p| {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        (n.ends_with(".yaml") || n.ends_with(".yml")) && !n.contains(".test.")
    });
    files.sort();
    assert!(!files.is_empty(), "no playbook in {}", dir.display());
    let mut out = String::from(
        "/// The standard library: (display name, YAML text), sorted by name.\npub static STDLIB: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        out.push_str(&format!(
            "    (\"playbooks/{name}\", include_str!({:?})),\n",
            f.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stdlib.rs");
    std::fs::write(dest, out).expect("write stdlib.rs");
}
