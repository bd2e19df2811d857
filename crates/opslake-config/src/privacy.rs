//! The personal-data policy: what happens to columns marked `pii: true` before anything is
//! written, as the project decides in `opslake.yml`:
//!
//! ```yaml
//! personal_data:
//!   default: keep                  # keep | hash | drop, for every namespace not listed
//!   namespaces: {hr: hash}
//!   columns: {hr.payroll_lines.amount: keep}   # one column, over its namespace
//!   keep_national_ids: false       # custom fields holding national ids and bank details are
//!   keep_bank_details: false       # dropped unless kept here
//! ```
//!
//! `hash` replaces a text value by a keyed hash (stable within one lake, so joins on a hashed
//! email still match); values that are not text (a date of birth, a salary) cannot be hashed
//! and are dropped. In a table with personal columns, the unmapped columns (`custom_fields`) and
//! the raw records kept in `_rejects` follow the table's namespace policy too: they are where a
//! name or an amount would otherwise slip through.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use opslake_schema::Contract;
use opslake_schema::diag::Problem;

/// What happens to one personal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Written as it came.
    #[default]
    Keep,
    /// Text replaced by its keyed hash; other types dropped.
    Hash,
    /// Written as null.
    Drop,
}

impl fmt::Display for PiiAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Keep => "keep",
            Self::Hash => "hash",
            Self::Drop => "drop",
        })
    }
}

/// `personal_data` in `opslake.yml`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalData {
    /// The action of namespaces not listed. Default keep.
    #[serde(default)]
    pub default: Option<Spanned<PiiAction>>,
    /// Per namespace.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Spanned<PiiAction>>,
    /// Per column, `namespace.table.column`, over its namespace's action.
    #[serde(default)]
    pub columns: BTreeMap<String, Spanned<PiiAction>>,
    /// Keep custom fields that hold national ids (SSN, national insurance, passport, tax id).
    #[serde(default)]
    pub keep_national_ids: bool,
    /// Keep custom fields that hold bank details (account and routing numbers, IBAN).
    #[serde(default)]
    pub keep_bank_details: bool,
    /// The environment variable holding the key of the hashes (hex, 32 bytes or more). With
    /// neither this nor `key_file`, the key is [`KEY_ENV`]'s.
    #[serde(default)]
    pub key_env: Option<Spanned<String>>,
    /// A file holding the key (hex), relative to the project: outside the lake, so those who
    /// can read the lake cannot recompute a hash from a guessed email.
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
}

impl PersonalData {
    /// Where opslake.yml says the key of the hashes is kept: `key_env`, else `key_file`; `None`
    /// when it says nothing (then [`KEY_ENV`]).
    pub fn key_source(&self) -> Option<crate::config::SecretSource<'_>> {
        use crate::config::SecretSource;
        self.key_env
            .as_ref()
            .map(|v| SecretSource::Env(&v.value))
            .or_else(|| self.key_file.as_ref().map(|f| SecretSource::File(&f.value)))
    }
}

/// The environment variable the key of the hashes is read from when opslake.yml names none.
pub const KEY_ENV: &str = "OPSLAKE_PERSONAL_DATA_KEY";

/// The key of the personal-data hashes. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalKey(Vec<u8>);

impl fmt::Debug for PersonalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonalKey(..)")
    }
}

impl PersonalKey {
    /// A key written as hex (`openssl rand -hex 32`), 16 bytes at least; the error never
    /// repeats the text.
    pub fn parse_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        match bytes {
            Some(b) if b.len() >= 16 => Ok(Self(b)),
            Some(_) => Err("is shorter than 32 hex digits (make one with `openssl rand -hex 32`)".into()),
            None => Err("is not hex (make one with `openssl rand -hex 32`)".into()),
        }
    }

    /// The key's bytes, for the keyed hash.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PersonalData {
    /// The `personal_data` section as YAML text, from `file`.
    pub fn parse(file: &str, text: &str) -> Result<Self, Problem> {
        opslake_schema::diag::parse_yaml(file, text)
    }
}

/// The policy resolved against the contract: an action for every personal column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    /// `namespace.table` -> column -> action, for every `pii` column.
    columns: BTreeMap<String, BTreeMap<String, PiiAction>>,
    /// `namespace.table` -> the namespace's action, for tables with personal columns: their
    /// custom fields and raw records follow it.
    tables: BTreeMap<String, PiiAction>,
    keep_national_ids: bool,
    keep_bank_details: bool,
}

/// Normalized key fragments of custom fields holding national ids.
const NATIONAL_ID_KEYS: &[&str] = &[
    "ssn",
    "socialsecurity",
    "nationalid",
    "nationalidentifier",
    "nationalinsurance",
    "passport",
    "taxid",
    "taxpayerid",
];
/// Normalized key fragments of custom fields holding bank details; an account number is one
/// when the key also says bank (a ledger's `BankAccountRef` names the company's own account).
const BANK_KEYS: &[&str] = &["iban", "routingnumber", "sortcode", "swiftcode", "abanumber"];

impl Privacy {
    /// Resolves `config` (from `file`) against `contract`; every unknown namespace or column is
    /// a problem with its line.
    pub fn resolve(config: &PersonalData, contract: &Contract, file: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        if let (Some(_), Some(key_file)) = (&config.key_env, &config.key_file) {
            problems.push(Problem::at(file, key_file, "personal_data: key_env and key_file name two keys; keep one"));
        }
        let namespaces = contract.namespaces();
        for (ns, action) in &config.namespaces {
            if !namespaces.contains(ns.as_str()) {
                problems.push(Problem::at(
                    file,
                    action,
                    format!(
                        "personal_data: unknown namespace '{ns}'; namespaces: {}",
                        namespaces.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let default = config.default.as_ref().map_or(PiiAction::Keep, |d| d.value);
        let mut privacy = Self {
            keep_national_ids: config.keep_national_ids,
            keep_bank_details: config.keep_bank_details,
            ..Self::default()
        };
        for table in contract.tables() {
            let ns_action = config.namespaces.get(&table.id.namespace).map_or(default, |a| a.value);
            let id = table.id.to_string();
            let personal: BTreeMap<String, PiiAction> = table
                .columns
                .iter()
                .filter(|c| c.pii)
                .map(|c| {
                    (c.name.clone(), config.columns.get(&format!("{id}.{}", c.name)).map_or(ns_action, |a| a.value))
                })
                .collect();
            if !personal.is_empty() {
                privacy.tables.insert(id.clone(), ns_action);
                privacy.columns.insert(id, personal);
            }
        }
        for (key, action) in &config.columns {
            let known = key
                .rsplit_once('.')
                .is_some_and(|(table, col)| privacy.columns.get(table).is_some_and(|c| c.contains_key(col)));
            if !known {
                problems.push(Problem::at(
                    file,
                    action,
                    format!("personal_data: '{key}' is not a personal column (namespace.table.column marked pii)"),
                ));
            }
        }
        if problems.is_empty() { Ok(privacy) } else { Err(problems) }
    }

    /// The action for `column` of `table` (`namespace.table`); keep for columns not personal.
    pub fn column(&self, table: &str, column: &str) -> PiiAction {
        self.columns.get(table).and_then(|c| c.get(column)).copied().unwrap_or_default()
    }

    /// The action for what a table holds besides its columns (custom fields, raw records):
    /// its namespace's, when it has personal columns; keep otherwise.
    pub fn records(&self, table: &str) -> PiiAction {
        self.tables.get(table).copied().unwrap_or_default()
    }

    /// Whether a custom field named `key` holds a national id or bank details that are dropped.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        let k: String = key.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
        let hit = |list: &[&str]| list.iter().any(|p| k.contains(p));
        let bank = hit(BANK_KEYS) || (k.contains("bank") && k.contains("accountnumber"));
        (!self.keep_national_ids && hit(NATIONAL_ID_KEYS)) || (!self.keep_bank_details && bank)
    }

    /// Whether custom fields of national ids or bank details are dropped.
    pub fn drops_sensitive_keys(&self) -> bool {
        !self.keep_national_ids || !self.keep_bank_details
    }

    /// The strictest action of any personal value of `table`: what a raw record of it, or a
    /// raw value rejected from it, gets, since a raw record holds every column of the source
    /// and a rejected value may be derived from a personal one (a domain from an email).
    pub fn strictest_in(&self, table: &str) -> PiiAction {
        let columns = self.columns.get(table).into_iter().flat_map(BTreeMap::values).copied();
        columns.chain([self.records(table)]).max().unwrap_or_default()
    }

    /// Whether any value is hashed: then the key is needed.
    pub fn hashes(&self) -> bool {
        self.tables.values().any(|a| *a == PiiAction::Hash)
            || self.columns.values().flat_map(BTreeMap::values).any(|a| *a == PiiAction::Hash)
    }

    /// Whether every personal value is kept as it came (national ids and bank details aside).
    pub fn keeps_everything(&self) -> bool {
        self.tables.values().chain(self.columns.values().flat_map(BTreeMap::values)).all(|a| *a == PiiAction::Keep)
    }

    /// One line per namespace and its exceptions, for `opslake validate`.
    pub fn summary(&self) -> Vec<String> {
        let mut by_ns: BTreeMap<&str, (PiiAction, Vec<String>, usize)> = BTreeMap::new();
        for (table, columns) in &self.columns {
            let ns = table.split('.').next().unwrap_or(table);
            let ns_action = self.records(table);
            let entry = by_ns.entry(ns).or_insert((ns_action, Vec::new(), 0));
            for (col, action) in columns {
                entry.2 += 1;
                if *action != ns_action {
                    entry.1.push(format!("{table}.{col} {action}"));
                }
            }
        }
        let mut lines: Vec<String> = by_ns
            .into_iter()
            .map(|(ns, (action, exceptions, n))| {
                let mut line = format!("{ns}: {action} ({n} personal columns)");
                if !exceptions.is_empty() {
                    line.push_str(&format!("; except {}", exceptions.join(", ")));
                }
                line
            })
            .collect();
        let kept: Vec<&str> = [(self.keep_national_ids, "national ids"), (self.keep_bank_details, "bank details")]
            .into_iter()
            .map(|(keep, what)| if keep { what } else { "" })
            .filter(|w| !w.is_empty())
            .collect();
        lines.push(if kept.is_empty() {
            "custom fields with national ids or bank details: dropped".to_string()
        } else {
            format!("custom fields with {} kept", kept.join(" and "))
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Privacy, Vec<Problem>> {
        let config = PersonalData::parse("opslake.yml", yaml).expect("parses");
        Privacy::resolve(&config, &Contract::embedded().expect("contract"), "opslake.yml")
    }

    #[test]
    fn namespaces_columns_and_defaults_resolve_per_column() {
        let p = resolve("default: keep\nnamespaces: {hr: hash, crm: drop}\ncolumns: {hr.payroll_lines.amount: keep}\n")
            .expect("valid");
        assert_eq!(p.column("hr.employees", "work_email"), PiiAction::Hash);
        assert_eq!(p.column("hr.payroll_lines", "amount"), PiiAction::Keep);
        assert_eq!(p.column("crm.people", "email"), PiiAction::Drop);
        assert_eq!(p.column("crm.people", "email_domain"), PiiAction::Keep, "not personal");
        assert_eq!(p.column("finance.customers", "email"), PiiAction::Keep);
        assert_eq!(p.records("hr.payroll_lines"), PiiAction::Hash);
        assert_eq!(p.records("finance.invoices"), PiiAction::Keep, "no personal columns");
        assert!(p.hashes() && !p.keeps_everything());
        assert!(p.is_sensitive_key("SSN") && p.is_sensitive_key("bank_account_number") && p.is_sensitive_key("IBAN"));
        assert!(p.is_sensitive_key("bank_accounts.account_number") && p.is_sensitive_key("routing_number"));
        assert!(!p.is_sensitive_key("AccountNumber") && !p.is_sensitive_key("Industry"));
        assert!(!p.is_sensitive_key("CheckPayment.BankAccountRef"), "the company's own ledger account");
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let errs = resolve("namespaces:\n  people: hash\ncolumns:\n  hr.employees.job_title: drop\n")
            .expect_err("two mistakes");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("opslake.yml:2") && text[0].contains("unknown namespace 'people'"), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains(":4:") && t.contains("'hr.employees.job_title' is not a personal column")),
            "{text:?}"
        );
    }
}
