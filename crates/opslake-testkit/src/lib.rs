//! opslake-testkit: helpers shared by the integration tests of every crate.
//!
//! Fixtures live in the repository's `tests/` (data only); the real export corpus is read in
//! place from `../shared/corpus` beside the repository and never copied.

pub mod workbook;

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The repository root (the directory holding the workspace Cargo.toml).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the testkit crate lives in crates/")
}

/// `../shared/corpus` beside the repository, when present.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/corpus");
    dir.is_dir().then_some(dir)
}

/// A fixture whose first line is `# error: <text>`: the text the error must contain.
#[derive(Debug, Clone)]
pub struct ExpectedError {
    /// The fixture file.
    pub path: PathBuf,
    /// Its file name without extension.
    pub stem: String,
    /// The whole file.
    pub text: String,
    /// The substring the reported error must contain.
    pub expected: String,
}

/// Every `*.yml` in `dir` with its `# error:` expectation, sorted by name. Panics on a fixture
/// without the header line, so a forgotten expectation cannot pass silently.
pub fn expected_errors(dir: &Path) -> Vec<ExpectedError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error:"))
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| panic!("{}: the first line must be '# error: <expected text>'", path.display()));
        let stem = path.file_stem().expect("a file").to_string_lossy().into_owned();
        out.push(ExpectedError { path, stem, text, expected });
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    out
}

/// Renders batches as CSV text with the header first and rows sorted, so the text does not
/// depend on file or partition order. `drop` names columns left out (volatile ones such as run
/// ids); `rename` maps a cell through a function per column (e.g. a path to its file name).
pub fn sorted_csv(batches: &[RecordBatch], drop: &[&str], rename: &dyn Fn(&str, String) -> String) -> String {
    let Some(first) = batches.first() else { return String::new() };
    let schema = first.schema();
    let keep: Vec<usize> =
        (0..schema.fields().len()).filter(|&i| !drop.contains(&schema.field(i).name().as_str())).collect();
    let header: Vec<String> = keep.iter().map(|&i| schema.field(i).name().clone()).collect();
    let mut rows = Vec::new();
    let options = FormatOptions::default().with_null("");
    for b in batches {
        let formatters: Vec<ArrayFormatter<'_>> = keep
            .iter()
            .map(|&i| ArrayFormatter::try_new(b.column(i).as_ref(), &options).expect("formattable"))
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .zip(&header)
                .map(|(f, name)| csv_cell(&rename(name, f.value(r).to_string())))
                .collect();
            rows.push(cells.join(","));
        }
    }
    rows.sort();
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Compares `actual` with the file at `expected`; with `BLESS=1` in the environment, writes it
/// instead. Panics with the first differing line.
pub fn assert_golden(expected: &Path, actual: &str) {
    if std::env::var("BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(expected.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(expected, actual).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(expected)
        .unwrap_or_else(|_| panic!("{} is missing; run with BLESS=1 to create it", expected.display()));
    if want != actual {
        let diff = want
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (w, a))| w != a)
            .map(|(i, (w, a))| format!("line {}:\n  expected: {w}\n  actual:   {a}", i + 1))
            .unwrap_or_else(|| format!("expected {} lines, got {}", want.lines().count(), actual.lines().count()));
        panic!("{} differs ({diff}); review, then run with BLESS=1 to accept", expected.display());
    }
}

/// Every canonical table and `_rejects` of the lake as sorted CSV, keyed by SQL name, without
/// the columns that name the run that wrote a row: two lakes built from the same files by
/// different runs compare equal.
pub async fn lake_content(lake: &opslake_lake::Lake) -> std::collections::BTreeMap<String, String> {
    lake_content_as(lake, &[], &|_, v| v).await
}

/// [`lake_content`] without the columns `drop` names too, every cell passed through `map`: the
/// same files read from elsewhere (another directory, an object store) compare equal once
/// their paths are mapped and the times taken from their modification dropped.
pub async fn lake_content_as(
    lake: &opslake_lake::Lake,
    drop: &[&str],
    map: &dyn Fn(&str, String) -> String,
) -> std::collections::BTreeMap<String, String> {
    let volatile = ["_run_id", "_ingested_at", "run_id", "rejected_at"];
    let drop: Vec<&str> = volatile.iter().chain(drop).copied().collect();
    let contract = opslake_schema::Contract::embedded().expect("contract");
    let ctx = opslake_lake::read::context();
    let names = opslake_lake::read::register_lake(&ctx, lake, &contract, None).await.expect("every table opens");
    let mut out = std::collections::BTreeMap::new();
    for name in names.into_iter().filter(|n| !opslake_lake::runs::is_run_record(n)) {
        let batches = ctx
            .sql(&format!("SELECT * FROM {name}"))
            .await
            .expect("plans")
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{name} reads: {e}"));
        out.insert(name, sorted_csv(&batches, &drop, map));
    }
    out
}

/// [`lake_content`] of the local lake at `dir`.
pub async fn local_lake_content(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let lake = opslake_lake::Lake::open(&opslake_config::StorageLocation::Local(dir.to_path_buf())).expect("lake");
    lake_content(&lake).await
}

/// Every file under `root` as text: its bytes (lossily), and for Parquet its values too, one a
/// line, so a search for a value sees it whether it sits in a log, a Delta log's statistics or
/// an encoded page. What tests that prove a value is nowhere read.
pub fn all_text(root: &Path) -> String {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut out = String::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).expect("read")));
            if path.extension().is_some_and(|e| e == "parquet") {
                let file = std::fs::File::open(&path).expect("open");
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .expect("parquet")
                    .build()
                    .expect("reader");
                for batch in reader {
                    for col in batch.expect("batch").columns() {
                        let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).expect("format");
                        for i in 0..col.len() {
                            out.push_str(&f.value(i).to_string());
                            out.push('\n');
                        }
                    }
                }
            }
        }
    }
    out
}
