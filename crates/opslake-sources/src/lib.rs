//! opslake-sources: from export files to canonical rows.
//!
//! A tool is a YAML file, `schemas/sources/<tool>.yaml` (built in) or `<project>/sources/<tool>.yaml`
//! (the project's own, no recompiling). The [`ToolRegistry`] knows which tools exist and where
//! each is declared; readers and the mapping compiler build on it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use opslake_schema::diag::is_snake_case;
use opslake_schema::{ErrorClass, Problem};

/// Directory, inside `schemas/` and inside a project, that holds tool files.
pub const SOURCES_DIR: &str = "sources";

/// Where a tool is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    /// Compiled into opslake from `schemas/sources/<tool>.yaml`.
    Builtin(String),
    /// The project's own `sources/<tool>.yaml`; it overrides a built-in tool of the same name.
    Project(PathBuf),
}

impl fmt::Display for ToolOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(path) => write!(f, "built in (schemas/{path})"),
            Self::Project(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The tools a project can connect: the built-in ones plus the project's own.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, ToolOrigin>,
}

impl ToolRegistry {
    /// Built-in tools, then those in `<project_dir>/sources/`; problems name bad file names.
    pub fn load(project_dir: Option<&Path>) -> Result<(Self, Vec<Problem>)> {
        let mut registry = Self::default();
        let mut problems = Vec::new();
        for (path, _) in opslake_schema::embedded::files() {
            if let Some(name) = tool_name(path.strip_prefix("sources/").unwrap_or_default()) {
                registry.tools.insert(name.to_string(), ToolOrigin::Builtin(path.to_string()));
            }
        }
        let Some(dir) = project_dir.map(|d| d.join(SOURCES_DIR)).filter(|d| d.is_dir()) else {
            return Ok((registry, problems));
        };
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let mut paths = Vec::new();
        for entry in entries {
            paths.push(entry.map_err(|source| Error::Io { path: dir.clone(), source })?.path());
        }
        paths.sort();
        for path in paths {
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match tool_name(&file_name) {
                Some(name) if is_snake_case(name) => {
                    registry.tools.insert(name.to_string(), ToolOrigin::Project(path));
                }
                Some(name) => problems.push(Problem::in_file(
                    path.display().to_string(),
                    format!("tool file name '{name}' must be snake_case ([a-z][a-z0-9_]*): it becomes source_system"),
                )),
                None => {}
            }
        }
        Ok((registry, problems))
    }

    /// Tool names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// Where `tool` is declared.
    pub fn origin(&self, tool: &str) -> Option<&ToolOrigin> {
        self.tools.get(tool)
    }
}

fn tool_name(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".yaml")
        .or_else(|| file_name.strip_suffix(".yml"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Who must act.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::External,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_tools_are_found_and_bad_names_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(SOURCES_DIR)).expect("mkdir");
        std::fs::write(dir.path().join("sources/acme_crm.yaml"), "").expect("write");
        std::fs::write(dir.path().join("sources/Bad-Name.yaml"), "").expect("write");
        std::fs::write(dir.path().join("sources/notes.txt"), "").expect("write");
        let (registry, problems) = ToolRegistry::load(Some(dir.path())).expect("loads");
        assert!(matches!(registry.origin("acme_crm"), Some(ToolOrigin::Project(_))));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("'Bad-Name'"));
        assert!(registry.origin("notes").is_none());
    }
}
