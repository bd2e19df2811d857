//! opslake-ingest: one ingest run, export files in, canonical Delta tables and `_rejects` out.
//!
//! A run is four steps, one module each:
//! - [`plan`]: the inputs (a project's connections, or paths: local files or, through
//!   [`remote`], objects in a store), each compared with the manifest (`_run_files`):
//!   unchanged files are skipped;
//! - [`stream`]: each file read and mapped by opslake-tools into the lake's staging, a file
//!   that fails (unreadable, unrecognised) reported and its staged rows dropped;
//! - [`commit`]: each table committed once in its write mode, through the lake's API;
//! - the run records: files, table versions, and the run's end (`opslake_lake::runs::Run`).
//!
//! Per file, rows read = rows written + rows rejected is checked; a mismatch fails the run as a
//! bug. This crate decides nothing about a tool's files (opslake-tools does) nor about how a table is
//! stored (the lake does): it runs the one through the other.

// The lake's errors hold DataFusion's and Delta's inline (128 bytes and more). They are the
// cold path, at most one per file, so they are passed on as the lake makes them.
#![allow(clippy::result_large_err)]

pub mod commit;
pub mod drift;
mod key;
pub mod plan;
pub mod remote;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use opslake_lake::runs::{self, Ended, RUN_FILES, RUN_TABLES, Run, RunRow, RunTableRow};
use opslake_lake::write::Committed;
use opslake_lake::{Lake, REJECTS};
use opslake_schema::{Contract, ErrorClass};
pub use opslake_tools::stream::{Connection, FileSummary};
use opslake_tools::{Tool, privacy::Redactor};
use serde::Serialize;

/// One file (or archive) to ingest, and the connection it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Where its bytes are.
    pub source: Source,
    /// Its name in the lake, the manifest's key and its rows' `_source_file`: the same from
    /// whichever directory opslake runs (see [`plan::canonical_name`]); an object's URL.
    pub name: String,
    /// Its connection: name, tool and the settings its files are read with.
    pub connection: Connection,
    /// What a drift of its layout does.
    pub drift: opslake_config::DriftPolicy,
}

/// Where an input's bytes are.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// An object in a store.
    Object(remote::Object),
}

impl Default for Source {
    fn default() -> Self {
        Self::File(PathBuf::new())
    }
}

impl Input {
    /// The local file `path`, named as given.
    pub fn new(path: PathBuf, connection: Connection) -> Self {
        Self {
            name: path.display().to_string(),
            source: Source::File(path),
            connection,
            drift: opslake_config::DriftPolicy::default(),
        }
    }
}

/// How a run treats the lake.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Ignore the manifest: read every file and rebuild every table from them.
    pub full_refresh: bool,
    /// How long the lake's lock lasts without renewal.
    pub lock_ttl: std::time::Duration,
    /// The personal-data policy; `None` writes every value as it came.
    pub privacy: Option<opslake_config::Privacy>,
    /// The key of the policy's hashes, from outside the lake; needed when the policy hashes,
    /// unless the lake still has an older opslake's salt.
    pub key: Option<opslake_config::PersonalKey>,
    /// When a re-export with fewer rows than its last load is refused.
    pub shrink: stream::ShrinkGuard,
    /// The share of a mapped column's values that may be nulled in one file before it is a
    /// drift event (`schema_drift.max_nulled_ratio`).
    pub max_nulled_ratio: f64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            full_refresh: false,
            lock_ttl: opslake_lake::lock::DEFAULT_TTL,
            privacy: None,
            key: None,
            shrink: stream::ShrinkGuard { allow: false, max_ratio: opslake_config::config::DEFAULT_MAX_SHRINK_RATIO },
            max_nulled_ratio: opslake_config::config::DEFAULT_MAX_NULLED_RATIO,
        }
    }
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
    /// Schema drift found, as recorded in `_drift`.
    pub drift: Vec<opslake_lake::drift::DriftRow>,
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

    /// Files held, not loaded: their layout drifted under `quarantine`.
    pub fn held(&self) -> impl Iterator<Item = &FileSummary> {
        self.files.iter().filter(|f| f.held.is_some())
    }

    /// Fills the file and row counts of the `_runs` row of the run this ingest was part of.
    pub fn count_into(&self, row: &mut RunRow) {
        row.files_loaded = Some(self.files.iter().filter(|f| f.error.is_none() && f.held.is_none()).count() as i64);
        row.files_skipped = Some(self.skipped.len() as i64);
        row.files_failed = Some(self.failed().count() as i64);
        row.rows_read = Some(self.rows_read() as i64);
        row.rows_written = Some(self.files.iter().map(|f| f.rows_written as i64).sum());
        row.rows_rejected = Some(self.rows_rejected() as i64);
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

/// Where a run reports its progress.
pub type Progress<'a> = dyn FnMut(Event<'_>) + Send + 'a;

/// Ingests `inputs` into `lake` as a run of its own (`ingest` in `_runs`): lock, manifest,
/// staging, commits, run records. Must run on a multi-threaded tokio runtime: reading and
/// mapping are CPU work done in place. Fails with a busy error when another run holds the lake.
pub async fn ingest(
    lake: &Lake,
    contract: &Contract,
    tools: &[Tool],
    inputs: &[Input],
    options: &IngestOptions,
    progress: &mut Progress<'_>,
) -> Result<IngestReport> {
    let mut run = Run::start(lake, contract, "ingest", options.lock_ttl, options.full_refresh).await?;
    let outcome = ingest_held(&mut run, tools, inputs, options, progress).await;
    let ended = match &outcome {
        Ok(report) => {
            report.count_into(&mut run.row);
            Ended::Succeeded
        }
        Err(e) if e.class() == ErrorClass::Busy => Ended::LostLock,
        Err(e) => Ended::Failed { message: e.to_string(), step: None },
    };
    run.end(ended).await?;
    outcome
}

/// [`ingest`] as a step of `run`, which holds the lake (its lock renewed as files are read)
/// and writes its own `_runs` rows: for a command that ingests as one step of a longer run
/// (`opslake run`).
pub async fn ingest_held(
    run: &mut Run<'_>,
    tools: &[Tool],
    inputs: &[Input],
    options: &IngestOptions,
    progress: &mut Progress<'_>,
) -> Result<IngestReport> {
    let (lake, contract) = (run.lake(), run.contract());
    let rejects = Arc::new(
        contract.system_table(REJECTS).ok_or_else(|| internal(format!("the contract has no {REJECTS} table")))?.clone(),
    );
    let plan = plan::against_manifest(lake, contract, run.context(), inputs, options.full_refresh, progress).await?;
    let redactor = match &options.privacy {
        Some(p) if !p.keeps_everything() || p.drops_sensitive_keys() => {
            let key = if p.hashes() { key::hash_key(lake, options, progress).await? } else { Vec::new() };
            Some(Arc::new(Redactor::new(p.clone(), key)))
        }
        _ => None,
    };
    let mut drift = drift::Drift::load(lake, contract, options.max_nulled_ratio).await?;
    let gates = stream::Gates { shrink: options.shrink, drift: &mut drift };
    let read = stream::read_all(run, tools, &plan, &rejects, redactor, gates, progress).await?;
    for f in read.files.iter().filter(|f| f.error.is_none()) {
        if f.rows_read != f.rows_written + f.rows_rejected {
            return Err(internal(format!(
                "{}: read {} rows but wrote {} and rejected {}",
                f.path, f.rows_read, f.rows_written, f.rows_rejected
            )));
        }
    }
    let commits = commit::commit_all(run, &read, &rejects, options.full_refresh, progress).await?;

    run.lock().renew_if_due().await?;
    let now = chrono::Utc::now().timestamp_micros();
    let run_id = &run.context().run_id;
    let table_rows: Vec<RunTableRow> = commits
        .iter()
        .filter_map(|c| {
            Some(RunTableRow {
                run_id: run_id.clone(),
                table_name: c.table.clone(),
                write_mode: c.mode.clone(),
                rows: c.rows as i64,
                version: c.version? as i64,
                committed_at: now,
            })
        })
        .collect();
    runs::append_rows(lake, contract, RUN_TABLES, &table_rows).await?;
    opslake_lake::drift::record_events(lake, contract, &drift.events).await?;
    opslake_lake::drift::record_layouts(lake, contract, &drift.layouts).await?;
    // The manifest goes last: until it is committed, the files count as not loaded.
    let file_rows: Vec<_> = plan.unchanged.into_iter().chain(read.file_rows).collect();
    runs::append_rows(lake, contract, RUN_FILES, &file_rows).await?;
    Ok(IngestReport {
        run_id: run_id.clone(),
        files: read.files,
        skipped: plan.skipped,
        tables: commits,
        drift: drift.events,
    })
}

/// Errors of an ingest: the lake's, a source's that stopped more than one file, or the inputs'.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storing failed, or another run holds the lake.
    #[error(transparent)]
    Lake(#[from] opslake_lake::Error),
    /// Reading or mapping an input failed.
    #[error(transparent)]
    Source(#[from] opslake_tools::Error),
    /// The object store of a connection's exports cannot be listed or read.
    #[error("{context}: {source}")]
    Store {
        /// What was being done, on which URL.
        context: String,
        /// The underlying error.
        source: object_store::Error,
    },
    /// The inputs cannot be listed: a path that does not exist, a bad glob, no connection.
    #[error("{message}")]
    Input {
        /// What is wrong, and what to do.
        message: String,
    },
}

impl Error {
    /// Who must act.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Lake(e) => e.class(),
            Self::Source(e) => e.class(),
            Self::Store { .. } => ErrorClass::External,
            Self::Input { .. } => ErrorClass::User,
        }
    }
}

/// An invariant of the run failed: a bug.
fn internal(message: String) -> Error {
    Error::Lake(opslake_lake::Error::Internal { message })
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
