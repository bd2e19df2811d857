//! Run records: `_runs`, `_run_files` and `_run_tables`, the system tables a scheduler and
//! `opslake runs` read, and from which `--as-of` finds table versions.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use opslake_schema::{Contract, Table};
use serde::Serialize;

use crate::lock::LakeLock;
use crate::{Error, Lake, Result};

/// One row per run state.
pub const RUNS: &str = "_runs";
/// One row per run and file: the manifest.
pub const RUN_FILES: &str = "_run_files";
/// One row per run and table commit.
pub const RUN_TABLES: &str = "_run_tables";

/// Whether `name` is one of the run-record tables, always read at their latest version.
pub fn is_run_record(name: &str) -> bool {
    [RUNS, RUN_FILES, RUN_TABLES, crate::drift::DRIFT, crate::drift::LAYOUTS].contains(&name)
}

/// A `_runs` row. Field names are the table's columns (schemas/system/runs.yaml).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunRow {
    /// Run id.
    pub run_id: String,
    /// run, ingest, build, test or maintain.
    pub command: String,
    /// RUNNING, SUCCEEDED or FAILED.
    pub status: String,
    /// UTC microseconds.
    pub started_at: i64,
    /// UTC microseconds.
    pub ended_at: Option<i64>,
    /// host:pid.
    pub host: String,
    /// The binary's version.
    pub opslake_version: String,
    /// `--full-refresh`.
    pub full_refresh: bool,
    /// Files loaded.
    pub files_loaded: Option<i64>,
    /// Files skipped as unchanged.
    pub files_skipped: Option<i64>,
    /// Files failed.
    pub files_failed: Option<i64>,
    /// Records read.
    pub rows_read: Option<i64>,
    /// Records written.
    pub rows_written: Option<i64>,
    /// Records rejected.
    pub rows_rejected: Option<i64>,
    /// Failure or note.
    pub message: Option<String>,
    /// Models built.
    pub models_built: Option<i64>,
    /// Models errored or skipped.
    pub models_failed: Option<i64>,
    /// Tests passed.
    pub tests_passed: Option<i64>,
    /// Tests that warned.
    pub tests_warned: Option<i64>,
    /// Tests failed or errored.
    pub tests_failed: Option<i64>,
    /// Snapshot published.
    pub snapshot_id: Option<String>,
    /// First step that failed.
    pub failed_step: Option<String>,
    /// The command's exit code.
    pub exit_code: Option<i64>,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run id.
    pub run_id: String,
    /// When the run started, UTC microseconds.
    pub started_at: i64,
}

impl RunContext {
    /// A new run starting now, with a UUIDv7 id (ids sort by start time).
    pub fn start() -> Self {
        Self { run_id: uuid::Uuid::now_v7().to_string(), started_at: chrono::Utc::now().timestamp_micros() }
    }
}

/// A command writing the lake, from its RUNNING row in `_runs` to its final one: it holds the
/// lake's lock all along. Every command that writes (ingest, build, test, run, maintain) is
/// one `Run`, so the lifecycle a scheduler reads is written in one place.
pub struct Run<'a> {
    lake: &'a Lake,
    contract: &'a Contract,
    context: RunContext,
    lock: LakeLock,
    /// The final row, filled as the run goes: counts of each step, snapshot, exit code.
    pub row: RunRow,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Everything it did landed.
    Succeeded,
    /// It stopped or something failed: why, and the first step that failed.
    Failed {
        /// For people.
        message: String,
        /// `ingest`, `build`, ..., when the command has steps.
        step: Option<String>,
    },
    /// Another run took the lake: the lake is no longer this run's to write, nothing is recorded.
    LostLock,
}

impl<'a> Run<'a> {
    /// Takes the lake's lock for `command` and records that the run started. Fails with
    /// [`Error::Locked`] when another run holds the lake; the lock is given back when the
    /// RUNNING row cannot be written.
    pub async fn start(
        lake: &'a Lake,
        contract: &'a Contract,
        command: &str,
        ttl: std::time::Duration,
        full_refresh: bool,
    ) -> Result<Self> {
        let context = RunContext::start();
        let lock = LakeLock::acquire(lake, &context.run_id, command, ttl).await?;
        let row = RunRow {
            run_id: context.run_id.clone(),
            command: command.into(),
            status: "RUNNING".into(),
            started_at: context.started_at,
            host: format!("{}:{}", lock.entry().host, lock.entry().pid),
            opslake_version: env!("CARGO_PKG_VERSION").into(),
            full_refresh,
            ..RunRow::default()
        };
        if let Err(e) = append_rows(lake, contract, RUNS, std::slice::from_ref(&row)).await {
            let _ = lock.release().await;
            return Err(e);
        }
        Ok(Self { lake, contract, context, lock, row })
    }

    /// The run's id and start.
    pub fn context(&self) -> &RunContext {
        &self.context
    }

    /// The lake the run writes.
    pub fn lake(&self) -> &'a Lake {
        self.lake
    }

    /// The contract the run writes by.
    pub fn contract(&self) -> &'a Contract {
        self.contract
    }

    /// The lake's lock, for the run's steps to renew as they go.
    pub fn lock(&mut self) -> &mut LakeLock {
        &mut self.lock
    }

    /// Ends the run as `outcome` of this crate's work says (a lost lock records nothing).
    pub async fn finish<T>(self, outcome: &Result<T>) -> Result<()> {
        let ended = match outcome {
            Ok(_) => Ended::Succeeded,
            Err(Error::Locked { .. }) => Ended::LostLock,
            Err(e) => Ended::Failed { message: e.to_string(), step: None },
        };
        self.end(ended).await
    }

    /// Appends the run's final row, with what the steps filled in, and gives the lake back,
    /// even when the row cannot be written.
    pub async fn end(mut self, ended: Ended) -> Result<()> {
        match ended {
            Ended::LostLock => return Ok(()),
            Ended::Succeeded => self.row.status = "SUCCEEDED".into(),
            Ended::Failed { message, step } => {
                self.row.status = "FAILED".into();
                self.row.message = Some(message);
                self.row.failed_step = step;
            }
        }
        self.row.ended_at = Some(chrono::Utc::now().timestamp_micros());
        let recorded = append_rows(self.lake, self.contract, RUNS, std::slice::from_ref(&self.row)).await;
        self.lock.release().await?;
        recorded
    }
}

/// A `_run_files` row.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunFileRow {
    /// Run id.
    pub run_id: String,
    /// The file as listed.
    pub path: String,
    /// Connection.
    pub connection: String,
    /// LOADED, UNCHANGED or FAILED.
    pub status: String,
    /// Bytes.
    pub size_bytes: i64,
    /// UTC microseconds.
    pub modified_at: Option<i64>,
    /// Object-store ETag.
    pub etag: Option<String>,
    /// SHA-256, hex.
    pub content_sha256: String,
    /// An earlier version was replaced.
    pub reloaded: bool,
    /// Records read.
    pub rows_read: i64,
    /// Records written.
    pub rows_written: i64,
    /// Records rejected.
    pub rows_rejected: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// UTC microseconds.
    pub recorded_at: i64,
}

/// A `_run_tables` row.
#[derive(Debug, Clone, Serialize)]
pub struct RunTableRow {
    /// Run id.
    pub run_id: String,
    /// `namespace.table`.
    pub table_name: String,
    /// merge, append, history, overwrite.
    pub write_mode: String,
    /// Rows offered.
    pub rows: i64,
    /// Delta version produced.
    pub version: i64,
    /// UTC microseconds.
    pub committed_at: i64,
}

pub(crate) fn system_table<'a>(contract: &'a Contract, name: &str) -> Result<&'a Table> {
    contract.system_table(name).ok_or_else(|| Error::Internal { message: format!("the contract has no {name} table") })
}

/// Appends `rows` to the system table `name` in one commit.
pub async fn append_rows<S: Serialize>(lake: &Lake, contract: &Contract, name: &str, rows: &[S]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let table = system_table(contract, name)?;
    let internal = |e: &dyn std::fmt::Display| Error::Internal {
        message: format!("{name}: rows do not fit schemas/system/{}.yaml: {e}", name.trim_start_matches('_')),
    };
    let mut decoder =
        arrow::json::ReaderBuilder::new(table.arrow_schema()).build_decoder().map_err(|e| internal(&e))?;
    decoder.serialize(rows).map_err(|e| internal(&e))?;
    let batch: RecordBatch = decoder.flush().map_err(|e| internal(&e))?.ok_or_else(|| internal(&"no rows"))?;
    let delta = lake.delta_table(&table.id).await?;
    delta
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        // A lake made by an older opslake lacks the columns system tables have since gained:
        // they are added (nullable), and its old rows read them as null.
        .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
        .await
        .map_err(|source| Error::Delta { table: name.to_string(), source })?;
    Ok(())
}

pub(crate) async fn query(
    lake: &Lake,
    contract: &Contract,
    tables: &[&str],
    sql: &str,
) -> Result<Option<Vec<RecordBatch>>> {
    let ctx = crate::read::context();
    for name in tables {
        if !crate::read::register(&ctx, lake, system_table(contract, name)?, None).await? {
            return Ok(None);
        }
    }
    Ok(Some(collect(&ctx, sql).await?))
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let df_err = |source| Error::DataFusion { context: "reading the run records".into(), source };
    ctx.sql(sql).await.map_err(df_err)?.collect().await.map_err(df_err)
}

/// The version of each table as the run `run_id` left it: the latest version committed by that
/// run or an earlier one. Fails when no such run is recorded.
pub async fn versions_as_of(lake: &Lake, contract: &Contract, run_id: &str) -> Result<BTreeMap<String, u64>> {
    let id = run_id.replace('\'', "''");
    let known = query(lake, contract, &[RUNS], &format!("SELECT count(*) FROM _runs WHERE run_id = '{id}'")).await?;
    let found = known.as_deref().and_then(|b| b.first()).map(|b| b.column(0).as_primitive::<Int64Type>().value(0));
    if found.unwrap_or(0) == 0 {
        return Err(Error::Location { message: format!("no run {run_id} in this lake; `opslake runs` lists them") });
    }
    // Run ids are UUIDv7: in text order they are in start order.
    let sql = format!("SELECT table_name, max(version) FROM _run_tables WHERE run_id <= '{id}' GROUP BY table_name");
    let mut out = BTreeMap::new();
    for b in query(lake, contract, &[RUN_TABLES], &sql).await?.unwrap_or_default() {
        let names = b.column(0).as_string::<i32>();
        let versions = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if versions.is_valid(i) {
                out.insert(names.value(i).to_string(), versions.value(i) as u64);
            }
        }
    }
    Ok(out)
}

/// The latest state of each run, newest first, at most `limit`.
pub async fn list(lake: &Lake, contract: &Contract, limit: usize) -> Result<Vec<RecordBatch>> {
    let sql = format!(
        "SELECT run_id, command, status, started_at, ended_at, files_loaded, files_skipped, files_failed, rows_read, rows_written, rows_rejected, message \
         FROM (SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY CASE status WHEN 'RUNNING' THEN 1 ELSE 0 END, ended_at DESC NULLS LAST) AS r FROM _runs) \
         WHERE r = 1 ORDER BY run_id DESC LIMIT {limit}"
    );
    Ok(query(lake, contract, &[RUNS], &sql).await?.unwrap_or_default())
}

/// One run in detail: its files and its table commits.
pub async fn show(lake: &Lake, contract: &Contract, run_id: &str) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
    let id = run_id.replace('\'', "''");
    let files = query(
        lake,
        contract,
        &[RUN_FILES],
        &format!(
            "SELECT path, connection, status, reloaded, rows_read, rows_written, rows_rejected, error FROM _run_files WHERE run_id = '{id}' ORDER BY path"
        ),
    )
    .await?
    .unwrap_or_default();
    let tables = query(
        lake,
        contract,
        &[RUN_TABLES],
        &format!(
            "SELECT table_name, write_mode, rows, version FROM _run_tables WHERE run_id = '{id}' ORDER BY table_name"
        ),
    )
    .await?
    .unwrap_or_default();
    Ok((files, tables))
}

/// Reads a whole system table, for tests and tools.
pub async fn read_all(lake: &Lake, contract: &Contract, name: &str) -> Result<Vec<RecordBatch>> {
    Ok(query(lake, contract, &[name], &format!("SELECT * FROM {name}")).await?.unwrap_or_default())
}

/// The number of rows of `batches`.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
