//! Committing what a run staged: each table once, in its write mode, through the lake's API.

use std::collections::BTreeSet;
use std::sync::Arc;

use opslake_lake::runs::Run;
use opslake_lake::write::{CommitPlan, StagedTable, commit_table, flag_file_rows, truncate_table};
use opslake_lake::{REJECTS, table_path};
use opslake_schema::Table;

use crate::stream::Read;
use crate::{Event, Progress, Result, TableCommit, internal};

/// Commits every staged table, canonical tables first and `_rejects` last; then takes out of
/// the tables the rows of files that fed them before but not now; on a full refresh, empties
/// the tables no file fed.
pub async fn commit_all(
    run: &mut Run<'_>,
    read: &Read,
    rejects: &Arc<Table>,
    full_refresh: bool,
    progress: &mut Progress<'_>,
) -> Result<Vec<TableCommit>> {
    let (lake, contract) = (run.lake(), run.contract());
    let staging = &read.staging;
    let (run_id, started_at) = (run.context().run_id.clone(), run.context().started_at);
    let plan =
        CommitPlan { full_refresh, files: &read.staged_files, reloaded: &read.reloaded, run_id: &run_id, started_at };
    let mut commits = Vec::new();
    let staged: Vec<String> = staging.tables().map(str::to_string).collect();
    // A crash in between leaves rejects to be rewritten by the rerun, never rejects without
    // their tables.
    let order = staged.iter().filter(|p| *p != REJECTS).chain(staged.iter().filter(|p| *p == REJECTS));
    for path in order {
        run.lock().renew_if_due().await?;
        progress(Event::Committing(path));
        let table = if path == REJECTS {
            rejects.as_ref()
        } else {
            read.tables.get(path).ok_or_else(|| internal(format!("staged rows for unknown table {path}")))?.as_ref()
        };
        let repeated = tokio::task::block_in_place(|| staging.repeated_keys(path, &table.unique_key))?;
        let staged =
            StagedTable { dir: &staging.table_dir(path), repeated: repeated.as_deref(), rows: staging.rows(path) };
        commits.push(TableCommit::from(commit_table(lake, table, staged, plan).await?));
    }
    if !full_refresh && !read.staged_files.is_empty() {
        // Tables a file fed before but not now: `_rejects` loses the file's old readings; a
        // canonical table keeps a reloaded file's rows, flagged deleted.
        let touched: BTreeSet<&str> =
            read.files.iter().filter(|f| f.error.is_none()).flat_map(|f| f.tables.iter().map(String::as_str)).collect();
        let mut candidates: Vec<&Table> =
            touched.iter().filter_map(|t| t.split_once('.').and_then(|(ns, name)| contract.table(ns, name))).collect();
        candidates.push(rejects);
        for table in candidates {
            let path = table_path(&table.id);
            let files = match () {
                _ if staged.contains(&path) => continue,
                _ if path == REJECTS => &read.staged_files,
                _ if !read.reloaded.is_empty() => &read.reloaded,
                _ => continue,
            };
            run.lock().renew_if_due().await?;
            progress(Event::Committing(&path));
            if let Some(c) = flag_file_rows(lake, table, CommitPlan { reloaded: files, ..plan }).await? {
                commits.push(TableCommit::from(c));
            }
        }
    }
    if full_refresh {
        // A full refresh rebuilds the lake from the files: tables no file fed are emptied.
        for table in contract.tables().chain(std::iter::once(rejects.as_ref())) {
            let path = table_path(&table.id);
            if staged.contains(&path) || opslake_lake::read::open(lake, table, None).await?.is_none() {
                continue;
            }
            run.lock().renew_if_due().await?;
            progress(Event::Committing(&path));
            commits.push(TableCommit::from(truncate_table(lake, table).await?));
        }
    }
    Ok(commits)
}
