//! Opening an export: decompression (`.gz`, `.zip`), workbooks (each sheet a stream, see
//! [`crate::sheet`]), encoding detection and transcoding, and a look at the first bytes for
//! detection. Everything downstream reads UTF-8.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use encoding_rs::Encoding;
use encoding_rs_io::DecodeReaderBytesBuilder;

use crate::landed::{Loader, ParquetLines};
use crate::sheet::{SheetSource, visit_sheets};
use crate::{Error, Result};

/// Bytes read ahead to detect format, encoding and dialect.
pub const SAMPLE_BYTES: usize = 64 * 1024;

/// How the bytes of a file are to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8; fields are validated one by one, so a stray Latin-1 byte rejects its row with a
    /// hint instead of being replaced silently.
    Utf8,
    /// Any other encoding, transcoded to UTF-8 while streaming.
    Other(&'static Encoding),
}

impl TextEncoding {
    /// The WHATWG name (`UTF-8`, `UTF-16LE`, `windows-1252`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::Other(e) => e.name(),
        }
    }

    /// Parses a declared encoding: any WHATWG label (`latin1`, `utf-16le`, `cp1252`, ...).
    pub fn from_label(label: &str) -> Option<Self> {
        let enc = Encoding::for_label(label.trim().as_bytes())?;
        Some(if enc == encoding_rs::UTF_8 { Self::Utf8 } else { Self::Other(enc) })
    }
}

/// One input stream: a file, or a member of a zip archive, with a decoded look at its start.
pub struct Opened<'a> {
    /// What to call it in messages: the path, or `archive.zip!member.csv`.
    pub name: String,
    /// The name used for glob matching: the file name without a `.gz` suffix.
    pub file_name: String,
    /// The encoding detected from BOM and content; `None` for binary data.
    pub detected: Option<TextEncoding>,
    /// The first bytes, decoded with the detected encoding (Windows-1252 for binary), BOM
    /// removed: enough to recognise the export.
    pub sample: String,
    /// True when the sample is the whole stream.
    pub complete: bool,
    /// The workbook and sheet, when the stream is a sheet.
    pub sheet: Option<Arc<SheetSource>>,
    /// True when [`Self::detected`] was declared (the connection's `encoding`), not detected:
    /// it then wins over a shape's own.
    pub declared: bool,
    /// True when the stream is records written by opslake, one JSON object per line (the rows
    /// of a Parquet file, a loader's records unwrapped; see [`crate::landed`]).
    pub records: bool,
    /// The loader that landed the file, by its metadata columns.
    pub loader: Option<Loader>,
    /// The sample's bytes, then the rest of the stream.
    head: Vec<u8>,
    rest: Box<dyn Read + 'a>,
}

/// What detection looks at: names and the decoded first bytes.
#[derive(Debug, Clone)]
pub struct Sniff {
    /// As [`Opened::name`].
    pub name: String,
    /// As [`Opened::file_name`].
    pub file_name: String,
    /// As [`Opened::sample`].
    pub sample: String,
    /// As [`Opened::complete`].
    pub complete: bool,
    /// As [`Opened::sheet`].
    pub sheet: Option<Arc<SheetSource>>,
    /// As [`Opened::records`].
    pub records: bool,
    /// As [`Opened::loader`].
    pub loader: Option<Loader>,
}

impl<'a> Opened<'a> {
    /// The parts detection needs, detached from the stream.
    pub fn sniff(&self) -> Sniff {
        Sniff {
            name: self.name.clone(),
            file_name: self.file_name.clone(),
            sample: self.sample.clone(),
            complete: self.complete,
            sheet: self.sheet.clone(),
            records: self.records,
            loader: self.loader,
        }
    }

    /// The stream is in `encoding`, whatever its bytes suggest: the sample is decoded again.
    pub fn declare_encoding(&mut self, encoding: TextEncoding) {
        self.sample = decode_sample(&self.head, Some(encoding));
        self.detected = Some(encoding);
        self.declared = true;
    }

    /// The whole stream as UTF-8 text, decoded with `encoding`.
    pub fn into_text(self, encoding: TextEncoding) -> Box<dyn Read + 'a> {
        let raw: Box<dyn Read + 'a> = Box::new(Cursor::new(self.head).chain(self.rest));
        match encoding {
            TextEncoding::Utf8 => Box::new(SkipBom::new(raw)),
            TextEncoding::Other(enc) => {
                Box::new(DecodeReaderBytesBuilder::new().encoding(Some(enc)).bom_override(true).build(raw))
            }
        }
    }
}

/// Calls `visit` with each stream in `path`: the file itself, its gunzipped content, each
/// member of a zip archive, each sheet of a workbook, or a Parquet file's rows; a loader's
/// files (see [`crate::landed`]) as their records.
pub fn visit_inputs(path: &Path, visit: &mut dyn FnMut(Opened<'_>) -> Result<()>) -> Result<()> {
    visit_inputs_as(path, &path.display().to_string(), visit)
}

/// [`visit_inputs`], the streams named after `name` (the file's name in the lake) rather than
/// the path it is opened at.
pub fn visit_inputs_as(path: &Path, name: &str, visit: &mut dyn FnMut(Opened<'_>) -> Result<()>) -> Result<()> {
    visit_streams(path, name, &mut |opened| visit(landed(opened)?))
}

/// [`visit_inputs_as`] for bytes that are not a local file (an object read from a store):
/// `file_name` is the name tool files match. A text or gzip stream is read as it arrives; a
/// format that needs the whole file at hand (a zip, a workbook, Parquet) is spooled to a
/// temporary file first, one at a time, and read from there.
pub fn visit_reader_as(
    raw: &mut dyn Read,
    name: &str,
    file_name: &str,
    visit: &mut dyn FnMut(Opened<'_>) -> Result<()>,
) -> Result<()> {
    visit_bytes(Box::new(raw), None, name, file_name, &mut |opened| visit(landed(opened)?))
}

fn visit_streams(path: &Path, name: &str, visit: &mut dyn FnMut(Opened<'_>) -> Result<()>) -> Result<()> {
    let file = BufReader::new(File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?);
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    visit_bytes(Box::new(file), Some(path), name, &file_name, visit)
}

/// The streams of `raw`, told apart by their first bytes; `at` is where the same bytes lie as
/// a local file, which a container format is opened from (else they are spooled).
fn visit_bytes(
    mut raw: Box<dyn Read + '_>,
    at: Option<&Path>,
    name: &str,
    file_name: &str,
    visit: &mut dyn FnMut(Opened<'_>) -> Result<()>,
) -> Result<()> {
    let display = name.to_string();
    let unreadable =
        |e: io::Error| Error::BadInput { file: display.clone(), line: 0, message: format!("cannot read: {e}") };
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut raw, &mut magic).map_err(unreadable)?;
    let mut head = Cursor::new(magic[..n].to_vec()).chain(raw);
    let magic = &magic[..n];
    if magic.starts_with(&[0x1f, 0x8b]) {
        let inner = file_name.strip_suffix(".gz").unwrap_or(file_name).to_string();
        return visit(open_stream(display, inner, Box::new(flate2::read::MultiGzDecoder::new(head)))?);
    }
    let container = *magic == *b"PAR1" || *magic == OLE2_MAGIC || magic.starts_with(b"PK\x03\x04");
    if !container {
        return visit(open_stream(display, file_name.to_string(), Box::new(head))?);
    }
    match at {
        Some(path) => {
            drop(head);
            visit_container(path, &display, file_name, visit)
        }
        None => {
            let spool_err = |source| Error::Io { path: std::env::temp_dir(), source };
            let mut spooled = tempfile::NamedTempFile::new().map_err(spool_err)?;
            io::copy(&mut head, spooled.as_file_mut()).map_err(unreadable)?;
            drop(head);
            visit_container(spooled.path(), &display, file_name, visit)
        }
    }
}

/// A Parquet file, a legacy workbook, or a zip (a workbook or an archive of exports), at `path`.
fn visit_container(
    path: &Path,
    display: &str,
    file_name: &str,
    visit: &mut dyn FnMut(Opened<'_>) -> Result<()>,
) -> Result<()> {
    let display = display.to_string();
    let io_err = |source: io::Error| Error::Io { path: path.to_path_buf(), source };
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut File::open(path).map_err(io_err)?, &mut magic).map_err(io_err)?;
    if magic[..n] == *b"PAR1" {
        let file = File::open(path).map_err(io_err)?;
        let rows = ParquetLines::open(file).map_err(|e| Error::BadInput {
            file: display.clone(),
            line: 0,
            message: format!("not a readable Parquet file: {e}"),
        })?;
        let mut opened = open_stream(display, file_name.to_string(), Box::new(rows))?;
        opened.records = true;
        return visit(opened);
    }
    if magic[..n] == OLE2_MAGIC {
        return visit_sheets(path, &display, file_name, Spreadsheet::Xls, visit);
    }
    let archive_file = File::open(path).map_err(io_err)?;
    let bad_zip = |e: zip::result::ZipError| Error::BadInput {
        file: display.clone(),
        line: 0,
        message: format!("not a readable zip archive: {e}"),
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(archive_file)).map_err(bad_zip)?;
    // A workbook is a zip too, but its members are the workbook's own parts, never exports.
    if let Some(kind) = workbook_in_zip(&mut archive) {
        drop(archive);
        return visit_sheets(path, &display, file_name, kind, visit);
    }
    for i in 0..archive.len() {
        let member = archive.by_index(i).map_err(bad_zip)?;
        let member_name = member.name().map_err(bad_zip)?.into_owned();
        let short = member_name.rsplit('/').next().unwrap_or(&member_name).to_string();
        if member.is_dir() || short.starts_with('.') || member_name.starts_with("__MACOSX/") {
            continue;
        }
        visit(open_stream(format!("{display}!{member_name}"), short, Box::new(member))?)?;
    }
    Ok(())
}

/// The stream as the loader that landed it wrote its records, when its columns say which.
/// Loaders write UTF-8: a connection's declared encoding is not awaited.
fn landed(mut opened: Opened<'_>) -> Result<Opened<'_>> {
    let Some(encoding) = opened.detected.filter(|_| opened.sheet.is_none()) else { return Ok(opened) };
    let Some(loader) = Loader::of(&crate::landed::first_columns(&opened.sample)) else { return Ok(opened) };
    if !crate::landed::rewrites(loader) {
        opened.loader = Some(loader);
        return Ok(opened);
    }
    let (name, file_name, sample) = (opened.name.clone(), opened.file_name.clone(), opened.sample.clone());
    let text = opened.into_text(encoding);
    let records = crate::landed::rewrite(loader, &name, &sample, text);
    let mut out = open_stream(name, file_name, records)?;
    out.records = true;
    out.loader = Some(loader);
    Ok(out)
}

/// The first bytes of an OLE2 compound file: the container of legacy `.xls` workbooks.
const OLE2_MAGIC: [u8; 4] = [0xD0, 0xCF, 0x11, 0xE0];

/// A spreadsheet workbook, recognised by its container rather than its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spreadsheet {
    /// Office Open XML (`.xlsx`, `.xlsm`): a zip with `xl/workbook.xml`.
    Xlsx,
    /// Excel binary workbook (`.xlsb`): a zip with `xl/workbook.bin`.
    Xlsb,
    /// Legacy Excel (`.xls`): an OLE2 compound file.
    Xls,
    /// OpenDocument (`.ods`): a zip whose `mimetype` names a spreadsheet.
    Ods,
}

impl Spreadsheet {
    /// How messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Xlsx => "Excel workbook (XLSX)",
            Self::Xlsb => "Excel binary workbook (XLSB)",
            Self::Xls => "legacy Excel workbook (XLS)",
            Self::Ods => "OpenDocument spreadsheet (ODS)",
        }
    }
}

fn workbook_in_zip<R: Read + io::Seek>(archive: &mut zip::ZipArchive<R>) -> Option<Spreadsheet> {
    if archive.index_for_name("xl/workbook.xml").is_some() {
        return Some(Spreadsheet::Xlsx);
    }
    if archive.index_for_name("xl/workbook.bin").is_some() {
        return Some(Spreadsheet::Xlsb);
    }
    let mut mimetype = String::new();
    let member = archive.by_name("mimetype").ok()?;
    member.take(256).read_to_string(&mut mimetype).ok()?;
    mimetype.trim().starts_with("application/vnd.oasis.opendocument.spreadsheet").then_some(Spreadsheet::Ods)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(crate) fn open_stream<'a>(name: String, file_name: String, mut raw: Box<dyn Read + 'a>) -> Result<Opened<'a>> {
    let mut sample = vec![0u8; SAMPLE_BYTES];
    let n = read_up_to(&mut raw, &mut sample).map_err(|e| Error::BadInput {
        file: name.clone(),
        line: 1,
        message: format!("cannot read: {e} (the file may be truncated or corrupt)"),
    })?;
    sample.truncate(n);
    let detected = detect_encoding(&sample, n < SAMPLE_BYTES);
    let text = decode_sample(&sample, detected);
    let complete = n < SAMPLE_BYTES;
    Ok(Opened {
        name,
        file_name,
        detected,
        sample: text,
        complete,
        sheet: None,
        declared: false,
        records: false,
        loader: None,
        head: sample,
        rest: raw,
    })
}

/// The sample as text, byte-order mark removed (Windows-1252 for binary data).
fn decode_sample(sample: &[u8], encoding: Option<TextEncoding>) -> String {
    match encoding {
        Some(TextEncoding::Utf8) => {
            let body = sample.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(sample);
            String::from_utf8_lossy(body).into_owned()
        }
        Some(TextEncoding::Other(enc)) => enc.decode(sample).0.trim_start_matches('\u{feff}').to_string(),
        None => encoding_rs::WINDOWS_1252.decode(sample).0.into_owned(),
    }
}

/// BOM first, then: valid UTF-8 is UTF-8; NUL bytes in alternate positions are BOM-less
/// UTF-16; other NUL bytes mean binary (`None`); anything else is what chardetng (Firefox's
/// detector) makes of the bytes: Windows-1252 for Western text, Windows-1250 or ISO-8859-2 for
/// Central European, Windows-1251 for Cyrillic, Shift_JIS or EUC-JP, EUC-KR, GBK, Big5...
/// A declared `encoding` (on the connection or the shape) is never second-guessed.
pub fn detect_encoding(sample: &[u8], complete: bool) -> Option<TextEncoding> {
    if let Some((enc, _)) = Encoding::for_bom(sample) {
        return Some(if enc == encoding_rs::UTF_8 { TextEncoding::Utf8 } else { TextEncoding::Other(enc) });
    }
    // A few NUL bytes occur in real text exports (pasted from other systems); binary files and
    // BOM-less UTF-16 have them everywhere.
    let nuls = sample.iter().filter(|b| **b == 0).count();
    if nuls * 200 > sample.len() {
        let even_nuls = sample.iter().step_by(2).filter(|b| **b == 0).count();
        let odd_nuls = sample.iter().skip(1).step_by(2).filter(|b| **b == 0).count();
        let half = sample.len() / 4;
        return if odd_nuls > half && even_nuls == 0 {
            Some(TextEncoding::Other(encoding_rs::UTF_16LE))
        } else if even_nuls > half && odd_nuls == 0 {
            Some(TextEncoding::Other(encoding_rs::UTF_16BE))
        } else {
            None
        };
    }
    match std::str::from_utf8(sample) {
        Ok(_) => Some(TextEncoding::Utf8),
        // A sample cut inside a multi-byte character is still UTF-8.
        Err(e) if e.error_len().is_none() && !complete => Some(TextEncoding::Utf8),
        Err(_) => {
            let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
            detector.feed(sample, complete);
            let guess = detector.guess(None, chardetng::Utf8Detection::Deny);
            // Where the sample reads the same in Windows-1252 (few non-ASCII bytes, all letters
            // both share), there is no evidence against the encoding most exports are in.
            let western = encoding_rs::WINDOWS_1252;
            let same = guess == western
                || western.decode_without_bom_handling(sample).0 == guess.decode_without_bom_handling(sample).0;
            Some(TextEncoding::Other(if same { western } else { guess }))
        }
    }
}

/// Drops a leading UTF-8 byte-order mark.
struct SkipBom<R> {
    inner: R,
    started: bool,
    pending: Vec<u8>,
}

impl<R: Read> SkipBom<R> {
    fn new(inner: R) -> Self {
        Self { inner, started: false, pending: Vec::new() }
    }
}

impl<R: Read> Read for SkipBom<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.started = true;
            let mut head = [0u8; 3];
            let n = read_up_to(&mut self.inner, &mut head)?;
            if head[..n] != *b"\xEF\xBB\xBF" {
                self.pending.extend_from_slice(&head[..n]);
            }
        }
        if !self.pending.is_empty() {
            let take = self.pending.len().min(buf.len());
            buf[..take].copy_from_slice(&self.pending[..take]);
            self.pending.drain(..take);
            return Ok(take);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_boms_utf16_latin1_and_binary() {
        assert_eq!(detect_encoding(b"\xEF\xBB\xBFa,b", true), Some(TextEncoding::Utf8));
        assert_eq!(detect_encoding(b"\xFF\xFEa\0,\0", true), Some(TextEncoding::Other(encoding_rs::UTF_16LE)));
        assert_eq!(detect_encoding(b"a\0,\0b\0\n\0", true), Some(TextEncoding::Other(encoding_rs::UTF_16LE)));
        assert_eq!(detect_encoding("Bogotá".as_bytes(), true), Some(TextEncoding::Utf8));
        assert_eq!(detect_encoding(b"Bogot\xe1", true), Some(TextEncoding::Other(encoding_rs::WINDOWS_1252)));
        assert_eq!(detect_encoding(b"\x00\x01\x02\x00\x00\x00\x07", true), None);
        // Cut in the middle of a two-byte character.
        assert_eq!(detect_encoding(&"aé".as_bytes()[..2], false), Some(TextEncoding::Utf8));
    }

    #[test]
    fn legacy_encodings_are_detected_from_the_bytes() {
        // Small exports as each locale's Excel or ERP writes them without a byte-order mark.
        let samples: [(&str, &'static Encoding); 8] = [
            (
                "Name,City,Note\nJosé,São Paulo,Prüfung bestanden\nFrançois,Zürich,Ça va très bien\n",
                encoding_rs::WINDOWS_1252,
            ),
            (
                "Imię,Miasto,Uwagi\nZażółć gęślą jaźń,Łódź,Świętokrzyska 5\nMałgorzata Wąsik,Gdańsk,Żółty ślad\n",
                encoding_rs::WINDOWS_1250,
            ),
            (
                "Имя,Город,Примечание\nИван Петров,Москва,Новый клиент\nОльга Смирнова,Санкт-Петербург,Счёт оплачен\n",
                encoding_rs::WINDOWS_1251,
            ),
            (
                "Όνομα,Πόλη,Σχόλιο\nΓιάννης Παπαδόπουλος,Αθήνα,Νέος πελάτης\nΜαρία Κωνσταντίνου,Θεσσαλονίκη,Πληρώθηκε\n",
                encoding_rs::ISO_8859_7,
            ),
            (
                "名前,都市,備考\n山田太郎,東京都千代田区,新規のお客様です\n鈴木花子,大阪市北区,請求書は支払い済みです\n",
                encoding_rs::SHIFT_JIS,
            ),
            (
                "名前,都市,備考\n山田太郎,東京都千代田区,新規のお客様です\n鈴木花子,大阪市北区,請求書は支払い済みです\n",
                encoding_rs::EUC_JP,
            ),
            (
                "이름,도시,비고\n김민수,서울특별시 강남구,신규 고객입니다\n이영희,부산광역시 해운대구,청구서가 결제되었습니다\n",
                encoding_rs::EUC_KR,
            ),
            (
                "姓名,城市,备注\n张伟,北京市朝阳区,新客户已经注册\n李娜,上海市浦东新区,发票已经付款完成\n",
                encoding_rs::GB18030,
            ),
        ];
        for (text, encoding) in samples {
            let (bytes, _, unmappable) = encoding.encode(text);
            assert!(!unmappable, "{} can write the sample", encoding.name());
            let detected = detect_encoding(&bytes, true).expect("text");
            let TextEncoding::Other(found) = detected else { panic!("{}: read as UTF-8", encoding.name()) };
            assert_eq!(
                found.decode_without_bom_handling(&bytes).0,
                text,
                "{} read as {}",
                encoding.name(),
                found.name()
            );
        }
    }

    #[test]
    fn reads_gzip_and_latin1_transparently() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(File::create(&path).expect("create"), flate2::Compression::fast());
        gz.write_all(b"name\nBogot\xe1\n").expect("write");
        gz.finish().expect("finish");
        let mut seen = Vec::new();
        visit_inputs(&path, &mut |o| {
            let mut text = String::new();
            let (name, enc) = (o.file_name.clone(), o.detected.expect("text"));
            o.into_text(enc).read_to_string(&mut text).expect("utf-8 out");
            seen.push((name, enc.name(), text));
            Ok(())
        })
        .expect("reads");
        assert_eq!(seen, [("a.csv".to_string(), "windows-1252", "name\nBogotá\n".to_string())]);
    }

    /// Each sheet's text, by stream name, as the CSV path will read it.
    fn sheets_of(path: &Path) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        visit_inputs(path, &mut |o| {
            let mut text = String::new();
            let name = o.name.rsplit('/').next().unwrap_or_default().to_string();
            assert!(o.sheet.is_some(), "{name} is a sheet");
            o.into_text(TextEncoding::Utf8).read_to_string(&mut text).expect("utf-8 out");
            seen.push((name, text));
            Ok(())
        })
        .expect("reads");
        seen
    }

    #[test]
    fn every_sheet_of_a_workbook_is_a_stream_of_its_typed_cells() {
        use opslake_testkit::workbook::{Cell, Sheet, write_ods, write_xlsx};
        let dir = tempfile::tempdir().expect("tempdir");
        let sheets = || {
            vec![
                Sheet {
                    name: "Deals",
                    first_row: 1,
                    rows: vec![
                        vec![Cell::Text("Deal report")],
                        vec![Cell::Text("Name"), Cell::Text("Amount"), Cell::Text("Closed"), Cell::Text("Double")],
                        vec![
                            Cell::Text("Acme"),
                            Cell::Number(1234.5),
                            Cell::Date(45296.0),
                            Cell::Formula("B3*2", 2469.0),
                        ],
                        vec![
                            Cell::Text("Beta"),
                            Cell::Number(527_321.059_999_999_9),
                            Cell::Date(45296.5),
                            Cell::Bool(true),
                        ],
                        vec![Cell::Text("Gamma"), Cell::Error("#DIV/0!"), Cell::Empty, Cell::Empty],
                    ],
                    merged: vec![],
                },
                Sheet { name: "Empty", first_row: 0, rows: vec![], merged: vec![] },
                Sheet {
                    name: "Regions",
                    first_row: 0,
                    rows: vec![
                        vec![Cell::Text("Region"), Cell::Text("City")],
                        vec![Cell::Text("North"), Cell::Text("Oslo")],
                        vec![Cell::Empty, Cell::Text("Bergen")],
                    ],
                    merged: vec!["A2:A3"],
                },
            ]
        };
        // Named .zip, a workbook is still a workbook: the container decides, not the name.
        let xlsx = dir.path().join("Report.zip");
        write_xlsx(&xlsx, &sheets());
        assert_eq!(
            sheets_of(&xlsx),
            [
                (
                    "Report.zip!Deals".to_string(),
                    "\nDeal report\nName,Amount,Closed,Double\nAcme,1234.5,2024-01-05,2469\n\
                     Beta,527321.06,2024-01-05 12:00:00,true\nGamma,#DIV/0!\n"
                        .to_string()
                ),
                ("Report.zip!Regions".to_string(), "Region,City\nNorth,Oslo\nNorth,Bergen\n".to_string()),
            ]
        );
        let ods = dir.path().join("Report.ods");
        write_ods(&ods, &sheets());
        let read = sheets_of(&ods);
        assert_eq!(read.len(), 2, "{read:?}");
        assert!(read[0].1.contains("Acme,1234.5,2024-01-05,2469\n"), "{read:?}");
        // OpenDocument keeps no merged regions for calamine: the covered cell stays empty.
        assert_eq!(read[1].1, "Region,City\nNorth,Oslo\n,Bergen\n");
    }

    #[test]
    fn a_file_that_only_looks_like_a_workbook_fails_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let xls = dir.path().join("old.xls");
        std::fs::write(&xls, [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0]).expect("write");
        let err = visit_inputs(&xls, &mut |_| Ok(())).expect_err("refused");
        let text = err.to_string();
        assert!(text.starts_with(&xls.display().to_string()), "{text}");
        assert!(text.contains("not a readable legacy Excel workbook (XLS)"), "{text}");
    }

    #[test]
    fn every_member_of_a_zip_is_a_stream_named_after_the_archive() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("export.zip");
        let mut zip = zip::ZipWriter::new(File::create(&path).expect("create"));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("Account.csv", options).expect("member");
        zip.write_all(b"Id,Name\n1,A\n").expect("write");
        zip.add_directory("__MACOSX/", options).expect("dir");
        zip.start_file("__MACOSX/._Account.csv", options).expect("member");
        zip.write_all(b"\0\0junk").expect("write");
        zip.start_file("nested/Contact.csv", options).expect("member");
        zip.write_all(b"Id,Email\n2,b@c.io\n").expect("write");
        zip.finish().expect("finish");
        let mut seen = Vec::new();
        visit_inputs(&path, &mut |o| {
            seen.push((
                o.name.rsplit('/').next().unwrap_or_default().to_string(),
                o.file_name.clone(),
                o.sample.clone(),
            ));
            Ok(())
        })
        .expect("reads");
        assert_eq!(
            seen,
            [
                ("export.zip!Account.csv".to_string(), "Account.csv".to_string(), "Id,Name\n1,A\n".to_string()),
                ("Contact.csv".to_string(), "Contact.csv".to_string(), "Id,Email\n2,b@c.io\n".to_string()),
            ]
        );
    }
}
