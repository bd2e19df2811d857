//! The canonical contract: `schemas/canonical/<namespace>/<table>.yaml` plus the envelope in
//! `schemas/canonical/_envelope.yaml`, loaded, validated (every problem, with file and line) and
//! turned into Arrow schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Problem, is_snake_case, parse_yaml};
use crate::types::ColumnType;
use crate::{Error, Result};

/// Path of the envelope file, relative to `schemas/`.
pub const ENVELOPE_FILE: &str = "canonical/_envelope.yaml";
const CANONICAL_DIR: &str = "canonical/";
const SYSTEM_DIR: &str = "system/";
const ENTITY_PLACEHOLDER: &str = "{entity}";

/// What an envelope column is for. Code finds envelope columns by role, so column names live
/// only in the YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeRole {
    /// `<entity>_key`: stable hash of system, connection and source id.
    EntityKey,
    /// The tool's name.
    SourceSystem,
    /// The connection's name from opslake.yml.
    SourceConnection,
    /// The record's id in the tool.
    SourceId,
    /// When the tool created the record.
    SourceCreatedAt,
    /// When the tool last changed the record.
    SourceUpdatedAt,
    /// Deleted, merged away or archived in the tool.
    IsDeleted,
    /// When it was deleted.
    DeletedAt,
    /// Every unmapped export column.
    CustomFields,
    /// The file the row came from.
    SourceFile,
    /// The record number within that file.
    SourceRow,
    /// The run that wrote the row.
    RunId,
    /// When the run wrote it.
    IngestedAt,
    /// History tables: when this version of the row became true.
    ValidFrom,
    /// History tables: when the next version replaced it; null while current.
    ValidTo,
    /// History tables: whether this is the row's latest version.
    IsCurrent,
}

impl EnvelopeRole {
    /// The role as spelled in `_envelope.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntityKey => "entity_key",
            Self::SourceSystem => "source_system",
            Self::SourceConnection => "source_connection",
            Self::SourceId => "source_id",
            Self::SourceCreatedAt => "source_created_at",
            Self::SourceUpdatedAt => "source_updated_at",
            Self::IsDeleted => "is_deleted",
            Self::DeletedAt => "deleted_at",
            Self::CustomFields => "custom_fields",
            Self::SourceFile => "source_file",
            Self::SourceRow => "source_row",
            Self::RunId => "run_id",
            Self::IngestedAt => "ingested_at",
            Self::ValidFrom => "valid_from",
            Self::ValidTo => "valid_to",
            Self::IsCurrent => "is_current",
        }
    }

    /// Whether the role belongs to the `history` section, carried by history tables only.
    pub fn is_history(self) -> bool {
        matches!(self, Self::ValidFrom | Self::ValidTo | Self::IsCurrent)
    }

    /// Every role; the envelope must declare each exactly once.
    pub const ALL: [Self; 16] = [
        Self::EntityKey,
        Self::SourceSystem,
        Self::SourceConnection,
        Self::SourceId,
        Self::SourceCreatedAt,
        Self::SourceUpdatedAt,
        Self::IsDeleted,
        Self::DeletedAt,
        Self::CustomFields,
        Self::SourceFile,
        Self::SourceRow,
        Self::RunId,
        Self::IngestedAt,
        Self::ValidFrom,
        Self::ValidTo,
        Self::IsCurrent,
    ];
}

/// How ingest writes a table. Declared per table; `merge` when not declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Merge by unique key: the row with the latest `source_updated_at` wins.
    #[default]
    Merge,
    /// Append every row; nothing is replaced.
    Append,
    /// Keep every version of a row with validity intervals (SCD type 2).
    History,
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Merge => "merge",
            Self::Append => "append",
            Self::History => "history",
        })
    }
}

/// `namespace.table`, the name a table has in SQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// crm, marketing, finance, hr, ref, identity.
    pub namespace: String,
    /// The table within its namespace.
    pub name: String,
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() { f.write_str(&self.name) } else { write!(f, "{}.{}", self.namespace, self.name) }
    }
}

/// One column of a canonical table, envelope columns included.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// snake_case name.
    pub name: String,
    /// Declared type.
    pub ty: ColumnType,
    /// Whether the column may be null.
    pub nullable: bool,
    /// What the column means, for docs and `opslake docs`.
    pub description: String,
    /// Allowed values, empty when the column is not an enumeration.
    pub enum_values: Vec<String>,
    /// Personal data, subject to the project's personal-data policy.
    pub pii: bool,
    /// Set on envelope columns.
    pub role: Option<EnvelopeRole>,
}

impl Column {
    /// The Arrow field of this column.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.ty.arrow(), self.nullable)
    }
}

/// A canonical table with the envelope applied.
#[derive(Debug, Clone)]
pub struct Table {
    /// `namespace.table`.
    pub id: TableId,
    /// What the table holds.
    pub description: String,
    /// What one row is.
    pub grain: String,
    /// Singular name of what a row describes; names the `<entity>_key` column.
    pub entity: String,
    /// Columns that identify a row.
    pub unique_key: Vec<String>,
    /// How ingest writes the table.
    pub write_mode: WriteMode,
    /// Envelope leading columns, the table's own columns, envelope trailing columns.
    pub columns: Vec<Column>,
    /// The YAML file it was declared in, relative to `schemas/`.
    pub file: String,
    schema: SchemaRef,
}

impl Table {
    /// The Arrow schema of the table as stored in the lake.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The envelope column playing `role`; every table has each role exactly once, but for the
    /// history roles, which only history tables have (see [`Table::history_column`]).
    pub fn envelope(&self, role: EnvelopeRole) -> &Column {
        self.columns
            .iter()
            .find(|c| c.role == Some(role))
            .expect("validation guarantees every envelope role on every table")
    }

    /// The history column playing `role` (valid_from, valid_to, is_current) of a history table.
    pub fn history_column(&self, role: EnvelopeRole) -> Option<&Column> {
        self.columns.iter().find(|c| c.role == Some(role))
    }

    /// The table's own columns, without the envelope.
    pub fn own_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role.is_none())
    }
}

/// The whole contract: the envelope and every canonical table.
#[derive(Debug, Clone)]
pub struct Contract {
    envelope: Envelope,
    tables: BTreeMap<TableId, Table>,
    system: BTreeMap<String, Table>,
}

impl Contract {
    /// The contract compiled into this binary from the repository's `schemas/`.
    pub fn embedded() -> Result<Self> {
        Self::from_files(crate::embedded::files()).map_err(|problems| Error::EmbeddedContract { problems })
    }

    /// Loads `<dir>/_envelope.yaml` and `<dir>/<namespace>/<table>.yaml` from a directory laid
    /// out like `schemas/canonical`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        read_yaml_tree(dir, dir, &mut files)?;
        let named: Vec<(String, String)> =
            files.into_iter().map(|(rel, text)| (format!("{CANONICAL_DIR}{rel}"), text)).collect();
        Self::from_files(named.iter().map(|(p, t)| (p.as_str(), t.as_str())))
            .map_err(|problems| Error::Invalid { problems })
    }

    /// Builds the contract from `(path relative to schemas/, text)` pairs; paths outside
    /// `canonical/` are ignored. Returns every problem found, not just the first.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut envelope_text = None;
        let mut table_files = Vec::new();
        let mut system = BTreeMap::new();
        for (path, text) in files {
            if let Some(rel) = path.strip_prefix(SYSTEM_DIR) {
                let Some(stem) = rel.strip_suffix(".yaml").filter(|s| is_snake_case(s)) else {
                    problems.push(Problem::in_file(path, "a system table file must be system/<snake_case name>.yaml"));
                    continue;
                };
                let id = TableId { namespace: String::new(), name: format!("_{stem}") };
                if let Some(table) = parse_table(path, id, text, None, &mut problems) {
                    system.insert(table.id.name.clone(), table);
                }
                continue;
            }
            let Some(rel) = path.strip_prefix(CANONICAL_DIR) else { continue };
            if path == ENVELOPE_FILE {
                envelope_text = Some(text);
            } else {
                table_files.push((path, rel, text));
            }
        }
        let envelope = match envelope_text {
            Some(text) => parse_envelope(ENVELOPE_FILE, text, &mut problems),
            None => {
                problems.push(Problem::in_file(ENVELOPE_FILE, "the envelope file is missing"));
                Envelope::default()
            }
        };

        let mut tables = BTreeMap::new();
        let mut entities: BTreeMap<String, String> = BTreeMap::new();
        for (path, rel, text) in table_files {
            let Some(id) = table_id(path, rel, &mut problems) else { continue };
            let Some(table) = parse_table(path, id, text, Some(&envelope), &mut problems) else { continue };
            if let Some(other) = entities.insert(table.entity.clone(), table.id.to_string()) {
                problems.push(Problem::in_file(
                    path,
                    format!(
                        "entity '{}' is already used by {other}; each table needs its own entity name",
                        table.entity
                    ),
                ));
            }
            tables.insert(table.id.clone(), table);
        }
        if tables.is_empty() && problems.is_empty() {
            problems.push(Problem::in_file(CANONICAL_DIR, "no canonical tables found"));
        }
        if problems.is_empty() { Ok(Self { envelope, tables, system }) } else { Err(problems) }
    }

    /// Every table, ordered by namespace then name.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values()
    }

    /// The table `namespace.name`.
    pub fn table(&self, namespace: &str, name: &str) -> Option<&Table> {
        self.tables.get(&TableId { namespace: namespace.to_string(), name: name.to_string() })
    }

    /// The namespaces, in order.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.tables.keys().map(|id| id.namespace.as_str()).collect()
    }

    /// A system table (`_rejects`, `_runs`): written by opslake itself, no envelope.
    pub fn system_table(&self, name: &str) -> Option<&Table> {
        self.system.get(name)
    }

    /// Every system table, by name.
    pub fn system_tables(&self) -> impl Iterator<Item = &Table> {
        self.system.values()
    }

    /// The envelope columns as declared, leading, trailing, then history (on history tables
    /// only), `{entity}` not yet substituted.
    pub fn envelope_columns(&self) -> impl Iterator<Item = &Column> {
        self.envelope.leading.iter().chain(&self.envelope.trailing).chain(&self.envelope.history)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    leading: Vec<RawColumn>,
    trailing: Vec<RawColumn>,
    #[serde(default)]
    history: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    description: Spanned<String>,
    grain: Spanned<String>,
    #[serde(default)]
    entity: Option<Spanned<String>>,
    #[serde(default)]
    unique_key: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    write_mode: WriteMode,
    columns: Spanned<Vec<RawColumn>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    #[serde(default)]
    role: Option<Spanned<EnvelopeRole>>,
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    #[serde(default = "default_nullable")]
    nullable: bool,
    description: Spanned<String>,
    #[serde(default, rename = "enum")]
    enum_values: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pii: bool,
}

const fn default_nullable() -> bool {
    true
}

fn table_id(path: &str, rel: &str, problems: &mut Vec<Problem>) -> Option<TableId> {
    let stem = rel.strip_suffix(".yaml").or_else(|| rel.strip_suffix(".yml"))?;
    let Some((namespace, name)) = stem.split_once('/').filter(|(_, n)| !n.contains('/')) else {
        problems.push(Problem::in_file(path, "a table file must be canonical/<namespace>/<table>.yaml"));
        return None;
    };
    let mut ok = true;
    for (what, value) in [("namespace", namespace), ("table name", name)] {
        if !is_snake_case(value) {
            problems.push(Problem::in_file(path, format!("{what} '{value}' must be snake_case ([a-z][a-z0-9_]*)")));
            ok = false;
        }
    }
    ok.then(|| TableId { namespace: namespace.to_string(), name: name.to_string() })
}

/// The envelope columns, split by where they go around a table's own columns.
#[derive(Debug, Clone, Default)]
struct Envelope {
    leading: Vec<Column>,
    trailing: Vec<Column>,
    history: Vec<Column>,
}

fn parse_envelope(file: &str, text: &str, problems: &mut Vec<Problem>) -> Envelope {
    let raw: RawEnvelope = match parse_yaml(file, text) {
        Ok(raw) => raw,
        Err(p) => {
            problems.push(p);
            return Envelope::default();
        }
    };
    let mut envelope = Envelope::default();
    let mut seen: BTreeMap<EnvelopeRole, u64> = BTreeMap::new();
    for (position, raw_col) in raw
        .leading
        .iter()
        .map(|c| (Position::Leading, c))
        .chain(raw.trailing.iter().map(|c| (Position::Trailing, c)))
        .chain(raw.history.iter().map(|c| (Position::History, c)))
    {
        let Some(role) = &raw_col.role else {
            problems.push(Problem::at(
                file,
                &raw_col.name,
                format!("envelope column '{}' needs a role", raw_col.name.value),
            ));
            continue;
        };
        if role.value.is_history() != matches!(position, Position::History) {
            problems.push(Problem::at(
                file,
                role,
                format!(
                    "role {} belongs in the {} section",
                    role.value.as_str(),
                    if role.value.is_history() { "history" } else { "leading or trailing" }
                ),
            ));
        }
        if let Some(line) = seen.insert(role.value, role.referenced.line()) {
            problems.push(Problem::at(
                file,
                role,
                format!("role {} is already declared on line {line}", role.value.as_str()),
            ));
        }
        if role.value == EnvelopeRole::EntityKey && !raw_col.name.value.contains(ENTITY_PLACEHOLDER) {
            problems.push(Problem::at(
                file,
                &raw_col.name,
                format!("the entity_key column name must contain {ENTITY_PLACEHOLDER}"),
            ));
        }
        let name_check = raw_col.name.value.replace(ENTITY_PLACEHOLDER, "entity");
        let name_check = name_check.strip_prefix('_').unwrap_or(&name_check);
        if let Some(mut col) = check_column(file, raw_col, name_check, problems) {
            col.role = Some(role.value);
            match position {
                Position::Leading => envelope.leading.push(col),
                Position::Trailing => envelope.trailing.push(col),
                Position::History => envelope.history.push(col),
            }
        }
    }
    for role in EnvelopeRole::ALL {
        if !seen.contains_key(&role) {
            problems
                .push(Problem::in_file(file, format!("the envelope declares no column with role {}", role.as_str())));
        }
    }
    envelope
}

#[derive(Debug, Clone, Copy)]
enum Position {
    Leading,
    Trailing,
    History,
}

/// Checks one declared column; `name_for_check` is the name as it must pass the snake_case rule.
fn check_column(file: &str, raw: &RawColumn, name_for_check: &str, problems: &mut Vec<Problem>) -> Option<Column> {
    let before = problems.len();
    if !is_snake_case(name_for_check) {
        problems.push(Problem::at(
            file,
            &raw.name,
            format!("column name '{}' must be snake_case ([a-z][a-z0-9_]*)", raw.name.value),
        ));
    }
    let ty = match raw.ty.value.parse::<ColumnType>() {
        Ok(ty) => Some(ty),
        Err(msg) => {
            problems.push(Problem::at(file, &raw.ty, format!("column '{}': {msg}", raw.name.value)));
            None
        }
    };
    if raw.description.value.trim().is_empty() {
        problems.push(Problem::at(file, &raw.description, format!("column '{}' needs a description", raw.name.value)));
    }
    let mut enum_values = Vec::new();
    if let Some(values) = &raw.enum_values {
        if values.value.is_empty() {
            problems.push(Problem::at(
                file,
                values,
                format!("column '{}': empty enum; list the allowed values or remove enum", raw.name.value),
            ));
        }
        if ty.is_some_and(|t| t != ColumnType::String) {
            problems.push(Problem::at(
                file,
                values,
                format!("column '{}': enum is only allowed on string columns", raw.name.value),
            ));
        }
        let mut seen = BTreeSet::new();
        for v in &values.value {
            if v.trim().is_empty() {
                problems.push(Problem::at(
                    file,
                    values,
                    format!("column '{}': enum values must not be blank", raw.name.value),
                ));
            } else if !seen.insert(v) {
                problems.push(Problem::at(
                    file,
                    values,
                    format!("column '{}': enum value '{v}' is listed twice", raw.name.value),
                ));
            }
        }
        enum_values.clone_from(&values.value);
    }
    if problems.len() > before {
        return None;
    }
    Some(Column {
        name: raw.name.value.clone(),
        ty: ty?,
        nullable: raw.nullable,
        description: raw.description.value.trim().to_string(),
        enum_values,
        pii: raw.pii,
        role: None,
    })
}

/// Parses one table file; `envelope` is `None` for system tables, which carry none.
fn parse_table(
    file: &str,
    id: TableId,
    text: &str,
    envelope: Option<&Envelope>,
    problems: &mut Vec<Problem>,
) -> Option<Table> {
    let raw: RawTable = match parse_yaml(file, text) {
        Ok(raw) => raw,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    let before = problems.len();
    for (what, value) in [("description", &raw.description), ("grain", &raw.grain)] {
        if value.value.trim().is_empty() {
            problems.push(Problem::at(file, value, format!("{what} must not be empty")));
        }
    }
    let entity = raw.entity.as_ref().map(|e| e.value.trim().to_string()).unwrap_or_default();
    match (&raw.entity, envelope) {
        (Some(e), Some(_)) if !is_snake_case(&entity) => {
            problems.push(Problem::at(file, e, format!("entity '{entity}' must be snake_case ([a-z][a-z0-9_]*)")));
        }
        (None, Some(_)) => problems.push(Problem::in_file(file, "entity is required: it names the table's key column")),
        (Some(e), None) => problems.push(Problem::at(file, e, "system tables have no entity")),
        _ => {}
    }
    let empty = Envelope::default();
    let envelope = envelope.unwrap_or(&empty);
    if raw.columns.value.is_empty() {
        problems.push(Problem::at(file, &raw.columns, "a table needs at least one column of its own"));
    }

    let instantiate = |c: &Column| Column { name: c.name.replace(ENTITY_PLACEHOLDER, &entity), ..c.clone() };
    let mut columns: Vec<Column> = envelope.leading.iter().map(instantiate).collect();
    let mut seen: BTreeMap<String, Option<u64>> = columns.iter().map(|c| (c.name.clone(), None)).collect();
    for raw_col in &raw.columns.value {
        if raw_col.role.is_some() {
            problems.push(Problem::at(file, &raw_col.name, "role is only for envelope columns in _envelope.yaml"));
        }
        let name = raw_col.name.value.as_str();
        if name.starts_with('_') {
            problems.push(Problem::at(
                file,
                &raw_col.name,
                format!("column name '{name}': a leading underscore is reserved for lineage columns"),
            ));
            continue;
        }
        match seen.get(name) {
            Some(Some(line)) => {
                problems.push(Problem::at(
                    file,
                    &raw_col.name,
                    format!("duplicate column '{name}' (first declared on line {line})"),
                ));
                continue;
            }
            Some(None) => {
                problems.push(Problem::at(
                    file,
                    &raw_col.name,
                    format!("duplicate column '{name}': the envelope already declares it"),
                ));
                continue;
            }
            None => {}
        }
        seen.insert(name.to_string(), Some(raw_col.name.referenced.line()));
        if let Some(col) = check_column(file, raw_col, name, problems) {
            columns.push(col);
        }
    }
    for c in envelope.trailing.iter().map(instantiate) {
        if let Some(Some(line)) = seen.get(&c.name) {
            problems.push(Problem::in_file(
                file,
                format!("duplicate column '{}' on line {line}: the envelope already declares it", c.name),
            ));
        }
        columns.push(c);
    }
    if raw.write_mode == WriteMode::History {
        if envelope.history.is_empty() {
            problems.push(Problem::in_file(file, "write_mode history needs the envelope's history columns"));
        }
        for c in envelope.history.iter().map(instantiate) {
            if let Some(Some(line)) = seen.get(&c.name) {
                problems.push(Problem::in_file(
                    file,
                    format!("duplicate column '{}' on line {line}: history tables carry it already", c.name),
                ));
            }
            columns.push(c);
        }
    }

    let default_key = columns.iter().find(|c| c.role == Some(EnvelopeRole::EntityKey)).map(|c| c.name.clone());
    let unique_key = match &raw.unique_key {
        Some(key) => {
            if key.value.is_empty() {
                problems.push(Problem::at(file, key, "unique_key must list at least one column"));
            }
            for k in &key.value {
                match columns.iter().find(|c| c.name == k.value) {
                    None if seen.contains_key(&k.value) => {} // declared but invalid: already reported
                    None => problems.push(Problem::at(
                        file,
                        k,
                        format!("unique_key column '{}' does not exist in {id}", k.value),
                    )),
                    Some(c) if c.nullable => problems.push(Problem::at(
                        file,
                        k,
                        format!("unique_key column '{}' is nullable; declare it nullable: false", k.value),
                    )),
                    Some(_) => {}
                }
            }
            key.value.iter().map(|k| k.value.clone()).collect()
        }
        None => default_key.into_iter().collect(),
    };

    if problems.len() > before {
        return None;
    }
    let schema = Arc::new(Schema::new(columns.iter().map(Column::arrow_field).collect::<Vec<_>>()));
    Some(Table {
        id,
        description: raw.description.value.trim().to_string(),
        grain: raw.grain.value.trim().to_string(),
        entity,
        unique_key,
        write_mode: raw.write_mode,
        columns,
        file: file.to_string(),
        schema,
    })
}

/// Reads every `.yaml`/`.yml` file below `dir`, with paths relative to `root` using `/`.
pub(crate) fn read_yaml_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    let paths = crate::files::sorted_entries(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for path in paths {
        if path.is_dir() {
            read_yaml_tree(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push((rel, text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> &'static str {
        crate::embedded::files().find(|(p, _)| *p == ENVELOPE_FILE).map(|(_, t)| t).expect("embedded envelope")
    }

    fn load(table_yaml: &str) -> Result<Contract, Vec<Problem>> {
        Contract::from_files([(ENVELOPE_FILE, envelope()), ("canonical/test/widgets.yaml", table_yaml)])
    }

    const MINIMAL: &str =
        "description: d\ngrain: g\nentity: widget\ncolumns:\n  - {name: size, type: int64, description: s}\n";

    #[test]
    fn envelope_wraps_own_columns_and_names_the_key_after_the_entity() {
        let contract = load(MINIMAL).expect("valid");
        let table = contract.table("test", "widgets").expect("loaded");
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[..5], ["widget_key", "source_system", "source_connection", "source_id", "size"]);
        assert_eq!(names.last(), Some(&"_ingested_at"));
        assert_eq!(table.unique_key, ["widget_key"]);
        assert_eq!(table.envelope(EnvelopeRole::EntityKey).name, "widget_key");
        assert_eq!(table.own_columns().count(), 1);
        assert_eq!(table.arrow_schema().fields().len(), table.columns.len());
    }

    #[test]
    fn collects_every_problem_of_a_table() {
        let yaml = "description: d\ngrain: g\nentity: widget\nunique_key: [nope]\ncolumns:\n  - {name: a, type: varchar, description: x}\n  - {name: b, type: string, enum: [], description: x}\n  - {name: b, type: string, description: x}\n";
        let problems = load(yaml).expect_err("invalid");
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("unknown type 'varchar'"), "{text}");
        assert!(text.contains("empty enum"), "{text}");
        assert!(text.contains("duplicate column 'b' (first declared on line 7)"), "{text}");
        assert!(text.contains("unique_key column 'nope' does not exist"), "{text}");
        assert!(problems.iter().all(|p| p.line > 0), "{text}");
    }

    #[test]
    fn entity_names_are_unique_across_tables() {
        let problems = Contract::from_files([
            (ENVELOPE_FILE, envelope()),
            ("canonical/a/one.yaml", MINIMAL),
            ("canonical/b/two.yaml", MINIMAL),
        ])
        .expect_err("same entity twice");
        assert!(problems[0].message.contains("entity 'widget' is already used by a.one"), "{problems:?}");
    }
}
