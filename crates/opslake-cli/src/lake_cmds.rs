//! Commands that read or tend an existing lake: `runs`, `publish`, `maintain`.

use arrow::array::RecordBatch;
use clap::Args;
use opslake_config::StorageLocation;

use crate::open::{lake_err, open_lake};
use crate::{CliError, LakeArgs, ProjectArgs};

/// Batches as JSON objects, one per row.
pub(crate) fn json_rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, CliError> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer.write(b).map_err(|e| CliError::new(opslake_schema::ErrorClass::Internal, e))?;
    }
    writer.finish().map_err(|e| CliError::new(opslake_schema::ErrorClass::Internal, e))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| CliError::new(opslake_schema::ErrorClass::Internal, e))
}

pub(crate) fn text(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    match row.get(key) {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Arguments of `opslake runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Show one run: its files and the table versions it committed.
    #[arg(long, value_name = "RUN_ID")]
    show: Option<String>,
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn runs(args: &RunsArgs) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    if let Some(id) = &args.show {
        let (files, tables) = opslake_lake::runs::show(&open.lake, &open.contract, id).await.map_err(lake_err)?;
        let (files, tables) = (json_rows(&files)?, json_rows(&tables)?);
        if files.is_empty() && tables.is_empty() {
            // Say whether the run exists at all.
            opslake_lake::runs::versions_as_of(&open.lake, &open.contract, id).await.map_err(lake_err)?;
        }
        if args.json {
            let out = serde_json::json!({ "run_id": id, "files": files, "tables": tables });
            println!("{out:#}");
            return Ok(());
        }
        println!("run {id}");
        println!(
            "\n{:<60} {:<24} {:<9} {:>9} {:>9} {:>9}",
            "file", "connection", "status", "read", "written", "rejected"
        );
        for f in &files {
            let reload = if f.get("reloaded") == Some(&serde_json::Value::Bool(true)) { " (reloaded)" } else { "" };
            println!(
                "{:<60} {:<24} {:<9} {:>9} {:>9} {:>9}{reload}",
                text(f, "path"),
                text(f, "connection"),
                text(f, "status"),
                text(f, "rows_read"),
                text(f, "rows_written"),
                text(f, "rows_rejected")
            );
            if let Some(serde_json::Value::String(e)) = f.get("error") {
                println!("    error: {e}");
            }
        }
        println!("\n{:<36} {:<10} {:>9} {:>8}", "table", "mode", "rows", "version");
        for t in &tables {
            println!(
                "{:<36} {:<10} {:>9} {:>8}",
                text(t, "table_name"),
                text(t, "write_mode"),
                text(t, "rows"),
                text(t, "version")
            );
        }
        return Ok(());
    }
    let batches = opslake_lake::runs::list(&open.lake, &open.contract, args.limit).await.map_err(lake_err)?;
    let mut rows = json_rows(&batches)?;
    let holder = opslake_lake::lock::holder(&open.lake).await.map_err(lake_err)?;
    for r in &mut rows {
        let running = r.get("status").and_then(|s| s.as_str()) == Some("RUNNING");
        let held = holder.as_ref().is_some_and(|h| Some(h.run_id.as_str()) == r.get("run_id").and_then(|s| s.as_str()));
        if running && !held {
            // It never wrote its end: killed, or its machine died.
            r.insert("status".into(), "INTERRUPTED".into());
        }
    }
    if args.json {
        println!("{:#}", serde_json::Value::Array(rows.into_iter().map(serde_json::Value::Object).collect()));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no runs recorded in {}", open.location);
        return Ok(());
    }
    println!(
        "{:<36} {:<8} {:<11} {:<20} {:>6} {:>7} {:>6} {:>9} {:>9}",
        "run", "command", "status", "started (UTC)", "files", "skipped", "failed", "read", "rejected"
    );
    for r in &rows {
        let started = text(r, "started_at").replace('T', " ");
        println!(
            "{:<36} {:<8} {:<11} {:<20} {:>6} {:>7} {:>6} {:>9} {:>9}",
            text(r, "run_id"),
            text(r, "command"),
            text(r, "status"),
            started.get(..19).unwrap_or(&started),
            text(r, "files_loaded"),
            text(r, "files_skipped"),
            text(r, "files_failed"),
            text(r, "rows_read"),
            text(r, "rows_rejected"),
        );
        if let Some(serde_json::Value::String(m)) = r.get("message")
            && text(r, "status") == "FAILED"
        {
            println!("    {m}");
        }
    }
    Ok(())
}

/// Arguments of `opslake publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Where to write the snapshot: a local directory or an s3://, gs:// or az:// URL.
    #[arg(long, value_name = "DIR_OR_URL")]
    out: String,
}

pub(crate) async fn publish(args: &PublishArgs) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    let out = StorageLocation::parse(&args.out).map_err(|e| CliError::user(format!("--out {e}")))?;
    let manifest = opslake_lake::publish::publish(&open.lake, &open.contract, &out, &mut |t| {
        tracing::info!(table = t, "publishing")
    })
    .await
    .map_err(lake_err)?;
    println!("{:<36} {:>10} {:>12}  file", "table", "rows", "bytes");
    for t in &manifest.tables {
        println!("{:<36} {:>10} {:>12}  {}", t.table, t.rows, t.bytes, t.path);
    }
    println!(
        "snapshot {} published to {out} ({} tables; manifest.json points at it)",
        manifest.snapshot_id,
        manifest.tables.len()
    );
    Ok(())
}

/// Arguments of `opslake maintain`.
#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Keep every version younger than this many hours readable (`--as-of` reaches back this
    /// far); data files only older versions use are deleted.
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    retain_hours: u32,
}

pub(crate) async fn maintain(args: &MaintainArgs) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    let options = opslake_lake::maintain::MaintainOptions {
        retention: chrono::Duration::hours(i64::from(args.retain_hours)),
        ..Default::default()
    };
    let report = opslake_lake::maintain::maintain(&open.lake, &open.contract, &options, &mut |t| {
        tracing::info!(table = t, "maintaining")
    })
    .await
    .map_err(lake_err)?;
    println!("{:<36} {:>8} {:>10} {:>9} {:>8}", "table", "written", "compacted", "vacuumed", "version");
    for m in &report.tables {
        println!(
            "{:<36} {:>8} {:>10} {:>9} {:>8}",
            m.table,
            m.files_added,
            m.files_removed,
            m.files_vacuumed,
            m.version.map_or("-".into(), |v| v.to_string())
        );
    }
    println!("run {}: {} tables maintained", report.run_id, report.tables.len());
    Ok(())
}
