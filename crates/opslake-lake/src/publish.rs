//! `opslake publish`: plain Parquet snapshots of the lake for BI tools and analysts.
//!
//! Layout under the output location:
//!
//! ```text
//! manifest.json                      the current snapshot: id, files, row counts, schemas
//! current -> snapshots/<id>          (local directories only) a symlink BI tools can point at
//! snapshots/<id>/<ns>/<table>.parquet
//! snapshots/<id>/manifest.json
//! ```
//!
//! A snapshot is written in full under its own id before `manifest.json` (one PUT, atomic on
//! every object store) and `current` (a symlink renamed over the old one) switch to it, so a
//! reader sees the old snapshot or the new one, never a mix. The previous snapshot is kept for
//! readers still on it; older ones are deleted.

use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use opslake_config::StorageLocation;
use opslake_schema::Contract;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::{Error, Lake, Result};

/// One published table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedTable {
    /// `namespace.table`.
    pub table: String,
    /// The file, relative to the output location.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file.
    pub bytes: u64,
    /// The Delta version it was read at.
    pub version: u64,
    /// Columns: name, Arrow type, nullability.
    pub columns: Vec<PublishedColumn>,
}

/// One column of a published table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedColumn {
    /// Name.
    pub name: String,
    /// Arrow data type, as Arrow prints it.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether nulls occur.
    pub nullable: bool,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishManifest {
    /// The snapshot id (a UUIDv7).
    pub snapshot_id: String,
    /// When it was written, RFC 3339.
    pub created_at: String,
    /// The lake it was read from.
    pub lake: String,
    /// Every table.
    pub tables: Vec<PublishedTable>,
}

/// Snapshots kept: the new one and the one readers may still be on.
const KEEP: usize = 2;

/// Publishes every table of the lake (canonical tables and `_rejects`) to `out`.
pub async fn publish(
    lake: &Lake,
    contract: &Contract,
    out: &StorageLocation,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<PublishManifest> {
    let out_url = crate::location_url(out)?;
    if let StorageLocation::Local(dir) = out {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
    }
    let store = out_store(lake, &out_url)?;
    let snapshot_id = uuid::Uuid::now_v7().to_string();
    let ctx = crate::read::context();
    let mut tables = Vec::new();
    let sources = contract.tables().chain(contract.system_table(crate::REJECTS));
    for table in sources {
        let Some(delta) = crate::read::open(lake, table, None).await? else { continue };
        let name = table.id.to_string();
        progress(&name);
        let version = delta.version().unwrap_or_default();
        let rel = format!("snapshots/{snapshot_id}/{}.parquet", crate::table_path(&table.id));
        let df_err = |source| Error::DataFusion { context: format!("publishing {name}"), source };
        // With the contract: a table of an older lake is published with its columns all the same.
        let provider = crate::read::provider(&ctx, delta, Some(table), &name).await?;
        let df = ctx.read_table(provider).map_err(df_err)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(df_err)?;
        let writer = object_store::buffered::BufWriter::new(Arc::clone(&store), Path::from(rel.as_str()));
        let parquet_err = |source| Error::Parquet { table: name.clone(), source };
        let mut writer =
            AsyncArrowWriter::try_new(writer, Arc::clone(&schema), Some(snapshot_properties())).map_err(parquet_err)?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).await.map_err(parquet_err)?;
        }
        writer.close().await.map_err(parquet_err)?;
        let bytes = store.head(&Path::from(rel.as_str())).await.map_err(store_err(&rel))?.size;
        let columns = schema
            .fields()
            .iter()
            .map(|f| PublishedColumn {
                name: f.name().clone(),
                ty: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect();
        tables.push(PublishedTable { table: name, path: rel, rows, bytes, version, columns });
    }
    let manifest = PublishManifest {
        snapshot_id: snapshot_id.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        lake: lake.url().to_string(),
        tables,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal { message: e.to_string() })?;
    let inner = Path::from(format!("snapshots/{snapshot_id}/manifest.json"));
    store.put(&inner, PutPayload::from(body.clone())).await.map_err(store_err(inner.as_ref()))?;
    // The switch: one PUT replaces the manifest whole.
    store.put(&Path::from("manifest.json"), PutPayload::from(body)).await.map_err(store_err("manifest.json"))?;
    if let StorageLocation::Local(dir) = out {
        point_current(dir, &snapshot_id)?;
    }
    let pruned = prune(store.as_ref(), &snapshot_id).await?;
    if let StorageLocation::Local(dir) = out {
        remove_empty_snapshot_dirs(dir, &pruned);
    }
    Ok(manifest)
}

/// Reads the current `manifest.json` of a publish location.
pub async fn read_manifest(lake: &Lake, out: &StorageLocation) -> Result<PublishManifest> {
    let out_url = crate::location_url(out)?;
    let store = out_store(lake, &out_url)?;
    let bytes = store
        .get(&Path::from("manifest.json"))
        .await
        .map_err(store_err("manifest.json"))?
        .bytes()
        .await
        .map_err(store_err("manifest.json"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Location { message: format!("{out_url}manifest.json is not a publish manifest: {e}") })
}

/// The publish location's store, configured like the lake's.
fn out_store(lake: &Lake, out_url: &url::Url) -> Result<Arc<dyn ObjectStore>> {
    deltalake::logstore::store_for(out_url, lake.options().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| Error::Location { message: format!("{out_url}: {e}") })
}

fn store_err(what: &str) -> impl FnOnce(object_store::Error) -> Error {
    let context = format!("publishing {what}");
    move |source| Error::Store { context, source }
}

/// BI tools read whole columns of a few tables: zstd for size, statistics per page for
/// pruning, row groups large enough for fast scans and small enough for one reader's memory.
fn snapshot_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(256 * 1024))
        .build()
}

#[cfg(unix)]
fn point_current(dir: &std::path::Path, snapshot_id: &str) -> Result<()> {
    let tmp = dir.join(format!(".current-{snapshot_id}"));
    let io = |source| Error::Io { path: dir.join("current"), source };
    std::os::unix::fs::symlink(format!("snapshots/{snapshot_id}"), &tmp).map_err(io)?;
    // rename(2) replaces the old link atomically.
    std::fs::rename(&tmp, dir.join("current")).map_err(io)
}

#[cfg(not(unix))]
fn point_current(_dir: &std::path::Path, _snapshot_id: &str) -> Result<()> {
    Ok(())
}

/// A local store deletes files, not the directories they were in: those of the snapshots just
/// pruned go too, when nothing else is left in them.
fn remove_empty_snapshot_dirs(dir: &std::path::Path, pruned: &[String]) {
    fn prune_dir(path: &std::path::Path) -> bool {
        let Ok(entries) = std::fs::read_dir(path) else { return false };
        let mut empty = true;
        for e in entries.flatten() {
            let p = e.path();
            empty &= p.is_dir() && !p.is_symlink() && prune_dir(&p);
        }
        empty && std::fs::remove_dir(path).is_ok()
    }
    for id in pruned {
        let path = dir.join("snapshots").join(id);
        if path.is_dir() && !path.is_symlink() {
            prune_dir(&path);
        }
    }
}

/// Deletes snapshots older than the [`KEEP`] newest (ids are UUIDv7: text order is time order).
/// Only snapshots it made, and only the files it wrote: a folder counts as a snapshot when its
/// name is a UUIDv7 and its own manifest says so, and what is deleted is what that manifest
/// lists, never a listing of the folder. Files a user put there stay; so does a snapshot cut
/// short before its manifest (a later one made with the same name is impossible).
async fn prune(store: &dyn ObjectStore, current: &str) -> Result<Vec<String>> {
    let listed = store.list_with_delimiter(Some(&Path::from("snapshots"))).await.map_err(store_err("snapshots/"))?;
    let mut ids: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7 && u.to_string() == *id))
        .collect();
    ids.sort();
    ids.retain(|id| id.as_str() <= current);
    let old = ids.len().saturating_sub(KEEP);
    let mut pruned = Vec::new();
    for id in &ids[..old] {
        let inner = Path::from(format!("snapshots/{id}/manifest.json"));
        let manifest: PublishManifest = match store.get(&inner).await {
            Ok(got) => match serde_json::from_slice(&got.bytes().await.map_err(store_err(inner.as_ref()))?) {
                Ok(m) => m,
                Err(_) => continue,
            },
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(store_err(inner.as_ref())(e)),
        };
        if manifest.snapshot_id != *id {
            continue;
        }
        let own = format!("snapshots/{id}/");
        for table in &manifest.tables {
            // A manifest is data: a path in it that leaves its folder is not deleted.
            let safe = table.path.strip_prefix(&own).is_some_and(|rest| {
                rest.ends_with(".parquet") && rest.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            });
            if !safe {
                continue;
            }
            match store.delete(&Path::from(table.path.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&table.path)(e)),
            }
        }
        store.delete(&inner).await.map_err(store_err(inner.as_ref()))?;
        pruned.push(id.clone());
    }
    Ok(pruned)
}
