//! Raw rows as readers produce them: every cell a string (or null), columns named by the
//! export's own headers, each row with its record number and line for lineage and errors.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};

/// Rows per batch: memory is bounded by this times the row width, never by file size.
pub const BATCH_ROWS: usize = 8192;

/// A batch of raw rows.
#[derive(Debug, Clone)]
pub struct RawChunk {
    /// One nullable Utf8 column per header.
    pub batch: RecordBatch,
    /// 1-based record number of each row within the file.
    pub rows: Vec<u64>,
    /// 1-based line (CSV) or record (JSON) where each row starts, for messages.
    pub lines: Vec<u64>,
    /// Rows the reader could not turn into a row (ragged, invalid JSON, bad bytes).
    pub rejects: Vec<RawReject>,
}

/// A record the reader itself rejected; it counts as read and rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReject {
    /// 1-based record number.
    pub row: u64,
    /// 1-based line where it starts.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
    /// The record as text, so nothing is lost.
    pub raw: String,
    /// A summary row the shape declares (`summary_rows`): the export's own total, kept in
    /// `_rejects` as SUMMARY rather than as an error.
    pub summary: bool,
}

/// What a reader passed over without reading as data, reported in the file summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines before the header (titles, date ranges).
    pub preamble_lines: u64,
    /// Blank lines or records with every cell empty.
    pub blank: u64,
}

/// Collects rows cell by cell into a [`RawChunk`].
pub struct ChunkBuilder {
    names: Vec<String>,
    builders: Vec<StringBuilder>,
    rows: Vec<u64>,
    lines: Vec<u64>,
    rejects: Vec<RawReject>,
}

impl ChunkBuilder {
    /// A builder for columns `names`.
    pub fn new(names: Vec<String>) -> Self {
        let builders = names.iter().map(|_| StringBuilder::new()).collect();
        Self { names, builders, rows: Vec::new(), lines: Vec::new(), rejects: Vec::new() }
    }

    /// Rows added so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no row and no reject was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.rejects.is_empty()
    }

    /// Appends one cell to column `i`; call once per column per row, then [`Self::end_row`].
    pub fn push(&mut self, i: usize, value: Option<&str>) {
        self.builders[i].append_option(value);
    }

    /// Ends a row started with [`Self::push`] calls.
    pub fn end_row(&mut self, row: u64, line: u64) {
        self.rows.push(row);
        self.lines.push(line);
    }

    /// Records a reader-level reject.
    pub fn reject(&mut self, reject: RawReject) {
        self.rejects.push(reject);
    }

    /// The chunk, leaving the builder empty for the next one.
    pub fn finish(&mut self) -> RawChunk {
        let fields: Vec<Field> = self.names.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect();
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(self.rows.len()));
        let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
            .expect("every column has one value per row");
        RawChunk {
            batch,
            rows: std::mem::take(&mut self.rows),
            lines: std::mem::take(&mut self.lines),
            rejects: std::mem::take(&mut self.rejects),
        }
    }
}

/// `chunk` from wide to long (see [`crate::spec::Unpivot`]): one row per non-null cell of the
/// columns not in `keep`, each keeping its record's row and line.
pub fn unpivot(chunk: RawChunk, spec: &crate::spec::Unpivot) -> RawChunk {
    let schema = chunk.batch.schema();
    let columns: Vec<&StringArray> = chunk
        .batch
        .columns()
        .iter()
        .map(|c| c.as_any().downcast_ref::<StringArray>().expect("raw columns are Utf8"))
        .collect();
    let keep: Vec<usize> = spec.keep.iter().filter_map(|k| schema.index_of(k).ok()).collect();
    let spread: Vec<usize> = (0..columns.len()).filter(|i| !keep.contains(i)).collect();
    let mut names: Vec<String> = keep.iter().map(|&i| schema.field(i).name().clone()).collect();
    names.push(spec.name.clone());
    names.push(spec.value.clone());
    let mut b = ChunkBuilder::new(names);
    for row in 0..chunk.batch.num_rows() {
        for &j in &spread {
            if columns[j].is_null(row) {
                continue;
            }
            for (k, &i) in keep.iter().enumerate() {
                b.push(k, (!columns[i].is_null(row)).then(|| columns[i].value(row)));
            }
            b.push(keep.len(), Some(schema.field(j).name()));
            b.push(keep.len() + 1, Some(columns[j].value(row)));
            b.end_row(chunk.rows[row], chunk.lines[row]);
        }
    }
    for r in chunk.rejects {
        b.reject(r);
    }
    b.finish()
}

/// Makes header names unique and non-empty: a repeated `Create Date` becomes
/// `Create Date (2)`, an empty header `column_7`.
pub fn unique_headers(raw: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, h) in raw.into_iter().enumerate() {
        let base = h.trim().trim_start_matches('\u{feff}').to_string();
        let base = if base.is_empty() { format!("column_{}", i + 1) } else { base };
        let mut name = base.clone();
        let mut n = 2;
        while out.contains(&name) {
            name = format!("{base} ({n})");
            n += 1;
        }
        out.push(name);
    }
    out
}

/// Null-marker test shared by all readers: empty or whitespace-only cells, and the declared
/// markers (compared after trimming).
#[derive(Debug, Clone, Default)]
pub struct NullMarkers(Vec<String>);

impl NullMarkers {
    /// Markers beyond the empty cell.
    pub fn new(markers: &[String]) -> Self {
        Self(markers.iter().map(|m| m.trim().to_string()).collect())
    }

    /// True when `value` means "no value".
    pub fn is_null(&self, value: &str) -> bool {
        let t = value.trim();
        t.is_empty() || self.0.iter().any(|m| m == t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_and_empty_headers_become_unique() {
        let h = unique_headers(["Create Date", "Phone", "Create Date", "", "Create Date"].map(String::from));
        assert_eq!(h, ["Create Date", "Phone", "Create Date (2)", "column_4", "Create Date (3)"]);
    }

    #[test]
    fn unpivot_makes_a_row_per_filled_cell() {
        let mut b = ChunkBuilder::new(vec!["Date".into(), "USD".into(), "JPY".into(), "column_4".into()]);
        for (i, (d, usd, jpy)) in [("2024-01-05", Some("1.0921"), Some("158.48")), ("2024-01-04", Some("1.0944"), None)]
            .into_iter()
            .enumerate()
        {
            b.push(0, Some(d));
            b.push(1, usd);
            b.push(2, jpy);
            b.push(3, None);
            b.end_row(i as u64 + 1, i as u64 + 2);
        }
        let spec = crate::spec::Unpivot { keep: vec!["Date".into()], name: "currency".into(), value: "rate".into() };
        let long = unpivot(b.finish(), &spec);
        assert_eq!(long.batch.num_rows(), 3);
        assert_eq!(long.rows, [1, 1, 2]);
        assert_eq!(long.lines, [2, 2, 3]);
        let col = |n: &str| {
            let c = long.batch.column_by_name(n).expect("column");
            let c = c.as_any().downcast_ref::<StringArray>().expect("utf8");
            (0..c.len()).map(|i| c.value(i).to_string()).collect::<Vec<_>>()
        };
        assert_eq!(col("currency"), ["USD", "JPY", "USD"]);
        assert_eq!(col("rate"), ["1.0921", "158.48", "1.0944"]);
        assert_eq!(col("Date"), ["2024-01-05", "2024-01-05", "2024-01-04"]);
    }

    #[test]
    fn null_markers_are_trimmed() {
        let m = NullMarkers::new(&["--".to_string(), "null".to_string()]);
        assert!(m.is_null(" --") && m.is_null("null") && m.is_null("  ") && !m.is_null("0"));
    }
}
