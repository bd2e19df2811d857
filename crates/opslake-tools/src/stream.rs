//! One opened stream from first byte to canonical batches: recognised, read on the calling
//! thread, mapped by workers beside it, each writing what it maps to a [`Sink`] of its own.
//!
//! This is the whole of what a tool file decides about a read, in one place: the caller (the
//! ingest crate) hands over the stream and where rows go, and gets back what happened. The
//! connection's settings are applied here, once, to the shape the file was recognised as.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use opslake_schema::Table;
use opslake_schema::types::TIMESTAMP_TZ;
use serde::Serialize;

use crate::detect::recognise;
use crate::input::{Opened, TextEncoding};
use crate::mapping::{FileContext, RejectAction, RejectRecord, ShapeMapper};
use crate::parse::{DateOrder, NumberFormat};
use crate::privacy::Redactor;
use crate::raw::RawChunk;
use crate::{Error, Result, Shape, Tool};

/// Where files come from, as a connection of opslake.yml (or `--path` on the command line)
/// declares it: the settings every file of the connection is read with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// The name rows carry in `source_connection`.
    pub name: String,
    /// The tool, when known; detected from each file otherwise.
    pub tool: Option<String>,
    /// The time zone of naive timestamps, over the tool file's.
    pub timezone: Option<String>,
    /// The order of numeric dates, over the tool file's.
    pub date_order: Option<DateOrder>,
    /// The account's home currency, for records that leave theirs out (`home_currency()`).
    pub currency: Option<String>,
    /// The encoding of every file, over detection and the tool file's.
    pub encoding: Option<TextEncoding>,
    /// The decimal mark of numbers, over the tool file's.
    pub decimal_separator: Option<char>,
    /// The thousands separator of numbers, over the tool file's.
    pub thousands_separator: Option<char>,
}

impl Connection {
    /// A connection of `name` with nothing else set.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// Sets what this connection declares of `opened` before it is recognised: the encoding
    /// of a text stream (a sheet's text is opslake's own, from typed cells).
    pub fn declare(&self, opened: &mut Opened<'_>) {
        if let Some(encoding) = self.encoding.filter(|_| opened.sheet.is_none()) {
            opened.declare_encoding(encoding);
        }
    }

    /// `shape` as this connection reads a stream with it; `sheet` when the stream is a sheet,
    /// whose number cells are written with a decimal point and no grouping in every locale.
    pub fn applied_to(&self, shape: &Shape, sheet: bool) -> Shape {
        let mut shape = shape.clone();
        if let Some(tz) = &self.timezone {
            shape.timezone.clone_from(tz);
        }
        if let Some(order) = self.date_order {
            shape.date_order = order;
        }
        if let Some(decimal) = self.decimal_separator {
            shape.numbers.decimal = decimal;
            // A tool file's separator that is now the decimal mark no longer separates.
            shape.numbers.thousands = shape.numbers.thousands.filter(|t| *t != decimal);
        }
        if let Some(thousands) = self.thousands_separator {
            shape.numbers.thousands = Some(thousands);
        }
        shape.home_currency.clone_from(&self.currency);
        if sheet {
            shape.numbers = NumberFormat::default();
        }
        shape
    }
}

/// What one run gives every stream it reads.
#[derive(Debug, Clone)]
pub struct StreamContext<'a> {
    /// The run.
    pub run_id: &'a str,
    /// When the run started, UTC microseconds.
    pub ingested_at: i64,
    /// When the export was taken, UTC microseconds (the file's modification time).
    pub snapshot_at: i64,
    /// The personal-data policy; `None` keeps every value as it came.
    pub redactor: Option<Arc<Redactor>>,
    /// The contract's `_rejects` table: reject records are written to the sink as its rows.
    pub rejects: &'a Arc<Table>,
    /// Mapping workers (at least one).
    pub workers: usize,
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
    /// Of the rejected records, the export's own summary rows (action SUMMARY: Total rows).
    pub rows_summary: u64,
    /// Preamble lines before the header.
    pub preamble_lines: u64,
    /// Columns the mapping names that the file lacks (read as null).
    pub missing_columns: Vec<String>,
    /// The stream's own columns in the order first seen (a CSV's header; a JSON stream's
    /// field paths across its records): its layout, which schema drift compares.
    pub columns: Vec<String>,
    /// Rows written per table (`namespace.table`).
    pub rows_by_table: BTreeMap<String, u64>,
    /// Values nulled because they did not parse, per `namespace.table.column`.
    pub nulled_by_column: BTreeMap<String, u64>,
    /// Why the file failed, when it did; its rows were not written.
    pub error: Option<String>,
    /// Why the file was held and not loaded (its layout drifted under `quarantine`).
    pub held: Option<String>,
}

impl FileSummary {
    /// A stream that failed before or while it was read.
    pub fn failed(path: String, connection: &str, error: &dyn std::fmt::Display) -> Self {
        Self { path, connection: connection.to_string(), error: Some(error.to_string()), ..Self::default() }
    }

    fn add_counts(&mut self, other: &Self) {
        self.rows_read += other.rows_read;
        self.rows_written += other.rows_written;
        self.rows_rejected += other.rows_rejected;
        self.rows_unmapped += other.rows_unmapped;
        self.rows_summary += other.rows_summary;
        self.values_nulled += other.values_nulled;
        for (table, n) in &other.rows_by_table {
            *self.rows_by_table.entry(table.clone()).or_default() += n;
        }
        for (column, n) in &other.nulled_by_column {
            *self.nulled_by_column.entry(column.clone()).or_default() += n;
        }
    }
}

/// Where one mapping worker's rows go: the canonical batches of each table the shape writes,
/// and the `_rejects` rows ([`StreamContext::rejects`]).
pub trait Sink: Send + Sized {
    /// What writing can fail with; reading and mapping failures are converted into it.
    type Error: From<Error> + Send;

    /// Takes a batch of `table`'s rows.
    fn write(&mut self, table: &Arc<Table>, batch: &RecordBatch) -> Result<(), Self::Error>;

    /// The stream failed: what this sink took is dropped.
    fn discard(self);
}

/// Recognises `opened` among `tools` (or the connection's tool), reads it and maps it with
/// `context.workers` workers, each writing to a sink from `open_sink(worker)`. Returns the
/// stream's summary and the sinks, for the caller to keep; on failure every sink is discarded
/// and nothing of the stream is kept. `progress` hears of the records read, as they are.
pub fn read_stream<S: Sink>(
    opened: Opened<'_>,
    tools: &[Tool],
    connection: &Connection,
    context: &StreamContext<'_>,
    open_sink: &(dyn Fn(usize) -> Result<S, S::Error> + Sync),
    progress: &mut dyn FnMut(u64),
) -> Result<(FileSummary, Vec<S>), S::Error> {
    let mut opened = opened;
    connection.declare(&mut opened);
    let sheet = opened.sheet.is_some();
    let mut recognised = recognise(tools, connection.tool.as_deref(), opened)?;
    let d = &recognised.detection;
    let name = recognised.name.clone();
    let mut summary = FileSummary {
        path: name.clone(),
        connection: connection.name.clone(),
        tool: Some(d.tool.clone()),
        shape: Some(d.shape.id.clone()),
        encoding: Some(d.encoding.name().to_string()),
        tables: d.shape.outputs.iter().map(|o| o.table.id.to_string()).collect(),
        ..FileSummary::default()
    };
    let file = FileContext {
        file: name.clone(),
        system: d.tool.clone(),
        connection: connection.name.clone(),
        run_id: context.run_id.to_string(),
        ingested_at: context.ingested_at,
        snapshot_at: context.snapshot_at,
        redactor: context.redactor.clone(),
    };
    let shape = crate::landed::with_loader_defaults(connection.applied_to(&d.shape, sheet), d.loader, &d.columns);

    // CSV parsing is a fraction of the work, the mapping (casts, keys, custom_fields) and the
    // sink's encoding the rest, and chunks are independent: one reader feeds many mappers.
    let workers = context.workers.max(1);
    let (tx, rx) = sync_channel::<RawChunk>(workers * 2);
    let rx = Mutex::new(rx);
    let failed = AtomicBool::new(false);
    let worker = Worker { rejects: context.rejects, summary: &summary, rx: &rx, failed: &failed };
    let mut columns: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let (read, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (shape, file, worker) = (&shape, file.clone(), &worker);
                scope.spawn(move || worker.run(shape, file, open_sink(w)))
            })
            .collect();
        let read = (|| -> Result<()> {
            while !failed.load(Ordering::Relaxed) {
                let Some(chunk) = recognised.reader.next_shaped(&shape)? else { break };
                // Read here, where chunks come in file order, so the layout keeps the file's order.
                for f in chunk.batch.schema().fields() {
                    if !crate::json_reader::is_index_column(f.name()) && seen.insert(f.name().clone()) {
                        columns.push(f.name().clone());
                    }
                }
                let rows = (chunk.batch.num_rows() + chunk.rejects.len()) as u64;
                if tx.send(chunk).is_err() {
                    break;
                }
                progress(rows);
            }
            Ok(())
        })();
        drop(tx);
        let outcomes: Vec<Result<Mapped<S>, S::Error>> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Internal { message: format!("{name}: a mapping worker panicked") }.into())
                })
            })
            .collect();
        (read, outcomes)
    });
    let mut mapped = Vec::with_capacity(outcomes.len());
    let mut first_error: Option<S::Error> = read.err().map(Into::into);
    for outcome in outcomes {
        match outcome {
            Ok(m) => mapped.push(m),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        mapped.into_iter().for_each(|m| m.sink.discard());
        return Err(e);
    }
    let mut missing = BTreeSet::new();
    let mut sinks = Vec::with_capacity(mapped.len());
    for m in mapped {
        summary.add_counts(&m.counts);
        missing.extend(m.missing);
        sinks.push(m.sink);
    }
    summary.preamble_lines = recognised.reader.stats().preamble_lines;
    summary.missing_columns = missing.into_iter().collect();
    summary.columns = columns;
    Ok((summary, sinks))
}

/// What the mapping workers of one stream share.
struct Worker<'a> {
    rejects: &'a Arc<Table>,
    /// The stream as recognised (tool, connection, path), for reject rows.
    summary: &'a FileSummary,
    rx: &'a Mutex<Receiver<RawChunk>>,
    /// Set by a worker that failed, so the reader stops.
    failed: &'a AtomicBool,
}

/// One worker's share of a stream.
struct Mapped<S> {
    counts: FileSummary,
    missing: BTreeSet<String>,
    sink: S,
}

impl Worker<'_> {
    fn run<S: Sink>(&self, shape: &Shape, file: FileContext, sink: Result<S, S::Error>) -> Result<Mapped<S>, S::Error> {
        let sink = sink.inspect_err(|_| self.failed.store(true, Ordering::Relaxed))?;
        let mut out = Mapped { counts: FileSummary::default(), missing: BTreeSet::new(), sink };
        match self.map_all(shape, file, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                out.sink.discard();
                Err(e)
            }
        }
    }

    fn map_all<S: Sink>(&self, shape: &Shape, file: FileContext, out: &mut Mapped<S>) -> Result<(), S::Error> {
        let run_id = file.run_id.clone();
        let ingested_at = file.ingested_at;
        let mut mapper = ShapeMapper::new(shape, file);
        loop {
            // The lock is held only to take the next chunk, never while mapping.
            let next =
                self.rx.lock().map_err(|_| Error::Internal { message: "a mapping worker panicked".into() })?.recv();
            let Ok(chunk) = next else { return Ok(()) };
            out.missing.extend(mapper.missing_columns(&chunk.batch.schema())?);
            let result = mapper.map_chunk(&chunk)?;
            let c = &mut out.counts;
            c.rows_read += result.rows_read;
            c.rows_written += result.rows_written;
            c.rows_rejected += result.rows_rejected;
            c.rows_unmapped += result.rows_unmapped;
            c.rows_summary += result.rows_summary;
            for r in result.rejects.iter().filter(|r| r.action == RejectAction::Nulled) {
                c.values_nulled += 1;
                if let (Some(table), Some(column)) = (&r.table, &r.column) {
                    *c.nulled_by_column.entry(format!("{table}.{column}")).or_default() += 1;
                }
            }
            for (table, batch) in &result.batches {
                *c.rows_by_table.entry(table.id.to_string()).or_default() += batch.num_rows() as u64;
                if batch.num_rows() > 0 {
                    out.sink.write(table, batch)?;
                }
            }
            if !result.rejects.is_empty() {
                let batch = rejects_batch(self.rejects, &result.rejects, self.summary, &run_id, ingested_at)?;
                out.sink.write(self.rejects, &batch)?;
            }
        }
    }
}

/// Reject records as rows of `_rejects`.
fn rejects_batch(
    table: &Table,
    rejects: &[RejectRecord],
    file: &FileSummary,
    run_id: &str,
    ingested_at: i64,
) -> Result<RecordBatch> {
    let n = rejects.len();
    let text = |f: &dyn Fn(&RejectRecord) -> Option<String>| -> ArrayRef {
        Arc::new(rejects.iter().map(f).collect::<StringArray>())
    };
    // Columns in the order _rejects declares them; the names live in schemas/system/rejects.yaml.
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![run_id; n])),
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
        Arc::new(TimestampMicrosecondArray::from(vec![ingested_at; n]).with_timezone(TIMESTAMP_TZ)),
    ];
    RecordBatch::try_new(table.arrow_schema(), columns).map_err(|e| Error::Internal {
        message: format!("{}: the reject columns do not match schemas/system/rejects.yaml: {e}", table.id),
    })
}
