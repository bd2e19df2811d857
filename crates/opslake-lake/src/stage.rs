//! Local staging: each table's mapped rows for one input file go to their own Parquet part, so a
//! run holds at most a batch per table in memory and a failed file is dropped by deleting its
//! parts.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::{Error, Result};

/// Staged Parquet parts per table for one run, in a temporary directory removed on drop.
pub struct Staging {
    dir: tempfile::TempDir,
    tables: BTreeSet<String>,
}

impl Staging {
    /// A new empty staging area.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("opslake-stage-")
            .tempdir()
            .map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
        Ok(Self { dir, tables: BTreeSet::new() })
    }

    /// The directory holding `table`'s parts.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.dir.path().join(table.replace('/', "__"))
    }

    /// Tables with at least one part.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(String::as_str)
    }

    /// A writer for one file's rows of `table`, named after the file's position in the run.
    pub fn part_writer(&self, table: &str, part: usize, schema: arrow::datatypes::SchemaRef) -> Result<PartWriter> {
        let dir = self.table_dir(table);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let path = dir.join(format!("part-{part:06}.parquet"));
        let file = File::create(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        // Staging is read once, locally: fast compression beats small files.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(64 * 1024))
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|source| Error::Parquet { table: table.to_string(), source })?;
        Ok(PartWriter { table: table.to_string(), path, writer, rows: 0 })
    }

    /// Keeps a finished part for commit: its table is committed from its directory.
    pub fn keep(&mut self, part: FinishedPart) {
        self.tables.insert(part.table);
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
