//! `opslake maintain`: compact small files and vacuum files no version within the retention
//! period needs. Nightly incremental merges leave many small files behind; compaction keeps
//! scans fast, vacuum keeps storage bounded. Time travel (`--as-of`) reaches back only as far
//! as the retention period.

use std::num::NonZeroU64;

use deltalake::operations::optimize::OptimizeType;
use opslake_schema::Contract;
use serde::Serialize;

use crate::runs::Run;
use crate::{Error, Lake, Result};

/// Settings of `opslake maintain`.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Versions younger than this stay readable; files only older versions use are deleted.
    pub retention: chrono::Duration,
    /// Compaction writes files of about this many bytes.
    pub target_file_size: NonZeroU64,
    /// Lock time to live.
    pub lock_ttl: std::time::Duration,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        Self {
            retention: chrono::Duration::days(7),
            target_file_size: NonZeroU64::new(128 * 1024 * 1024).expect("non-zero"),
            lock_ttl: crate::lock::DEFAULT_TTL,
        }
    }
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Maintained {
    /// `namespace.table`.
    pub table: String,
    /// Files written by compaction.
    pub files_added: u64,
    /// Small files compaction replaced.
    pub files_removed: u64,
    /// Files vacuum deleted from storage.
    pub files_vacuumed: u64,
    /// The table's version afterwards.
    pub version: Option<u64>,
}

/// What `opslake maintain` did.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainReport {
    /// The run, as `_runs` has it.
    pub run_id: String,
    /// Per table maintained.
    pub tables: Vec<Maintained>,
}

/// Compacts and vacuums every table of the lake under the lake's lock, recorded in `_runs`.
pub async fn maintain(
    lake: &Lake,
    contract: &Contract,
    options: &MaintainOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<MaintainReport> {
    let mut run = Run::start(lake, contract, "maintain", options.lock_ttl, false).await?;
    let mut done = Vec::new();
    let mut outcome = Ok(());
    for table in contract.tables().chain(contract.system_tables()) {
        if let Err(e) = run.lock().renew_if_due().await {
            outcome = Err(e);
            break;
        }
        // A failure must still reach `finish`: record the run as FAILED and give the lake back.
        let delta = match crate::read::open(lake, table, None).await {
            Ok(Some(delta)) => delta,
            Ok(None) => continue,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        progress(&table.id.to_string());
        match maintain_table(delta, &table.id.to_string(), options).await {
            Ok(m) => done.push(m),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if outcome.is_ok() {
        let (added, removed, vacuumed) =
            done.iter().fold((0, 0, 0), |(a, r, v), m| (a + m.files_added, r + m.files_removed, v + m.files_vacuumed));
        run.row.message = Some(format!(
            "{} tables: {added} files written, {removed} compacted away, {vacuumed} vacuumed",
            done.len()
        ));
    }
    let run_id = run.context().run_id.clone();
    run.finish(&outcome).await?;
    outcome.map(|()| MaintainReport { run_id, tables: done })
}

async fn maintain_table(delta: deltalake::DeltaTable, name: &str, options: &MaintainOptions) -> Result<Maintained> {
    let delta_err = |source| Error::Delta { table: name.to_string(), source };
    let (compacted, metrics) = delta
        .optimize()
        .with_type(OptimizeType::Compact)
        .with_target_size(options.target_file_size)
        .with_max_concurrent_tasks(2)
        .await
        .map_err(delta_err)?;
    let (vacuumed, vacuum) = compacted
        .vacuum()
        .with_retention_period(options.retention)
        // The default check refuses periods under the table's own setting (7 days); the
        // period is the user's explicit choice here.
        .with_enforce_retention_duration(false)
        .await
        .map_err(delta_err)?;
    Ok(Maintained {
        table: name.to_string(),
        files_added: metrics.num_files_added,
        files_removed: metrics.num_files_removed,
        files_vacuumed: vacuum.files_deleted.len() as u64,
        version: vacuumed.version(),
    })
}
