//! The lake as serve's sessions see it: a catalog that cannot be changed and tables that cannot
//! be written. The statement check in `guard` is the first line; this is the second, so a
//! statement the check misjudged still finds nothing to write to and nowhere to register.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, ScanArgs, ScanResult, SchemaProvider, Session, TableProvider,
};
use datafusion::common::{Constraints, Result, Statistics, plan_err};
use datafusion::datasource::TableType;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

const REFUSED: &str = "opslake serve is read-only";

/// `list` with every catalog, schema and table wrapped read-only.
pub(super) fn read_only(list: Arc<dyn CatalogProviderList>) -> Arc<dyn CatalogProviderList> {
    Arc::new(Catalogs(list))
}

#[derive(Debug)]
struct Catalogs(Arc<dyn CatalogProviderList>);

impl CatalogProviderList for Catalogs {
    fn register_catalog(&self, name: String, _catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        // The trait cannot fail; refusing means leaving the list as it is.
        tracing::warn!("{REFUSED}: catalog '{name}' not registered");
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.0.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.0.catalog(name).map(|c| Arc::new(Catalog(c)) as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
struct Catalog(Arc<dyn CatalogProvider>);

impl CatalogProvider for Catalog {
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0.schema(name).map(|s| Arc::new(Schema(s)) as Arc<dyn SchemaProvider>)
    }

    fn register_schema(&self, name: &str, _schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        plan_err!("{REFUSED}: cannot create schema '{name}'")
    }

    fn deregister_schema(&self, name: &str, _cascade: bool) -> Result<Option<Arc<dyn SchemaProvider>>> {
        plan_err!("{REFUSED}: cannot drop schema '{name}'")
    }
}

#[derive(Debug)]
struct Schema(Arc<dyn SchemaProvider>);

#[async_trait]
impl SchemaProvider for Schema {
    fn owner_name(&self) -> Option<&str> {
        self.0.owner_name()
    }

    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.0.table(name).await?.map(|t| Arc::new(Table(t)) as Arc<dyn TableProvider>))
    }

    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        self.0.table_type(name).await
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        plan_err!("{REFUSED}: cannot create table '{name}'")
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        plan_err!("{REFUSED}: cannot drop table '{name}'")
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.table_exist(name)
    }
}

/// A table that reads as its provider does and refuses every write. The write methods not
/// overridden here (delete, update, truncate, merge) refuse by the trait's default.
#[derive(Debug)]
struct Table(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for Table {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.0.constraints()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.0.get_table_definition()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.0.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }

    async fn scan_with_args<'a>(&self, state: &dyn Session, args: ScanArgs<'a>) -> Result<ScanResult> {
        self.0.scan_with_args(state, args).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.0.statistics()
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan_err!("{REFUSED}: tables cannot be written")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::prelude::SessionContext;

    /// Below the statement check: a session over the wrapped catalog plans reads as before,
    /// and a write that reaches the table, or a registration, is refused.
    #[tokio::test]
    async fn reads_pass_and_writes_and_registrations_are_refused() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1), (2)").await.expect("plans").collect().await.expect("creates");
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
            .with_catalog_list(read_only(ctx.state().catalog_list().clone()))
            .build();
        let ro = SessionContext::new_with_state(state);
        assert_eq!(count(&ro).await, 2);
        let insert = ro.sql("INSERT INTO t VALUES (3)").await;
        let err = match insert {
            Ok(df) => df.collect().await.expect_err("insert refused").to_string(),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(REFUSED), "{err}");
        for ddl in ["CREATE TABLE u AS VALUES (1)", "DROP TABLE t", "CREATE SCHEMA s"] {
            let err = match ro.sql(ddl).await {
                Ok(df) => df.collect().await.expect_err(ddl).to_string(),
                Err(e) => e.to_string(),
            };
            // DataFusion reports a refused deregistration as "doesn't exist"; the count below
            // shows the table is still there.
            assert!(
                err.contains(REFUSED) || (ddl.starts_with("DROP") && err.contains("doesn't exist")),
                "{ddl}: {err}"
            );
        }
        let schema = ro.table_provider("t").await.expect("t").schema();
        assert!(ro.register_table("v", Arc::new(datafusion::datasource::empty::EmptyTable::new(schema))).is_err());
        assert_eq!(count(&ro).await, 2, "nothing was written");
    }

    async fn count(ctx: &SessionContext) -> i64 {
        let rows = ctx.sql("SELECT count(*) FROM t").await.expect("plans").collect().await.expect("reads");
        let counts = rows[0].column(0).as_any().downcast_ref::<Int64Array>().expect("count");
        counts.value(0)
    }
}
