//! The `_runs` record of a command that writes the lake as several steps (`run`, `build`,
//! `test`): the lake's lock is taken once, a RUNNING row written, and one final row says how
//! it ended, with the counts of every step, the first step that failed and the exit code.

use std::time::Duration;

use opslake_lake::ingest::RunContext;
use opslake_lake::lock::LakeLock;
use opslake_lake::runs::{RUNS, RunRow};

use crate::CliError;
use crate::exit::BUSY;
use crate::lake_cmds::{OpenLake, lake_err};

/// A run in progress: it holds the lake.
pub(crate) struct RunRecord {
    pub run: RunContext,
    pub row: RunRow,
    pub lock: LakeLock,
}

impl RunRecord {
    /// Takes the lake's lock for `command` and records that it started.
    pub async fn start(open: &OpenLake, command: &str, ttl: Duration, full_refresh: bool) -> Result<Self, CliError> {
        let run = RunContext::start();
        let lock = LakeLock::acquire(&open.lake, &run.run_id, command, ttl).await.map_err(lake_err)?;
        let row = RunRow { full_refresh, ..RunRow::starting(&run, command, &lock) };
        if let Err(e) =
            opslake_lake::runs::append_rows(&open.lake, &open.contract, RUNS, std::slice::from_ref(&row)).await
        {
            let _ = lock.release().await;
            return Err(lake_err(e));
        }
        Ok(Self { run, row, lock })
    }

    /// Records how the run ended and gives the lake back. `failed_step` names the first step
    /// that failed. A run that lost the lake to another run records nothing more: the lake is
    /// no longer its to write.
    pub async fn end(
        mut self,
        open: &OpenLake,
        outcome: Result<(), CliError>,
        failed_step: Option<&str>,
    ) -> Result<(), CliError> {
        if outcome.as_ref().is_err_and(|e| e.exit_code() == BUSY) {
            return outcome;
        }
        match &outcome {
            Ok(()) => self.row.status = "SUCCEEDED".into(),
            Err(e) => {
                self.row.status = "FAILED".into();
                self.row.message = Some(e.message());
                self.row.failed_step = failed_step.map(str::to_string);
            }
        }
        self.row.exit_code = Some(i64::from(outcome.as_ref().map_or_else(CliError::exit_code, |()| 0)));
        let recorded = opslake_lake::runs::record_end(&open.lake, &open.contract, self.lock, self.row).await;
        // The run's own failure says more than a failure to record it.
        outcome?;
        recorded.map_err(lake_err)
    }
}
