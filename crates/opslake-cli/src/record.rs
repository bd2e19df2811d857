//! The `_runs` record of a command that writes the lake as several steps (`run`, `build`,
//! `test`): one [`Run`] from start to end, whose final row says how it ended, with the counts
//! of every step, the first step that failed and the exit code.

use std::time::Duration;

use opslake_lake::runs::{Ended, Run};

use crate::CliError;
use crate::exit::BUSY;
use crate::open::{OpenLake, lake_err};

/// Takes the lake's lock for `command` and records that it started.
pub(crate) async fn start<'a>(
    open: &'a OpenLake,
    command: &str,
    ttl: Duration,
    full_refresh: bool,
) -> Result<Run<'a>, CliError> {
    Run::start(&open.lake, &open.contract, command, ttl, full_refresh).await.map_err(lake_err)
}

/// Records how the run ended and gives the lake back. `failed_step` names the first step that
/// failed. A run that lost the lake to another run records nothing more.
pub(crate) async fn end(
    mut run: Run<'_>,
    outcome: Result<(), CliError>,
    failed_step: Option<&str>,
) -> Result<(), CliError> {
    let ended = match &outcome {
        Err(e) if e.exit_code() == BUSY => Ended::LostLock,
        Ok(()) => Ended::Succeeded,
        Err(e) => Ended::Failed { message: e.message(), step: failed_step.map(str::to_string) },
    };
    run.row.exit_code = Some(i64::from(outcome.as_ref().map_or_else(CliError::exit_code, |()| 0)));
    let recorded = run.end(ended).await;
    // The run's own failure says more than a failure to record it.
    outcome?;
    recorded.map_err(lake_err)
}
