//! Reading the planned files into the lake's staging: opslake-tools reads and maps each
//! stream, its workers writing through [`StagedSink`]s into Parquet parts of their own.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use opslake_lake::manifest::{Decision, sha256_of};
use opslake_lake::runs::{Run, RunFileRow};
use opslake_lake::stage::{FinishedPart, PartWriter, Staging};
use opslake_lake::table_path;
use opslake_schema::{Table, WriteMode};
use opslake_tools::Tool;
use opslake_tools::input::visit_inputs;
use opslake_tools::privacy::Redactor;
use opslake_tools::stream::{Sink, StreamContext, read_stream};

use crate::plan::Plan;
use crate::{Error, Event, FileSummary, Progress, Result};

/// What the files of a run left in staging.
pub struct Read {
    /// The staged parts.
    pub staging: Staging,
    /// Every table that has staged rows, by lake path.
    pub tables: BTreeMap<String, Arc<Table>>,
    /// Per stream read.
    pub files: Vec<FileSummary>,
    /// Manifest rows of the files read.
    pub file_rows: Vec<RunFileRow>,
    /// Streams whose rows were staged.
    pub staged_files: Vec<String>,
    /// Of those, the streams of files that had been loaded before in another version.
    pub reloaded: Vec<String>,
}

/// Reads every file the plan says to, one after another, renewing the run's lock between them.
pub async fn read_all(
    run: &mut Run<'_>,
    tools: &[Tool],
    plan: &Plan<'_>,
    rejects: &Arc<Table>,
    redactor: Option<Arc<Redactor>>,
    progress: &mut Progress<'_>,
) -> Result<Read> {
    let mut read = Read {
        staging: Staging::new()?,
        tables: BTreeMap::new(),
        files: Vec::new(),
        file_rows: Vec::new(),
        staged_files: Vec::new(),
        reloaded: Vec::new(),
    };
    let workers = ingest_threads();
    let mut part = 0usize;
    for (index, planned) in plan.read.iter().enumerate() {
        run.lock().renew_if_due().await?;
        let input = planned.input;
        let connection = &input.connection;
        let display = input.path.display().to_string();
        progress(Event::FileStarted { index, total: plan.read.len(), path: &display });
        let sha256 = match &planned.sha256 {
            Some(s) => s.clone(),
            None => tokio::task::block_in_place(|| sha256_of(&input.path))?,
        };
        let context = StreamContext {
            run_id: &run.context().run_id,
            ingested_at: run.context().started_at,
            snapshot_at: planned.fingerprint.modified_at.unwrap_or(run.context().started_at),
            redactor: redactor.clone(),
            rejects,
            workers,
        };
        let mut streams = Vec::new();
        let visited = tokio::task::block_in_place(|| {
            visit_inputs(&input.path, &mut |opened| {
                let name = opened.name.clone();
                part += 1;
                let staging = &read.staging;
                let open_sink = |worker: usize| Ok(StagedSink::new(staging, format!("{part:06}-{worker:02}")));
                let mut rows = |n| progress(Event::Rows(n));
                let outcome = read_stream(opened, tools, connection, &context, &open_sink, &mut rows)
                    .and_then(|(summary, sinks)| Ok((summary, finish(sinks)?)));
                let summary = match outcome {
                    Ok((summary, (parts, tables))) => {
                        parts.into_iter().for_each(|p| read.staging.keep(p));
                        for (path, table) in tables {
                            read.tables.entry(path).or_insert(table);
                        }
                        summary
                    }
                    Err(e) => FileSummary::failed(name, &connection.name, &e),
                };
                progress(Event::FileDone(&summary));
                streams.push(summary);
                Ok(())
            })
        });
        if let Err(e) = visited {
            let summary = FileSummary::failed(display.clone(), &connection.name, &e);
            progress(Event::FileDone(&summary));
            streams.push(summary);
        }
        let error = streams.iter().find_map(|s| s.error.clone());
        let ok_streams = streams.iter().filter(|s| s.error.is_none());
        read.staged_files.extend(ok_streams.clone().map(|s| s.path.clone()));
        if planned.decision == Decision::Changed {
            read.reloaded.extend(ok_streams.clone().map(|s| s.path.clone()));
        }
        read.file_rows.push(RunFileRow {
            run_id: run.context().run_id.clone(),
            path: display,
            connection: connection.name.clone(),
            // An archive with one unreadable member is retried as a whole next run.
            status: if error.is_some() { "FAILED" } else { "LOADED" }.into(),
            size_bytes: planned.fingerprint.size as i64,
            modified_at: planned.fingerprint.modified_at,
            etag: planned.fingerprint.etag.clone(),
            content_sha256: sha256,
            reloaded: planned.decision == Decision::Changed,
            rows_read: streams.iter().map(|s| s.rows_read as i64).sum(),
            rows_written: streams.iter().map(|s| s.rows_written as i64).sum(),
            rows_rejected: streams.iter().map(|s| s.rows_rejected as i64).sum(),
            error,
            recorded_at: chrono::Utc::now().timestamp_micros(),
        });
        read.files.extend(streams);
    }
    Ok(read)
}

/// Closes a stream's parts, and names the tables they feed. A part that cannot be closed
/// fails its stream, and then none of its parts is kept: a failed stream leaves no rows.
fn finish(sinks: Vec<StagedSink<'_>>) -> Result<(Vec<FinishedPart>, Vec<TableAt>)> {
    let mut parts = Vec::new();
    let mut tables = Vec::new();
    let mut failed = None;
    for sink in sinks {
        tables.extend(sink.tables);
        for w in sink.writers.into_values() {
            if failed.is_some() {
                w.discard();
                continue;
            }
            match w.finish() {
                Ok(part) => parts.push(part),
                Err(e) => failed = Some(e),
            }
        }
    }
    match failed {
        Some(e) => {
            parts.into_iter().for_each(FinishedPart::discard);
            Err(e.into())
        }
        None => Ok((parts, tables)),
    }
}

/// Threads that map one file's chunks: `OPSLAKE_THREADS`, else one per core.
fn ingest_threads() -> usize {
    std::env::var("OPSLAKE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(std::num::NonZeroUsize::get))
        .unwrap_or(1)
        .max(1)
}

/// A table and its path in the lake.
type TableAt = (String, Arc<Table>);

/// One mapping worker's rows of one stream, staged as Parquet parts, one per table.
pub struct StagedSink<'a> {
    staging: &'a Staging,
    /// The parts' name: the stream's position in the run and the worker.
    part: String,
    writers: BTreeMap<String, PartWriter>,
    tables: Vec<TableAt>,
}

impl<'a> StagedSink<'a> {
    fn new(staging: &'a Staging, part: String) -> Self {
        Self { staging, part, writers: BTreeMap::new(), tables: Vec::new() }
    }
}

impl Sink for StagedSink<'_> {
    type Error = Error;

    fn write(&mut self, table: &Arc<Table>, batch: &RecordBatch) -> Result<()> {
        let path = table_path(&table.id);
        let writer = match self.writers.entry(path.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.tables.push((path.clone(), Arc::clone(table)));
                e.insert(self.staging.part_writer(&path, &self.part, table)?)
            }
        };
        writer.write(batch)?;
        // The commit deduplicates only the keys staged more than once: it must hear of each.
        if table.write_mode != WriteMode::Append {
            let key = match table.unique_key.as_slice() {
                [k] => batch.column_by_name(k).and_then(|c| c.as_any().downcast_ref::<StringArray>()),
                _ => None,
            };
            self.staging.track_keys(&path, key);
        }
        Ok(())
    }

    fn discard(self) {
        self.writers.into_values().for_each(PartWriter::discard);
    }
}
