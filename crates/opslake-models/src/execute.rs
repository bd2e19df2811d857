//! Running models and tests against a lake, on DataFusion.
//!
//! One session reads the canonical tables (`crm.opportunities`), the system tables and every
//! model: views are registered in the session, tables and incremental models are Delta tables
//! under `models/<name>` in the lake, registered by their bare name. Models run in DAG order,
//! independent ones side by side (`threads`); a failed model skips its descendants and nothing
//! else. Tests run after the models they read; their failing rows are kept in the lake under
//! `test_failures/<test>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use opslake_lake::Lake;
use opslake_lake::write::{RelationWrite, write_relation};
use opslake_schema::{Contract, TableId};
use opslake_tools::udf::UdfContext;
use serde::Serialize;

use crate::compile::render;
use crate::data_tests::{DataTest, Severity};
use crate::project::{Materialized, Model};
use crate::{Error, Project, Result};

/// Lake namespace of model tables.
pub const MODELS_NAMESPACE: &str = "models";
/// Lake namespace of the failing rows of tests.
pub const TEST_FAILURES_NAMESPACE: &str = "test_failures";

/// What to run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Selectors of models (all when empty).
    pub select: Vec<String>,
    /// Selectors of models to leave out.
    pub exclude: Vec<String>,
    /// Rebuild incremental models from scratch.
    pub full_refresh: bool,
    /// Models run side by side at most.
    pub threads: usize,
    /// Run the selected models.
    pub run_models: bool,
    /// Run the tests of the selected models.
    pub run_tests: bool,
    /// Where compiled SQL and artifacts go (`target/`).
    pub target_dir: PathBuf,
    /// The functions' time zone and currency.
    pub udf: UdfContext,
    /// After the first model error or failing test, start nothing more: what is not yet
    /// running is skipped (dbt's `--fail-fast`).
    pub fail_fast: bool,
}

/// The outcome of one node, as dbt's run_results.json spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A model was built.
    Success,
    /// A model or a test could not run.
    Error,
    /// Not run: something it reads failed.
    Skipped,
    /// A test found no offending row.
    Pass,
    /// A test of severity error found offending rows.
    Fail,
    /// A test of severity warn found offending rows.
    Warn,
}

/// One node's result.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// `model.<name>` or `test.<name>`.
    pub unique_id: String,
    /// The model or test.
    pub name: String,
    /// `model` or `test`.
    pub resource_type: &'static str,
    /// What happened.
    pub status: Status,
    /// For people: what was built, or what went wrong and where.
    pub message: String,
    /// How a model was kept (view, table, incremental), and for incremental models how it
    /// was written this time (`replace`, `merge`, `append`).
    pub materialized: Option<String>,
    /// Rows a table or incremental model wrote.
    pub rows_affected: Option<u64>,
    /// Offending rows a test found.
    pub failures: Option<u64>,
    /// The compiled SQL file under target/.
    pub compiled_path: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
    /// Seconds.
    pub execution_time: f64,
}

impl NodeResult {
    /// A node starting now, with an error until it reports otherwise.
    fn start(resource_type: &'static str, name: &str, materialized: Option<String>) -> Self {
        let now = Utc::now();
        Self {
            unique_id: format!("{resource_type}.{name}"),
            name: name.to_string(),
            resource_type,
            status: Status::Error,
            message: String::new(),
            materialized,
            rows_affected: None,
            failures: None,
            compiled_path: None,
            started_at: now,
            completed_at: now,
            execution_time: 0.0,
        }
    }

    /// A node not run because `why`.
    fn skipped(resource_type: &'static str, name: &str, materialized: Option<String>, why: String) -> Self {
        Self { status: Status::Skipped, message: why, ..Self::start(resource_type, name, materialized) }
    }
}

/// The whole build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Id of this invocation.
    pub invocation_id: String,
    /// Every node run or skipped, in the order they finished.
    pub results: Vec<NodeResult>,
    /// Seconds.
    pub elapsed_time: f64,
    /// Conversions fx_convert found no rate for (`EUR to USD on 2024-01-05`): their results
    /// are null in the models that asked.
    pub missing_rates: Vec<String>,
}

impl BuildReport {
    /// True when a model errored or an error-severity test failed.
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| matches!(r.status, Status::Error | Status::Fail))
    }
}

/// Progress of a build.
#[derive(Debug)]
pub enum Event<'a> {
    /// A node starts: its position among `total`.
    Started {
        /// 1-based.
        index: usize,
        /// Nodes in this build.
        total: usize,
        /// `model` or `test`.
        resource_type: &'static str,
        /// Its name.
        name: &'a str,
    },
    /// A node finished.
    Finished {
        /// 1-based, as started.
        index: usize,
        /// Nodes in this build.
        total: usize,
        /// Its result.
        result: &'a NodeResult,
    },
}

/// The table id of model `name` in the lake.
pub fn model_table(name: &str) -> TableId {
    TableId { namespace: MODELS_NAMESPACE.into(), name: name.into() }
}

/// Registers what builds wrote: every model table by its bare name, and the failing rows of
/// tests as `test_failures.<test>`. Returns the names registered.
pub async fn register_built(ctx: &SessionContext, lake: &Lake) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in opslake_lake::read::tables_under(lake, MODELS_NAMESPACE).await? {
        if opslake_lake::read::register_relation(ctx, lake, &model_table(&name), &name).await? {
            names.push(name);
        }
    }
    let failures = opslake_lake::read::tables_under(lake, TEST_FAILURES_NAMESPACE).await?;
    if !failures.is_empty() {
        let catalog = ctx.catalog("datafusion").expect("the default catalog exists");
        if catalog.schema(TEST_FAILURES_NAMESPACE).is_none() {
            let schema = std::sync::Arc::new(datafusion::catalog::MemorySchemaProvider::new());
            catalog.register_schema(TEST_FAILURES_NAMESPACE, schema).map_err(|source| {
                opslake_lake::Error::DataFusion { context: "registering test_failures".into(), source }
            })?;
        }
    }
    for name in failures {
        let id = TableId { namespace: TEST_FAILURES_NAMESPACE.into(), name: name.clone() };
        let sql_name = id.to_string();
        if opslake_lake::read::register_relation(ctx, lake, &id, &sql_name).await? {
            names.push(sql_name);
        }
    }
    Ok(names)
}

/// Runs the selected models (and their tests, with `run_tests`) of `project` against `lake`,
/// under the lake's lock (`lock`, renewed as nodes finish). Compiled SQL goes to
/// `target/compiled/`.
pub async fn build(
    project: &Project,
    lake: &Lake,
    contract: &Contract,
    options: &BuildOptions,
    lock: &mut opslake_lake::lock::LakeLock,
    progress: &(dyn Fn(Event<'_>) + Send + Sync),
) -> Result<BuildReport> {
    let started = Instant::now();
    // The run holding the lake's lock is this invocation.
    let invocation_id = lock.entry().run_id.clone();
    let selected = project
        .dag
        .select(&project.node_infos(), &options.select, &options.exclude)
        .map_err(|message| Error::Selector { message })?;
    let crate::session::Session { ctx, missing_rates } =
        crate::session::open(lake, contract, &options.udf, None).await?;
    let models: Vec<String> = if options.run_models { project.dag.order(&selected) } else { Vec::new() };
    // Views the selection reads but does not rebuild live only in sessions: define them.
    let unselected_views: BTreeSet<String> = project
        .pipelines
        .models
        .iter()
        .filter(|m| !models.contains(&m.name) && project.config(&m.name).materialized == Materialized::View)
        .map(|m| m.name.clone())
        .collect();
    let unselected_views = project.dag.order(&unselected_views);
    define_views(project, &ctx, &unselected_views, &options.target_dir).await;

    // A test runs when the selection touches one of the models it reads and every model it
    // reads is either selected or already there (a table of an earlier build, a view defined
    // above): dbt's "buildable" indirect selection, so a partial build never runs a test
    // against a model that does not exist.
    let tests: Vec<&DataTest> = if options.run_tests {
        let no_selection = options.select.iter().all(|s| s.trim().is_empty()) && options.exclude.is_empty();
        project
            .pipelines
            .tests
            .iter()
            .filter(|t| {
                let refs = project.test_refs.get(&t.name).map(Vec::as_slice).unwrap_or_default();
                let available = |r: &String| selected.contains(r) || ctx.table_exist(r.as_str()).unwrap_or(false);
                no_selection || (refs.iter().any(|r| selected.contains(r)) && refs.iter().all(available))
            })
            .collect()
    } else {
        Vec::new()
    };

    // A model waits for the selected models upstream of it, also those it reaches through
    // models left out of the selection (a view between two selected tables).
    let waits_for: BTreeMap<String, Vec<String>> = models
        .iter()
        .map(|m| {
            let upstream = project.dag.ancestors(m, None);
            (m.clone(), models.iter().filter(|p| *p != m && upstream.contains(*p)).cloned().collect())
        })
        .collect();
    let total = models.len() + tests.len();
    let mut results: Vec<NodeResult> = Vec::new();
    let mut outcome: BTreeMap<String, Status> = BTreeMap::new();
    let mut pending: Vec<String> = models.clone();
    let mut running = FuturesUnordered::new();
    let mut next_index = 0;
    let threads = options.threads.max(1);
    // The first node that failed, once `fail_fast` stops the build.
    let mut stopped_by: Option<String> = None;
    while !pending.is_empty() || !running.is_empty() {
        // Start what is ready, skip what cannot run, up to `threads` at a time.
        let mut i = 0;
        while i < pending.len() {
            let name = pending[i].clone();
            let parents = &waits_for[&name];
            let why = skip_reason(stopped_by.as_deref(), parents, &outcome, |bad| {
                format!("skipped: it reads {bad}, which did not build")
            });
            if let Some(why) = why {
                pending.remove(i);
                next_index += 1;
                let r =
                    NodeResult::skipped("model", &name, Some(project.config(&name).materialized.as_str().into()), why);
                progress(Event::Finished { index: next_index, total, result: &r });
                outcome.insert(name, Status::Skipped);
                results.push(r);
                continue;
            }
            let ready = parents.iter().all(|p| outcome.get(p.as_str()) == Some(&Status::Success));
            if ready && running.len() < threads {
                pending.remove(i);
                next_index += 1;
                let index = next_index;
                progress(Event::Started { index, total, resource_type: "model", name: &name });
                let model = project.pipelines.model(&name).expect("selected models exist");
                let ctx = ctx.clone();
                running.push(async move {
                    let r = run_model(project, model, lake, &ctx, options).await;
                    (index, r)
                });
                continue;
            }
            i += 1;
        }
        let Some((index, r)) = running.next().await else { continue };
        lock.renew_if_due().await?;
        if r.status == Status::Success {
            // A view planned before this model was rebuilt would still scan its old table.
            let downstream = project.dag.descendants(&r.name, None);
            let stale: Vec<String> = unselected_views.iter().filter(|v| downstream.contains(*v)).cloned().collect();
            define_views(project, &ctx, &stale, &options.target_dir).await;
        }
        progress(Event::Finished { index, total, result: &r });
        if options.fail_fast && r.status == Status::Error && stopped_by.is_none() {
            stopped_by = Some(r.name.clone());
        }
        outcome.insert(r.name.clone(), r.status);
        results.push(r);
    }

    for t in tests {
        next_index += 1;
        let refs = project.test_refs.get(&t.name).cloned().unwrap_or_default();
        let why = skip_reason(stopped_by.as_deref(), &refs, &outcome, |bad| format!("skipped: {bad} did not build"));
        if let Some(why) = why {
            let r = NodeResult::skipped("test", &t.name, None, why);
            progress(Event::Finished { index: next_index, total, result: &r });
            results.push(r);
            continue;
        }
        progress(Event::Started { index: next_index, total, resource_type: "test", name: &t.name });
        let r = run_test(project, t, lake, &ctx, options).await;
        lock.renew_if_due().await?;
        progress(Event::Finished { index: next_index, total, result: &r });
        if options.fail_fast && matches!(r.status, Status::Error | Status::Fail) {
            stopped_by = Some(r.name.clone());
        }
        results.push(r);
    }
    let missing_rates = missing_rates
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(BuildReport { invocation_id, results, missing_rates, elapsed_time: started.elapsed().as_secs_f64() })
}

/// Why a node must not run: `--fail-fast` stopped the build after `stopped_by`, or a model it
/// reads (`inputs`) errored or was skipped (`because` says it with that model's name).
fn skip_reason(
    stopped_by: Option<&str>,
    inputs: &[String],
    outcome: &BTreeMap<String, Status>,
    because: impl Fn(&str) -> String,
) -> Option<String> {
    if let Some(failed) = stopped_by {
        return Some(format!("skipped: --fail-fast stopped the build after {failed} failed"));
    }
    inputs
        .iter()
        .find(|m| matches!(outcome.get(m.as_str()), Some(Status::Error | Status::Skipped)))
        .map(|bad| because(bad))
}

/// Defines the views `names` (in order) in `ctx`, as the selection reads them without
/// rebuilding them. A view that does not compile stays undefined: what reads it fails with
/// 'table not found', and building the view itself (`--select +model`) shows its own error.
/// What the SQL of a model, view or test may be: a query. Tables are written by the engine
/// from the query's rows, never by the project's SQL, so a model cannot write a canonical
/// table, a file (COPY) or the session (SET, CREATE).
fn query_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

async fn define_views(project: &Project, ctx: &SessionContext, names: &[String], target: &Path) {
    for name in names {
        let model = project.pipelines.model(name).expect("views of the project exist");
        if let Ok(sql) = compile_to_target(project, model, false, target)
            && let Ok(df) = ctx.sql_with_options(&sql, query_only()).await
        {
            let _ = ctx.deregister_table(name.as_str());
            let _ = ctx.register_table(name.as_str(), df.into_view());
        }
    }
}

/// Renders `model` and writes the SQL to `target/compiled/<path>`. Returns the SQL.
fn compile_to_target(project: &Project, model: &Model, incremental: bool, target: &Path) -> Result<String, String> {
    let r = render(&project.scope, &model.file(), &model.raw_sql, Some(&model.name), incremental)
        .map_err(|p| p.to_string())?;
    let path = target.join("compiled").join(&model.rel_path);
    write_file(&path, &r.sql).map_err(|e| e.to_string())?;
    Ok(r.sql)
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    }
    std::fs::write(path, text).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

async fn run_model(
    project: &Project,
    model: &Model,
    lake: &Lake,
    ctx: &SessionContext,
    options: &BuildOptions,
) -> NodeResult {
    let clock = Instant::now();
    let config = project.config(&model.name);
    let id = model_table(&model.name);
    let compiled_rel = format!("compiled/{}", model.rel_path);
    let mut result = NodeResult {
        compiled_path: Some(options.target_dir.join(&compiled_rel).display().to_string()),
        ..NodeResult::start("model", &model.name, Some(config.materialized.as_str().into()))
    };
    let outcome = async {
        // The session registered every model table the lake holds when it opened.
        let exists =
            config.materialized == Materialized::Incremental && ctx.table_exist(model.name.as_str()).unwrap_or(false);
        let incremental = config.materialized == Materialized::Incremental && exists && !options.full_refresh;
        let sql = compile_to_target(project, model, incremental, &options.target_dir)
            .map_err(|message| Failure { message })?;
        let df =
            ctx.sql_with_options(&sql, query_only()).await.map_err(|e| Failure::sql(model, &compiled_rel, &sql, &e))?;
        match config.materialized {
            Materialized::View => {
                let _ = ctx.deregister_table(model.name.as_str());
                ctx.register_table(model.name.as_str(), df.into_view())
                    .map_err(|e| Failure::sql(model, &compiled_rel, &sql, &e))?;
                Ok::<_, Failure>((None, "created view".to_string(), None))
            }
            Materialized::Table | Materialized::Incremental => {
                let how = if !incremental {
                    RelationWrite::Replace
                } else if config.unique_key.is_empty() {
                    RelationWrite::Append
                } else {
                    RelationWrite::Merge { keys: config.unique_key.clone() }
                };
                let committed = write_relation(lake, &id, ctx, df, &how).await.map_err(|e| {
                    let hint = if incremental {
                        " (if the model's columns changed, rebuild it with --full-refresh)"
                    } else {
                        ""
                    };
                    Failure { message: format!("{}: {e}{hint}", model.file()) }
                })?;
                opslake_lake::read::register_relation(ctx, lake, &id, &model.name).await?;
                let verb = match how {
                    RelationWrite::Replace => "created table",
                    RelationWrite::Append => "appended to",
                    RelationWrite::Merge { .. } => "merged into",
                };
                Ok((Some(committed.rows), format!("{verb} {}", model.name), Some(committed.mode.to_string())))
            }
        }
    }
    .await;
    match outcome {
        Ok((rows, message, how)) => {
            result.status = Status::Success;
            result.rows_affected = rows;
            result.message = message;
            if config.materialized == Materialized::Incremental {
                result.materialized = Some(format!("incremental ({})", how.unwrap_or_default()));
            }
        }
        Err(f) => result.message = f.message,
    }
    result.completed_at = Utc::now();
    result.execution_time = clock.elapsed().as_secs_f64();
    result
}

/// Why a node failed, for people.
struct Failure {
    message: String,
}

impl Failure {
    /// A planning or execution error of `model`'s SQL. DataFusion names the line of the
    /// compiled SQL for syntax errors; for an unknown column, the line is the first that names
    /// it. The compiled file keeps the template's lines.
    fn sql(model: &Model, compiled: &str, sql: &str, e: &datafusion::error::DataFusionError) -> Self {
        let text = e.to_string();
        let line = sql_error_line(&text)
            .or_else(|| missing_column_line(&text, sql))
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        Self { message: format!("{}{line}: {text} (compiled SQL: target/{compiled})", model.file()) }
    }
}

impl From<opslake_lake::Error> for Failure {
    fn from(e: opslake_lake::Error) -> Self {
        Self { message: e.to_string() }
    }
}

/// The first line of `sql` naming the column DataFusion could not find (`No field named x`).
fn missing_column_line(text: &str, sql: &str) -> Option<u64> {
    let rest = &text[text.find("No field named ")? + 15..];
    let name: String =
        rest.trim_start_matches('"').chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
    let column = name.trim_end_matches('.').rsplit('.').next().filter(|c| !c.is_empty())?;
    sql.lines()
        .position(|line| {
            line.match_indices(column).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + column.len()..].chars().next();
                let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !ident(before) && !ident(after)
            })
        })
        .map(|i| i as u64 + 1)
}

/// The line sqlparser reports (`... at Line: 3, Column: 7`).
fn sql_error_line(text: &str) -> Option<u64> {
    let rest = &text[text.find("Line: ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn run_test(
    project: &Project,
    test: &DataTest,
    lake: &Lake,
    ctx: &SessionContext,
    options: &BuildOptions,
) -> NodeResult {
    let clock = Instant::now();
    let compiled_rel = format!("compiled/tests/{}.sql", test.name);
    let mut result = NodeResult {
        compiled_path: Some(options.target_dir.join(&compiled_rel).display().to_string()),
        ..NodeResult::start("test", &test.name, None)
    };
    let outcome = async {
        let rendered = render(&project.scope, &test.file, &test.template(), None, false)
            .map_err(|p| Failure { message: p.to_string() })?;
        write_file(&options.target_dir.join(&compiled_rel), &rendered.sql)
            .map_err(|e| Failure { message: e.to_string() })?;
        let at = format!("{}:{}", test.file, test.line);
        let df = ctx
            .sql_with_options(&rendered.sql, query_only())
            .await
            .map_err(|e| Failure { message: format!("{at}: {e} (compiled SQL: target/{compiled_rel})") })?;
        // The offending rows are kept for inspection (a pass empties the previous failures),
        // and the write counts them: the test's query runs once. Only when they cannot be
        // stored is it run again, to count them.
        let id = TableId { namespace: TEST_FAILURES_NAMESPACE.into(), name: test.name.clone() };
        match write_relation(lake, &id, ctx, df.clone(), &RelationWrite::Replace).await {
            Ok(stored) => Ok::<_, Failure>((stored.rows, None)),
            Err(e) => {
                let failures = df.count().await.map_err(|e| Failure { message: format!("{at}: {e}") })? as u64;
                Ok((failures, Some(e.to_string())))
            }
        }
    }
    .await;
    match outcome {
        Ok((failures, store_error)) => {
            result.failures = Some(failures);
            result.status = match (failures, test.severity) {
                (0, _) => Status::Pass,
                (_, Severity::Error) => Status::Fail,
                (_, Severity::Warn) => Status::Warn,
            };
            let what = match (&test.model, &test.column) {
                (Some(m), Some(c)) => format!("{} of {m}.{c}", test.kind.name()),
                _ => test.name.clone(),
            };
            result.message = if failures == 0 {
                format!("{what}: no offending row")
            } else {
                format!(
                    "{what}: {failures} offending row(s) (declared at {}:{}); see test_failures.{}",
                    test.file, test.line, test.name
                )
            };
            if let Some(e) = store_error {
                result.message.push_str(&format!(" (failing rows not stored: {e})"));
            }
        }
        Err(f) => result.message = f.message,
    }
    result.completed_at = Utc::now();
    result.execution_time = clock.elapsed().as_secs_f64();
    result
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn sql_error_lines_are_read_from_sqlparser_messages() {
        assert_eq!(
            sql_error_line("SQL error: ParserError(\"Expected: end of statement, found: x at Line: 3, Column: 7\")"),
            Some(3)
        );
        assert_eq!(sql_error_line("Schema error: No field named y."), None);
        let sql = "select id,\n  no_such_column_x, no_such_column\nfrom t";
        assert_eq!(
            missing_column_line("Schema error: No field named no_such_column. Valid fields are t.id.", sql),
            Some(2)
        );
        assert_eq!(missing_column_line("Schema error: No field named t.no_such_column.", sql), Some(2));
        assert_eq!(missing_column_line("Schema error: No field named \"Zed\".", sql), None);
    }
}
