//! `opslake ingest`: export files in, canonical Delta tables and `_rejects` out.
//!
//! A run takes the lake's lock, records itself in `_runs`, and compares every input with the
//! manifest (`_run_files`): unchanged files are skipped, new and changed ones are read one after
//! another, each file's rows mapped chunk by chunk and staged per table. A file that fails
//! (unreadable, unrecognised) is reported and its staged rows dropped; the others still land.
//! Then each table gets one commit in its write mode, then the run records: files, table
//! versions, and the run's end. Per file, rows read = rows written + rows rejected is checked;
//! a mismatch fails the run as a bug.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use opslake_schema::types::TIMESTAMP_TZ;
use opslake_schema::{Contract, Table, WriteMode};
use opslake_sources::Tool;
use opslake_sources::detect::recognise;
use opslake_sources::input::visit_inputs;
use opslake_sources::mapping::{FileContext, RejectAction, RejectRecord, ShapeMapper};
use opslake_sources::parse::DateOrder;
use opslake_sources::privacy::Redactor;
use opslake_sources::raw::RawChunk;
use serde::Serialize;

use crate::lock::LakeLock;
use crate::manifest::{Decision, Fingerprint, Manifest, sha256_of};
use crate::runs::{self, RUN_FILES, RUN_TABLES, RUNS, RunFileRow, RunRow, RunTableRow};
use crate::stage::{PartWriter, Staging};
use crate::write::{CommitPlan, Committed, StagedTable, commit_table, delete_file_rows, truncate_table};
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
    /// The account's home currency, for records that leave theirs out (`home_currency()`).
    pub currency: Option<String>,
}

/// How a run treats the lake.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Ignore the manifest: read every file and rebuild every table from them.
    pub full_refresh: bool,
    /// How long the lake's lock lasts without renewal.
    pub lock_ttl: std::time::Duration,
    /// The personal-data policy; `None` writes every value as it came.
    pub privacy: Option<opslake_schema::Privacy>,
    /// The key of the policy's hashes, from outside the lake; needed when the policy hashes,
    /// unless the lake still has an older opslake's salt.
    pub key: Option<opslake_schema::PersonalKey>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { full_refresh: false, lock_ttl: crate::lock::DEFAULT_TTL, privacy: None, key: None }
    }
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
    /// Why the file failed, when it did; its rows were not written.
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// The run.
    pub run_id: String,
    /// Per input stream read.
    pub files: Vec<FileSummary>,
    /// Inputs skipped because the manifest shows them loaded and unchanged.
    pub skipped: Vec<String>,
    /// Per committed table.
    pub tables: Vec<TableCommit>,
}

/// One table's commit.
#[derive(Debug, Clone, Serialize)]
pub struct TableCommit {
    /// `namespace.table`.
    pub table: String,
    /// merge, append, history or overwrite.
    pub mode: String,
    /// Rows offered to the table.
    pub rows: u64,
    /// Delta version written; none when nothing changed.
    pub version: Option<u64>,
}

impl From<Committed> for TableCommit {
    fn from(c: Committed) -> Self {
        Self { table: c.table, mode: c.mode.to_string(), rows: c.rows, version: c.version }
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

    /// Share of records rejected as invalid (unmapped records and summary rows are not invalid).
    pub fn reject_ratio(&self) -> f64 {
        let read = self.rows_read();
        let invalid: u64 = self.files.iter().map(|f| f.rows_rejected - f.rows_unmapped - f.rows_summary).sum();
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
    /// A file was skipped: the manifest shows it loaded and unchanged.
    Skipped(&'a str),
    /// A table is being committed.
    Committing(&'a str),
    /// Something the user should act on that does not stop the run.
    Warning(&'a str),
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

/// Ingests `inputs` into `lake` as the run `run`: lock, manifest, staging, commits, run records.
/// Must run on a multi-threaded tokio runtime: reading and mapping are CPU work done in place.
/// Fails with [`Error::Locked`] when another run holds the lake.
pub async fn ingest(
    lake: &Lake,
    contract: &Contract,
    tools: &[Tool],
    inputs: &[Input],
    run: &RunContext,
    options: &IngestOptions,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<IngestReport> {
    let mut lock = LakeLock::acquire(lake, &run.run_id, "ingest", options.lock_ttl).await?;
    let mut row = RunRow { full_refresh: options.full_refresh, ..RunRow::starting(run, "ingest", &lock) };
    let outcome = match runs::append_rows(lake, contract, RUNS, std::slice::from_ref(&row)).await {
        Ok(()) => ingest_held(lake, contract, tools, inputs, run, options, &mut lock, progress).await,
        Err(e) => Err(e),
    };
    if let Ok(report) = &outcome {
        row.count_ingest(report);
    }
    runs::finish(lake, contract, lock, row, &outcome).await?;
    outcome
}

impl RunRow {
    /// Fills the file and row counts of an ingest.
    pub fn count_ingest(&mut self, report: &IngestReport) {
        self.files_loaded = Some(report.files.iter().filter(|f| f.error.is_none()).count() as i64);
        self.files_skipped = Some(report.skipped.len() as i64);
        self.files_failed = Some(report.failed().count() as i64);
        self.rows_read = Some(report.rows_read() as i64);
        self.rows_written = Some(report.files.iter().map(|f| f.rows_written as i64).sum());
        self.rows_rejected = Some(report.rows_rejected() as i64);
    }
}

/// One input after comparing it with the manifest.
struct Planned<'a> {
    input: &'a Input,
    fingerprint: Fingerprint,
    sha256: Option<String>,
    decision: Decision,
}

/// [`ingest`] under a lock the caller holds (`lock`, renewed as files are read), writing no
/// `_runs` row: for a command that ingests as one step of a longer run (`opslake run`) and
/// records the run itself.
#[allow(clippy::too_many_arguments)]
pub async fn ingest_held(
    lake: &Lake,
    contract: &Contract,
    tools: &[Tool],
    inputs: &[Input],
    run: &RunContext,
    options: &IngestOptions,
    lock: &mut LakeLock,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<IngestReport> {
    let rejects_table = contract
        .system_table(REJECTS)
        .ok_or_else(|| Error::Internal { message: format!("the contract has no {REJECTS} table") })?
        .clone();
    let manifest = if options.full_refresh { Manifest::default() } else { Manifest::load(lake, contract).await? };
    let mut planned = Vec::with_capacity(inputs.len());
    let mut skipped = Vec::new();
    let mut file_rows = Vec::new();
    let recorded_at = || chrono::Utc::now().timestamp_micros();
    tokio::task::block_in_place(|| -> Result<()> {
        for input in inputs {
            let path = input.path.display().to_string();
            let fingerprint = Fingerprint::of_local(&input.path)?;
            let (decision, sha256) = manifest.decide(&path, &fingerprint, || sha256_of(&input.path))?;
            match decision {
                Decision::Unchanged | Decision::SameContent => {
                    progress(Event::Skipped(&path));
                    if decision == Decision::SameContent {
                        file_rows.push(RunFileRow {
                            run_id: run.run_id.clone(),
                            path: path.clone(),
                            connection: input.connection.clone(),
                            status: "UNCHANGED".into(),
                            size_bytes: fingerprint.size as i64,
                            modified_at: fingerprint.modified_at,
                            etag: fingerprint.etag.clone(),
                            content_sha256: sha256.unwrap_or_default(),
                            recorded_at: recorded_at(),
                            ..RunFileRow::default()
                        });
                    }
                    skipped.push(path);
                }
                Decision::New | Decision::Changed => planned.push(Planned { input, fingerprint, sha256, decision }),
            }
        }
        Ok(())
    })?;

    let redactor = match &options.privacy {
        Some(p) if !p.keeps_everything() || p.drops_sensitive_keys() => {
            let key = if p.hashes() { hash_key(lake, options, progress).await? } else { Vec::new() };
            Some(Arc::new(Redactor::new(p.clone(), key)))
        }
        _ => None,
    };
    let mut staging = Staging::new()?;
    let mut tables: BTreeMap<String, Arc<Table>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut staged_files = Vec::new();
    let mut reloaded = Vec::new();
    let mut part = 0usize;
    for (index, plan) in planned.iter().enumerate() {
        lock.renew_if_due().await?;
        let input = plan.input;
        let display = input.path.display().to_string();
        progress(Event::FileStarted { index, total: planned.len(), path: &display });
        let sha256 = match &plan.sha256 {
            Some(s) => s.clone(),
            None => tokio::task::block_in_place(|| sha256_of(&input.path))?,
        };
        let snapshot_at = plan.fingerprint.modified_at.unwrap_or(run.started_at);
        let mut streams = Vec::new();
        let visited = tokio::task::block_in_place(|| {
            visit_inputs(&input.path, &mut |opened| {
                let name = opened.name.clone();
                part += 1;
                let summary = match read_stream(
                    &mut staging,
                    part,
                    input,
                    snapshot_at,
                    tools,
                    &rejects_table,
                    run,
                    opened,
                    &mut tables,
                    redactor.as_ref(),
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
            })
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
        let error = streams.iter().find_map(|s| s.error.clone());
        let ok_streams = streams.iter().filter(|s| s.error.is_none());
        staged_files.extend(ok_streams.clone().map(|s| s.path.clone()));
        if plan.decision == Decision::Changed {
            reloaded.extend(ok_streams.clone().map(|s| s.path.clone()));
        }
        file_rows.push(RunFileRow {
            run_id: run.run_id.clone(),
            path: display,
            connection: input.connection.clone(),
            // An archive with one unreadable member is retried as a whole next run.
            status: if error.is_some() { "FAILED" } else { "LOADED" }.into(),
            size_bytes: plan.fingerprint.size as i64,
            modified_at: plan.fingerprint.modified_at,
            etag: plan.fingerprint.etag.clone(),
            content_sha256: sha256,
            reloaded: plan.decision == Decision::Changed,
            rows_read: streams.iter().map(|s| s.rows_read as i64).sum(),
            rows_written: streams.iter().map(|s| s.rows_written as i64).sum(),
            rows_rejected: streams.iter().map(|s| s.rows_rejected as i64).sum(),
            error,
            recorded_at: recorded_at(),
        });
        files.extend(streams);
    }
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

    let plan = CommitPlan { full_refresh: options.full_refresh, files: &staged_files, reloaded: &reloaded };
    let mut commits = Vec::new();
    let staged: Vec<String> = staging.tables().map(str::to_string).collect();
    // Canonical tables first, `_rejects` last: a crash in between leaves rejects to be
    // rewritten by the rerun, never rejects without their tables.
    let order = staged.iter().filter(|p| *p != REJECTS).chain(staged.iter().filter(|p| *p == REJECTS));
    for path in order {
        lock.renew_if_due().await?;
        progress(Event::Committing(path));
        let table = if path == REJECTS {
            &rejects_table
        } else {
            tables
                .get(path)
                .ok_or_else(|| Error::Internal { message: format!("staged rows for unknown table {path}") })?
                .as_ref()
        };
        let repeated = tokio::task::block_in_place(|| staging.repeated_keys(path, &table.unique_key))?;
        let staged =
            StagedTable { dir: &staging.table_dir(path), repeated: repeated.as_deref(), rows: staging.rows(path) };
        commits.push(TableCommit::from(commit_table(lake, table, staged, plan).await?));
    }
    if !options.full_refresh && !staged_files.is_empty() {
        // Tables a file fed before but not now: an append table (and `_rejects`) loses that
        // file's old rows; a merge table loses the rows of a reloaded file.
        let touched: BTreeSet<&str> =
            files.iter().filter(|f| f.error.is_none()).flat_map(|f| f.tables.iter().map(String::as_str)).collect();
        let mut candidates: Vec<&Table> =
            touched.iter().filter_map(|t| t.split_once('.').and_then(|(ns, name)| contract.table(ns, name))).collect();
        candidates.push(&rejects_table);
        for table in candidates {
            let path = table_path(&table.id);
            let files = match table.write_mode {
                _ if staged.contains(&path) => continue,
                WriteMode::Append => &staged_files,
                WriteMode::Merge if !reloaded.is_empty() => &reloaded,
                WriteMode::Merge | WriteMode::History => continue,
            };
            lock.renew_if_due().await?;
            progress(Event::Committing(&path));
            if let Some(c) = delete_file_rows(lake, table, files).await? {
                commits.push(TableCommit::from(c));
            }
        }
    }
    if options.full_refresh {
        // A full refresh rebuilds the lake from the files: tables no file fed are emptied.
        for table in contract.tables().chain(std::iter::once(&rejects_table)) {
            let path = table_path(&table.id);
            if staged.contains(&path) || crate::read::open(lake, table, None).await?.is_none() {
                continue;
            }
            lock.renew_if_due().await?;
            progress(Event::Committing(&path));
            commits.push(TableCommit::from(truncate_table(lake, table).await?));
        }
    }
    lock.renew_if_due().await?;
    let now = chrono::Utc::now().timestamp_micros();
    let table_rows: Vec<RunTableRow> = commits
        .iter()
        .filter_map(|c| {
            Some(RunTableRow {
                run_id: run.run_id.clone(),
                table_name: c.table.clone(),
                write_mode: c.mode.clone(),
                rows: c.rows as i64,
                version: c.version? as i64,
                committed_at: now,
            })
        })
        .collect();
    runs::append_rows(lake, contract, RUN_TABLES, &table_rows).await?;
    // The manifest goes last: until it is committed, the files count as not loaded.
    runs::append_rows(lake, contract, RUN_FILES, &file_rows).await?;
    Ok(IngestReport { run_id: run.run_id.clone(), files, skipped, tables: commits })
}

#[allow(clippy::too_many_arguments)]
fn read_stream(
    staging: &mut Staging,
    part: usize,
    input: &Input,
    snapshot_at: i64,
    tools: &[Tool],
    rejects_table: &Table,
    run: &RunContext,
    opened: opslake_sources::input::Opened<'_>,
    tables: &mut BTreeMap<String, Arc<Table>>,
    redactor: Option<&Arc<Redactor>>,
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
        snapshot_at,
        redactor: redactor.cloned(),
    };
    let mut shape = d.shape.clone();
    if let Some(tz) = &input.timezone {
        shape.timezone.clone_from(tz);
    }
    if let Some(order) = input.date_order {
        shape.date_order = order;
    }
    shape.home_currency.clone_from(&input.currency);

    // The reader parses on this thread and hands chunks to mapping workers, each with its own
    // mapper and its own staged parts: CSV parsing is a fraction of the work, the mapping (casts,
    // keys, custom_fields) and Parquet encoding the rest, and chunks are independent.
    let workers = ingest_threads();
    let (tx, rx) = std::sync::mpsc::sync_channel::<RawChunk>(workers * 2);
    let rx = std::sync::Mutex::new(rx);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let ctx = Worker { staging: &*staging, part, rejects_table, run, summary: &summary, rx: &rx, failed: &failed };
    let (read, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (shape, file_ctx, ctx) = (&shape, file_ctx.clone(), &ctx);
                scope.spawn(move || ctx.run(w, shape, file_ctx))
            })
            .collect();
        let read = (|| -> Result<()> {
            while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(chunk) = recognised.reader.next_shaped(&shape)? else { break };
                let rows = (chunk.batch.num_rows() + chunk.rejects.len()) as u64;
                if tx.send(chunk).is_err() {
                    break;
                }
                progress(Event::Rows(rows));
            }
            Ok(())
        })();
        drop(tx);
        let outcomes: Vec<Result<Mapped>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal { message: format!("{name}: a mapping worker panicked") }))
            })
            .collect();
        (read, outcomes)
    });
    let mut mapped = Vec::with_capacity(outcomes.len());
    let mut first_error = read.err();
    for outcome in outcomes {
        match outcome {
            Ok(m) => mapped.push(m),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        mapped.into_iter().flat_map(|m| m.writers.into_values()).for_each(PartWriter::discard);
        return Err(e);
    }
    let mut missing = BTreeSet::new();
    for m in mapped {
        summary.rows_read += m.counts.rows_read;
        summary.rows_written += m.counts.rows_written;
        summary.rows_rejected += m.counts.rows_rejected;
        summary.rows_unmapped += m.counts.rows_unmapped;
        summary.rows_summary += m.counts.rows_summary;
        summary.values_nulled += m.counts.values_nulled;
        missing.extend(m.missing);
        for (path, table) in m.tables {
            tables.entry(path).or_insert(table);
        }
        for (_, w) in m.writers {
            staging.keep(w.finish()?);
        }
    }
    let stats = recognised.reader.stats();
    summary.preamble_lines = stats.preamble_lines;
    summary.missing_columns = missing.into_iter().collect();
    Ok(summary)
}

/// Threads that map one file's chunks: `OPSLAKE_THREADS`, else one per core.
/// The key of the hashes: the one given from outside the lake. A lake an older opslake wrote
/// may hold its salt instead: used, with a warning saying how to move it, when no key is given,
/// since its hashes must go on matching; a different key is refused unless every table is
/// rebuilt, because old and new hashes of one email would silently stop joining.
async fn hash_key(
    lake: &Lake,
    options: &IngestOptions,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<u8>> {
    let legacy = crate::salt::legacy(lake).await?;
    let salt = crate::salt::SALT_PATH;
    let env = opslake_schema::KEY_ENV;
    match (&options.key, legacy) {
        (Some(key), Some(old)) if key.bytes() == old.as_slice() => {
            progress(Event::Warning(&format!(
                "the personal-data key is also kept in the lake ({salt}), where whoever can read the lake can \
                 read it: delete {salt}"
            )));
            Ok(old)
        }
        (Some(_), Some(_)) if !options.full_refresh => Err(Error::Location {
            message: format!(
                "the personal-data key differs from the salt this lake was hashed with ({salt}): hashes would stop \
                 matching. Use the salt's value as the key, or rebuild every table with --full-refresh"
            ),
        }),
        (Some(key), _) => Ok(key.bytes().to_vec()),
        (None, Some(old)) => {
            progress(Event::Warning(&format!(
                "hashing with the salt kept in the lake ({salt}), which whoever can read the lake can read: move \
                 it out (put its contents in {env}, or in a file named by personal_data.key_file), then delete {salt}"
            )));
            Ok(old)
        }
        (None, None) => Err(Error::Location {
            message: format!(
                "the personal-data policy hashes values and needs a key kept outside the lake: set {env} or \
                 personal_data.key_env / key_file in opslake.yml (make one with `openssl rand -hex 32`)"
            ),
        }),
    }
}

fn ingest_threads() -> usize {
    std::env::var("OPSLAKE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(std::num::NonZeroUsize::get))
        .unwrap_or(1)
        .max(1)
}

/// What the mapping workers of one stream share.
struct Worker<'a> {
    staging: &'a Staging,
    part: usize,
    rejects_table: &'a Table,
    run: &'a RunContext,
    /// The stream's summary as recognised (tool, connection, path), for reject rows.
    summary: &'a FileSummary,
    rx: &'a std::sync::Mutex<std::sync::mpsc::Receiver<RawChunk>>,
    /// Set by a worker that failed, so the reader stops.
    failed: &'a std::sync::atomic::AtomicBool,
}

/// One worker's share of a stream.
#[derive(Default)]
struct Mapped {
    counts: FileSummary,
    missing: BTreeSet<String>,
    tables: Vec<(String, Arc<Table>)>,
    writers: BTreeMap<String, PartWriter>,
}

impl Worker<'_> {
    fn run(&self, worker: usize, shape: &opslake_sources::Shape, file_ctx: FileContext) -> Result<Mapped> {
        let mut out = Mapped::default();
        let result = self.map_all(worker, shape, file_ctx, &mut out);
        if result.is_err() {
            self.failed.store(true, std::sync::atomic::Ordering::Relaxed);
            std::mem::take(&mut out.writers).into_values().for_each(PartWriter::discard);
        }
        result.map(|()| out)
    }

    fn map_all(
        &self,
        worker: usize,
        shape: &opslake_sources::Shape,
        file_ctx: FileContext,
        out: &mut Mapped,
    ) -> Result<()> {
        let mut mapper = ShapeMapper::new(shape, file_ctx);
        let part = format!("{:06}-{worker:02}", self.part);
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
            c.values_nulled += result.rejects.iter().filter(|r| r.action == RejectAction::Nulled).count() as u64;
            for (table, batch) in &result.batches {
                if batch.num_rows() == 0 {
                    continue;
                }
                let path = table_path(&table.id);
                if !out.writers.contains_key(&path) {
                    let writer = self.staging.part_writer(&path, &part, table)?;
                    out.writers.insert(path.clone(), writer);
                    out.tables.push((path.clone(), Arc::clone(table)));
                }
                out.writers.get_mut(&path).expect("inserted above").write(batch)?;
                if table.write_mode != WriteMode::Append {
                    let key = match table.unique_key.as_slice() {
                        [k] => batch.column_by_name(k).and_then(|c| c.as_any().downcast_ref::<StringArray>()),
                        _ => None,
                    };
                    self.staging.track_keys(&path, key);
                }
            }
            if !result.rejects.is_empty() {
                let batch = rejects_batch(self.rejects_table, &result.rejects, self.summary, self.run)?;
                if !out.writers.contains_key(REJECTS) {
                    let writer = self.staging.part_writer(REJECTS, &part, self.rejects_table)?;
                    out.writers.insert(REJECTS.to_string(), writer);
                }
                out.writers.get_mut(REJECTS).expect("inserted above").write(&batch)?;
            }
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
