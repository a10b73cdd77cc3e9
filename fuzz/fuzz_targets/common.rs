// Shared by the fuzz targets: the standard library of playbooks (the files the binary embeds),
// loaded once per process.

use std::sync::LazyLock;

use whyfail_engine::{Library, load};

pub static STDLIB: LazyLock<Library> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
    let mut diags = Vec::new();
    let sources = load::read_sources(&dir, &mut diags);
    assert!(!sources.is_empty(), "no playbooks in {}", dir.display());
    let (lib, more) = Library::load(&[sources]);
    diags.extend(more);
    assert!(
        diags.iter().all(|d| !d.is_error()),
        "the standard playbooks do not load: {diags:?}"
    );
    lib
});
