//! Reading the lake with DataFusion: every existing table registered under its SQL name
//! (`crm.people`, `_rejects`).

use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use opslake_schema::{Contract, Table};

use crate::{Error, Lake, Result};

/// A DataFusion session that reads the lake with the contract's types (Utf8, not view types).
pub fn session() -> SessionContext {
    let config = SessionConfig::new().set_bool("datafusion.execution.parquet.schema_force_view_types", false);
    SessionContext::new_with_config(config)
}

/// Opens a table's Delta log; `None` when the table was never written.
pub async fn open(lake: &Lake, table: &Table) -> Result<Option<DeltaTable>> {
    let url = lake.table_url(&table.id);
    if url.scheme() == "file" && url.to_file_path().is_ok_and(|p| !p.join("_delta_log").is_dir()) {
        return Ok(None);
    }
    let delta =
        DeltaTable::try_from_url(url).await.map_err(|source| Error::Delta { table: table.id.to_string(), source })?;
    Ok(delta.version().is_some().then_some(delta))
}

/// Registers every canonical and system table that exists in `lake` with `ctx`, each under its
/// SQL name. Returns the names registered.
pub async fn register_lake(ctx: &SessionContext, lake: &Lake, contract: &Contract) -> Result<Vec<String>> {
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
        let Some(delta) = open(lake, table).await? else { continue };
        let name = table.id.to_string();
        delta.update_datafusion_session(&ctx.state()).map_err(|source| Error::Delta { table: name.clone(), source })?;
        let provider = delta
            .table_provider()
            .with_session(Arc::new(ctx.state()))
            .await
            .map_err(|source| Error::DataFusion { context: format!("reading {name}"), source })?;
        ctx.register_table(name.as_str(), provider)
            .map_err(|source| Error::DataFusion { context: format!("registering {name}"), source })?;
        names.push(name);
    }
    Ok(names)
}
