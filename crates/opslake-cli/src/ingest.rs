//! `opslake ingest`: the connections of opslake.yml, or files given on the command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use opslake_lake::Lake;
use opslake_lake::ingest::{Event, FileSummary, IngestOptions, IngestReport, Input, RunContext, ingest};
use opslake_schema::{Contract, ErrorClass, Privacy, StorageLocation};
use opslake_sources::ToolRegistry;
use opslake_sources::parse::DateOrder;

use crate::{CliError, LakeArgs, ProjectArgs};

/// Arguments of `opslake ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Ingest this file, directory or glob instead of the configured connections.
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
    /// Seconds the lake's lock lasts without renewal; a run that dies on another host blocks
    /// the lake at most this long (on this host a dead run's lock is taken over at once).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    lock_ttl: u64,
}

pub(crate) async fn run(args: &IngestArgs) -> Result<(), CliError> {
    let contract = Contract::embedded().map_err(CliError::from_schema)?;
    let project = args.project.open()?;
    let (registry, problems) =
        ToolRegistry::load(Some(&project.dir), &contract).map_err(|e| CliError::new(e.class(), e))?;
    if !problems.is_empty() {
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        return Err(CliError::user(format!("invalid tool files (run `opslake validate`):\n{text}")));
    }
    if let Some(tool) = &args.tool
        && registry.origin(tool).is_none()
    {
        let known = registry.names().collect::<Vec<_>>().join(", ");
        return Err(CliError::user(format!("unknown tool '{tool}'; known tools: {known}")));
    }
    let inputs = if args.path.is_empty() {
        let mut inputs = Vec::new();
        for c in &project.config.connections {
            let path = match StorageLocation::parse(&c.path.value).map_err(CliError::user)? {
                StorageLocation::Local(p) if p.is_relative() => project.dir.join(p),
                StorageLocation::Local(p) => p,
                StorageLocation::ObjectStore { url, .. } => {
                    return Err(CliError::user(format!(
                        "connection '{}': reading exports from {url} is not supported yet; sync them to a local directory",
                        c.name.value
                    )));
                }
            };
            let date_order = match c.options.date_order.as_ref().map(|o| o.value.as_str()) {
                Some("dmy") => Some(DateOrder::Dmy),
                Some(_) => Some(DateOrder::Mdy),
                None => None,
            };
            for file in expand(&path)? {
                inputs.push(Input {
                    path: file,
                    connection: c.name.value.clone(),
                    tool: Some(c.tool.value.clone()),
                    timezone: c.options.timezone.as_ref().map(|t| t.value.clone()),
                    date_order,
                    currency: Some(
                        c.options.currency.as_ref().unwrap_or(&project.config.reporting_currency).value.clone(),
                    ),
                });
            }
        }
        if project.config.connections.is_empty() {
            return Err(CliError::user("nothing to ingest: opslake.yml has no connections; add one or pass --path"));
        }
        inputs
    } else {
        let mut inputs = Vec::new();
        for p in &args.path {
            for file in expand(p)? {
                inputs.push(Input {
                    path: file,
                    connection: args.connection.clone(),
                    tool: args.tool.clone(),
                    currency: Some(project.config.reporting_currency.value.clone()),
                    ..Input::default()
                });
            }
        }
        inputs
    };
    if inputs.is_empty() {
        return Err(CliError::user("no input files found"));
    }
    let location = project.lake(args.lake.lake.as_deref()).map_err(CliError::user)?;
    let lake = Lake::open(&location).map_err(|e| CliError::new(e.class(), e))?;
    let run = RunContext::start();
    let config_name = project.config_file.as_ref().map_or_else(|| "opslake.yml".into(), |f| f.display().to_string());
    let privacy = Privacy::resolve(&project.config.personal_data, &contract, &config_name).map_err(|problems| {
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        CliError::user(format!("invalid personal_data policy:\n{text}"))
    })?;
    let options = IngestOptions {
        full_refresh: args.full_refresh,
        lock_ttl: Duration::from_secs(args.lock_ttl),
        privacy: Some(privacy),
    };
    let bar = progress_bar(inputs.len());
    let (mut rows, mut current) = (0u64, String::new());
    let mut on_event = |e: Event<'_>| match e {
        Event::FileStarted { path, .. } => {
            current = short(path);
            bar.set_message(format!("{current} · {rows} rows"));
        }
        Event::Rows(n) => {
            rows += n;
            bar.set_message(format!("{current} · {rows} rows"));
        }
        Event::FileDone(_) => bar.inc(1),
        Event::Skipped(_) => {}
        Event::Committing(table) => bar.set_message(format!("committing {table}")),
    };
    let tools = registry.tools();
    let report = ingest(&lake, &contract, &tools, &inputs, &run, &options, &mut on_event)
        .await
        .map_err(|e| CliError::new(e.class(), e))?;
    bar.finish_and_clear();
    print_summary(&report, &location);
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| CliError::new(ErrorClass::Internal, e))?;
        std::fs::write(path, json).map_err(|e| CliError::io(path, e))?;
    }
    let failed: Vec<&FileSummary> = report.failed().collect();
    let ratio = report.reject_ratio();
    let max = project.config.max_reject_ratio.value;
    if !failed.is_empty() {
        return Err(CliError::data(format!(
            "{} file(s) failed; their rows were not written (see above)",
            failed.len()
        )));
    }
    if ratio > max {
        return Err(CliError::data(format!(
            "{:.2}% of rows were rejected, more than max_reject_ratio {:.2}%; see the _rejects table",
            ratio * 100.0,
            max * 100.0
        )));
    }
    Ok(())
}

fn progress_bar(files: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files as u64);
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn short(path: &str) -> String {
    Path::new(path).file_name().map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Files under `path`: itself, every file below a directory, or the matches of a glob.
fn expand(path: &Path) -> Result<Vec<PathBuf>, CliError> {
    let text = path.to_string_lossy();
    if text.contains(['*', '?', '[']) {
        let glob =
            globset::Glob::new(&text).map_err(|e| CliError::user(format!("bad glob '{text}': {e}")))?.compile_matcher();
        let base: PathBuf =
            path.components().take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '['])).collect();
        let mut out = Vec::new();
        walk(if base.as_os_str().is_empty() { Path::new(".") } else { &base }, &mut out)?;
        out.retain(|p| glob.is_match(p));
        return Ok(out);
    }
    if path.is_dir() {
        let mut out = Vec::new();
        walk(path, &mut out)?;
        return Ok(out);
    }
    if !path.exists() {
        return Err(CliError::user(format!("{} does not exist", path.display())));
    }
    Ok(vec![path.to_path_buf()])
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let entries = opslake_schema::files::sorted_entries(dir).map_err(|e| CliError::io(dir, e))?;
    for p in entries {
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn print_summary(report: &IngestReport, lake: &StorageLocation) {
    // Columns as wide as their longest value, so long file and shape names keep the table aligned.
    let fw = report.files.iter().map(|f| short(&f.path).chars().count()).max().unwrap_or(0).max(4);
    let sw = report.files.iter().filter_map(|f| f.shape.as_deref()).map(str::len).max().unwrap_or(0).max(5);
    println!("{:<fw$} {:<sw$} {:>9} {:>9} {:>9} {:>7}", "file", "shape", "read", "written", "rejected", "nulled");
    for f in &report.files {
        let name = short(&f.path);
        match &f.error {
            Some(e) => println!("{name:<fw$} FAILED: {e}"),
            None => println!(
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
    println!();
    for t in &report.tables {
        match t.version {
            Some(v) => println!("{:<40} {:<9} {:>9} rows  version {v}", t.table, t.mode, t.rows),
            None => println!("{:<40} {:<9} {:>9} rows  unchanged", t.table, t.mode, t.rows),
        }
    }
    if !report.skipped.is_empty() {
        println!(
            "{} file(s) skipped: loaded before and unchanged (--full-refresh reads them again)",
            report.skipped.len()
        );
    }
    println!(
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
