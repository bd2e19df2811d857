//! Workbooks written from a test's own cells: the smallest XLSX and ODS files the formats
//! allow, with the parts that matter to a reader (cell types, a date style, formulas with
//! their cached values, merged regions, sheets that start below row 1).

use std::io::Write;
use std::path::Path;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No cell at all.
    Empty,
    /// A text cell.
    Text(&'static str),
    /// A number cell.
    Number(f64),
    /// A number cell with a date format: days since 1899-12-30, with the time as a fraction.
    Date(f64),
    /// A formula and the result the writing program cached.
    Formula(&'static str, f64),
    /// A boolean cell.
    Bool(bool),
    /// An error cell (`#DIV/0!`).
    Error(&'static str),
}

/// One sheet: its name, the 0-based row of its first row, the rows, and merged regions as
/// A1 ranges (`A2:A3`).
pub struct Sheet {
    /// Tab name.
    pub name: &'static str,
    /// Rows above the first: absent from the file, as a writer that starts low leaves them.
    pub first_row: usize,
    /// Cells, row by row.
    pub rows: Vec<Vec<Cell>>,
    /// Merged regions.
    pub merged: Vec<&'static str>,
}

fn column(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_REL: &str = "http://schemas.openxmlformats.org/package/2006/relationships";

/// Writes `sheets` as an XLSX workbook at `path`.
pub fn write_xlsx(path: &Path, sheets: &[Sheet]) {
    let mut parts: Vec<(String, String)> = Vec::new();
    let overrides: String = (1..=sheets.len())
        .map(|i| {
            format!(
                r#"<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#
            )
        })
        .collect();
    parts.push((
        "[Content_Types].xml".into(),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>{overrides}</Types>"#
        ),
    ));
    parts.push((
        "_rels/.rels".into(),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL}"><Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
        ),
    ));
    let sheet_list: String = sheets
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#"<sheet name="{}" sheetId="{}" r:id="rId{}"/>"#, escape(s.name), i + 1, i + 1))
        .collect();
    parts.push((
        "xl/workbook.xml".into(),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>{sheet_list}</sheets></workbook>"#
        ),
    ));
    let rels: String = (1..=sheets.len())
        .map(|i| format!(r#"<Relationship Id="rId{i}" Type="{REL}/worksheet" Target="worksheets/sheet{i}.xml"/>"#))
        .collect();
    parts.push((
        "xl/_rels/workbook.xml.rels".into(),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL}">{rels}<Relationship Id="rIdStyles" Type="{REL}/styles" Target="styles.xml"/></Relationships>"#
        ),
    ));
    // Style 1 is the built-in short date format (14), as Excel gives a typed date.
    parts.push((
        "xl/styles.xml".into(),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="{MAIN}"><fonts count="1"><font/></fonts><fills count="1"><fill/></fills><borders count="1"><border/></borders><cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>"#
        ),
    ));
    for (i, sheet) in sheets.iter().enumerate() {
        let mut data = String::new();
        for (r, row) in sheet.rows.iter().enumerate() {
            let n = sheet.first_row + r + 1;
            data.push_str(&format!(r#"<row r="{n}">"#));
            for (c, cell) in row.iter().enumerate() {
                let at = format!("{}{n}", column(c));
                data.push_str(&match cell {
                    Cell::Empty => String::new(),
                    Cell::Text(t) => {
                        format!(r#"<c r="{at}" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>"#, escape(t))
                    }
                    Cell::Number(v) => format!(r#"<c r="{at}"><v>{v}</v></c>"#),
                    Cell::Date(v) => format!(r#"<c r="{at}" s="1"><v>{v}</v></c>"#),
                    Cell::Formula(f, v) => format!(r#"<c r="{at}"><f>{}</f><v>{v}</v></c>"#, escape(f)),
                    Cell::Bool(b) => format!(r#"<c r="{at}" t="b"><v>{}</v></c>"#, u8::from(*b)),
                    Cell::Error(e) => format!(r#"<c r="{at}" t="e"><v>{}</v></c>"#, escape(e)),
                });
            }
            data.push_str("</row>");
        }
        let merges = if sheet.merged.is_empty() {
            String::new()
        } else {
            let cells: String = sheet.merged.iter().map(|m| format!(r#"<mergeCell ref="{m}"/>"#)).collect();
            format!(r#"<mergeCells count="{}">{cells}</mergeCells>"#, sheet.merged.len())
        };
        parts.push((
            format!("xl/worksheets/sheet{}.xml", i + 1),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}" xmlns:r="{REL}"><sheetData>{data}</sheetData>{merges}</worksheet>"#
            ),
        ));
    }
    write_zip(path, &parts);
}

/// Writes `sheets` as an OpenDocument spreadsheet at `path` (merged regions are not written).
pub fn write_ods(path: &Path, sheets: &[Sheet]) {
    let mut tables = String::new();
    for sheet in sheets {
        tables.push_str(&format!(r#"<table:table table:name="{}">"#, escape(sheet.name)));
        for _ in 0..sheet.first_row {
            tables.push_str("<table:table-row><table:table-cell/></table:table-row>");
        }
        for row in &sheet.rows {
            tables.push_str("<table:table-row>");
            for cell in row {
                tables.push_str(&match cell {
                    Cell::Empty => "<table:table-cell/>".to_string(),
                    Cell::Text(t) => format!(
                        r#"<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>"#,
                        escape(t)
                    ),
                    Cell::Number(v) | Cell::Formula(_, v) => format!(
                        r#"<table:table-cell office:value-type="float" office:value="{v}"><text:p>{v}</text:p></table:table-cell>"#
                    ),
                    Cell::Date(v) => {
                        let day = (*v).floor() as i64;
                        let date = chrono_free_date(day);
                        format!(
                            r#"<table:table-cell office:value-type="date" office:date-value="{date}"><text:p>{date}</text:p></table:table-cell>"#
                        )
                    }
                    Cell::Bool(b) => format!(
                        r#"<table:table-cell office:value-type="boolean" office:boolean-value="{b}"><text:p>{b}</text:p></table:table-cell>"#
                    ),
                    Cell::Error(e) => {
                        format!(r#"<table:table-cell office:value-type="string"><text:p>{e}</text:p></table:table-cell>"#)
                    }
                });
            }
            tables.push_str("</table:table-row>");
        }
        tables.push_str("</table:table>");
    }
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body></office:document-content>"#
    );
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    write_zip(
        path,
        &[
            ("mimetype".into(), "application/vnd.oasis.opendocument.spreadsheet".into()),
            ("META-INF/manifest.xml".into(), manifest.into()),
            ("content.xml".into(), content),
        ],
    );
}

/// `YYYY-MM-DD` of a day counted from 1899-12-30 (no leap-year table needed past 1900-03-01).
fn chrono_free_date(serial: i64) -> String {
    // Days from 1970-01-01, then the civil-from-days algorithm.
    let z = serial - 25_569 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn write_zip(path: &Path, parts: &[(String, String)]) {
    let file = std::fs::File::create(path).expect("create workbook");
    let mut zip = zip::ZipWriter::new(file);
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = zip::write::SimpleFileOptions::default();
    for (name, body) in parts {
        // The mimetype member must come first and uncompressed (OpenDocument's rule).
        zip.start_file(name.as_str(), if name == "mimetype" { stored } else { deflated }).expect("member");
        zip.write_all(body.as_bytes()).expect("write member");
    }
    zip.finish().expect("finish workbook");
}

#[cfg(test)]
mod tests {
    #[test]
    fn serial_days_are_calendar_dates() {
        assert_eq!(super::chrono_free_date(45_296), "2024-01-05");
        assert_eq!(super::chrono_free_date(25_569), "1970-01-01");
        assert_eq!(super::column(0), "A");
        assert_eq!(super::column(27), "AB");
    }
}
