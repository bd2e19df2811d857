//! Streaming CSV/TSV reader: dialect from options or sniffed, header found past any preamble,
//! duplicate headers made unique, ragged rows rejected (or padded where declared), declared
//! summary rows set apart, every field checked to be UTF-8.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

use regex::Regex;

use crate::raw::{BATCH_ROWS, ChunkBuilder, NullMarkers, RawChunk, RawReject, ReadStats, unique_headers};
use crate::sheet::SheetSource;
use crate::{Error, Result};

/// What to do with a row that has fewer cells than the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortRows {
    /// Reject it (default): a short row usually means a broken export.
    #[default]
    Reject,
    /// Fill the missing trailing cells with nulls (Salesforce report exports omit them).
    Pad,
}

/// CSV dialect and row rules.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Field delimiter.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quoted fields (`\` in Mailchimp exports), if any.
    pub escape: Option<u8>,
    /// Required headers: the header is the first record containing them all, so preambles
    /// (report titles, date ranges) are skipped without counting lines.
    pub required_headers: Vec<String>,
    /// Or: the 1-based record number of the header.
    pub header_row: Option<usize>,
    /// Rows whose first non-empty cell matches one of these are the export's own totals: they
    /// are read, and handed on as summary rejects with their cells by header, never as data.
    pub summary_rows: Vec<Regex>,
    /// Header patterns: see [`header_cells`].
    pub header_patterns: Vec<(String, Regex)>,
    /// Short-row policy.
    pub short_rows: ShortRows,
    /// Cells meaning "no value".
    pub nulls: NullMarkers,
    /// The sheet the text was written from: its rows name lines in messages.
    pub sheet: Option<Arc<SheetSource>>,
    /// The encoding the text was transcoded from, when not UTF-8: a field holding U+FFFD then
    /// had bytes that encoding has no character for, and its row is rejected.
    pub transcoded: Option<&'static str>,
}

impl CsvOptions {
    /// Comma-separated with double quotes, every other option at its default.
    pub fn plain(delimiter: u8) -> Self {
        Self {
            delimiter,
            quote: b'"',
            escape: None,
            required_headers: Vec::new(),
            header_row: None,
            summary_rows: Vec::new(),
            header_patterns: Vec::new(),
            short_rows: ShortRows::Reject,
            nulls: NullMarkers::default(),
            sheet: None,
            transcoded: None,
        }
    }

    /// The line a message names: the sheet's row for a sheet.
    fn line(&self, line: u64) -> u64 {
        self.sheet.as_ref().map_or(line, |s| s.row_of_line(line))
    }
}

/// Picks the delimiter whose per-line count is most often the same non-zero number over the
/// first lines: comma, tab, semicolon or pipe.
pub fn sniff_delimiter(sample: &str) -> u8 {
    let lines: Vec<&str> = sample.lines().filter(|l| !l.trim().is_empty()).take(30).collect();
    let mut best = (b',', 0usize);
    for d in [b',', b'\t', b';', b'|'] {
        let mut counts: Vec<usize> =
            lines.iter().map(|l| l.bytes().filter(|b| *b == d).count()).filter(|c| *c > 0).collect();
        counts.sort_unstable();
        // Score: how many lines share the most common non-zero count.
        let mut score = 0;
        let mut i = 0;
        while i < counts.len() {
            let j = counts[i..].iter().take_while(|c| **c == counts[i]).count();
            score = score.max(j);
            i += j;
        }
        if score > best.1 {
            best = (d, score);
        }
    }
    best.0
}

fn reader_builder(opts: &CsvOptions) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.delimiter(opts.delimiter).quote(opts.quote).escape(opts.escape).has_headers(false).flexible(true);
    b
}

/// The first records of a sample, as text, for detection and `opslake inspect`.
pub fn preview(sample: &str, opts: &CsvOptions, max: usize) -> Vec<Vec<String>> {
    let mut rdr = reader_builder(opts).from_reader(sample.as_bytes());
    rdr.records().take(max).filter_map(|r| r.ok()).map(|r| r.iter().map(str::to_string).collect()).collect()
}

/// A header record with the declared patterns applied: a cell matching a pattern takes the
/// pattern's name (Meta's `Amount spent (USD)` is `Amount spent`), and each named group of the
/// match becomes a column `<name>.<group>` with the captured text (`Amount spent.currency` =
/// USD), constant over the file. Cells are then made unique.
pub fn header_cells(record: &[String], patterns: &[(String, Regex)]) -> (Vec<String>, Vec<(String, String)>) {
    let mut captured = Vec::new();
    let cells = record.iter().map(|cell| {
        let Some((name, re, caps)) =
            patterns.iter().find_map(|(name, re)| re.captures(cell.trim()).map(|c| (name, re, c)))
        else {
            return cell.clone();
        };
        for (label, group) in re.capture_names().zip(caps.iter()) {
            if let (Some(label), Some(m)) = (label, group) {
                captured.push((format!("{name}.{label}"), m.as_str().to_string()));
            }
        }
        name.clone()
    });
    (unique_headers(cells), captured)
}

/// Finds the header among the first records: `header_row` if given, else the first record
/// holding every required header, else the first record.
pub fn find_header(records: &[Vec<String>], opts: &CsvOptions) -> Option<usize> {
    if let Some(n) = opts.header_row {
        return n.checked_sub(1).filter(|i| *i < records.len());
    }
    if opts.required_headers.is_empty() {
        return (!records.is_empty()).then_some(0);
    }
    records.iter().position(|r| {
        let (cells, _) = header_cells(r, &opts.header_patterns);
        opts.required_headers.iter().all(|h| cells.contains(h))
    })
}

/// Records where line breaks are in the stream. The csv crate reports a record after blank
/// lines as starting at the first blank line; these positions let the reader name the line
/// the record really starts on.
#[derive(Clone, Default)]
struct Breaks(Arc<Mutex<VecDeque<(u64, u8)>>>);

struct Tap<R> {
    inner: R,
    offset: u64,
    breaks: Breaks,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut q = self.breaks.0.lock().expect("not poisoned");
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' || *b == b'\r' {
                q.push_back((self.offset + i as u64, *b));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl Breaks {
    /// The true line of a record the csv crate places at (`byte`, `line`).
    fn record_line(&self, byte: u64, line: u64) -> u64 {
        let mut q = self.0.lock().expect("not poisoned");
        while q.front().is_some_and(|(p, _)| *p < byte) {
            q.pop_front();
        }
        // Line breaks right at the record's start are blank lines the record came after.
        let blank =
            (byte..).zip(q.iter()).take_while(|(cur, (p, _))| p == cur).filter(|(_, (_, b))| *b == b'\n').count();
        line + blank as u64
    }
}

/// A streaming CSV reader over decoded UTF-8 text.
pub struct CsvReader<'a> {
    file: String,
    breaks: Breaks,
    rdr: csv::Reader<Box<dyn Read + 'a>>,
    opts: CsvOptions,
    /// Columns the header row has; `headers` adds one `#preamble.<n>` column per preamble line.
    width: usize,
    headers: Vec<String>,
    /// Values the same on every row, after the file's own columns: the lines before the header
    /// (a report's title and date range, `"#preamble.2"`) and captures of header patterns.
    constants: Vec<String>,
    builder: ChunkBuilder,
    record: csv::ByteRecord,
    row: u64,
    stats: ReadStats,
    done: bool,
}

impl<'a> CsvReader<'a> {
    /// Reads up to and including the header; fails when there is none.
    pub fn new(file: &str, reader: Box<dyn Read + 'a>, opts: CsvOptions, header_index: usize) -> Result<Self> {
        let breaks = Breaks::default();
        let tapped: Box<dyn Read + 'a> = Box::new(Tap { inner: reader, offset: 0, breaks: breaks.clone() });
        let mut rdr = reader_builder(&opts).from_reader(tapped);
        let mut record = csv::ByteRecord::new();
        let mut skipped = 0u64;
        let mut preamble = Vec::new();
        loop {
            let more = rdr.read_byte_record(&mut record).map_err(|e| csv_error(file, &e, &opts))?;
            if !more {
                return Err(Error::BadInput {
                    file: file.to_string(),
                    line: 1,
                    message: "no header row: the file is empty".to_string(),
                });
            }
            if skipped as usize == header_index {
                break;
            }
            let text: Vec<String> = record
                .iter()
                .map(|c| String::from_utf8_lossy(c).trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            preamble.push(text.join(" "));
            skipped += 1;
        }
        let header_line = opts.line(record.position().map_or(1, |p| breaks.record_line(p.byte(), p.line())));
        let mut cells = Vec::with_capacity(record.len());
        for (i, cell) in record.iter().enumerate() {
            match std::str::from_utf8(cell) {
                Ok(s) => cells.push(s.to_string()),
                Err(_) => {
                    return Err(Error::BadInput {
                        file: file.to_string(),
                        line: header_line,
                        message: format!(
                            "header cell {} is not valid UTF-8; declare the file's encoding (e.g. encoding: windows-1252)",
                            i + 1
                        ),
                    });
                }
            }
        }
        let width = cells.len();
        let (mut headers, captured) = header_cells(&cells, &opts.header_patterns);
        headers.extend((1..=preamble.len()).map(|i| format!("#preamble.{i}")));
        // Values that are the same on every row (preamble lines, captures of header patterns)
        // follow the file's own columns.
        let (names, values): (Vec<String>, Vec<String>) = captured.into_iter().unzip();
        headers.extend(names);
        preamble.extend(values);
        let stats = ReadStats { preamble_lines: header_line.saturating_sub(1), ..ReadStats::default() };
        Ok(Self {
            file: file.to_string(),
            breaks,
            rdr,
            builder: ChunkBuilder::new(headers.clone()),
            headers,
            width,
            constants: preamble,
            opts,
            record,
            row: 0,
            stats,
            done: false,
        })
    }

    /// The header, made unique.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// What was passed over so far.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The next chunk of at most [`BATCH_ROWS`] rows, or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        if self.done {
            return Ok(None);
        }
        while self.builder.len() < BATCH_ROWS {
            let more =
                self.rdr.read_byte_record(&mut self.record).map_err(|e| csv_error(&self.file, &e, &self.opts))?;
            if !more {
                self.done = true;
                break;
            }
            self.take_record();
        }
        if self.builder.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.builder.finish()))
    }

    fn take_record(&mut self) {
        let line = self.opts.line(self.record.position().map_or(0, |p| self.breaks.record_line(p.byte(), p.line())));
        let width = self.width;
        let n = self.record.len();
        if self.record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
            self.stats.blank += 1;
            return;
        }
        // The first cell with a value: a Total row may start with null markers (` --`).
        let first = self
            .record
            .iter()
            .map(String::from_utf8_lossy)
            .find(|c| !c.trim().is_empty() && !self.opts.nulls.is_null(c))
            .unwrap_or_default()
            .trim()
            .to_string();
        self.row += 1;
        if self.opts.summary_rows.iter().any(|re| re.is_match(&first)) {
            let mut cells = serde_json::Map::new();
            for (name, cell) in self.headers.iter().zip(self.record.iter()) {
                let value = String::from_utf8_lossy(cell);
                if !value.is_empty() {
                    cells.insert(name.clone(), serde_json::Value::String(value.into_owned()));
                }
            }
            let reason = format!("summary row '{first}': the export's own total, not a record");
            let raw = serde_json::Value::Object(cells).to_string();
            self.builder.reject(RawReject { row: self.row, line, reason, raw, summary: true });
            return;
        }
        let raw_text = || {
            let d = char::from(self.opts.delimiter).to_string();
            self.record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(&d)
        };
        // A sheet's rows end at their last cell with a value: a short row is not a broken one.
        let pad = self.opts.short_rows == ShortRows::Pad || self.opts.sheet.is_some();
        if n > width || (n < width && !pad) {
            let reason = format!("row has {n} fields, the header has {width}");
            self.builder.reject(RawReject { row: self.row, line, reason, raw: raw_text(), summary: false });
            return;
        }
        let mut bad = None;
        for (i, cell) in self.record.iter().enumerate() {
            if std::str::from_utf8(cell).is_err() {
                bad = Some(i);
                break;
            }
        }
        if let Some(i) = bad {
            let reason = format!(
                "column '{}' is not valid UTF-8; the file may be Latin-1 or Windows-1252: declare its encoding",
                self.headers[i]
            );
            self.builder.reject(RawReject { row: self.row, line, reason, raw: raw_text(), summary: false });
            return;
        }
        if let Some(encoding) = self.opts.transcoded
            && let Some(i) = self.record.iter().position(|c| c.windows(3).any(|w| w == REPLACEMENT))
        {
            let reason = format!(
                "column '{}' has bytes that are not {encoding}, the encoding the file is read with: declare \
                 the file's encoding (encoding: on the connection or the shape)",
                self.headers.get(i).map_or("?", String::as_str)
            );
            self.builder.reject(RawReject { row: self.row, line, reason, raw: raw_text(), summary: false });
            return;
        }
        for i in 0..width {
            let value = self.record.get(i).map(|c| std::str::from_utf8(c).expect("checked above"));
            let value = value.filter(|v| !self.opts.nulls.is_null(v));
            self.builder.push(i, value);
        }
        for (i, value) in self.constants.iter().enumerate() {
            self.builder.push(width + i, Some(value));
        }
        self.builder.end_row(self.row, line);
    }
}

/// U+FFFD as UTF-8: what the transcoder puts where the bytes had no character.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

fn csv_error(file: &str, e: &csv::Error, opts: &CsvOptions) -> Error {
    let line = e.position().map_or(0, |p| opts.line(p.line()));
    let message = match e.kind() {
        csv::ErrorKind::Io(io) => format!("read failed: {io} (the file may be truncated or corrupt)"),
        other => format!("{other:?}"),
    };
    Error::BadInput { file: file.to_string(), line, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CsvOptions {
        CsvOptions::plain(b',')
    }

    fn read_all(text: &str, opts: CsvOptions) -> (Vec<String>, Vec<RawChunk>, ReadStats) {
        let records = preview(text, &opts, 100);
        let header = find_header(&records, &opts).expect("header");
        let mut r = CsvReader::new("t.csv", Box::new(text.as_bytes()), opts, header).expect("opens");
        let mut chunks = Vec::new();
        while let Some(c) = r.next_chunk().expect("reads") {
            chunks.push(c);
        }
        (r.headers().to_vec(), chunks, r.stats().clone())
    }

    #[test]
    fn quoted_newlines_ragged_rows_and_summary_rows() {
        let text = "Report: Campaigns\nJan 1 - Jan 31\nCampaign,Cost\n\"Spring\nSale\",\"1,234.50\"\nBad,1,2\n\r\n\nTotal,1234.50\n";
        let mut o = opts();
        o.required_headers = vec!["Campaign".into(), "Cost".into()];
        o.summary_rows = vec![Regex::new("^Total").expect("regex")];
        let (headers, chunks, stats) = read_all(text, o);
        assert_eq!(headers, ["Campaign", "Cost", "#preamble.1", "#preamble.2"]);
        assert_eq!(stats.preamble_lines, 2);
        assert_eq!(chunks.len(), 1);
        let c = &chunks[0];
        assert_eq!(c.batch.num_rows(), 1);
        assert_eq!(c.lines, [4]);
        let col = c.batch.column(0).as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8");
        assert_eq!(col.value(0), "Spring\nSale");
        let range = c.batch.column(3).as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8");
        assert_eq!(range.value(0), "Jan 1 - Jan 31");
        assert_eq!(c.rejects.len(), 2);
        assert_eq!((c.rejects[0].line, c.rejects[0].row, c.rejects[0].summary), (6, 2, false));
        assert!(c.rejects[0].reason.contains("3 fields, the header has 2"));
        // The Total row is read as a record and kept whole, by header, for reconciliation.
        assert_eq!((c.rejects[1].line, c.rejects[1].row, c.rejects[1].summary), (9, 3, true));
        assert_eq!(c.rejects[1].raw, r#"{"Campaign":"Total","Cost":"1234.50"}"#);
    }

    #[test]
    fn a_summary_row_is_found_past_leading_null_markers() {
        // Google Ads writes " --" before the label of some Total rows.
        let mut o = opts();
        o.delimiter = b'\t';
        o.summary_rows = vec![Regex::new("^Total:").expect("regex")];
        o.nulls = NullMarkers::new(&["--".to_string()]);
        let (_, chunks, _) = read_all("Status\tKeyword\tCost\nEnabled\ttow\t0.12\n --\tTotal: All keywords\t0.12\n", o);
        let c = &chunks[0];
        assert_eq!(c.batch.num_rows(), 1);
        assert!(c.rejects[0].summary, "{:?}", c.rejects);
        assert!(c.rejects[0].reason.contains("'Total: All keywords'"));
    }

    #[test]
    fn header_patterns_rename_a_varying_header_and_keep_what_it_says() {
        // Meta Ads Manager puts the account's currency in the header.
        let mut o = opts();
        o.header_patterns =
            vec![("Amount spent".into(), Regex::new(r"^Amount spent \((?P<currency>[A-Z]{3})\)$").expect("regex"))];
        o.required_headers = vec!["Campaign name".into(), "Amount spent".into()];
        let (headers, chunks, _) = read_all("Campaign name,Amount spent (EUR)\nSpring,12.50\n", o);
        assert_eq!(headers, ["Campaign name", "Amount spent", "Amount spent.currency"]);
        let currency = chunks[0].batch.column(2).as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8");
        assert_eq!(currency.value(0), "EUR");
    }

    #[test]
    fn sniffs_tabs_and_semicolons() {
        assert_eq!(sniff_delimiter("a\tb\tc\n1\t2\t3\n"), b'\t');
        assert_eq!(sniff_delimiter("a;b;c\n1;2,5;3\n"), b';');
        assert_eq!(sniff_delimiter("Title\na,b\n1,2\n"), b',');
    }

    #[test]
    fn latin1_bytes_in_a_utf8_file_reject_their_row_with_a_hint() {
        let bytes: &[u8] = b"name,city\nAna,Bogot\xe1\nBo,Lima\n";
        let mut r = CsvReader::new("t.csv", Box::new(bytes), opts(), 0).expect("opens");
        let c = r.next_chunk().expect("reads").expect("chunk");
        assert_eq!(c.batch.num_rows(), 1);
        assert!(c.rejects[0].reason.contains("column 'city' is not valid UTF-8"), "{:?}", c.rejects);
    }

    #[test]
    fn pads_short_rows_when_declared_and_maps_null_markers() {
        let mut o = opts();
        o.short_rows = ShortRows::Pad;
        o.nulls = NullMarkers::new(&["null".to_string()]);
        let (_, chunks, _) = read_all("a,b,c\n1,null\n", o);
        let b = &chunks[0].batch;
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(1).null_count(), 1);
        assert_eq!(b.column(2).null_count(), 1);
    }

    #[test]
    fn backslash_escapes_inside_quotes() {
        let mut o = opts();
        o.escape = Some(b'\\');
        let (_, chunks, _) = read_all("a,b\n\"INDIE\\, EGYPT\",x\n", o);
        let col = chunks[0].batch.column(0).as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8").clone();
        assert_eq!(col.value(0), "INDIE, EGYPT");
    }

    #[test]
    fn an_empty_file_has_no_header() {
        let err = CsvReader::new("e.csv", Box::new(&b""[..]), opts(), 0).err().expect("fails");
        assert!(err.to_string().contains("e.csv:1: no header row"), "{err}");
    }
}
