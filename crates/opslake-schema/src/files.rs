//! Small file-system helpers shared by the crates that walk project directories.

use std::path::{Path, PathBuf};

/// The entries of `dir`, sorted by path, so every walk of a project is deterministic.
pub fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}
