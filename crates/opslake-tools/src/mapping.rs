//! The mapping engine: a shape's outputs compiled to DataFusion physical expressions over a
//! chunk's raw columns, evaluated batch by batch, cast to the contract, checked, and wrapped in
//! the envelope. Bad rows become [`RejectRecord`]s; nothing is dropped.
//!
//! Lost values: a value that was present in the export and is missing after mapping is
//! recorded. For a column mapped from one raw column (`"Amount"`) or from a function of one
//! (`parse_date("Close")`, `lower("Email")`), a null result where the raw column had a value
//! is a failure. Expressions with their own null logic (`CASE`, `coalesce`, `nullif`) are
//! trusted. A failure in a required column rejects the row; elsewhere the value is nulled and
//! recorded.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
    new_null_array,
};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono_tz::Tz;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, SchemaError};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use opslake_schema::types::TIMESTAMP_TZ;
use opslake_schema::{ColumnType, EnvelopeRole, Table};

use crate::coerce::{TextRules, coerce, map_builder};
use crate::raw::RawChunk;
use crate::spec::{Output, Shape};
use crate::udf::{self, UdfContext};
use crate::{Error, Result};

/// Where a file's rows come from and which run writes them.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// The file as users know it (path or URL).
    pub file: String,
    /// Tool name.
    pub system: String,
    /// Connection name.
    pub connection: String,
    /// The run.
    pub run_id: String,
    /// When the run started, UTC microseconds.
    pub ingested_at: i64,
    /// When the export was taken, UTC microseconds (the file's modification time): the
    /// `valid_from` of history rows whose source gives no `source_updated_at`.
    pub snapshot_at: i64,
    /// The personal-data policy, applied to rows and rejects before they leave the mapper;
    /// `None` keeps everything as it came.
    pub redactor: Option<Arc<crate::privacy::Redactor>>,
}

/// What happened to a rejected row or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectAction {
    /// The row was not written to the table.
    Rejected,
    /// The row was written with this value nulled.
    Nulled,
    /// No output of the shape takes the row (an Airbyte stream opslake does not map): kept
    /// here, not counted against `max_reject_ratio`.
    Unmapped,
    /// A summary row of the export (a Total row): the tool's own sum of other rows, kept with
    /// its cells so totals can be reconciled; never data, not counted against `max_reject_ratio`.
    Summary,
}

impl RejectAction {
    /// As stored in `_rejects.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "REJECTED",
            Self::Nulled => "NULLED",
            Self::Unmapped => "UNMAPPED",
            Self::Summary => "SUMMARY",
        }
    }
}

/// One entry of `_rejects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRecord {
    /// 1-based record number in the file.
    pub row: u64,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Target table, when the problem is specific to one.
    pub table: Option<String>,
    /// Canonical column, when the problem is one value.
    pub column: Option<String>,
    /// The raw value as it was in the export.
    pub raw_value: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// Row rejected or value nulled.
    pub action: RejectAction,
    /// The whole raw record as JSON (for rejected rows), so nothing is lost.
    pub raw_record: Option<String>,
}

/// The result of mapping one chunk through every output of a shape.
#[derive(Debug, Default)]
pub struct ChunkResult {
    /// Canonical rows per output table (in shape order).
    pub batches: Vec<(Arc<Table>, RecordBatch)>,
    /// Rejected rows and nulled values.
    pub rejects: Vec<RejectRecord>,
    /// Records read (data rows plus reader-level rejects).
    pub rows_read: u64,
    /// Records written to at least one table.
    pub rows_written: u64,
    /// Records written nowhere.
    pub rows_rejected: u64,
    /// Of those, records no output takes (not invalid, just not mapped).
    pub rows_unmapped: u64,
    /// Of those, the export's own summary rows.
    pub rows_summary: u64,
}

#[derive(Debug, Clone, Copy)]
enum NullCheck {
    /// Trust the expression's nulls.
    None,
    /// A null result where this raw column had a value is a failure.
    Input(usize),
}

struct CompiledColumn {
    name: String,
    sql: String,
    expr: Arc<dyn PhysicalExpr>,
    check: NullCheck,
}

struct CompiledOutput {
    table: Arc<Table>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    columns: Vec<CompiledColumn>,
    /// Raw columns referenced by no expression of any output of the shape: they go to
    /// custom_fields (empty when the output opts out).
    unmapped: Vec<usize>,
    /// Raw columns this output's expressions read.
    referenced: BTreeSet<String>,
    /// Raw columns the expressions name but the file lacks; added as nulls.
    missing: Vec<String>,
    augmented: SchemaRef,
    /// In an exploded shape: this output maps the element's columns (invoice lines), not only
    /// the record's.
    element: bool,
}

/// One output's result for one chunk.
struct OutputRun {
    /// The rows written.
    batch: RecordBatch,
    /// Per raw row: written by this output.
    accepted: Vec<bool>,
    /// Per raw row: taken by this output's filter.
    passed: Vec<bool>,
    rejects: Vec<RejectRecord>,
}

/// Maps the chunks of one file through one shape.
pub struct ShapeMapper {
    ctx: SessionContext,
    shape: Shape,
    file: FileContext,
    rules: TextRules,
    compiled: HashMap<Vec<String>, Arc<Vec<CompiledOutput>>>,
}

impl ShapeMapper {
    /// A mapper for `shape` writing rows of `file`.
    pub fn new(shape: &Shape, file: FileContext) -> Self {
        let ctx = SessionContext::new();
        let udf_ctx = UdfContext {
            timezone: shape.timezone.clone(),
            date_order: shape.date_order,
            numbers: shape.numbers,
            system: file.system.clone(),
            connection: file.connection.clone(),
            home_currency: shape.home_currency.clone(),
        };
        udf::register(&ctx, &udf_ctx);
        let tz: Tz = shape.timezone.parse().unwrap_or(Tz::UTC);
        Self {
            ctx,
            shape: shape.clone(),
            file,
            rules: TextRules { tz, order: shape.date_order, numbers: shape.numbers },
            compiled: HashMap::new(),
        }
    }

    /// Raw columns the shape's expressions name that the chunk's file does not have.
    pub fn missing_columns(&mut self, schema: &SchemaRef) -> Result<BTreeSet<String>> {
        let compiled = self.compiled_for(schema)?;
        Ok(compiled.iter().flat_map(|c| c.missing.iter().cloned()).collect())
    }

    fn compiled_for(&mut self, schema: &SchemaRef) -> Result<Arc<Vec<CompiledOutput>>> {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if let Some(c) = self.compiled.get(&names) {
            return Ok(Arc::clone(c));
        }
        let mut outputs = Vec::new();
        for o in &self.shape.outputs {
            outputs.push(self.compile(o, schema)?);
        }
        // A column any output maps is not lost; the rest travel in custom_fields. An exploded
        // element's position is the reader's, not the source's: it is not kept.
        let referenced: BTreeSet<&String> = outputs.iter().flat_map(|o| o.referenced.iter()).collect();
        let unmapped: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| {
                let name = schema.field(i).name();
                !referenced.contains(name) && !crate::json_reader::is_index_column(name)
            })
            .collect();
        // In an exploded shape, an element's columns travel with the rows of elements (invoice
        // lines) and the record's with the rows of records (the invoice), so each is kept once
        // and beside the row it describes. With only one kind of output, that one takes all.
        let element_prefixes: Vec<String> = self.shape.read.explode.iter().map(|p| format!("{p}.")).collect();
        let is_element = |name: &str| element_prefixes.iter().any(|p| name.starts_with(p.as_str()));
        let per_element: Vec<bool> = outputs
            .iter()
            .map(|o| o.referenced.iter().any(|c| is_element(c) && !crate::json_reader::is_index_column(c)))
            .collect();
        let keeping = |element: bool| {
            self.shape.outputs.iter().zip(&per_element).any(|(spec, e)| spec.custom_fields && *e == element)
        };
        let (elements_kept, records_kept) = (keeping(true), keeping(false));
        for ((compiled, spec), element_output) in outputs.iter_mut().zip(&self.shape.outputs).zip(per_element) {
            compiled.element = element_output;
            if spec.custom_fields {
                compiled.unmapped = unmapped
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let column_is_element = is_element(schema.field(i).name());
                        let goes_to_elements = if column_is_element { elements_kept } else { !records_kept };
                        goes_to_elements == element_output
                    })
                    .collect();
            }
        }
        let outputs = Arc::new(outputs);
        self.compiled.insert(names, Arc::clone(&outputs));
        Ok(outputs)
    }

    fn compile(&self, output: &Output, schema: &SchemaRef) -> Result<CompiledOutput> {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut missing = Vec::new();
        let plan =
            |sql: &str, what: &str, fields: &mut Vec<Field>, missing: &mut Vec<String>| -> Result<(Expr, DFSchema)> {
                loop {
                    let df_schema = DFSchema::try_from(Schema::new(fields.clone()))
                        .map_err(|e| self.mapping_error(what, sql, &e))?;
                    // DataFusion's physical planner expects simplified expressions (coalesce
                    // becomes CASE there), as its optimizer would have made them in a query.
                    let parsed = self.ctx.parse_sql_expr(sql, &df_schema).and_then(|e| {
                        let props = SimplifyContext::builder().with_schema(Arc::new(df_schema.clone())).build();
                        ExprSimplifier::new(props).simplify(e)
                    });
                    match parsed {
                        Ok(expr) => return Ok((expr, df_schema)),
                        Err(e) => match missing_field(&e) {
                            Some(name) if !missing.contains(&name) => {
                                fields.push(Field::new(&name, DataType::Utf8, true));
                                missing.push(name);
                            }
                            _ => return Err(self.mapping_error(what, sql, &e)),
                        },
                    }
                }
            };
        let mut logical = Vec::new();
        for (name, sql) in &output.columns {
            let (expr, _) = plan(sql, name, &mut fields, &mut missing)?;
            logical.push((name.clone(), sql.clone(), expr));
        }
        let filter = match &output.filter {
            Some(sql) => Some(plan(sql, "filter", &mut fields, &mut missing)?.0),
            None => None,
        };
        let augmented = Arc::new(Schema::new(fields));
        let df_schema =
            DFSchema::try_from(augmented.as_ref().clone()).map_err(|e| self.mapping_error("schema", "", &e))?;
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        let mut columns = Vec::new();
        for (name, sql, expr) in logical {
            referenced.extend(consumed_columns(&expr));
            let check = match null_check_input(&expr) {
                Some(col) => augmented.index_of(&col).map_or(NullCheck::None, NullCheck::Input),
                None => NullCheck::None,
            };
            let physical =
                self.ctx.create_physical_expr(expr, &df_schema).map_err(|e| self.mapping_error(&name, &sql, &e))?;
            columns.push(CompiledColumn { name, sql, expr: physical, check });
        }
        let filter = match filter {
            Some(expr) => {
                referenced.extend(consumed_columns(&expr));
                let sql = output.filter.clone().unwrap_or_default();
                Some(
                    self.ctx
                        .create_physical_expr(expr, &df_schema)
                        .map_err(|e| self.mapping_error("filter", &sql, &e))?,
                )
            }
            None => None,
        };
        Ok(CompiledOutput {
            table: Arc::clone(&output.table),
            filter,
            columns,
            unmapped: Vec::new(),
            element: false,
            referenced,
            missing,
            augmented,
        })
    }

    fn mapping_error(&self, column: &str, sql: &str, e: &DataFusionError) -> Error {
        Error::Mapping {
            shape: self.shape.id.clone(),
            column: column.to_string(),
            sql: sql.to_string(),
            message: e.find_root().to_string(),
        }
    }

    /// Maps one chunk through every output of the shape; what leaves it (rows and rejects)
    /// has passed the personal-data policy.
    pub fn map_chunk(&mut self, chunk: &RawChunk) -> Result<ChunkResult> {
        let redactor = self.file.redactor.clone();
        let sensitive =
            redactor.as_ref().is_some_and(|r| r.sensitive(chunk.batch.schema().fields().iter().map(|f| f.name())));
        let mut result = self.map_rows(chunk, redactor.as_deref(), sensitive)?;
        if let Some(r) = &redactor {
            let shape_records = r.strictest(self.shape.outputs.iter().map(|o| o.table.id.to_string()));
            for reject in &mut result.rejects {
                r.reject(reject, shape_records, sensitive);
            }
        }
        Ok(result)
    }

    /// `sensitive`: whether the file has columns of national ids or bank details.
    fn map_rows(
        &mut self,
        chunk: &RawChunk,
        redactor: Option<&crate::privacy::Redactor>,
        sensitive: bool,
    ) -> Result<ChunkResult> {
        let n = chunk.batch.num_rows();
        let mut result = ChunkResult { rows_read: (n + chunk.rejects.len()) as u64, ..ChunkResult::default() };
        for r in &chunk.rejects {
            result.rejects.push(RejectRecord {
                row: r.row,
                line: r.line,
                table: None,
                column: None,
                raw_value: None,
                reason: r.reason.clone(),
                action: if r.summary { RejectAction::Summary } else { RejectAction::Rejected },
                raw_record: Some(r.raw.clone()),
            });
        }
        result.rows_rejected = chunk.rejects.len() as u64;
        result.rows_summary = chunk.rejects.iter().filter(|r| r.summary).count() as u64;
        if n == 0 {
            return Ok(result);
        }
        let compiled = self.compiled_for(&chunk.batch.schema())?;
        let mut written = vec![false; n];
        let mut passed = vec![false; n];
        let mut element_taken = vec![false; n];
        let has_element_outputs = compiled.iter().any(|c| c.element);
        for out in compiled.iter() {
            let OutputRun { batch, accepted, passed: passed_filter, rejects } = self.run_output(out, chunk)?;
            for i in 0..n {
                written[i] |= accepted[i];
                passed[i] |= passed_filter[i];
                // A rejected element row is in _rejects whole: its element is not lost either.
                element_taken[i] |= out.element && passed_filter[i];
            }
            result.rejects.extend(rejects);
            let batch = match redactor {
                Some(r) => r.batch(&out.table, batch, sensitive)?,
                None => batch,
            };
            result.batches.push((Arc::clone(&out.table), batch));
        }
        if has_element_outputs {
            self.record_untaken_elements(chunk, &element_taken, &written, &mut result);
        }
        for i in 0..n {
            if written[i] {
                result.rows_written += 1;
                continue;
            }
            result.rows_rejected += 1;
            if !passed[i] {
                result.rows_unmapped += 1;
                let tables: Vec<String> = compiled.iter().map(|c| c.table.id.to_string()).collect();
                result.rejects.push(RejectRecord {
                    row: chunk.rows[i],
                    line: chunk.lines[i],
                    table: None,
                    column: None,
                    raw_value: None,
                    reason: format!("no output of {} takes this row (filters of {})", self.shape.id, tables.join(", ")),
                    action: RejectAction::Unmapped,
                    raw_record: Some(raw_record_json(&chunk.batch, i)),
                });
            }
        }
        Ok(result)
    }

    /// An exploded row carries a record and one of its elements. When a record output writes
    /// the row but no element output takes the element (a Meta insights range: no daily actions
    /// table takes its actions), the element's columns would be lost with the row: they are kept
    /// in `_rejects` as UNMAPPED, the row itself being written.
    fn record_untaken_elements(&self, chunk: &RawChunk, taken: &[bool], written: &[bool], result: &mut ChunkResult) {
        let schema = chunk.batch.schema();
        for explode in &self.shape.read.explode {
            let Ok(index_col) = schema.index_of(&crate::json_reader::index_column(explode)) else { continue };
            let index =
                chunk.batch.column(index_col).as_any().downcast_ref::<StringArray>().expect("raw columns are Utf8");
            let prefix = format!("{explode}.");
            let is_element = |c: usize| c != index_col && schema.field(c).name().starts_with(&prefix);
            for i in 0..chunk.batch.num_rows() {
                if taken[i] || !written[i] || index.is_null(i) {
                    continue;
                }
                result.rejects.push(RejectRecord {
                    row: chunk.rows[i],
                    line: chunk.lines[i],
                    table: None,
                    column: Some(explode.clone()),
                    raw_value: Some(index.value(i).to_string()),
                    reason: format!(
                        "element {} of {explode}: the record landed, but no output of {} takes this element",
                        index.value(i),
                        self.shape.id
                    ),
                    action: RejectAction::Unmapped,
                    raw_record: Some(cells_json(&chunk.batch, i, is_element)),
                });
            }
        }
    }

    fn run_output(&self, out: &CompiledOutput, chunk: &RawChunk) -> Result<OutputRun> {
        let n = chunk.batch.num_rows();
        let batch = augment(&chunk.batch, out)?;
        let eval_err = |what: &str, e: DataFusionError| self.mapping_error(what, "", &e);
        // Rows this output takes.
        let indices: Vec<u32> = match &out.filter {
            Some(f) => {
                let mask = f.evaluate(&batch).and_then(|v| v.into_array(n)).map_err(|e| eval_err("filter", e))?;
                let mask = mask.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| Error::Mapping {
                    shape: self.shape.id.clone(),
                    column: "filter".into(),
                    sql: String::new(),
                    message: "the filter is not a boolean expression".into(),
                })?;
                (0..n).filter(|&i| mask.is_valid(i) && mask.value(i)).map(|i| i as u32).collect()
            }
            None => (0..n as u32).collect(),
        };
        let mut passed = vec![false; n];
        indices.iter().for_each(|&i| passed[i as usize] = true);
        let take_idx = UInt32Array::from(indices.clone());
        let sub = if indices.len() == n {
            batch
        } else {
            let cols =
                batch.columns().iter().map(|c| take(c, &take_idx, None)).collect::<std::result::Result<Vec<_>, _>>()?;
            RecordBatch::try_new(batch.schema(), cols)?
        };
        let m = sub.num_rows();
        let table = &out.table;
        let mut rejects = Vec::new();
        let mut row_reject: Vec<Option<usize>> = vec![None; m]; // index into rejects of the first row-level reason
        let mut mapped: HashMap<&str, ArrayRef> = HashMap::new();
        for col in &out.columns {
            let target = table.column(&col.name).expect("validated against the contract");
            let value = col
                .expr
                .evaluate(&sub)
                .and_then(|v| v.into_array(m))
                .map_err(|e| self.mapping_error(&col.name, &col.sql, &e))?;
            let (mut array, failures) = coerce(&value, target.ty, self.rules)?;
            let mut failed: Vec<Option<(String, String)>> = vec![None; m];
            for f in failures {
                failed[f.row] = Some((f.raw, f.reason));
            }
            if let NullCheck::Input(raw_idx) = col.check {
                let raw = sub.column(raw_idx).as_any().downcast_ref::<StringArray>().expect("raw columns are Utf8");
                for (i, f) in failed.iter_mut().enumerate() {
                    if f.is_none() && array.is_null(i) && raw.is_valid(i) {
                        *f = Some((
                            raw.value(i).to_string(),
                            format!("`{}` gives no value for '{}'", col.sql, raw.value(i)),
                        ));
                    }
                }
            }
            if !target.enum_values.is_empty() && target.ty == ColumnType::String {
                let text = array.as_any().downcast_ref::<StringArray>().expect("string column");
                let mut bad = Vec::new();
                for (i, f) in failed.iter_mut().enumerate() {
                    if text.is_valid(i) && !target.enum_values.iter().any(|v| v == text.value(i)) {
                        *f = Some((
                            text.value(i).to_string(),
                            format!("'{}' is not one of {}", text.value(i), target.enum_values.join(", ")),
                        ));
                        bad.push(i);
                    }
                }
                if !bad.is_empty() {
                    let keep = BooleanArray::from((0..m).map(|i| !bad.contains(&i)).collect::<Vec<_>>());
                    array = arrow::compute::nullif(&array, &arrow::compute::not(&keep)?)?;
                }
            }
            for (i, f) in failed.into_iter().enumerate() {
                let Some((raw, reason)) = f else { continue };
                let raw_row = indices[i] as usize;
                let action = if target.nullable { RejectAction::Nulled } else { RejectAction::Rejected };
                rejects.push(RejectRecord {
                    row: chunk.rows[raw_row],
                    line: chunk.lines[raw_row],
                    table: Some(table.id.to_string()),
                    column: Some(col.name.clone()),
                    raw_value: Some(raw),
                    reason: format!("{}: {reason}", col.name),
                    action,
                    raw_record: (action == RejectAction::Rejected).then(|| raw_record_json(&chunk.batch, raw_row)),
                });
                if action == RejectAction::Rejected && row_reject[i].is_none() {
                    row_reject[i] = Some(rejects.len() - 1);
                }
            }
            mapped.insert(col.name.as_str(), array);
        }
        // Required columns that came out empty.
        // (is_deleted is never null: an unmapped or empty flag means "not deleted".)
        let required = table.columns.iter().filter(|c| !c.nullable && c.role != Some(EnvelopeRole::IsDeleted));
        for c in required {
            let Some(array) = mapped.get(c.name.as_str()) else { continue };
            for i in 0..m {
                if array.is_null(i) && row_reject[i].is_none() {
                    let raw_row = indices[i] as usize;
                    let sql = out.columns.iter().find(|x| x.name == c.name).map(|x| x.sql.as_str()).unwrap_or_default();
                    rejects.push(RejectRecord {
                        row: chunk.rows[raw_row],
                        line: chunk.lines[raw_row],
                        table: Some(table.id.to_string()),
                        column: Some(c.name.clone()),
                        raw_value: None,
                        reason: format!("{}: required, but `{sql}` gives no value", c.name),
                        action: RejectAction::Rejected,
                        raw_record: Some(raw_record_json(&chunk.batch, raw_row)),
                    });
                    row_reject[i] = Some(rejects.len() - 1);
                }
            }
        }
        let keep: Vec<bool> = row_reject.iter().map(Option::is_none).collect();
        let mut accepted = vec![false; n];
        for (i, k) in keep.iter().enumerate() {
            accepted[indices[i] as usize] = *k;
        }
        let full = self.assemble(out, &sub, chunk, &indices, &mapped)?;
        let kept = filter_record_batch(&full, &BooleanArray::from(keep))?;
        let batch = RecordBatch::try_new(table.arrow_schema(), kept.columns().to_vec()).map_err(|e| {
            Error::Internal { message: format!("{}: mapped rows do not fit the contract after checks: {e}", table.id) }
        })?;
        Ok(OutputRun { batch, accepted, passed, rejects })
    }

    fn assemble(
        &self,
        out: &CompiledOutput,
        sub: &RecordBatch,
        chunk: &RawChunk,
        indices: &[u32],
        mapped: &HashMap<&str, ArrayRef>,
    ) -> Result<RecordBatch> {
        let m = sub.num_rows();
        let table = &out.table;
        let constant = |s: &str| -> ArrayRef { Arc::new(StringArray::from(vec![s; m])) };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
        for c in &table.columns {
            let array: ArrayRef = match c.role {
                Some(EnvelopeRole::EntityKey) => {
                    let ids = mapped
                        .get(table.envelope(EnvelopeRole::SourceId).name.as_str())
                        .expect("source_id is always mapped");
                    udf::entity_keys(&self.file.system, &self.file.connection, ids)
                        .map_err(|e| self.mapping_error(&c.name, "", &e))?
                }
                Some(EnvelopeRole::SourceSystem) => constant(&self.file.system),
                Some(EnvelopeRole::SourceConnection) => constant(&self.file.connection),
                Some(EnvelopeRole::SourceFile) => constant(&self.file.file),
                Some(EnvelopeRole::RunId) => constant(&self.file.run_id),
                Some(EnvelopeRole::SourceRow) => Arc::new(Int64Array::from(
                    indices.iter().map(|&i| chunk.rows[i as usize] as i64).collect::<Vec<_>>(),
                )),
                Some(EnvelopeRole::IngestedAt) => Arc::new(
                    TimestampMicrosecondArray::from(vec![self.file.ingested_at; m]).with_timezone(TIMESTAMP_TZ),
                ),
                Some(EnvelopeRole::CustomFields) => custom_fields(sub, &out.unmapped),
                Some(EnvelopeRole::ValidFrom) => {
                    let updated = mapped
                        .get(table.envelope(EnvelopeRole::SourceUpdatedAt).name.as_str())
                        .and_then(|a| a.as_any().downcast_ref::<TimestampMicrosecondArray>());
                    let values = (0..m).map(|i| match updated {
                        Some(u) if u.is_valid(i) => u.value(i),
                        _ => self.file.snapshot_at,
                    });
                    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone(TIMESTAMP_TZ))
                }
                Some(EnvelopeRole::IsCurrent) => Arc::new(BooleanArray::from(vec![true; m])),
                Some(EnvelopeRole::IsDeleted) => match mapped.get(c.name.as_str()) {
                    Some(a) => {
                        let b = a.as_any().downcast_ref::<BooleanArray>().expect("bool column");
                        Arc::new(BooleanArray::from((0..m).map(|i| b.is_valid(i) && b.value(i)).collect::<Vec<_>>()))
                    }
                    None => Arc::new(BooleanArray::from(vec![false; m])),
                },
                _ => match mapped.get(c.name.as_str()) {
                    Some(a) => Arc::clone(a),
                    None => new_null_array(&c.ty.arrow(), m),
                },
            };
            columns.push(array);
        }
        // Required values that are null here belong to rows about to be filtered out; relax
        // nullability on this intermediate batch and restore the contract schema after.
        let loose = Arc::new(Schema::new(
            table.arrow_schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
        ));
        Ok(RecordBatch::try_new(loose, columns)?)
    }
}

/// The column an expression over one raw column reads, for the lost-value check; `None` when
/// the expression reads several columns or decides about nulls itself (`CASE`, `coalesce`,
/// `nullif`, `IS NULL`), in which case its nulls are trusted.
/// The raw columns an expression maps. A column read only through `json_path` (one value out
/// of a JSON array or object) is not: the rest of its JSON would be lost, so it still goes to
/// custom_fields whole.
fn consumed_columns(expr: &Expr) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let _ = expr.apply(|e| {
        Ok(match e {
            Expr::ScalarFunction(f) if f.name() == "json_path" => {
                for arg in f.args.iter().skip(1) {
                    out.extend(arg.column_refs().iter().map(|c| c.name.clone()));
                }
                TreeNodeRecursion::Jump
            }
            Expr::Column(c) => {
                out.insert(c.name.clone());
                TreeNodeRecursion::Continue
            }
            _ => TreeNodeRecursion::Continue,
        })
    });
    out
}

fn null_check_input(expr: &Expr) -> Option<String> {
    let mut has_null_logic = false;
    let _ = expr.apply(|e| {
        has_null_logic |= match e {
            Expr::Case(_) | Expr::IsNull(_) | Expr::IsNotNull(_) => true,
            // url_param's and json_path's null means "not there", not a lost value.
            Expr::ScalarFunction(f) => {
                matches!(f.name(), "coalesce" | "nullif" | "nvl" | "ifnull" | "nvl2" | "url_param" | "json_path")
            }
            _ => false,
        };
        Ok(if has_null_logic { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    if has_null_logic {
        return None;
    }
    let cols: BTreeSet<String> = expr.column_refs().iter().map(|c| c.name.clone()).collect();
    if cols.len() == 1 {
        return cols.into_iter().next();
    }
    // A function of a value and its qualifiers (`stripe_amount("amount", "currency")`) loses
    // the value when it returns null for it.
    let mut e = expr;
    loop {
        e = match e {
            Expr::Negative(inner) => inner,
            Expr::Cast(c) => &c.expr,
            Expr::ScalarFunction(f) => {
                return match f.args.first() {
                    Some(Expr::Column(c)) => Some(c.name.clone()),
                    _ => None,
                };
            }
            _ => return None,
        };
    }
}

fn missing_field(e: &DataFusionError) -> Option<String> {
    match e.find_root() {
        DataFusionError::SchemaError(err, _) => match err.as_ref() {
            SchemaError::FieldNotFound { field, .. } => Some(field.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn augment(batch: &RecordBatch, out: &CompiledOutput) -> Result<RecordBatch> {
    if out.missing.is_empty() {
        return Ok(batch.clone());
    }
    let mut cols = batch.columns().to_vec();
    cols.extend(out.missing.iter().map(|_| new_null_array(&DataType::Utf8, batch.num_rows())));
    Ok(RecordBatch::try_new(Arc::clone(&out.augmented), cols)?)
}

fn custom_fields(sub: &RecordBatch, unmapped: &[usize]) -> ArrayRef {
    let m = sub.num_rows();
    let schema = sub.schema();
    let cols: Vec<(&str, &StringArray)> = unmapped
        .iter()
        .map(|&i| {
            (
                schema.field(i).name().as_str(),
                sub.column(i).as_any().downcast_ref::<StringArray>().expect("raw columns are Utf8"),
            )
        })
        .collect();
    let mut b = map_builder(m);
    for row in 0..m {
        for (name, col) in &cols {
            if col.is_valid(row) {
                b.keys().append_value(name);
                b.values().append_value(col.value(row));
            }
        }
        b.append(true).expect("keys and values are appended in pairs");
    }
    Arc::new(b.finish())
}

/// A raw row as a JSON object of its non-null cells.
pub fn raw_record_json(batch: &RecordBatch, row: usize) -> String {
    cells_json(batch, row, |_| true)
}

/// The non-null cells of `row` in the columns `keep` accepts, as a JSON object.
fn cells_json(batch: &RecordBatch, row: usize, keep: impl Fn(usize) -> bool) -> String {
    let schema = batch.schema();
    let mut obj = serde_json::Map::new();
    for (i, f) in schema.fields().iter().enumerate().filter(|(i, _)| keep(*i)) {
        if let Some(col) = batch.column(i).as_any().downcast_ref::<StringArray>()
            && col.is_valid(row)
        {
            obj.insert(f.name().clone(), serde_json::Value::String(col.value(row).to_string()));
        }
    }
    serde_json::Value::Object(obj).to_string()
}
