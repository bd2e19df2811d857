//! The generated schema reference, `docs/schema/`: one Markdown page per namespace and an
//! index. CI regenerates it and fails when the committed copy differs.

use std::fmt::Write as _;

use crate::contract::{Column, Contract, Table};

/// True for a page `opslake docs schema` wrote: the only pages it replaces or removes.
pub fn is_generated(text: &str) -> bool {
    text.starts_with(HEADER)
}

const HEADER: &str = "<!-- Generated from schemas/canonical by `opslake docs schema`. Do not edit. -->\n\n";

/// `(file name, content)` for every page of the schema reference.
pub fn schema_reference(contract: &Contract) -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_string(), index(contract))];
    for ns in contract.namespaces() {
        let mut page = format!("{HEADER}# Namespace `{ns}`\n\n");
        let tables: Vec<&Table> = contract.tables().filter(|t| t.id.namespace == ns).collect();
        for t in &tables {
            let _ = writeln!(page, "- [`{}`](#{}) — {}", t.id, anchor(t), t.description);
        }
        for t in tables {
            page.push('\n');
            table_section(&mut page, t);
        }
        pages.push((format!("{ns}.md"), page));
    }
    pages
}

fn index(contract: &Contract) -> String {
    let mut out = format!(
        "{HEADER}# Canonical schema\n\nEvery export opslake reads lands in one of these tables. Each table carries the \
         envelope below around its own columns; `{{entity}}` is the table's entity. Columns marked \
         *personal* follow the project's personal-data policy.\n\n| namespace | tables |\n|---|---|\n"
    );
    for ns in contract.namespaces() {
        let names: Vec<String> = contract
            .tables()
            .filter(|t| t.id.namespace == ns)
            .map(|t| format!("[`{}`]({ns}.md#{})", t.id.name, anchor(t)))
            .collect();
        let _ = writeln!(out, "| [`{ns}`]({ns}.md) | {} |", names.join(", "));
    }
    out.push_str(
        "\n## Write modes\n\nEach table declares how `opslake ingest` writes it:\n\n\
         - **merge** (default): one row per unique key; a newer row (by `source_updated_at`) replaces the \
         lake's. Rows that came from a file that changed and are no longer in it are deleted.\n\
         - **append**: every row of every file; when a file changes, its old rows are replaced by its new \
         ones, so loading a file twice never doubles it.\n\
         - **history** (SCD type 2): every change of a row's own columns between exports is a new version \
         with `valid_from`, `valid_to` and `is_current`; an export that changed nothing adds nothing.\n\n\
         `--full-refresh` rebuilds every table from the files at hand.\n\n## Envelope\n\n\
         The last three columns (`valid_from`, `valid_to`, `is_current`) are carried by history tables only.\n\n",
    );
    column_table(&mut out, contract.envelope_columns());
    for t in contract.system_tables() {
        let _ = write!(
            out,
            "\n## System table `{}`\n\n{}\n\n- Grain: {}\n- Declared in: `schemas/{}`\n\n",
            t.id, t.description, t.grain, t.file
        );
        column_table(&mut out, t.columns.iter());
    }
    out
}

fn anchor(t: &Table) -> String {
    format!("{}{}", t.id.namespace, t.id.name).replace('_', "")
}

fn table_section(out: &mut String, t: &Table) {
    let key = t.unique_key.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let _ = write!(
        out,
        "## {}\n\n{}\n\n- Grain: {}\n- Unique key: {key}\n- Write mode: {}\n- Declared in: `schemas/{}`\n\n",
        t.id, t.description, t.grain, t.write_mode, t.file
    );
    column_table(out, t.own_columns());
    let _ = writeln!(out, "\nPlus the [envelope](README.md#envelope), with `{}_key`.", t.entity);
}

fn column_table<'a>(out: &mut String, columns: impl Iterator<Item = &'a Column>) {
    out.push_str("| column | type | null | description |\n|---|---|---|---|\n");
    for c in columns {
        let mut desc = c.description.replace('|', "\\|");
        if !c.enum_values.is_empty() {
            let _ = write!(
                desc,
                " One of: {}.",
                c.enum_values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
            );
        }
        if c.pii {
            desc.push_str(" *Personal.*");
        }
        let null = if c.nullable { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "| `{}` | {} | {null} | {desc} |",
            c.name,
            c.ty.to_string().replace('<', "&lt;").replace('>', "&gt;")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_namespace_plus_index() {
        let contract = Contract::embedded().expect("embedded contract");
        let pages = schema_reference(&contract);
        assert_eq!(pages.len(), contract.namespaces().len() + 1);
        let crm = &pages.iter().find(|(n, _)| n == "crm.md").expect("crm page").1;
        assert!(crm.contains("## crm.opportunities"));
        assert!(crm.contains("One of: `OPEN`, `WON`, `LOST`."));
        assert!(crm.contains("| `email` | string | yes |"));
    }
}
