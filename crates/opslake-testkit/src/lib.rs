//! opslake-testkit: helpers shared by the integration tests of every crate.
//!
//! Fixtures live in the repository's `tests/` (data only); the real export corpus is read in
//! place from `../shared/corpus` beside the repository and never copied.

use std::path::{Path, PathBuf};

/// The repository root (the directory holding the workspace Cargo.toml).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the testkit crate lives in crates/")
}

/// `../shared/corpus` beside the repository, when present.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/corpus");
    dir.is_dir().then_some(dir)
}

/// A fixture whose first line is `# error: <text>`: the text the error must contain.
#[derive(Debug, Clone)]
pub struct ExpectedError {
    /// The fixture file.
    pub path: PathBuf,
    /// Its file name without extension.
    pub stem: String,
    /// The whole file.
    pub text: String,
    /// The substring the reported error must contain.
    pub expected: String,
}

/// Every `*.yml` in `dir` with its `# error:` expectation, sorted by name. Panics on a fixture
/// without the header line, so a forgotten expectation cannot pass silently.
pub fn expected_errors(dir: &Path) -> Vec<ExpectedError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error:"))
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| panic!("{}: the first line must be '# error: <expected text>'", path.display()));
        let stem = path.file_stem().expect("a file").to_string_lossy().into_owned();
        out.push(ExpectedError { path, stem, text, expected });
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    out
}
