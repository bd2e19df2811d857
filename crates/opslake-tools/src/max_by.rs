//! `max_by(value, ordering)` and `min_by(value, ordering)`: the value of the row whose ordering
//! is the greatest (least) in the group, as DuckDB, Spark, Trino and BigQuery have them. "The
//! latest country per email" is the question marts ask most; DataFusion 55 answers it only
//! with `first_value(value ORDER BY ...)`, which keeps each group's ordering as `ScalarValue`s:
//! in the benchmark's model at 1M rows, 0.36 s of CPU, about a quarter of the build's.
//!
//! Each group keeps one byte string: the arrow row encoding of (ordering, value), encoded so
//! that the smaller string is the better row. A batch is encoded once, vectorized, and every
//! row is then one `memcmp` against its group's best.
//!
//! Rows whose ordering is null are left out (a group with none is null), as in DuckDB. Ties
//! go to the smallest value, nulls last, so the result never depends on the order rows came in.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::compute::{SortOptions, nullif, prep_null_mask_filter};
use arrow::datatypes::{DataType, Field, FieldRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// `max_by(value, ordering)`.
pub fn max_by() -> AggregateUDF {
    AggregateUDF::from(By { greatest: true, signature: Signature::any(2, Volatility::Immutable) })
}

/// `min_by(value, ordering)`.
pub fn min_by() -> AggregateUDF {
    AggregateUDF::from(By { greatest: false, signature: Signature::any(2, Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct By {
    /// `max_by`; `min_by` when false.
    greatest: bool,
    signature: Signature,
}

impl By {
    fn best(&self, value: &DataType, ordering: &DataType) -> Result<Best> {
        let fields = vec![
            // Descending for max_by, so that for both functions the best row is the smallest.
            SortField::new_with_options(
                ordering.clone(),
                SortOptions { descending: self.greatest, nulls_first: false },
            ),
            SortField::new_with_options(value.clone(), SortOptions { descending: false, nulls_first: false }),
        ];
        if !RowConverter::supports_fields(&fields) {
            return exec_err!("{}: cannot compare values of type {ordering}", self.name());
        }
        Ok(Best { converter: RowConverter::new(fields)?, groups: Vec::new(), bytes: 0 })
    }
}

impl AggregateUDFImpl for By {
    fn name(&self) -> &str {
        if self.greatest { "max_by" } else { "min_by" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value, _] => Ok(value.clone()),
            _ => exec_err!("{} takes two arguments: value and ordering", self.name()),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        // The state is the best row's own arguments, in argument order: merging states is
        // then the same as taking rows.
        Ok(args
            .input_fields
            .iter()
            .zip(["value", "ordering"])
            .map(|(f, part)| Arc::new(Field::new(format!("{}[{part}]", args.name), f.data_type().clone(), true)))
            .collect())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let (value, ordering) = argument_types(&args)?;
        Ok(Box::new(OneGroup(self.best(&value, &ordering)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        let (value, ordering) = argument_types(&args)?;
        Ok(Box::new(self.best(&value, &ordering)?))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }
}

fn argument_types(args: &AccumulatorArgs) -> Result<(DataType, DataType)> {
    match args.expr_fields {
        [value, ordering] => Ok((value.data_type().clone(), ordering.data_type().clone())),
        _ => exec_err!("{} takes two arguments: value and ordering", args.name),
    }
}

/// Each group's best row so far, row-encoded; empty when the group has none (an encoded row
/// is never empty).
struct Best {
    converter: RowConverter,
    groups: Vec<Vec<u8>>,
    /// Bytes held by `groups`' rows, kept as they change: `size` is called once a batch.
    bytes: usize,
}

impl Best {
    /// Takes the rows of `[value, ordering]` (arguments or states) into their groups.
    fn take(&mut self, columns: &[ArrayRef], group_indices: &[usize], filter: Option<&BooleanArray>) -> Result<()> {
        let [value, ordering] = columns else {
            return exec_err!("max_by/min_by: expected two columns, got {}", columns.len());
        };
        let rows = self.converter.convert_columns(&[Arc::clone(ordering), Arc::clone(value)])?;
        let nulls = ordering.logical_nulls();
        for (i, &group) in group_indices.iter().enumerate() {
            let unordered = nulls.as_ref().is_some_and(|n| n.is_null(i));
            let filtered_out = filter.is_some_and(|f| !f.is_valid(i) || !f.value(i));
            if unordered || filtered_out {
                continue;
            }
            let row = rows.row(i);
            let best = &mut self.groups[group];
            if best.is_empty() || row.data() < best.as_slice() {
                self.bytes -= best.capacity();
                best.clear();
                best.extend_from_slice(row.data());
                self.bytes += best.capacity();
            }
        }
        Ok(())
    }

    fn grow(&mut self, total_num_groups: usize) {
        if self.groups.len() < total_num_groups {
            self.groups.resize_with(total_num_groups, Vec::new);
        }
    }

    /// `[value, ordering]` of `groups`, null for a group with no row.
    fn columns(&self, groups: &[Vec<u8>]) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let present = groups.iter().filter(|g| !g.is_empty()).map(|g| parser.parse(g));
        let decoded = self.converter.convert_rows(present)?;
        let mut next = 0u32;
        let indices: UInt32Array = groups
            .iter()
            .map(|g| {
                (!g.is_empty()).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let [ordering, value] = decoded.as_slice() else {
            return exec_err!("max_by/min_by: decoded {} columns, expected two", decoded.len());
        };
        Ok(vec![arrow::compute::take(value, &indices, None)?, arrow::compute::take(ordering, &indices, None)?])
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let emitted = emit_to.take_needed(&mut self.groups);
        self.bytes -= emitted.iter().map(Vec::capacity).sum::<usize>();
        self.columns(&emitted)
    }
}

impl GroupsAccumulator for Best {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        self.take(values, group_indices, opt_filter)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut columns = self.emit(emit_to)?;
        Ok(columns.swap_remove(0))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.emit(emit_to)
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.grow(total_num_groups);
        self.take(values, group_indices, None)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let [value, ordering] = values else {
            return exec_err!("max_by/min_by: expected two columns, got {}", values.len());
        };
        // A row filtered out becomes a state with no ordering, which merging leaves out.
        let ordering = match opt_filter {
            Some(filter) => nullif(ordering, &arrow::compute::not(&prep_null_mask_filter(filter))?)?,
            None => Arc::clone(ordering),
        };
        Ok(vec![Arc::clone(value), ordering])
    }

    fn size(&self) -> usize {
        self.bytes + self.groups.capacity() * size_of::<Vec<u8>>() + self.converter.size()
    }
}

/// Without GROUP BY: one group.
struct OneGroup(Best);

impl std::fmt::Debug for OneGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneGroup").field("bytes", &self.0.bytes).finish()
    }
}

impl OneGroup {
    fn take(&mut self, columns: &[ArrayRef]) -> Result<()> {
        self.0.grow(1);
        let rows = columns.first().map_or(0, |c| c.len());
        self.0.take(columns, &vec![0; rows], None)
    }

    fn scalars(&self) -> Result<Vec<ScalarValue>> {
        let mut groups = self.0.groups.clone();
        groups.resize_with(1, Vec::new);
        self.0.columns(&groups)?.iter().map(|c| ScalarValue::try_from_array(c, 0)).collect()
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.take(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.scalars()?.swap_remove(0))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + GroupsAccumulator::size(&self.0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.scalars()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.take(states)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    fn session(config: SessionConfig) -> SessionContext {
        let ctx = SessionContext::new_with_config(config);
        ctx.register_udaf(max_by());
        ctx.register_udaf(min_by());
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.expect("plans").collect().await.expect("runs");
        pretty_format_batches(&batches).expect("formats").to_string()
    }

    const PEOPLE: &str = "(values ('a@x', 'FR', 3), ('a@x', 'DE', 5), ('a@x', 'US', null), \
        ('b@x', 'NL', 2), ('b@x', 'BE', 2), ('b@x', null, 2), ('c@x', 'IT', null)) as p(email, country, at)";

    #[tokio::test]
    async fn the_value_at_the_greatest_and_least_ordering_ties_to_the_smallest_value() {
        let ctx = session(SessionConfig::new());
        let sql = format!(
            "select email, max_by(country, at) as latest, min_by(country, at) as earliest \
             from {PEOPLE} group by email order by email"
        );
        // a: DE at 5 is the latest, FR at 3 the earliest, US has no time and is left out;
        // b: three rows at 2, BE is the smallest value; c: no row has a time.
        let expected = "\
+-------+--------+----------+
| email | latest | earliest |
+-------+--------+----------+
| a@x   | DE     | FR       |
| b@x   | BE     | BE       |
| c@x   |        |          |
+-------+--------+----------+";
        assert_eq!(rows(&ctx, &sql).await, expected);
        let ungrouped = format!("select max_by(country, at) as latest, min_by(email, at) as first from {PEOPLE}");
        assert!(rows(&ctx, &ungrouped).await.contains("| DE     | b@x   |"), "{}", rows(&ctx, &ungrouped).await);
        let filtered = format!("select max_by(country, at) filter (where country <> 'DE') as latest from {PEOPLE}");
        assert!(rows(&ctx, &filtered).await.contains("| FR     |"), "{}", rows(&ctx, &filtered).await);
    }

    /// Many batches over two partitions, so that states are merged; and groups as many as rows,
    /// so that the partial aggregation gives up and passes rows on as states.
    #[tokio::test]
    async fn it_agrees_with_first_value_ordered_over_merged_and_skipped_partial_states() {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(1000)
            .set_usize("datafusion.execution.skip_partial_aggregation_probe_rows_threshold", 2000);
        let ctx = session(config);
        let n = 60_000i64;
        let group: Int64Array = (0..n).map(|i| i % 7919).collect();
        let many: Int64Array = (0..n).map(|i| (i * 7) % 50_000).collect();
        let ordering: Int64Array = (0..n).map(|i| (i % 3 != 0).then_some((i * 31) % 97)).collect();
        let value: StringArray = (0..n).map(|i| (i % 11 != 0).then(|| format!("v{}", (i * 13) % 101))).collect();
        let batch = arrow::record_batch::RecordBatch::try_from_iter([
            ("g", Arc::new(group) as ArrayRef),
            ("many", Arc::new(many) as ArrayRef),
            ("o", Arc::new(ordering) as ArrayRef),
            ("v", Arc::new(value) as ArrayRef),
        ])
        .expect("batch");
        let chunks: Vec<_> = (0..60).map(|k| batch.slice(k * 1000, 1000)).collect();
        let table = datafusion::datasource::MemTable::try_new(
            batch.schema(),
            vec![chunks[..30].to_vec(), chunks[30..].to_vec()],
        )
        .expect("table");
        ctx.register_table("t", Arc::new(table)).expect("registers");
        for key in ["g", "many"] {
            let ours =
                format!("select {key}, max_by(v, o) as a, min_by(v, o) as b from t group by {key} order by {key}");
            let theirs = format!(
                "select {key}, first_value(v order by o desc, v asc nulls last) filter (where o is not null) as a, \
                 first_value(v order by o asc, v asc nulls last) filter (where o is not null) as b \
                 from t group by {key} order by {key}"
            );
            assert_eq!(rows(&ctx, &ours).await, rows(&ctx, &theirs).await, "grouped by {key}");
        }
    }
}
