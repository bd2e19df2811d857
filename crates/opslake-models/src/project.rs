//! Finding the project on disk: models (`models/**/*.sql`), their YAML properties (docs,
//! config, data tests), singular tests (`tests/*.sql`) and `sources.yml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opslake_schema::diag::{is_snake_case, parse_yaml};
use opslake_schema::{Contract, Problem};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::data_tests::{DataTest, Severity, TestKind};
use crate::{Error, Result};

const SOURCES_FILE: &str = "sources.yml";
const MODELS_DIR: &str = "models";
const TESTS_DIR: &str = "tests";

/// How a model is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// A view in the session: its SQL runs wherever it is read.
    View,
    /// A Delta table rebuilt on every run.
    Table,
    /// A Delta table whose new rows are merged in by `unique_key` (appended without one).
    Incremental,
}

impl Materialized {
    /// As dbt spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Table => "table",
            Self::Incremental => "incremental",
        }
    }

    /// The default by folder, as dbt projects usually configure it: staging and
    /// intermediate models are views, marts are tables.
    fn default_for(rel_path: &str) -> Self {
        if rel_path.starts_with("models/marts/") { Self::Table } else { Self::View }
    }
}

/// A model's configuration: folder default, then its YAML `config:`, then `{{ config() }}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelConfig {
    /// How it is kept.
    pub materialized: Materialized,
    /// Key columns an incremental model merges on.
    pub unique_key: Vec<String>,
    /// Tags for `--select tag:x`.
    pub tags: Vec<String>,
}

/// A column documented in YAML.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnDoc {
    /// Column name.
    pub name: String,
    /// Its description.
    pub description: String,
}

/// A model: one `.sql` file under `models/`.
#[derive(Debug, Clone)]
pub struct Model {
    /// The file stem; what `ref()` names, and the relation's name.
    pub name: String,
    /// The file, as the user named the project directory.
    pub path: PathBuf,
    /// The path inside the project, with `/`: `models/marts/finance/fct_cash.sql`.
    pub rel_path: String,
    /// The SQL template.
    pub raw_sql: String,
    /// From YAML.
    pub description: String,
    /// From YAML.
    pub columns: Vec<ColumnDoc>,
    /// Folder default and YAML config; `{{ config() }}` in the SQL is applied when compiled.
    pub config: ModelConfig,
}

impl Model {
    /// The path shown in messages.
    pub fn file(&self) -> String {
        self.path.display().to_string()
    }
}

/// The pipelines project as found on disk.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    /// The project directory.
    pub dir: PathBuf,
    /// Every model, sorted by name.
    pub models: Vec<Model>,
    /// Sources declared in sources.yml as (namespace, table).
    pub sources: Vec<(String, String)>,
    /// Data tests: generic ones declared in YAML and singular ones in `tests/`.
    pub tests: Vec<DataTest>,
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

/// A YAML properties file next to models (`_finance__models.yml`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperties {
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<u32>,
    #[serde(default)]
    models: Vec<RawModelProps>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelProps {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: RawConfig,
    #[serde(default)]
    columns: Vec<RawColumn>,
    /// Tests of the whole model (singular SQL is in `tests/`; these are generic tests whose
    /// arguments name columns themselves, such as `unique` on an expression).
    #[serde(default, alias = "tests")]
    data_tests: Vec<Spanned<RawTest>>,
}

/// `config:` of a model in YAML; the same keys as `{{ config() }}`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub materialized: Option<Materialized>,
    pub unique_key: Option<OneOrMany>,
    pub tags: Option<OneOrMany>,
}

/// A string or a list of strings, as dbt accepts for `unique_key` and `tags`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default, alias = "tests")]
    data_tests: Vec<Spanned<RawTest>>,
}

/// `- not_null` or `- accepted_values: {values: [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawTest {
    Name(String),
    WithArgs(BTreeMap<String, RawTestArgs>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestArgs {
    #[serde(default)]
    values: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    quote: Option<bool>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    column_name: Option<String>,
    #[serde(default)]
    config: Option<RawTestConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestConfig {
    #[serde(default)]
    severity: Option<Severity>,
}

impl Pipelines {
    /// Loads the project in `dir`; a missing directory is an empty project. Problems (bad
    /// names, duplicate models, unknown sources, bad YAML) are returned with file and line.
    pub fn load(dir: &Path, contract: &Contract) -> Result<(Self, Vec<Problem>)> {
        let mut problems = Vec::new();
        let mut pipelines = Self { dir: dir.to_path_buf(), ..Self::default() };
        if !dir.is_dir() {
            return Ok((pipelines, problems));
        }
        pipelines.load_sources(contract, &mut problems)?;

        let mut sql_files = Vec::new();
        let mut yml_files = Vec::new();
        collect(&dir.join(MODELS_DIR), &mut sql_files, &mut yml_files)?;
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
            let rel_path = relative(dir, &path);
            let raw_sql = read(&path)?;
            let config = ModelConfig {
                materialized: Materialized::default_for(&rel_path),
                unique_key: Vec::new(),
                tags: Vec::new(),
            };
            pipelines.models.push(Model {
                name,
                path,
                rel_path,
                raw_sql,
                description: String::new(),
                columns: Vec::new(),
                config,
            });
        }
        pipelines.models.sort_by(|a, b| a.name.cmp(&b.name));
        for path in yml_files {
            pipelines.load_properties(&path, &mut problems)?;
        }
        pipelines.load_singular_tests(&mut problems)?;
        pipelines.tests.sort_by(|a, b| a.name.cmp(&b.name));
        let mut names: BTreeMap<&str, &DataTest> = BTreeMap::new();
        let mut duplicates = Vec::new();
        for t in &pipelines.tests {
            if let Some(first) = names.insert(t.name.as_str(), t) {
                duplicates.push(Problem {
                    file: t.file.clone(),
                    line: t.line,
                    column: 0,
                    message: format!("test '{}' is also declared at {}:{}", t.name, first.file, first.line),
                });
            }
        }
        problems.extend(duplicates);
        Ok((pipelines, problems))
    }

    /// The model named `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.binary_search_by(|m| m.name.as_str().cmp(name)).ok().map(|i| &self.models[i])
    }

    fn load_sources(&mut self, contract: &Contract, problems: &mut Vec<Problem>) -> Result<()> {
        let sources_file = self.dir.join(SOURCES_FILE);
        if !sources_file.is_file() {
            return Ok(());
        }
        let file = sources_file.display().to_string();
        let text = read(&sources_file)?;
        let raw = match parse_yaml::<RawSources>(&file, &text) {
            Err(p) => {
                problems.push(p);
                return Ok(());
            }
            Ok(raw) => raw,
        };
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
                    self.sources.push((ns.to_string(), t.name.value));
                }
            }
        }
        Ok(())
    }

    fn load_properties(&mut self, path: &Path, problems: &mut Vec<Problem>) -> Result<()> {
        let file = path.display().to_string();
        let text = read(path)?;
        let raw = match parse_yaml::<RawProperties>(&file, &text) {
            Err(p) => {
                problems.push(p);
                return Ok(());
            }
            Ok(raw) => raw,
        };
        for props in raw.models {
            let name = props.name.value.clone();
            let Ok(i) = self.models.binary_search_by(|m| m.name.as_str().cmp(&name)) else {
                let hint = did_you_mean(&name, self.models.iter().map(|m| m.name.as_str()));
                problems.push(Problem::at(&file, &props.name, format!("no model '{name}' in models/{hint}")));
                continue;
            };
            let model = &mut self.models[i];
            model.description = props.description;
            apply_config(&mut model.config, props.config);
            let model_name = model.name.clone();
            for raw in props.data_tests {
                if let Some(t) = generic_test(&file, &model_name, None, &raw, problems) {
                    self.tests.push(t);
                }
            }
            let model = &mut self.models[i];
            for col in props.columns {
                model.columns.push(ColumnDoc { name: col.name.value.clone(), description: col.description });
                for raw in &col.data_tests {
                    if let Some(t) = generic_test(&file, &model_name, Some(&col.name.value), raw, problems) {
                        self.tests.push(t);
                    }
                }
            }
        }
        Ok(())
    }

    fn load_singular_tests(&mut self, problems: &mut Vec<Problem>) -> Result<()> {
        let dir = self.dir.join(TESTS_DIR);
        let (mut sql, mut yml) = (Vec::new(), Vec::new());
        collect(&dir, &mut sql, &mut yml)?;
        for path in sql {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let file = path.display().to_string();
            if !is_snake_case(&name) {
                problems.push(Problem::in_file(&file, format!("test name '{name}' must be snake_case")));
                continue;
            }
            self.tests.push(DataTest {
                name,
                kind: TestKind::Singular { sql: read(&path)? },
                model: None,
                column: None,
                severity: Severity::Error,
                file,
                line: 1,
            });
        }
        Ok(())
    }
}

pub(crate) fn apply_config(config: &mut ModelConfig, raw: RawConfig) {
    if let Some(m) = raw.materialized {
        config.materialized = m;
    }
    if let Some(k) = raw.unique_key {
        config.unique_key = k.into_vec();
    }
    if let Some(t) = raw.tags {
        config.tags = t.into_vec();
    }
}

fn generic_test(
    file: &str,
    model: &str,
    column: Option<&str>,
    raw: &Spanned<RawTest>,
    problems: &mut Vec<Problem>,
) -> Option<DataTest> {
    let (kind_name, args) = match &raw.value {
        RawTest::Name(n) => (n.clone(), RawTestArgs::default()),
        RawTest::WithArgs(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().expect("one entry");
            (k.clone(), v.clone())
        }
        RawTest::WithArgs(_) => {
            problems.push(Problem::at(file, raw, "a test is one name, or one name with its arguments"));
            return None;
        }
    };
    let column = args.column_name.clone().or_else(|| column.map(str::to_string));
    let fail = |problems: &mut Vec<Problem>, msg: String| {
        problems.push(Problem::at(file, raw, msg));
        None
    };
    let needs_column = |problems: &mut Vec<Problem>| {
        problems.push(Problem::at(file, raw, format!("'{kind_name}' tests a column: declare it under the column")));
        None
    };
    let kind = match kind_name.as_str() {
        "not_null" => TestKind::NotNull,
        "unique" => TestKind::Unique,
        "accepted_values" => {
            let Some(values) = args.values.clone() else {
                return fail(problems, "accepted_values needs `values: [...]`".into());
            };
            let values = values
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            TestKind::AcceptedValues { values, quote: args.quote.unwrap_or(true) }
        }
        "relationships" => {
            let (Some(to), Some(field)) = (args.to.clone(), args.field.clone()) else {
                return fail(problems, "relationships needs `to: ref('model')` (or source(...)) and `field:`".into());
            };
            TestKind::Relationships { to, field }
        }
        other => {
            let hint = did_you_mean(other, ["not_null", "unique", "accepted_values", "relationships"].into_iter());
            return fail(
                problems,
                format!(
                    "unknown test '{other}'{hint}; generic tests are not_null, unique, accepted_values and relationships, other rules are SQL files in tests/"
                ),
            );
        }
    };
    let Some(column) = column else { return needs_column(problems) };
    // A test is named after its column (and field), and stored under that name in the lake and
    // the target folder: a name that is not an identifier could lead either path elsewhere.
    let field = match &kind {
        TestKind::Relationships { field, .. } => Some(field.as_str()),
        _ => None,
    };
    if let Some(bad) =
        [Some(column.as_str()), field].into_iter().flatten().find(|n| !opslake_schema::diag::is_identifier(n))
    {
        return fail(
            problems,
            format!("'{kind_name}' on '{bad}': a tested column must be an identifier ([A-Za-z_][A-Za-z0-9_]*)"),
        );
    }
    let name = match &kind {
        TestKind::Relationships { field, .. } => format!("{kind_name}_{model}_{column}__{field}"),
        _ => format!("{kind_name}_{model}_{column}"),
    };
    Some(DataTest {
        name,
        kind,
        model: Some(model.to_string()),
        column: Some(column),
        severity: args.config.and_then(|c| c.severity).unwrap_or(Severity::Error),
        file: file.to_string(),
        line: raw.referenced.line(),
    })
}

/// ` (did you mean 'x'?)` when a known name is close to `name`, else empty.
pub(crate) fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 3).max(2))
        .min()
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

fn relative(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn collect(dir: &Path, sql: &mut Vec<PathBuf>, yml: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let paths =
        opslake_schema::files::sorted_entries(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for path in paths {
        if path.is_dir() {
            collect(&path, sql, yml)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            sql.push(path);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            yml.push(path);
        }
    }
    Ok(())
}
