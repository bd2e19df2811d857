//! `opslake inspect <file>`: what opslake sees in an export, without writing anything.

use std::path::PathBuf;

use arrow::util::pretty::pretty_format_batches;
use clap::Args;
use opslake_schema::{Contract, EnvelopeRole};
use opslake_tools::ToolRegistry;
use opslake_tools::detect::recognise;
use opslake_tools::input::visit_inputs;
use opslake_tools::mapping::{FileContext, ShapeMapper};

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
}

pub(crate) fn run(args: &InspectArgs) -> Result<(), CliError> {
    let contract = Contract::embedded().map_err(CliError::from_schema)?;
    let project = ProjectArgs { project: args.project.clone(), config: None }.open()?;
    let (registry, _) = ToolRegistry::load(Some(&project.dir), &contract).map_err(|e| CliError::new(e.class(), e))?;
    let tools = registry.tools();
    let mut out = String::new();
    visit_inputs(&args.file, &mut |opened| {
        let mut r = recognise(&tools, args.tool.as_deref(), opened)?;
        let d = &r.detection;
        out.push_str(&format!("file       {}\n", r.name));
        out.push_str(&format!("tool       {} (shape {}: {})\n", d.tool, d.shape.id, d.shape.description));
        out.push_str(&format!("format     {}", d.shape.read.format));
        if let Some(delim) = d.delimiter {
            out.push_str(&format!(", delimiter {:?}, header at record {}", char::from(delim), d.header_index + 1));
        }
        out.push_str(&format!("\nencoding   {}\ntimezone   {}\n", d.encoding.name(), d.shape.timezone));
        out.push_str(&format!(
            "columns    {} : {}\n",
            d.columns.len(),
            d.columns.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
        ));
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
        let mut mapper = ShapeMapper::new(&d.shape, ctx);
        if let Some(chunk) = r.reader.next_shaped(&d.shape)? {
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
