//! opslake-tools: from export files to canonical rows.
//!
//! A tool is a YAML file, `schemas/tools/<tool>.yaml` (built in) or
//! `<project>/tools/<tool>.yaml` (the project's own, no recompiling), loaded into a [`Tool`]
//! by the [`ToolRegistry`]. For each input stream ([`input`]: plain, `.gz` or `.zip`, any
//! encoding; each sheet of an XLSX, XLS or ODS workbook, [`sheet`]), [`detect::recognise`] finds its shape and builds a streaming reader
//! ([`csv_reader`], [`json_reader`]) producing raw chunks; [`mapping::ShapeMapper`] turns each
//! chunk into canonical batches and reject records.

pub mod coerce;
pub mod csv_reader;
pub mod detect;
pub mod fx;
pub mod input;
pub mod json_reader;
pub mod landed;
pub mod mapping;
mod max_by;
pub mod objects;
pub mod parse;
pub mod privacy;
pub mod producers;
pub mod raw;
pub mod sheet;
pub mod spec;
pub mod stream;
pub mod udf;
pub mod xml_reader;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use opslake_schema::diag::is_snake_case;
use opslake_schema::{Contract, ErrorClass, Problem};

pub use spec::{Shape, Tool};

/// Directory, inside `schemas/` and inside a project, that holds tool files.
pub const TOOLS_DIR: &str = "tools";

/// Where projects made before the rename kept their tool files: still read, before `tools/`
/// (which wins on a name clash), so an existing project keeps landing its files.
pub const LEGACY_TOOLS_DIR: &str = "sources";

/// Where a tool is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    /// Compiled into opslake from `schemas/tools/<tool>.yaml`.
    Builtin(String),
    /// The project's own `tools/<tool>.yaml`; it overrides a built-in tool of the same name.
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
    tools: BTreeMap<String, (ToolOrigin, Tool)>,
}

impl ToolRegistry {
    /// Built-in tools, then those in `<project_dir>/tools/` (which win on a name clash; a
    /// project's older `sources/` folder is read too). Problems in tool files are returned,
    /// and those tools left out.
    pub fn load(project_dir: Option<&Path>, contract: &Contract) -> Result<(Self, Vec<Problem>)> {
        let mut registry = Self::default();
        let mut problems = Vec::new();
        for (path, text) in opslake_schema::embedded::files() {
            if let Some(name) = path.strip_prefix("tools/").and_then(tool_name) {
                let file = format!("schemas/{path}");
                match Tool::load(name, &file, text, contract) {
                    Ok(tool) => {
                        registry.tools.insert(name.to_string(), (ToolOrigin::Builtin(path.to_string()), tool));
                    }
                    Err(p) => problems.extend(p),
                }
            }
        }
        let Some(project_dir) = project_dir else { return Ok((registry, problems)) };
        for dir in [LEGACY_TOOLS_DIR, TOOLS_DIR].map(|d| project_dir.join(d)).into_iter().filter(|d| d.is_dir()) {
            registry.load_dir(&dir, contract, &mut problems)?;
        }
        Ok((registry, problems))
    }

    fn load_dir(&mut self, dir: &Path, contract: &Contract, problems: &mut Vec<Problem>) -> Result<()> {
        let paths = opslake_schema::files::sorted_entries(dir)
            .map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        for path in paths {
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(name) = tool_name(&file_name) else { continue };
            let file = path.display().to_string();
            if !is_snake_case(name) {
                problems.push(Problem::in_file(
                    file,
                    format!("tool file name '{name}' must be snake_case ([a-z][a-z0-9_]*): it becomes source_system"),
                ));
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            match Tool::load(name, &file, &text, contract) {
                Ok(tool) => {
                    self.tools.insert(name.to_string(), (ToolOrigin::Project(path), tool));
                }
                Err(p) => problems.extend(p),
            }
        }
        Ok(())
    }

    /// Tool names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// Where `tool` is declared.
    pub fn origin(&self, tool: &str) -> Option<&ToolOrigin> {
        self.tools.get(tool).map(|(o, _)| o)
    }

    /// Every loaded tool, sorted by name.
    pub fn tools(&self) -> Vec<Tool> {
        self.tools.values().map(|(_, t)| t.clone()).collect()
    }
}

fn tool_name(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".yaml")
        .or_else(|| file_name.strip_suffix(".yml"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// Errors of this crate. A bad row is not an error (it is a reject); these stop a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file cannot be read as its format: empty, binary, truncated, invalid JSON.
    #[error("{file}{}: {message}", if *line > 0 { format!(":{line}") } else { String::new() })]
    BadInput {
        /// The file.
        file: String,
        /// 1-based line, or 0 when unknown.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// No tool's shape fits the file.
    #[error("{file}: {message}")]
    Unrecognised {
        /// The file.
        file: String,
        /// Why, and what to do.
        message: String,
    },
    /// A mapping expression does not plan or run against the file's columns.
    #[error("{shape}, column {column}: `{sql}`: {message}")]
    Mapping {
        /// The shape id.
        shape: String,
        /// The canonical column (or `filter`).
        column: String,
        /// The expression.
        sql: String,
        /// DataFusion's message.
        message: String,
    },
    /// An Arrow kernel failed on data opslake built: a bug.
    #[error("internal error (this is a bug): {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An invariant of opslake failed: a bug.
    #[error("internal error (this is a bug): {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl Error {
    /// Who must act.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } => ErrorClass::External,
            Self::BadInput { .. } | Self::Unrecognised { .. } | Self::Mapping { .. } => ErrorClass::User,
            Self::Arrow(_) | Self::Internal { .. } => ErrorClass::Internal,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = "description: d\nshapes:\n  - name: a\n    description: d\n    match: {headers: [Id]}\n    read: {format: csv}\n    outputs:\n      - table: crm.users\n        columns: {source_id: '\"Id\"'}\n";

    #[test]
    fn project_tools_are_found_and_bad_names_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(TOOLS_DIR)).expect("mkdir");
        std::fs::write(dir.path().join("tools/acme_crm.yaml"), ACME).expect("write");
        std::fs::write(dir.path().join("tools/Bad-Name.yaml"), "").expect("write");
        std::fs::write(dir.path().join("tools/notes.txt"), "").expect("write");
        let contract = Contract::embedded().expect("contract");
        let (registry, problems) = ToolRegistry::load(Some(dir.path()), &contract).expect("loads");
        assert!(matches!(registry.origin("acme_crm"), Some(ToolOrigin::Project(_))));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("'Bad-Name'"));
        assert!(registry.origin("notes").is_none());
    }
}
