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
    /// Every shape whose required columns the file has, best first, with its fit: the
    /// evidence the choice was made on (`opslake inspect` prints it).
    pub scores: Vec<Scored>,
}

/// One shape that could have been the file's, and how well it fits.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// `tool.shape`.
    pub shape: String,
    /// Required columns, file name, sheet and values that matched.
    pub score: usize,
    /// How the file's columns fit the shape's.
    pub fit: Fit,
    /// Why it was not taken, when it fits too little.
    pub refused: Option<String>,
}

/// How well a file's columns fit a shape, weighing each column by how telling it is: a column
/// few shapes name (`timezone_name`, `property_lifecyclestage`) says much, one most name (`id`,
/// `name`, `created_at`) little. Of the file's own columns (a loader's metadata and opslake's
/// index columns aside), the weighted share the shape names; and of the shape's columns, the
/// weighted share the file has. Either share high is evidence: a narrow view export has few
/// columns, all known; a full export has many, most of the shape's among them. Both low is a
/// file that merely shares a few generic headers with the shape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fit {
    /// File columns the shape names.
    pub known: usize,
    /// File columns.
    pub columns: usize,
    /// Columns the shape names.
    pub expected: usize,
    /// Weighted share of the file's columns the shape names.
    pub coverage: f64,
    /// Weighted share of the shape's columns the file has.
    pub recall: f64,
}

impl Fit {
    fn of(shape: &Shape, columns: &[String], weights: &Weights<'_>) -> Self {
        let own: BTreeSet<&str> = columns.iter().map(String::as_str).filter(|c| !is_metadata(c)).collect();
        let expected: BTreeSet<&str> = shape.known.iter().map(String::as_str).filter(|c| !is_metadata(c)).collect();
        let sum = |set: &mut dyn Iterator<Item = &&str>| set.map(|c| weights.of(c)).sum::<f64>();
        let known: Vec<&&str> = own.iter().filter(|c| expected.contains(**c)).collect();
        let hit = sum(&mut known.iter().copied());
        let share = |total: f64| if total > 0.0 { hit / total } else { 0.0 };
        Self {
            known: known.len(),
            columns: own.len(),
            expected: expected.len(),
            coverage: share(sum(&mut own.iter())),
            recall: share(sum(&mut expected.iter())),
        }
    }

    /// The better of the two shares, 0 to 1: what must reach [`MIN_FIT`].
    pub fn share(&self) -> f64 {
        self.coverage.max(self.recall)
    }

    /// Both shares together, 0 to 1: what ranks the shapes that fit. A shape whose few columns
    /// are all in a wide file fits it fully by one share, less than a shape that knows the
    /// rest of the file too.
    pub fn strength(&self) -> f64 {
        (self.coverage + self.recall) / 2.0
    }
}

/// How telling each column name is among the shapes of the tools at hand: the inverse of the
/// share of shapes that name it (a name no shape knows is as telling as a name can be).
struct Weights<'t> {
    shapes: usize,
    naming: std::collections::HashMap<&'t str, usize>,
}

impl<'t> Weights<'t> {
    fn among(tools: &'t [Tool]) -> Self {
        let mut naming = std::collections::HashMap::new();
        let mut shapes = 0;
        for shape in tools.iter().flat_map(|t| &t.shapes) {
            shapes += 1;
            for c in &shape.known {
                *naming.entry(c.as_str()).or_insert(0) += 1;
            }
        }
        Self { shapes, naming }
    }

    fn of(&self, column: &str) -> f64 {
        let naming = self.naming.get(column).copied().unwrap_or(0);
        ((self.shapes + 1) as f64 / (naming + 1) as f64).ln()
    }
}

/// The least [`Fit::share`] a shape must have to be a file's. Measured over the corpus (2,361
/// streams tried against every tool they are not of): the files of other tools that share a
/// few generic headers with a shape fit at most 0.39 (Stripe customers as Meta ad accounts:
/// `id`, `name`, `currency`), every file its own shape takes at least 0.41 (one generic shape
/// for every object, as `sfdx_tree` and Pipedrive's webhooks are, fits least).
pub const MIN_FIT: f64 = 0.4;

/// The least share of a file an object's layout must know, and of the object's fields the file
/// must have, when the file is not named after the object (see [`detect`]): the corpus files
/// of other tools that a generic object fits one way fit the other at most 0.15.
const NAMELESS_FIT: f64 = 0.25;

/// Two shapes of different tools whose [`Fit::strength`]s are this close are both plausible:
/// ambiguous.
const CLOSE_FIT: f64 = 0.15;

/// A loader's bookkeeping or opslake's own index column: says nothing about the object.
fn is_metadata(column: &str) -> bool {
    ["_airbyte_", "_fivetran_", "_dlt_", "_sdc_"].iter().any(|p| column.starts_with(p))
        || crate::json_reader::is_index_column(column)
        || column.trim().is_empty()
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
    fit: Fit,
    delimiter: Option<u8>,
    header_index: usize,
    columns: Vec<String>,
    /// The file is named after the derived shape's object (always, for a written shape, whose
    /// file globs and headers are its own evidence).
    named: bool,
}

/// Finds the shape of `opened` among `tools` (all of them, or only `only` when given).
/// `json_doc` is the parsed document when the file is one JSON document.
fn detect<'t>(
    tools: &'t [Tool],
    only: Option<&str>,
    opened: &Sniff,
    json_doc: Option<&Value>,
) -> Result<(Candidate<'t>, Vec<Scored>)> {
    let content = content_of(&opened.sample);
    let mut matches: Vec<Candidate<'t>> = Vec::new();
    let mut misses: Vec<String> = Vec::new();
    let candidates = tools.iter().filter(|t| only.is_none_or(|o| o == t.name));
    let mut scores = Vec::new();
    let weights = Weights::among(tools);
    for tool in candidates {
        for shape in &tool.shapes {
            match try_shape(tool, shape, opened, content, json_doc, &weights) {
                // A shape that turns rows of dates into columns cannot know its columns.
                Ok(c) if c.fit.share() < MIN_FIT && shape.read.unpivot.is_none() => {
                    let why = format!(
                        "fits too little: {} of the file's {} columns are ones it maps ({:.0}% by weight), {} of its {} are here ({:.0}%); {:.0}% is needed",
                        c.fit.known,
                        c.fit.columns,
                        c.fit.coverage * 100.0,
                        c.fit.known,
                        c.fit.expected,
                        c.fit.recall * 100.0,
                        MIN_FIT * 100.0
                    );
                    misses.push(format!("{}: {why}", shape.id));
                    scores.push(Scored { shape: shape.id.clone(), score: c.score, fit: c.fit, refused: Some(why) });
                }
                // An object's layout names all of its fields, so it knows both sides of a file of
                // it: unless the file is named after the object, most of the file must be the
                // object's and most of the object must be in the file. A generic object (stages:
                // id, name, dates) otherwise fits any table of ids and names one way.
                Ok(c) if !c.named && c.fit.coverage.min(c.fit.recall) < NAMELESS_FIT => {
                    let why = format!(
                        "fits one way only: {:.0}% of the file is the object's, {:.0}% of the object is in the file, and the file is not named after it ({}); {:.0}% of both is needed",
                        c.fit.coverage * 100.0,
                        c.fit.recall * 100.0,
                        shape.derived.as_ref().map(|d| d.names.join(", ")).unwrap_or_default(),
                        NAMELESS_FIT * 100.0
                    );
                    misses.push(format!("{}: {why}", shape.id));
                    scores.push(Scored { shape: shape.id.clone(), score: c.score, fit: c.fit, refused: Some(why) });
                }
                Ok(c) => {
                    scores.push(Scored { shape: shape.id.clone(), score: c.score, fit: c.fit, refused: None });
                    matches.push(c);
                }
                Err(why) => misses.push(format!("{}: {why}", shape.id)),
            }
        }
    }
    scores.sort_by(|a, b| {
        (a.refused.is_some(), std::cmp::Reverse(a.score))
            .cmp(&(b.refused.is_some(), std::cmp::Reverse(b.score)))
            .then(b.fit.strength().total_cmp(&a.fit.strength()))
    });
    if matches.is_empty() {
        let message = match only {
            Some(t) if !tools.iter().any(|x| x.name == t) => format!("unknown tool '{t}'"),
            Some(t) => format!("not an export of {t} that opslake maps:\n  {}", misses.join("\n  ")),
            None => {
                let cols = first_columns(opened, content, json_doc);
                let refused: Vec<String> =
                    scores.iter().filter_map(|s| Some(format!("\n  {}: {}", s.shape, s.refused.as_ref()?))).collect();
                format!(
                    "no source recognises this file (first columns: {cols}){}; pass --tool to see why a tool's shapes do not match",
                    refused.concat()
                )
            }
        };
        return Err(Error::Unrecognised { file: opened.name.clone(), message });
    }
    // The most specific match first; among equally specific ones, the best fit.
    matches.sort_by(|a, b| b.score.cmp(&a.score).then(b.fit.strength().total_cmp(&a.fit.strength())));
    let best = matches.remove(0);
    let close = |m: &Candidate<'_>| best.fit.strength() - m.fit.strength() < CLOSE_FIT;
    if let Some(tie) = matches.iter().find(|m| m.score == best.score && m.tool.name != best.tool.name && close(m)) {
        return Err(Error::Unrecognised {
            file: opened.name.clone(),
            message: format!(
                "ambiguous: {} (fits {:.0}%) or {} (fits {:.0}%); pass --tool or name the connection's tool",
                best.shape.id,
                best.fit.strength() * 100.0,
                tie.shape.id,
                tie.fit.strength() * 100.0
            ),
        });
    }
    Ok((best, scores))
}

fn try_shape<'t>(
    tool: &'t Tool,
    shape: &'t Shape,
    opened: &Sniff,
    content: Content,
    json_doc: Option<&Value>,
    weights: &Weights<'_>,
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
    let mut named = shape.derived.is_none();
    if let Some(derived) = &shape.derived {
        // The producer is told by its metadata columns: a file one producer wrote is not laid
        // out as another's, and a file without any is the API's, the UI's or a loader's that
        // wrote none (the fit decides).
        match crate::producers::shown(&columns, opened.loader) {
            Some(p) if p.name != derived.producer => {
                return Err(format!("written by {}, this layout is {}'s", p.description, derived.producer));
            }
            Some(_) => score += 1,
            None => {}
        }
        if derived.named_in(&opened.file_name) || derived.named_in(&opened.name) {
            score += 1;
            named = true;
        }
    }
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
    let fit = Fit::of(shape, &columns, weights);
    Ok(Candidate { tool, shape, score, fit, delimiter, header_index, columns, named })
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
    let (c, scores) = detect(tools, only, &sniff, doc.as_ref())?;
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
        scores,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        let contract = opslake_schema::Contract::embedded().expect("contract");
        let (registry, problems) = crate::ToolRegistry::load(None, &contract).expect("loads");
        assert!(problems.is_empty(), "{problems:?}");
        registry.tools().to_vec()
    }

    fn recognised(tools: &[Tool], only: Option<&str>, csv: &str) -> Result<Detection> {
        let mut out = None;
        crate::input::visit_reader_as(&mut csv.as_bytes(), "table.csv", "table.csv", &mut |opened| {
            out = Some(recognise(tools, only, opened).map(|r| r.detection));
            Ok(())
        })?;
        out.expect("one stream")
    }

    /// A connector's table of another object that shares `id`, `name` and `currency` with a
    /// shape's few columns is not that shape's; the same producer's table of the object is.
    #[test]
    fn a_file_sharing_only_generic_columns_with_a_shape_is_refused_by_its_fit() {
        let tools = tools();
        // A Stripe customer but for delinquent, which every one has: only generic columns fit.
        let customers = "id,_fivetran_synced,name,currency,email,invoice_prefix,balance,livemode,phone\n\
                         cus_1,2024-01-02 03:04:05,Acme,usd,a@acme.test,ABC,0,true,555\n";
        let err = recognised(&tools, Some("meta_ads"), customers).expect_err("not an ad account");
        assert!(err.to_string().contains("fits too little"), "{err}");
        let err = recognised(&tools, None, customers).expect_err("no tool takes it");
        assert!(err.to_string().contains("meta_ads.fivetran_account_history: fits too little"), "{err}");

        let accounts = "id,_fivetran_synced,name,account_status,currency,timezone_name\n\
                        act_1,2024-01-02 03:04:05,Acme Ads,1,USD,America/New_York\n";
        let d = recognised(&tools, None, accounts).expect("an ad account history");
        assert_eq!(d.shape.id, "meta_ads.fivetran_account_history");
        let chosen = d.scores.iter().find(|s| s.shape == d.shape.id).expect("scored");
        assert!(chosen.fit.share() >= MIN_FIT && chosen.refused.is_none(), "{chosen:?}");
        assert_eq!((chosen.fit.known, chosen.fit.columns), (5, 5), "every column of the file is known: {chosen:?}");
    }

    fn user_tool(headers: &str, columns: &str) -> String {
        format!(
            "description: d\nshapes:\n  - name: users\n    description: d\n    match: {{headers: [{headers}]}}\n    read: {{format: csv}}\n    outputs:\n      - table: crm.users\n        columns: {{{columns}}}\n"
        )
    }

    /// Two tools whose shapes both fit a file about as well: ambiguous, both named with their
    /// fits; one that fits clearly better is taken.
    #[test]
    fn close_fits_of_two_tools_are_ambiguous_and_a_clear_one_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("tools")).expect("mkdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(format!("tools/{name}.yaml")), text);
        write("acme_crm", user_tool("Uid, Mail", "source_id: '\"Uid\"', email: '\"Mail\"'")).expect("write");
        write("zeta_crm", user_tool("Uid, Mail", "source_id: '\"Uid\"', email: '\"Mail\"'")).expect("write");
        let contract = opslake_schema::Contract::embedded().expect("contract");
        let (registry, problems) = crate::ToolRegistry::load(Some(dir.path()), &contract).expect("loads");
        assert!(problems.is_empty(), "{problems:?}");
        let tools = registry.tools().to_vec();
        let err = recognised(&tools, None, "Uid,Mail\n1,a@b.test\n").expect_err("both fit");
        assert!(
            err.to_string().contains("ambiguous: acme_crm.users (fits 100%) or zeta_crm.users (fits 100%)"),
            "{err}"
        );

        write(
            "zeta_crm",
            user_tool(
                "Uid, Mail",
                "source_id: '\"Uid\"', email: '\"Mail\"', full_name: '\"Handle\"', title: '\"Role\"', department: '\"Tel\"'",
            ),
        )
        .expect("write");
        let (registry, problems) = crate::ToolRegistry::load(Some(dir.path()), &contract).expect("loads");
        assert!(problems.is_empty(), "{problems:?}");
        let tools = registry.tools().to_vec();
        let d = recognised(&tools, None, "Uid,Mail,Handle,Role,Tel\n1,a@b.test,ab,cto,555\n").expect("zeta fits all");
        assert_eq!(d.shape.id, "zeta_crm.users", "{:?}", d.scores);
        assert_eq!(d.scores.len(), 2, "both scored: {:?}", d.scores);
    }

    /// Weights: a column every shape names tells less than one a single shape names.
    #[test]
    fn generic_columns_weigh_less_than_telling_ones() {
        let tools = tools();
        let weights = Weights::among(&tools);
        assert!(
            weights.of("id") < weights.of("timezone_name"),
            "id {} timezone_name {}",
            weights.of("id"),
            weights.of("timezone_name")
        );
        assert!(weights.of("a column no shape names") >= weights.of("timezone_name"));
    }
}
