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

/// Copies a fixture folder into a fresh temporary directory so a test can break it.
pub fn copy_fixture(rel: &str) -> tempfile::TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &dst);
            } else {
                std::fs::copy(e.path(), dst).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture(rel), dir.path());
    dir
}
