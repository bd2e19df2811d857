//! The manifest of loaded files, for incremental loads.
//!
//! It is not a file of its own: it is the `_run_files` system table, read back as the latest
//! LOADED or UNCHANGED row per path. `_run_files` is committed after the run's table commits,
//! so a run killed before it leaves its files unrecorded and the next run loads them again;
//! every write mode is idempotent under that replay (merge by key, append by file, history by
//! version), which is what makes a rerun converge.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use opslake_schema::Contract;
use sha2::{Digest, Sha256};

use crate::{Error, Lake, Result};

/// What a file looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Bytes.
    pub size: u64,
    /// Modification time, UTC microseconds.
    pub modified_at: Option<i64>,
    /// Object-store ETag, when there is one.
    pub etag: Option<String>,
}

impl Fingerprint {
    /// The fingerprint of a local file.
    pub fn of_local(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let modified_at = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_micros() as i64);
        Ok(Self { size: meta.len(), modified_at, etag: None })
    }
}

/// SHA-256 of a local file's bytes, hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The last recorded state of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Fingerprint when recorded.
    pub fingerprint: Fingerprint,
    /// Content hash when recorded.
    pub sha256: String,
    /// Rows the file wrote when it was last loaded (not merely found unchanged): what a
    /// re-export is compared with before it may flag rows deleted.
    pub rows_written: i64,
}

/// What to do with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Never loaded: load it.
    New,
    /// Loaded, and its bytes (or its object's ETag) are the same: skip.
    Unchanged,
    /// Touched (another time or ETag) but with the same bytes: skip, and record the new
    /// fingerprint.
    SameContent,
    /// Loaded before with other bytes: load it and replace the rows it gave.
    Changed,
}

/// Latest recorded state per path.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    entries: HashMap<String, Loaded>,
}

impl Manifest {
    /// Reads the manifest from the lake's `_run_files`; empty when the lake has none.
    pub async fn load(lake: &Lake, contract: &Contract) -> Result<Self> {
        let ctx = crate::read::context();
        let Some(table) = contract.system_table(crate::runs::RUN_FILES) else {
            return Err(Error::Internal { message: "the contract has no _run_files table".into() });
        };
        if !crate::read::register(&ctx, lake, table, None).await? {
            return Ok(Self::default());
        }
        // The fingerprint is the latest row's; the row count the latest load's, since an
        // UNCHANGED row of an older opslake carries no count.
        let sql = "SELECT l.path, l.size_bytes, CAST(l.modified_at AS BIGINT) AS modified_us, l.etag, l.content_sha256, \
                   coalesce(w.rows_written, 0) AS rows_written FROM \
                   (SELECT *, row_number() OVER (PARTITION BY path ORDER BY recorded_at DESC, run_id DESC) AS r \
                    FROM _run_files WHERE status IN ('LOADED', 'UNCHANGED')) l LEFT JOIN \
                   (SELECT path, rows_written, row_number() OVER (PARTITION BY path ORDER BY recorded_at DESC, run_id DESC) AS r \
                    FROM _run_files WHERE status = 'LOADED') w ON w.path = l.path AND w.r = 1 WHERE l.r = 1";
        let batches = ctx
            .sql(sql)
            .await
            .map_err(|source| Error::DataFusion { context: "reading the manifest".into(), source })?
            .collect()
            .await
            .map_err(|source| Error::DataFusion { context: "reading the manifest".into(), source })?;
        let mut entries = HashMap::new();
        for b in batches {
            let path = b.column(0).as_string::<i32>();
            let size = b.column(1).as_primitive::<Int64Type>();
            let modified = b.column(2).as_primitive::<Int64Type>();
            let etag = b.column(3).as_string::<i32>();
            let sha = b.column(4).as_string::<i32>();
            let written = b.column(5).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                entries.insert(
                    path.value(i).to_string(),
                    Loaded {
                        fingerprint: Fingerprint {
                            size: size.value(i) as u64,
                            modified_at: modified.is_valid(i).then(|| modified.value(i)),
                            etag: etag.is_valid(i).then(|| etag.value(i).to_string()),
                        },
                        sha256: sha.value(i).to_string(),
                        rows_written: written.value(i),
                    },
                );
            }
        }
        Ok(Self { entries })
    }

    /// Number of paths recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no path is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last recorded state of `path`.
    pub fn get(&self, path: &str) -> Option<&Loaded> {
        self.entries.get(path)
    }

    /// Decides about an object in a store as it is listed now. Its ETag (or version) and size
    /// are trusted to change with its bytes; when they did, it is read (its bytes hashed as
    /// they stream in, never fetched twice), and a re-upload of the same bytes reloads the rows
    /// it gave, which replaces them with themselves.
    pub fn decide_object(loaded: Option<&Loaded>, now: &Fingerprint) -> (Decision, Option<String>) {
        match loaded {
            None => (Decision::New, None),
            Some(l)
                if l.fingerprint.etag.is_some() && l.fingerprint.etag == now.etag && l.fingerprint.size == now.size =>
            {
                (Decision::Unchanged, Some(l.sha256.clone()))
            }
            Some(_) => (Decision::Changed, None),
        }
    }

    /// Decides about `loaded` (the path's last state, if any) as the file is now. An object's
    /// ETag is trusted to change with its bytes; a local file's size and time are not (a
    /// rewrite can keep both), so `hash` is called for every local file loaded before.
    pub fn decide(
        loaded: Option<&Loaded>,
        now: &Fingerprint,
        hash: impl FnOnce() -> Result<String>,
    ) -> Result<(Decision, Option<String>)> {
        let Some(loaded) = loaded else { return Ok((Decision::New, None)) };
        if let (Some(a), Some(b)) = (&loaded.fingerprint.etag, &now.etag)
            && a == b
            && loaded.fingerprint.size == now.size
        {
            return Ok((Decision::Unchanged, Some(loaded.sha256.clone())));
        }
        let sha = hash()?;
        if sha != loaded.sha256 {
            return Ok((Decision::Changed, Some(sha)));
        }
        let decision = if loaded.fingerprint == *now { Decision::Unchanged } else { Decision::SameContent };
        Ok((decision, Some(sha)))
    }
}
