//! Schema drift records: `_layouts`, the layout each connection's files of a shape are
//! compared with, and `_drift`, every difference a run found. What counts as drift and what
//! a policy does with it is the ingest crate's; this module stores and reads the records.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use opslake_schema::Contract;
use serde::Serialize;

use crate::runs::{append_rows, query};
use crate::{Lake, Result};

/// One row per drift event.
pub const DRIFT: &str = "_drift";
/// One row per change of a connection and shape's accepted layout.
pub const LAYOUTS: &str = "_layouts";

/// A `_drift` row. Field names are the table's columns (schemas/system/drift.yaml).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriftRow {
    /// The run that read the file.
    pub run_id: String,
    /// Connection.
    pub connection: String,
    /// The file.
    pub path: String,
    /// `tool.shape`.
    pub shape: String,
    /// MISSING_COLUMN, RENAMED_COLUMN, NEW_COLUMN or UNPARSED_COLUMN.
    pub kind: String,
    /// The column concerned.
    pub column_name: String,
    /// What changed, for people.
    pub detail: String,
    /// evolve, freeze or quarantine.
    pub policy: String,
    /// LOADED, FAILED or HELD.
    pub action: String,
    /// The file's columns, a JSON array.
    pub layout: String,
    /// The accepted layout compared with, a JSON array.
    pub accepted_layout: Option<String>,
    /// UTC microseconds.
    pub recorded_at: i64,
}

/// A `_layouts` row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayoutRow {
    /// Connection.
    pub connection: String,
    /// `tool.shape`.
    pub shape: String,
    /// The accepted columns, a JSON array.
    pub columns: String,
    /// FIRST_LOAD, EVOLVED or ACCEPTED.
    pub how: String,
    /// The file whose layout it is.
    pub path: Option<String>,
    /// The run (or `drift accept`) that recorded it.
    pub run_id: String,
    /// UTC microseconds.
    pub accepted_at: i64,
}

/// The accepted layout of one connection and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its columns, in file order.
    pub columns: Vec<String>,
    /// The file it was taken from.
    pub path: Option<String>,
    /// When, UTC microseconds.
    pub accepted_at: i64,
}

/// `(connection, shape)`.
pub type LayoutKey = (String, String);

/// The latest accepted layout of every connection and shape; empty for a lake that has none.
pub async fn accepted_layouts(lake: &Lake, contract: &Contract) -> Result<BTreeMap<LayoutKey, Accepted>> {
    let sql = "SELECT connection, shape, columns, path, CAST(accepted_at AS BIGINT) FROM \
               (SELECT *, row_number() OVER (PARTITION BY connection, shape ORDER BY accepted_at DESC, run_id DESC) AS r \
                FROM _layouts) WHERE r = 1";
    let mut out = BTreeMap::new();
    for b in query(lake, contract, &[LAYOUTS], sql).await?.unwrap_or_default() {
        let (connection, shape, columns) =
            (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>());
        let path = b.column(3).as_string::<i32>();
        let at = b.column(4).as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            out.insert(
                (connection.value(i).to_string(), shape.value(i).to_string()),
                Accepted {
                    columns: parse_columns(columns.value(i))?,
                    path: path.is_valid(i).then(|| path.value(i).to_string()),
                    accepted_at: at.value(i),
                },
            );
        }
    }
    Ok(out)
}

/// The drift events not yet settled: those recorded since each connection and shape's layout
/// was last set by a first load or `drift accept` (an `evolve` that took new columns in
/// settles nothing: its events stay listed until someone looks). With `all`, every event.
/// Oldest first.
pub async fn events(lake: &Lake, contract: &Contract, connection: Option<&str>, all: bool) -> Result<Vec<RecordBatch>> {
    let filter = connection.map(|c| format!("AND d.connection = '{}'", c.replace('\'', "''"))).unwrap_or_default();
    let settled = if all { String::new() } else { "AND (s.settled_at IS NULL OR d.recorded_at > s.settled_at)".into() };
    let columns = "d.run_id, d.connection, d.path, d.shape, d.kind, d.column_name, d.detail, d.policy, d.action, \
                   d.layout, d.accepted_layout, d.recorded_at";
    let order = "ORDER BY d.recorded_at, d.path, d.kind, d.column_name";
    let joined = format!(
        "SELECT {columns} FROM _drift d LEFT JOIN \
         (SELECT connection, shape, max(accepted_at) AS settled_at FROM _layouts WHERE how <> 'EVOLVED' \
          GROUP BY connection, shape) s ON s.connection = d.connection AND s.shape = d.shape \
         WHERE true {filter} {settled} {order}"
    );
    if let Some(batches) = query(lake, contract, &[DRIFT, LAYOUTS], &joined).await? {
        return Ok(batches);
    }
    // No _layouts yet (or no _drift, and then nothing to list).
    let alone = format!("SELECT {columns} FROM _drift d WHERE true {filter} {order}");
    Ok(query(lake, contract, &[DRIFT], &alone).await?.unwrap_or_default())
}

/// Accepts, for each shape of `connection` (or only `shape`) with unsettled drift, the layout
/// of its latest drifted file: recorded as `ACCEPTED` by `run_id`, which must hold the lake.
/// Returns the layouts accepted; none when nothing had drifted.
pub async fn accept(
    lake: &Lake,
    contract: &Contract,
    run_id: &str,
    connection: &str,
    shape: Option<&str>,
) -> Result<Vec<LayoutRow>> {
    let mut latest: BTreeMap<String, (String, String)> = BTreeMap::new();
    // Oldest first: the last event of a shape is its latest layout.
    for b in events(lake, contract, Some(connection), false).await? {
        let (paths, shapes, layouts) =
            (b.column(2).as_string::<i32>(), b.column(3).as_string::<i32>(), b.column(9).as_string::<i32>());
        for i in 0..b.num_rows() {
            if shape.is_none_or(|s| s == shapes.value(i)) {
                latest.insert(shapes.value(i).to_string(), (layouts.value(i).to_string(), paths.value(i).to_string()));
            }
        }
    }
    let now = chrono::Utc::now().timestamp_micros();
    let rows: Vec<LayoutRow> = latest
        .into_iter()
        .map(|(shape, (columns, path))| LayoutRow {
            connection: connection.to_string(),
            shape,
            columns,
            how: "ACCEPTED".into(),
            path: Some(path),
            run_id: run_id.to_string(),
            accepted_at: now,
        })
        .collect();
    record_layouts(lake, contract, &rows).await?;
    Ok(rows)
}

/// Appends drift events.
pub async fn record_events(lake: &Lake, contract: &Contract, rows: &[DriftRow]) -> Result<()> {
    append_rows(lake, contract, DRIFT, rows).await
}

/// Appends accepted layouts.
pub async fn record_layouts(lake: &Lake, contract: &Contract, rows: &[LayoutRow]) -> Result<()> {
    append_rows(lake, contract, LAYOUTS, rows).await
}

/// A layout as stored: a JSON array of column names.
pub fn columns_json(columns: &[String]) -> String {
    serde_json::to_string(columns).unwrap_or_else(|_| "[]".into())
}

/// The columns of a stored layout.
pub fn parse_columns(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| crate::Error::Internal { message: format!("a stored layout is not a JSON array of names: {e}") })
}
