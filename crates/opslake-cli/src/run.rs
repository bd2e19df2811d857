//! `opslake run`: what a scheduler calls every night. Ingest the connections, build the
//! models, run their tests, publish a snapshot when configured: one lock, one `_runs` record.
//!
//! Data problems do not stop the run: files that failed or rows rejected past the limit leave
//! the rest of the data committed, and the models still build on it, so the marts are as fresh
//! as they can be; the run then fails with the first problem's exit code. `--fail-fast` stops
//! at the first problem instead. Failures outside the data (storage, bugs) always stop it. A
//! snapshot is published only when nothing failed, so BI tools never see a half-built lake.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use opslake_ingest::ingest_held;
use opslake_lake::runs::Run;

use crate::exit::{DATA, MODELS};
use crate::ingest::{IngestPlan, Inputs, Progress, print_summary};
use crate::models::{BuildFlags, ModelArgs, ModelPlan, Steps};
use crate::open::{OpenLake, lake_err, open_lake};
use crate::{CliError, say};

/// Arguments of `opslake run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    flags: BuildFlags,
    /// Do not publish the snapshot configured under `publish:`.
    #[arg(long)]
    no_publish: bool,
    /// Load re-exports that lost more of their rows than max_shrink_ratio allows (or all of
    /// them); the rows they no longer carry are flagged deleted.
    #[arg(long)]
    allow_shrink: bool,
    /// Also write the ingest's per-file summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

/// A step that failed, and how.
type Failure = (&'static str, CliError);

pub(crate) async fn run(args: &RunArgs) -> Result<(), CliError> {
    let common = &args.common;
    let ttl = Duration::from_secs(common.lock_ttl);
    // Everything that can be checked before taking the lake is: a broken config, tool file or
    // model fails the run before it writes anything.
    let open = open_lake(&common.project, &common.lake)?;
    let inputs = Inputs { paths: &[], tool: None, connection: "default" };
    let ingest =
        IngestPlan::prepare(&open.project, &open.contract, &inputs, args.flags.full_refresh, args.allow_shrink, ttl)
            .await?;
    let steps = Steps { models: true, tests: true, full_refresh: args.flags.full_refresh, threads: args.flags.threads };
    let models = ModelPlan::prepare(&open, common, steps, args.flags.fail_fast)?;
    let publish = match open.project.publish_location() {
        Some(_) if args.no_publish => None,
        Some(loc) => Some(loc.map_err(|e| CliError::user(format!("publish.out {e}")))?),
        None => None,
    };

    let mut run = crate::record::start(&open, "run", ttl, args.flags.full_refresh).await?;
    let mut failures: Vec<Failure> = Vec::new();
    let outcome = steps_in_order(args, &open, &ingest, &models, publish.as_ref(), &mut run, &mut failures).await;
    let (outcome, step) = match outcome {
        Err(fatal) => (Err(fatal.1), Some(fatal.0)),
        Ok(()) if failures.is_empty() => (Ok(()), None),
        Ok(()) => {
            let (step, first) = failures.remove(0);
            let also: Vec<String> = failures.iter().map(|(s, e)| format!("{s}: {}", e.message())).collect();
            (Err(first.also(&also)), Some(step))
        }
    };
    match &outcome {
        Ok(()) => say!("run {} succeeded", run.context().run_id),
        Err(e) => tracing::debug!(run_id = %run.context().run_id, exit_code = e.exit_code(), "run failed"),
    }
    crate::record::end(run, outcome, step).await
}

/// Ingest, build and test, publish. Data and model problems are pushed to `failures` and the
/// run goes on unless `--fail-fast`; anything else ends it at once (`Err`).
async fn steps_in_order(
    args: &RunArgs,
    open: &OpenLake,
    ingest: &IngestPlan,
    models: &ModelPlan,
    publish: Option<&opslake_config::StorageLocation>,
    run: &mut Run<'_>,
    failures: &mut Vec<Failure>,
) -> Result<(), Failure> {
    let tools = ingest.registry.tools();
    let mut progress = Progress::new(ingest.inputs.len());
    let report = ingest_held(run, &tools, &ingest.inputs, &ingest.options, &mut progress.on_event())
        .await
        .map_err(|e| ("ingest", CliError::new(e.class(), e)))?;
    progress.finish(&report);
    report.count_into(&mut run.row);
    print_summary(&report, &open.location);
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| ("ingest", CliError::new(opslake_schema::ErrorClass::Internal, e)))?;
        std::fs::write(path, json).map_err(|e| ("ingest", CliError::io(path, e)))?;
    }
    if let Err(e) = ingest.check(&report) {
        if !args.flags.fail_fast {
            tracing::warn!(step = "ingest", exit_code = DATA, "{}; building the models on what landed", e.message());
        }
        failures.push(("ingest", e));
        if args.flags.fail_fast {
            return Ok(());
        }
    }

    say!();
    let built = models.execute(open, run).await.map_err(|e| ("build", e))?;
    if let Err(e) = ModelPlan::check(&built, "build") {
        if publish.is_some() || !args.flags.fail_fast {
            tracing::warn!(step = "build", exit_code = MODELS, "{}", e.message());
        }
        // `execute` counted the models that errored or were skipped into the run's row.
        let models_failed = run.row.models_failed.is_some_and(|n| n > 0);
        failures.push((if models_failed { "build" } else { "test" }, e));
        if args.flags.fail_fast {
            return Ok(());
        }
    }

    if let Some(out) = publish {
        if !failures.is_empty() {
            tracing::warn!("not publishing to {out}: the run had failures; the last snapshot stays");
            return Ok(());
        }
        let manifest = opslake_lake::publish::publish(
            &open.lake,
            &open.contract,
            out,
            &mut |t| tracing::debug!(target: crate::logging::PROGRESS, table = t, "publishing"),
        )
        .await
        .map_err(|e| ("publish", lake_err(e)))?;
        tracing::info!(target: crate::logging::PROGRESS, snapshot_id = %manifest.snapshot_id, tables = manifest.tables.len(), "published to {out}");
        say!("published snapshot {} to {out} ({} tables)", manifest.snapshot_id, manifest.tables.len());
        run.row.snapshot_id = Some(manifest.snapshot_id);
    }
    Ok(())
}
