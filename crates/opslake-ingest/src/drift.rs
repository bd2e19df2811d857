//! Schema drift: each file's layout against the accepted layout of its connection and shape,
//! and what the connection's policy does about the difference.
//!
//! A layout is the stream's own columns in file order. A difference is an event whatever the
//! policy (a warning and a `_drift` row); the policy decides only whether the file loads:
//! `evolve` loads it, `freeze` fails it, `quarantine` holds it. A first load of a connection
//! and shape sets its layout; `opslake drift accept` replaces it.

use std::collections::{BTreeMap, BTreeSet};

use opslake_config::DriftPolicy;
use opslake_lake::Lake;
use opslake_lake::drift::{Accepted, DriftRow, LayoutKey, LayoutRow, accepted_layouts, columns_json};
use opslake_schema::Contract;

use crate::{Event, FileSummary, Input, Progress, Result};

/// What a file's drift decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its rows load.
    Load,
    /// It fails (`freeze`), for the reason given.
    Fail(String),
    /// It is held (`quarantine`), for the reason given.
    Hold(String),
}

/// The accepted layouts as the run goes, and what it found.
pub struct Drift {
    accepted: BTreeMap<LayoutKey, Accepted>,
    max_nulled_ratio: f64,
    /// Events found, for `_drift`.
    pub events: Vec<DriftRow>,
    /// Layouts set (first loads, evolved), for `_layouts`.
    pub layouts: Vec<LayoutRow>,
}

/// One difference, before the policy has spoken.
struct Found {
    kind: &'static str,
    column: String,
    detail: String,
}

impl Drift {
    /// The lake's accepted layouts; `max_nulled_ratio` is the share of a column's values that
    /// may be nulled before it is an event.
    pub async fn load(lake: &Lake, contract: &Contract, max_nulled_ratio: f64) -> Result<Self> {
        Ok(Self {
            accepted: accepted_layouts(lake, contract).await?,
            max_nulled_ratio,
            events: Vec::new(),
            layouts: Vec::new(),
        })
    }

    /// Compares the streams of one file, all read without error, with their accepted layouts,
    /// records and warns of every difference, and says whether the file loads. A file that
    /// loads sets the layouts it is the first of and, under `evolve`, adds its new columns.
    pub fn judge(
        &mut self,
        run_id: &str,
        input: &Input,
        streams: &[FileSummary],
        progress: &mut Progress<'_>,
    ) -> Verdict {
        let connection = &input.connection.name;
        let policy = input.drift;
        let mut found_layout_change = false;
        let mut pending: Vec<(usize, Vec<Found>, Option<Vec<String>>)> = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            let Some(shape) = &s.shape else { continue };
            let accepted = self.accepted.get(&(connection.clone(), shape.clone()));
            let mut found = match accepted {
                Some(a) if !s.columns.is_empty() => layout_changes(&a.columns, s),
                _ => Vec::new(),
            };
            found_layout_change |= !found.is_empty();
            // New columns widen the layout evolve accepts; a mapped column that went missing stays
            // in it, so every later file without it is warned of too, until someone accepts.
            let widened = match accepted {
                None if !s.columns.is_empty() => Some(s.columns.clone()),
                Some(a) if found.iter().any(|f| f.kind == NEW || f.kind == RENAMED) => {
                    let mut columns = s.columns.clone();
                    columns.extend(a.columns.iter().filter(|c| !s.columns.contains(c)).cloned());
                    Some(columns)
                }
                _ => None,
            };
            found.extend(self.unparsed(s));
            pending.push((i, found, widened));
        }
        let verdict = match policy {
            _ if !found_layout_change => Verdict::Load,
            DriftPolicy::Evolve => Verdict::Load,
            DriftPolicy::Freeze => Verdict::Fail(format!(
                "its layout drifted and connection '{connection}' is frozen (schema_drift: freeze); `opslake drift` \
                 lists the changes, `opslake drift accept {connection}` accepts this layout"
            )),
            DriftPolicy::Quarantine => Verdict::Hold(format!(
                "held: its layout drifted and connection '{connection}' quarantines drift; `opslake drift` lists the \
                 changes, `opslake drift accept {connection}` accepts this layout and the next run loads it"
            )),
        };
        let action = match verdict {
            Verdict::Load => "LOADED",
            Verdict::Fail(_) => "FAILED",
            Verdict::Hold(_) => "HELD",
        };
        let now = chrono::Utc::now().timestamp_micros();
        for (i, found, widened) in pending {
            let s = &streams[i];
            let shape = s.shape.clone().unwrap_or_default();
            let key = (connection.clone(), shape.clone());
            let accepted = self.accepted.get(&key);
            let against = accepted.map_or_else(
                || "no accepted layout yet".to_string(),
                |a| {
                    format!(
                        "last accepted layout: {} ({} columns)",
                        a.path.as_deref().unwrap_or("accepted"),
                        a.columns.len()
                    )
                },
            );
            for f in found {
                let message = format!(
                    "{}: schema drift ({connection}, {shape}, {}): {}; {against}",
                    s.path,
                    policy.as_str(),
                    f.detail
                );
                progress(Event::Warning(&message));
                self.events.push(DriftRow {
                    run_id: run_id.to_string(),
                    connection: connection.clone(),
                    path: s.path.clone(),
                    shape: shape.clone(),
                    kind: f.kind.to_string(),
                    column_name: f.column,
                    detail: f.detail,
                    policy: policy.as_str().to_string(),
                    action: action.to_string(),
                    layout: columns_json(&s.columns),
                    accepted_layout: accepted.map(|a| columns_json(&a.columns)),
                    recorded_at: now,
                });
            }
            if verdict != Verdict::Load {
                continue;
            }
            if let Some(columns) = widened {
                let how = if accepted.is_some() { "EVOLVED" } else { "FIRST_LOAD" };
                self.layouts.push(LayoutRow {
                    connection: connection.clone(),
                    shape: shape.clone(),
                    columns: columns_json(&columns),
                    how: how.to_string(),
                    path: Some(s.path.clone()),
                    run_id: run_id.to_string(),
                    accepted_at: now,
                });
                // Later files of this run compare with it too.
                self.accepted.insert(key, Accepted { columns, path: Some(s.path.clone()), accepted_at: now });
            }
        }
        verdict
    }

    /// The mapped columns of `s` whose values mostly did not parse.
    fn unparsed(&self, s: &FileSummary) -> Vec<Found> {
        let mut found = Vec::new();
        for (column, &nulled) in &s.nulled_by_column {
            let table = column.rsplit_once('.').map_or("", |(t, _)| t);
            let rows = s.rows_by_table.get(table).copied().unwrap_or(0);
            if rows == 0 {
                continue;
            }
            let share = nulled as f64 / rows as f64;
            if share > self.max_nulled_ratio {
                found.push(Found {
                    kind: UNPARSED,
                    column: column.clone(),
                    detail: format!(
                        "{nulled} of {rows} values of {column} ({:.0}%) did not parse and were nulled, more than \
                         schema_drift.max_nulled_ratio {:.0}%; `_rejects` has each value",
                        share * 100.0,
                        self.max_nulled_ratio * 100.0
                    ),
                });
            }
        }
        found
    }
}

const MISSING: &str = "MISSING_COLUMN";
const RENAMED: &str = "RENAMED_COLUMN";
const NEW: &str = "NEW_COLUMN";
const UNPARSED: &str = "UNPARSED_COLUMN";

/// How `s`'s columns differ from the `accepted` ones: the mapped columns it lost (paired with
/// the new column that stands where one stood, as a rename), and its new columns.
fn layout_changes(accepted: &[String], s: &FileSummary) -> Vec<Found> {
    let now: BTreeSet<&String> = s.columns.iter().collect();
    let before: BTreeSet<&String> = accepted.iter().collect();
    // The mapping reads them and the accepted layout had them: a column that is merely
    // optional in the tool's exports, never seen, is not lost.
    let lost: Vec<&String> = accepted.iter().filter(|c| !now.contains(c) && s.missing_columns.contains(c)).collect();
    let new: Vec<&String> = s.columns.iter().filter(|c| !before.contains(c)).collect();
    let mut renamed: BTreeMap<&String, &String> = BTreeMap::new();
    for old in &lost {
        let at = accepted.iter().position(|c| c == *old);
        let stands = at.and_then(|i| s.columns.get(i)).filter(|c| new.contains(c) && !renamed.values().any(|v| v == c));
        if let Some(n) = stands {
            renamed.insert(old, n);
        }
    }
    if renamed.is_empty()
        && let ([old], [n]) = (lost.as_slice(), new.as_slice())
    {
        renamed.insert(old, n);
    }
    let mut found = Vec::new();
    for old in &lost {
        match renamed.get(old) {
            Some(n) => found.push(Found {
                kind: RENAMED,
                column: (*old).clone(),
                detail: format!(
                    "mapped column '{old}' is gone and '{n}' stands in its place: renamed? '{old}' reads as null and \
                     '{n}' goes to custom_fields until the tool file maps it"
                ),
            }),
            None => found.push(Found {
                kind: MISSING,
                column: (*old).clone(),
                detail: format!("mapped column '{old}' is missing: it reads as null"),
            }),
        }
    }
    for n in new.iter().filter(|n| !renamed.values().any(|v| v == *n)) {
        found.push(Found {
            kind: NEW,
            column: (*n).clone(),
            detail: format!("new column '{n}': not mapped, its values go to custom_fields"),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(columns: &[&str], missing: &[&str]) -> FileSummary {
        FileSummary {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            missing_columns: missing.iter().map(|c| c.to_string()).collect(),
            ..FileSummary::default()
        }
    }

    fn kinds(found: &[Found]) -> Vec<(String, String)> {
        found.iter().map(|f| (f.kind.to_string(), f.column.clone())).collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_column_in_the_place_of_a_lost_one_is_a_rename_and_the_rest_are_new() {
        let accepted = names(&["Id", "Name", "Billing City", "Phone"]);
        let s = summary(&["Id", "Name", "City (Billing)", "Phone", "Fax"], &["Billing City"]);
        assert_eq!(
            kinds(&layout_changes(&accepted, &s)),
            vec![("RENAMED_COLUMN".into(), "Billing City".into()), ("NEW_COLUMN".into(), "Fax".into())]
        );
    }

    #[test]
    fn a_lost_column_the_mapping_does_not_read_is_no_event_but_a_lost_mapped_one_is() {
        let accepted = names(&["Id", "Name", "Notes", "Phone"]);
        let s = summary(&["Id", "Phone"], &["Name"]);
        assert_eq!(kinds(&layout_changes(&accepted, &s)), vec![("MISSING_COLUMN".into(), "Name".into())]);
    }

    #[test]
    fn the_same_columns_in_another_order_are_no_drift() {
        let accepted = names(&["Id", "Name", "Phone"]);
        assert!(layout_changes(&accepted, &summary(&["Phone", "Id", "Name"], &[])).is_empty());
    }
}
