//! What a run reads: the inputs of a project's connections (or of paths given on the command
//! line), each compared with the manifest of what earlier runs loaded.

use std::path::{Path, PathBuf};

use opslake_config::{Connection as ConnectionConfig, Project, ProjectConfig, StorageLocation};
use opslake_lake::Lake;
use opslake_lake::manifest::{Decision, Fingerprint, Manifest, sha256_of};
use opslake_lake::runs::{RunContext, RunFileRow};
use opslake_schema::Contract;
use opslake_tools::input::TextEncoding;
use opslake_tools::parse::DateOrder;

use crate::{Connection, Error, Event, Input, Progress, Result};

/// The inputs of every connection of `project`: the files under each one's path, read with its
/// settings (tool, time zone, date order, and its currency or else the reporting currency).
pub fn connection_inputs(project: &Project) -> Result<Vec<Input>> {
    let config = &project.config;
    if config.connections.is_empty() {
        return Err(input("nothing to ingest: opslake.yml has no connections; add one or pass --path"));
    }
    let mut inputs = Vec::new();
    for c in &config.connections {
        let path = match StorageLocation::parse(&c.path.value).map_err(input)? {
            StorageLocation::Local(p) if p.is_relative() => project.dir.join(p),
            StorageLocation::Local(p) => p,
            StorageLocation::ObjectStore { url, .. } => {
                return Err(input(format!(
                    "connection '{}': reading exports from {url} is not supported yet; sync them to a local directory",
                    c.name.value
                )));
            }
        };
        let connection = connection_of(config, c);
        inputs.extend(expand(&path)?.into_iter().map(|path| Input { path, connection: connection.clone() }));
    }
    Ok(inputs)
}

/// The settings files of connection `c` are read with: its tool and options, and its currency
/// or else the project's reporting currency.
pub fn connection_of(config: &ProjectConfig, c: &ConnectionConfig) -> Connection {
    Connection {
        name: c.name.value.clone(),
        tool: Some(c.tool.value.clone()),
        timezone: c.options.timezone.as_ref().map(|t| t.value.clone()),
        date_order: c.options.date_order.as_ref().map(|o| match o.value.as_str() {
            "dmy" => DateOrder::Dmy,
            _ => DateOrder::Mdy,
        }),
        currency: Some(c.options.currency.as_ref().unwrap_or(&config.reporting_currency).value.clone()),
        encoding: c.options.encoding.as_ref().and_then(|e| TextEncoding::from_label(&e.value)),
        decimal_separator: separator(c.options.decimal_separator.as_ref().map(|s| &s.value)),
        thousands_separator: separator(c.options.thousands_separator.as_ref().map(|s| &s.value)),
    }
}

/// A separator the config declares: validated there to be one character.
fn separator(option: Option<&String>) -> Option<char> {
    option.and_then(|s| s.chars().next())
}

/// The inputs under `paths` (files, directories or globs), as files of `connection` (of `tool`
/// when given) in the project's reporting currency.
pub fn path_inputs(project: &Project, paths: &[PathBuf], tool: Option<&str>, connection: &str) -> Result<Vec<Input>> {
    let connection = Connection {
        tool: tool.map(str::to_string),
        currency: Some(project.config.reporting_currency.value.clone()),
        ..Connection::named(connection)
    };
    let mut inputs = Vec::new();
    for p in paths {
        inputs.extend(expand(p)?.into_iter().map(|path| Input { path, connection: connection.clone() }));
    }
    Ok(inputs)
}

fn input(message: impl Into<String>) -> Error {
    Error::Input { message: message.into() }
}

/// Files under `path`: itself, every file below a directory, or the matches of a glob.
fn expand(path: &Path) -> Result<Vec<PathBuf>> {
    let text = path.to_string_lossy();
    if text.contains(['*', '?', '[']) {
        let glob = globset::Glob::new(&text).map_err(|e| input(format!("bad glob '{text}': {e}")))?.compile_matcher();
        let base: PathBuf =
            path.components().take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '['])).collect();
        let mut out = Vec::new();
        walk(if base.as_os_str().is_empty() { Path::new(".") } else { &base }, &mut out)?;
        out.retain(|p| glob.is_match(p));
        return Ok(out);
    }
    if path.is_dir() {
        let mut out = Vec::new();
        walk(path, &mut out)?;
        return Ok(out);
    }
    if !path.exists() {
        return Err(input(format!("{} does not exist", path.display())));
    }
    Ok(vec![path.to_path_buf()])
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = opslake_schema::files::sorted_entries(dir)
        .map_err(|source| opslake_lake::Error::Io { path: dir.to_path_buf(), source })?;
    for p in entries {
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// One input to read, after comparing it with the manifest.
pub struct Planned<'a> {
    /// The input.
    pub input: &'a Input,
    /// Its size and time now.
    pub fingerprint: Fingerprint,
    /// Its content hash, when the comparison needed it.
    pub sha256: Option<String>,
    /// New or changed.
    pub decision: Decision,
}

/// A run's inputs sorted by the manifest.
pub struct Plan<'a> {
    /// To read.
    pub read: Vec<Planned<'a>>,
    /// Skipped: loaded before and unchanged.
    pub skipped: Vec<String>,
    /// Manifest rows of skipped files whose bytes were hashed again (touched, same content).
    pub unchanged: Vec<RunFileRow>,
}

/// Compares every input with the manifest (ignored on a full refresh).
pub async fn against_manifest<'a>(
    lake: &Lake,
    contract: &Contract,
    run: &RunContext,
    inputs: &'a [Input],
    full_refresh: bool,
    progress: &mut Progress<'_>,
) -> Result<Plan<'a>> {
    let manifest = if full_refresh { Manifest::default() } else { Manifest::load(lake, contract).await? };
    let mut plan = Plan { read: Vec::with_capacity(inputs.len()), skipped: Vec::new(), unchanged: Vec::new() };
    tokio::task::block_in_place(|| -> Result<()> {
        for input in inputs {
            let path = input.path.display().to_string();
            let fingerprint = Fingerprint::of_local(&input.path)?;
            let (decision, sha256) = manifest.decide(&path, &fingerprint, || sha256_of(&input.path))?;
            match decision {
                Decision::Unchanged | Decision::SameContent => {
                    progress(Event::Skipped(&path));
                    if decision == Decision::SameContent {
                        plan.unchanged.push(RunFileRow {
                            run_id: run.run_id.clone(),
                            path: path.clone(),
                            connection: input.connection.name.clone(),
                            status: "UNCHANGED".into(),
                            size_bytes: fingerprint.size as i64,
                            modified_at: fingerprint.modified_at,
                            etag: fingerprint.etag.clone(),
                            content_sha256: sha256.unwrap_or_default(),
                            recorded_at: chrono::Utc::now().timestamp_micros(),
                            ..RunFileRow::default()
                        });
                    }
                    plan.skipped.push(path);
                }
                Decision::New | Decision::Changed => plan.read.push(Planned { input, fingerprint, sha256, decision }),
            }
        }
        Ok(())
    })?;
    Ok(plan)
}
