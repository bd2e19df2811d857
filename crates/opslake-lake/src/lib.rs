//! opslake-lake: where canonical rows are kept.
//!
//! The lake is a directory or object-store prefix holding one Delta table per canonical table
//! at `<namespace>/<table>`, plus the system tables (`_rejects`). [`ingest::ingest`] reads
//! export files with opslake-sources, stages each table's rows as Parquet on local disk (so
//! memory stays bounded), then commits each table once: rows deduplicated by key (the latest
//! `source_updated_at` wins), merged into the Delta table.

pub mod ingest;
pub mod read;
pub mod stage;
pub mod write;

use std::path::PathBuf;

use opslake_schema::{ErrorClass, StorageLocation, TableId};
use url::Url;

/// An opened lake location.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
}

impl Lake {
    /// The lake at `location`; a local directory is created if missing.
    pub fn open(location: &StorageLocation) -> Result<Self> {
        let root = match location {
            StorageLocation::Local(path) => {
                std::fs::create_dir_all(path).map_err(|source| Error::Io { path: path.clone(), source })?;
                let abs = path.canonicalize().map_err(|source| Error::Io { path: path.clone(), source })?;
                Url::from_directory_path(&abs)
                    .map_err(|()| Error::Location { message: format!("{} is not an absolute path", abs.display()) })?
            }
            StorageLocation::ObjectStore { url, .. } => {
                let with_slash = if url.ends_with('/') { url.clone() } else { format!("{url}/") };
                Url::parse(&with_slash).map_err(|e| Error::Location { message: format!("{url}: {e}") })?
            }
        };
        Ok(Self { root })
    }

    /// URL of a table's directory.
    pub fn table_url(&self, id: &TableId) -> Url {
        self.root.join(&format!("{}/", table_path(id))).expect("table paths are snake_case segments")
    }
}

/// Path of a table inside the lake, relative to the lake root: `crm/people`, `_rejects`.
pub fn table_path(id: &TableId) -> String {
    if id.namespace.is_empty() { id.name.clone() } else { format!("{}/{}", id.namespace, id.name) }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Local disk could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The lake location cannot be used.
    #[error("lake location: {message}")]
    Location {
        /// What is wrong.
        message: String,
    },
    /// A Delta operation failed.
    #[error("delta table {table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// The underlying error.
        source: deltalake::DeltaTableError,
    },
    /// DataFusion failed while deduplicating or merging.
    #[error("{context}: {source}")]
    DataFusion {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: datafusion::error::DataFusionError,
    },
    /// Parquet staging failed.
    #[error("staging {table}: {source}")]
    Parquet {
        /// The table.
        table: String,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// Reading or mapping an input failed.
    #[error(transparent)]
    Source(#[from] opslake_sources::Error),
    /// An invariant failed.
    #[error("internal error (this is a bug): {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl Error {
    /// Who must act.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } | Self::Delta { .. } => ErrorClass::External,
            Self::Location { .. } => ErrorClass::User,
            Self::Source(e) => e.class(),
            Self::DataFusion { .. } | Self::Parquet { .. } | Self::Internal { .. } => ErrorClass::Internal,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_live_under_their_namespace() {
        let id = TableId { namespace: "crm".into(), name: "people".into() };
        assert_eq!(table_path(&id), "crm/people");
        assert_eq!(table_path(&TableId { namespace: String::new(), name: "_rejects".into() }), "_rejects");
        let lake = Lake::open(&StorageLocation::parse("s3://acme/lake").expect("url")).expect("opens");
        assert_eq!(lake.table_url(&id).as_str(), "s3://acme/lake/crm/people/");
    }
}
