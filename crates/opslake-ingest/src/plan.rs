//! What a run reads: the inputs of a project's connections (or of paths given on the command
//! line), each compared with the manifest of what earlier runs loaded.

use std::path::{Path, PathBuf};

use opslake_config::{Connection as ConnectionConfig, DriftPolicy, Project, ProjectConfig, StorageLocation};
use opslake_lake::Lake;
use opslake_lake::manifest::{Decision, Fingerprint, Manifest, sha256_of};
use opslake_lake::runs::{RunContext, RunFileRow};
use opslake_schema::Contract;
use opslake_tools::input::TextEncoding;
use opslake_tools::parse::DateOrder;

use crate::{Connection, Error, Event, Input, Progress, Result, Source, remote};

/// The inputs of every connection of `project`: the files under each one's path (a local path
/// or glob, or an object-store URL or glob), read with its settings (tool, time zone, date
/// order, and its currency or else the reporting currency).
pub async fn connection_inputs(project: &Project) -> Result<Vec<Input>> {
    let config = &project.config;
    if config.connections.is_empty() {
        return Err(input("nothing to ingest: opslake.yml has no connections; add one or pass --path"));
    }
    let mut inputs = Vec::new();
    let mut stores = remote::Stores::default();
    for c in &config.connections {
        let connection = connection_of(config, c);
        let drift = config.drift_policy(c).map_err(input)?;
        let found = match StorageLocation::parse(&c.path.value).map_err(input)? {
            StorageLocation::Local(p) if p.is_relative() => local(&project.dir, &project.dir.join(p))?,
            StorageLocation::Local(p) => local(&project.dir, &p)?,
            StorageLocation::ObjectStore { .. } => objects(&mut stores, &c.path.value).await?,
        };
        inputs.extend(of_connection(found, &connection, drift));
    }
    Ok(inputs)
}

/// The inputs `found` (names and sources), each read as a file of `connection`.
fn of_connection<'a>(
    found: Vec<(String, Source)>,
    connection: &'a Connection,
    drift: DriftPolicy,
) -> impl Iterator<Item = Input> + 'a {
    found.into_iter().map(move |(name, source)| Input { source, name, connection: connection.clone(), drift })
}

/// The local files under `path`, each with its name in the lake.
fn local(project_dir: &Path, path: &Path) -> Result<Vec<(String, Source)>> {
    Ok(expand(path)?.into_iter().map(|p| (canonical_name(project_dir, &p), Source::File(p))).collect())
}

/// The objects `url` names, each named by its URL.
async fn objects(stores: &mut remote::Stores, url: &str) -> Result<Vec<(String, Source)>> {
    Ok(remote::list(stores, url).await?.into_iter().map(|o| (o.url.clone(), Source::Object(o))).collect())
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

/// The inputs under `paths` (files, directories or globs, local or object-store URLs), as
/// files of `connection` (of `tool` when given) in the project's reporting currency.
pub async fn path_inputs(
    project: &Project,
    paths: &[PathBuf],
    tool: Option<&str>,
    connection: &str,
) -> Result<Vec<Input>> {
    let connection = Connection {
        tool: tool.map(str::to_string),
        currency: Some(project.config.reporting_currency.value.clone()),
        ..Connection::named(connection)
    };
    let drift = project.config.default_drift_policy().map_err(input)?;
    let mut inputs = Vec::new();
    let mut stores = remote::Stores::default();
    for p in paths {
        let found = match p.to_str().filter(|t| remote::is_url(t)) {
            Some(url) => objects(&mut stores, url).await?,
            None => local(&project.dir, p)?,
        };
        inputs.extend(of_connection(found, &connection, drift));
    }
    Ok(inputs)
}

/// A file's name in the lake: its canonical path relative to the project's directory when it
/// lies inside it, else its canonical absolute path, with `/` between components. Run from
/// another directory, or given as `./x` or `../p/x`, a file keeps its name, so the manifest
/// knows it and a re-export replaces its own rows; a project moved whole keeps its names too.
pub fn canonical_name(project_dir: &Path, path: &Path) -> String {
    let file = resolved(path);
    let relative = file.strip_prefix(resolved(project_dir)).ok().map(Path::to_path_buf);
    match relative {
        Some(r) => r.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
        None => file.display().to_string(),
    }
}

/// The real path where it exists; otherwise absolute with `.` and `..` folded, so a file that
/// is gone still gets the same name whichever way it was spelled.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
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
    /// What the manifest had of it: the rows its last load wrote, and the name it was loaded
    /// under when that is not its name now (an older opslake named files as given).
    pub previous: Option<Previous>,
    /// Its size and time now.
    pub fingerprint: Fingerprint,
    /// Its content hash, when the comparison needed it.
    pub sha256: Option<String>,
    /// New or changed.
    pub decision: Decision,
}

/// A file as loaded before.
#[derive(Debug, Clone)]
pub struct Previous {
    /// Rows its last load wrote.
    pub rows_written: i64,
    /// Its name then, when not the same as now.
    pub name: Option<String>,
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
            // An older opslake named a local file as it was given.
            let legacy = match &input.source {
                Source::File(path) => Some(path.display().to_string()).filter(|l| *l != input.name),
                Source::Object(_) => None,
            };
            let (loaded, old_name) = match manifest.get(&input.name) {
                Some(l) => (Some(l), None),
                None => (legacy.as_deref().and_then(|l| manifest.get(l)), legacy),
            };
            let previous = loaded.map(|l| Previous { rows_written: l.rows_written, name: old_name.clone() });
            let (fingerprint, (decision, sha256)) = match &input.source {
                Source::File(path) => {
                    let fingerprint = Fingerprint::of_local(path)?;
                    let decided = Manifest::decide(loaded, &fingerprint, || sha256_of(path))?;
                    (fingerprint, decided)
                }
                Source::Object(object) => {
                    let fingerprint = object.fingerprint();
                    let decided = Manifest::decide_object(loaded, &fingerprint);
                    (fingerprint, decided)
                }
            };
            match decision {
                Decision::Unchanged | Decision::SameContent => {
                    progress(Event::Skipped(&input.name));
                    // Under the name its rows carry, which a reload of it must replace.
                    if decision == Decision::SameContent {
                        plan.unchanged.push(RunFileRow {
                            run_id: run.run_id.clone(),
                            path: old_name.clone().unwrap_or_else(|| input.name.clone()),
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
                    plan.skipped.push(input.name.clone());
                }
                Decision::New | Decision::Changed => {
                    plan.read.push(Planned { input, previous, fingerprint, sha256, decision })
                }
            }
        }
        Ok(())
    })?;
    Ok(plan)
}
