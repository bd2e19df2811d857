//! `opslake query`: SQL over the lake, from the command line, a file, stdin or a shell.
//!
//! One session serves every statement: canonical tables as `namespace.table`, the system
//! tables, built models by name and failing rows of tests as `test_failures.<test>`. Results
//! print as a table sized to the terminal, or as CSV, JSON lines or Parquet to stdout or
//! `--out`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use clap::{Args, ValueEnum};
use datafusion::prelude::SessionContext;
use opslake_schema::ErrorClass;

use crate::logging::warn_missing_rates;
use crate::open::{OpenLake, lake_err, open_lake};
use crate::{CliError, LakeArgs, ProjectArgs};

/// Output formats of `opslake query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned text table, as wide as the terminal.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Json,
    /// A Parquet file (needs --out, or stdout not a terminal).
    Parquet,
}

/// Arguments of `opslake query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL to run. Tables are `namespace.table` (crm.people), the system tables
    /// (_rejects, _runs, _run_files, _run_tables) and models by name. Without it (and without
    /// --file) the SQL is read from stdin, or a shell starts on a terminal.
    sql: Option<String>,
    /// Run the statements of this file (separated by `;`).
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// The project directory.
    #[arg(long, default_value = ".", value_name = "DIR")]
    project: PathBuf,
    /// The config file, when it is not `<project>/opslake.yml`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    lake: LakeArgs,
    /// Read every table as the given run left it (Delta time travel); `opslake runs` lists ids.
    #[arg(long, value_name = "RUN_ID")]
    as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the result to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) async fn query(args: &QueryArgs) -> Result<(), CliError> {
    let project = ProjectArgs { project: args.project.clone(), config: args.config.clone() };
    let open = open_lake(&project, &args.lake)?;
    let session = Session::open(&open, args.as_of.as_deref()).await?;
    let text = match (&args.sql, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).map_err(|e| CliError::io(file, e))?,
        (None, None) if std::io::stdin().is_terminal() => return shell(&session, &open).await,
        (None, None) => {
            let mut sql = String::new();
            std::io::stdin().read_to_string(&mut sql).map_err(|e| CliError::io(Path::new("stdin"), e))?;
            sql
        }
    };
    let statements = split_statements(&text);
    if statements.is_empty() {
        return Err(CliError::user("no SQL to run"));
    }
    if args.format != Format::Table && statements.len() > 1 {
        return Err(CliError::user(format!(
            "--format {} writes one result; the SQL has {} statements",
            format_name(args.format),
            statements.len()
        )));
    }
    if args.format == Format::Parquet && args.out.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::user("--format parquet writes binary: give --out <file> or redirect stdout"));
    }
    let mut sink: Box<dyn Write + Send> = match &args.out {
        Some(path) => {
            Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| CliError::io(path, e))?))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    for sql in &statements {
        let (schema, batches) = session.run(sql).await?;
        write_result(&mut sink, args.format, &schema, &batches, args.out.is_none())?;
    }
    sink.flush().map_err(|e| CliError::io(args.out.as_deref().unwrap_or(Path::new("stdout")), e))?;
    session.warn_missing_rates();
    Ok(())
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Table => "table",
        Format::Csv => "csv",
        Format::Json => "json",
        Format::Parquet => "parquet",
    }
}

/// The session `query` and `serve` answer with: the one models are built in
/// (`opslake_models::session`), with the project's settings for opslake's functions.
pub(crate) struct Session {
    ctx: SessionContext,
    missing_rates: opslake_tools::fx::MissingRates,
}

impl Session {
    pub async fn open(open: &OpenLake, as_of: Option<&str>) -> Result<Self, CliError> {
        let versions = match as_of {
            Some(id) => {
                Some(opslake_lake::runs::versions_as_of(&open.lake, &open.contract, id).await.map_err(lake_err)?)
            }
            None => None,
        };
        let udf = opslake_models::model_udfs(&open.project.config);
        let session = opslake_models::session::open(&open.lake, &open.contract, &udf, versions.as_ref())
            .await
            .map_err(|e| CliError::new(e.class(), e))?;
        Ok(Self { ctx: session.ctx, missing_rates: session.missing_rates })
    }

    /// The DataFusion session, for a server that runs the statements itself.
    pub fn into_context(self) -> SessionContext {
        self.ctx
    }

    /// Runs one statement; SQL errors are the user's to fix.
    async fn run(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), CliError> {
        let df = self.ctx.sql(sql).await.map_err(|e| CliError::user(format!("query: {e}")))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|e| CliError::user(format!("query: {e}")))?;
        Ok((schema, batches))
    }

    /// A conversion without a rate is null in the output; say which rates were missing.
    fn warn_missing_rates(&self) {
        let mut missing = self.missing_rates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        warn_missing_rates(missing.iter());
        missing.clear();
    }
}

fn write_result(
    sink: &mut (dyn Write + Send),
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    to_stdout: bool,
) -> Result<(), CliError> {
    let internal = |e: &dyn std::fmt::Display| CliError::new(ErrorClass::Internal, anyhow::anyhow!("{e}"));
    let io = |e: std::io::Error| CliError::io(Path::new("output"), e);
    match format {
        Format::Table => {
            let width = if to_stdout { console::Term::stdout().size_checked().map(|(_, w)| w) } else { None };
            writeln!(sink, "{}", render_table(schema, batches, width)?).map_err(io)?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *sink);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(schema.clone())).map_err(|e| internal(&e))?;
            }
            for b in batches {
                writer.write(b).map_err(|e| internal(&e))?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *sink);
            for b in batches {
                writer.write(b).map_err(|e| internal(&e))?;
            }
            writer.finish().map_err(|e| internal(&e))?;
        }
        Format::Parquet => {
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(&mut *sink, schema.clone(), None).map_err(|e| internal(&e))?;
            for b in batches {
                writer.write(b).map_err(|e| internal(&e))?;
            }
            writer.close().map_err(|e| internal(&e))?;
        }
    }
    Ok(())
}

/// The result as an aligned table that fits `width` columns (long values wrap), followed by
/// the row count as psql prints it.
fn render_table(schema: &SchemaRef, batches: &[RecordBatch], width: Option<u16>) -> Result<String, CliError> {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::ASCII_FULL_CONDENSED);
    if let Some(w) = width {
        table.set_width(w).set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    }
    table.set_header(schema.fields().iter().map(|f| f.name().as_str()));
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = 0usize;
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::new(ErrorClass::Internal, e))?;
        for row in 0..batch.num_rows() {
            table.add_row(formatters.iter().map(|f| f.value(row).to_string()));
        }
        rows += batch.num_rows();
    }
    Ok(format!("{table}\n({rows} row{})", if rows == 1 { "" } else { "s" }))
}

/// Statements of a script: split at `;` outside quotes and comments, blank ones dropped.
fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (None, '-') if chars.peek() == Some(&'-') => {
                // A line comment runs to the end of the line; a `;` in it ends nothing.
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            (None, ';') => out.push(std::mem::take(&mut current)),
            (None, c) => current.push(c),
        }
    }
    out.push(current);
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The interactive shell: line editing, history in `~/.opslake_history`, statements ending at
/// `;` over as many lines as they take, and a few psql-like commands.
async fn shell(session: &Session, open: &OpenLake) -> Result<(), CliError> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| CliError::new(ErrorClass::External, anyhow::anyhow!("cannot start the shell: {e}")))?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".opslake_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "opslake {} on {} — end statements with ';', \\? for help, \\q to quit",
        env!("CARGO_PKG_VERSION"),
        open.location
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "opslake> " } else { "     ..> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::new(ErrorClass::External, anyhow::anyhow!("shell: {e}"))),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match meta_command(session, trimmed).await {
                Ok(Flow::Quit) => break,
                Ok(Flow::Continue) => {}
                Err(e) => eprintln!("{e}"),
            }
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let _ = editor.add_history_entry(buffer.trim_end());
        for sql in split_statements(&std::mem::take(&mut buffer)) {
            let started = std::time::Instant::now();
            match session.run(&sql).await {
                Ok((schema, batches)) => {
                    let width = console::Term::stdout().size_checked().map(|(_, w)| w);
                    match render_table(&schema, &batches, width) {
                        Ok(text) => println!("{text}  {:.3}s", started.elapsed().as_secs_f64()),
                        Err(e) => eprintln!("{e}"),
                    }
                }
                Err(e) => eprintln!("{e}"),
            }
            session.warn_missing_rates();
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

enum Flow {
    Continue,
    Quit,
}

const SHELL_HELP: &str = "\\dt [pattern]   list tables (crm.*, _runs, models)\n\\d <table>       columns of a table\n\\q              quit\nSQL              ends with ';' and may span lines";

async fn meta_command(session: &Session, command: &str) -> Result<Flow, CliError> {
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("\\q" | "\\quit"), _) => return Ok(Flow::Quit),
        (Some("\\?" | "\\h" | "\\help"), _) => println!("{SHELL_HELP}"),
        (Some("\\dt"), pattern) => {
            let mut names = table_names(&session.ctx);
            if let Some(p) = pattern {
                let glob = globset::Glob::new(p)
                    .map_err(|e| CliError::user(format!("bad pattern '{p}': {e}")))?
                    .compile_matcher();
                names.retain(|n| glob.is_match(n));
            }
            for n in &names {
                println!("{n}");
            }
            println!("({} tables)", names.len());
        }
        (Some("\\d"), Some(table)) => {
            let df = session.ctx.table(table).await.map_err(|e| CliError::user(format!("{table}: {e}")))?;
            for f in df.schema().fields() {
                println!(
                    "{:<32} {:<24} {}",
                    f.name(),
                    f.data_type().to_string(),
                    if f.is_nullable() { "" } else { "not null" }
                );
            }
        }
        (Some(other), _) => return Err(CliError::user(format!("unknown command {other}; \\? lists them"))),
        (None, _) => {}
    }
    Ok(Flow::Continue)
}

/// Every table of the session by the name SQL reaches it with, sorted.
fn table_names(ctx: &SessionContext) -> Vec<String> {
    let mut names = Vec::new();
    let Some(catalog) = ctx.catalog("datafusion") else {
        return names;
    };
    for schema_name in catalog.schema_names() {
        if schema_name == "information_schema" {
            continue;
        }
        let Some(schema) = catalog.schema(&schema_name) else { continue };
        for t in schema.table_names() {
            names.push(if schema_name == "public" { t } else { format!("{schema_name}.{t}") });
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_outside_quotes_and_comments() {
        let sql = "select ';' as a; -- a comment; not a split\nselect \"x;y\" from t;\n\n ;select 3";
        assert_eq!(split_statements(sql), vec!["select ';' as a", "select \"x;y\" from t", "select 3"]);
    }

    #[test]
    fn a_table_fits_the_width_it_is_given() {
        let batch = RecordBatch::try_from_iter([(
            "note",
            Arc::new(arrow::array::StringArray::from(vec![Some("a long value ".repeat(8)), None])) as _,
        )])
        .expect("batch");
        let text = render_table(&batch.schema(), std::slice::from_ref(&batch), Some(40)).expect("table");
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains("NULL") && text.ends_with("(2 rows)"), "{text}");
        let wide = render_table(&batch.schema(), &[batch], None).expect("table");
        assert!(wide.lines().any(|l| l.chars().count() > 100), "{wide}");
    }
}
