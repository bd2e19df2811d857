//! `opslake build` and `opslake test`: the pipelines project against the lake.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use opslake_lake::lock::LakeLock;
use opslake_models::execute::{BuildOptions, Event, Status};
use opslake_models::{PIPELINES_DIR, Project};
use opslake_schema::ErrorClass;

use crate::lake_cmds::{lake_err, open_lake, warn_missing_rates};
use crate::{CliError, LakeArgs, ProjectArgs};

/// Arguments shared by `build` and `test`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Models to run: names, `+name` (with ancestors), `name+` (with descendants), `tag:x`,
    /// `path:models/marts`; several are a union, `a,b` an intersection. Default: all.
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    select: Vec<String>,
    /// Models to leave out, in the same syntax.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    exclude: Vec<String>,
    /// Values for `var()` as a JSON object, over the project's (reporting_currency,
    /// reporting_timezone, fiscal_year_start_month).
    #[arg(long, value_name = "JSON")]
    vars: Option<String>,
    /// Where compiled SQL, manifest.json and run_results.json go. Default `<project>/target`.
    #[arg(long, value_name = "DIR")]
    target: Option<PathBuf>,
    /// Seconds the lake's lock lasts without renewal.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    lock_ttl: u64,
}

/// Arguments of `opslake build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    common: ModelArgs,
    /// Rebuild incremental models from all their input instead of merging new rows.
    #[arg(long)]
    full_refresh: bool,
    /// Models built side by side at most.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Build the models only; skip their tests.
    #[arg(long)]
    no_tests: bool,
}

pub(crate) async fn build(args: &BuildArgs) -> Result<(), CliError> {
    run(&args.common, true, !args.no_tests, args.full_refresh, args.threads).await
}

pub(crate) async fn test(args: &ModelArgs) -> Result<(), CliError> {
    run(args, false, true, false, 1).await
}

/// The project's pipelines, compiled with the project's vars and `--vars`; any problem is an
/// error listing them all.
fn load_pipelines(
    project: &opslake_schema::Project,
    contract: &opslake_schema::Contract,
    extra_vars: Option<&str>,
) -> Result<Project, CliError> {
    let mut vars = opslake_models::project_vars(&project.config);
    if let Some(text) = extra_vars {
        let given: BTreeMap<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| CliError::user(format!("--vars must be a JSON object ({e}): {text}")))?;
        vars.extend(given);
    }
    let (compiled, problems) =
        Project::load(project.dir.join(PIPELINES_DIR), contract, vars).map_err(|e| CliError::new(e.class(), e))?;
    if !problems.is_empty() {
        return Err(CliError::new(ErrorClass::User, opslake_models::Error::Invalid { problems }));
    }
    Ok(compiled)
}

async fn run(args: &ModelArgs, models: bool, tests: bool, full_refresh: bool, threads: usize) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    let project = &open.project;
    let compiled = load_pipelines(project, &open.contract, args.vars.as_deref())?;
    let target = args.target.clone().unwrap_or_else(|| project.dir.join("target"));
    let run_id = opslake_lake::ingest::RunContext::start().run_id;
    opslake_models::artifacts::write(&target, &compiled, &run_id, None).map_err(|e| CliError::new(e.class(), e))?;
    let options = BuildOptions {
        select: args.select.clone(),
        exclude: args.exclude.clone(),
        full_refresh,
        threads,
        run_models: models,
        run_tests: tests,
        target_dir: target.clone(),
        udf: opslake_models::model_udfs(&project.config),
    };
    let command = if models { "build" } else { "test" };
    let ttl = std::time::Duration::from_secs(args.lock_ttl);
    let mut lock = LakeLock::acquire(&open.lake, &run_id, command, ttl).await.map_err(lake_err)?;
    let report =
        opslake_models::execute::build(&compiled, &open.lake, &open.contract, &options, &mut lock, &print_event).await;
    let released = lock.release().await;
    let report = report.map_err(|e| CliError::new(e.class(), e))?;
    released.map_err(lake_err)?;
    opslake_models::artifacts::write(&target, &compiled, &run_id, Some(&report))
        .map_err(|e| CliError::new(e.class(), e))?;
    warn_missing_rates(&report.missing_rates);
    let count = |s: Status| report.results.iter().filter(|r| r.status == s).count();
    println!(
        "\nDone in {:.1}s. OK={} PASS={} WARN={} FAIL={} ERROR={} SKIP={}  ({})",
        report.elapsed_time,
        count(Status::Success),
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Error),
        count(Status::Skipped),
        target.join("run_results.json").display()
    );
    if report.failed() {
        return Err(CliError::data(format!(
            "{command} failed: {} model(s) or test(s) errored, {} test(s) failed",
            count(Status::Error),
            count(Status::Fail)
        )));
    }
    Ok(())
}

fn print_event(e: Event<'_>) {
    if let Event::Finished { index, total, result: r } = e {
        let what = match (r.resource_type, &r.materialized) {
            ("model", Some(m)) => format!("{m} model"),
            (kind, _) => kind.to_string(),
        };
        let status = match r.status {
            Status::Success => "OK",
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Skipped => "SKIP",
        };
        let detail = match (r.rows_affected, r.failures) {
            (Some(rows), _) => format!("{rows} rows, "),
            (_, Some(f)) if f > 0 => format!("{f} failing, "),
            _ => String::new(),
        };
        println!("{index:>3} of {total} {status:<5} {what} {} [{detail}{:.2}s]", r.name, r.execution_time);
        if !matches!(r.status, Status::Success | Status::Pass) {
            println!("      {}", r.message.replace('\n', "\n      "));
        }
    }
}

/// Arguments of `opslake docs build`.
#[derive(Debug, Args)]
pub struct DocsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Directory to write index.html into. Default `<project>/target/docs`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub(crate) fn docs(args: &DocsArgs) -> Result<(), CliError> {
    let project = args.project.open()?;
    let contract = opslake_schema::Contract::embedded().map_err(CliError::from_schema)?;
    let compiled = load_pipelines(&project, &contract, None)?;
    let out = args.out.clone().unwrap_or_else(|| project.dir.join("target").join("docs"));
    std::fs::create_dir_all(&out).map_err(|e| CliError::io(&out, e))?;
    let page = out.join("index.html");
    std::fs::write(&page, opslake_models::docs::site(&compiled, &contract)).map_err(|e| CliError::io(&page, e))?;
    println!(
        "wrote {} ({} models, {} tests, {} canonical tables)",
        page.display(),
        compiled.pipelines.models.len(),
        compiled.pipelines.tests.len(),
        contract.tables().count()
    );
    Ok(())
}
