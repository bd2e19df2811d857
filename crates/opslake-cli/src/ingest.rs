//! `opslake ingest`: the connections of opslake.yml, or files given on the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::ProgressBar;
use opslake_config::{KEY_ENV, PersonalKey, Privacy, StorageLocation};
use opslake_ingest::stream::ShrinkGuard;
use opslake_ingest::{Event, IngestOptions, IngestReport, Input, ingest};
use opslake_lake::Lake;
use opslake_schema::{Contract, ErrorClass};
use opslake_tools::ToolRegistry;

use crate::logging::PROGRESS;
use crate::{CliError, LakeArgs, ProjectArgs, say};

/// Arguments of `opslake ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Ingest this file, directory or glob instead of the configured connections; an s3://,
    /// gs:// or az:// URL (an object, a prefix, or a glob) is listed and read from the store.
    #[arg(long, value_name = "PATH")]
    path: Vec<PathBuf>,
    /// The tool the files come from; detected from each file when not given.
    #[arg(long)]
    tool: Option<String>,
    /// Connection name for files given with --path (lands in source_connection).
    #[arg(long, default_value = "default")]
    connection: String,
    /// Also write the per-file summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Ignore the manifest of loaded files: read every file again and rebuild every table from
    /// them (history tables restart from the files at hand).
    #[arg(long)]
    full_refresh: bool,
    /// Load re-exports that lost more of their rows than max_shrink_ratio allows (or all of
    /// them); the rows they no longer carry are flagged deleted.
    #[arg(long)]
    allow_shrink: bool,
    /// Seconds the lake's lock lasts without renewal; a run that dies on another host blocks
    /// the lake at most this long (on this host a dead run's lock is taken over at once).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    lock_ttl: u64,
}

/// What an ingest reads and how: the inputs resolved, the tools, the options.
pub(crate) struct IngestPlan {
    pub registry: ToolRegistry,
    pub inputs: Vec<Input>,
    pub options: IngestOptions,
    /// The project's `max_reject_ratio`.
    max_reject_ratio: f64,
}

/// Which files an ingest reads: the connections of the project, or `paths` (from `--path`).
pub(crate) struct Inputs<'a> {
    pub paths: &'a [PathBuf],
    pub tool: Option<&'a str>,
    pub connection: &'a str,
}

/// The key of the personal-data hashes, from where opslake.yml says or [`KEY_ENV`]; `None`
/// when none is set (an old lake's salt may still serve: ingest decides). Messages name where
/// the key was looked for, never what it holds.
fn personal_key(project: &opslake_config::Project) -> Result<Option<PersonalKey>, CliError> {
    let (text, from) = match project.config.personal_data.key_source() {
        Some(source) => project.read_secret("personal_data.key", source).map_err(CliError::user)?,
        None => match std::env::var(KEY_ENV) {
            Ok(text) => (text, KEY_ENV.to_string()),
            Err(_) => return Ok(None),
        },
    };
    PersonalKey::parse_hex(&text).map(Some).map_err(|e| CliError::user(format!("{from} {e}")))
}

impl IngestPlan {
    /// Loads the project's tools and privacy policy and lists the input files.
    pub async fn prepare(
        project: &opslake_config::Project,
        contract: &Contract,
        inputs: &Inputs<'_>,
        full_refresh: bool,
        allow_shrink: bool,
        lock_ttl: Duration,
    ) -> Result<Self, CliError> {
        let (registry, problems) =
            ToolRegistry::load(Some(&project.dir), contract).map_err(|e| CliError::new(e.class(), e))?;
        if !problems.is_empty() {
            let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
            return Err(CliError::user(format!("invalid tool files (run `opslake validate`):\n{text}")));
        }
        if let Some(tool) = inputs.tool
            && registry.origin(tool).is_none()
        {
            let known = registry.names().collect::<Vec<_>>().join(", ");
            return Err(CliError::user(format!("unknown tool '{tool}'; known tools: {known}")));
        }
        let listed = if inputs.paths.is_empty() {
            opslake_ingest::plan::connection_inputs(project).await
        } else {
            opslake_ingest::plan::path_inputs(project, inputs.paths, inputs.tool, inputs.connection).await
        };
        let inputs = listed.map_err(|e| match e {
            opslake_ingest::Error::Lake(opslake_lake::Error::Io { path, source }) => CliError::io(&path, source),
            e => CliError::new(e.class(), e),
        })?;
        if inputs.is_empty() {
            return Err(CliError::user("no input files found"));
        }
        let config_name =
            project.config_file.as_ref().map_or_else(|| "opslake.yml".into(), |f| f.display().to_string());
        let privacy = Privacy::resolve(&project.config.personal_data, contract, &config_name).map_err(|problems| {
            let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
            CliError::user(format!("invalid personal_data policy:\n{text}"))
        })?;
        let key = if privacy.hashes() { personal_key(project)? } else { None };
        let shrink = ShrinkGuard { allow: allow_shrink, max_ratio: project.config.max_shrink_ratio.value };
        let max_nulled_ratio = project.config.schema_drift.max_nulled_ratio.value;
        let options = IngestOptions { full_refresh, lock_ttl, privacy: Some(privacy), key, shrink, max_nulled_ratio };
        Ok(Self { registry, inputs, options, max_reject_ratio: project.config.max_reject_ratio.value })
    }

    /// The data did not all land: a file failed, or more rows were rejected than allowed.
    pub fn check(&self, report: &IngestReport) -> Result<(), CliError> {
        let failed: Vec<String> = report.failed().map(|f| short(&f.path)).collect();
        if !failed.is_empty() {
            let named = failed.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            let more = if failed.len() > 3 { format!(" and {} more", failed.len() - 3) } else { String::new() };
            return Err(CliError::data(format!(
                "{} file(s) failed ({named}{more}); their rows were not written, the other files' were",
                failed.len()
            )));
        }
        let (ratio, max) = (report.reject_ratio(), self.max_reject_ratio);
        if ratio > max {
            return Err(CliError::data(format!(
                "{:.2}% of rows were rejected, more than max_reject_ratio {:.2}%; see the _rejects table",
                ratio * 100.0,
                max * 100.0
            )));
        }
        Ok(())
    }
}

pub(crate) async fn run(args: &IngestArgs) -> Result<(), CliError> {
    let inputs = Inputs { paths: &args.path, tool: args.tool.as_deref(), connection: &args.connection };
    let contract = Contract::embedded().map_err(CliError::from_schema)?;
    let project = args.project.open()?;
    let ttl = Duration::from_secs(args.lock_ttl);
    let plan = IngestPlan::prepare(&project, &contract, &inputs, args.full_refresh, args.allow_shrink, ttl).await?;
    let location = project.lake(args.lake.lake.as_deref()).map_err(CliError::user)?;
    let lake = Lake::open(&location).map_err(|e| CliError::new(e.class(), e))?;
    let tools = plan.registry.tools();
    let mut progress = Progress::new(plan.inputs.len());
    let report = ingest(&lake, &contract, &tools, &plan.inputs, &plan.options, &mut progress.on_event())
        .await
        .map_err(|e| CliError::new(e.class(), e))?;
    progress.finish(&report);
    print_summary(&report, &location);
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| CliError::new(ErrorClass::Internal, e))?;
        std::fs::write(path, json).map_err(|e| CliError::io(path, e))?;
    }
    plan.check(&report)
}

/// The progress of an ingest: a bar on a terminal, an event per file everywhere.
pub(crate) struct Progress {
    bar: ProgressBar,
    rows: u64,
    current: String,
}

impl Progress {
    pub fn new(files: usize) -> Self {
        Self { bar: crate::logging::progress_bar(files, "files"), rows: 0, current: String::new() }
    }

    /// The callback [`ingest`] reports to.
    pub fn on_event(&mut self) -> impl FnMut(Event<'_>) + Send + '_ {
        move |e: Event<'_>| match e {
            Event::FileStarted { path, .. } => {
                self.current = short(path);
                self.bar.set_message(format!("{} · {} rows", self.current, self.rows));
            }
            Event::Rows(n) => {
                self.rows += n;
                self.bar.set_message(format!("{} · {} rows", self.current, self.rows));
            }
            Event::FileDone(f) => {
                self.bar.inc(1);
                match &f.error {
                    Some(error) => tracing::warn!(target: PROGRESS, file = %f.path, %error, "file failed"),
                    None => tracing::info!(
                        target: PROGRESS,
                        file = %f.path,
                        shape = f.shape.as_deref().unwrap_or("-"),
                        rows_read = f.rows_read,
                        rows_written = f.rows_written,
                        rows_rejected = f.rows_rejected,
                        "file read"
                    ),
                }
            }
            Event::Skipped(path) => tracing::info!(target: PROGRESS, file = %path, "file unchanged, skipped"),
            Event::Committing(table) => {
                self.bar.set_message(format!("committing {table}"));
                tracing::debug!(target: PROGRESS, table, "committing");
            }
            Event::Warning(message) => self.bar.suspend(|| tracing::warn!("{message}")),
        }
    }

    /// Clears the bar and logs the step's totals.
    pub fn finish(&self, report: &IngestReport) {
        self.bar.finish_and_clear();
        tracing::info!(
            target: PROGRESS,
            run_id = %report.run_id,
            files_read = report.files.len(),
            files_failed = report.failed().count(),
            files_skipped = report.skipped.len(),
            rows_read = report.rows_read(),
            rows_rejected = report.rows_rejected(),
            "ingest done"
        );
    }
}

fn short(path: &str) -> String {
    Path::new(path).file_name().map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

pub(crate) fn print_summary(report: &IngestReport, lake: &StorageLocation) {
    // Columns as wide as their longest value, so long file and shape names keep the table aligned.
    let fw = report.files.iter().map(|f| short(&f.path).chars().count()).max().unwrap_or(0).max(4);
    let sw = report.files.iter().filter_map(|f| f.shape.as_deref()).map(str::len).max().unwrap_or(0).max(5);
    say!("{:<fw$} {:<sw$} {:>9} {:>9} {:>9} {:>7}", "file", "shape", "read", "written", "rejected", "nulled");
    for f in &report.files {
        let name = short(&f.path);
        match (&f.error, &f.held) {
            (Some(e), _) => say!("{name:<fw$} FAILED: {e}"),
            (None, Some(why)) => say!("{name:<fw$} HELD: {why}"),
            (None, None) => say!(
                "{:<fw$} {:<sw$} {:>9} {:>9} {:>9} {:>7}",
                name,
                f.shape.as_deref().unwrap_or("-"),
                f.rows_read,
                f.rows_written,
                f.rows_rejected,
                f.values_nulled
            ),
        }
    }
    say!();
    for t in &report.tables {
        match t.version {
            Some(v) => say!("{:<40} {:<9} {:>9} rows  version {v}", t.table, t.mode, t.rows),
            None => say!("{:<40} {:<9} {:>9} rows  unchanged", t.table, t.mode, t.rows),
        }
    }
    if !report.drift.is_empty() {
        let files: std::collections::BTreeSet<&str> = report.drift.iter().map(|d| d.path.as_str()).collect();
        say!(
            "schema drift: {} change(s) in {} file(s), {} held; `opslake drift` lists them",
            report.drift.len(),
            files.len(),
            report.held().count()
        );
    }
    if !report.skipped.is_empty() {
        say!("{} file(s) skipped: loaded before and unchanged (--full-refresh reads them again)", report.skipped.len());
    }
    say!(
        "run {}: {} file(s) read, {} rows read, {} rejected ({:.2}% invalid, {} unmapped, {} summary rows), lake {lake}",
        report.run_id,
        report.files.len(),
        report.rows_read(),
        report.rows_rejected(),
        report.reject_ratio() * 100.0,
        report.files.iter().map(|f| f.rows_unmapped).sum::<u64>(),
        report.files.iter().map(|f| f.rows_summary).sum::<u64>()
    );
}
