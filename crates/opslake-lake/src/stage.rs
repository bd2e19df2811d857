//! Local staging: each table's mapped rows for one input file go to their own Parquet part, so a
//! run holds at most a batch per table in memory and a failed file is dropped by deleting its
//! parts.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::array::{Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};

use crate::{Error, Result};

/// Staged Parquet parts per table for one run, in a temporary directory removed on drop.
pub struct Staging {
    dir: PathBuf,
    /// `<dir>.lock`, locked for the run's life. A run that is killed never drops its staging,
    /// and a nightly job killed at every timeout would fill the disk with parts; the next run
    /// that can take a directory's lock knows its owner is gone and removes it.
    _lock: tempfile::NamedTempFile,
    /// Rows kept per table.
    tables: BTreeMap<String, u64>,
    keys: Mutex<BTreeMap<String, StagedKeys>>,
}

/// The unique keys staged for one table, so that a commit knows which keys came more than once
/// and deduplicates only those (a first load of distinct records skips the sort entirely).
#[derive(Default)]
struct StagedKeys {
    hasher: RandomState,
    /// A 64-bit digest of every key staged, in arrival order: 8 bytes a row, where the keys
    /// themselves would be 32 or more, and appended, not hashed into a set (the set's random
    /// writes were 2.3% of ingest's samples, its table half as large again as this vector).
    /// Kept in blocks of `DIGEST_BLOCK`, each allocated once at its full size: one vector that
    /// doubles holds up to twice its digests, and both copies while it moves (186 MB of a
    /// 5M-row ingest's 457 MB peak heap). Joined and sorted once, at commit.
    digests: Vec<Vec<u64>>,
    /// Rows were staged whose key was not tracked: every key may repeat.
    unknown: bool,
}

/// Digests in a block of `StagedKeys::digests`: 512 KiB.
const DIGEST_BLOCK: usize = 64 * 1024;

/// A key's 64-bit digest: the leading 16 hex digits of a canonical key, which is SHA-256
/// already (`stable_key`: 32 lower-case hex digits), and a keyed hash of any other key.
fn digest(hasher: &RandomState, key: &str) -> u64 {
    let canonical = key.len() == 32 && key.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    match canonical.then(|| u64::from_str_radix(&key[..16], 16)) {
        Some(Ok(d)) => d,
        _ => hasher.hash_one(key),
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
    /// A new empty staging area in the system's temporary directory, after removing the ones
    /// that killed runs left there.
    pub fn new() -> Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    /// A new empty staging area in `root`, after removing the ones that killed runs left there.
    pub fn new_in(root: &Path) -> Result<Self> {
        remove_abandoned(root);
        let io = |source| Error::Io { path: root.to_path_buf(), source };
        loop {
            let lock =
                tempfile::Builder::new().prefix(STAGE_PREFIX).suffix(LOCK_SUFFIX).tempfile_in(root).map_err(io)?;
            // Another run's sweep may open the new lock file before it is locked here, take it and
            // remove it: then this name is given up for a fresh one. Where files cannot be locked
            // at all, staging still works; only a killed run's directory is not swept.
            let taken = matches!(lock.as_file().try_lock(), Err(std::fs::TryLockError::WouldBlock));
            if taken || !lock.path().exists() {
                continue;
            }
            let dir = stage_dir_of(lock.path());
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(Self { dir, _lock: lock, tables: BTreeMap::new(), keys: Mutex::new(BTreeMap::new()) });
                }
                // A killed run's directory whose lock file is gone: a sweep removes only what it locks.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::Io { path: dir, source }),
            }
        }
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
        let mut offset = 0;
        while offset < keys.len() {
            if staged.digests.last().is_none_or(|block| block.len() == DIGEST_BLOCK) {
                staged.digests.push(Vec::with_capacity(DIGEST_BLOCK));
            }
            let block = staged.digests.last_mut().expect("a block with room was pushed above");
            let n = (DIGEST_BLOCK - block.len()).min(keys.len() - offset);
            let hasher = &staged.hasher;
            block.extend(keys.slice(offset, n).iter().map(|k| digest(hasher, k.unwrap_or_default())));
            offset += n;
        }
    }

    /// Keys staged more than once for `table`, whose unique key is `key`, in its kept parts (a
    /// failed file's discarded parts do not count); `None` when that is not known. The digests
    /// say which keys may repeat; only those are read back from the parts and counted. Called
    /// once per table, at its commit: the digests are sorted in place and freed.
    pub fn repeated_keys(&self, table: &str, key: &[String]) -> Result<Option<Vec<String>>> {
        let [column] = key else { return Ok(None) };
        let (repeated, hasher) = {
            let mut all = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(staged) = all.get_mut(table) else { return Ok(None) };
            if staged.unknown {
                return Ok(None);
            }
            let blocks = std::mem::take(&mut staged.digests);
            let mut digests = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
            // Each block is freed once copied, so the join holds one block more than the digests.
            for block in blocks {
                digests.extend_from_slice(&block);
            }
            digests.sort_unstable();
            let repeated: HashSet<u64, BuildHasherDefault<Identity>> =
                digests.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
            (repeated, staged.hasher.clone())
        };
        if repeated.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        let dir = self.table_dir(table);
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        for entry in entries {
            let path = entry.map_err(|source| Error::Io { path: dir.clone(), source })?.path();
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let file = File::open(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err(table))?;
            let index = builder
                .schema()
                .index_of(column)
                .map_err(|e| Error::Internal { message: format!("{}: no key column {column}: {e}", path.display()) })?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
            for batch in builder.with_projection(mask).build().map_err(parquet_err(table))? {
                let batch = batch.map_err(|e| parquet_err(table)(e.into()))?;
                let values = batch.column(0).as_any().downcast_ref::<StringArray>().ok_or_else(|| Error::Internal {
                    message: format!("{}: key column {column} is not text", path.display()),
                })?;
                for key in values.iter().map(Option::unwrap_or_default) {
                    if repeated.contains(&digest(&hasher, key)) {
                        *seen.entry(key.to_string()).or_default() += 1;
                    }
                }
            }
        }
        Ok(Some(seen.into_iter().filter(|(_, n)| *n > 1).map(|(key, _)| key).collect()))
    }

    /// The directory holding `table`'s parts.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.dir.join(table.replace('/', "__"))
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
        // Parts are written as the lake's data files are: a first load whose rows go in as
        // staged adopts the parts as they are (`write::commit_table`) instead of encoding every
        // row a second time.
        let props = crate::write::writer_properties(contract);
        PartWriter::new(table, dir, format!("part-{part}"), contract.arrow_schema(), props, PART_FILE_ROWS)
    }

    /// Keeps a finished part for commit: its table is committed from its directory.
    pub fn keep(&mut self, part: FinishedPart) {
        *self.tables.entry(part.table).or_default() += part.rows;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Before the lock file goes (fields drop after this): a sweep never sees the directory
        // without its lock while this run is alive.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const STAGE_PREFIX: &str = "opslake-stage-";
const LOCK_SUFFIX: &str = ".lock";

/// The staging directory a lock file guards: its path without `.lock`.
fn stage_dir_of(lock: &Path) -> PathBuf {
    let name = lock.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    lock.with_file_name(name.strip_suffix(LOCK_SUFFIX).unwrap_or(&name))
}

/// Removes the staging directories in `root` whose run is gone: their lock file is not locked.
/// Best effort: what cannot be read or removed stays for a later run, and never fails this one.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(STAGE_PREFIX) && name.ends_with(LOCK_SUFFIX)) {
            continue;
        }
        let lock_path = entry.path();
        let Ok(lock) = File::open(&lock_path) else { continue };
        if lock.try_lock().is_ok() {
            let dir = stage_dir_of(&lock_path);
            if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                let _ = std::fs::remove_file(&lock_path);
            }
        }
    }
}

/// Rows in one file of a part before the next file starts. A Parquet writer keeps every row
/// group's metadata until it closes, and with it the statistics' values, which for decimals are
/// slices of the whole batch they came from (parquet's contiguous decimal buffer): at 5M
/// payments in one file that was about 100 MB of the peak heap, growing with the file. 16 row
/// groups a file bounds it, and is a data file of about 150 MB.
const PART_FILE_ROWS: u64 = 16 * crate::write::ROW_GROUP_ROWS as u64;

/// Writes one part: one stream's rows of a table from one worker, in files of at most
/// `PART_FILE_ROWS` rows.
pub struct PartWriter {
    table: String,
    /// The table's staging directory.
    dir: PathBuf,
    /// The files' name without their number and extension.
    name: String,
    schema: arrow::datatypes::SchemaRef,
    props: parquet::file::properties::WriterProperties,
    /// The file being written, its path and its rows.
    open: Option<(PathBuf, ArrowWriter<File>, u64)>,
    /// Files written to the end.
    closed: Vec<PathBuf>,
    rows: u64,
    /// `PART_FILE_ROWS`, but for tests.
    file_rows: u64,
}

/// A part written to the end.
pub struct FinishedPart {
    table: String,
    /// Rows in the part.
    pub rows: u64,
    files: Vec<PathBuf>,
}

impl FinishedPart {
    /// Drops the part: its stream failed after it was written.
    pub fn discard(self) {
        for path in &self.files {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn parquet_err(table: &str) -> impl FnOnce(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet { table: table.to_string(), source }
}

impl PartWriter {
    /// A part of `table` in `dir`, its files named `<name>-<n>.parquet`, with its first file open.
    fn new(
        table: &str,
        dir: PathBuf,
        name: String,
        schema: arrow::datatypes::SchemaRef,
        props: parquet::file::properties::WriterProperties,
        file_rows: u64,
    ) -> Result<Self> {
        let mut writer = Self {
            table: table.to_string(),
            dir,
            name,
            schema,
            props,
            open: None,
            closed: Vec::new(),
            rows: 0,
            file_rows,
        };
        writer.start_file()?;
        Ok(writer)
    }

    fn start_file(&mut self) -> Result<()> {
        let n = self.closed.len();
        let path = self.dir.join(format!("{}-{n:04}.parquet", self.name));
        let file = File::create(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let writer = ArrowWriter::try_new(file, std::sync::Arc::clone(&self.schema), Some(self.props.clone()))
            .map_err(parquet_err(&self.table))?;
        self.open = Some((path, writer, 0));
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some((path, writer, _)) = self.open.take() {
            // Listed before it closes, so that a discard removes a file that failed to close.
            self.closed.push(path);
            writer.close().map_err(parquet_err(&self.table))?;
        }
        Ok(())
    }

    /// Appends rows.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.open.as_ref().is_some_and(|(_, _, rows)| *rows >= self.file_rows) {
            self.close_file()?;
            self.start_file()?;
        }
        self.rows += batch.num_rows() as u64;
        let Some((_, writer, rows)) = self.open.as_mut() else {
            return Err(Error::Internal { message: format!("{}: a part written after its end", self.table) });
        };
        *rows += batch.num_rows() as u64;
        writer.write(batch).map_err(parquet_err(&self.table))
    }

    /// Closes the part; a part that cannot be closed is removed, so that no commit reads it.
    pub fn finish(mut self) -> Result<FinishedPart> {
        match self.close_file() {
            Ok(()) => Ok(FinishedPart { files: std::mem::take(&mut self.closed), table: self.table, rows: self.rows }),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Drops the part (its file failed).
    pub fn discard(mut self) {
        if let Some((path, writer, _)) = self.open.take() {
            drop(writer);
            self.closed.push(path);
        }
        for path in &self.closed {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    const KEY: &str = "payment_key";

    #[test]
    fn a_killed_runs_staging_is_removed_by_the_next_run_and_a_live_ones_is_not() {
        let root = tempfile::tempdir().expect("tempdir");
        let live = Staging::new_in(root.path()).expect("staging");
        std::fs::create_dir(live.table_dir("crm/people")).expect("mkdir");
        // What a killed run leaves: its directory with parts, and its lock file, unlocked.
        let dead = root.path().join("opslake-stage-killed");
        std::fs::create_dir_all(dead.join("crm__people")).expect("mkdir");
        std::fs::write(dead.join("crm__people/part-000001-00-0000.parquet"), b"parts").expect("write");
        std::fs::write(root.path().join("opslake-stage-killed.lock"), b"").expect("write");
        // Not staging: left alone whatever its name.
        std::fs::create_dir(root.path().join("opslake-stage-other")).expect("mkdir");

        let next = Staging::new_in(root.path()).expect("staging");
        assert!(!dead.exists());
        assert!(!root.path().join("opslake-stage-killed.lock").exists());
        assert!(live.table_dir("crm/people").exists(), "a live run's staging is kept");
        assert!(root.path().join("opslake-stage-other").exists());

        let (live_dir, next_dir) = (live.dir.clone(), next.dir.clone());
        drop(live);
        drop(next);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        left.sort();
        assert_eq!(left, ["opslake-stage-other"], "{live_dir:?} {next_dir:?}");
    }

    /// Stages `keys` as one part of `table`, as a mapping worker would: the part's file and the
    /// keys' digests.
    fn stage(staging: &Staging, table: &str, part: &str, keys: &[&str]) {
        let schema = Arc::new(Schema::new(vec![Field::new(KEY, DataType::Utf8, false)]));
        let values = StringArray::from(keys.to_vec());
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values.clone())]).expect("batch");
        let dir = staging.table_dir(table);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = File::create(dir.join(format!("part-{part}.parquet"))).expect("part");
        let mut writer = ArrowWriter::try_new(file, schema, None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        staging.track_keys(table, Some(&values));
    }

    #[test]
    fn repeated_keys_are_found_among_canonical_and_other_keys() {
        let staging = Staging::new().expect("staging");
        let key = [KEY.to_string()];
        // Canonical keys are 32 lower-case hex digits (`stable_key`, a SHA-256 prefix).
        let a = "5d0b3c6a1f2e4b7a9c8d0e1f2a3b4c5d".to_string();
        let b = "e3b0c44298fc1c149afbf4c8996fb924".to_string();
        // A canonical key's digest is its own leading 64 bits.
        let hasher = RandomState::new();
        assert_eq!(digest(&hasher, &a), u64::from_str_radix(&a[..16], 16).expect("hex"));
        // Keys that only look canonical (upper case, wrong length) are hashed.
        let upper = a.to_uppercase();
        assert_ne!(digest(&hasher, &upper), digest(&hasher, &a));
        stage(&staging, "finance/payments", "000001-00", &[a.as_str(), "plain-1", upper.as_str()]);
        stage(&staging, "finance/payments", "000001-01", &[b.as_str(), "plain-1", a.as_str(), "plain-2"]);
        assert_eq!(
            staging.repeated_keys("finance/payments", &key).expect("reads the parts"),
            Some(vec![a.clone(), "plain-1".to_string()])
        );
        // Distinct keys: nothing to read back.
        stage(&staging, "finance/customers", "000001-00", &["c-1", "c-2"]);
        assert_eq!(staging.repeated_keys("finance/customers", &key).expect("digests only"), Some(Vec::new()));
        staging.track_keys("crm/people", None);
        assert_eq!(staging.repeated_keys("crm/people", &key).expect("nothing read"), None);
    }

    #[test]
    fn a_failed_files_keys_do_not_count_as_repeated() {
        let staging = Staging::new().expect("staging");
        let key = [KEY.to_string()];
        stage(&staging, "finance/payments", "000001-00", &["p-1", "p-2"]);
        // The second file failed: its part was discarded, its digests stay.
        stage(&staging, "finance/payments", "000002-00", &["p-2", "p-3"]);
        std::fs::remove_file(staging.table_dir("finance/payments").join("part-000002-00.parquet")).expect("discard");
        assert_eq!(staging.repeated_keys("finance/payments", &key).expect("reads the parts"), Some(Vec::new()));
    }

    #[test]
    fn digests_fill_blocks_of_fixed_size_and_repeats_across_blocks_are_found() {
        let staging = Staging::new().expect("staging");
        let key = [KEY.to_string()];
        let keys: Vec<String> = (0..=DIGEST_BLOCK + 100).map(|i| format!("k-{i}")).collect();
        let mut refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        // The first block's first key again, in the second block.
        refs.push("k-0");
        // Two chunks whose boundary is not a block's.
        stage(&staging, "finance/payments", "000001-00", &refs[..DIGEST_BLOCK - 10]);
        stage(&staging, "finance/payments", "000001-01", &refs[DIGEST_BLOCK - 10..]);
        {
            let all = staging.keys.lock().expect("lock");
            let blocks = &all["finance/payments"].digests;
            assert_eq!(blocks.iter().map(Vec::len).collect::<Vec<_>>(), vec![DIGEST_BLOCK, 102]);
            assert!(blocks.iter().all(|b| b.capacity() == DIGEST_BLOCK), "every block is allocated once");
        }
        assert_eq!(
            staging.repeated_keys("finance/payments", &key).expect("reads the parts"),
            Some(vec!["k-0".to_string()])
        );
    }

    #[test]
    fn a_part_goes_on_in_a_new_file_and_a_discard_removes_every_file() {
        let staging = Staging::new().expect("staging");
        let dir = staging.table_dir("finance/payments");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let schema = Arc::new(Schema::new(vec![Field::new(KEY, DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(vec!["a", "b"]))])
            .expect("batch");
        let files = |prefix: &str| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect();
            names.sort();
            names
        };
        let part = |name: &str| {
            let props = parquet::file::properties::WriterProperties::default();
            let mut writer =
                PartWriter::new("finance/payments", dir.clone(), name.to_string(), Arc::clone(&schema), props, 3)
                    .expect("first file");
            for _ in 0..3 {
                writer.write(&batch).expect("write");
            }
            writer
        };

        // 2 + 2 rows reach the limit of 3; the third batch starts the next file.
        let finished = part("part-000001-00").finish().expect("finish");
        assert_eq!(finished.rows, 6);
        let names = files("part-000001-00");
        assert_eq!(names, ["part-000001-00-0000.parquet", "part-000001-00-0001.parquet"]);
        let rows: Vec<i64> = names
            .iter()
            .map(|n| {
                let file = File::open(dir.join(n)).expect("open");
                ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").metadata().file_metadata().num_rows()
            })
            .collect();
        assert_eq!(rows, [4, 2]);

        part("part-000002-00").discard();
        assert!(files("part-000002-00").is_empty(), "a discarded part leaves no file");
        assert_eq!(files("part-000001-00").len(), 2, "other parts stay");
    }
}
