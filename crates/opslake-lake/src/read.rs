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

/// The DataFusion context the lake reads and writes its own tables with: the contract's
/// types (Utf8, not view types) and Delta writes of queries. It has none of opslake's SQL
/// functions: the one session users' SQL runs in (models, `query`, `serve`) is built on it by
/// opslake-models' `session`.
pub fn context() -> SessionContext {
    let ctx = deltalake::delta_datafusion::DeltaSessionContext::new().into_inner();
    ctx.state_ref().write().config_mut().options_mut().execution.parquet.schema_force_view_types = false;
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

/// Registers every canonical and system table with `ctx`, each under its SQL name: those the
/// lake holds as Delta tables, the others empty, with the contract's columns, so that SQL over
/// a department no file has fed yet reads no rows instead of failing. With `as_of` (from
/// [`crate::runs::versions_as_of`]), canonical tables and `_rejects` are read at those versions
/// and those not yet written then are empty; the run records are always read at their latest.
/// Returns the names of the tables the lake holds (at `as_of`).
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
                None => {
                    register_empty(ctx, table)?;
                    continue;
                }
            },
            _ => None,
        };
        if register(ctx, lake, table, version).await? {
            names.push(name);
        } else {
            register_empty(ctx, table)?;
        }
    }
    Ok(names)
}

/// Registers `table` with no rows, as the contract declares it.
fn register_empty(ctx: &SessionContext, table: &Table) -> Result<()> {
    let name = table.id.to_string();
    let df_err = |source| Error::DataFusion { context: format!("registering {name} (empty)"), source };
    let empty = datafusion::datasource::MemTable::try_new(table.arrow_schema(), vec![Vec::new()]).map_err(df_err)?;
    ctx.deregister_table(name.as_str()).map_err(df_err)?;
    ctx.register_table(name.as_str(), Arc::new(empty)).map_err(df_err)?;
    Ok(())
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
