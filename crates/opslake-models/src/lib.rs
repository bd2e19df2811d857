//! opslake-models: the `pipelines/` project.
//!
//! Laid out like a dbt project: `sources.yml` documents the canonical tables models read,
//! `models/**/*.sql` are the models (one per file, named by the file), `tests/*.sql` singular
//! data tests. [`Pipelines::load`] discovers them and checks what can be checked without running
//! SQL: unique model names, sources that exist in the contract. Templating, the DAG and
//! execution on DataFusion build on this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opslake_schema::diag::{is_snake_case, parse_yaml};
use opslake_schema::{Contract, ErrorClass, Problem};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Default directory of the pipelines project, relative to the project.
pub const PIPELINES_DIR: &str = "pipelines";
const SOURCES_FILE: &str = "sources.yml";
const MODELS_DIR: &str = "models";

/// A model: one `.sql` file under `models/`.
#[derive(Debug, Clone)]
pub struct Model {
    /// The file stem; what `ref()` names.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// The pipelines project as found on disk.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    /// Every model, sorted by name.
    pub models: Vec<Model>,
    /// Sources declared in sources.yml as (namespace, table).
    pub sources: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSources {
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<u32>,
    #[serde(default)]
    sources: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    tables: Vec<RawSourceTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceTable {
    name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

impl Pipelines {
    /// Loads the project in `dir`; a missing directory is an empty project. Problems (bad
    /// names, duplicate models, unknown sources) are returned with file and line.
    pub fn load(dir: &Path, contract: &Contract) -> Result<(Self, Vec<Problem>)> {
        let mut problems = Vec::new();
        let mut pipelines = Self::default();
        if !dir.is_dir() {
            return Ok((pipelines, problems));
        }
        let sources_file = dir.join(SOURCES_FILE);
        if sources_file.is_file() {
            let file = sources_file.display().to_string();
            let text = read(&sources_file)?;
            match parse_yaml::<RawSources>(&file, &text) {
                Err(p) => problems.push(p),
                Ok(raw) => {
                    for source in raw.sources {
                        let ns = source.name.value.as_str();
                        if !contract.namespaces().contains(ns) {
                            let known = contract.namespaces().into_iter().collect::<Vec<_>>().join(", ");
                            problems.push(Problem::at(
                                &file,
                                &source.name,
                                format!("unknown source '{ns}'; the canonical namespaces are {known}"),
                            ));
                            continue;
                        }
                        for t in source.tables {
                            if contract.table(ns, &t.name.value).is_none() {
                                problems.push(Problem::at(
                                    &file,
                                    &t.name,
                                    format!("table '{ns}.{}' is not in the canonical contract", t.name.value),
                                ));
                            } else {
                                pipelines.sources.push((ns.to_string(), t.name.value));
                            }
                        }
                    }
                }
            }
        }

        let mut sql_files = Vec::new();
        collect_sql(&dir.join(MODELS_DIR), &mut sql_files)?;
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in sql_files {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let file = path.display().to_string();
            if !is_snake_case(&name) {
                problems.push(Problem::in_file(
                    &file,
                    format!("model name '{name}' must be snake_case ([a-z][a-z0-9_]*): it becomes a table name"),
                ));
                continue;
            }
            if let Some(first) = seen.get(&name) {
                problems.push(Problem::in_file(
                    &file,
                    format!("model '{name}' is also defined in {}; model names must be unique", first.display()),
                ));
                continue;
            }
            seen.insert(name.clone(), path.clone());
            pipelines.models.push(Model { name, path });
        }
        pipelines.models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((pipelines, problems))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn collect_sql(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let paths =
        opslake_schema::files::sorted_entries(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for path in paths {
        if path.is_dir() {
            collect_sql(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
    Ok(())
}

/// Errors of this crate.
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

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn finds_models_and_reports_duplicates_and_unknown_sources() {
        let contract = Contract::embedded().expect("contract");
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "sources.yml",
            "version: 2\nsources:\n  - name: crm\n    tables:\n      - name: opportunities\n      - name: deals\n  - name: sales\n",
        );
        write(dir.path(), "models/staging/stg_a.sql", "select 1");
        write(dir.path(), "models/marts/stg_a.sql", "select 2");
        write(dir.path(), "models/marts/fct_b.sql", "select 3");
        let (pipelines, problems) = Pipelines::load(dir.path(), &contract).expect("loads");
        let names: Vec<&str> = pipelines.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["fct_b", "stg_a"]);
        assert_eq!(pipelines.sources, [("crm".to_string(), "opportunities".to_string())]);
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert_eq!(problems.len(), 3, "{text}");
        assert!(text.contains("sources.yml:6:15: table 'crm.deals' is not in the canonical contract"), "{text}");
        assert!(text.contains("unknown source 'sales'"), "{text}");
        assert!(text.contains("model 'stg_a' is also defined in"), "{text}");
    }

    #[test]
    fn a_missing_directory_is_an_empty_project() {
        let contract = Contract::embedded().expect("contract");
        let (pipelines, problems) = Pipelines::load(Path::new("/nonexistent/pipelines"), &contract).expect("loads");
        assert!(pipelines.models.is_empty() && problems.is_empty());
    }
}
