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
use opslake_tools::input::{Opened, visit_inputs_as};
use opslake_tools::privacy::Redactor;
use opslake_tools::stream::{Sink, StreamContext, read_stream};

use crate::drift::{Drift, Verdict};
use crate::plan::{Plan, Planned};
use crate::{Error, Event, FileSummary, Progress, Result, Source};

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

/// When a re-export that wrote fewer rows than its last load is refused.
#[derive(Debug, Clone, Copy)]
pub struct ShrinkGuard {
    /// Load such files anyway (`--allow-shrink`).
    pub allow: bool,
    /// The share of its rows a re-export may lose before it is refused (`max_shrink_ratio`).
    pub max_ratio: f64,
}

/// What decides, once a file was read whole, whether its rows are kept.
pub struct Gates<'a> {
    /// Refuses a re-export that lost too many rows.
    pub shrink: ShrinkGuard,
    /// Compares its layout with the accepted one, and applies the drift policy.
    pub drift: &'a mut Drift,
}

/// Reads every file the plan says to, one after another, renewing the run's lock between them.
pub async fn read_all(
    run: &mut Run<'_>,
    tools: &[Tool],
    plan: &Plan<'_>,
    rejects: &Arc<Table>,
    redactor: Option<Arc<Redactor>>,
    gates: Gates<'_>,
    progress: &mut Progress<'_>,
) -> Result<Read> {
    let Gates { shrink: guard, drift } = gates;
    let run_id = run.context().run_id.clone();
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
        let display = input.name.clone();
        progress(Event::FileStarted { index, total: plan.read.len(), path: &display });
        let context = StreamContext {
            run_id: &run.context().run_id,
            ingested_at: run.context().started_at,
            snapshot_at: planned.fingerprint.modified_at.unwrap_or(run.context().started_at),
            redactor: redactor.clone(),
            rejects,
            workers,
        };
        let mut streams = Vec::new();
        // Kept only once the whole file is read and passes the shrink guard.
        let mut parts = Vec::new();
        let mut tables = Vec::new();
        let mut visitor = |opened: Opened<'_>| {
            let name = opened.name.clone();
            part += 1;
            let staging = &read.staging;
            let open_sink = |worker: usize| Ok(StagedSink::new(staging, format!("{part:06}-{worker:02}")));
            let mut rows = |n| progress(Event::Rows(n));
            let outcome = read_stream(opened, tools, connection, &context, &open_sink, &mut rows)
                .and_then(|(summary, sinks)| Ok((summary, finish(sinks)?)));
            let summary = match outcome {
                Ok((summary, (p, t))) => {
                    parts.extend(p);
                    tables.extend(t);
                    summary
                }
                Err(e) => FileSummary::failed(name, &connection.name, &e),
            };
            streams.push(summary);
            Ok(())
        };
        // A local file is hashed before it is read, an object as it streams in (read once).
        let (sha256, visited) = tokio::task::block_in_place(|| -> Result<(String, Result<()>)> {
            match &input.source {
                Source::File(path) => {
                    let sha256 = match &planned.sha256 {
                        Some(s) => s.clone(),
                        None => sha256_of(path)?,
                    };
                    Ok((sha256, visit_inputs_as(path, &display, &mut visitor).map_err(Error::from)))
                }
                Source::Object(object) => Ok(match object.visit(&display, &mut visitor) {
                    Ok(sha256) => (sha256, Ok(())),
                    // Its bytes did not all arrive: there is no hash of them to record.
                    Err(e) => (String::new(), Err(e)),
                }),
            }
        })?;
        if let Err(e) = visited {
            streams.push(FileSummary::failed(display.clone(), &connection.name, &e));
        }
        let written: u64 = streams.iter().map(|s| s.rows_written).sum();
        let mut refusal = shrunk(planned, &streams, &tables, written, guard);
        let mut held = None;
        // Only a file read whole is compared: a failed one loads nothing anyway.
        if refusal.is_none() && streams.iter().all(|s| s.error.is_none()) {
            match drift.judge(&run_id, input, &streams, progress) {
                Verdict::Load => {}
                Verdict::Fail(why) => refusal = Some(why),
                Verdict::Hold(why) => held = Some(why),
            }
        }
        if refusal.is_some() || held.is_some() {
            parts.into_iter().for_each(FinishedPart::discard);
            let first = streams.first().cloned().unwrap_or_default();
            let mut whole = FileSummary {
                tool: first.tool,
                shape: first.shape,
                encoding: first.encoding,
                ..FileSummary::default()
            };
            whole.path.clone_from(&display);
            whole.connection.clone_from(&connection.name);
            whole.error = refusal;
            whole.held = held;
            streams = vec![whole];
        } else {
            parts.into_iter().for_each(|p| read.staging.keep(p));
            for (path, table) in tables {
                read.tables.entry(path).or_insert(table);
            }
        }
        streams.iter().for_each(|s| progress(Event::FileDone(s)));
        let error = streams.iter().find_map(|s| s.error.clone());
        let held = streams.iter().find_map(|s| s.held.clone());
        let ok_streams: Vec<String> =
            streams.iter().filter(|s| s.error.is_none() && s.held.is_none()).map(|s| s.path.clone()).collect();
        // Rows an older opslake wrote under the name the file was given then are its rows too.
        let old_name = planned.previous.as_ref().and_then(|p| p.name.clone()).filter(|_| !ok_streams.is_empty());
        read.staged_files.extend(ok_streams.iter().cloned().chain(old_name.clone()));
        if planned.decision == Decision::Changed {
            read.reloaded.extend(ok_streams.iter().cloned().chain(old_name));
        }
        read.file_rows.push(RunFileRow {
            run_id: run.context().run_id.clone(),
            path: display,
            connection: connection.name.clone(),
            // An archive with one unreadable member is retried as a whole next run.
            status: match (&error, &held) {
                (Some(_), _) => "FAILED",
                (None, Some(_)) => "HELD",
                (None, None) => "LOADED",
            }
            .into(),
            size_bytes: planned.fingerprint.size as i64,
            modified_at: planned.fingerprint.modified_at,
            etag: planned.fingerprint.etag.clone(),
            content_sha256: sha256,
            reloaded: planned.decision == Decision::Changed,
            rows_read: streams.iter().map(|s| s.rows_read as i64).sum(),
            rows_written: streams.iter().map(|s| s.rows_written as i64).sum(),
            rows_rejected: streams.iter().map(|s| s.rows_rejected as i64).sum(),
            error: error.or(held),
            recorded_at: chrono::Utc::now().timestamp_micros(),
        });
        read.files.extend(streams);
    }
    Ok(read)
}

/// Why a re-export must not load: it feeds a merge or history table (or now feeds nothing) and
/// wrote more than the guard's share fewer rows than its last load, or none. The rows it no
/// longer carries would be flagged deleted, and a download cut short looks just like that.
fn shrunk(
    planned: &Planned<'_>,
    streams: &[FileSummary],
    tables: &[TableAt],
    written: u64,
    guard: ShrinkGuard,
) -> Option<String> {
    let before = planned.previous.as_ref()?.rows_written.max(0) as u64;
    if guard.allow || planned.decision != Decision::Changed || before == 0 || streams.iter().any(|s| s.error.is_some())
    {
        return None;
    }
    let keyed: Vec<String> = tables
        .iter()
        .filter(|(_, t)| t.write_mode != WriteMode::Append)
        .map(|(_, t)| t.id.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let lost = before.saturating_sub(written);
    let hint = "check the file (a download cut short?) or pass --allow-shrink to load it";
    if written == 0 {
        return Some(format!(
            "this export has no rows where its last load wrote {before}; an empty or header-only re-export would \
             flag them all deleted: {hint}"
        ));
    }
    let share = lost as f64 / before as f64;
    if keyed.is_empty() || share <= guard.max_ratio {
        return None;
    }
    Some(format!(
        "this export wrote {written} rows where its last load wrote {before} ({:.0}% fewer, more than \
         max_shrink_ratio {:.0}%); the {lost} rows it no longer carries would be flagged deleted in {}: {hint}",
        share * 100.0,
        guard.max_ratio * 100.0,
        keyed.join(", ")
    ))
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
