//! `target/manifest.json` and `target/run_results.json`, shaped like dbt's so tools that read
//! those (lineage viewers, schedulers, CI checks) find what they expect: `nodes` keyed by
//! unique id with `depends_on`, `config`, `columns`; results with `status`, `timing`,
//! `adapter_response.rows_affected` and `failures`. The unique ids are opslake's own
//! (`model.opslake.<name>`, `test.opslake.<name>`, `source.opslake.<ns>.<table>`).
//! Documented in docs/models.md.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::data_tests::TestKind;
use crate::execute::{BuildReport, write_file};
use crate::{Project, Result};

/// The version of the artifacts' shape; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// The unique id of model `name`.
pub fn model_id(name: &str) -> String {
    format!("model.opslake.{name}")
}

/// The unique id of test `name`.
pub fn test_id(name: &str) -> String {
    format!("test.opslake.{name}")
}

/// The unique id of a canonical table read as a source.
pub fn source_id(ns: &str, table: &str) -> String {
    format!("source.opslake.{ns}.{table}")
}

fn metadata(invocation_id: &str) -> Value {
    json!({
        "opslake_schema_version": SCHEMA_VERSION,
        "opslake_version": env!("CARGO_PKG_VERSION"),
        "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "invocation_id": invocation_id,
    })
}

/// The manifest of `project`: models, tests and the sources they read, with parent and child
/// maps.
pub fn manifest(project: &Project, invocation_id: &str) -> Value {
    let mut nodes = serde_json::Map::new();
    let mut parent_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sources = serde_json::Map::new();
    for m in &project.pipelines.models {
        let node = project.node(&m.name);
        let config = project.config(&m.name);
        let mut depends: Vec<String> = node.refs.iter().map(|r| model_id(r)).collect();
        for (ns, t) in &node.sources {
            let id = source_id(ns, t);
            sources.entry(id.clone()).or_insert_with(|| {
                let relation = if ns == crate::compile::SYSTEM_SOURCE { t.clone() } else { format!("{ns}.{t}") };
                json!({"unique_id": id, "resource_type": "source", "source_name": ns, "name": t,
                       "relation_name": relation})
            });
            depends.push(id);
        }
        parent_map.insert(model_id(&m.name), depends.clone());
        let columns: serde_json::Map<String, Value> =
            m.columns.iter().map(|c| (c.name.clone(), json!({"name": c.name, "description": c.description}))).collect();
        nodes.insert(
            model_id(&m.name),
            json!({
                "unique_id": model_id(&m.name),
                "resource_type": "model",
                "name": m.name,
                "original_file_path": m.rel_path,
                "path": m.rel_path.trim_start_matches("models/"),
                "compiled_path": format!("target/compiled/{}", m.rel_path),
                "relation_name": m.name,
                "raw_code": m.raw_sql,
                "description": m.description,
                "columns": columns,
                "config": {"materialized": config.materialized.as_str(), "unique_key": config.unique_key, "tags": config.tags},
                "tags": config.tags,
                "depends_on": {"nodes": depends},
            }),
        );
    }
    for t in &project.pipelines.tests {
        let refs = project.test_refs.get(&t.name).cloned().unwrap_or_default();
        let depends: Vec<String> = refs.iter().map(|r| model_id(r)).collect();
        parent_map.insert(test_id(&t.name), depends.clone());
        let kwargs = match &t.kind {
            TestKind::AcceptedValues { values, quote } => json!({"values": values, "quote": quote}),
            TestKind::Relationships { to, field } => json!({"to": to, "field": field}),
            _ => json!({}),
        };
        nodes.insert(
            test_id(&t.name),
            json!({
                "unique_id": test_id(&t.name),
                "resource_type": "test",
                "name": t.name,
                "original_file_path": t.file,
                "line": t.line,
                "attached_node": t.model.as_ref().map(|m| model_id(m)),
                "column_name": t.column,
                "test_metadata": if matches!(t.kind, TestKind::Singular { .. }) { Value::Null } else { json!({"name": t.kind.name(), "kwargs": kwargs}) },
                "config": {"severity": t.severity},
                "depends_on": {"nodes": depends},
            }),
        );
    }
    let mut child_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (child, parents) in &parent_map {
        child_map.entry(child.clone()).or_default();
        for p in parents {
            child_map.entry(p.clone()).or_default().push(child.clone());
        }
    }
    json!({
        "metadata": metadata(invocation_id),
        "nodes": nodes,
        "sources": sources,
        "parent_map": parent_map,
        "child_map": child_map,
    })
}

/// run_results.json of a build.
pub fn run_results(report: &BuildReport) -> Value {
    let results: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            let unique_id = if r.resource_type == "model" { model_id(&r.name) } else { test_id(&r.name) };
            json!({
                "unique_id": unique_id,
                "status": r.status,
                "message": r.message,
                "failures": r.failures,
                "execution_time": r.execution_time,
                "timing": [{"name": "execute", "started_at": r.started_at, "completed_at": r.completed_at}],
                "adapter_response": {"rows_affected": r.rows_affected, "materialized": r.materialized},
                "compiled_path": r.compiled_path,
            })
        })
        .collect();
    json!({
        "metadata": metadata(&report.invocation_id),
        "results": results,
        "elapsed_time": report.elapsed_time,
        "missing_rates": report.missing_rates,
    })
}

/// Writes `target/manifest.json` of invocation `invocation_id` (and, with its report,
/// `target/run_results.json`).
pub fn write(target: &Path, project: &Project, invocation_id: &str, report: Option<&BuildReport>) -> Result<()> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON values serialize");
    write_file(&target.join("manifest.json"), &pretty(&manifest(project, invocation_id)))?;
    if let Some(r) = report {
        write_file(&target.join("run_results.json"), &pretty(&run_results(r)))?;
    }
    Ok(())
}
