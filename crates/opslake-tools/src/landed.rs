//! Files that other tools landed: Parquet from any writer, and the layouts of the loaders that
//! copy a tool's records for a warehouse (Airbyte, Fivetran, dlt), recognised by the metadata
//! columns only they write, never by a file name.
//!
//! What comes out is a stream of records, one JSON object per line, written by opslake:
//! Parquet's rows as arrow-json writes them (a nested struct stays nested, a timestamp is
//! ISO 8601); a loader's records unwrapped the way its own conventions say. Such a stream is
//! matched against every shape by its records' fields, whatever format the shape was written
//! for: a Fivetran table is the same table whether it was dumped as CSV or landed as Parquet,
//! and an API object is the same object whether it came in a paged response or one per row.

use std::io::{self, BufRead, BufReader, Read};

use serde_json::{Map, Value};

/// A loader that lands tool records for warehouses, told apart by its metadata columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// Airbyte: `_airbyte_raw_id`/`_airbyte_extracted_at` (destinations v2) or
    /// `_airbyte_ab_id`/`_airbyte_emitted_at` (v1), the record as `_airbyte_data` or its
    /// fields beside them; the stream is the file's (or its folder's) name.
    Airbyte,
    /// Fivetran: `_fivetran_synced`; a soft delete is `_fivetran_deleted`.
    Fivetran,
    /// dlt: `_dlt_load_id` and `_dlt_id`; nested fields flattened with `__`.
    Dlt,
}

impl Loader {
    /// How messages and `inspect` name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Airbyte => "Airbyte",
            Self::Fivetran => "Fivetran",
            Self::Dlt => "dlt",
        }
    }

    /// The loader whose metadata columns `columns` holds.
    pub fn of<S: AsRef<str>>(columns: &[S]) -> Option<Self> {
        let has = |name: &str| columns.iter().any(|c| c.as_ref() == name);
        if (has("_airbyte_raw_id") || has("_airbyte_ab_id"))
            && (has("_airbyte_data") || has("_airbyte_extracted_at") || has("_airbyte_emitted_at"))
        {
            Some(Self::Airbyte)
        } else if has("_fivetran_synced") {
            Some(Self::Fivetran)
        } else if has("_dlt_load_id") && has("_dlt_id") {
            Some(Self::Dlt)
        } else {
            None
        }
    }

    /// The column in which the loader marks a record the source deleted, and how: Fivetran's
    /// soft delete flag, Airbyte's CDC deletion time.
    pub fn deleted(self, columns: &[String]) -> Option<String> {
        let candidates: &[(&str, &str)] = match self {
            Self::Fivetran => &[("_fivetran_deleted", "parse_bool(\"_fivetran_deleted\")")],
            Self::Airbyte => &[
                ("data._ab_cdc_deleted_at", "\"data._ab_cdc_deleted_at\" IS NOT NULL"),
                ("_ab_cdc_deleted_at", "\"_ab_cdc_deleted_at\" IS NOT NULL"),
            ],
            Self::Dlt => &[],
        };
        candidates.iter().find(|(c, _)| columns.iter().any(|x| x == c)).map(|(_, sql)| (*sql).to_string())
    }
}

/// `shape` with the loader's conventions: a row the loader marks deleted is `is_deleted`,
/// whatever the source's own flag (which a shape may map) says.
pub fn with_loader_defaults(
    mut shape: crate::spec::Shape,
    loader: Option<Loader>,
    columns: &[String],
) -> crate::spec::Shape {
    let Some(deleted) = loader.and_then(|l| l.deleted(columns)) else { return shape };
    for output in &mut shape.outputs {
        let column = output.table.envelope(opslake_schema::EnvelopeRole::IsDeleted).name.clone();
        let sql = match output.columns.get(&column) {
            Some(own) => format!("CASE WHEN {deleted} THEN 'true' ELSE CAST(({own}) AS VARCHAR) END"),
            None => deleted.clone(),
        };
        output.columns.insert(column, sql);
    }
    shape
}

/// The first record's fields: a JSON line's keys, else a delimited header's cells.
pub(crate) fn first_columns(sample: &str) -> Vec<String> {
    let first = sample.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    if first.trim_start().starts_with('{') {
        return match serde_json::from_str::<Value>(first) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
    }
    let delimiter = crate::csv_reader::sniff_delimiter(sample);
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).from_reader(first.as_bytes());
    reader.records().next().and_then(|r| r.ok()).map(|r| r.iter().map(str::to_string).collect()).unwrap_or_default()
}

/// Whether the loader's records are rewritten: Fivetran writes tables as the tool's objects,
/// flattened, which shapes read as they are.
pub(crate) fn rewrites(loader: Loader) -> bool {
    loader != Loader::Fivetran
}

/// A loader's stream (UTF-8 text: JSON lines, or delimited with a header) as records.
pub(crate) fn rewrite<'a>(loader: Loader, name: &str, sample: &str, text: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
    let transform: Transform = match loader {
        Loader::Fivetran => return text,
        Loader::Dlt => Box::new(unflatten_dlt),
        Loader::Airbyte => {
            let stream = airbyte_stream(name);
            Box::new(move |record| airbyte_envelope(record, &stream))
        }
    };
    let source = if sample.trim_start().starts_with('{') { Records::lines(text) } else { Records::csv(text, sample) };
    Box::new(RecordLines::new(source, transform))
}

/// Airbyte names no stream inside its destination files: the local destinations call the file
/// `_airbyte_raw_<stream>`, the object-store ones put `<stream>/<date>_<epoch>_<part>` files
/// in a folder named after it.
fn airbyte_stream(name: &str) -> String {
    let mut parts = name.rsplit(['/', '\\', '!']);
    let file = parts.next().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default();
    let stem = stem.strip_prefix("_airbyte_raw_").unwrap_or(stem);
    if stem.is_empty() || stem.starts_with(|c: char| c.is_ascii_digit()) {
        parts.next().filter(|p| !p.is_empty()).unwrap_or(stem).to_string()
    } else {
        stem.to_string()
    }
}

/// An Airbyte destination record as the Airbyte protocol's `{stream, emitted_at, data}`, the
/// layout tool files map: `_airbyte_data` when the record is there (as an object or its JSON
/// text), else every field that is not Airbyte's own. Airbyte's other columns stay beside.
fn airbyte_envelope(record: Map<String, Value>, stream: &str) -> Value {
    let mut out = Map::new();
    out.insert("stream".into(), Value::String(stream.to_string()));
    let mut data = Map::new();
    let mut raw_data = None;
    let mut rest = Map::new();
    for (key, value) in record {
        match key.as_str() {
            "_airbyte_data" => raw_data = Some(value),
            "_airbyte_emitted_at" | "_airbyte_extracted_at" => {
                out.insert("emitted_at".into(), value.clone());
                rest.insert(key, value);
            }
            k if k.starts_with("_airbyte_") => {
                rest.insert(key, value);
            }
            _ => {
                data.insert(key, value);
            }
        }
    }
    let data = match raw_data {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Some(value) => value,
        None => Value::Object(data),
    };
    out.insert("data".into(), data);
    out.extend(rest);
    Value::Object(out)
}

/// dlt flattens nested objects into `parent__child` columns; nested again, the record has the
/// API's own paths (`properties.email`), the ones tool files map.
fn unflatten_dlt(record: Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (key, value) in record {
        let path: Vec<&str> = if key.starts_with("_dlt_") { vec![key.as_str()] } else { key.split("__").collect() };
        insert_path(&mut out, &path, value);
    }
    Value::Object(out)
}

fn insert_path(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let slot = map.entry((*first).to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                // A scalar and a nested field of the same name: keep both, the field flat.
                map.insert(path.join("__"), value);
                return;
            }
            if let Value::Object(inner) = slot {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Records read from JSON lines or a delimited file with a header.
enum Records<'a> {
    Lines(io::Lines<BufReader<Box<dyn Read + 'a>>>),
    Csv { headers: Vec<String>, rows: csv::StringRecordsIntoIter<Box<dyn Read + 'a>> },
}

/// One input line or row: a record, or text passed on as it came so the reader rejects it
/// with its own line number and reason.
enum Item {
    Record(Map<String, Value>),
    Verbatim(String),
}

impl<'a> Records<'a> {
    fn lines(text: Box<dyn Read + 'a>) -> Self {
        Self::Lines(BufReader::new(text).lines())
    }

    fn csv(text: Box<dyn Read + 'a>, sample: &str) -> Self {
        let delimiter = crate::csv_reader::sniff_delimiter(sample);
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(text);
        let headers = reader.headers().map(|h| h.iter().map(str::to_string).collect()).unwrap_or_default();
        Self::Csv { headers, rows: reader.into_records() }
    }

    fn next(&mut self) -> Option<io::Result<Item>> {
        match self {
            Self::Lines(lines) => Some(lines.next()?.map(|line| match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(map)) => Item::Record(map),
                _ => Item::Verbatim(line),
            })),
            Self::Csv { headers, rows } => Some(match rows.next()? {
                Ok(row) => Ok(Item::Record(
                    headers
                        .iter()
                        .zip(row.iter())
                        .map(|(h, v)| {
                            (h.clone(), if v.is_empty() { Value::Null } else { Value::String(v.to_string()) })
                        })
                        .collect(),
                )),
                Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }),
        }
    }
}

type Transform = Box<dyn FnMut(Map<String, Value>) -> Value>;

/// Records rewritten, as JSON lines.
struct RecordLines<'a> {
    source: Records<'a>,
    transform: Transform,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> RecordLines<'a> {
    fn new(source: Records<'a>, transform: Transform) -> Self {
        Self { source, transform, buf: Vec::new(), pos: 0 }
    }
}

impl Read for RecordLines<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            match self.source.next() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(Item::Verbatim(line))) => self.buf.extend_from_slice(line.as_bytes()),
                Some(Ok(Item::Record(record))) => {
                    serde_json::to_writer(&mut self.buf, &(self.transform)(record)).map_err(io::Error::other)?;
                }
            }
            self.buf.push(b'\n');
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A Parquet file's rows as JSON lines, one row group batch at a time: memory holds one batch,
/// never the file.
pub(crate) struct ParquetLines {
    batches: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    buf: Vec<u8>,
    pos: usize,
}

impl ParquetLines {
    /// Opens `file` as Parquet; the error says why it cannot be read.
    pub(crate) fn open(file: std::fs::File) -> Result<Self, String> {
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        let batches = builder.with_batch_size(4096).build().map_err(|e| e.to_string())?;
        Ok(Self { batches, buf: Vec::new(), pos: 0 })
    }
}

impl Read for ParquetLines {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            let Some(batch) = self.batches.next() else { return Ok(0) };
            let batch = batch.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("Parquet: {e}")))?;
            // Every column on every line, null or not, so a record's fields are the schema's.
            let mut writer = arrow_json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow_json::writer::LineDelimited>(&mut self.buf);
            writer.write(&batch).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("Parquet: {e}")))?;
            writer.finish().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("Parquet: {e}")))?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(loader: Loader, name: &str, text: &str) -> Vec<Value> {
        let mut out = String::new();
        rewrite(loader, name, text, Box::new(io::Cursor::new(text.as_bytes().to_vec())))
            .read_to_string(&mut out)
            .expect("reads");
        out.lines().map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.to_string()))).collect()
    }

    #[test]
    fn loaders_are_told_by_their_metadata_columns() {
        assert_eq!(
            Loader::of(&["_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta", "id"]),
            Some(Loader::Airbyte)
        );
        assert_eq!(Loader::of(&["_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_data"]), Some(Loader::Airbyte));
        assert_eq!(Loader::of(&["id", "name", "_fivetran_synced"]), Some(Loader::Fivetran));
        assert_eq!(Loader::of(&["id", "_dlt_load_id", "_dlt_id"]), Some(Loader::Dlt));
        // One column of a loader's name is not evidence enough: a user may call a column so.
        assert_eq!(Loader::of(&["id", "_airbyte_data"]), None);
        assert_eq!(Loader::of(&["id", "_dlt_id"]), None);
    }

    #[test]
    fn airbyte_streams_are_named_by_file_or_folder() {
        assert_eq!(airbyte_stream("out/_airbyte_raw_companies.jsonl"), "companies");
        assert_eq!(airbyte_stream("bucket/hubspot/deals/2024_01_15_1705312345678_0.jsonl.gz"), "deals");
        assert_eq!(airbyte_stream("a.zip!contacts/2024_01_15_1705312345678_0.csv"), "contacts");
        assert_eq!(airbyte_stream("owners.jsonl"), "owners");
    }

    #[test]
    fn airbyte_records_become_the_protocol_envelope() {
        let v2 = "{\"_airbyte_raw_id\":\"r1\",\"_airbyte_extracted_at\":1705312345678,\"_airbyte_meta\":{\"changes\":[]},\"_airbyte_data\":{\"id\":\"7\",\"properties\":{\"name\":\"Acme\"}}}\nnot json\n";
        let got = rewritten(Loader::Airbyte, "x/companies/2024_01_15_1_0.jsonl", v2);
        assert_eq!(got[0]["stream"], "companies");
        assert_eq!(got[0]["emitted_at"], 1705312345678u64);
        assert_eq!(got[0]["data"]["properties"]["name"], "Acme");
        assert_eq!(got[0]["_airbyte_raw_id"], "r1");
        assert_eq!(got[1], Value::String("not json".into()), "passed on for the reader to reject");
        // The CSV destination keeps the record as JSON text; flattened, the fields are columns.
        let csv = "_airbyte_ab_id,_airbyte_emitted_at,_airbyte_data\nr1,1705312345678,\"{\"\"id\"\":\"\"7\"\"}\"\n";
        let got = rewritten(Loader::Airbyte, "_airbyte_raw_owners.csv", csv);
        assert_eq!((got[0]["stream"].as_str(), got[0]["data"]["id"].as_str()), (Some("owners"), Some("7")));
        let flat = "_airbyte_ab_id,_airbyte_emitted_at,id,email\nr1,1705312345678,7,\n";
        let got = rewritten(Loader::Airbyte, "_airbyte_raw_owners.csv", flat);
        assert_eq!((got[0]["data"]["id"].as_str(), got[0]["data"]["email"].is_null()), (Some("7"), true));
    }

    #[test]
    fn dlt_nesting_is_restored() {
        let line = "{\"id\":\"7\",\"properties__email\":\"a@b.c\",\"properties__address__city\":\"Lyon\",\"_dlt_load_id\":\"1\",\"_dlt_id\":\"x\"}\n";
        let got = rewritten(Loader::Dlt, "contacts/1.x.jsonl", line);
        assert_eq!(got[0]["properties"]["address"]["city"], "Lyon");
        assert_eq!(got[0]["properties"]["email"], "a@b.c");
        assert_eq!(got[0]["_dlt_id"], "x");
    }
}
