//! opslake-models: the `pipelines/` project, a dbt-shaped set of SQL models run on DataFusion.
//!
//! Laid out like a dbt project: `sources.yml` documents the canonical tables models read,
//! `models/**/*.sql` are the models (one per file, named by the file) with YAML properties
//! beside them (docs, config, generic data tests), `tests/*.sql` are singular data tests.
//! [`Project::load`] finds them, renders every template once to learn its refs and config,
//! and builds the DAG; [`execute::build`] runs the selected models and tests against a lake.

pub mod artifacts;
pub mod compile;
pub mod data_tests;
pub mod docs;
pub mod execute;
pub mod graph;
pub mod project;
pub mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;

use opslake_schema::{Contract, ErrorClass, Problem};

pub use compile::Scope;
pub use data_tests::{DataTest, Severity, TestKind};
pub use graph::{Dag, NodeInfo};
pub use project::{Materialized, Model, ModelConfig, Pipelines};

/// Default directory of the pipelines project, relative to the project.
pub const PIPELINES_DIR: &str = "pipelines";

/// The values `var()` returns by default: the project's reporting settings.
pub fn project_vars(config: &opslake_config::ProjectConfig) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
        ("reporting_currency".into(), config.reporting_currency.value.clone().into()),
        ("reporting_timezone".into(), config.reporting_timezone.value.clone().into()),
        ("fiscal_year_start_month".into(), config.fiscal_year_start_month.value.into()),
    ])
}

/// The context of opslake's functions in models: the project's reporting time zone, and its
/// reporting currency as `home_currency()`.
pub fn model_udfs(config: &opslake_config::ProjectConfig) -> opslake_tools::udf::UdfContext {
    opslake_tools::udf::UdfContext {
        timezone: config.reporting_timezone.value.clone(),
        date_order: opslake_tools::parse::DateOrder::Mdy,
        numbers: opslake_tools::parse::NumberFormat::default(),
        system: "models".into(),
        connection: "models".into(),
        home_currency: Some(config.reporting_currency.value.clone()),
    }
}

/// What a model's template refers to, learnt by rendering it once.
#[derive(Debug, Clone)]
pub struct Node {
    /// Models it reads.
    pub refs: Vec<String>,
    /// Canonical tables it reads.
    pub sources: Vec<(String, String)>,
    /// Folder default, YAML and `{{ config() }}`, in that order of precedence (without the
    /// last when the template does not render).
    pub config: ModelConfig,
}

/// A project loaded and compiled: every template rendered once, the DAG acyclic.
#[derive(Debug, Clone)]
pub struct Project {
    /// As found on disk.
    pub pipelines: Pipelines,
    /// What templates may refer to.
    pub scope: Scope,
    /// Per model (by name): what it reads and its final config.
    pub nodes: BTreeMap<String, Node>,
    /// Per test (by name): the models it reads.
    pub test_refs: BTreeMap<String, Vec<String>>,
    /// Models and their refs.
    pub dag: Dag,
}

impl Project {
    /// Loads and compiles the project in `dir`. `vars` are what `var()` returns. Problems
    /// (bad files, unknown refs, Jinja errors, a cycle) are returned with file and line; the
    /// project is usable only when there are none.
    pub fn load(
        dir: impl Into<PathBuf>,
        contract: &Contract,
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Result<(Self, Vec<Problem>)> {
        let dir = dir.into();
        let (pipelines, mut problems) = Pipelines::load(&dir, contract)?;
        let scope = Scope::new(pipelines.models.iter().map(|m| m.name.clone()), contract, vars);
        let mut nodes = BTreeMap::new();
        for m in &pipelines.models {
            match compile::render(&scope, &m.file(), &m.raw_sql, Some(&m.name), false) {
                Ok(r) => {
                    let mut config = m.config.clone();
                    if let Some(call) = r.config {
                        project::apply_config(&mut config, call.raw);
                    }
                    nodes.insert(m.name.clone(), Node { refs: r.refs, sources: r.sources, config });
                }
                Err(p) => {
                    problems.push(p);
                    nodes.insert(
                        m.name.clone(),
                        Node { refs: Vec::new(), sources: Vec::new(), config: m.config.clone() },
                    );
                }
            }
        }
        let mut test_refs = BTreeMap::new();
        for t in &pipelines.tests {
            match compile::render(&scope, &t.file, &t.template(), None, false) {
                Ok(r) => {
                    test_refs.insert(t.name.clone(), r.refs);
                }
                Err(mut p) => {
                    if !matches!(t.kind, TestKind::Singular { .. }) {
                        // A generic test's template is ours: point at its declaration.
                        p.line = t.line;
                        p.message = format!("test '{}': {}", t.name, p.message);
                    }
                    problems.push(p);
                }
            }
        }
        let dag = Dag::new(
            pipelines.models.iter().map(|m| m.name.as_str()),
            nodes.iter().flat_map(|(n, node)| node.refs.iter().map(move |r| (n.as_str(), r.as_str()))),
        );
        if let Some(cycle) = dag.find_cycle() {
            let first = pipelines.model(&cycle[0]).map(Model::file).unwrap_or_default();
            problems.push(Problem::in_file(first, format!("models form a cycle: {}", cycle.join(" -> "))));
        }
        Ok((Self { pipelines, scope, nodes, test_refs, dag }, problems))
    }

    /// What model `name` reads and its final config.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes.get(name).expect("every model of the project has a node")
    }

    /// The final config of model `name`.
    pub fn config(&self, name: &str) -> &ModelConfig {
        &self.node(name).config
    }

    /// What selectors match models on.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.pipelines
            .models
            .iter()
            .map(|m| NodeInfo {
                name: m.name.clone(),
                rel_path: m.rel_path.clone(),
                tags: self.config(&m.name).tags.clone(),
            })
            .collect()
    }
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
    /// A file of `target/` could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `--select` or `--exclude` names nothing that exists.
    #[error("{message}")]
    Selector {
        /// What is wrong.
        message: String,
    },
    /// The project has problems; nothing was run.
    #[error("the pipelines project has {} problem(s):\n{}", problems.len(), opslake_schema::diag::format_problems(problems))]
    Invalid {
        /// Every problem, with file and line.
        problems: Vec<Problem>,
    },
    /// The lake failed.
    #[error(transparent)]
    Lake(Box<opslake_lake::Error>),
}

impl From<opslake_lake::Error> for Error {
    fn from(e: opslake_lake::Error) -> Self {
        Self::Lake(Box::new(e))
    }
}

impl Error {
    /// Who must act.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } | Self::Write { .. } => ErrorClass::External,
            Self::Selector { .. } | Self::Invalid { .. } => ErrorClass::User,
            Self::Lake(e) => e.class(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod unit {
    use std::path::Path;

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

    #[test]
    fn compiles_config_tests_and_reports_cycles_and_bad_yaml() {
        let contract = Contract::embedded().expect("contract");
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "models/staging/stg_a.sql", "select * from {{ source('finance', 'payments') }}");
        write(dir.path(), "models/marts/fct_b.sql", "{{ config(tags=['finance']) }}select * from {{ ref('stg_a') }}");
        write(
            dir.path(),
            "models/marts/_marts__models.yml",
            "version: 2\nmodels:\n  - name: fct_b\n    description: B.\n    config: {materialized: incremental, unique_key: id}\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n      - name: kind\n        data_tests:\n          - accepted_values: {values: [a, b], config: {severity: warn}}\n          - relationships: {to: \"ref('stg_a')\", field: kind}\n          - not_nul\n  - name: fct_c\n",
        );
        write(dir.path(), "tests/assert_positive.sql", "select * from {{ ref('fct_b') }} where amount < 0");
        let (project, problems) = Project::load(dir.path(), &contract, BTreeMap::new()).expect("loads");
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert_eq!(problems.len(), 2, "{text}");
        assert!(text.contains("_marts__models.yml:13:13: unknown test 'not_nul' (did you mean 'not_null'?)"), "{text}");
        assert!(
            text.contains("_marts__models.yml:14:11: no model 'fct_c' in models/ (did you mean 'fct_b'?)"),
            "{text}"
        );
        let cfg = project.config("fct_b");
        assert_eq!(cfg.materialized, Materialized::Incremental);
        assert_eq!(
            (cfg.unique_key.as_slice(), cfg.tags.as_slice()),
            (&["id".to_string()][..], &["finance".to_string()][..])
        );
        assert_eq!(project.config("stg_a").materialized, Materialized::View);
        let names: Vec<&str> = project.pipelines.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "accepted_values_fct_b_kind",
                "assert_positive",
                "not_null_fct_b_id",
                "relationships_fct_b_kind__kind",
                "unique_fct_b_id"
            ]
        );
        assert_eq!(project.test_refs["relationships_fct_b_kind__kind"], ["fct_b", "stg_a"]);

        write(dir.path(), "models/staging/stg_a.sql", "select * from {{ ref('fct_b') }}");
        let (_, problems) = Project::load(dir.path(), &contract, BTreeMap::new()).expect("loads");
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(
            text.contains("models form a cycle: fct_b -> stg_a -> fct_b") || text.contains("stg_a -> fct_b -> stg_a"),
            "{text}"
        );
    }
}
