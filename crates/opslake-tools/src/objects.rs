//! A tool's objects: each described once, by the tool's own field names, with its canonical
//! mapping written over those names; from them one shape per producer is derived
//! ([`crate::producers`]): the producer's column for each field, the mapping's expressions
//! rewritten to name those columns, the required fields as the headers a file must have.
//! A tool author writes an object once and gets the API's layout, the UI export's (for the
//! fields with labels) and every loader's.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::sql::sqlparser::ast::{Expr, Ident, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use opslake_schema::Problem;
use opslake_schema::diag::is_snake_case;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::producers::{self, FieldName, Layout, Producer, ProducerOptions};
use crate::spec::{Format, OneOrMany, RawMatch, RawOutput, RawRead, RawShape};

/// An object as a tool file declares it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObject {
    description: Spanned<String>,
    /// Names of the files, streams and tables that hold it.
    #[serde(default)]
    names: Vec<String>,
    /// How the API returns a list of it (several layouts: JSON and XML); no API layout when
    /// absent.
    #[serde(default)]
    api: Option<ApiLayouts>,
    /// Where the UI export is found, beyond its labels.
    #[serde(default)]
    ui: Option<RawUi>,
    /// The producers derived for it, where not every one is: a layout a written shape of the
    /// tool already reads (a UI export with its own quirks) is not derived a second time.
    #[serde(default)]
    written_by: Option<Vec<String>>,
    fields: Spanned<BTreeMap<String, Option<RawField>>>,
    outputs: Spanned<Vec<RawOutput>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ApiLayouts {
    One(RawApi),
    Many(Vec<RawApi>),
}

impl ApiLayouts {
    fn all(&self) -> &[RawApi] {
        match self {
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(all) => all,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    records: Option<String>,
    #[serde(default)]
    explode: Option<OneOrMany>,
    #[serde(default)]
    parent: bool,
    #[serde(default)]
    values: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUi {
    #[serde(default)]
    file: Vec<Spanned<String>>,
    #[serde(default)]
    sheet: Option<String>,
}

/// What a value of a field is: a hint for the documentation and for the files tests write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Text (the default).
    #[default]
    String,
    /// A whole number.
    Integer,
    /// A decimal number.
    Number,
    /// true or false.
    Boolean,
    /// An instant: ISO 8601, or epoch seconds where the API writes them.
    Timestamp,
    /// A calendar date.
    Date,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(default)]
    required: bool,
    #[serde(default, rename = "ref")]
    reference: bool,
    #[serde(default, rename = "type")]
    kind: FieldType,
    #[serde(default)]
    label: Option<OneOrMany>,
    #[serde(default)]
    fivetran: Option<String>,
    #[serde(default)]
    singer: Option<String>,
    #[serde(default)]
    dlt: Option<String>,
    #[serde(default)]
    airbyte: Option<String>,
    /// The producers that write it, where not every one does (a column a loader adds; a
    /// field a loader keeps in a table of its own).
    #[serde(default)]
    written_by: Option<Vec<String>>,
    /// Values the API writes (an enum, or the object's type marker): for tests' files.
    #[serde(default)]
    example: Option<String>,
}

/// One field of a loaded object.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its API path.
    pub path: String,
    /// The object cannot exist without it: a file lacking it is not this object's.
    pub required: bool,
    /// A reference to another record.
    pub reference: bool,
    /// What its values are.
    pub kind: FieldType,
    /// Its UI labels.
    pub labels: Vec<String>,
    /// A producer's own names for it.
    pub own: BTreeMap<String, String>,
    /// The producers that write it; every one when none is named.
    pub written_by: Option<Vec<String>>,
    /// A value the tool writes, for tests' files.
    pub example: Option<String>,
}

impl Field {
    /// Whether `producer` writes it.
    pub fn written_by(&self, producer: &str) -> bool {
        writes(self.written_by.as_ref(), producer)
    }

    fn name(&self, producer: &str) -> FieldName<'_> {
        FieldName {
            path: &self.path,
            reference: self.reference,
            labels: &self.labels,
            own: self.own.get(producer).map(String::as_str),
        }
    }
}

/// A loaded object: what `opslake docs coverage` and tests derive its layouts from.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its name in the tool file.
    pub name: String,
    /// What it is.
    pub description: String,
    /// File, stream and table names that hold it.
    pub names: Vec<String>,
    /// Its fields, by path.
    pub fields: Vec<Field>,
    /// Its API layouts.
    pub api: Vec<ApiLayout>,
    /// The producers a shape was derived for.
    pub producers: Vec<String>,
    /// The canonical tables it lands in.
    pub tables: Vec<String>,
}

impl Object {
    /// The columns holding `field` in `producer`'s files.
    pub fn columns(&self, field: &Field, producer: &Producer, options: Option<&ProducerOptions>) -> Vec<String> {
        if !field.written_by(&producer.name) {
            return Vec::new();
        }
        producer.columns(field.name(&producer.name), options)
    }
}

/// How the API returns a list of an object.
#[derive(Debug, Clone)]
pub struct ApiLayout {
    /// JSON or XML.
    pub format: Format,
    /// The records path; empty when the document is the list (or the one record).
    pub records: String,
    /// Values fields must take (the object's type marker in a shared envelope).
    pub values: BTreeMap<String, Vec<String>>,
}

/// Where a derived shape came from.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The object (`*` for a layout holding every object, as Airbyte's streams do).
    pub object: String,
    /// The producer.
    pub producer: String,
    /// File and stream names of the object.
    pub names: Vec<String>,
    /// Every column the producer writes for the object's fields: what a file of it is
    /// expected to hold, mapped or not.
    pub columns: BTreeSet<String>,
}

impl Derived {
    /// Whether a file or stream named `file_name` is named after the object: one of its names
    /// among the words of the file's stem (`fivetran_payout_data.csv` holds payouts).
    pub fn named_in(&self, file_name: &str) -> bool {
        let stem = file_name.rsplit(['/', '\\', '!']).next().unwrap_or(file_name);
        let stem = stem.split('.').next().unwrap_or(stem);
        let stem_words = words(stem);
        self.names.iter().any(|n| {
            let name = words(n);
            !name.is_empty() && stem_words.windows(name.len()).any(|w| w == name.as_slice())
        })
    }
}

fn words(text: &str) -> Vec<String> {
    producers::snake_case(text).split('_').filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// Whether `producer` writes an object or field whose `written_by` is `listed`: every one
/// when none is listed.
fn writes(listed: Option<&Vec<String>>, producer: &str) -> bool {
    listed.is_none_or(|w| w.iter().any(|p| p == producer))
}

/// A shape derived from an object, to load as written shapes are.
pub(crate) struct DerivedShape {
    pub(crate) raw: RawShape,
    pub(crate) derived: Derived,
}

/// The objects of a tool, with the shapes derived from them. Problems (a field an expression
/// names that the object does not declare, an object with no required field) are collected.
pub(crate) fn derive(
    file: &str,
    objects: &Spanned<BTreeMap<String, RawObject>>,
    options: &BTreeMap<String, ProducerOptions>,
    problems: &mut Vec<Problem>,
) -> (Vec<Object>, Vec<DerivedShape>) {
    let mut loaded = Vec::new();
    let mut shapes = Vec::new();
    let mut airbyte: Vec<(&RawObject, Object)> = Vec::new();
    for (name, raw) in &objects.value {
        let before = problems.len();
        if !is_snake_case(name) {
            problems.push(Problem::at(file, &raw.description, format!("object name '{name}' must be snake_case")));
        }
        let field_producers = raw.fields.value.iter().filter_map(|(path, f)| {
            let w = f.as_ref()?.written_by.as_ref()?;
            Some((format!("field '{path}'"), w))
        });
        for (what, listed) in raw.written_by.iter().map(|w| ("written_by".to_string(), w)).chain(field_producers) {
            if listed.is_empty() {
                problems.push(Problem::at(
                    file,
                    &raw.description,
                    format!("object '{name}': {what} names no producer (leave it out for every one)"),
                ));
            }
            for unknown in listed.iter().filter(|p| producers::named(p).is_none()) {
                problems.push(Problem::at(
                    file,
                    &raw.description,
                    format!(
                        "object '{name}': {what} names '{unknown}', which is not a producer (schemas/producers.yaml)"
                    ),
                ));
            }
        }
        let fields: Vec<Field> = raw
            .fields
            .value
            .iter()
            .map(|(path, f)| {
                let f = f.clone().unwrap_or_default();
                let own = [("fivetran", &f.fivetran), ("singer", &f.singer), ("dlt", &f.dlt), ("airbyte", &f.airbyte)]
                    .into_iter()
                    .filter_map(|(p, n)| Some((p.to_string(), n.clone()?)))
                    .collect();
                Field {
                    path: path.clone(),
                    required: f.required,
                    reference: f.reference,
                    kind: f.kind,
                    labels: match f.label {
                        None => Vec::new(),
                        Some(OneOrMany::One(l)) => vec![l],
                        Some(OneOrMany::Many(ls)) => ls,
                    },
                    own,
                    written_by: f.written_by,
                    example: f.example,
                }
            })
            .collect();
        if !fields.iter().any(|f| f.required) {
            problems.push(Problem::at(
                file,
                &raw.fields,
                format!("object '{name}' needs a required field (its id): without one any file could be it"),
            ));
        }
        for o in &raw.outputs.value {
            for expr in o.columns.value.values().chain(&o.filter) {
                for unknown in unknown_fields(&expr.value, &fields) {
                    problems.push(Problem::at(
                        file,
                        expr,
                        format!("object '{name}': '{unknown}' is not one of its fields (declare it under fields)"),
                    ));
                }
            }
        }
        if problems.len() > before {
            continue;
        }
        let mut object = Object {
            name: name.clone(),
            description: raw.description.value.clone(),
            names: if raw.names.is_empty() { vec![name.clone(), format!("{name}s")] } else { raw.names.clone() },
            fields,
            api: raw
                .api
                .iter()
                .flat_map(ApiLayouts::all)
                .map(|a| ApiLayout {
                    format: a.format.unwrap_or(Format::Json),
                    records: a.records.clone().unwrap_or_default(),
                    values: a.values.clone(),
                })
                .collect(),
            producers: Vec::new(),
            tables: raw.outputs.value.iter().map(|o| o.table.value.clone()).collect(),
        };
        let apis: &[RawApi] = raw.api.as_ref().map_or(&[], ApiLayouts::all);
        let exploded = apis.iter().any(|a| a.explode.is_some());
        let derives = |p: &str| writes(raw.written_by.as_ref(), p);
        for producer in producers::all().iter().filter(|p| derives(&p.name)) {
            let layouts: Vec<(String, Option<&RawApi>)> = match (producer.name.as_str(), producer.layout) {
                ("airbyte", _) => Vec::new(),
                (_, Layout::Document) => apis
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let format = a.format.unwrap_or(Format::Json);
                        let name = match apis.len() {
                            1 => format!("{}_{name}", producer.name),
                            _ if apis.iter().filter(|b| b.format.unwrap_or(Format::Json) == format).count() > 1 => {
                                format!("{}_{format}{}_{name}", producer.name, i + 1)
                            }
                            _ => format!("{}_{format}_{name}", producer.name),
                        };
                        (name, Some(a))
                    })
                    .collect(),
                ("ui", _) if object.fields.iter().any(|f| !f.labels.is_empty()) => {
                    vec![(format!("ui_{name}"), None)]
                }
                ("ui", _) => Vec::new(),
                // A nested array the API explodes into rows is a child table of its own in a
                // loader's layout: that table is its own object.
                (_, Layout::Table) if exploded => Vec::new(),
                (_, Layout::Table) => vec![(format!("{}_{name}", producer.name), None)],
            };
            for (shape_name, api) in layouts {
                if let Some(shape) = derive_shape(raw, &object, producer, api, shape_name, options.get(&producer.name))
                {
                    if !object.producers.contains(&producer.name) {
                        object.producers.push(producer.name.clone());
                    }
                    shapes.push(shape);
                }
            }
        }
        if !exploded && derives("airbyte") {
            object.producers.push("airbyte".to_string());
            airbyte.push((raw, object.clone()));
        }
        // A producer named that derives nothing (`ui` without labels, `api` without a layout,
        // a loader of an exploded object) is a mistake the file would otherwise hide.
        for idle in raw.written_by.iter().flatten().filter(|p| !object.producers.contains(p)) {
            if producers::named(idle).is_some() {
                problems.push(Problem::at(
                    file,
                    &raw.description,
                    format!("object '{name}': written_by names '{idle}', but no {idle} layout can be derived for it"),
                ));
            }
        }
        loaded.push(object);
    }
    if let Some(shape) = airbyte_streams(&airbyte) {
        shapes.push(shape);
    }
    (loaded, shapes)
}

/// The column expression `field` becomes in `producer`'s files: its column, one of several
/// labels, or null where the producer does not write it.
fn column_expr(field: &Field, producer: &Producer, options: Option<&ProducerOptions>) -> Expr {
    let quoted = |c: &str| Expr::Identifier(Ident::with_quote('"', c));
    let columns = if field.written_by(&producer.name) {
        producer.columns(field.name(&producer.name), options)
    } else {
        Vec::new()
    };
    match columns.as_slice() {
        [] => parse_expr("CAST(NULL AS VARCHAR)").expect("a literal parses"),
        [one] => quoted(one),
        many => {
            let args: Vec<String> = many.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
            parse_expr(&format!("coalesce({})", args.join(", "))).expect("coalesce of identifiers parses")
        }
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&GenericDialect {}).try_with_sql(sql).and_then(|mut p| p.parse_expr()).ok()
}

/// The field an identifier names: a quoted name as written, an unquoted one lowercased (as
/// the mapping resolves them), a dotted one joined by `.`.
fn ident_name(expr: &Expr) -> Option<String> {
    let name = |i: &Ident| if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() };
    match expr {
        Expr::Identifier(i) => Some(name(i)),
        Expr::CompoundIdentifier(parts) => Some(parts.iter().map(name).collect::<Vec<_>>().join(".")),
        _ => None,
    }
}

fn unknown_fields(sql: &str, fields: &[Field]) -> Vec<String> {
    crate::spec::named_columns(sql).into_iter().filter(|n| !fields.iter().any(|f| &f.path == n)).collect()
}

/// `sql` over field names, rewritten over `producer`'s columns.
fn rewrite(sql: &str, fields: &[Field], column: &dyn Fn(&Field) -> Expr) -> Option<String> {
    let mut expr = parse_expr(sql)?;
    let _ = visit_expressions_mut(&mut expr, |e| {
        if let Some(f) = ident_name(e).and_then(|n| fields.iter().find(|f| f.path == n)) {
            *e = column(f);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Some(expr.to_string())
}

fn rewritten_outputs(raw: &RawObject, object: &Object, column: &dyn Fn(&Field) -> Expr) -> Vec<RawOutput> {
    raw.outputs
        .value
        .iter()
        .map(|o| {
            let mut out = o.clone();
            for expr in out.columns.value.values_mut().chain(out.filter.as_mut()) {
                if let Some(sql) = rewrite(&expr.value, &object.fields, column) {
                    expr.value = sql;
                }
            }
            out
        })
        .collect()
}

fn spanned<T>(value: T, at: &Spanned<String>) -> Spanned<T> {
    Spanned::new(value, at.referenced, at.defined)
}

fn derive_shape(
    raw: &RawObject,
    object: &Object,
    producer: &Producer,
    api: Option<&RawApi>,
    shape_name: String,
    options: Option<&ProducerOptions>,
) -> Option<DerivedShape> {
    let at = &raw.description;
    let columns_of = |f: &Field| object.columns(f, producer, options);
    // A required field with several labels cannot be one required header: the fit decides.
    let headers: Vec<String> = object
        .fields
        .iter()
        .filter(|f| f.required)
        .filter_map(|f| match columns_of(f).as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
        .collect();
    // A marker of the envelope (Salesforce's attributes.type) need not be a field.
    let values: BTreeMap<String, Vec<String>> = api
        .map(|a| {
            a.values
                .iter()
                .filter_map(|(path, allowed)| {
                    let column = match object.fields.iter().find(|f| &f.path == path) {
                        Some(field) => columns_of(field).into_iter().next()?,
                        None => path.clone(),
                    };
                    Some((column, allowed.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    let read = match (producer.layout, api) {
        (Layout::Document, Some(api)) => {
            let format = api.format.unwrap_or(Format::Json);
            RawRead {
                records: api.records.clone(),
                explode: api.explode.clone(),
                parent: api.parent,
                ..RawRead::new(format)
            }
        }
        (Layout::Document, None) => return None,
        (Layout::Table, _) => RawRead {
            sheet: if producer.naming.case == producers::Case::Label {
                raw.ui.as_ref().and_then(|u| u.sheet.clone())
            } else {
                None
            },
            ..RawRead::new(Format::Csv)
        },
    };
    let file = match (producer.naming.case, &raw.ui) {
        (producers::Case::Label, Some(ui)) => ui.file.clone(),
        _ => Vec::new(),
    };
    if headers.is_empty() && file.is_empty() {
        return None;
    }
    let mut columns: BTreeSet<String> = object.fields.iter().flat_map(columns_of).collect();
    columns.extend(values.keys().cloned());
    let shape = RawShape {
        name: spanned(shape_name, at),
        description: format!("{} ({})", object.description.trim_end_matches('.'), producer.description),
        matcher: RawMatch { file, headers, values },
        read,
        timezone: None,
        date_order: None,
        decimal_separator: None,
        thousands_separator: None,
        outputs: spanned(rewritten_outputs(raw, object, &|f| column_expr(f, producer, options)), at),
    };
    Some(DerivedShape {
        raw: shape,
        derived: Derived {
            object: object.name.clone(),
            producer: producer.name.clone(),
            names: object.names.clone(),
            columns,
        },
    })
}

/// Airbyte writes every stream of a connection alike: one shape takes them all, each
/// object's rows by its stream (its names), so a file of several streams lands whole.
fn airbyte_streams(objects: &[(&RawObject, Object)]) -> Option<DerivedShape> {
    let producer = producers::named("airbyte")?;
    let (first, _) = objects.first()?;
    let mut outputs = Vec::new();
    let mut columns = BTreeSet::from(["stream".to_string()]);
    let mut names = Vec::new();
    for (raw, object) in objects {
        let streams: Vec<String> = object.names.iter().map(|n| format!("'{}'", n.replace('\'', "''"))).collect();
        let of_stream = format!("\"stream\" IN ({})", streams.join(", "));
        for mut out in rewritten_outputs(raw, object, &|f| column_expr(f, producer, None)) {
            out.filter = Some(match out.filter.take() {
                Some(mut own) => {
                    own.value = format!("{of_stream} AND ({})", own.value);
                    own
                }
                None => spanned(of_stream.clone(), &raw.description),
            });
            outputs.push(out);
        }
        columns.extend(object.fields.iter().flat_map(|f| object.columns(f, producer, None)));
        names.extend(object.names.iter().cloned());
    }
    let at = &first.description;
    Some(DerivedShape {
        raw: RawShape {
            name: spanned("airbyte_streams".to_string(), at),
            description: format!(
                "the objects above as {} streams ({{stream, emitted_at, data}})",
                producer.description
            ),
            matcher: RawMatch { file: Vec::new(), headers: vec!["stream".to_string()], values: BTreeMap::new() },
            read: RawRead::new(Format::Jsonl),
            timezone: None,
            date_order: None,
            decimal_separator: None,
            thousands_separator: None,
            outputs: spanned(outputs, at),
        },
        derived: Derived { object: "*".to_string(), producer: producer.name.clone(), names, columns },
    })
}

/// First line of `docs/coverage.md`: the page `opslake docs coverage` writes and replaces.
pub const COVERAGE_HEADER: &str =
    "<!-- Generated from schemas/tools and schemas/producers.yaml by `opslake docs coverage`. Do not edit. -->\n\n";

/// The coverage matrix, tool x object x producer, as Markdown: for each tool, each object it
/// describes with the producers whose layout is derived for it and the tables it lands in,
/// then the shapes still written one layout at a time.
pub fn coverage(tools: &[crate::Tool]) -> String {
    use std::fmt::Write as _;
    let all = producers::all();
    let mut out = String::from(COVERAGE_HEADER);
    out.push_str("# Coverage: tools, objects and producers\n\n");
    out.push_str(
        "Each object is described once in its tool file (`objects:`, by the API's field names); a layout is derived for each producer marked. \
         Producers (schemas/producers.yaml): ",
    );
    let described: Vec<String> = all.iter().map(|p| format!("`{}` {}", p.name, p.description)).collect();
    out.push_str(&described.join("; "));
    out.push_str(".\n\n");
    let objects: usize = tools.iter().map(|t| t.objects.len()).sum();
    let written: usize = tools.iter().map(|t| t.shapes.iter().filter(|s| s.derived.is_none()).count()).sum();
    let _ = writeln!(
        out,
        "{} tools; {objects} objects described once; {written} shapes written for one layout each.\n",
        tools.len()
    );
    let header: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    for tool in tools {
        let _ = writeln!(out, "## {}\n\n{}\n", tool.name, tool.description);
        if !tool.objects.is_empty() {
            let _ = writeln!(out, "| object | {} | lands in |", header.join(" | "));
            let _ = writeln!(out, "|---|{}---|", "---|".repeat(header.len()));
            for o in &tool.objects {
                let marks: Vec<&str> =
                    all.iter().map(|p| if o.producers.contains(&p.name) { "yes" } else { "" }).collect();
                let _ = writeln!(out, "| {} | {} | {} |", o.name, marks.join(" | "), o.tables.join(", "));
            }
            out.push('\n');
        }
        let written: Vec<&crate::Shape> = tool.shapes.iter().filter(|s| s.derived.is_none()).collect();
        if !written.is_empty() {
            out.push_str("Written shapes (one layout each):\n\n");
            for s in written {
                let mut tables: Vec<String> = s.outputs.iter().map(|o| o.table.id.to_string()).collect();
                tables.dedup();
                let _ = writeln!(out, "- `{}`: {} ({})", s.id, s.description, tables.join(", "));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str) -> Field {
        Field {
            path: path.to_string(),
            required: false,
            reference: false,
            kind: FieldType::String,
            labels: Vec::new(),
            own: BTreeMap::new(),
            written_by: None,
            example: None,
        }
    }

    #[test]
    fn expressions_over_fields_are_rewritten_over_a_producers_columns() {
        let fields = [field("amount"), field("currency"), field("Contact.ContactID")];
        let fivetran = producers::named("fivetran").expect("fivetran");
        let sql = rewrite(
            "CASE WHEN amount > 0 THEN stripe_amount(amount, upper(currency)) END || \"Contact.ContactID\"",
            &fields,
            &|f| column_expr(f, fivetran, None),
        )
        .expect("parses");
        assert_eq!(
            sql,
            "CASE WHEN \"amount\" > 0 THEN stripe_amount(\"amount\", upper(\"currency\")) END || \"contact_contact_id\""
        );
        assert_eq!(unknown_fields("lower(Email) || \"Contact.ContactID\"", &fields), ["email"]);
    }

    #[test]
    fn a_file_named_after_the_object_is_evidence() {
        let d = Derived {
            object: "balance_transaction".into(),
            producer: "fivetran".into(),
            names: vec!["balance_transaction".into(), "balance_transactions".into()],
            columns: BTreeSet::new(),
        };
        assert!(d.named_in("stripe/fivetran_balance_transaction_data.csv"));
        assert!(d.named_in("exports.zip!BalanceTransactions.csv"));
        assert!(!d.named_in("fivetran_transaction.csv"));
    }
}
