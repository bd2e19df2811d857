//! Local staging: each table's mapped rows for one input file go to their own Parquet part, so a
//! run holds at most a batch per table in memory and a failed file is dropped by deleting its
//! parts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::PathBuf;
use std::sync::Mutex;

use arrow::array::{Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;

use crate::{Error, Result};

/// Staged Parquet parts per table for one run, in a temporary directory removed on drop.
pub struct Staging {
    dir: tempfile::TempDir,
    /// Rows kept per table.
    tables: BTreeMap<String, u64>,
    keys: Mutex<BTreeMap<String, StagedKeys>>,
}

/// The unique keys staged for one table, so that a commit knows which keys came more than once
/// and deduplicates only those (a first load of distinct records skips the sort entirely).
#[derive(Default)]
struct StagedKeys {
    hasher: RandomState,
    /// A 64-bit digest of every key seen: 8 bytes a row, where the keys themselves would be 32
    /// or more. The digests are already uniform, so the set does not hash them again.
    seen: HashSet<u64, BuildHasherDefault<Identity>>,
    /// Keys whose hash was seen before: every key staged twice is here (and, rarely, a key
    /// that only shares a hash, which deduplicating leaves as it is).
    repeated: BTreeSet<String>,
    /// Rows were staged whose key was not tracked: every key may repeat.
    unknown: bool,
}

impl StagedKeys {
    /// A key's 64-bit digest: the leading 16 hex digits of a canonical key, which is SHA-256
    /// already (`stable_key`: 32 lower-case hex digits), and a keyed hash of any other key.
    fn digest(&self, key: &str) -> u64 {
        let canonical = key.len() == 32 && key.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        match canonical.then(|| u64::from_str_radix(&key[..16], 16)) {
            Some(Ok(d)) => d,
            _ => self.hasher.hash_one(key),
        }
    }
}

/// The identity hash, for sets of values that are digests already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 digests go in (`write_u64`); anything else is folded in byte by byte.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Staging {
    /// A new empty staging area.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("opslake-stage-")
            .tempdir()
            .map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
        Ok(Self { dir, tables: BTreeMap::new(), keys: Mutex::new(BTreeMap::new()) })
    }

    /// Notes the unique keys of rows staged for `table`: `None` when the key is not a single
    /// text column, which makes every key of the table possibly repeated.
    pub fn track_keys(&self, table: &str, keys: Option<&StringArray>) {
        let mut all = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let staged = all.entry(table.to_string()).or_default();
        let Some(keys) = keys else {
            staged.unknown = true;
            return;
        };
        staged.seen.reserve(keys.len());
        for i in 0..keys.len() {
            let key = if keys.is_null(i) { "" } else { keys.value(i) };
            if !staged.seen.insert(staged.digest(key)) {
                staged.repeated.insert(key.to_string());
            }
        }
    }

    /// Keys staged more than once for `table` (a superset: parts of failed files count too);
    /// `None` when that is not known.
    pub fn repeated_keys(&self, table: &str) -> Option<Vec<String>> {
        let all = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let staged = all.get(table)?;
        (!staged.unknown).then(|| staged.repeated.iter().cloned().collect())
    }

    /// The directory holding `table`'s parts.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.dir.path().join(table.replace('/', "__"))
    }

    /// Tables with at least one part.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// Rows in the kept parts of `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.get(table).copied().unwrap_or_default()
    }

    /// A writer for one file's rows of `table`, named after the file's position in the run
    /// (and the worker, when several map the file).
    pub fn part_writer(&self, table: &str, part: &str, contract: &opslake_schema::Table) -> Result<PartWriter> {
        let dir = self.table_dir(table);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let path = dir.join(format!("part-{part}.parquet"));
        let file = File::create(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        // Parts are written as the lake's data files are: a first load whose rows go in as
        // staged adopts the parts as they are (`write::commit_table`) instead of encoding
        // every row a second time.
        let writer =
            ArrowWriter::try_new(file, contract.arrow_schema(), Some(crate::write::writer_properties(contract)))
                .map_err(|source| Error::Parquet { table: table.to_string(), source })?;
        Ok(PartWriter { table: table.to_string(), path, writer, rows: 0 })
    }

    /// Keeps a finished part for commit: its table is committed from its directory.
    pub fn keep(&mut self, part: FinishedPart) {
        *self.tables.entry(part.table).or_default() += part.rows;
    }
}

/// Writes one part.
pub struct PartWriter {
    table: String,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

/// A part written to the end.
pub struct FinishedPart {
    table: String,
    /// Rows in the part.
    pub rows: u64,
}

impl PartWriter {
    /// Appends rows.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|source| Error::Parquet { table: self.table.clone(), source })
    }

    /// Closes the part.
    pub fn finish(self) -> Result<FinishedPart> {
        self.writer.close().map_err(|source| Error::Parquet { table: self.table.clone(), source })?;
        Ok(FinishedPart { table: self.table, rows: self.rows })
    }

    /// Drops the part (its file failed).
    pub fn discard(self) {
        let path = self.path.clone();
        drop(self.writer);
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_found_among_canonical_and_other_keys() {
        let staging = Staging::new().expect("staging");
        let a = opslake_sources::parse::stable_key(["stripe", "s", "ch_1"]);
        let b = opslake_sources::parse::stable_key(["stripe", "s", "ch_2"]);
        // A canonical key's digest is its own leading 64 bits.
        let keys = StagedKeys::default();
        assert_eq!(keys.digest(&a), u64::from_str_radix(&a[..16], 16).expect("hex"));
        // Keys that only look canonical (upper case, wrong length) are hashed.
        let upper = a.to_uppercase();
        assert_ne!(keys.digest(&upper), keys.digest(&a));
        let first = StringArray::from(vec![a.as_str(), "plain-1", upper.as_str()]);
        let second = StringArray::from(vec![b.as_str(), "plain-1", a.as_str(), "plain-2"]);
        staging.track_keys("finance/payments", Some(&first));
        staging.track_keys("finance/payments", Some(&second));
        assert_eq!(staging.repeated_keys("finance/payments"), Some(vec![a.clone(), "plain-1".to_string()]));
        staging.track_keys("crm/people", None);
        assert_eq!(staging.repeated_keys("crm/people"), None);
    }
}
