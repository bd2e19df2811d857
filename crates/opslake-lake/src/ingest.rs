//! `opslake ingest`: export files in, canonical Delta tables and `_rejects` out.
//!
//! Files are read one after another; each file's rows are mapped chunk by chunk and staged per
//! table. A file that fails (unreadable, unrecognised) is reported and its staged rows dropped;
//! the others still land. Then each table gets one commit. Per file, rows read = rows written +
//! rows rejected is checked; a mismatch fails the run as a bug.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use opslake_schema::types::TIMESTAMP_TZ;
use opslake_schema::{Contract, Table};
use opslake_sources::Tool;
use opslake_sources::detect::recognise;
use opslake_sources::input::visit_inputs;
use opslake_sources::mapping::{FileContext, RejectAction, RejectRecord, ShapeMapper};
use opslake_sources::parse::DateOrder;
use serde::Serialize;

use crate::stage::{PartWriter, Staging};
use crate::write::{Committed, append_table, merge_table};
use crate::{Error, Lake, Result, table_path};

/// Name of the system table of rejects.
pub const REJECTS: &str = "_rejects";

/// One file (or directory member) to ingest.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// A local file.
    pub path: PathBuf,
    /// The connection it belongs to.
    pub connection: String,
    /// The tool, when known; detected otherwise.
    pub tool: Option<String>,
    /// The connection's time zone for naive timestamps, overriding the tool file's.
    pub timezone: Option<String>,
    /// The connection's order of numeric dates, overriding the tool file's.
    pub date_order: Option<DateOrder>,
}

/// What happened to one input stream.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileSummary {
    /// Path (or `archive.zip!member`).
    pub path: String,
    /// Connection.
    pub connection: String,
    /// Tool recognised.
    pub tool: Option<String>,
    /// Export shape recognised (`tool.shape`).
    pub shape: Option<String>,
    /// Encoding read with.
    pub encoding: Option<String>,
    /// Canonical tables the shape writes.
    pub tables: Vec<String>,
    /// Records read.
    pub rows_read: u64,
    /// Records written to at least one table.
    pub rows_written: u64,
    /// Records written nowhere (each has a `_rejects` entry).
    pub rows_rejected: u64,
    /// Of the rejected records, those no output of the shape takes (action UNMAPPED).
    pub rows_unmapped: u64,
    /// Values nulled in written rows (each has a `_rejects` entry).
    pub values_nulled: u64,
    /// Rows skipped by declared rules (Total rows).
    pub rows_skipped: u64,
    /// Preamble lines before the header.
    pub preamble_lines: u64,
    /// Columns the mapping names that the file lacks (read as null).
    pub missing_columns: Vec<String>,
    /// Why the file failed, when it did; its rows were not written.
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// The run.
    pub run_id: String,
    /// Per input stream.
    pub files: Vec<FileSummary>,
    /// Per committed table.
    pub tables: Vec<TableCommit>,
}

/// One table's commit.
#[derive(Debug, Clone, Serialize)]
pub struct TableCommit {
    /// `namespace.table`.
    pub table: String,
    /// Rows merged or appended.
    pub rows: u64,
    /// Delta version written.
    pub version: u64,
}

impl From<Committed> for TableCommit {
    fn from(c: Committed) -> Self {
        Self { table: c.table, rows: c.rows, version: c.version }
    }
}

impl IngestReport {
    /// Records read across files that did not fail.
    pub fn rows_read(&self) -> u64 {
        self.files.iter().map(|f| f.rows_read).sum()
    }

    /// Records rejected across files.
    pub fn rows_rejected(&self) -> u64 {
        self.files.iter().map(|f| f.rows_rejected).sum()
    }

    /// Share of records rejected as invalid (unmapped records are not invalid).
    pub fn reject_ratio(&self) -> f64 {
        let read = self.rows_read();
        let invalid: u64 = self.files.iter().map(|f| f.rows_rejected - f.rows_unmapped).sum();
        if read == 0 { 0.0 } else { invalid as f64 / read as f64 }
    }

    /// Files that failed.
    pub fn failed(&self) -> impl Iterator<Item = &FileSummary> {
        self.files.iter().filter(|f| f.error.is_some())
    }
}

/// Progress of a run, for bars and logs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A file is about to be read.
    FileStarted {
        /// 0-based position.
        index: usize,
        /// Number of inputs.
        total: usize,
        /// The file.
        path: &'a str,
    },
    /// More rows were read.
    Rows(u64),
    /// A stream is done.
    FileDone(&'a FileSummary),
    /// A table is being committed.
    Committing(&'a str),
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run id.
    pub run_id: String,
    /// When the run started, UTC microseconds.
    pub started_at: i64,
}

/// Ingests `inputs` into `lake`. Must run on a multi-threaded tokio runtime: reading and
/// mapping are CPU work done in place.
pub async fn ingest(
    lake: &Lake,
    contract: &Contract,
    tools: &[Tool],
    inputs: &[Input],
    run: &RunContext,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<IngestReport> {
    let rejects_table = contract
        .system_table(REJECTS)
        .ok_or_else(|| Error::Internal { message: format!("the contract has no {REJECTS} table") })?
        .clone();
    let mut staging = Staging::new()?;
    let mut tables: BTreeMap<String, Arc<Table>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut part = 0usize;
    tokio::task::block_in_place(|| -> Result<()> {
        for (index, input) in inputs.iter().enumerate() {
            let display = input.path.display().to_string();
            progress(Event::FileStarted { index, total: inputs.len(), path: &display });
            let mut streams = Vec::new();
            let visited = visit_inputs(&input.path, &mut |opened| {
                let name = opened.name.clone();
                part += 1;
                let summary = match read_stream(
                    &mut staging,
                    part,
                    input,
                    tools,
                    &rejects_table,
                    run,
                    opened,
                    &mut tables,
                    progress,
                ) {
                    Ok(s) => s,
                    Err(e) => FileSummary {
                        path: name,
                        connection: input.connection.clone(),
                        error: Some(e.to_string()),
                        ..FileSummary::default()
                    },
                };
                progress(Event::FileDone(&summary));
                streams.push(summary);
                Ok(())
            });
            if let Err(e) = visited {
                let summary = FileSummary {
                    path: display.clone(),
                    connection: input.connection.clone(),
                    error: Some(e.to_string()),
                    ..FileSummary::default()
                };
                progress(Event::FileDone(&summary));
                streams.push(summary);
            }
            files.extend(streams);
        }
        Ok(())
    })?;
    for f in files.iter().filter(|f| f.error.is_none()) {
        if f.rows_read != f.rows_written + f.rows_rejected {
            return Err(Error::Internal {
                message: format!(
                    "{}: read {} rows but wrote {} and rejected {}",
                    f.path, f.rows_read, f.rows_written, f.rows_rejected
                ),
            });
        }
    }
    let mut commits = Vec::new();
    let staged: Vec<String> = staging.tables().map(str::to_string).collect();
    for path in staged {
        progress(Event::Committing(&path));
        let dir = staging.table_dir(&path);
        let committed = if path == REJECTS {
            append_table(lake, &rejects_table, &dir).await?
        } else {
            let table = tables
                .get(&path)
                .ok_or_else(|| Error::Internal { message: format!("staged rows for unknown table {path}") })?;
            merge_table(lake, table, &dir).await?
        };
        commits.push(TableCommit::from(committed));
    }
    Ok(IngestReport { run_id: run.run_id.clone(), files, tables: commits })
}

#[allow(clippy::too_many_arguments)]
fn read_stream(
    staging: &mut Staging,
    part: usize,
    input: &Input,
    tools: &[Tool],
    rejects_table: &Table,
    run: &RunContext,
    opened: opslake_sources::input::Opened<'_>,
    tables: &mut BTreeMap<String, Arc<Table>>,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<FileSummary> {
    let mut recognised = recognise(tools, input.tool.as_deref(), opened)?;
    let d = &recognised.detection;
    let name = recognised.name.clone();
    let mut summary = FileSummary {
        path: name.clone(),
        connection: input.connection.clone(),
        tool: Some(d.tool.clone()),
        shape: Some(d.shape.id.clone()),
        encoding: Some(d.encoding.name().to_string()),
        tables: d.shape.outputs.iter().map(|o| o.table.id.to_string()).collect(),
        ..FileSummary::default()
    };
    let file_ctx = FileContext {
        file: name.clone(),
        system: d.tool.clone(),
        connection: input.connection.clone(),
        run_id: run.run_id.clone(),
        ingested_at: run.started_at,
    };
    let mut shape = d.shape.clone();
    if let Some(tz) = &input.timezone {
        shape.timezone.clone_from(tz);
    }
    if let Some(order) = input.date_order {
        shape.date_order = order;
    }
    let mut mapper = ShapeMapper::new(&shape, file_ctx);
    let mut writers: BTreeMap<String, PartWriter> = BTreeMap::new();
    let mut missing = std::collections::BTreeSet::new();
    let outcome = (|| -> Result<()> {
        while let Some(chunk) = recognised.reader.next_chunk()? {
            missing.extend(mapper.missing_columns(&chunk.batch.schema())?);
            let result = mapper.map_chunk(&chunk)?;
            summary.rows_read += result.rows_read;
            summary.rows_written += result.rows_written;
            summary.rows_rejected += result.rows_rejected;
            summary.rows_unmapped += result.rows_unmapped;
            summary.values_nulled += result.rejects.iter().filter(|r| r.action == RejectAction::Nulled).count() as u64;
            for (table, batch) in &result.batches {
                let path = table_path(&table.id);
                if batch.num_rows() == 0 {
                    continue;
                }
                if !writers.contains_key(&path) {
                    writers.insert(path.clone(), staging.part_writer(&path, part, table.arrow_schema())?);
                    tables.entry(path.clone()).or_insert_with(|| Arc::clone(table));
                }
                writers.get_mut(&path).expect("inserted above").write(batch)?;
            }
            if !result.rejects.is_empty() {
                let batch = rejects_batch(rejects_table, &result.rejects, &summary, run)?;
                if !writers.contains_key(REJECTS) {
                    writers
                        .insert(REJECTS.to_string(), staging.part_writer(REJECTS, part, rejects_table.arrow_schema())?);
                }
                writers.get_mut(REJECTS).expect("inserted above").write(&batch)?;
            }
            progress(Event::Rows(result.rows_read));
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            for (_, w) in writers {
                let finished = w.finish()?;
                staging.keep(finished);
            }
            let stats = recognised.reader.stats();
            summary.rows_skipped = stats.skipped.len() as u64;
            summary.preamble_lines = stats.preamble_lines;
            summary.missing_columns = missing.into_iter().collect();
            Ok(summary)
        }
        Err(e) => {
            writers.into_values().for_each(PartWriter::discard);
            Err(e)
        }
    }
}

fn rejects_batch(table: &Table, rejects: &[RejectRecord], file: &FileSummary, run: &RunContext) -> Result<RecordBatch> {
    let n = rejects.len();
    let text = |f: &dyn Fn(&RejectRecord) -> Option<String>| -> ArrayRef {
        Arc::new(rejects.iter().map(f).collect::<StringArray>())
    };
    // Columns in the order _rejects declares them; the names live in schemas/system/rejects.yaml.
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run.run_id.as_str(); n])),
        Arc::new(StringArray::from(vec![file.tool.as_deref(); n])),
        Arc::new(StringArray::from(vec![file.connection.as_str(); n])),
        Arc::new(StringArray::from(vec![file.path.as_str(); n])),
        Arc::new(Int64Array::from(rejects.iter().map(|r| r.row as i64).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(rejects.iter().map(|r| r.line as i64).collect::<Vec<_>>())),
        text(&|r| r.table.clone()),
        text(&|r| r.column.clone()),
        text(&|r| r.raw_value.clone()),
        text(&|r| Some(r.reason.clone())),
        text(&|r| Some(r.action.as_str().to_string())),
        text(&|r| r.raw_record.clone()),
        Arc::new(TimestampMicrosecondArray::from(vec![run.started_at; n]).with_timezone(TIMESTAMP_TZ)),
    ];
    RecordBatch::try_new(table.arrow_schema(), columns).map_err(|e| Error::Internal {
        message: format!("{}: the reject columns do not match schemas/system/rejects.yaml: {e}", table.id),
    })
}
