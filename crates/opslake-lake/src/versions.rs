//! The version decisions of a history (SCD2) commit, made in one pass over narrow rows sorted
//! by key and `valid_from`. DataFusion sorts (and spills); this pass holds one key's versions
//! at a time, so memory does not grow with the table.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;

use crate::{Error, Result};

/// One narrow row: a version from the lake (`new` false) or staged in this run.
#[derive(Debug, Clone)]
struct Version {
    vf: i64,
    file: Option<String>,
    row: Option<i64>,
    hash: String,
    old_vt: Option<i64>,
    old_cur: Option<bool>,
    new: bool,
}

/// What to do with one version.
struct Decision {
    version: Version,
    vt: Option<i64>,
    cur: Option<bool>,
    upsert: bool,
}

/// Reads `sorted` (key columns `keys` as text, `vf`, `__file`, `__row`, `__h`, `__old_vt`,
/// `__old_cur`, `__new`, ordered by key, `vf`, `__new`, `__file` desc, `__row` desc) and
/// writes the decisions to `out`, `valid_from` and `valid_to` in `vf`'s time zone. Returns how
/// many.
pub async fn decide(sorted: DataFrame, keys: &[String], vf: &str, out: &Path) -> Result<u64> {
    let err = |context: &str, e: String| Error::Internal { message: format!("history {context}: {e}") };
    let tz = match sorted.schema().field_with_unqualified_name(vf).map(|f| f.data_type()) {
        Ok(DataType::Timestamp(_, tz)) => tz.clone(),
        _ => None,
    };
    let ts_type = DataType::Timestamp(TimeUnit::Microsecond, tz.clone());
    let mut fields: Vec<Field> = keys.iter().map(|k| Field::new(k, DataType::Utf8, true)).collect();
    fields.push(Field::new(vf, ts_type.clone(), true));
    fields.push(Field::new("__file", DataType::Utf8, true));
    fields.push(Field::new("__row", DataType::Int64, true));
    fields.push(Field::new("__new", DataType::Int64, false));
    fields.push(Field::new("__vt", ts_type.clone(), true));
    fields.push(Field::new("__cur", DataType::Boolean, true));
    fields.push(Field::new("__op", DataType::Utf8, false));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    std::fs::create_dir_all(out).map_err(|e| Error::Io { path: out.to_path_buf(), source: e })?;
    let path = out.join("decisions.parquet");
    let file = File::create(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None).map_err(|e| err("writer", e.to_string()))?;
    let mut out_rows = Output::new(keys.len(), tz);
    let mut group = Group::default();
    let mut stream = sorted.execute_stream().await.map_err(|e| err("sorting versions", e.to_string()))?;
    let mut written = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| err("sorting versions", e.to_string()))?;
        let cols = Columns::of(&batch, keys, vf, &ts_type).map_err(|e| err("reading versions", e))?;
        for i in 0..batch.num_rows() {
            let key: Vec<Option<&str>> = cols.keys.iter().map(|k| (!k.is_null(i)).then(|| k.value(i))).collect();
            if group.key.iter().map(Option::as_deref).ne(key.iter().copied()) {
                group.finish(&mut out_rows);
                group.key = key.iter().map(|k| k.map(str::to_string)).collect();
            }
            group.push(cols.version(i));
        }
        if out_rows.len() >= 65_536 {
            written += out_rows.flush(&schema, &mut writer)?;
        }
    }
    group.finish(&mut out_rows);
    written += out_rows.flush(&schema, &mut writer)?;
    writer.close().map_err(|e| err("writing decisions", e.to_string()))?;
    Ok(written)
}

/// The typed columns of one sorted batch.
struct Columns {
    keys: Vec<StringArray>,
    vf: TimestampMicrosecondArray,
    file: StringArray,
    row: Int64Array,
    hash: StringArray,
    old_vt: TimestampMicrosecondArray,
    old_cur: BooleanArray,
    new: Int64Array,
}

impl Columns {
    fn of(batch: &RecordBatch, keys: &[String], vf: &str, ts: &DataType) -> std::result::Result<Self, String> {
        let col = |name: &str, to: &DataType| -> std::result::Result<ArrayRef, String> {
            let c = batch.column_by_name(name).ok_or_else(|| format!("no column {name}"))?;
            cast(c, to).map_err(|e| format!("{name}: {e}"))
        };
        fn down<T: Clone + 'static>(a: &ArrayRef) -> std::result::Result<T, String> {
            a.as_any().downcast_ref::<T>().cloned().ok_or_else(|| "unexpected array type".to_string())
        }
        Ok(Self {
            keys: keys.iter().map(|k| down(&col(k, &DataType::Utf8)?)).collect::<std::result::Result<_, _>>()?,
            vf: down(&col(vf, ts)?)?,
            file: down(&col("__file", &DataType::Utf8)?)?,
            row: down(&col("__row", &DataType::Int64)?)?,
            hash: down(&col("__h", &DataType::Utf8)?)?,
            old_vt: down(&col("__old_vt", ts)?)?,
            old_cur: down(&col("__old_cur", &DataType::Boolean)?)?,
            new: down(&col("__new", &DataType::Int64)?)?,
        })
    }

    fn version(&self, i: usize) -> Version {
        Version {
            vf: self.vf.value(i),
            file: (!self.file.is_null(i)).then(|| self.file.value(i).to_string()),
            row: (!self.row.is_null(i)).then(|| self.row.value(i)),
            hash: self.hash.value(i).to_string(),
            old_vt: (!self.old_vt.is_null(i)).then(|| self.old_vt.value(i)),
            old_cur: (!self.old_cur.is_null(i)).then(|| self.old_cur.value(i)),
            new: self.new.value(i) == 1,
        }
    }
}

/// The versions of one key, in `valid_from` order, as they arrive.
#[derive(Default)]
struct Group {
    key: Vec<Option<String>>,
    /// Per `valid_from`: the lake's version, then the latest staged one.
    slots: Vec<(Option<Version>, Option<Version>)>,
}

impl Group {
    fn push(&mut self, v: Version) {
        let same_vf = self.slots.last().is_some_and(|(l, s)| l.as_ref().or(s.as_ref()).is_some_and(|x| x.vf == v.vf));
        if !same_vf {
            self.slots.push((None, None));
        }
        let slot = self.slots.last_mut().expect("pushed");
        match (v.new, &slot.1) {
            (false, _) => slot.0 = Some(v),
            // Sorted by file and row descending: the first staged version is the latest read.
            (true, None) => slot.1 = Some(v),
            (true, Some(_)) => {}
        }
    }

    /// Decides the key's versions: per `valid_from` a staged version that differs from the
    /// lake's wins, else the lake's; a version equal to the one before it is dropped (deleted
    /// when it was in the lake); `valid_to` is the next kept version's `valid_from`.
    fn finish(&mut self, out: &mut Output) {
        let picked: Vec<Version> = self
            .slots
            .drain(..)
            .filter_map(|(lake, staged)| match (lake, staged) {
                (Some(l), Some(s)) => Some(if s.hash != l.hash { s } else { l }),
                (l, s) => l.or(s),
            })
            .collect();
        let mut kept: Vec<Version> = Vec::with_capacity(picked.len());
        let mut prev: Option<String> = None;
        for v in picked {
            let keep = prev.as_deref() != Some(v.hash.as_str());
            prev = Some(v.hash.clone());
            if keep {
                kept.push(v);
            } else if !v.new {
                let (vt, cur) = (v.old_vt, v.old_cur);
                out.push(&self.key, Decision { version: v, vt, cur, upsert: false });
            }
        }
        let next: Vec<Option<i64>> = kept.iter().skip(1).map(|v| Some(v.vf)).chain(std::iter::once(None)).collect();
        for (v, next) in kept.into_iter().zip(next) {
            let cur = next.is_none();
            if v.new || v.old_vt != next || v.old_cur != Some(cur) {
                out.push(&self.key, Decision { version: v, vt: next, cur: Some(cur), upsert: true });
            }
        }
    }
}

/// Decisions waiting to be written.
struct Output {
    keys: Vec<StringBuilder>,
    vf: TimestampMicrosecondBuilder,
    file: StringBuilder,
    row: Int64Builder,
    new: Int64Builder,
    vt: TimestampMicrosecondBuilder,
    cur: BooleanBuilder,
    op: StringBuilder,
    tz: Option<Arc<str>>,
    len: usize,
}

impl Output {
    fn new(keys: usize, tz: Option<Arc<str>>) -> Self {
        let ts = || TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone());
        Self {
            keys: (0..keys).map(|_| StringBuilder::new()).collect(),
            vf: ts(),
            file: StringBuilder::new(),
            row: Int64Builder::new(),
            new: Int64Builder::new(),
            vt: ts(),
            cur: BooleanBuilder::new(),
            op: StringBuilder::new(),
            tz,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, key: &[Option<String>], d: Decision) {
        for (b, k) in self.keys.iter_mut().zip(key) {
            b.append_option(k.as_deref());
        }
        self.vf.append_value(d.version.vf);
        self.file.append_option(d.version.file.as_deref());
        self.row.append_option(d.version.row);
        self.new.append_value(i64::from(d.version.new));
        self.vt.append_option(d.vt);
        self.cur.append_option(d.cur);
        self.op.append_value(if d.upsert { "upsert" } else { "delete" });
        self.len += 1;
    }

    fn flush(&mut self, schema: &SchemaRef, writer: &mut ArrowWriter<File>) -> Result<u64> {
        if self.len == 0 {
            return Ok(0);
        }
        let mut columns: Vec<ArrayRef> = self.keys.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let tz = self.tz.clone();
        columns.push(Arc::new(self.vf.finish().with_timezone_opt(tz.clone())));
        columns.push(Arc::new(self.file.finish()));
        columns.push(Arc::new(self.row.finish()));
        columns.push(Arc::new(self.new.finish()));
        columns.push(Arc::new(self.vt.finish().with_timezone_opt(tz)));
        columns.push(Arc::new(self.cur.finish()));
        columns.push(Arc::new(self.op.finish()));
        let batch = RecordBatch::try_new(Arc::clone(schema), columns)
            .map_err(|e| Error::Internal { message: format!("history decisions: {e}") })?;
        writer.write(&batch).map_err(|e| Error::Internal { message: format!("history decisions: {e}") })?;
        let n = self.len as u64;
        self.len = 0;
        Ok(n)
    }
}
