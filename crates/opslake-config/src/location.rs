//! Where a lake or an export lives: a local path or an object-store URL.

use std::fmt;
use std::path::PathBuf;

/// Object stores opslake reaches through object_store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStoreKind {
    /// Amazon S3 and S3-compatible stores (`s3://bucket/prefix`).
    S3,
    /// Google Cloud Storage (`gs://bucket/prefix`).
    Gcs,
    /// Azure Blob Storage / ADLS Gen2 (`az://container/prefix`, `abfss://...`).
    Azure,
}

/// A parsed storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// A directory or file on the local file system (a plain path or `file://`).
    Local(PathBuf),
    /// A prefix in an object store.
    ObjectStore {
        /// Which store.
        kind: ObjectStoreKind,
        /// Bucket or container.
        bucket: String,
        /// Key prefix inside the bucket, without leading slash; may be empty.
        prefix: String,
        /// The URL as given.
        url: String,
    },
}

impl StorageLocation {
    /// Parses a local path, `file://`, `s3://`, `s3a://`, `gs://`, `az://`, `abfs://` or `abfss://`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is empty; give a local path or an s3://, gs:// or az:// URL".to_string());
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(s)));
        };
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "file" => return Ok(Self::Local(PathBuf::from(rest))),
            "s3" | "s3a" => ObjectStoreKind::S3,
            "gs" | "gcs" => ObjectStoreKind::Gcs,
            "az" | "azure" | "abfs" | "abfss" => ObjectStoreKind::Azure,
            other => {
                return Err(format!("'{s}': unsupported scheme '{other}'; use a local path, s3://, gs:// or az://"));
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("'{s}': the URL names no bucket or container"));
        }
        Ok(Self::ObjectStore {
            kind,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            url: s.to_string(),
        })
    }
}

impl fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::ObjectStore { url, .. } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(StorageLocation::parse("./lake"), Ok(StorageLocation::Local("./lake".into())));
        assert_eq!(StorageLocation::parse("file:///data/lake"), Ok(StorageLocation::Local("/data/lake".into())));
        let StorageLocation::ObjectStore { kind, bucket, prefix, .. } =
            StorageLocation::parse("s3://acme-lake/prod/").expect("s3")
        else {
            panic!("expected an object store");
        };
        assert_eq!((kind, bucket.as_str(), prefix.as_str()), (ObjectStoreKind::S3, "acme-lake", "prod"));
        assert!(matches!(
            StorageLocation::parse("gs://b"),
            Ok(StorageLocation::ObjectStore { kind: ObjectStoreKind::Gcs, .. })
        ));
        assert!(matches!(
            StorageLocation::parse("abfss://c@acct.dfs.core.windows.net/x"),
            Ok(StorageLocation::ObjectStore { kind: ObjectStoreKind::Azure, .. })
        ));
    }

    #[test]
    fn rejects_unknown_schemes_and_empty_buckets() {
        assert!(StorageLocation::parse("http://example.com/x").unwrap_err().contains("unsupported scheme 'http'"));
        assert!(StorageLocation::parse("s3:///x").unwrap_err().contains("no bucket"));
        assert!(StorageLocation::parse("  ").is_err());
    }
}
