//! `opslake validate`: config, contract and pipelines, every problem at once, no data read.

use clap::Args;
use opslake_config::{Privacy, Project, ProjectError, StorageLocation};
use opslake_models::PIPELINES_DIR;
use opslake_schema::{Contract, ErrorClass, Problem};
use opslake_tools::ToolRegistry;

use crate::{CliError, LakeArgs, ProjectArgs};

/// Arguments of `opslake validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
}

pub(crate) fn run(args: &ValidateArgs) -> Result<(), CliError> {
    let contract = Contract::embedded().map_err(CliError::from_schema)?;
    let mut problems: Vec<Problem> = Vec::new();
    if !args.project.project.is_dir() {
        return Err(CliError::user(format!("project directory {} does not exist", args.project.project.display())));
    }
    // A config that does not parse is one problem among others: keep going with the defaults
    // so the pipelines are still checked and every problem is reported in one run.
    let config_file = args.project.config_file();
    let project = match Project::open(&args.project.project, config_file.as_deref()) {
        Ok(project) => project,
        Err(ProjectError::Parse(problem)) => {
            problems.push(problem);
            let mut project = Project::open(&args.project.project, None).map_err(CliError::from_project)?;
            project.config_file = config_file;
            project
        }
        Err(err) => return Err(CliError::from_project(err)),
    };
    let config_parsed = problems.is_empty();

    let (tools, tool_problems) =
        ToolRegistry::load(Some(&project.dir), &contract).map_err(|e| CliError::new(e.class(), e))?;
    problems.extend(tool_problems);
    let known_tools = tools.names().map(str::to_string).collect();
    let config_name = project.config_file.as_ref().map(|f| f.display().to_string());
    if let Some(file) = config_name.as_ref().filter(|_| config_parsed) {
        problems.extend(project.config.validate(file, &known_tools));
    }
    let privacy_file = config_name.clone().unwrap_or_else(|| "opslake.yml".into());
    let privacy = match Privacy::resolve(&project.config.personal_data, &contract, &privacy_file) {
        Ok(p) => Some(p),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    if let Some(lake) = &args.lake.lake
        && let Err(msg) = StorageLocation::parse(lake)
    {
        problems.push(Problem::in_file("--lake", msg));
    }

    let pipelines_dir = project.dir.join(PIPELINES_DIR);
    let vars = opslake_models::project_vars(&project.config);
    let (compiled, pipeline_problems) =
        opslake_models::Project::load(&pipelines_dir, &contract, vars).map_err(|e| CliError::new(e.class(), e))?;
    problems.extend(pipeline_problems);
    let pipelines = &compiled.pipelines;

    match &config_name {
        Some(file) if config_parsed => {
            println!("config     {file}: {} connection(s)", project.config.connections.len())
        }
        Some(file) => println!("config     {file}: does not parse"),
        None => println!("config     none in {} (defaults apply)", project.dir.display()),
    }
    let lake =
        project.lake(args.lake.lake.as_deref()).map(|l| l.to_string()).unwrap_or_else(|e| format!("invalid ({e})"));
    println!("lake       {lake}");
    println!("contract   {} tables in {} namespaces", contract.tables().count(), contract.namespaces().len());
    println!("tools      {}", tools.names().count());
    if let Some(privacy) = &privacy {
        for (i, line) in privacy.summary().iter().enumerate() {
            println!("{}{line}", if i == 0 { "personal   " } else { "           " });
        }
        if privacy.hashes() {
            use opslake_config::config::SecretSource;
            let env = opslake_config::KEY_ENV;
            let from = match project.config.personal_data.key_source() {
                Some(SecretSource::Env(var)) => format!("the environment variable {var}"),
                Some(SecretSource::File(file)) => format!("the file {file}"),
                _ if std::env::var_os(env).is_some() => format!("the environment variable {env}"),
                _ => format!("not set: set {env} or personal_data.key_env / key_file"),
            };
            println!("           key of the hashes: {from}");
        }
    }
    println!(
        "pipelines  {}: {} model(s), {} data test(s), {} declared source table(s)",
        pipelines_dir.display(),
        pipelines.models.len(),
        pipelines.tests.len(),
        pipelines.sources.len()
    );

    if let Some(file) = project.config_file.as_ref().filter(|_| config_parsed) {
        warn_inline_secrets(&project, file);
    }

    if problems.is_empty() {
        println!("ok");
        return Ok(());
    }
    problems.sort();
    for p in &problems {
        eprintln!("{p}");
    }
    Err(CliError::new(ErrorClass::User, anyhow::anyhow!("{} problem(s) found", problems.len())))
}

/// A secret written in a file git tracks is in every clone and in the history for good.
fn warn_inline_secrets(project: &Project, file: &std::path::Path) {
    let inline: Vec<_> =
        project.config.serve.users.iter().filter_map(|u| Some((u, u.password_hash.as_ref()?))).collect();
    if inline.is_empty() || !tracked_by_git(file) {
        return;
    }
    for (user, hash) in inline {
        tracing::warn!(
            "{}:{}: serve user '{}': password_hash is written in a file git tracks; keep it in the environment \
             (password_hash_env) or a file outside the repository (password_hash_file)",
            file.display(),
            hash.referenced.line(),
            user.name.value
        );
    }
}

fn tracked_by_git(file: &std::path::Path) -> bool {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir };
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "--error-unmatch", "--"])
        .arg(name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
