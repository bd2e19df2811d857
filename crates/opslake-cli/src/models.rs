//! `opslake build` and `opslake test`: the pipelines project against the lake.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use opslake_models::execute::{BuildOptions, BuildReport, Event, Status};
use opslake_models::{PIPELINES_DIR, Project};
use opslake_schema::ErrorClass;

use crate::logging::PROGRESS;
use crate::logging::warn_missing_rates;
use crate::open::{OpenLake, open_lake};
use crate::{CliError, LakeArgs, ProjectArgs, say};
use opslake_lake::runs::Run;

/// Arguments shared by `build` and `test`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(flatten)]
    pub(crate) project: ProjectArgs,
    #[command(flatten)]
    pub(crate) lake: LakeArgs,
    /// Models to run: names, `+name` (with ancestors), `name+` (with descendants), `tag:x`,
    /// `path:models/marts`; several are a union, `a,b` an intersection. Default: all.
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub(crate) select: Vec<String>,
    /// Models to leave out, in the same syntax.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub(crate) exclude: Vec<String>,
    /// Values for `var()` as a JSON object, over the project's (reporting_currency,
    /// reporting_timezone, fiscal_year_start_month).
    #[arg(long, value_name = "JSON")]
    pub(crate) vars: Option<String>,
    /// Where compiled SQL, manifest.json and run_results.json go. Default `<project>/target`.
    #[arg(long, value_name = "DIR")]
    pub(crate) target: Option<PathBuf>,
    /// Seconds the lake's lock lasts without renewal.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub(crate) lock_ttl: u64,
}

/// How models are built, in `build` and `run`.
#[derive(Debug, Args)]
pub struct BuildFlags {
    /// Rebuild from all input: incremental models instead of merging new rows (and in `run`,
    /// every table from every file).
    #[arg(long)]
    pub(crate) full_refresh: bool,
    /// Models built side by side at most.
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// Stop at the first problem (in `run` also a failed file or too many rejects; then a
    /// model error or failing test): nothing more starts, the rest is skipped.
    #[arg(long)]
    pub(crate) fail_fast: bool,
}

/// Arguments of `opslake build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    flags: BuildFlags,
    /// Build the models only; skip their tests.
    #[arg(long)]
    no_tests: bool,
}

pub(crate) async fn build(args: &BuildArgs) -> Result<(), CliError> {
    let f = &args.flags;
    let steps = Steps { models: true, tests: !args.no_tests, full_refresh: f.full_refresh, threads: f.threads };
    run(&args.common, steps, f.fail_fast).await
}

pub(crate) async fn test(args: &ModelArgs) -> Result<(), CliError> {
    run(args, Steps { models: false, tests: true, full_refresh: false, threads: 1 }, false).await
}

/// Which parts of the pipelines a command runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    pub models: bool,
    pub tests: bool,
    pub full_refresh: bool,
    pub threads: usize,
}

async fn run(args: &ModelArgs, steps: Steps, fail_fast: bool) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    let plan = ModelPlan::prepare(&open, args, steps, fail_fast)?;
    let command = if steps.models { "build" } else { "test" };
    let ttl = std::time::Duration::from_secs(args.lock_ttl);
    let mut run = crate::record::start(&open, command, ttl, steps.full_refresh).await?;
    let outcome = plan.execute(&open, &mut run).await.and_then(|report| ModelPlan::check(&report, command));
    crate::record::end(run, outcome, Some(command)).await
}

/// The pipelines compiled and what to run of them.
pub(crate) struct ModelPlan {
    compiled: Project,
    options: BuildOptions,
}

impl ModelPlan {
    /// Compiles the project's pipelines; a project with problems is an error listing them.
    pub fn prepare(open: &OpenLake, args: &ModelArgs, steps: Steps, fail_fast: bool) -> Result<Self, CliError> {
        let project = &open.project;
        let compiled = load_pipelines(project, &open.contract, args.vars.as_deref())?;
        let options = BuildOptions {
            select: args.select.clone(),
            exclude: args.exclude.clone(),
            full_refresh: steps.full_refresh,
            threads: steps.threads,
            run_models: steps.models,
            run_tests: steps.tests,
            target_dir: args.target.clone().unwrap_or_else(|| project.dir.join("target")),
            udf: opslake_models::model_udfs(&project.config),
            fail_fast,
        };
        Ok(Self { compiled, options })
    }

    /// Builds under the run's lock, printing a line per model and test, and writes
    /// manifest.json and run_results.json. Fills the run's model and test counts.
    pub async fn execute(&self, open: &OpenLake, run: &mut Run<'_>) -> Result<BuildReport, CliError> {
        let target = &self.options.target_dir;
        let run_id = &run.context().run_id.clone();
        let artifacts = |report| {
            opslake_models::artifacts::write(target, &self.compiled, run_id, report)
                .map_err(|e| CliError::new(e.class(), e))
        };
        artifacts(None)?;
        // Sized by the build's first event: only the selected nodes run.
        let bar = crate::logging::progress_bar(0, "nodes");
        let on_event = |e: Event<'_>| print_event(e, &bar);
        let report = opslake_models::execute::build(
            &self.compiled,
            &open.lake,
            &open.contract,
            &self.options,
            run.lock(),
            &on_event,
        )
        .await
        .map_err(|e| CliError::new(e.class(), e))?;
        bar.finish_and_clear();
        artifacts(Some(&report))?;
        warn_missing_rates(&report.missing_rates);
        let of = |kind: &str, s: &[Status]| {
            report.results.iter().filter(|r| r.resource_type == kind && s.contains(&r.status)).count() as i64
        };
        let row = &mut run.row;
        if self.options.run_models {
            row.models_built = Some(of("model", &[Status::Success]));
            row.models_failed = Some(of("model", &[Status::Error, Status::Skipped]));
        }
        if self.options.run_tests {
            row.tests_passed = Some(of("test", &[Status::Pass]));
            row.tests_warned = Some(of("test", &[Status::Warn]));
            row.tests_failed = Some(of("test", &[Status::Fail, Status::Error, Status::Skipped]));
        }
        let count = |s: Status| report.results.iter().filter(|r| r.status == s).count();
        let (ok, pass, warn) = (count(Status::Success), count(Status::Pass), count(Status::Warn));
        let (fail, error, skip) = (count(Status::Fail), count(Status::Error), count(Status::Skipped));
        let seconds = report.elapsed_time;
        tracing::info!(target: PROGRESS, run_id = %run_id, ok, pass, warn, fail, error, skip, seconds, "build done");
        say!(
            "\nDone in {seconds:.1}s. OK={ok} PASS={pass} WARN={warn} FAIL={fail} ERROR={error} SKIP={skip}  ({})",
            target.join("run_results.json").display()
        );
        Ok(report)
    }

    /// A model errored or a test failed: exit code 6.
    pub fn check(report: &BuildReport, command: &str) -> Result<(), CliError> {
        if !report.failed() {
            return Ok(());
        }
        let count = |s: Status| report.results.iter().filter(|r| r.status == s).count();
        Err(CliError::models(format!(
            "{command} failed: {} model(s) or test(s) errored, {} test(s) failed",
            count(Status::Error),
            count(Status::Fail)
        )))
    }
}

/// The project's pipelines, compiled with the project's vars and `--vars`; any problem is an
/// error listing them all.
fn load_pipelines(
    project: &opslake_config::Project,
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

fn print_event(e: Event<'_>, bar: &indicatif::ProgressBar) {
    match e {
        Event::Started { name, total, .. } => {
            bar.set_length(total as u64);
            bar.set_message(name.to_string());
        }
        Event::Finished { index, total, result: r } => {
            bar.set_length(total as u64);
            bar.inc(1);
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
            tracing::info!(
                target: PROGRESS,
                node = %r.unique_id,
                status,
                rows = r.rows_affected,
                failures = r.failures,
                seconds = r.execution_time,
                detail = (!r.message.is_empty()).then_some(r.message.as_str()),
                "node done"
            );
            let detail = match (r.rows_affected, r.failures) {
                (Some(rows), _) => format!("{rows} rows, "),
                (_, Some(f)) if f > 0 => format!("{f} failing, "),
                _ => String::new(),
            };
            bar.suspend(|| {
                say!("{index:>3} of {total} {status:<5} {what} {} [{detail}{:.2}s]", r.name, r.execution_time);
                if !matches!(r.status, Status::Success | Status::Pass) {
                    say!("      {}", r.message.replace('\n', "\n      "));
                }
            });
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
