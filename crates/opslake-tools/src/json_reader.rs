//! JSON readers: a document (records under a path, or the whole document as one record) and
//! JSON Lines. Nested objects are flattened to dotted column names (`properties.email`),
//! arrays are kept as JSON text unless a path is exploded into one row per element.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use serde_json::Value;

use crate::raw::{BATCH_ROWS, ChunkBuilder, NullMarkers, RawChunk, RawReject};
use crate::{Error, Result};

/// Where records are and how to shape them.
#[derive(Debug, Clone, Default)]
pub struct JsonOptions {
    /// Dotted path to the records (`records`, `data.items`); empty: the document itself, or
    /// each element when the document is an array.
    pub records: Option<String>,
    /// Dotted paths, inside a record, to arrays whose elements each become a row, with the
    /// parent's fields beside theirs (prefixed by the path). With one path the record's rows
    /// are its elements; with several (a payroll's earnings, taxes and deductions), the record
    /// is a row of its own and each element of each array one more.
    pub explode: Vec<String>,
    /// With `records`: the document's own fields around the records (a payroll's id and pay
    /// period around its employees' pay) beside every record's, as `#parent.<path>` columns.
    pub parent: bool,
    /// Values meaning "no value" besides JSON null and the empty string.
    pub nulls: NullMarkers,
}

/// One record flattened to (column, value) pairs.
pub type FlatRecord = Vec<(String, Option<String>)>;

/// Flattens `value` into `out`: objects recurse with `prefix.key`, arrays and scalars become
/// text (strings as they are, numbers and booleans as JSON writes them).
pub fn flatten(value: &Value, prefix: &str, out: &mut FlatRecord) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let name = if k == "#text" {
                    // An XML element's own text beside its attributes is the element's column,
                    // so `<CustomerRef name="Amy">3</CustomerRef>` and `<CustomerRef>3</CustomerRef>`
                    // both give CustomerRef = 3.
                    prefix.to_string()
                } else if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &name, out);
            }
        }
        Value::Object(_) | Value::Null => out.push((prefix.to_string(), None)),
        Value::String(s) => out.push((prefix.to_string(), Some(s.clone()))),
        Value::Bool(b) => out.push((prefix.to_string(), Some(b.to_string()))),
        Value::Number(n) => out.push((prefix.to_string(), Some(n.to_string()))),
        Value::Array(_) => out.push((prefix.to_string(), Some(value.to_string()))),
    }
}

fn at_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(value, |v, key| v.get(key))
}

/// The rows one record yields: itself, or one per element of the exploded array(s).
pub fn record_rows(record: &Value, opts: &JsonOptions) -> Vec<FlatRecord> {
    match opts.explode.as_slice() {
        [] => {
            let mut flat = Vec::new();
            flatten(record, "", &mut flat);
            vec![flat]
        }
        [path] => single_array_rows(record, path),
        paths => several_array_rows(record, paths),
    }
}

fn single_array_rows(record: &Value, path: &str) -> Vec<FlatRecord> {
    if let Some((outer, inner)) = array_on_the_way(record, path) {
        return nested_array_rows(record, outer, inner);
    }
    let mut parent = record.clone();
    let children = take_at_path(&mut parent, path);
    let mut base = Vec::new();
    flatten(&parent, "", &mut base);
    match children {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let mut row = base.clone();
                row.push((index_column(path), Some((i + 1).to_string())));
                flatten(item, path, &mut row);
                row
            })
            .collect(),
        // A record without the array (or with one element that XML could not tell from a
        // scalar or an object) is still one row, the first.
        other => {
            let mut row = base;
            let first = other.as_ref().is_some_and(|v| !v.is_null() && !matches!(v, Value::Array(_)));
            row.push((index_column(path), first.then(|| "1".to_string())));
            if let Some(v) = other {
                flatten(&v, path, &mut row);
            }
            vec![row]
        }
    }
}

/// Where `path` steps through an array before its end (a report's `Rows.Rows`: sections,
/// each with its rows): the path up to that array and the rest of it.
fn array_on_the_way<'p>(record: &Value, path: &'p str) -> Option<(&'p str, &'p str)> {
    let mut cur = record;
    for (at, _) in path.match_indices('.') {
        let (outer, rest) = (&path[..at], &path[at + 1..]);
        cur = at_path(cur, outer.rsplit('.').next().unwrap_or(outer))?;
        if cur.is_array() {
            return Some((outer, rest));
        }
    }
    None
}

/// One row per element of the inner arrays of each element of the outer one, beside the
/// record's fields and the outer element's own (a section's title beside each of its rows);
/// an outer element without the inner array is one row of its own. Both levels are indexed
/// on every row (null where there is no element).
fn nested_array_rows(record: &Value, outer: &str, inner: &str) -> Vec<FlatRecord> {
    let mut parent = record.clone();
    let items = take_at_path(&mut parent, outer);
    let mut base = Vec::new();
    flatten(&parent, "", &mut base);
    let items = match items {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            base.push((index_column(outer), None));
            base.push((index_column(&format!("{outer}.{inner}")), None));
            return vec![base];
        }
    };
    items.iter().enumerate().flat_map(|(i, item)| outer_element_rows(&base, outer, i, item, inner)).collect()
}

/// The rows element `i` of the array at `outer` gives, each `base` and the element's position
/// beside its own inner rows, named from the record.
fn outer_element_rows(base: &FlatRecord, outer: &str, i: usize, item: &Value, inner: &str) -> Vec<FlatRecord> {
    // An element that is a scalar flattens to the empty name, which is the array's own.
    let under = |column: String| if column.is_empty() { outer.to_string() } else { format!("{outer}.{column}") };
    single_array_rows(item, inner)
        .into_iter()
        .map(|own| {
            let mut row = base.clone();
            row.push((index_column(outer), Some((i + 1).to_string())));
            row.extend(own.into_iter().map(|(c, v)| (under(c), v)));
            row
        })
        .collect()
}

/// The record's own row (every index null), then one row per element of each array in the
/// order the paths are given, each with its array's index set and the others null.
fn several_array_rows(record: &Value, paths: &[String]) -> Vec<FlatRecord> {
    let mut parent = record.clone();
    // A path through an array (Rows.Rows) takes the outer array, whose elements give rows.
    let nested: Vec<Option<(&str, &str)>> = paths.iter().map(|p| array_on_the_way(record, p)).collect();
    let children: Vec<Option<Value>> = paths
        .iter()
        .zip(&nested)
        .map(|(p, n)| take_at_path(&mut parent, n.map_or(p.as_str(), |(outer, _)| outer)))
        .collect();
    let mut base = Vec::new();
    flatten(&parent, "", &mut base);
    let indexes = |set: Option<(usize, usize)>| -> FlatRecord {
        paths
            .iter()
            .enumerate()
            .map(|(k, p)| (index_column(p), set.filter(|(which, _)| *which == k).map(|(_, i)| (i + 1).to_string())))
            .collect()
    };
    let mut rows = Vec::new();
    let mut own = base.clone();
    own.extend(indexes(None));
    rows.push(own);
    for (k, (path, items)) in paths.iter().zip(children).enumerate() {
        let items = match items {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => continue,
            Some(one) => vec![one],
        };
        for (i, item) in items.iter().enumerate() {
            match nested[k] {
                None => {
                    let mut row = base.clone();
                    row.extend(indexes(Some((k, i))));
                    flatten(item, path, &mut row);
                    rows.push(row);
                }
                // The inner element's index is this path's, as a single path gives it.
                Some((outer, inner)) => {
                    let mut others = base.clone();
                    others.extend(indexes(None).into_iter().filter(|(c, _)| *c != index_column(path)));
                    rows.extend(outer_element_rows(&others, outer, i, item, inner));
                }
            }
        }
    }
    rows
}

/// The column holding an exploded element's position in its array, from 1 (null for a record
/// whose array is missing or empty): an output that wants one row per record takes position 1
/// or null.
pub fn index_column(path: &str) -> String {
    format!("{path}{INDEX_SUFFIX}")
}

/// The suffix of [`index_column`] names.
const INDEX_SUFFIX: &str = ".#index";

/// True for a column [`index_column`] made: the reader's, not the source's.
pub fn is_index_column(name: &str) -> bool {
    name.ends_with(INDEX_SUFFIX)
}

fn take_at_path(value: &mut Value, path: &str) -> Option<Value> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop()?;
    let mut cur = value;
    for p in parts {
        cur = cur.get_mut(p)?;
    }
    cur.as_object_mut()?.remove(last)
}

/// Builds chunks from flat records whose keys vary: each chunk's columns are the union of its
/// records' keys, in first-seen order.
struct FlatChunker {
    pending: Vec<(u64, u64, FlatRecord)>,
    rejects: Vec<RawReject>,
    nulls: NullMarkers,
}

impl FlatChunker {
    fn push(&mut self, row: u64, line: u64, rec: FlatRecord) {
        self.pending.push((row, line, rec));
    }

    fn full(&self) -> bool {
        self.pending.len() >= BATCH_ROWS
    }

    fn finish(&mut self) -> Option<RawChunk> {
        if self.pending.is_empty() && self.rejects.is_empty() {
            return None;
        }
        let mut names: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (_, _, rec) in &self.pending {
            for (k, _) in rec {
                if !index.contains_key(k) {
                    index.insert(k.clone(), names.len());
                    names.push(k.clone());
                }
            }
        }
        let mut builder = ChunkBuilder::new(names.clone());
        let mut cells: Vec<Option<&str>> = vec![None; names.len()];
        for (row, line, rec) in &self.pending {
            cells.iter_mut().for_each(|c| *c = None);
            for (k, v) in rec {
                cells[index[k]] = v.as_deref().filter(|v| !self.nulls.is_null(v));
            }
            for (i, c) in cells.iter().enumerate() {
                builder.push(i, *c);
            }
            builder.end_row(*row, *line);
        }
        for r in self.rejects.drain(..) {
            builder.reject(r);
        }
        self.pending.clear();
        Some(builder.finish())
    }
}

/// Reads a whole JSON document; its records are flattened in chunks.
pub struct JsonDocReader {
    rows: std::vec::IntoIter<(u64, FlatRecord)>,
    row: u64,
    chunker: FlatChunker,
}

impl JsonDocReader {
    /// Parses the document and locates its records.
    pub fn new(file: &str, mut reader: Box<dyn Read + '_>, opts: &JsonOptions) -> Result<Self> {
        let mut text = String::new();
        reader.read_to_string(&mut text).map_err(|e| Error::BadInput {
            file: file.to_string(),
            line: 0,
            message: format!("read failed: {e} (the file may be truncated or corrupt)"),
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| Error::BadInput {
            file: file.to_string(),
            line: e.line() as u64,
            message: format!("invalid JSON at column {}: {e}", e.column()),
        })?;
        Self::from_value(file, doc, opts)
    }

    /// Locates the records of an already parsed document.
    pub fn from_value(file: &str, doc: Value, opts: &JsonOptions) -> Result<Self> {
        let mut parent = Vec::new();
        if let Some(path) = opts.records.as_deref().filter(|p| opts.parent && !p.is_empty()) {
            let mut around = doc.clone();
            take_at_path(&mut around, path);
            flatten(&around, "#parent", &mut parent);
        }
        let records: Vec<Value> = match opts.records.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => match at_path(&doc, path) {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => {
                    return Err(Error::BadInput {
                        file: file.to_string(),
                        line: 0,
                        message: format!("no records at path '{path}'"),
                    });
                }
                Some(other) => vec![other.clone()],
            },
            None => match doc {
                Value::Array(items) => items,
                other => vec![other],
            },
        };
        let mut rows = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            rows.extend(record_rows(rec, opts).into_iter().map(|mut flat| {
                flat.extend(parent.iter().cloned());
                (i as u64 + 1, flat)
            }));
        }
        Ok(Self {
            rows: rows.into_iter(),
            row: 0,
            chunker: FlatChunker { pending: Vec::new(), rejects: Vec::new(), nulls: opts.nulls.clone() },
        })
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        for (record, flat) in self.rows.by_ref() {
            self.row += 1;
            self.chunker.push(self.row, record, flat);
            if self.chunker.full() {
                break;
            }
        }
        Ok(self.chunker.finish())
    }
}

/// Reads JSON Lines, one record per line; a line that is not JSON is rejected, not fatal.
pub struct JsonLinesReader<'a> {
    file: String,
    lines: std::io::Lines<BufReader<Box<dyn Read + 'a>>>,
    line: u64,
    row: u64,
    opts: JsonOptions,
    chunker: FlatChunker,
    blank: u64,
}

impl<'a> JsonLinesReader<'a> {
    /// A reader over `reader`.
    pub fn new(file: &str, reader: Box<dyn Read + 'a>, opts: &JsonOptions) -> Self {
        Self {
            file: file.to_string(),
            lines: BufReader::new(reader).lines(),
            line: 0,
            row: 0,
            opts: opts.clone(),
            chunker: FlatChunker { pending: Vec::new(), rejects: Vec::new(), nulls: opts.nulls.clone() },
            blank: 0,
        }
    }

    /// Blank lines passed over.
    pub fn blank_lines(&self) -> u64 {
        self.blank
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        while !self.chunker.full() {
            let Some(next) = self.lines.next() else { break };
            self.line += 1;
            let text = next.map_err(|e| Error::BadInput {
                file: self.file.clone(),
                line: self.line,
                message: format!("read failed: {e} (the file may be truncated, corrupt or not UTF-8)"),
            })?;
            if text.trim().is_empty() {
                self.blank += 1;
                continue;
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(value) => {
                    for flat in record_rows(&value, &self.opts) {
                        self.row += 1;
                        self.chunker.push(self.row, self.line, flat);
                    }
                }
                Err(e) => {
                    self.row += 1;
                    let raw: String = text.chars().take(10_000).collect();
                    self.chunker.rejects.push(RawReject {
                        row: self.row,
                        line: self.line,
                        reason: format!("invalid JSON: {e}"),
                        raw,
                        summary: false,
                    });
                }
            }
        }
        Ok(self.chunker.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringArray};

    fn col<'c>(c: &'c RawChunk, name: &str) -> &'c StringArray {
        let i = c.batch.schema().index_of(name).unwrap_or_else(|_| panic!("no column {name}"));
        c.batch.column(i).as_any().downcast_ref::<StringArray>().expect("utf8")
    }

    #[test]
    fn records_under_a_path_are_flattened() {
        let doc = r#"{"totalSize":2,"records":[{"attributes":{"type":"Account"},"Name":"A","Amount":220000,"IsPrivate":false},{"attributes":{"type":"Account"},"Name":"B","Tags":["x","y"]}]}"#;
        let opts = JsonOptions { records: Some("records".into()), ..JsonOptions::default() };
        let mut r = JsonDocReader::new("a.json", Box::new(doc.as_bytes()), &opts).expect("parses");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 2);
        assert_eq!(col(&c, "attributes.type").value(0), "Account");
        assert_eq!(col(&c, "Amount").value(0), "220000");
        assert_eq!(col(&c, "IsPrivate").value(0), "false");
        assert!(col(&c, "Amount").is_null(1));
        assert_eq!(col(&c, "Tags").value(1), r#"["x","y"]"#);
        assert_eq!(c.rows, [1, 2]);
        assert!(r.next_chunk().expect("reads").is_none());
    }

    #[test]
    fn several_arrays_give_the_record_its_own_row_and_one_per_element() {
        let doc: Value = serde_json::from_str(
            r#"{"uuid": "p1", "pay_period": {"start_date": "2026-01-01"}, "employee_compensations": [
                {"employee_uuid": "e1", "gross_pay": "100.00", "taxes": [{"name": "Fed", "amount": "10.00"}],
                 "deductions": [{"name": "401k", "amount": "5.00"}, {"name": "Health", "amount": "2.00"}]}]}"#,
        )
        .expect("json");
        let opts = JsonOptions {
            records: Some("employee_compensations".into()),
            explode: vec!["taxes".into(), "deductions".into()],
            parent: true,
            ..JsonOptions::default()
        };
        let mut r = JsonDocReader::from_value("p.json", doc, &opts).expect("records");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 4, "the record and its three elements");
        assert_eq!(c.lines, [1, 1, 1, 1], "all from the first record");
        let taxes = col(&c, "taxes.#index");
        let deductions = col(&c, "deductions.#index");
        let index = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        assert_eq!(
            (0..4).map(|i| (index(taxes, i), index(deductions, i))).collect::<Vec<_>>(),
            [(None, None), (Some("1".into()), None), (None, Some("1".into())), (None, Some("2".into()))]
        );
        assert_eq!(col(&c, "deductions.amount").value(3), "2.00");
        assert_eq!(col(&c, "#parent.pay_period.start_date").value(2), "2026-01-01");
        assert_eq!(col(&c, "gross_pay").value(1), "100.00", "record fields are on every row");
    }

    #[test]
    fn explodes_child_arrays_beside_parent_fields() {
        let doc = r#"[{"Id":"inv1","Line":[{"Amount":1},{"Amount":2}]},{"Id":"inv2","Line":[]}]"#;
        let opts = JsonOptions { explode: vec!["Line".into()], ..JsonOptions::default() };
        let mut r = JsonDocReader::new("i.json", Box::new(doc.as_bytes()), &opts).expect("parses");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 3);
        assert_eq!(col(&c, "Id").value(1), "inv1");
        assert_eq!(col(&c, "Line.Amount").value(1), "2");
        assert_eq!(col(&c, "Line.#index").value(1), "2");
        assert!(col(&c, "Line.#index").is_null(2), "a record with an empty array is one row with no position");
        assert_eq!(col(&c, "Id").value(2), "inv2");
    }

    #[test]
    fn an_exploded_path_through_an_array_gives_a_row_per_inner_element() {
        // A report's sections, each with its rows; a header row has no rows of its own.
        let doc = r#"[{"ReportDate":"31 Jan","Rows":[
            {"RowType":"Header"},
            {"RowType":"Section","Title":"Revenue","Rows":[{"RowType":"Row","Cells":[1]},{"RowType":"Row","Cells":[2]}]},
            {"RowType":"Section","Title":"Assets","Rows":[{"RowType":"Row","Cells":[3]}]}]}]"#;
        let opts = JsonOptions { explode: vec!["Rows.Rows".into()], ..JsonOptions::default() };
        let mut r = JsonDocReader::new("r.json", Box::new(doc.as_bytes()), &opts).expect("parses");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 4);
        assert_eq!(col(&c, "Rows.RowType").value(0), "Header");
        assert!(col(&c, "Rows.Rows.#index").is_null(0), "an outer element without rows is one row");
        assert_eq!(col(&c, "Rows.Title").value(2), "Revenue", "the section's fields are on each of its rows");
        assert_eq!(col(&c, "Rows.Rows.Cells").value(2), "[2]");
        assert_eq!(col(&c, "Rows.Rows.#index").value(2), "2");
        assert_eq!(col(&c, "Rows.#index").value(3), "3");
        assert_eq!(col(&c, "ReportDate").value(3), "31 Jan");

        // The same path in a list: the record's own row first, then the same four.
        let opts = JsonOptions { explode: vec!["Rows.Rows".into(), "Notes".into()], ..JsonOptions::default() };
        let mut r = JsonDocReader::new("r.json", Box::new(doc.as_bytes()), &opts).expect("parses");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 5);
        assert!(col(&c, "Rows.Rows.#index").is_null(0), "the record's own row");
        assert_eq!(col(&c, "Rows.Rows.Cells").value(3), "[2]");
        assert_eq!(col(&c, "Rows.Rows.#index").value(3), "2");
        assert_eq!(col(&c, "Rows.Title").value(4), "Assets");
    }

    #[test]
    fn xml_text_beside_attributes_is_the_element_column() {
        let doc = crate::xml_reader::parse_document(
            "p.xml",
            r#"<R><Payment><CustomerRef name="Amy">3</CustomerRef><DepositToAccountRef>4</DepositToAccountRef></Payment></R>"#,
        )
        .expect("parses");
        let opts = JsonOptions { records: Some("R.Payment".into()), ..JsonOptions::default() };
        let mut r = JsonDocReader::from_value("p.xml", doc, &opts).expect("records");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(col(&c, "CustomerRef").value(0), "3");
        assert_eq!(col(&c, "CustomerRef.@name").value(0), "Amy");
        assert_eq!(col(&c, "DepositToAccountRef").value(0), "4");
    }

    #[test]
    fn json_lines_reject_bad_lines_and_keep_going() {
        let text = "{\"stream\":\"deals\",\"data\":{\"id\":1}}\nnot json\n\n{\"stream\":\"deals\",\"data\":{\"id\":2,\"title\":\"\"}}\n";
        let mut r = JsonLinesReader::new("d.jsonl", Box::new(text.as_bytes()), &JsonOptions::default());
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 2);
        assert_eq!(c.rejects.len(), 1);
        assert_eq!((c.rejects[0].row, c.rejects[0].line), (2, 2));
        assert_eq!(c.lines, [1, 4]);
        assert!(col(&c, "data.title").is_null(1), "empty strings are null");
    }

    #[test]
    fn invalid_json_documents_fail_with_their_line() {
        let err = JsonDocReader::new("x.json", Box::new(&b"{\n  \"a\": [1,\n"[..]), &JsonOptions::default())
            .err()
            .expect("fails");
        assert!(err.to_string().starts_with("x.json:3:"), "{err}");
    }
}
