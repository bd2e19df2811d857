//! The personal-data policy applied to mapped rows and to what `_rejects` keeps, before
//! anything is written (see [`opslake_config::privacy`] for the policy itself).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, MapArray, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::DataType;
use hmac::{KeyInit, Mac};
use opslake_config::{PiiAction, Privacy};
use opslake_schema::{EnvelopeRole, Table};

use crate::coerce::map_builder;
use crate::mapping::RejectRecord;

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// The policy with the key of its hashes: applies it to values, batches and reject records.
pub struct Redactor {
    privacy: Privacy,
    salt: Vec<u8>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: one `{:?}` in a log line would undo every hash.
        f.debug_struct("Redactor").field("privacy", &self.privacy).finish_non_exhaustive()
    }
}

impl Redactor {
    /// `privacy` keyed with `salt` (the lake's: the same value hashes alike across runs).
    pub fn new(privacy: Privacy, salt: Vec<u8>) -> Self {
        Self { privacy, salt }
    }

    /// The keyed hash of `value`: HMAC-SHA-256 under the lake's salt, the first 16 bytes in hex.
    /// Without the salt a hash cannot be recomputed from a guessed email or name.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.salt).expect("HMAC takes a key of any length");
        mac.update(value.as_bytes());
        mac.finalize().into_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the policy changes nothing for `table`'s rows from a file whose columns include
    /// national ids or bank details (`sensitive_columns`) or not.
    pub fn passes(&self, table: &Table, sensitive_columns: bool) -> bool {
        let id = table.id.to_string();
        self.privacy.records(&id) == PiiAction::Keep
            && table.columns.iter().all(|c| !c.pii || self.privacy.column(&id, &c.name) == PiiAction::Keep)
            && !sensitive_columns
    }

    /// `batch` of `table` with its personal columns and custom fields as the policy says.
    pub fn batch(&self, table: &Table, batch: RecordBatch, sensitive_columns: bool) -> crate::Result<RecordBatch> {
        if self.passes(table, sensitive_columns) {
            return Ok(batch);
        }
        let id = table.id.to_string();
        let records = self.privacy.records(&id);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (i, c) in table.columns.iter().enumerate() {
            if c.role == Some(EnvelopeRole::CustomFields) {
                columns[i] = self.custom_fields(&columns[i], records);
            } else if c.pii {
                columns[i] = self.column(&columns[i], self.privacy.column(&id, &c.name));
            }
        }
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }

    fn column(&self, array: &ArrayRef, action: PiiAction) -> ArrayRef {
        match (action, array.data_type()) {
            (PiiAction::Keep, _) => Arc::clone(array),
            (PiiAction::Hash, DataType::Utf8) => {
                let text = array.as_any().downcast_ref::<StringArray>().expect("Utf8");
                Arc::new(text.iter().map(|v| v.map(|v| self.hash(v))).collect::<StringArray>())
            }
            // A date or an amount has no hash of its own type: it is dropped.
            (PiiAction::Hash | PiiAction::Drop, t) => new_null_array(t, array.len()),
        }
    }

    fn custom_fields(&self, array: &ArrayRef, action: PiiAction) -> ArrayRef {
        let map = array.as_any().downcast_ref::<MapArray>().expect("custom_fields is a map");
        let mut b = map_builder(map.len());
        for row in 0..map.len() {
            let entries = map.value(row);
            let keys = entries.column(0).as_any().downcast_ref::<StringArray>().expect("text keys");
            let values = entries.column(1).as_any().downcast_ref::<StringArray>().expect("text values");
            for i in 0..keys.len() {
                let key = keys.value(i);
                if self.privacy.is_sensitive_key(key) || action == PiiAction::Drop {
                    continue;
                }
                b.keys().append_value(key);
                match (action, values.is_valid(i)) {
                    (_, false) => b.values().append_null(),
                    (PiiAction::Hash, true) => b.values().append_value(self.hash(values.value(i))),
                    _ => b.values().append_value(values.value(i)),
                }
            }
            b.append(true).expect("keys and values are appended in pairs");
        }
        Arc::new(b.finish())
    }

    /// `r` as `_rejects` may keep it. `shape_records` is the strictest action of the tables the
    /// shape writes, for records rejected before any table (ragged rows, unmapped rows);
    /// `sensitive_columns` says whether the file has columns of national ids or bank details.
    pub fn reject(&self, r: &mut RejectRecord, shape_records: PiiAction, sensitive_columns: bool) {
        // The raw record holds every column of the source row: it takes the strictest action of
        // any personal value of its table, a column-level hash included.
        let records = r.table.as_deref().map_or(shape_records, |t| self.privacy.strictest_in(t));
        if let (Some(table), Some(column)) = (&r.table, &r.column)
            && let Some(raw) = r.raw_value.take()
        {
            // A personal column's raw value follows the column; another's may be derived from a
            // personal one (a domain from an email, a year from a birth date): it follows the
            // table's strictest. Either way the reason quotes the raw value: it goes too.
            let action = match self.privacy.column(table, column) {
                PiiAction::Keep => records,
                own => own,
            };
            let (kept, mark) = match action {
                PiiAction::Keep => (Some(raw.clone()), None),
                PiiAction::Hash => (Some(self.hash(&raw)), Some("<hashed>")),
                PiiAction::Drop => (None, Some("<dropped>")),
            };
            if let Some(mark) = mark {
                for text in [raw.as_str(), raw.trim()] {
                    if !text.is_empty() {
                        r.reason = r.reason.replace(text, mark);
                    }
                }
            }
            r.raw_value = kept;
        }
        // Nothing to take out: the record's keys are the file's columns, none sensitive.
        if records == PiiAction::Keep && !sensitive_columns {
            return;
        }
        let Some(raw) = r.raw_record.take() else { return };
        r.raw_record = match serde_json::from_str::<serde_json::Value>(&raw) {
            Ok(serde_json::Value::Object(cells)) => {
                let kept: serde_json::Map<String, serde_json::Value> = cells
                    .into_iter()
                    .filter(|(k, _)| !self.privacy.is_sensitive_key(k) && records != PiiAction::Drop)
                    .map(|(k, v)| match (records, v) {
                        (PiiAction::Hash, serde_json::Value::String(s)) => {
                            (k, serde_json::Value::String(self.hash(&s)))
                        }
                        (PiiAction::Hash, other) if !other.is_null() => {
                            (k, serde_json::Value::String(self.hash(&other.to_string())))
                        }
                        (_, v) => (k, v),
                    })
                    .collect();
                Some(serde_json::Value::Object(kept).to_string())
            }
            // A raw line (a ragged CSV row) cannot be taken apart safely: under a policy that
            // changes anything it is withheld; the export itself still has it.
            _ => {
                r.reason.push_str(" (raw record withheld by the personal-data policy)");
                None
            }
        };
    }

    /// Whether any of `headers` names a national id or bank details the policy drops.
    pub fn sensitive(&self, headers: impl IntoIterator<Item = impl AsRef<str>>) -> bool {
        headers.into_iter().any(|h| self.privacy.is_sensitive_key(h.as_ref()))
    }

    /// The strictest action of any personal value of `tables` (`namespace.table`).
    pub fn strictest(&self, tables: impl IntoIterator<Item = String>) -> PiiAction {
        tables.into_iter().map(|t| self.privacy.strictest_in(&t)).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::RejectAction;
    use opslake_config::PersonalData;
    use opslake_schema::Contract;

    fn redactor(yaml: &str) -> Redactor {
        let config = PersonalData::parse("t.yml", yaml).expect("parses");
        let privacy = Privacy::resolve(&config, &Contract::embedded().expect("contract"), "t.yml").expect("valid");
        Redactor::new(privacy, b"lake salt".to_vec())
    }

    #[test]
    fn hashes_are_keyed_stable_and_differ_by_salt() {
        let r = redactor("namespaces: {hr: hash}");
        assert_eq!(r.hash("ana@demo.example"), r.hash("ana@demo.example"));
        assert_eq!(r.hash("ana@demo.example").len(), 32);
        let other = Redactor::new(r.privacy.clone(), b"another lake".to_vec());
        assert_ne!(r.hash("ana@demo.example"), other.hash("ana@demo.example"));
    }

    #[test]
    fn rejects_keep_nothing_personal() {
        let r = redactor("namespaces: {hr: hash}");
        let mut rec = RejectRecord {
            row: 1,
            line: 2,
            table: Some("hr.employees".into()),
            column: Some("work_email".into()),
            raw_value: Some("not-an-email".into()),
            reason: "bad".into(),
            action: RejectAction::Nulled,
            raw_record: Some(r#"{"workEmail":"not-an-email","firstName":"Ana","ssn":"123-45-6789","age":41}"#.into()),
        };
        r.reject(&mut rec, PiiAction::Keep, false);
        assert_eq!(rec.raw_value.as_deref(), Some(r.hash("not-an-email").as_str()));
        let raw = rec.raw_record.expect("kept, hashed");
        assert!(
            !raw.contains("Ana") && !raw.contains("123-45") && !raw.contains("ssn") && !raw.contains("41"),
            "{raw}"
        );
        assert!(raw.contains(&r.hash("Ana")), "{raw}");

        // A raw CSV line of a file with a national id column is withheld even where names are kept.
        let keep = redactor("default: keep");
        let mut line = RejectRecord { table: None, raw_record: Some("7,Bo,987-65-4321".into()), ..rec_stub() };
        keep.reject(&mut line, PiiAction::Keep, keep.sensitive(["id", "name", "SSN"]));
        assert_eq!(line.raw_record, None);
        assert!(line.reason.contains("withheld"));
        let mut plain = RejectRecord { table: None, raw_record: Some("7,Bo,Lima".into()), ..rec_stub() };
        keep.reject(&mut plain, PiiAction::Keep, keep.sensitive(["id", "name", "city"]));
        assert_eq!(plain.raw_record.as_deref(), Some("7,Bo,Lima"));
    }

    fn rec_stub() -> RejectRecord {
        RejectRecord {
            row: 1,
            line: 1,
            table: None,
            column: None,
            raw_value: None,
            reason: "row has 3 fields".into(),
            action: RejectAction::Rejected,
            raw_record: None,
        }
    }
}
