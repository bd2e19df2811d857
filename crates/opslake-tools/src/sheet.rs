//! Spreadsheets (XLSX, XLSB, XLS, ODS) through calamine. Each sheet with cells is one stream,
//! written out as delimited text so that everything the CSV path knows (headers past a
//! preamble, summary rows, header patterns, null markers) holds for a sheet as it does for the
//! same report downloaded as CSV.
//!
//! The text is made from the cells' types, never from how they are displayed: a date cell is
//! an ISO date, a number cell its value (to the 15 significant digits Excel keeps), a formula
//! its cached result, an error cell its code (`#DIV/0!`, which then fails to parse and is
//! rejected or nulled with its reason). Each cell of a merged region takes the region's value.
//! Line numbers in messages are the sheet's own row numbers, also when a cell holds line breaks.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::Arc;

use calamine::{Data, Dimensions, Ods, Range, Reader, Sheets, Xls, Xlsb, Xlsx};

use crate::input::{Opened, Spreadsheet, open_stream};
use crate::{Error, Result};

/// Where a stream came from when it is a sheet of a workbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetSource {
    /// The workbook's format.
    pub workbook: Spreadsheet,
    /// The sheet's name, as its tab shows it.
    pub sheet: String,
    /// Per line of the stream's text (from 0), the sheet row (from 1) it belongs to.
    rows: Vec<u64>,
}

impl SheetSource {
    /// The sheet row of a 1-based line of the stream's text.
    pub fn row_of_line(&self, line: u64) -> u64 {
        let index = usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX);
        self.rows.get(index).copied().unwrap_or(line)
    }
}

/// Calls `visit` with each sheet of the workbook at `path` that has cells, in tab order.
pub(crate) fn visit_sheets(
    path: &Path,
    display: &str,
    file_name: &str,
    kind: Spreadsheet,
    visit: &mut dyn FnMut(Opened<'_>) -> Result<()>,
) -> Result<()> {
    let unreadable = |e: &dyn std::fmt::Display| Error::BadInput {
        file: display.to_string(),
        line: 0,
        message: format!("not a readable {}: {e}", kind.name()),
    };
    let file = BufReader::new(File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?);
    // The container was recognised already: open it as what it is, not by trying each reader.
    let opened = match kind {
        Spreadsheet::Xlsx => Xlsx::new(file).map(Sheets::Xlsx).map_err(|e| e.to_string()),
        Spreadsheet::Xlsb => Xlsb::new(file).map(Sheets::Xlsb).map_err(|e| e.to_string()),
        Spreadsheet::Xls => Xls::new(file).map(Sheets::Xls).map_err(|e| e.to_string()),
        Spreadsheet::Ods => Ods::new(file).map(Sheets::Ods).map_err(|e| e.to_string()),
    };
    let mut workbook = opened.map_err(|e| unreadable(&e))?;
    for sheet in workbook.sheet_names() {
        let range = workbook.worksheet_range(&sheet).map_err(|e| unreadable(&format!("sheet '{sheet}': {e}")))?;
        if range.is_empty() {
            continue;
        }
        let merged = merged_regions(&mut workbook, &sheet);
        let (text, rows) = render(&range, &merged);
        drop(range);
        let name = format!("{display}!{sheet}");
        let mut opened = open_stream(name, file_name.to_string(), Box::new(Cursor::new(text.into_bytes())))?;
        opened.sheet = Some(Arc::new(SheetSource { workbook: kind, sheet, rows }));
        visit(opened)?;
    }
    Ok(())
}

/// Merged regions of a sheet, where the format records them (XLSX and XLS; an ODS reader
/// leaves the covered cells empty).
fn merged_regions<RS: std::io::Read + std::io::Seek>(workbook: &mut Sheets<RS>, sheet: &str) -> Vec<Dimensions> {
    match workbook {
        Sheets::Xlsx(x) => x.merge_cells_by_sheet_name(sheet).unwrap_or_default(),
        Sheets::Xls(x) => x.merge_cells_by_sheet_name(sheet).unwrap_or_default(),
        Sheets::Xlsb(_) | Sheets::Ods(_) => Vec::new(),
    }
}

/// The sheet as comma-separated text, one record per sheet row (rows above the used range as
/// blank lines, so lines and rows agree), and per line the row it belongs to.
fn render(range: &Range<Data>, merged: &[Dimensions]) -> (String, Vec<u64>) {
    let Some((top, left)) = range.start() else { return (String::new(), Vec::new()) };
    let (height, width) = range.get_size();
    let mut out = Vec::with_capacity(height * width * 8);
    let mut rows: Vec<u64> = (1..=u64::from(top)).collect();
    out.extend(std::iter::repeat_n(b'\n', top as usize));
    let mut cells: Vec<String> = Vec::with_capacity(width);
    for (i, row) in range.rows().enumerate() {
        let r = top + i as u32;
        cells.clear();
        // Columns left of the used range are empty, and kept so column positions hold.
        cells.extend(std::iter::repeat_n(String::new(), left as usize));
        for (j, cell) in row.iter().enumerate() {
            let c = left + j as u32;
            let value = match cell {
                Data::Empty => covering(merged, r, c).and_then(|(r0, c0)| range.get_value((r0, c0))),
                other => Some(other),
            };
            cells.push(value.map(cell_text).unwrap_or_default());
        }
        while cells.last().is_some_and(String::is_empty) {
            cells.pop();
        }
        let start = out.len();
        if cells.is_empty() {
            out.push(b'\n');
        } else {
            let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(&mut out);
            // Writing to a Vec cannot fail.
            let _ = w.write_record(&cells);
            let _ = w.flush();
        }
        let lines = out[start..].iter().filter(|b| **b == b'\n').count();
        rows.extend(std::iter::repeat_n(u64::from(r) + 1, lines));
    }
    // Only valid UTF-8 went in: the cells are Rust strings.
    (String::from_utf8(out).unwrap_or_default(), rows)
}

/// The top-left cell of the merged region covering (`row`, `col`), when it is not that cell.
fn covering(merged: &[Dimensions], row: u32, col: u32) -> Option<(u32, u32)> {
    merged
        .iter()
        .find(|d| d.start.0 <= row && row <= d.end.0 && d.start.1 <= col && col <= d.end.1)
        .map(|d| d.start)
        .filter(|start| *start != (row, col))
}

/// A cell as text, by its type.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_text(*f),
        Data::Bool(b) => b.to_string(),
        Data::Error(e) => e.to_string(),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                let ms = (dt.as_f64() * 86_400_000.0).round() as i64;
                let (sign, ms) = if ms < 0 { ("-", -ms) } else { ("", ms) };
                let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
                return format!("{sign}{h}:{m:02}:{s:02}");
            }
            // Below 1 a date-time cell is a time of day with no date.
            let time_only = dt.as_f64() >= 0.0 && dt.as_f64() < 1.0;
            match dt.as_datetime() {
                Some(t) if time_only => t.format("%H:%M:%S").to_string(),
                Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
                Some(t) if t.and_utc().timestamp_subsec_millis() == 0 => t.format("%Y-%m-%d %H:%M:%S").to_string(),
                Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                None => number_text(dt.as_f64()),
            }
        }
    }
}

/// A number cell as Excel shows and saves it as CSV: 15 significant digits, so the binary
/// artefact of `527321.06` (stored as 527321.0599999999) is not taken for a value.
pub fn number_text(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f == f.trunc() && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    format!("{f:.14e}").parse::<f64>().map_or_else(|_| f.to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_excels_fifteen_digits() {
        assert_eq!(number_text(527_321.059_999_999_9), "527321.06");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(12.0), "12");
        assert_eq!(number_text(-3.5), "-3.5");
        assert_eq!(number_text(1e-7), "0.0000001");
        assert_eq!(number_text(123_456_789_012_345_680.0), "123456789012346000");
    }

    #[test]
    fn merged_regions_fill_their_cells_and_lines_follow_rows() {
        let mut range = Range::new((2, 0), (4, 2));
        range.set_value((2, 0), Data::String("Region".into()));
        range.set_value((2, 1), Data::String("Note".into()));
        range.set_value((3, 0), Data::String("North".into()));
        range.set_value((3, 1), Data::String("two\nlines".into()));
        range.set_value((3, 2), Data::Float(1.5));
        range.set_value((4, 2), Data::Int(2));
        let merged = [Dimensions { start: (3, 0), end: (4, 0) }];
        let (text, rows) = render(&range, &merged);
        assert_eq!(text, "\n\nRegion,Note\nNorth,\"two\nlines\",1.5\nNorth,,2\n");
        // Lines 1-2 are rows 1-2 (above the used range); row 4 spans lines 4 and 5.
        assert_eq!(rows, [1, 2, 3, 4, 4, 5]);
        let source = SheetSource { workbook: Spreadsheet::Xlsx, sheet: "S".into(), rows };
        assert_eq!(source.row_of_line(6), 5);
        assert_eq!(source.row_of_line(99), 99);
    }
}
