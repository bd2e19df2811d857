//! opslake-cli: the `opslake` command.
//!
//! Parses arguments with clap, opens the project (`opslake.yml`, `pipelines/`), calls into the
//! library crates and turns their errors into exit codes by who must act (see [`exit`]).

mod demo;
mod drift;
pub mod exit;
mod ingest;
mod init;
mod inspect;
mod lake_cmds;
pub mod logging;
pub mod malloc;
mod models;
mod open;
mod query;
mod record;
mod run;
mod serve;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use opslake_config::{CONFIG_FILE, Project};

pub use exit::CliError;

/// opslake turns the exports of your business tools (CRM, marketing, finance, HR) into one
/// canonical Delta Lake, runs SQL models across departments and serves the result.
#[derive(Debug, Parser)]
#[command(name = "opslake", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  opslake init acme          write a starter project into ./acme\n  opslake validate acme      check its config, the contract and its pipelines\n  opslake docs schema        regenerate docs/schema from the canonical contract\n\nExit codes: 0 ok, 2 bad arguments, 3 fix your input, 4 something outside opslake failed, 5 data did not all land (failed files, too many rejects), 6 a model errored or a data test failed, 70 a bug in opslake, 75 another run holds the lake (try later)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Logging options, taken by every command.
    #[command(flatten)]
    pub log: logging::LogArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starter project (opslake.yml, pipelines/) into a directory.
    #[command(after_help = "Example:\n  opslake init acme && cd acme && opslake validate")]
    Init(init::InitArgs),
    /// Invent a company, write its exports from every tool opslake maps (in each tool's own
    /// format, the same customers and people across tools), then ingest them, build the models
    /// and print the cross-department marts.
    #[command(
        after_help = "Examples:\n  opslake demo                     write ./demo and print its marts\n  opslake demo --dir /tmp/d --seed 7 --companies 200"
    )]
    Demo(demo::DemoArgs),
    /// Check the project config, the canonical contract and the pipelines, reporting every
    /// problem with its file and line. Reads no data.
    #[command(
        after_help = "Examples:\n  opslake validate                 the project in the current directory\n  opslake validate acme            the project in ./acme\n  opslake validate --lake s3://acme-lake/prod   also check a lake URL given on the command line"
    )]
    Validate(validate::ValidateArgs),
    /// Ingest the connections, build the models, run their tests and publish the snapshot
    /// configured under `publish:`, as one run with one record in `_runs`: the command for a
    /// scheduler.
    #[command(
        after_help = "Examples:\n  opslake run                          the project in the current directory\n  opslake run acme --fail-fast --log-format json\n  0 2 * * *  cd /srv/acme && opslake run --quiet || alert \"opslake exited $?\"   (crontab)\n\nExit codes: 0 all done; 3 fix the config, tool files or models (nothing was written); 4 storage failed, retry; 5 data did not all land; 6 a model errored or a test failed; 70 a bug; 75 another run holds the lake. `opslake runs --json --limit 1` shows the run's record."
    )]
    Run(run::RunArgs),
    /// Read export files into the lake: the connections of opslake.yml, or files given with
    /// --path (the tool is detected when --tool is not given). Prints a summary per file.
    #[command(
        after_help = "Examples:\n  opslake ingest                                   the connections in ./opslake.yml\n  opslake ingest --path exports/ --lake ./lake     every file below exports/, tools detected\n  opslake ingest --tool salesforce --path Account.csv --lake s3://acme/lake --summary-json run.json\n\nExit codes: 0 all rows in; 5 a file failed or rejects exceeded max_reject_ratio (what landed is committed); 3 bad input; 4 storage failure."
    )]
    Ingest(ingest::IngestArgs),
    /// Show what opslake recognises in an export file (tool, shape, encoding, dialect, columns)
    /// and a few rows as they would be mapped. Writes nothing.
    #[command(
        after_help = "Examples:\n  opslake inspect exports/Account.csv\n  opslake inspect --tool hubspot --rows 10 contacts.csv"
    )]
    Inspect(inspect::InspectArgs),
    /// List the runs recorded in the lake (newest first), or show one run's files and table
    /// versions. A run that never recorded its end and holds no lock shows as INTERRUPTED.
    #[command(
        after_help = "Examples:\n  opslake runs\n  opslake runs --show 01937c1e-...\n  opslake runs --json --limit 1   the last run, for a scheduler"
    )]
    Runs(lake_cmds::RunsArgs),
    /// Run SQL against the lake: canonical tables as namespace.table, system tables as
    /// _rejects, _runs, _run_files, _run_tables, model tables by name, failing rows of data
    /// tests as test_failures.<test>.
    #[command(
        after_help = "Examples:\n  opslake query \"SELECT count(*) FROM crm.people\"\n  opslake query --as-of 01937c1e-... \"SELECT stage, count(*) FROM crm.opportunities WHERE is_current GROUP BY stage\"\n  opslake query --format csv \"SELECT * FROM _rejects\" > rejects.csv"
    )]
    Query(query::QueryArgs),
    /// Serve the lake over the Postgres wire protocol, read-only, to users with a password:
    /// psql, BI tools and any Postgres driver can query it.
    #[command(
        after_help = "Examples:\n  opslake serve --hash-password            make a password_hash for serve.users\n  opslake serve                            listen on serve.listen (127.0.0.1:5433)\n  psql \"host=127.0.0.1 port=5433 user=analyst dbname=opslake\"   then \\dt crm.*\n\nUsers come from serve.users in opslake.yml, or OPSLAKE_SERVE_USER and OPSLAKE_SERVE_PASSWORD_HASH.\nWith serve.tls {cert, key} it offers TLS, and refuses to start if they do not load."
    )]
    Serve(serve::ServeArgs),
    /// Write a plain Parquet snapshot of every table for BI tools, switched in atomically,
    /// with a manifest.json of files, row counts and schemas.
    #[command(
        after_help = "Examples:\n  opslake publish --out ./snapshot\n  opslake publish --out s3://acme-bi/opslake"
    )]
    Publish(lake_cmds::PublishArgs),
    /// Compact small files and delete data files that no version within the retention period
    /// needs. Takes the lake's lock like ingest.
    #[command(after_help = "Examples:\n  opslake maintain\n  opslake maintain --retain-hours 24")]
    Maintain(lake_cmds::MaintainArgs),
    /// List the schema drift ingest found (a mapped column missing or renamed, a new column,
    /// a column whose values stopped parsing) since each layout was last accepted, or accept
    /// a connection's new layout.
    #[command(
        after_help = "Examples:\n  opslake drift\n  opslake drift --connection salesforce --all --json\n  opslake drift accept salesforce      the latest layout of each drifted shape\n\nschema_drift in opslake.yml (or a connection's options) decides what a drifted file does: evolve loads it, freeze fails it (exit 5), quarantine holds it until accepted."
    )]
    Drift(drift::DriftArgs),
    /// Run the models of pipelines/ (in DAG order, independent ones side by side) and their
    /// data tests. Views live in the session; tables and incremental models are Delta tables
    /// under models/ in the lake, queryable by name. Writes target/manifest.json and
    /// target/run_results.json.
    #[command(
        after_help = "Examples:\n  opslake build\n  opslake build --select +fct_pipeline_bookings_cash\n  opslake build --select tag:finance --exclude path:models/staging --full-refresh\n\nExit codes: 0 all built and tests passed (warnings allowed); 6 a model errored or a test failed; 3 the project has problems."
    )]
    Build(models::BuildArgs),
    /// Run the data tests of pipelines/ against the lake as it is: generic tests declared in
    /// YAML and singular tests in tests/. Failing rows are kept under test_failures.<test>.
    #[command(after_help = "Examples:\n  opslake test\n  opslake test --select fct_pipeline_bookings_cash")]
    Test(models::ModelArgs),
    /// Generate documentation.
    #[command(subcommand)]
    Docs(DocsCommand),
}

/// `opslake docs ...`.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Write the canonical schema reference: one Markdown page per namespace and an index.
    #[command(after_help = "Example:\n  opslake docs schema --out docs/schema")]
    Schema {
        /// Directory to write into; stale pages there are removed.
        #[arg(long, default_value = "docs/schema")]
        out: PathBuf,
    },
    /// Write the coverage matrix: every tool's objects and the producers whose layout opslake
    /// derives for each, then the shapes still written one layout at a time.
    #[command(after_help = "Example:\n  opslake docs coverage --out docs/coverage.md")]
    Coverage {
        /// File to write; replaced only when `opslake docs coverage` wrote it.
        #[arg(long, default_value = "docs/coverage.md")]
        out: PathBuf,
    },
    /// Write the documentation site of the project: one HTML page (index.html) with the
    /// lineage graph, every model with its columns, tests and SQL, and the canonical tables.
    /// It opens from the file system; no server needed. Reads no data.
    #[command(after_help = "Examples:\n  opslake docs build\n  opslake docs build acme --out site/")]
    Build(models::DocsArgs),
}

/// Which project a command works on.
#[derive(Debug, Clone, Args)]
pub struct ProjectArgs {
    /// The project directory, holding opslake.yml and pipelines/.
    #[arg(default_value = ".")]
    pub project: PathBuf,
    /// The config file, when it is not `<project>/opslake.yml`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ProjectArgs {
    /// The config file in effect: `--config`, else `<project>/opslake.yml` when it exists.
    pub fn config_file(&self) -> Option<PathBuf> {
        match &self.config {
            Some(file) => Some(file.clone()),
            None => Some(self.project.join(CONFIG_FILE)).filter(|f| f.is_file()),
        }
    }

    /// Opens the project; with no opslake.yml (and no `--config`) the defaults apply, so
    /// commands work ad hoc with `--lake` alone.
    pub fn open(&self) -> Result<Project, CliError> {
        if !self.project.is_dir() {
            return Err(CliError::user(format!("project directory {} does not exist", self.project.display())));
        }
        Project::open(&self.project, self.config_file().as_deref()).map_err(CliError::from_project)
    }
}

/// Where the lake is, for commands that touch it.
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    /// Lake location (local directory, s3://, gs:// or az:// URL); overrides `lake` in
    /// opslake.yml.
    #[arg(long, env = "OPSLAKE_LAKE", value_name = "URL")]
    pub lake: Option<String>,
}

/// Runs one command and returns the process exit code; errors are printed to stderr (as a
/// JSON event with `--log-format json`).
pub async fn run(cli: Cli) -> ExitCode {
    logging::init(&cli.log);
    malloc::log_refused();
    let json = cli.log.log_format == logging::LogFormat::Json;
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if json => {
            tracing::error!(exit_code = err.exit_code(), "{}", err.message());
            ExitCode::from(err.exit_code())
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}

impl Cli {
    /// The command line `opslake <args>`, for commands that run other commands (`demo`).
    pub(crate) fn try_parse_from_steps(args: &[&str]) -> Result<Self, CliError> {
        Self::try_parse_from(std::iter::once("opslake").chain(args.iter().copied())).map_err(|e| {
            CliError::new(
                opslake_schema::ErrorClass::Internal,
                anyhow::anyhow!("cannot run `opslake {}`: {e}", args.join(" ")),
            )
        })
    }
}

/// Runs one command.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(args) => demo::run(&args).await,
        Command::Init(args) => init::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Run(args) => run::run(&args).await,
        Command::Ingest(args) => ingest::run(&args).await,
        Command::Inspect(args) => inspect::run(&args),
        Command::Runs(args) => lake_cmds::runs(&args).await,
        Command::Query(args) => query::query(&args).await,
        Command::Serve(args) => serve::serve(&args).await,
        Command::Publish(args) => lake_cmds::publish(&args).await,
        Command::Maintain(args) => lake_cmds::maintain(&args).await,
        Command::Drift(args) => drift::drift(&args).await,
        Command::Build(args) => models::build(&args).await,
        Command::Test(args) => models::test(&args).await,
        Command::Docs(DocsCommand::Schema { out }) => docs_schema(&out),
        Command::Docs(DocsCommand::Coverage { out }) => docs_coverage(&out),
        Command::Docs(DocsCommand::Build(args)) => models::docs(&args),
    }
}

fn docs_coverage(out: &std::path::Path) -> Result<(), CliError> {
    let contract = opslake_schema::Contract::embedded().map_err(CliError::from_schema)?;
    let (registry, problems) =
        opslake_tools::ToolRegistry::load(None, &contract).map_err(|e| CliError::new(e.class(), e))?;
    if let Some(p) = problems.first() {
        return Err(CliError::user(format!("built-in tool files have problems: {p}")));
    }
    if std::fs::read_to_string(out).is_ok_and(|t| !t.starts_with(opslake_tools::objects::COVERAGE_HEADER)) {
        return Err(CliError::user(format!(
            "{} was not written by `opslake docs coverage`; not replacing it (choose another --out)",
            out.display()
        )));
    }
    let tools = registry.tools();
    std::fs::write(out, opslake_tools::objects::coverage(&tools)).map_err(|e| CliError::io(out, e))?;
    let objects: usize = tools.iter().map(|t| t.objects.len()).sum();
    println!("wrote {} ({} tools, {objects} objects)", out.display(), tools.len());
    Ok(())
}

fn docs_schema(out: &std::path::Path) -> Result<(), CliError> {
    let contract = opslake_schema::Contract::embedded().map_err(CliError::from_schema)?;
    let pages = opslake_schema::docs::schema_reference(&contract);
    std::fs::create_dir_all(out).map_err(|e| CliError::io(out, e))?;
    let wanted: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
    // Only its own pages, told by their first line: `--out` may be a folder with other files.
    let generated = |path: &std::path::Path| {
        std::fs::read_to_string(path).is_ok_and(|text| opslake_schema::docs::is_generated(&text))
    };
    for name in &wanted {
        let path = out.join(name);
        if path.exists() && !generated(&path) {
            return Err(CliError::user(format!(
                "{} was not written by `opslake docs schema`; not replacing it (choose another --out)",
                path.display()
            )));
        }
    }
    let existing = std::fs::read_dir(out).map_err(|e| CliError::io(out, e))?;
    for entry in existing {
        let path = entry.map_err(|e| CliError::io(out, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "md") && !wanted.contains(&name.as_str()) && generated(&path) {
            std::fs::remove_file(&path).map_err(|e| CliError::io(&path, e))?;
        }
    }
    for (name, text) in &pages {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| CliError::io(&path, e))?;
    }
    println!("wrote {} pages ({} tables) to {}", pages.len(), contract.tables().count(), out.display());
    Ok(())
}

/// Set by `opslake serve`, where a panic is caught where the query runs and fails only that
/// query: the server must go on serving the other connections.
pub(crate) static PANICS_ARE_CAUGHT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes a panic print that it is a bug and exit with the internal-error code, whichever
/// thread it happens on; in `opslake serve`, print it and go on.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if PANICS_ARE_CAUGHT.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "error: a query panicked; this is a bug, please report it with the message above; serving goes on"
            );
            return;
        }
        eprintln!("error: opslake panicked; this is a bug, please report it with the message above");
        std::process::exit(i32::from(exit::INTERNAL));
    }));
}
