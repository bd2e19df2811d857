//! Reading the lake with DataFusion: every existing table registered under its SQL name
//! (`crm.people`, `_rejects`).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use opslake_schema::{Contract, Table};

use crate::{Error, Lake, Result};

/// A DataFusion session that reads the lake with the contract's types (Utf8, not view types),
/// can plan Delta writes of its queries (models are written from it), and has opslake's
/// aggregates `max_by` and `min_by`.
pub fn session() -> SessionContext {
    let ctx = deltalake::delta_datafusion::DeltaSessionContext::new().into_inner();
    ctx.state_ref().write().config_mut().options_mut().execution.parquet.schema_force_view_types = false;
    ctx.register_udaf(crate::max_by::max_by());
    ctx.register_udaf(crate::max_by::min_by());
    ctx
}

/// Opens a table's Delta log at its latest version, or at `version`; `None` when the table was
/// never written.
pub async fn open(lake: &Lake, table: &Table, version: Option<u64>) -> Result<Option<DeltaTable>> {
    open_id(lake, &table.id, version).await
}

async fn open_id(lake: &Lake, id: &opslake_schema::TableId, version: Option<u64>) -> Result<Option<DeltaTable>> {
    let url = lake.table_url(id);
    if url.scheme() == "file" && url.to_file_path().is_ok_and(|p| !p.join("_delta_log").is_dir()) {
        return Ok(None);
    }
    let mut delta = lake.delta_table(id).await?;
    if delta.version().is_none() {
        return Ok(None);
    }
    if let Some(v) = version {
        delta.load_version(v).await.map_err(|source| Error::Delta { table: id.to_string(), source })?;
    }
    Ok(Some(delta))
}

/// `delta` as DataFusion reads it in `ctx`. With `contract`, the table's contract, the columns
/// a lake made by an older opslake lacks are read as nulls (`upgrade`).
pub(crate) async fn provider(
    ctx: &SessionContext,
    delta: DeltaTable,
    contract: Option<&Table>,
    sql_name: &str,
) -> Result<Arc<dyn TableProvider>> {
    let missing = match contract {
        Some(table) => crate::upgrade::missing_columns(&delta, table)?,
        None => Vec::new(),
    };
    delta.update_datafusion_session(&ctx.state()).map_err(|source| Error::Delta { table: sql_name.into(), source })?;
    let provider = delta
        .table_provider()
        .with_session(Arc::new(ctx.state()))
        .await
        .map_err(|source| Error::DataFusion { context: format!("reading {sql_name}"), source })?;
    crate::upgrade::with_missing_columns(ctx, provider, &missing, sql_name)
}

/// Registers an opened Delta table with `ctx` as `sql_name`, replacing what had that name
/// ([`provider`] says what `contract` adds).
async fn register_delta(
    ctx: &SessionContext,
    delta: DeltaTable,
    contract: Option<&Table>,
    sql_name: &str,
) -> Result<()> {
    let provider = provider(ctx, delta, contract, sql_name).await?;
    ctx.deregister_table(sql_name)
        .map_err(|source| Error::DataFusion { context: format!("replacing {sql_name}"), source })?;
    ctx.register_table(sql_name, provider)
        .map_err(|source| Error::DataFusion { context: format!("registering {sql_name}"), source })?;
    Ok(())
}

/// Registers `table` with `ctx` under its SQL name, at `version` or the latest. Returns `false`
/// when the table does not exist yet.
pub async fn register(ctx: &SessionContext, lake: &Lake, table: &Table, version: Option<u64>) -> Result<bool> {
    let Some(delta) = open(lake, table, version).await? else { return Ok(false) };
    let name = table.id.to_string();
    if !table.id.namespace.is_empty() {
        let catalog =
            ctx.catalog("datafusion").ok_or_else(|| Error::Internal { message: "no default catalog".into() })?;
        if catalog.schema(&table.id.namespace).is_none() {
            catalog.register_schema(&table.id.namespace, Arc::new(MemorySchemaProvider::new())).map_err(|source| {
                Error::DataFusion { context: format!("registering schema {}", table.id.namespace), source }
            })?;
        }
    }
    register_delta(ctx, delta, Some(table), &name).await?;
    Ok(true)
}

/// Registers every canonical and system table that exists in `lake` with `ctx`, each under its
/// SQL name. With `as_of` (from [`crate::runs::versions_as_of`]), canonical tables and
/// `_rejects` are read at those versions and tables not yet written then are left out; the run
/// records are always read at their latest. Returns the names registered.
pub async fn register_lake(
    ctx: &SessionContext,
    lake: &Lake,
    contract: &Contract,
    as_of: Option<&BTreeMap<String, u64>>,
) -> Result<Vec<String>> {
    let catalog = ctx.catalog("datafusion").ok_or_else(|| Error::Internal { message: "no default catalog".into() })?;
    for ns in contract.namespaces() {
        if catalog.schema(ns).is_none() {
            catalog
                .register_schema(ns, Arc::new(MemorySchemaProvider::new()))
                .map_err(|source| Error::DataFusion { context: format!("registering schema {ns}"), source })?;
        }
    }
    let mut names = Vec::new();
    for table in contract.tables().chain(contract.system_tables()) {
        let name = table.id.to_string();
        let version = match as_of {
            Some(versions) if !crate::runs::is_run_record(&name) => match versions.get(&name) {
                Some(v) => Some(*v),
                None => continue,
            },
            _ => None,
        };
        if register(ctx, lake, table, version).await? {
            names.push(name);
        }
    }
    Ok(names)
}

/// Registers `fx_convert(amount, from, to, date)` with `ctx`, over the rates of `ref.fx_rates`
/// when `ctx` has that table (none otherwise: every conversion then reports its missing rate).
/// Conversions that find no rate are collected in the returned set, for the caller to report.
pub async fn register_fx(ctx: &SessionContext) -> Result<opslake_sources::fx::MissingRates> {
    use arrow::array::{Array, Date32Array, Decimal128Array, StringArray};
    let mut rates = opslake_sources::fx::FxRates::default();
    if ctx.table_exist("ref.fx_rates").unwrap_or(false) {
        let sql = format!(
            "SELECT CAST(rate_date AS DATE), from_currency, to_currency, \
             CAST(rate AS DECIMAL(38, {})) FROM ref.fx_rates WHERE NOT is_deleted",
            opslake_sources::fx::RATE_SCALE
        );
        let df_err = |source| Error::DataFusion { context: "reading ref.fx_rates".into(), source };
        let batches = ctx.sql(&sql).await.map_err(df_err)?.collect().await.map_err(df_err)?;
        for b in &batches {
            let day = b.column(0).as_any().downcast_ref::<Date32Array>();
            let from = b.column(1).as_any().downcast_ref::<StringArray>();
            let to = b.column(2).as_any().downcast_ref::<StringArray>();
            let rate = b.column(3).as_any().downcast_ref::<Decimal128Array>();
            let (Some(day), Some(from), Some(to), Some(rate)) = (day, from, to, rate) else {
                return Err(Error::Internal { message: "ref.fx_rates has unexpected column types".into() });
            };
            for i in 0..b.num_rows() {
                if !(day.is_null(i) || from.is_null(i) || to.is_null(i) || rate.is_null(i)) {
                    rates.insert(day.value(i), from.value(i), to.value(i), rate.value(i));
                }
            }
        }
    }
    let missing = opslake_sources::fx::MissingRates::default();
    ctx.register_udf(opslake_sources::fx::fx_convert_udf(Arc::new(rates), Arc::clone(&missing)));
    Ok(missing)
}

/// Registers the Delta table `id` (a model's table) with `ctx` as `sql_name`. Returns `false`
/// when the table does not exist.
pub async fn register_relation(
    ctx: &SessionContext,
    lake: &Lake,
    id: &opslake_schema::TableId,
    sql_name: &str,
) -> Result<bool> {
    let Some(delta) = open_id(lake, id, None).await? else { return Ok(false) };
    register_delta(ctx, delta, None, sql_name).await?;
    Ok(true)
}

/// The names of the tables directly under `prefix/` in the lake (`models/` holds one Delta
/// table per model), sorted.
pub async fn tables_under(lake: &Lake, prefix: &str) -> Result<Vec<String>> {
    let path = object_store::path::Path::from(prefix);
    let listing = lake
        .store()
        .list_with_delimiter(Some(&path))
        .await
        .map_err(|source| Error::Store { context: format!("listing {prefix}/"), source })?;
    let mut names: Vec<String> =
        listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
    names.sort();
    Ok(names)
}
