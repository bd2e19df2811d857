//! Lakes made by an older opslake: columns the contract gained since.
//!
//! A canonical or system table keeps the schema it was first written with. When a later opslake
//! adds a column to the contract (`finance.payments.customer_email`), a merge of rows in the new
//! shape would fail against the old table, and a model that selects the column would find no
//! such field. Writes therefore add the missing columns first, as nullable, in a commit of their
//! own (Delta's ADD COLUMNS: the log changes, no file is rewritten); reads fill them with nulls,
//! so a table nobody has written since, or an old version read with `--as-of`, still has the
//! contract's columns. Old rows read the new columns as null either way.

use arrow::datatypes::FieldRef;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::{DataType, StructField};
use opslake_schema::Table;
use std::sync::Arc;

use crate::{Error, Result};

/// The contract's columns of `table` that the Delta table lacks, in the contract's order.
pub(crate) fn missing_columns(delta: &DeltaTable, table: &Table) -> Result<Vec<FieldRef>> {
    let snapshot = delta.snapshot().map_err(|source| Error::Delta { table: table.id.to_string(), source })?;
    let schema = snapshot.schema();
    Ok(table.arrow_schema().fields().iter().filter(|f| schema.field(f.name()).is_none()).cloned().collect())
}

/// Adds the contract's columns that `delta` lacks, nullable (its rows have no value for them).
/// A table not yet written, or one that has them all, is returned as it is.
pub(crate) async fn add_missing_columns(delta: DeltaTable, table: &Table) -> Result<DeltaTable> {
    if delta.version().is_none() {
        return Ok(delta);
    }
    let missing = missing_columns(&delta, table)?;
    if missing.is_empty() {
        return Ok(delta);
    }
    let name = table.id.to_string();
    let fields = missing
        .iter()
        .map(|f| {
            let data_type: DataType = f.data_type().try_into_kernel().map_err(|e| Error::Internal {
                message: format!("{name}.{}: no Delta type for {}: {e}", f.name(), f.data_type()),
            })?;
            Ok(StructField::new(f.name(), data_type, true))
        })
        .collect::<Result<Vec<_>>>()?;
    delta.add_columns().with_fields(fields).await.map_err(|source| Error::Delta { table: name, source })
}

/// `provider` (the Delta table as read) with the contract's missing columns added as typed
/// nulls, in the contract's order after the table's own; `provider` itself when none is missing.
pub(crate) fn with_missing_columns(
    ctx: &SessionContext,
    provider: Arc<dyn TableProvider>,
    missing: &[FieldRef],
    sql_name: &str,
) -> Result<Arc<dyn TableProvider>> {
    if missing.is_empty() {
        return Ok(provider);
    }
    let df_err = |source| Error::DataFusion { context: format!("reading {sql_name}"), source };
    let mut columns: Vec<Expr> =
        provider.schema().fields().iter().map(|f| Expr::Column(Column::new_unqualified(f.name()))).collect();
    for f in missing {
        let null = ScalarValue::try_from(f.data_type()).map_err(df_err)?;
        columns.push(lit(null).alias(f.name()));
    }
    let df = ctx.read_table(provider).map_err(df_err)?.select(columns).map_err(df_err)?;
    Ok(df.into_view())
}
