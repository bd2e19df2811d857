//! Which tool and export shape a file is, from its name and its first records, and the reader
//! that streams it.

use std::collections::BTreeSet;
use std::io::Read;

use serde_json::Value;

use crate::csv_reader::{CsvOptions, CsvReader, find_header, header_cells, preview, sniff_delimiter};
use crate::input::{Opened, Sniff, TextEncoding};
use crate::json_reader::{FlatRecord, JsonDocReader, JsonLinesReader, JsonOptions, record_rows};
use crate::raw::{NullMarkers, RawChunk, ReadStats};
use crate::spec::{Format, Shape, Tool};
use crate::{Error, Result};

/// Records looked at to recognise a file.
const SAMPLE_RECORDS: usize = 200;

/// What a file was recognised as.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The tool.
    pub tool: String,
    /// The export shape.
    pub shape: Shape,
    /// The encoding the file is read with.
    pub encoding: TextEncoding,
    /// The CSV delimiter (CSV only).
    pub delimiter: Option<u8>,
    /// The header's position among the first records (CSV only).
    pub header_index: usize,
    /// The columns seen in the first records.
    pub columns: Vec<String>,
    /// The loader that landed the file, when its metadata columns say so.
    pub loader: Option<crate::landed::Loader>,
    /// True when the stream was read as records opslake wrote (a Parquet file's rows, a
    /// loader's records), whatever format the shape was written for.
    pub records: bool,
}

/// What the first bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Delimited,
    Json,
    Xml,
}

fn content_of(sample: &str) -> Content {
    match sample.trim_start().chars().next() {
        Some('{' | '[') => Content::Json,
        Some('<') => Content::Xml,
        _ => Content::Delimited,
    }
}

/// A shape's view of the file: the columns it would see, or why it does not fit.
struct Candidate<'t> {
    tool: &'t Tool,
    shape: &'t Shape,
    score: usize,
    delimiter: Option<u8>,
    header_index: usize,
    columns: Vec<String>,
}

/// Finds the shape of `opened` among `tools` (all of them, or only `only` when given).
/// `json_doc` is the parsed document when the file is one JSON document.
fn detect<'t>(
    tools: &'t [Tool],
    only: Option<&str>,
    opened: &Sniff,
    json_doc: Option<&Value>,
) -> Result<Candidate<'t>> {
    let content = content_of(&opened.sample);
    let mut matches: Vec<Candidate<'t>> = Vec::new();
    let mut misses: Vec<String> = Vec::new();
    let candidates = tools.iter().filter(|t| only.is_none_or(|o| o == t.name));
    for tool in candidates {
        for shape in &tool.shapes {
            match try_shape(tool, shape, opened, content, json_doc) {
                Ok(c) => matches.push(c),
                Err(why) => misses.push(format!("{}: {why}", shape.id)),
            }
        }
    }
    if matches.is_empty() {
        let message = match only {
            Some(t) if !tools.iter().any(|x| x.name == t) => format!("unknown tool '{t}'"),
            Some(t) => format!("not an export of {t} that opslake maps:\n  {}", misses.join("\n  ")),
            None => {
                let cols = first_columns(opened, content, json_doc);
                format!(
                    "no source recognises this file (first columns: {cols}); pass --tool to see why a tool's shapes do not match"
                )
            }
        };
        return Err(Error::Unrecognised { file: opened.name.clone(), message });
    }
    matches.sort_by_key(|m| std::cmp::Reverse(m.score));
    let best = matches.remove(0);
    if let Some(tie) = matches.iter().find(|m| m.score == best.score && m.tool.name != best.tool.name) {
        return Err(Error::Unrecognised {
            file: opened.name.clone(),
            message: format!("matches both {} and {}; pass --tool", best.shape.id, tie.shape.id),
        });
    }
    Ok(best)
}

fn try_shape<'t>(
    tool: &'t Tool,
    shape: &'t Shape,
    opened: &Sniff,
    content: Content,
    json_doc: Option<&Value>,
) -> std::result::Result<Candidate<'t>, String> {
    let mut score = 0;
    if let Some(want) = &shape.read.sheet {
        match &opened.sheet {
            Some(s) if &s.sheet != want => return Err(format!("reads sheet '{want}', this is '{}'", s.sheet)),
            Some(_) => score += 1,
            None => {}
        }
    }
    if !shape.file_globs.is_empty() {
        if !shape.file_globs.iter().any(|g| g.is_match(&opened.file_name)) {
            return Err(format!("file name '{}' does not match", opened.file_name));
        }
        score += 1;
    }
    let (delimiter, header_index, columns, rows) = match (shape.read.format, content) {
        (Format::Csv, Content::Delimited) => {
            let opts = csv_options(shape, opened);
            let records = preview(&opened.sample, &opts, SAMPLE_RECORDS);
            let Some(idx) = find_header(&records, &opts) else {
                return Err(format!("no header row with {}", shape.headers.join(", ")));
            };
            let (mut headers, captured) = header_cells(&records[idx], &opts.header_patterns);
            headers.extend(captured.into_iter().map(|(name, _)| name));
            let rows: Vec<FlatRecord> = records[idx + 1..]
                .iter()
                .map(|r| headers.iter().cloned().zip(r.iter().map(|v| Some(v.clone()))).collect())
                .collect();
            (Some(opts.delimiter), idx, headers, rows)
        }
        // Records opslake wrote, one per line: every shape reads them by their fields.
        (format, Content::Json) if format == Format::Jsonl || opened.records => {
            let lines = opened.sample.lines().filter(|l| !l.trim().is_empty());
            let parsed: Vec<Value> = lines.take(SAMPLE_RECORDS).filter_map(|l| serde_json::from_str(l).ok()).collect();
            if parsed.is_empty() {
                return Err("no complete JSON line in the first bytes".into());
            }
            let opts = if opened.records { record_options(shape) } else { json_options(shape) };
            let rows: Vec<FlatRecord> = parsed.iter().flat_map(|r| record_rows(r, &opts)).collect();
            (None, 0, union_keys(&rows), rows)
        }
        (Format::Json, Content::Json) | (Format::Xml, Content::Xml) => {
            let Some(doc) = json_doc else { return Err("not one JSON document".into()) };
            let records = match shape.read.records.as_deref().filter(|p| !p.is_empty()) {
                Some(path) => match path.split('.').try_fold(doc, |v, k| v.get(k)) {
                    Some(Value::Array(items)) => items.iter().take(SAMPLE_RECORDS).collect::<Vec<_>>(),
                    Some(other) => vec![other],
                    None => return Err(format!("no records at '{path}'")),
                },
                None => match doc {
                    Value::Array(items) => items.iter().take(SAMPLE_RECORDS).collect(),
                    other => vec![other],
                },
            };
            let rows: Vec<FlatRecord> = records.iter().flat_map(|r| record_rows(r, &json_options(shape))).collect();
            (None, 0, union_keys(&rows), rows)
        }
        (f, _) => return Err(format!("shape reads {f}, the file is not")),
    };
    let missing: Vec<&String> = shape.headers.iter().filter(|h| !columns.contains(h)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing columns {}",
            missing.iter().map(|h| format!("'{h}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    score += shape.headers.len();
    for (column, allowed) in &shape.values {
        let seen: BTreeSet<&str> =
            rows.iter().flat_map(|r| r.iter().filter(|(k, _)| k == column).filter_map(|(_, v)| v.as_deref())).collect();
        if seen.is_empty() || !seen.iter().all(|v| allowed.iter().any(|a| a == v)) {
            return Err(format!(
                "values of '{column}' ({}) are not all among {}",
                seen.into_iter().collect::<Vec<_>>().join(", "),
                allowed.join(", ")
            ));
        }
        score += 1;
    }
    Ok(Candidate { tool, shape, score, delimiter, header_index, columns })
}

fn union_keys(rows: &[FlatRecord]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in rows {
        for (k, _) in r {
            if !seen.contains(k) {
                seen.push(k.clone());
            }
        }
    }
    seen
}

fn first_columns(opened: &Sniff, content: Content, doc: Option<&Value>) -> String {
    let cols: Vec<String> = match (content, doc) {
        (Content::Json | Content::Xml, Some(Value::Array(items))) => {
            items.first().map(|r| union_keys(&record_rows(r, &JsonOptions::default()))).unwrap_or_default()
        }
        (Content::Json | Content::Xml, Some(v)) => union_keys(&record_rows(v, &JsonOptions::default())),
        (Content::Json | Content::Xml, None) => opened
            .sample
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| union_keys(&record_rows(&v, &JsonOptions::default())))
            .unwrap_or_default(),
        (Content::Delimited, _) => {
            let opts = CsvOptions::plain(sniff_delimiter(&opened.sample));
            preview(&opened.sample, &opts, 1).into_iter().next().unwrap_or_default()
        }
    };
    let shown: Vec<String> = cols.iter().take(8).map(|c| format!("'{c}'")).collect();
    if shown.is_empty() { "none".to_string() } else { shown.join(", ") }
}

fn csv_options(shape: &Shape, opened: &Sniff) -> CsvOptions {
    // A sheet's text is written by opslake: its dialect is known, whatever the CSV export has.
    let sheet = opened.sheet.is_some();
    CsvOptions {
        delimiter: match shape.read.delimiter {
            Some(d) if !sheet => d,
            _ if sheet => b',',
            _ => sniff_delimiter(&opened.sample),
        },
        quote: if sheet { b'"' } else { shape.read.quote },
        escape: if sheet { None } else { shape.read.escape },
        required_headers: shape.headers.clone(),
        header_row: shape.read.header_row,
        summary_rows: shape.read.summary_rows.clone(),
        header_patterns: shape.read.header_patterns.clone(),
        short_rows: shape.read.short_rows,
        nulls: NullMarkers::new(&shape.read.null_values),
        sheet: opened.sheet.clone(),
        transcoded: None,
    }
}

fn json_options(shape: &Shape) -> JsonOptions {
    JsonOptions {
        records: shape.read.records.clone(),
        explode: shape.read.explode.clone(),
        parent: shape.read.parent,
        nulls: NullMarkers::new(&shape.read.null_values),
    }
}

/// A shape's options over records opslake wrote: each line is one record already (a records
/// path was the paged response's, which the loader or Parquet writer unwrapped).
fn record_options(shape: &Shape) -> JsonOptions {
    let explode = match shape.read.format {
        Format::Csv => Vec::new(),
        Format::Json | Format::Jsonl | Format::Xml => shape.read.explode.clone(),
    };
    JsonOptions { records: None, explode, parent: false, nulls: NullMarkers::new(&shape.read.null_values) }
}

/// Streams a recognised file's raw chunks.
pub enum FileReader<'a> {
    /// Delimited text.
    Csv(Box<CsvReader<'a>>),
    /// One JSON document.
    Doc(JsonDocReader),
    /// JSON Lines.
    Lines(JsonLinesReader<'a>),
}

impl FileReader<'_> {
    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        match self {
            Self::Csv(r) => r.next_chunk(),
            Self::Doc(r) => r.next_chunk(),
            Self::Lines(r) => r.next_chunk(),
        }
    }

    /// The next chunk as `shape` wants its rows: unpivoted when it says so.
    pub fn next_shaped(&mut self, shape: &Shape) -> Result<Option<RawChunk>> {
        let chunk = self.next_chunk()?;
        Ok(match (&shape.read.unpivot, chunk) {
            (Some(spec), Some(c)) => Some(crate::raw::unpivot(c, spec)),
            (_, c) => c,
        })
    }

    /// What was passed over so far.
    pub fn stats(&self) -> ReadStats {
        match self {
            Self::Csv(r) => r.stats().clone(),
            Self::Doc(_) => ReadStats::default(),
            Self::Lines(r) => ReadStats { blank: r.blank_lines(), ..ReadStats::default() },
        }
    }
}

/// A stream recognised and ready to read.
pub struct Recognised<'a> {
    /// The stream's name (path, or `archive.zip!member`).
    pub name: String,
    /// What it is.
    pub detection: Detection,
    /// Its rows.
    pub reader: FileReader<'a>,
}

/// Recognises one opened stream and builds its reader.
pub fn recognise<'a>(tools: &[Tool], only: Option<&str>, opened: Opened<'a>) -> Result<Recognised<'a>> {
    let sniff = opened.sniff();
    let name = sniff.name.clone();
    let auto = opened.detected;
    let opened_declared = opened.declared;
    if sniff.complete && sniff.sample.trim().is_empty() {
        return Err(Error::BadInput { file: name, line: 1, message: "the file is empty".into() });
    }
    if auto.is_none() {
        return Err(Error::BadInput {
            file: name,
            line: 1,
            message: "binary data (NUL bytes outside UTF-16): not a text export".into(),
        });
    }
    // A JSON or XML document is parsed once, for detection and reading alike.
    let mut doc_encoding = None;
    let content = content_of(&sniff.sample);
    let (stream, doc) = if !sniff.records
        && (content == Content::Xml || (content == Content::Json && !is_json_lines(&sniff.sample, sniff.complete)))
    {
        let mut bytes = Vec::new();
        opened.into_text(auto.unwrap_or(TextEncoding::Utf8)).read_to_end(&mut bytes).map_err(|e| Error::BadInput {
            file: name.clone(),
            line: 0,
            message: format!("read failed: {e} (the file may be truncated or corrupt)"),
        })?;
        // Some payloads are Latin-1 behind a UTF-8 byte-order mark (Pipedrive webhook captures).
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                doc_encoding = Some(TextEncoding::Other(encoding_rs::WINDOWS_1252));
                encoding_rs::WINDOWS_1252.decode(e.as_bytes()).0.into_owned()
            }
        };
        let doc: Value = if content == Content::Xml {
            crate::xml_reader::parse_document(&name, &text)?
        } else {
            serde_json::from_str(&text).map_err(|e| Error::BadInput {
                file: name.clone(),
                line: e.line() as u64,
                message: format!("invalid JSON at column {}: {e}", e.column()),
            })?
        };
        (None, Some(doc))
    } else {
        (Some(opened), None)
    };
    let c = detect(tools, only, &sniff, doc.as_ref())?;
    let shape = c.shape.clone();
    let declared = opened_declared.then_some(auto).flatten();
    let encoding = match (declared.or(doc_encoding).or(shape.read.encoding), auto) {
        (Some(declared), _) => declared,
        (None, Some(detected)) => detected,
        (None, None) => {
            return Err(Error::BadInput {
                file: name,
                line: 1,
                message: "binary data (NUL bytes outside UTF-16): not a text export".into(),
            });
        }
    };
    let reader = match (stream, doc) {
        (_, Some(doc)) => FileReader::Doc(JsonDocReader::from_value(&name, doc, &json_options(&shape))?),
        (Some(o), None) if sniff.records => {
            FileReader::Lines(JsonLinesReader::new(&name, o.into_text(encoding), &record_options(&shape)))
        }
        (Some(o), None) => {
            let text = o.into_text(encoding);
            match shape.read.format {
                Format::Csv => {
                    let mut opts = csv_options(&shape, &sniff);
                    opts.transcoded = match encoding {
                        TextEncoding::Other(e) => Some(e.name()),
                        TextEncoding::Utf8 => None,
                    };
                    FileReader::Csv(Box::new(CsvReader::new(&name, text, opts, c.header_index)?))
                }
                Format::Jsonl => FileReader::Lines(JsonLinesReader::new(&name, text, &json_options(&shape))),
                Format::Json | Format::Xml => {
                    return Err(Error::Internal { message: format!("{name}: a document shape matched a stream") });
                }
            }
        }
        (None, None) => return Err(Error::Internal { message: format!("{name}: neither a stream nor a document") }),
    };
    let detection = Detection {
        tool: c.tool.name.clone(),
        shape,
        encoding,
        delimiter: c.delimiter,
        header_index: c.header_index,
        columns: c.columns,
        loader: sniff.loader,
        records: sniff.records,
    };
    Ok(Recognised { name, detection, reader })
}

/// Several lines that each hold one complete JSON value.
fn is_json_lines(sample: &str, complete: bool) -> bool {
    let mut lines = sample.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else { return false };
    if serde_json::from_str::<Value>(first).is_err() {
        return false;
    }
    match lines.next() {
        Some(second) => second.trim_start().starts_with('{') || second.trim_start().starts_with('['),
        // One line: a document if that is the whole file, JSON Lines otherwise.
        None => !complete,
    }
}
