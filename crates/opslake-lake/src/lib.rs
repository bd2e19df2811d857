//! opslake-lake: where canonical rows are kept.
//!
//! The lake is a directory or object-store prefix ([`opslake_schema::StorageLocation`]) holding
//! one Delta table per canonical table under `<namespace>/<table>`, plus `_runs` and `_rejects`.
//! Writing, incremental manifests, locking and publishing arrive with the ingest and lake
//! issues; this crate currently only fixes that layout.

use opslake_schema::TableId;

/// Path of a canonical table inside the lake, relative to the lake root.
pub fn table_path(id: &TableId) -> String {
    format!("{}/{}", id.namespace, id.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_live_under_their_namespace() {
        let id = TableId { namespace: "crm".into(), name: "people".into() };
        assert_eq!(table_path(&id), "crm/people");
    }
}
