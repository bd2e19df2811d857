//! Committing staged rows to Delta tables: one commit per table per run.

use std::path::Path;
use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::protocol::SaveMode;
use opslake_schema::{EnvelopeRole, Table};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::{Error, Lake, Result};

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The table.
    pub table: String,
    /// Rows offered to the table after deduplication by key.
    pub rows: u64,
    /// The Delta version written.
    pub version: u64,
}

/// Memory (MiB) the commit of one table may hold before DataFusion spills to local disk: the
/// dedupe sorts every staged row, so without a limit memory would grow with the input.
/// `OPSLAKE_COMMIT_MEMORY_MB` overrides it.
const COMMIT_MEMORY_MB: usize = 64;

fn commit_memory() -> usize {
    let mb = std::env::var("OPSLAKE_COMMIT_MEMORY_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(COMMIT_MEMORY_MB);
    mb * 1024 * 1024
}

fn session(memory: usize) -> Result<SessionContext> {
    // Delta's planner runs the write and merge nodes. Staged Parquet is read back with the
    // contract's types (Utf8, not views), so what lands in the Delta log is the contract's schema.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
        .build_arc()
        .map_err(|source| Error::DataFusion { context: "commit session".into(), source })?;
    let ctx = DeltaSessionContext::with_runtime_env(runtime).into_inner();
    ctx.state_ref().write().config_mut().options_mut().execution.parquet.schema_force_view_types = false;
    Ok(ctx)
}

/// Parquet settings of the lake's data files: zstd, statistics on, row groups small enough to
/// keep the writer's buffer bounded.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
}

async fn open_table(lake: &Lake, table: &Table) -> Result<DeltaTable> {
    let url = lake.table_url(&table.id);
    if url.scheme() == "file"
        && let Ok(path) = url.to_file_path()
    {
        std::fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
    }
    DeltaTable::try_from_url(url).await.map_err(|source| Error::Delta { table: table.id.to_string(), source })
}

/// A commit session with the staged parts of one table registered as `staged`.
async fn staged_session(name: &str, parts_dir: &Path, memory: usize) -> Result<SessionContext> {
    let ctx = session(memory)?;
    let dir = parts_dir.to_string_lossy().into_owned();
    ctx.register_parquet("staged", &dir, ParquetReadOptions::default())
        .await
        .map_err(df_err(format!("{name}: reading staged rows")))?;
    Ok(ctx)
}

fn df_err(context: impl Into<String>) -> impl FnOnce(datafusion::error::DataFusionError) -> Error {
    let context = context.into();
    move |source| Error::DataFusion { context, source }
}

/// Merges the staged parts of `table` into its Delta table. Rows are first deduplicated by the
/// unique key: the latest `source_updated_at` wins, ties go to the later file and row. A row
/// then replaces the lake's row with the same key unless the lake's is known to be newer.
pub async fn merge_table(lake: &Lake, table: &Table, parts_dir: &Path) -> Result<Committed> {
    with_memory_retries(|memory| merge_once(lake, table, parts_dir, memory)).await
}

/// Runs a commit with the configured memory, and again with 8 times as much when a single
/// batch does not fit (a 100 MB cell): spilling bounds memory for many rows, not for one row.
/// A failed attempt commits nothing; its data files are unreferenced and vacuum removes them.
async fn with_memory_retries<F, Fut>(mut attempt: F) -> Result<Committed>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Committed>>,
{
    let mut memory = commit_memory();
    loop {
        match attempt(memory).await {
            Err(e) if memory < MAX_COMMIT_MEMORY && e.to_string().contains("Resources exhausted") => memory *= 8,
            other => return other,
        }
    }
}

/// The largest memory pool a commit grows to before giving up.
const MAX_COMMIT_MEMORY: usize = 16 * 1024 * 1024 * 1024;

async fn merge_once(lake: &Lake, table: &Table, parts_dir: &Path, memory: usize) -> Result<Committed> {
    let name = table.id.to_string();
    let ctx = staged_session(&name, parts_dir, memory).await?;
    let cols: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let updated = &table.envelope(EnvelopeRole::SourceUpdatedAt).name;
    let file = &table.envelope(EnvelopeRole::SourceFile).name;
    let row = &table.envelope(EnvelopeRole::SourceRow).name;
    let key = table.unique_key.join(", ");
    let sql = format!(
        "SELECT {} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {updated} DESC NULLS LAST, {file} DESC, {row} DESC) AS __rank FROM staged) WHERE __rank = 1",
        cols.join(", ")
    );
    let df = ctx.sql(&sql).await.map_err(df_err(format!("{name}: deduplicating")))?;
    let rows = df.clone().count().await.map_err(df_err(format!("{name}: counting")))? as u64;
    let delta = open_table(lake, table).await?;
    let delta_err = |source| Error::Delta { table: name.clone(), source };
    let result = if delta.version().is_none() {
        append(delta, &ctx, &df, &name).await?
    } else {
        let on = table.unique_key.iter().map(|k| format!("target.{k} = source.{k}")).collect::<Vec<_>>().join(" AND ");
        let newer =
            format!("source.{updated} IS NULL OR target.{updated} IS NULL OR source.{updated} >= target.{updated}");
        let (merged, _metrics) = delta
            .merge(df, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_session_state(Arc::new(ctx.state()))
            .with_writer_properties(writer_properties())
            .when_matched_update(|u| {
                cols.iter().fold(u.predicate(newer.as_str()), |u, c| u.update(*c, format!("source.{c}")))
            })
            .map_err(delta_err)?
            .when_not_matched_insert(|i| cols.iter().fold(i, |i, c| i.set(*c, format!("source.{c}"))))
            .map_err(delta_err)?
            .await
            .map_err(delta_err)?;
        merged
    };
    committed(name, rows, &result)
}

/// Appends the staged parts of a system table (`_rejects`).
pub async fn append_table(lake: &Lake, table: &Table, parts_dir: &Path) -> Result<Committed> {
    with_memory_retries(|memory| append_once(lake, table, parts_dir, memory)).await
}

async fn append_once(lake: &Lake, table: &Table, parts_dir: &Path, memory: usize) -> Result<Committed> {
    let name = table.id.to_string();
    let ctx = staged_session(&name, parts_dir, memory).await?;
    let df = ctx.table("staged").await.map_err(df_err(&name))?;
    let rows = df.clone().count().await.map_err(df_err(&name))? as u64;
    let delta = open_table(lake, table).await?;
    let result = append(delta, &ctx, &df, &name).await?;
    committed(name, rows, &result)
}

/// Appends the rows of `df` to `delta` (creating the table on its first write) in one commit.
async fn append(delta: DeltaTable, ctx: &SessionContext, df: &DataFrame, name: &str) -> Result<DeltaTable> {
    delta
        .write(Vec::new())
        .with_input_plan(df.logical_plan().clone())
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Append)
        .with_writer_properties(writer_properties())
        .await
        .map_err(|source| Error::Delta { table: name.to_string(), source })
}

fn committed(table: String, rows: u64, result: &DeltaTable) -> Result<Committed> {
    let version =
        result.version().ok_or_else(|| Error::Internal { message: format!("{table}: no version after commit") })?;
    Ok(Committed { table, rows, version })
}
