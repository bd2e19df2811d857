//! `opslake init`: a starter project a newcomer can validate, then extend.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::CliError;

/// Arguments of `opslake init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the project in; created if missing.
    pub dir: PathBuf,
    /// Overwrite starter files that already exist.
    #[arg(long)]
    pub force: bool,
}

const FILES: &[(&str, &str)] = &[
    ("opslake.yml", include_str!("../starter/opslake.yml")),
    ("pipelines/sources.yml", include_str!("../starter/pipelines/sources.yml")),
    (".gitignore", include_str!("../starter/gitignore")),
];
/// Empty directories the starter project has, for the user to fill.
const DIRS: &[&str] = &["exports", "tools", "pipelines/models/staging", "pipelines/models/marts", "pipelines/tests"];

pub(crate) fn run(args: &InitArgs) -> Result<(), CliError> {
    let existing: Vec<&str> = FILES.iter().map(|(p, _)| *p).filter(|p| args.dir.join(p).exists()).collect();
    if !existing.is_empty() && !args.force {
        return Err(CliError::user(format!(
            "{} already has {}; pass --force to overwrite",
            args.dir.display(),
            existing.join(", ")
        )));
    }
    for dir in DIRS {
        mkdir(&args.dir.join(dir))?;
    }
    for (rel, text) in FILES {
        let path = args.dir.join(rel);
        if let Some(parent) = path.parent() {
            mkdir(parent)?;
        }
        std::fs::write(&path, text).map_err(|e| CliError::io(&path, e))?;
    }
    println!("created an opslake project in {}", args.dir.display());
    println!(
        "next: add connections to {}, then run `opslake validate {}`",
        args.dir.join("opslake.yml").display(),
        args.dir.display()
    );
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(path).map_err(|e| CliError::io(path, e))
}
