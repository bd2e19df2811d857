//! `opslake drift`: the schema drift runs found, and `opslake drift accept` to take a
//! connection's new layout as its accepted one.

use clap::{Args, Subcommand};
use opslake_lake::drift::{LayoutRow, accept as accept_layouts, events};
use opslake_lake::runs::{Ended, Run};

use crate::lake_cmds::{json_rows, text};
use crate::open::{lake_err, open_lake};
use crate::{CliError, LakeArgs, ProjectArgs, say};

/// Arguments of `opslake drift`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DriftArgs {
    #[command(subcommand)]
    action: Option<DriftAction>,
    #[command(flatten)]
    list: ListArgs,
}

/// `opslake drift accept`.
#[derive(Debug, Subcommand)]
enum DriftAction {
    /// Accept the layout of each shape's latest drifted file of a connection: later files
    /// are compared with it, and files held under quarantine load on the next run.
    Accept(AcceptArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Only this connection's drift.
    #[arg(long)]
    connection: Option<String>,
    /// Every event recorded, also those settled by an accepted layout.
    #[arg(long)]
    all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AcceptArgs {
    /// The connection whose new layout to accept.
    connection: String,
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    lake: LakeArgs,
    /// Only the layout of this export shape (`tool.shape`), when the connection drifted in
    /// several.
    #[arg(long)]
    shape: Option<String>,
    /// Seconds the lake's lock lasts without renewal.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    lock_ttl: u64,
}

pub(crate) async fn drift(args: &DriftArgs) -> Result<(), CliError> {
    match &args.action {
        Some(DriftAction::Accept(a)) => accept(a).await,
        None => list(&args.list).await,
    }
}

async fn list(args: &ListArgs) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    let batches = events(&open.lake, &open.contract, args.connection.as_deref(), args.all).await.map_err(lake_err)?;
    let rows = json_rows(&batches)?;
    if args.json {
        println!("{:#}", serde_json::Value::Array(rows.into_iter().map(serde_json::Value::Object).collect()));
        return Ok(());
    }
    if rows.is_empty() {
        let what = if args.all { "recorded" } else { "since the layouts were last accepted" };
        say!("no schema drift {what}");
        return Ok(());
    }
    let mut last = (String::new(), String::new());
    for r in &rows {
        let group = (text(r, "connection"), text(r, "shape"));
        if group != last {
            say!("\n{} · {} ({})", group.0, group.1, text(r, "policy"));
            last = group;
        }
        say!("  {:<7} {:<16} {}", text(r, "action"), text(r, "kind"), text(r, "path"));
        say!("          {}", text(r, "detail"));
    }
    let connections: std::collections::BTreeSet<String> = rows.iter().map(|r| text(r, "connection")).collect();
    say!(
        "\n{} event(s); `opslake drift accept <connection>` accepts a connection's latest layout ({})",
        rows.len(),
        connections.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

async fn accept(args: &AcceptArgs) -> Result<(), CliError> {
    let open = open_lake(&args.project, &args.lake)?;
    let (lake, contract) = (&open.lake, &open.contract);
    let ttl = std::time::Duration::from_secs(args.lock_ttl);
    let mut run = Run::start(lake, contract, "drift", ttl, false).await.map_err(lake_err)?;
    let outcome = accept_held(&mut run, args).await;
    let ended = match &outcome {
        Ok(_) => Ended::Succeeded,
        Err(e) => Ended::Failed { message: e.to_string(), step: None },
    };
    run.end(ended).await.map_err(lake_err)?;
    let accepted = outcome?;
    for l in &accepted {
        let columns = opslake_lake::drift::parse_columns(&l.columns).map_err(lake_err)?;
        say!(
            "accepted {} · {}: the layout of {} ({} columns)",
            l.connection,
            l.shape,
            l.path.as_deref().unwrap_or("-"),
            columns.len()
        );
    }
    say!("files held under quarantine load on the next run; later files are compared with these layouts");
    Ok(())
}

/// The layouts accepted, or why there are none.
async fn accept_held(run: &mut Run<'_>, args: &AcceptArgs) -> Result<Vec<LayoutRow>, CliError> {
    let (lake, contract, run_id) = (run.lake(), run.contract(), run.context().run_id.clone());
    let accepted =
        accept_layouts(lake, contract, &run_id, &args.connection, args.shape.as_deref()).await.map_err(lake_err)?;
    if accepted.is_empty() {
        let scope = args.shape.as_ref().map(|s| format!(" in shape {s}")).unwrap_or_default();
        return Err(CliError::user(format!(
            "connection '{}' has no schema drift to accept{scope}; `opslake drift --all` lists what was recorded",
            args.connection
        )));
    }
    Ok(accepted)
}
