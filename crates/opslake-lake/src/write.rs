//! Committing staged rows to Delta tables: one commit per table per run.

use std::path::Path;
use std::sync::Arc;

use std::collections::HashMap;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::protocol::SaveMode;
use opslake_schema::{EnvelopeRole, Table};

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

fn session() -> Result<SessionContext> {
    // Delta's planner runs the write and merge nodes. Staged Parquet is read back with the
    // contract's types (Utf8, not views), so what lands in the Delta log is the contract's schema.
    let overrides =
        HashMap::from([("datafusion.execution.parquet.schema_force_view_types".to_string(), "false".to_string())]);
    let ctx = DeltaSessionContext::new_with_session_overrides(&overrides)
        .map_err(|source| Error::Delta { table: "session".into(), source })?;
    Ok(ctx.into_inner())
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

fn df_err(context: impl Into<String>) -> impl FnOnce(datafusion::error::DataFusionError) -> Error {
    let context = context.into();
    move |source| Error::DataFusion { context, source }
}

/// Merges the staged parts of `table` into its Delta table. Rows are first deduplicated by the
/// unique key: the latest `source_updated_at` wins, ties go to the later file and row. A row
/// then replaces the lake's row with the same key unless the lake's is known to be newer.
pub async fn merge_table(lake: &Lake, table: &Table, parts_dir: &Path) -> Result<Committed> {
    let name = table.id.to_string();
    let ctx = session()?;
    let dir = parts_dir.to_string_lossy().into_owned();
    ctx.register_parquet("staged", &dir, ParquetReadOptions::default())
        .await
        .map_err(df_err(format!("{name}: reading staged rows")))?;
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
        delta
            .write(Vec::new())
            .with_input_plan(df.logical_plan().clone())
            .with_session_state(Arc::new(ctx.state()))
            .with_save_mode(SaveMode::Append)
            .await
            .map_err(delta_err)?
    } else {
        let on = table.unique_key.iter().map(|k| format!("target.{k} = source.{k}")).collect::<Vec<_>>().join(" AND ");
        let newer =
            format!("source.{updated} IS NULL OR target.{updated} IS NULL OR source.{updated} >= target.{updated}");
        let (merged, _metrics) = delta
            .merge(df, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_session_state(Arc::new(ctx.state()))
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
    let version =
        result.version().ok_or_else(|| Error::Internal { message: format!("{name}: no version after commit") })?;
    Ok(Committed { table: name, rows, version })
}

/// Appends the staged parts of a system table (`_rejects`).
pub async fn append_table(lake: &Lake, table: &Table, parts_dir: &Path) -> Result<Committed> {
    let name = table.id.to_string();
    let ctx = session()?;
    let dir = parts_dir.to_string_lossy().into_owned();
    ctx.register_parquet("staged", &dir, ParquetReadOptions::default())
        .await
        .map_err(df_err(format!("{name}: reading staged rows")))?;
    let df = ctx.table("staged").await.map_err(df_err(&name))?;
    let rows = df.clone().count().await.map_err(df_err(&name))? as u64;
    let delta = open_table(lake, table).await?;
    let result = delta
        .write(Vec::new())
        .with_input_plan(df.logical_plan().clone())
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Append)
        .await
        .map_err(|source| Error::Delta { table: name.clone(), source })?;
    let version =
        result.version().ok_or_else(|| Error::Internal { message: format!("{name}: no version after commit") })?;
    Ok(Committed { table: name, rows, version })
}
