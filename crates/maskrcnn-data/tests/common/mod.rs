#![allow(dead_code)]
use std::path::PathBuf;

/// The workspace root: the first ancestor of this crate holding `Cargo.lock`.
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        if dir.join("Cargo.lock").exists() {
            return dir;
        }
        assert!(dir.pop(), "no Cargo.lock above {}", env!("CARGO_MANIFEST_DIR"));
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    let p = repo_root().join("fixtures/data").join(rel);
    assert!(p.exists(), "fixture {} is missing; regenerate with fixtures/data/make_fixtures.py", p.display());
    p
}

/// `../shared/data/<rel>` beside the repo. Fails loudly when absent so a missing data folder is
/// never mistaken for a pass.
pub fn shared_data(rel: &str) -> PathBuf {
    let p = repo_root().join("../shared/data").join(rel);
    assert!(
        p.exists(),
        "shared test data {} is missing: this test needs the read-only data folder `shared/data` \
         beside the repository (see the project notes)",
        p.display()
    );
    p
}
