//! Committing staged rows to Delta tables: one commit per table per run.

use std::path::Path;
use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::protocol::SaveMode;
use opslake_schema::{EnvelopeRole, Table, WriteMode};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use crate::{Error, Lake, Result};

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The table.
    pub table: String,
    /// How it was written: merge, append, history or overwrite.
    pub mode: &'static str,
    /// Rows offered to the table after deduplication.
    pub rows: u64,
    /// The Delta version written; `None` when there was nothing to change.
    pub version: Option<u64>,
}

/// What one table's commit must take into account besides its staged rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitPlan<'a> {
    /// Rebuild the table from the staged rows alone (`--full-refresh`).
    pub full_refresh: bool,
    /// The `_source_file` of every stream staged in this run: an append table's rows from
    /// these files are replaced, so loading a file twice never doubles its rows.
    pub files: &'a [String],
    /// Of those, files loaded before with other content: the rows a table holds from them
    /// that they no longer carry are kept and flagged deleted, in every write mode.
    pub reloaded: &'a [String],
    /// The run committing: the flags' `_run_id`.
    pub run_id: &'a str,
    /// When it started, UTC microseconds: the flags' `deleted_at` and `_ingested_at`.
    pub started_at: i64,
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
    // A join emits batches of batch_size rows, not every match at once: one batch of millions
    // of rows is more than a spilling sort after it can reserve.
    ctx.state_ref().write().config_mut().options_mut().execution.enforce_batch_size_in_joins = true;
    Ok(ctx)
}

/// Parquet settings of the lake's data files (and of staged parts, which a first load adopts
/// as they are): zstd, statistics on, row groups small enough to keep the writer's buffer
/// bounded. Identifier columns are set apart. A key (`<entity>_key`, and the `*_key` columns
/// that refer to other records) is a SHA-256 prefix: uniformly random, so its min and max span
/// every file and prune nothing, and one value per record, so a dictionary only fills up and
/// falls back to plain values. `source_id` is one per record too, but a tool's ids often grow
/// with time (Salesforce's do), so its statistics stay. `custom_fields` mixes every unmapped
/// column of every export in one map: no filter prunes files on the min and max of its keys or
/// values, and its values (card ids next to card brands) are mostly distinct, so they get no
/// statistics and no dictionary (docs/decisions.md).
pub(crate) fn writer_properties(table: &Table) -> WriterProperties {
    let mut props = lake_properties();
    for c in &table.columns {
        let key = c.role == Some(EnvelopeRole::EntityKey) || (c.role.is_none() && c.name.ends_with("_key"));
        if key || c.role == Some(EnvelopeRole::SourceId) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), false);
        }
        if key {
            props = props.set_column_statistics_enabled(ColumnPath::from(c.name.as_str()), EnabledStatistics::None);
        }
        if c.role == Some(EnvelopeRole::CustomFields)
            && let arrow::datatypes::DataType::Map(entries, _) = c.ty.arrow()
            && let arrow::datatypes::DataType::Struct(kv) = entries.data_type()
            && let [key, value] = kv.iter().map(|f| f.name().clone()).collect::<Vec<_>>().as_slice()
        {
            let leaf = |l: &str| ColumnPath::new(vec![c.name.clone(), entries.name().clone(), l.to_string()]);
            props = props
                .set_column_statistics_enabled(leaf(key), EnabledStatistics::None)
                .set_column_statistics_enabled(leaf(value), EnabledStatistics::None)
                .set_column_dictionary_enabled(leaf(value), false);
        }
    }
    props.build()
}

/// Rows in a row group of the lake's files. An ingest worker holds the open row group of every
/// table it stages (its compressed pages and dictionaries) until it closes, so this bounds
/// ingest's memory; 64k rows instead of 128k took the peak heap of a 1M-row ingest from 257 to
/// 231 MB for the same CPU (docs/performance.md), and stay near DuckDB's 122,880-row groups.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// A column's dictionary page, in bytes, before it falls back to plain values. Parquet's 1 MiB
/// keeps up to that much per column and open row group, and a column with that many distinct
/// values (names, emails, descriptions) gains little from a dictionary: at 256 KiB the lake
/// came out smaller, not larger (docs/performance.md).
const DICTIONARY_PAGE_BYTES: usize = 256 * 1024;

/// The settings every data file of the lake shares.
fn lake_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
}

/// Opens `table` for a write, first adding the columns a lake made by an older opslake lacks,
/// so that rows in the contract's shape can go in (`upgrade`).
async fn open_table(lake: &Lake, table: &Table) -> Result<DeltaTable> {
    crate::upgrade::add_missing_columns(lake.delta_table(&table.id).await?, table).await
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

/// One table's staged rows.
#[derive(Debug, Clone, Copy)]
pub struct StagedTable<'a> {
    /// The directory of its Parquet parts.
    pub dir: &'a Path,
    /// Keys staged more than once (see `Staging::repeated_keys`); `None` when not known, which
    /// deduplicates every key.
    pub repeated: Option<&'a [String]>,
    /// Rows in the parts.
    pub rows: u64,
}

/// Commits the staged parts of `table` in the table's write mode (see [`CommitPlan`]).
pub async fn commit_table(
    lake: &Lake,
    table: &Table,
    staged: StagedTable<'_>,
    plan: CommitPlan<'_>,
) -> Result<Committed> {
    let parts_dir = staged.dir;
    let distinct = staged.repeated.is_some_and(<[String]>::is_empty);
    // Opened once: a failed attempt commits nothing, so every retry starts from this version.
    let opened = open_table(lake, table).await?;
    if (distinct || table.write_mode == WriteMode::Append)
        && let Some(adopted) = adopt(lake, table, &opened, staged, plan.full_refresh).await?
    {
        return Ok(adopted);
    }
    let opened = &opened;
    with_memory_retries(|memory| async move {
        let name = table.id.to_string();
        let ctx = staged_session(&name, parts_dir, memory).await?;
        let delta = opened.clone();
        let fresh = plan.full_refresh || delta.version().is_none();
        match (table.write_mode, fresh) {
            // A first load where every key came once: each row is its key's only version.
            (WriteMode::History, true) if distinct => {
                let df = ctx.table("staged").await.map_err(df_err(&name))?;
                overwrite(&ctx, delta, table, df, plan.full_refresh).await.map(|c| Committed { mode: "history", ..c })
            }
            (WriteMode::History, _) => history(&ctx, delta, table, parts_dir, plan).await,
            (WriteMode::Merge, true) => {
                let df = deduplicated(&ctx, table, staged.repeated).await?;
                overwrite(&ctx, delta, table, df, plan.full_refresh).await
            }
            (WriteMode::Merge, false) => merge(&ctx, delta, table, staged.repeated, plan).await,
            (WriteMode::Append, true) => {
                let df = ctx.table("staged").await.map_err(df_err(&name))?;
                overwrite(&ctx, delta, table, df, plan.full_refresh).await
            }
            (WriteMode::Append, false) => replace_files(&ctx, delta, table, plan).await,
        }
    })
    .await
}

/// The first commit of a table whose staged rows go in as they are (appended, or every key
/// came once): the staged parts, written with the lake's settings, become its data files and
/// version 0 is made from their footers (schema, row counts, statistics), so no row is decoded
/// or encoded again. `None` when the table exists, or when its directory already holds files
/// (a failed attempt's leftovers, which adopting would take in): the regular write does those.
async fn adopt(
    lake: &Lake,
    table: &Table,
    delta: &DeltaTable,
    staged: StagedTable<'_>,
    full_refresh: bool,
) -> Result<Option<Committed>> {
    use futures::StreamExt;
    let name = table.id.to_string();
    let prefix = object_store::path::Path::from(crate::table_path(&table.id));
    if delta.version().is_some() || lake.store().list(Some(&prefix)).next().await.is_some() {
        return Ok(None);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(staged.dir).map_err(io(staged.dir))? {
        let path = entry.map_err(io(staged.dir))?.path();
        if path.extension().is_some_and(|e| e == "parquet") {
            parts.push(path);
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    parts.sort();
    for part in &parts {
        let stem = part.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // Unique names: a later commit's files never collide with these.
        let file = format!("{stem}-{}.zstd.parquet", uuid::Uuid::now_v7().simple());
        place(lake, part, &prefix.clone().join(file.as_str())).await?;
    }
    let adopted = deltalake::operations::convert_to_delta::ConvertToDeltaBuilder::new()
        .with_log_store(delta.log_store())
        .await
        .map_err(|source| Error::Delta { table: name.clone(), source })?;
    committed(name, commit_label(table, full_refresh), staged.rows, &adopted).map(Some)
}

/// Moves a local file into the lake at `dest`: renamed on the same local disk, else copied or
/// uploaded in parts.
async fn place(lake: &Lake, file: &Path, dest: &object_store::path::Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    if lake.url().scheme() == "file"
        && let Ok(root) = lake.url().to_file_path()
    {
        let target = dest.parts().fold(root, |p, part| p.join(part.as_ref()));
        if std::fs::rename(file, &target).is_ok() {
            return Ok(());
        }
    }
    let store_err = |source| Error::Store { context: format!("writing {dest}"), source };
    let mut from =
        tokio::fs::File::open(file).await.map_err(|source| Error::Io { path: file.to_path_buf(), source })?;
    let mut to = object_store::buffered::BufWriter::new(Arc::clone(lake.store()), dest.clone());
    let copied = async {
        tokio::io::copy(&mut from, &mut to).await?;
        to.shutdown().await
    }
    .await;
    if let Err(source) = copied {
        let _ = to.abort().await;
        return Err(store_err(object_store::Error::Generic { store: "lake", source: Box::new(source) }));
    }
    Ok(())
}

/// Empties a table that a full refresh found no rows for.
pub async fn truncate_table(lake: &Lake, table: &Table) -> Result<Committed> {
    let ctx = session(commit_memory())?;
    let delta = open_table(lake, table).await?;
    let df = ctx
        .read_batch(arrow::array::RecordBatch::new_empty(table.arrow_schema()))
        .map_err(df_err(format!("{}: empty input", table.id)))?;
    overwrite(&ctx, delta, table, df, true).await
}

/// The rows `table` holds from `files`, which were read again in this run and gave the table
/// no rows now: flagged deleted (a history table gets a deleted version of each), or in
/// `_rejects`, which records readings rather than records, deleted. `None` when nothing changed.
pub async fn flag_file_rows(lake: &Lake, table: &Table, plan: CommitPlan<'_>) -> Result<Option<Committed>> {
    let Some(delta) = crate::read::open(lake, table, None).await? else { return Ok(None) };
    let before = delta.version();
    let name = table.id.to_string();
    let delta_err = |source| Error::Delta { table: name.clone(), source };
    let in_files = format!("{} IN ({})", file_column(table), sql_list(plan.reloaded));
    let (after, rows) = if table.id.namespace.is_empty() {
        let (after, metrics) = delta
            .delete()
            .with_predicate(in_files)
            .with_writer_properties(writer_properties(table))
            .await
            .map_err(delta_err)?;
        (after, metrics.num_deleted_rows.unwrap_or_default() as u64)
    } else if table.write_mode == WriteMode::History {
        let ctx = session(commit_memory())?;
        register_target(&ctx, &delta, &name).await?;
        let sql = gone_versions(table, plan, false)?;
        let changes = ctx.sql(&sql).await.map_err(df_err(format!("{name}: versions of rows no longer carried")))?;
        let rows = changes.clone().count().await.map_err(df_err(&name))? as u64;
        if rows == 0 {
            return Ok(None);
        }
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let vf = table.history_column(EnvelopeRole::ValidFrom).map(|c| c.name.clone()).unwrap_or_default();
        return merge_versions(&ctx, delta, table, changes, &columns, &vf, rows).await.map(Some);
    } else {
        let deleted = &table.envelope(EnvelopeRole::IsDeleted).name;
        let ctx = session(commit_memory())?;
        let update = flags(table, plan, "")
            .into_iter()
            .fold(delta.update().with_predicate(format!("{in_files} AND NOT {deleted}")), |u, (c, e)| {
                u.with_update(c, e)
            });
        let (after, metrics) = update
            .with_session_state(Arc::new(ctx.state()))
            .with_writer_properties(writer_properties(table))
            .await
            .map_err(delta_err)?;
        (after, metrics.num_updated_rows as u64)
    };
    if after.version() == before {
        return Ok(None);
    }
    committed(name, write_mode_label(table.write_mode), rows, &after).map(Some)
}

/// How a row is flagged deleted by this run, as `(column, SQL)` over the row at `alias`: the
/// flag, the time (an earlier flag's kept), and the run that wrote the change.
fn flags(table: &Table, plan: CommitPlan<'_>, alias: &str) -> Vec<(String, String)> {
    let name = |r: EnvelopeRole| table.envelope(r).name.clone();
    let now = timestamp_sql(plan.started_at);
    let deleted = name(EnvelopeRole::IsDeleted);
    vec![
        (deleted.clone(), "true".into()),
        (
            name(EnvelopeRole::DeletedAt),
            format!("CASE WHEN {alias}{deleted} THEN {alias}{} ELSE {now} END", name(EnvelopeRole::DeletedAt)),
        ),
        (name(EnvelopeRole::RunId), format!("'{}'", plan.run_id.replace('\'', "''"))),
        (name(EnvelopeRole::IngestedAt), now),
    ]
}

/// A timestamp literal of the lake's type (microseconds, UTC).
fn timestamp_sql(micros: i64) -> String {
    let ty = opslake_schema::ColumnType::Timestamp.arrow();
    format!("arrow_cast({micros}, '{ty}')")
}

/// SQL of every column of the rows at alias `t` (the lake's table, registered as `target`)
/// from the reloaded files that the staged rows (when `staged`) no longer carry, with `set`
/// in place of those columns' values.
fn gone_rows(table: &Table, plan: CommitPlan<'_>, staged: bool, set: &[(String, String)]) -> String {
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| match set.iter().find(|(n, _)| *n == c.name) {
            Some((n, e)) => format!("{e} AS {n}"),
            None => format!("t.{}", c.name),
        })
        .collect();
    let file = file_column(table);
    let not_staged = if staged {
        let on = table.unique_key.iter().map(|k| format!("s.{k} = t.{k}")).collect::<Vec<_>>().join(" AND ");
        format!(" AND NOT EXISTS (SELECT 1 FROM staged s WHERE {on})")
    } else {
        String::new()
    };
    format!("SELECT {} FROM target t WHERE t.{file} IN ({}){not_staged}", cols.join(", "), sql_list(plan.reloaded))
}

/// The history changes that record rows no longer carried: the current version, ended, and a
/// deleted version after it. Columns as [`merge_versions`] takes them, plus `__op`.
fn gone_versions(table: &Table, plan: CommitPlan<'_>, staged: bool) -> Result<String> {
    let role = |r: EnvelopeRole| {
        table.history_column(r).map(|c| c.name.clone()).ok_or_else(|| Error::Internal {
            message: format!("{} is a history table without {}", table.id, r.as_str()),
        })
    };
    let (vf, vt, cur) = (role(EnvelopeRole::ValidFrom)?, role(EnvelopeRole::ValidTo)?, role(EnvelopeRole::IsCurrent)?);
    let deleted = &table.envelope(EnvelopeRole::IsDeleted).name;
    let now = timestamp_sql(plan.started_at);
    // After the current version, even one the source dated in the future: versions never overlap.
    let at = format!("CASE WHEN t.{vf} < {now} THEN {now} ELSE t.{vf} + INTERVAL '1 microsecond' END");
    let null_ts = format!("arrow_cast(NULL, '{}')", opslake_schema::ColumnType::Timestamp.arrow());
    let ended = [(vt.clone(), at.clone()), (cur.clone(), "false".into())];
    let mut deleted_version = flags(table, plan, "t.");
    deleted_version.extend([(vf.clone(), at.clone()), (vt.clone(), null_ts), (cur.clone(), "true".into())]);
    let current = |set: &[(String, String)]| {
        let rows = gone_rows(table, plan, staged, set);
        format!("SELECT *, 'upsert' AS __op FROM ({rows} AND t.{cur} AND NOT t.{deleted})")
    };
    Ok(format!("{} UNION ALL {}", current(&ended), current(&deleted_version)))
}

/// Registers the Delta table `delta` as `target` in `ctx`.
async fn register_target(ctx: &SessionContext, delta: &DeltaTable, name: &str) -> Result<()> {
    delta.update_datafusion_session(&ctx.state()).map_err(|source| Error::Delta { table: name.to_string(), source })?;
    let provider = delta
        .table_provider()
        .with_session(Arc::new(ctx.state()))
        .await
        .map_err(df_err(format!("{name}: reading the current rows")))?;
    ctx.register_table("target", provider).map_err(df_err(format!("{name}: registering the target")))?;
    Ok(())
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

/// The column naming the file a row came from: the envelope's, or `source_file` in `_rejects`.
fn file_column(table: &Table) -> &str {
    if table.id.namespace.is_empty() { "source_file" } else { &table.envelope(EnvelopeRole::SourceFile).name }
}

fn sql_list(values: &[String]) -> String {
    values.iter().map(|v| format!("'{}'", v.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
}

/// The staged rows, one per key: the latest `source_updated_at` wins, ties go to the later file
/// and row. Only the `repeated` keys are sorted; the rows of every other key pass as they are.
async fn deduplicated(ctx: &SessionContext, table: &Table, repeated: Option<&[String]>) -> Result<DataFrame> {
    let name = table.id.to_string();
    let cols = table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let updated = &table.envelope(EnvelopeRole::SourceUpdatedAt).name;
    let file = &table.envelope(EnvelopeRole::SourceFile).name;
    let row = &table.envelope(EnvelopeRole::SourceRow).name;
    let key = table.unique_key.join(", ");
    let ranked = |from: &str| {
        format!(
            "SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {updated} DESC NULLS LAST, \
             {file} DESC, {row} DESC) AS __rank FROM {from}) WHERE __rank = 1"
        )
    };
    let sql = match (repeated, table.unique_key.as_slice()) {
        (Some([]), _) => return ctx.table("staged").await.map_err(df_err(name)),
        (Some(keys), [k]) => {
            let list = Arc::new(arrow::array::StringArray::from_iter_values(keys.iter()));
            let batch = arrow::array::RecordBatch::try_from_iter([("__key", list as arrow::array::ArrayRef)])
                .map_err(|e| Error::Internal { message: format!("{name}: repeated keys: {e}") })?;
            ctx.register_batch("repeated_keys", batch).map_err(df_err(format!("{name}: repeated keys")))?;
            format!(
                "SELECT {cols} FROM staged WHERE {k} NOT IN (SELECT __key FROM repeated_keys) UNION ALL {}",
                ranked(&format!("(SELECT * FROM staged WHERE {k} IN (SELECT __key FROM repeated_keys))"))
            )
        }
        _ => ranked("staged"),
    };
    ctx.sql(&sql).await.map_err(df_err(format!("{name}: deduplicating")))
}

/// Staged rows above which a merge joins by sorting (and spilling) instead of hashing: the
/// hash join holds the whole staged side in memory, 6.4 GB for 5M rows, while a delta of
/// 100k rows is joined fastest by hash (docs/decisions.md, "Write strategy at scale").
/// `OPSLAKE_SORT_MERGE_ROWS` overrides it.
const SORT_MERGE_ROWS: u64 = 1_000_000;

fn sort_merge_rows() -> u64 {
    std::env::var("OPSLAKE_SORT_MERGE_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(SORT_MERGE_ROWS)
}

/// Merge by key. A staged row replaces the lake's row with the same key unless the lake's is
/// known to be newer; rows that came from a reloaded file and are no longer in it are flagged.
async fn merge(
    ctx: &SessionContext,
    delta: DeltaTable,
    table: &Table,
    repeated: Option<&[String]>,
    plan: CommitPlan<'_>,
) -> Result<Committed> {
    let name = table.id.to_string();
    let cols: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let updated = &table.envelope(EnvelopeRole::SourceUpdatedAt).name;
    let staged = ctx.table("staged").await.map_err(df_err(&name))?.count().await.map_err(df_err(&name))? as u64;
    if staged > sort_merge_rows() {
        ctx.state_ref().write().config_mut().options_mut().optimizer.prefer_hash_join = false;
    }
    let df = deduplicated(ctx, table, repeated).await?;
    let delta_err = |source| Error::Delta { table: name.clone(), source };
    let on = table.unique_key.iter().map(|k| format!("target.{k} = source.{k}")).collect::<Vec<_>>().join(" AND ");
    let newer = format!("source.{updated} IS NULL OR target.{updated} IS NULL OR source.{updated} >= target.{updated}");
    let mut builder = merge_into(delta, writer_properties(table), df, on, ctx)
        .when_matched_update(|u| {
            cols.iter().fold(u.predicate(newer.as_str()), |u, c| u.update(*c, format!("source.{c}")))
        })
        .map_err(delta_err)?
        .when_not_matched_insert(|i| cols.iter().fold(i, |i, c| i.set(*c, format!("source.{c}"))))
        .map_err(delta_err)?;
    if !plan.reloaded.is_empty() {
        let deleted = &table.envelope(EnvelopeRole::IsDeleted).name;
        let gone = format!("target.{} IN ({}) AND NOT target.{deleted}", file_column(table), sql_list(plan.reloaded));
        builder = builder
            .when_not_matched_by_source_update(|u| {
                flags(table, plan, "target.").into_iter().fold(u.predicate(gone), |u, (c, e)| u.update(c, e))
            })
            .map_err(delta_err)?;
    }
    let (merged, metrics) = builder.await.map_err(delta_err)?;
    committed(name, "merge", metrics.num_source_rows as u64, &merged)
}

/// Append by file: the staged rows replace whatever rows the table holds from the same files,
/// in one commit, so reloading a file (or rerunning after a crash) never doubles its rows; the
/// rows a reloaded file no longer carries are kept, flagged.
async fn replace_files(
    ctx: &SessionContext,
    delta: DeltaTable,
    table: &Table,
    plan: CommitPlan<'_>,
) -> Result<Committed> {
    let name = table.id.to_string();
    let canonical = !table.id.namespace.is_empty();
    let df = if canonical && !plan.reloaded.is_empty() {
        // The rows of a reloaded file that it no longer carries stay, flagged, beside its rows now.
        register_target(ctx, &delta, &name).await?;
        let cols = table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        let sql =
            format!("SELECT {cols} FROM staged UNION ALL {}", gone_rows(table, plan, true, &flags(table, plan, "t.")));
        ctx.sql(&sql).await.map_err(df_err(format!("{name}: rows reloaded files no longer carry")))?
    } else {
        ctx.table("staged").await.map_err(df_err(&name))?
    };
    let predicate = format!("{} IN ({})", file_column(table), sql_list(plan.files));
    let delta_err = |source| Error::Delta { table: name.clone(), source };
    let written = write_from(delta, writer_properties(table), &df, ctx, SaveMode::Overwrite)
        .with_replace_where(predicate)
        .await
        .map_err(delta_err)?;
    // The commit's own count: counting the staged rows first would read them twice.
    let rows = added_rows(&written).await.map_err(delta_err)?;
    committed(name, "append", rows, &written)
}

/// Writes `df` as the table's whole content: a new table, or a full refresh.
async fn overwrite(
    ctx: &SessionContext,
    delta: DeltaTable,
    table: &Table,
    df: DataFrame,
    full_refresh: bool,
) -> Result<Committed> {
    let name = table.id.to_string();
    let mode = if full_refresh { SaveMode::Overwrite } else { SaveMode::Append };
    let written = write_from(delta, writer_properties(table), &df, ctx, mode)
        .await
        .map_err(|source| Error::Delta { table: name.clone(), source })?;
    let label = commit_label(table, full_refresh);
    // The commit's own count: counting `df` first would run its plan (a dedupe sort) twice.
    let rows = added_rows(&written).await.map_err(|source| Error::Delta { table: name.clone(), source })?;
    committed(name, label, rows, &written)
}

/// Rows the latest commit of `table` added, from its operation metrics.
async fn added_rows(table: &DeltaTable) -> std::result::Result<u64, deltalake::DeltaTableError> {
    use futures::TryStreamExt;
    let mut history: Vec<_> = table.history(Some(1)).try_collect().await?;
    let rows = history
        .first_mut()
        .and_then(|c| c.info.remove("operationMetrics"))
        .and_then(|m| m.get("num_added_rows").and_then(serde_json::Value::as_u64));
    rows.ok_or_else(|| deltalake::DeltaTableError::Generic("the commit has no num_added_rows metric".into()))
}

/// How a commit that writes a table's whole content is reported: a full refresh overwrites,
/// a first load is named after the table's write mode.
fn commit_label(table: &Table, full_refresh: bool) -> &'static str {
    if full_refresh { "overwrite" } else { write_mode_label(table.write_mode) }
}

fn write_mode_label(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Merge => "merge",
        WriteMode::Append => "append",
        WriteMode::History => "history",
    }
}

/// History (SCD type 2). The staged versions and the lake's versions of the same keys are
/// lined up by `valid_from`; a version whose own columns equal the previous version's is
/// dropped (a daily snapshot that did not change adds nothing); `valid_to` is the next
/// version's `valid_from`. Only the differences are merged in: new versions inserted, closed
/// versions updated, versions made redundant deleted.
///
/// The decisions are made on narrow rows (key, `valid_from`, a hash of the version, where the
/// row is) and written to a scratch Parquet file; only the rows that change are then joined
/// back to their full columns. Sorting the full rows instead needed tens of GB at 5M rows
/// (docs/decisions.md, "Write strategy at scale").
async fn history(
    ctx: &SessionContext,
    delta: DeltaTable,
    table: &Table,
    parts_dir: &Path,
    plan: CommitPlan<'_>,
) -> Result<Committed> {
    let full_refresh = plan.full_refresh;
    let name = table.id.to_string();
    let role = |r: EnvelopeRole| {
        table
            .history_column(r)
            .map(|c| c.name.clone())
            .ok_or_else(|| Error::Internal { message: format!("{name} is a history table without {}", r.as_str()) })
    };
    let (vf, vt, cur) = (role(EnvelopeRole::ValidFrom)?, role(EnvelopeRole::ValidTo)?, role(EnvelopeRole::IsCurrent)?);
    let file = &table.envelope(EnvelopeRole::SourceFile).name;
    let row = &table.envelope(EnvelopeRole::SourceRow).name;
    let keys = &table.unique_key;
    let key = keys.join(", ");
    let history_roles = [EnvelopeRole::ValidFrom, EnvelopeRole::ValidTo, EnvelopeRole::IsCurrent];
    let base: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !c.role.is_some_and(|r| history_roles.contains(&r)))
        .map(|c| c.name.as_str())
        .collect();
    // What a version is: the table's own columns and the deletion flags. Envelope columns that
    // describe the load (file, row, run) do not make a new version; custom_fields is a map,
    // which has no text form to compare.
    let hash = |alias: &str| {
        let tracked: Vec<String> = table
            .columns
            .iter()
            .filter(|c| c.role.is_none() || matches!(c.role, Some(EnvelopeRole::IsDeleted | EnvelopeRole::DeletedAt)))
            .map(|c| format!("coalesce(CAST({alias}{} AS VARCHAR), chr(0))", c.name))
            .collect();
        format!("md5(concat_ws(chr(31), {}))", tracked.join(", "))
    };
    let prefixed =
        |alias: &str, cols: &[&str]| cols.iter().map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ");
    let key_cols: Vec<&str> = keys.iter().map(String::as_str).collect();
    let fresh = full_refresh || delta.version().is_none();
    // Narrow rows: the sort carries the key, valid_from, a hash of the version and where the row
    // is, never the wide columns. Every staged version is here; the latest read of a
    // (key, valid_from) is picked while deciding.
    let narrow_staged = format!(
        "SELECT {key}, {vf}, CAST({file} AS VARCHAR) AS __file, CAST({row} AS BIGINT) AS __row, {h} AS __h, \
         CAST(NULL AS TIMESTAMP) AS __old_vt, CAST(NULL AS BOOLEAN) AS __old_cur, 1 AS __new FROM staged",
        h = hash("")
    );
    let all = if fresh {
        narrow_staged
    } else {
        delta.update_datafusion_session(&ctx.state()).map_err(|source| Error::Delta { table: name.clone(), source })?;
        let provider = delta
            .table_provider()
            .with_session(Arc::new(ctx.state()))
            .await
            .map_err(df_err(format!("{name}: reading the current versions")))?;
        ctx.register_table("target", provider).map_err(df_err(format!("{name}: registering the target")))?;
        // Every lake version, narrow: a key no staged row has decides nothing in the pass, and
        // a semi-join to skip those keys emitted batches too large for the sort after it.
        format!(
            "{narrow_staged} UNION ALL SELECT {tk}, t.{vf}, CAST(NULL AS VARCHAR) AS __file, CAST(NULL AS BIGINT) AS __row, \
             {h} AS __h, t.{vt} AS __old_vt, t.{cur} AS __old_cur, 0 AS __new FROM target t",
            tk = prefixed("t", &key_cols),
            h = hash("t."),
        )
    };
    // Sorted narrow rows, decided in one pass (see `versions`): DataFusion's window functions
    // over these rows emitted batches whose accounted size grew past any memory pool at 5M rows.
    let key_text: Vec<String> = keys.iter().map(|k| format!("CAST({k} AS VARCHAR) AS {k}")).collect();
    let sorted = ctx
        .sql(&format!(
            "SELECT {kt}, {vf}, __file, __row, __h, __old_vt, __old_cur, __new FROM ({all}) \
             ORDER BY {key}, {vf}, __new, __file DESC, __row DESC",
            kt = key_text.join(", ")
        ))
        .await
        .map_err(df_err(format!("{name}: ordering versions")))?;
    let scratch = parts_dir.with_extension("history");
    let _ = std::fs::remove_dir_all(&scratch);
    let rows = crate::versions::decide(sorted, keys, &vf, &scratch).await?;
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let column_list = columns.join(", ");
    // Keys a reloaded file no longer carries have no staged version, so no decision: their
    // ending and deleted versions are changes of their own.
    let gone = match fresh || plan.reloaded.is_empty() {
        true => None,
        false => {
            let sql = format!("SELECT {column_list}, __op FROM ({})", gone_versions(table, plan, true)?);
            let df = ctx.sql(&sql).await.map_err(df_err(format!("{name}: versions of rows no longer carried")))?;
            let n = df.clone().count().await.map_err(df_err(&name))? as u64;
            (n > 0).then_some((sql, n))
        }
    };
    if rows == 0 && !fresh {
        let _ = std::fs::remove_dir_all(&scratch);
        return match gone {
            None => Ok(Committed { table: name, mode: "history", rows, version: None }),
            Some((sql, n)) => {
                let changes = ctx.sql(&sql).await.map_err(df_err(&name))?;
                merge_versions(ctx, delta, table, changes, &columns, &vf, n).await
            }
        };
    }
    let scratch_url = format!("{}/", scratch.to_string_lossy());
    ctx.register_parquet("decisions", &scratch_url, ParquetReadOptions::default())
        .await
        .map_err(df_err(format!("{name}: reading version decisions")))?;
    // The full rows of the decisions: staged rows by where they were read, lake rows by key.
    let outputs = format!("d.{vf}, d.__vt AS {vt}, d.__cur AS {cur}, d.__op AS __op");
    let key_match = |alias: &str| {
        key_cols.iter().map(|k| format!("CAST({alias}.{k} AS VARCHAR) = d.{k}")).collect::<Vec<_>>().join(" AND ")
    };
    let from_staged = format!(
        "SELECT {sb}, {outputs} FROM decisions d JOIN staged s \
         ON d.__new = 1 AND CAST(s.{file} AS VARCHAR) = d.__file AND CAST(s.{row} AS BIGINT) = d.__row AND {sk} AND s.{vf} = d.{vf}",
        sb = prefixed("s", &base),
        sk = key_match("s"),
    );
    let mut sql = if fresh {
        from_staged
    } else {
        format!(
            "{from_staged} UNION ALL SELECT {tb}, {outputs} FROM decisions d JOIN target t \
             ON d.__new = 0 AND {tk} AND t.{vf} = d.{vf}",
            tb = prefixed("t", &base),
            tk = key_match("t"),
        )
    };
    let mut rows = rows;
    if let Some((gone, n)) = gone {
        sql = format!("SELECT {column_list}, __op FROM ({sql}) UNION ALL {gone}");
        rows += n;
    }
    let changes = ctx.sql(&sql).await.map_err(df_err(format!("{name}: joining version decisions")))?;
    let result = if fresh {
        let select = columns.iter().map(|c| datafusion::prelude::col(*c)).collect::<Vec<_>>();
        let df = changes.select(select).map_err(df_err(&name))?;
        overwrite(ctx, delta, table, df, full_refresh).await.map(|c| Committed { mode: "history", ..c })
    } else {
        merge_versions(ctx, delta, table, changes, &columns, &vf, rows).await
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Merges history changes (rows with `__op` upsert or delete) on key and `valid_from`.
async fn merge_versions(
    ctx: &SessionContext,
    delta: DeltaTable,
    table: &Table,
    changes: DataFrame,
    columns: &[&str],
    vf: &str,
    rows: u64,
) -> Result<Committed> {
    let name = table.id.to_string();
    let delta_err = |source| Error::Delta { table: name.clone(), source };
    let on = table
        .unique_key
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(vf))
        .map(|k| format!("target.{k} = source.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (merged, _metrics) = merge_into(delta, writer_properties(table), changes, on, ctx)
        .when_matched_delete(|d| d.predicate("source.__op = 'delete'"))
        .map_err(delta_err)?
        .when_matched_update(|u| {
            columns.iter().fold(u.predicate("source.__op = 'upsert'"), |u, c| u.update(*c, format!("source.{c}")))
        })
        .map_err(delta_err)?
        .when_not_matched_insert(|i| {
            columns.iter().fold(i.predicate("source.__op = 'upsert'"), |i, c| i.set(*c, format!("source.{c}")))
        })
        .map_err(delta_err)?
        .await
        .map_err(delta_err)?;
    committed(name, "history", rows, &merged)
}

/// A write of the rows of `df` into `delta` in `mode`, planned in `ctx`.
fn write_from(
    delta: DeltaTable,
    props: WriterProperties,
    df: &DataFrame,
    ctx: &SessionContext,
    mode: SaveMode,
) -> deltalake::operations::write::WriteBuilder {
    delta
        .write(Vec::new())
        .with_input_plan(df.logical_plan().clone())
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(mode)
        .with_writer_properties(props)
}

/// A merge of `source` into `delta` on `on` (aliases `source` and `target`), planned in `ctx`.
fn merge_into(
    delta: DeltaTable,
    props: WriterProperties,
    source: DataFrame,
    on: String,
    ctx: &SessionContext,
) -> deltalake::operations::merge::MergeBuilder {
    delta
        .merge(source, on)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_session_state(Arc::new(ctx.state()))
        .with_writer_properties(props)
}

fn committed(table: String, mode: &'static str, rows: u64, result: &DeltaTable) -> Result<Committed> {
    let version =
        result.version().ok_or_else(|| Error::Internal { message: format!("{table}: no version after commit") })?;
    Ok(Committed { table, mode, rows, version: Some(version) })
}

/// How a derived relation (a model, a test's failing rows) is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationWrite {
    /// The query's rows become the table's whole content; its schema may change.
    Replace,
    /// The query's rows are added.
    Append,
    /// Rows whose key matches a row of the table replace it; the others are added.
    Merge {
        /// The key columns.
        keys: Vec<String>,
    },
}

/// Writes the rows of `df` (planned in `ctx`, whose functions and tables it may use) to the
/// Delta table `id`. Returns the commit: the rows written and the version.
pub async fn write_relation(
    lake: &Lake,
    id: &opslake_schema::TableId,
    ctx: &SessionContext,
    df: DataFrame,
    how: &RelationWrite,
) -> Result<Committed> {
    let name = id.to_string();
    let delta = lake.delta_table(id).await?;
    let delta_err = |source| Error::Delta { table: name.clone(), source };
    match how {
        RelationWrite::Replace | RelationWrite::Append => {
            let (mode, label) = if *how == RelationWrite::Replace {
                (SaveMode::Overwrite, "replace")
            } else {
                (SaveMode::Append, "append")
            };
            let mut write = write_from(delta, lake_properties().build(), &df, ctx, mode);
            if mode == SaveMode::Overwrite {
                // A model's columns change with its SQL; a rebuild takes the new schema.
                write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite);
            }
            let written = write.await.map_err(delta_err)?;
            let rows = added_rows(&written).await.map_err(delta_err)?;
            committed(name, label, rows, &written)
        }
        RelationWrite::Merge { keys } => {
            let cols: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
            let on = keys.iter().map(|k| format!("target.\"{k}\" = source.\"{k}\"")).collect::<Vec<_>>().join(" AND ");
            let (merged, metrics) = merge_into(delta, lake_properties().build(), df, on, ctx)
                .when_matched_update(|u| {
                    cols.iter().fold(u, |u, c| u.update(format!("\"{c}\""), format!("source.\"{c}\"")))
                })
                .map_err(delta_err)?
                .when_not_matched_insert(|i| {
                    cols.iter().fold(i, |i, c| i.set(format!("\"{c}\""), format!("source.\"{c}\"")))
                })
                .map_err(delta_err)?
                .await
                .map_err(delta_err)?;
            let rows = (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64;
            committed(name, "merge", rows, &merged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Encoding;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn lake_files_have_bounded_row_groups_and_dictionaries() {
        // 8,000 distinct 64-byte names, over and over: a dictionary page of 544,000 bytes (each
        // value after its 4-byte length), which Parquet's default 1 MiB limit keeps whole.
        let rows = ROW_GROUP_ROWS + 10;
        let names: StringArray = (0..rows).map(|i| Some(format!("{:064}", i % 8_000))).collect();
        let batch = RecordBatch::try_from_iter([("name", Arc::new(names) as ArrayRef)]).expect("batch");
        let file = tempfile::tempfile().expect("temp file");
        let mut writer =
            ArrowWriter::try_new(file.try_clone().expect("clone"), batch.schema(), Some(lake_properties().build()))
                .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");

        let reader = SerializedFileReader::new(file).expect("reader");
        let sizes: Vec<i64> = reader.metadata().row_groups().iter().map(|rg| rg.num_rows()).collect();
        assert_eq!(sizes, vec![ROW_GROUP_ROWS as i64, 10]);

        let mut pages = reader.get_row_group(0).expect("row group").get_column_page_reader(0).expect("pages");
        let mut dictionary = None;
        let mut plain_pages = 0;
        while let Some(page) = pages.get_next_page().expect("page") {
            match page {
                Page::DictionaryPage { buf, .. } => dictionary = Some(buf.len()),
                Page::DataPage { encoding: Encoding::PLAIN, .. }
                | Page::DataPageV2 { encoding: Encoding::PLAIN, .. } => plain_pages += 1,
                _ => {}
            }
        }
        let dictionary = dictionary.expect("the column starts with a dictionary");
        // The writer checks the limit after each value it adds, so the page may end one over.
        let whole = 8_000 * (4 + 64);
        assert!(
            dictionary < whole && dictionary <= DICTIONARY_PAGE_BYTES + 68,
            "dictionary page of {dictionary} bytes"
        );
        assert!(plain_pages > 0, "the column falls back to plain values once its dictionary is full");
    }
}
