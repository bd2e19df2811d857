//! Tool files: `schemas/tools/<tool>.yaml` (built in) or `<project>/tools/<tool>.yaml`.
//! A tool has export shapes; a shape says how to recognise a file, how to read it, and, per
//! output table, one SQL expression per canonical column over the raw columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::GlobMatcher;
use opslake_schema::diag::{is_snake_case, parse_yaml};
use opslake_schema::{Contract, EnvelopeRole, Problem, Table};
use regex::Regex;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::csv_reader::ShortRows;
use crate::input::TextEncoding;
use crate::parse::{DateOrder, NumberFormat};

/// File format of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Delimited text (CSV, TSV, semicolons...).
    Csv,
    /// One JSON document.
    Json,
    /// JSON Lines: one document per line.
    Jsonl,
    /// One XML document, read as a JSON tree (see `xml_reader`).
    Xml,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
            Self::Xml => "xml",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    description: String,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    date_order: Option<DateOrder>,
    #[serde(default)]
    decimal_separator: Option<Spanned<String>>,
    #[serde(default)]
    thousands_separator: Option<Spanned<String>>,
    #[serde(default)]
    null_values: Vec<String>,
    #[serde(default)]
    shapes: Vec<RawShape>,
    /// The tool's objects, each written once by its API field names; shapes are derived
    /// from them for every producer (see [`crate::objects`]).
    #[serde(default)]
    objects: Option<Spanned<BTreeMap<String, crate::objects::RawObject>>>,
    /// This tool's quirks inside shared producers.
    #[serde(default)]
    producers: BTreeMap<String, Spanned<crate::producers::ProducerOptions>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShape {
    pub(crate) name: Spanned<String>,
    pub(crate) description: String,
    #[serde(default, rename = "match")]
    pub(crate) matcher: RawMatch,
    pub(crate) read: RawRead,
    #[serde(default)]
    pub(crate) timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) date_order: Option<DateOrder>,
    #[serde(default)]
    pub(crate) decimal_separator: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) thousands_separator: Option<Spanned<String>>,
    pub(crate) outputs: Spanned<Vec<RawOutput>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(default)]
    pub(crate) file: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) headers: Vec<String>,
    #[serde(default)]
    pub(crate) values: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRead {
    pub(crate) format: Format,
    #[serde(default)]
    pub(crate) encoding: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) delimiter: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) quote: Option<char>,
    #[serde(default)]
    pub(crate) escape: Option<char>,
    #[serde(default)]
    pub(crate) header_row: Option<usize>,
    #[serde(default)]
    pub(crate) summary_rows: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) header_patterns: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(crate) null_values: Vec<String>,
    #[serde(default)]
    pub(crate) short_rows: ShortRows,
    #[serde(default)]
    pub(crate) sheet: Option<String>,
    #[serde(default)]
    pub(crate) records: Option<String>,
    #[serde(default)]
    pub(crate) explode: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) parent: bool,
    #[serde(default)]
    pub(crate) unpivot: Option<Unpivot>,
}

impl RawRead {
    /// A read of `format` with every option at its default.
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            encoding: None,
            delimiter: None,
            quote: None,
            escape: None,
            header_row: None,
            summary_rows: Vec::new(),
            header_patterns: BTreeMap::new(),
            null_values: Vec::new(),
            short_rows: ShortRows::default(),
            sheet: None,
            records: None,
            explode: None,
            parent: false,
            unpivot: None,
        }
    }
}

/// A path, or a list of them.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Wide to long: every column besides `keep` becomes a row of its own, with the column's name
/// in `name` and its value in `value` (ECB rates: one column per currency). Empty cells make
/// no row: in a wide layout they mean "no value that day", not a record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpivot {
    /// Columns repeated on every row.
    pub keep: Vec<String>,
    /// Name of the column holding the unpivoted column's header.
    pub name: String,
    /// Name of the column holding its value.
    pub value: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    pub(crate) table: Spanned<String>,
    #[serde(default)]
    pub(crate) filter: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    pub(crate) custom_fields: bool,
    pub(crate) columns: Spanned<BTreeMap<String, Spanned<String>>>,
}

/// A loaded, validated tool.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The tool's name (its file stem); lands in rows as `source_system`.
    pub name: String,
    /// What the tool is.
    pub description: String,
    /// Where it was declared.
    pub file: String,
    /// Its export shapes: those written, in declaration order, then those derived from its
    /// objects.
    pub shapes: Vec<Shape>,
    /// Its objects, each described once.
    pub objects: Vec<crate::objects::Object>,
    /// Its quirks inside shared producers (Fivetran's `property_` prefix), by producer.
    pub producers: BTreeMap<String, crate::producers::ProducerOptions>,
}

/// One export shape of a tool.
#[derive(Debug, Clone)]
pub struct Shape {
    /// `<tool>.<shape>`, the source id.
    pub id: String,
    /// What export this is.
    pub description: String,
    /// File-name globs; any may match. Empty: any name.
    pub file_globs: Vec<GlobMatcher>,
    /// Headers the file must have (after flattening, for JSON).
    pub headers: Vec<String>,
    /// Allowed values of columns, for telling apart envelopes several tools share.
    pub values: BTreeMap<String, Vec<String>>,
    /// How to read it.
    pub read: ReadSpec,
    /// Time zone of naive timestamps.
    pub timezone: String,
    /// Order of numeric dates.
    pub date_order: DateOrder,
    /// How numbers are written: the decimal mark and thousands separator of the export's
    /// locale (`decimal_separator`, `thousands_separator` on the shape or the tool).
    pub numbers: NumberFormat,
    /// The account's home currency, set per connection (`home_currency()` in mappings).
    pub home_currency: Option<String>,
    /// Where its rows go.
    pub outputs: Vec<Output>,
    /// Every raw column its match, filters and mappings name: what a file of this shape is
    /// expected to hold, against which detection weighs the columns a file has.
    pub known: std::collections::BTreeSet<String>,
    /// The object and producer a derived shape was made from; none for a written one.
    pub derived: Option<crate::objects::Derived>,
}

/// The columns `sql` (a mapping expression) names, as the mapping resolves them: a quoted
/// identifier as written, an unquoted one lowercased, a dotted one joined by `.`.
pub fn named_columns(sql: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::ast::{Expr, Ident, visit_expressions};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let Ok(expr) = Parser::new(&GenericDialect {}).try_with_sql(sql).and_then(|mut p| p.parse_expr()) else {
        return Vec::new();
    };
    let name = |i: &Ident| if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() };
    let mut out = Vec::new();
    let _ = visit_expressions(&expr, |e| {
        match e {
            Expr::Identifier(i) => out.push(name(i)),
            Expr::CompoundIdentifier(parts) => out.push(parts.iter().map(name).collect::<Vec<_>>().join(".")),
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// Reader options of a shape.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    /// File format.
    pub format: Format,
    /// Declared encoding; detected when absent.
    pub encoding: Option<TextEncoding>,
    /// Declared delimiter; sniffed when absent.
    pub delimiter: Option<u8>,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quotes.
    pub escape: Option<u8>,
    /// 1-based record number of the header, when it cannot be found by `headers`.
    pub header_row: Option<usize>,
    /// Summary rows (the export's Total rows), recognised by their first non-empty cell.
    pub summary_rows: Vec<Regex>,
    /// Headers that vary by account (`Amount spent (USD)`): a header matching the pattern is
    /// renamed to the name, and each named group becomes a column `<name>.<group>`.
    pub header_patterns: Vec<(String, Regex)>,
    /// Cell values meaning "no value", beyond the empty cell.
    pub null_values: Vec<String>,
    /// Short-row policy.
    pub short_rows: ShortRows,
    /// In a workbook, the one sheet this shape reads (by its tab name); every sheet otherwise.
    pub sheet: Option<String>,
    /// JSON records path.
    pub records: Option<String>,
    /// JSON arrays to explode (see [`crate::json_reader::JsonOptions::explode`]).
    pub explode: Vec<String>,
    /// The document's fields beside each record's (see [`crate::json_reader::JsonOptions::parent`]).
    pub parent: bool,
    /// Columns to turn into rows.
    pub unpivot: Option<Unpivot>,
}

/// One target table of a shape with its column expressions.
#[derive(Debug, Clone)]
pub struct Output {
    /// The canonical table.
    pub table: Arc<Table>,
    /// SQL predicate over raw columns selecting the rows for this table.
    pub filter: Option<String>,
    /// Canonical column name to SQL expression over raw columns.
    pub columns: BTreeMap<String, String>,
    /// Whether rows carry the shape's unmapped columns in custom_fields. An output derived
    /// from another's rows (the company columns of a contact export) sets this false, so the
    /// unmapped columns travel once, with the main output.
    pub custom_fields: bool,
}

const fn default_true() -> bool {
    true
}

/// Envelope roles a mapping may (and for source_id must) set; the engine sets the others.
pub const MAPPABLE_ROLES: [EnvelopeRole; 5] = [
    EnvelopeRole::SourceId,
    EnvelopeRole::SourceCreatedAt,
    EnvelopeRole::SourceUpdatedAt,
    EnvelopeRole::IsDeleted,
    EnvelopeRole::DeletedAt,
];

impl Tool {
    /// Parses and validates the tool `name` declared in `file`, checking every output against
    /// the contract and every expression for SQL syntax. Returns every problem found.
    pub fn load(name: &str, file: &str, text: &str, contract: &Contract) -> Result<Self, Vec<Problem>> {
        let raw: RawTool = parse_yaml(file, text).map_err(|p| vec![p])?;
        let mut problems = Vec::new();
        if !is_snake_case(name) {
            problems.push(Problem::in_file(
                file,
                format!("tool name '{name}' must be snake_case: it becomes source_system"),
            ));
        }
        let tool_tz =
            raw.timezone.as_ref().map(|t| check_tz(file, t, &mut problems)).unwrap_or_else(|| "UTC".to_string());
        let mut shapes = Vec::new();
        let mut seen = BTreeMap::new();
        for s in &raw.shapes {
            if let Some(line) = seen.insert(s.name.value.clone(), s.name.referenced.line()) {
                problems.push(Problem::at(
                    file,
                    &s.name,
                    format!("shape '{}' is already declared on line {line}", s.name.value),
                ));
            }
            if let Some(shape) = load_shape(name, file, s, &raw, &tool_tz, contract, &mut problems) {
                shapes.push(shape);
            }
        }
        let mut options = BTreeMap::new();
        for (producer, o) in &raw.producers {
            if crate::producers::named(producer).is_none() {
                let known: Vec<&str> = crate::producers::all().iter().map(|p| p.name.as_str()).collect();
                problems.push(Problem::at(
                    file,
                    o,
                    format!("'{producer}' is not a producer (schemas/producers.yaml has {})", known.join(", ")),
                ));
            }
            options.insert(producer.clone(), o.value.clone());
        }
        let mut objects = Vec::new();
        if let Some(raw_objects) = &raw.objects {
            let (loaded, derived) = crate::objects::derive(file, raw_objects, &options, &mut problems);
            objects = loaded;
            for d in derived {
                if let Some(line) = seen.get(&d.raw.name.value) {
                    problems.push(Problem::at(
                        file,
                        &d.raw.name,
                        format!(
                            "the shape '{}' derived from this object clashes with the shape declared on line {line}",
                            d.raw.name.value
                        ),
                    ));
                    continue;
                }
                if let Some(mut shape) = load_shape(name, file, &d.raw, &raw, &tool_tz, contract, &mut problems) {
                    shape.known.extend(d.derived.columns.iter().cloned());
                    shape.derived = Some(d.derived);
                    shapes.push(shape);
                }
            }
        }
        if shapes.is_empty() && problems.is_empty() {
            problems.push(Problem::in_file(file, "a tool needs at least one shape or object"));
        }
        if problems.is_empty() {
            Ok(Self {
                name: name.to_string(),
                description: raw.description,
                file: file.to_string(),
                shapes,
                objects,
                producers: options,
            })
        } else {
            Err(problems)
        }
    }
}

fn check_tz(file: &str, tz: &Spanned<String>, problems: &mut Vec<Problem>) -> String {
    if tz.value.parse::<chrono_tz::Tz>().is_err() {
        problems.push(Problem::at(file, tz, format!("timezone '{}' is not an IANA time zone", tz.value)));
    }
    tz.value.clone()
}

fn load_shape(
    tool: &str,
    file: &str,
    s: &RawShape,
    raw_tool: &RawTool,
    tool_tz: &str,
    contract: &Contract,
    problems: &mut Vec<Problem>,
) -> Option<Shape> {
    let before = problems.len();
    let name = &s.name.value;
    if !is_snake_case(name) {
        problems.push(Problem::at(file, &s.name, format!("shape name '{name}' must be snake_case")));
    }
    if s.matcher.file.is_empty() && s.matcher.headers.is_empty() {
        problems.push(Problem::at(
            file,
            &s.name,
            format!("shape '{name}' needs match.file or match.headers, or it would claim every file"),
        ));
    }
    let mut file_globs = Vec::new();
    for g in &s.matcher.file {
        match globset::GlobBuilder::new(&g.value).case_insensitive(true).build() {
            Ok(glob) => file_globs.push(glob.compile_matcher()),
            Err(e) => problems.push(Problem::at(file, g, format!("bad file glob: {e}"))),
        }
    }
    let r = &s.read;
    let encoding = r.encoding.as_ref().and_then(|e| {
        let enc = TextEncoding::from_label(&e.value);
        if enc.is_none() {
            problems.push(Problem::at(
                file,
                e,
                format!("unknown encoding '{}' (utf-8, utf-16le, windows-1252, latin1, ...)", e.value),
            ));
        }
        enc
    });
    let delimiter = r.delimiter.as_ref().and_then(|d| match d.value.as_str() {
        "\t" | "tab" | "\\t" => Some(b'\t'),
        v if v.len() == 1 => v.bytes().next(),
        _ => {
            problems.push(Problem::at(file, d, "delimiter must be one character (or \"tab\")"));
            None
        }
    });
    let mut summary_rows = Vec::new();
    for p in &r.summary_rows {
        match Regex::new(&p.value) {
            Ok(re) => summary_rows.push(re),
            Err(e) => problems.push(Problem::at(file, p, format!("bad summary_rows pattern: {e}"))),
        }
    }
    let mut header_patterns = Vec::new();
    for (name, p) in &r.header_patterns {
        match Regex::new(&p.value) {
            Ok(re) => header_patterns.push((name.clone(), re)),
            Err(e) => problems.push(Problem::at(file, p, format!("bad header_patterns pattern for '{name}': {e}"))),
        }
    }
    if r.format != Format::Csv
        && (r.delimiter.is_some()
            || !r.summary_rows.is_empty()
            || r.header_row.is_some()
            || r.sheet.is_some()
            || !r.header_patterns.is_empty())
    {
        problems.push(Problem::at(
            file,
            &s.name,
            "delimiter, summary_rows, header_patterns, header_row and sheet are options of delimited (csv) shapes",
        ));
    }
    let timezone = s.timezone.as_ref().map(|t| check_tz(file, t, problems)).unwrap_or_else(|| tool_tz.to_string());
    let separator =
        |own: &Option<Spanned<String>>, tool: &Option<Spanned<String>>| own.as_ref().or(tool.as_ref()).cloned();
    let numbers = match NumberFormat::declared(
        separator(&s.decimal_separator, &raw_tool.decimal_separator).as_ref().map(|d| d.value.as_str()),
        separator(&s.thousands_separator, &raw_tool.thousands_separator).as_ref().map(|t| t.value.as_str()),
    ) {
        Ok(f) => f,
        Err(message) => {
            problems.push(Problem::at(file, &s.name, format!("shape '{name}': {message}")));
            NumberFormat::default()
        }
    };
    let mut null_values = raw_tool.null_values.clone();
    null_values.extend(r.null_values.iter().cloned());

    let mut outputs = Vec::new();
    if s.outputs.value.is_empty() {
        problems.push(Problem::at(file, &s.outputs, format!("shape '{name}' has no outputs")));
    }
    for o in &s.outputs.value {
        if let Some(out) = load_output(file, o, contract, problems) {
            outputs.push(out);
        }
    }
    if problems.len() > before {
        return None;
    }
    let mut known: std::collections::BTreeSet<String> = s.matcher.headers.iter().cloned().collect();
    known.extend(s.matcher.values.keys().cloned());
    for (name, _) in &header_patterns {
        known.insert(name.clone());
    }
    for o in &outputs {
        for sql in o.columns.values().chain(&o.filter) {
            known.extend(named_columns(sql));
        }
    }
    Some(Shape {
        known,
        id: format!("{tool}.{name}"),
        description: s.description.clone(),
        file_globs,
        headers: s.matcher.headers.clone(),
        values: s.matcher.values.clone(),
        read: ReadSpec {
            format: r.format,
            encoding,
            delimiter,
            quote: r.quote.map_or(b'"', |c| c as u8),
            escape: r.escape.map(|c| c as u8),
            header_row: r.header_row,
            summary_rows,
            header_patterns,
            null_values,
            short_rows: r.short_rows,
            sheet: r.sheet.clone(),
            records: r.records.clone(),
            explode: match &r.explode {
                None => Vec::new(),
                Some(OneOrMany::One(p)) => vec![p.clone()],
                Some(OneOrMany::Many(ps)) => ps.clone(),
            },
            parent: r.parent,
            unpivot: r.unpivot.clone(),
        },
        timezone,
        date_order: s.date_order.or(raw_tool.date_order).unwrap_or_default(),
        numbers,
        home_currency: None,
        outputs,
        derived: None,
    })
}

fn load_output(file: &str, o: &RawOutput, contract: &Contract, problems: &mut Vec<Problem>) -> Option<Output> {
    let Some((ns, name)) = o.table.value.split_once('.') else {
        problems.push(Problem::at(
            file,
            &o.table,
            format!("table '{}' must be written namespace.table", o.table.value),
        ));
        return None;
    };
    let Some(table) = contract.table(ns, name) else {
        problems.push(Problem::at(
            file,
            &o.table,
            format!("table '{}' is not in the canonical contract", o.table.value),
        ));
        return None;
    };
    let before = problems.len();
    for (col, expr) in &o.columns.value {
        match table.column(col) {
            None => problems.push(Problem::at(file, expr, format!("{}: no column '{col}'", table.id))),
            Some(c) if c.role.is_some_and(|r| !MAPPABLE_ROLES.contains(&r)) => {
                problems.push(Problem::at(
                    file,
                    expr,
                    format!("{}: '{col}' is set by opslake, not by mappings", table.id),
                ));
            }
            Some(_) => {}
        }
        if let Err(e) = check_sql_syntax(&expr.value) {
            problems.push(Problem::at(file, expr, format!("{}.{col}: {e}", table.id)));
        }
    }
    if let Some(f) = &o.filter
        && let Err(e) = check_sql_syntax(&f.value)
    {
        problems.push(Problem::at(file, f, format!("filter: {e}")));
    }
    let source_id = &table.envelope(EnvelopeRole::SourceId).name;
    if !o.columns.value.contains_key(source_id) {
        problems.push(Problem::at(
            file,
            &o.columns,
            format!("{}: map {source_id}, the record's id in the tool", table.id),
        ));
    }
    for c in table.own_columns().filter(|c| !c.nullable) {
        if !o.columns.value.contains_key(&c.name) {
            problems.push(Problem::at(
                file,
                &o.columns,
                format!("{}: required column '{}' is not mapped", table.id, c.name),
            ));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(Output {
        table: Arc::new(table.clone()),
        filter: o.filter.as_ref().map(|f| f.value.clone()),
        custom_fields: o.custom_fields,
        columns: o.columns.value.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
    })
}

/// Checks that `sql` is one SQL expression (syntax only; columns are checked per file).
pub fn check_sql_syntax(sql: &str) -> Result<(), String> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(sql).map_err(|e| format!("SQL syntax: {e}"))?;
    parser.parse_expr().map_err(|e| format!("SQL syntax: {e}"))?;
    if parser.peek_token().token != datafusion::sql::sqlparser::tokenizer::Token::EOF {
        return Err(format!("SQL syntax: '{sql}' is more than one expression"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL: &str = r#"
description: A test CRM.
timezone: Europe/Paris
shapes:
  - name: accounts
    description: Accounts export.
    match: {headers: [Id, Name]}
    read: {format: csv}
    outputs:
      - table: crm.organizations
        columns:
          source_id: '"Id"'
          name: '"Name"'
"#;

    #[test]
    fn loads_a_valid_tool() {
        let contract = Contract::embedded().expect("contract");
        let tool = Tool::load("acme_crm", "acme_crm.yaml", TOOL, &contract).expect("valid");
        assert_eq!(tool.shapes[0].id, "acme_crm.accounts");
        assert_eq!(tool.shapes[0].timezone, "Europe/Paris");
        assert_eq!(tool.shapes[0].outputs[0].table.id.to_string(), "crm.organizations");
    }

    #[test]
    fn reports_every_mapping_problem_with_its_line() {
        let contract = Contract::embedded().expect("contract");
        let bad = TOOL.replace(
            "name: '\"Name\"'",
            "nmae: '\"Name\"'\n          _run_id: '1'\n          domain: 'lower(\"Web\" '",
        );
        let problems = Tool::load("acme_crm", "t.yaml", &bad, &contract).expect_err("invalid");
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("crm.organizations: no column 'nmae'"), "{text}");
        assert!(text.contains("'_run_id' is set by opslake"), "{text}");
        assert!(text.contains("crm.organizations.domain: SQL syntax"), "{text}");
        assert!(problems.iter().all(|p| p.line > 0), "{text}");
    }

    #[test]
    fn producers_an_object_names_must_exist_and_derive_a_layout() {
        let contract = Contract::embedded().expect("contract");
        let object = |written_by: &str, field_by: &str| {
            format!(
                "description: Acme.\nobjects:\n  thing:\n    description: Things.\n{written_by}    fields:\n      \
                 id: {{required: true}}\n      name: {{{field_by}}}\n    outputs:\n      - table: crm.organizations\n        \
                 columns: {{source_id: id, name: name}}\n"
            )
        };
        let problems = |yaml: &str| match Tool::load("acme", "t.yaml", yaml, &contract) {
            Ok(_) => String::new(),
            Err(p) => p.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        };
        assert_eq!(problems(&object("", "")), "", "an object every producer writes loads");
        let typo = problems(&object("", "written_by: [fivetrna]"));
        assert!(typo.contains("field 'name' names 'fivetrna', which is not a producer"), "{typo}");
        let none = problems(&object("    written_by: []\n", ""));
        assert!(none.contains("written_by names no producer"), "{none}");
        let idle = problems(&object("    written_by: [fivetran, ui]\n", ""));
        assert!(idle.contains("names 'ui', but no ui layout can be derived"), "{idle}");
    }

    #[test]
    fn required_columns_and_source_id_must_be_mapped() {
        let contract = Contract::embedded().expect("contract");
        let bad = TOOL
            .replace("table: crm.organizations", "table: crm.people")
            .replace("source_id: '\"Id\"'", "first_name: '\"Id\"'");
        let problems = Tool::load("acme_crm", "t.yaml", &bad, &contract).expect_err("invalid");
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("map source_id"), "{text}");
        assert!(text.contains("required column 'person_type' is not mapped"), "{text}");
    }
}
