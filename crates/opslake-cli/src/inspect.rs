//! `opslake inspect <file>`: what opslake sees in an export, without writing anything.

use std::path::PathBuf;

use arrow::util::pretty::pretty_format_batches;
use clap::Args;
use opslake_schema::{Contract, EnvelopeRole};
use opslake_tools::ToolRegistry;
use opslake_tools::detect::recognise;
use opslake_tools::input::visit_inputs;
use opslake_tools::mapping::{FileContext, ShapeMapper};
use opslake_tools::stream::Connection;

use crate::{CliError, ProjectArgs};

/// Arguments of `opslake inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The export file.
    file: PathBuf,
    /// The tool; detected when not given.
    #[arg(long)]
    tool: Option<String>,
    /// Mapped rows to show per table.
    #[arg(long, default_value_t = 5)]
    rows: usize,
    /// The project whose own tools (tools/) are used too.
    #[arg(long, default_value = ".")]
    project: PathBuf,
    /// Read the file as this connection of opslake.yml does (its tool, encoding, separators,
    /// time zone and date order).
    #[arg(long)]
    connection: Option<String>,
}

pub(crate) fn run(args: &InspectArgs) -> Result<(), CliError> {
    let contract = Contract::embedded().map_err(CliError::from_schema)?;
    let project = ProjectArgs { project: args.project.clone(), config: None }.open()?;
    let (registry, _) = ToolRegistry::load(Some(&project.dir), &contract).map_err(|e| CliError::new(e.class(), e))?;
    let tools = registry.tools();
    let connection = match &args.connection {
        None => Connection { tool: args.tool.clone(), ..Connection::named("inspect") },
        Some(name) => {
            let config = &project.config;
            let Some(c) = config.connections.iter().find(|c| &c.name.value == name) else {
                let known: Vec<&str> = config.connections.iter().map(|c| c.name.value.as_str()).collect();
                return Err(CliError::user(format!(
                    "no connection '{name}' in opslake.yml (connections: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            };
            let mut connection = opslake_ingest::plan::connection_of(config, c);
            connection.tool = args.tool.clone().or(connection.tool);
            connection
        }
    };
    let mut out = String::new();
    visit_inputs(&args.file, &mut |mut opened| {
        connection.declare(&mut opened);
        let (declared, sheet) = (opened.declared, opened.sheet.clone());
        let mut r = recognise(&tools, connection.tool.as_deref(), opened)?;
        let d = &r.detection;
        let shape = opslake_tools::landed::with_loader_defaults(
            connection.applied_to(&d.shape, sheet.is_some()),
            d.loader,
            &d.columns,
        );
        out.push_str(&format!("file       {}\n", r.name));
        out.push_str(&format!("tool       {} (shape {}: {})\n", d.tool, shape.id, shape.description));
        if let Some(s) = &sheet {
            out.push_str(&format!("sheet      '{}' of an {}, read from its typed cells\n", s.sheet, s.workbook.name()));
        }
        if let Some(loader) = d.loader {
            out.push_str(&format!("landed by  {} (its metadata columns)\n", loader.name()));
        }
        if d.records {
            out.push_str("format     records, one per row (read by their fields)");
        } else {
            out.push_str(&format!("format     {}", shape.read.format));
        }
        if let Some(delim) = d.delimiter.filter(|_| sheet.is_none()) {
            out.push_str(&format!(", delimiter {:?}", char::from(delim)));
        }
        if d.delimiter.is_some() {
            out.push_str(&format!(", header at record {}", d.header_index + 1));
        }
        let how = match (&sheet, declared) {
            (Some(_), _) => "the workbook's own",
            (None, true) => "declared by the connection",
            (None, false) if shape.read.encoding.is_some() => "declared by the shape",
            (None, false) => "detected",
        };
        out.push_str(&format!("\nencoding   {} ({how})\n", d.encoding.name()));
        let thousands = match shape.numbers.thousands {
            Some(t) => format!("{t:?}"),
            None => "any of , . ' _ and spaces but the decimal mark".to_string(),
        };
        out.push_str(&format!(
            "numbers    decimal mark {:?}, thousands separator {thousands}\n",
            shape.numbers.decimal
        ));
        out.push_str(&format!("dates      {:?} order, time zone {}\n", shape.date_order, shape.timezone));
        out.push_str(&format!(
            "columns    {} : {}\n",
            d.columns.len(),
            d.columns.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
        ));
        out.push_str("evidence   shapes whose required columns are here, best first:\n");
        for s in &d.scores {
            let mark = if s.shape == shape.id { "*" } else { " " };
            out.push_str(&format!(
                "         {mark} {:<44} score {:>2}  fit {:>3.0}%: {} of the file's {} columns known ({:.0}% by weight), {} of its {} here ({:.0}%)",
                s.shape,
                s.score,
                s.fit.share() * 100.0,
                s.fit.known,
                s.fit.columns,
                s.fit.coverage * 100.0,
                s.fit.known,
                s.fit.expected,
                s.fit.recall * 100.0
            ));
            out.push_str(if s.refused.is_some() { "  refused: fits too little\n" } else { "\n" });
        }
        let ctx = FileContext {
            file: r.name.clone(),
            system: d.tool.clone(),
            connection: "inspect".into(),
            run_id: "inspect".into(),
            ingested_at: 0,
            snapshot_at: 0,
            // Rows are shown as mapped, before the personal-data policy: nothing is written,
            // and the file on screen is the user's own.
            redactor: None,
        };
        let mut mapper = ShapeMapper::new(&shape, ctx);
        if let Some(chunk) = r.reader.next_shaped(&shape)? {
            let missing = mapper.missing_columns(&chunk.batch.schema())?;
            if !missing.is_empty() {
                out.push_str(&format!(
                    "missing    {} (read as null)\n",
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            let result = mapper.map_chunk(&chunk)?;
            out.push_str(&format!(
                "first chunk: {} read, {} written, {} rejected\n",
                result.rows_read, result.rows_written, result.rows_rejected
            ));
            for (table, batch) in &result.batches {
                let shown = batch.slice(0, batch.num_rows().min(args.rows));
                // The envelope's lineage columns are the same on every row; show the mapped ones.
                let keep: Vec<usize> = table
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.role.is_none() || c.role == Some(EnvelopeRole::SourceId))
                    .map(|(i, _)| i)
                    .collect();
                let shown = shown.project(&keep).map_err(opslake_tools::Error::from)?;
                let text = pretty_format_batches(&[shown]).map_err(opslake_tools::Error::from)?;
                out.push_str(&format!("\n{} ({} rows in the first chunk)\n{text}\n", table.id, batch.num_rows()));
            }
            for rej in result.rejects.iter().take(args.rows) {
                out.push_str(&format!("reject line {}: [{}] {}\n", rej.line, rej.action.as_str(), rej.reason));
            }
        }
        Ok(())
    })
    .map_err(|e| CliError::new(e.class(), e))?;
    print!("{out}");
    Ok(())
}
