//! opslake-lake: where canonical rows are kept, and nothing else.
//!
//! The lake is a directory or object-store prefix holding one Delta table per canonical table
//! at `<namespace>/<table>`, plus the system tables (`_rejects`, the run records). This crate
//! stores: it stages rows as local Parquet parts ([`stage`]), commits them in each table's
//! write mode ([`write`]: rows deduplicated by key, the latest `source_updated_at` winning),
//! keeps the one-writer lock, the manifest and the run records ([`runs::Run`]), and reads,
//! publishes and maintains the tables. What the rows are made from is the ingest crate's.

pub mod drift;
pub mod lock;
pub mod maintain;
pub mod manifest;
pub mod publish;
pub mod read;
pub mod runs;
pub mod salt;
pub mod stage;
mod upgrade;
mod versions;
pub mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Once;

use deltalake::DeltaTable;
use deltalake::logstore::ObjectStoreRef;
use opslake_config::StorageLocation;
use opslake_schema::{ErrorClass, TableId};
use url::Url;

/// An opened lake location: its URL, an object store rooted at it, and the options the Delta
/// tables in it are opened with.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    store: ObjectStoreRef,
    options: HashMap<String, String>,
}

/// Registers the object-store schemes deltalake can open (s3, gs, az) once per process.
fn register_object_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::gcp::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
}

/// Object-store settings from the environment, the variables the AWS, Google and Azure tools
/// read (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_*`, ...).
/// They are passed explicitly so that the lock, publish and the Delta tables see one config.
pub fn storage_options_from_env() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// An object store rooted at `url` (`s3://bucket/`), configured with `options` as the lake's
/// is: what exports are listed and read from when a connection's path is a URL.
pub fn store_at(url: &Url, options: &HashMap<String, String>) -> Result<ObjectStoreRef> {
    register_object_stores();
    deltalake::logstore::store_for(url, options.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| Error::Location { message: format!("{url}: {e}") })
}

impl Lake {
    /// The lake at `location`; a local directory is created if missing. Object stores are
    /// configured from the environment (see [`storage_options_from_env`]).
    pub fn open(location: &StorageLocation) -> Result<Self> {
        Self::open_with(location, storage_options_from_env())
    }

    /// The lake at `location` with explicit object-store options.
    pub fn open_with(location: &StorageLocation, options: HashMap<String, String>) -> Result<Self> {
        let root = location_url(location)?;
        if let StorageLocation::Local(path) = location {
            std::fs::create_dir_all(path).map_err(|source| Error::Io { path: path.clone(), source })?;
        }
        let store = store_at(&root, &options)?;
        Ok(Self { root, store, options })
    }

    /// The lake's URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.root
    }

    /// An object store whose paths are relative to the lake root.
    pub fn store(&self) -> &ObjectStoreRef {
        &self.store
    }

    /// The object-store options tables are opened with.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// URL of a table's directory.
    pub fn table_url(&self, id: &TableId) -> Url {
        self.root.join(&format!("{}/", table_path(id))).expect("table paths are snake_case segments")
    }

    /// Opens the Delta table `id`, loaded at its latest version, or not yet created (then a
    /// local table's directory is made, as deltalake wants it to exist before the first write).
    pub async fn delta_table(&self, id: &TableId) -> Result<DeltaTable> {
        // Every table written goes through here: a name that is not one plain segment (from a
        // project file, say) is refused before it can resolve outside the lake.
        let plain = |s: &str| opslake_schema::diag::is_identifier(s);
        // The namespace is empty for system tables (`_rejects`); the name never is.
        if !(id.namespace.is_empty() || plain(&id.namespace)) || !plain(&id.name) {
            return Err(Error::Location { message: format!("'{id}' is not a table name opslake writes") });
        }
        let url = self.table_url(id);
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
        }
        DeltaTable::try_from_url_with_storage_options(url, self.options.clone())
            .await
            .map_err(|source| Error::Delta { table: id.to_string(), source })
    }
}

/// The URL of a location, ending in `/`; local paths are made absolute.
pub fn location_url(location: &StorageLocation) -> Result<Url> {
    match location {
        StorageLocation::Local(path) => {
            let abs = if path.is_absolute() {
                path.clone()
            } else {
                std::env::current_dir().map_err(|source| Error::Io { path: path.clone(), source })?.join(path)
            };
            Url::from_directory_path(&abs)
                .map_err(|()| Error::Location { message: format!("{} is not a usable path", abs.display()) })
        }
        StorageLocation::ObjectStore { url, .. } => {
            let with_slash = if url.ends_with('/') { url.clone() } else { format!("{url}/") };
            Url::parse(&with_slash).map_err(|e| Error::Location { message: format!("{url}: {e}") })
        }
    }
}

/// Name of the system table of rejects.
pub const REJECTS: &str = "_rejects";

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
    /// The lake's object store failed.
    #[error("lake store, {context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: object_store::Error,
    },
    /// Another run holds the lake.
    #[error("{message}")]
    Locked {
        /// Who holds it and until when.
        message: String,
    },
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
            Self::Io { .. } | Self::Delta { .. } | Self::Store { .. } => ErrorClass::External,
            Self::Locked { .. } => ErrorClass::Busy,
            Self::Location { .. } => ErrorClass::User,
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

    #[tokio::test]
    async fn a_table_name_that_is_not_one_plain_segment_is_refused_and_nothing_is_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&StorageLocation::Local(dir.path().join("lake"))).expect("opens");
        for name in ["../crm/people", "x/../../y", "a%2Fb", "a\\b", "..", "a?b", "a#b", "/abs", ""] {
            let id = TableId { namespace: "test_failures".into(), name: name.into() };
            let err = lake.delta_table(&id).await.err().unwrap_or_else(|| panic!("'{name}' was opened"));
            assert!(err.to_string().contains("is not a table name opslake writes"), "{name}: {err}");
        }
        let made = |d: &std::path::Path| std::fs::read_dir(d).map_or(0, |e| e.count());
        assert_eq!(made(&dir.path().join("lake")), 0, "nothing is made in the lake");
        assert_eq!(made(dir.path()), 1, "nothing is made beside it");
        let ok = TableId { namespace: "models".into(), name: "Customer_360".into() };
        assert!(lake.delta_table(&ok).await.is_ok());
    }
}
