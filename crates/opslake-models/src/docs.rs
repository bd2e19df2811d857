//! `opslake docs build`: one self-contained HTML page (no scripts, fonts or requests) that
//! opens from the file system: the lineage graph as inline SVG, every model with its
//! description, config, columns, tests, SQL and neighbours, and every canonical table of the
//! contract with its columns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use opslake_schema::Contract;

use crate::data_tests::TestKind;
use crate::{Materialized, Project};

const NODE_W: i64 = 230;
const NODE_H: i64 = 34;
const COL_GAP: i64 = 90;
const ROW_GAP: i64 = 18;
const PAD: i64 = 20;

/// A node of the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GraphNode {
    Source(String),
    Model(String),
}

impl GraphNode {
    fn label(&self) -> &str {
        match self {
            Self::Source(s) | Self::Model(s) => s,
        }
    }

    fn anchor(&self) -> String {
        match self {
            Self::Source(s) => format!("table-{}", s.replace('.', "-")),
            Self::Model(m) => format!("model-{m}"),
        }
    }
}

/// The page, as HTML.
pub fn site(project: &Project, contract: &Contract) -> String {
    let mut html = String::new();
    let models = &project.pipelines.models;
    let title = "opslake: models and canonical tables";
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
    let _ = writeln!(
        html,
        "<header><h1>{title}</h1><p>{} models, {} data tests, {} canonical tables. Generated {}.</p>\
         <nav><a href=\"#lineage\">Lineage</a> <a href=\"#models\">Models</a> <a href=\"#tests\">Tests</a> <a href=\"#tables\">Canonical tables</a></nav></header>",
        models.len(),
        project.pipelines.tests.len(),
        contract.tables().count(),
        esc(&chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string())
    );
    html.push_str("<section id=\"lineage\"><h2>Lineage</h2>\n");
    html.push_str(&lineage_svg(project));
    html.push_str("<p class=\"legend\"><span class=\"k source\">canonical table</span> <span class=\"k view\">view</span> <span class=\"k table\">table</span> <span class=\"k incremental\">incremental</span></p></section>\n");

    let mut tests_by_model: BTreeMap<&str, Vec<&crate::DataTest>> = BTreeMap::new();
    for t in &project.pipelines.tests {
        if let Some(m) = &t.model {
            tests_by_model.entry(m.as_str()).or_default().push(t);
        }
    }
    html.push_str("<section id=\"models\"><h2>Models</h2>\n");
    for m in models {
        let config = project.config(&m.name);
        let node = project.node(&m.name);
        let _ = write!(
            html,
            "<article id=\"model-{name}\"><h3>{name} <span class=\"k {mat}\">{mat}</span></h3>\n<p class=\"path\">{path}</p>\n",
            name = esc(&m.name),
            mat = config.materialized.as_str(),
            path = esc(&m.rel_path)
        );
        if !m.description.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", esc(&m.description));
        }
        let mut facts = Vec::new();
        if !config.tags.is_empty() {
            facts.push(format!("tags: {}", esc(&config.tags.join(", "))));
        }
        if config.materialized == Materialized::Incremental {
            let key = if config.unique_key.is_empty() { "none (appends)".into() } else { config.unique_key.join(", ") };
            facts.push(format!("unique key: {}", esc(&key)));
        }
        let reads: Vec<String> = node
            .refs
            .iter()
            .map(|r| link(&GraphNode::Model(r.clone())))
            .chain(node.sources.iter().map(|(ns, t)| link(&GraphNode::Source(format!("{ns}.{t}")))))
            .collect();
        if !reads.is_empty() {
            facts.push(format!("reads: {}", reads.join(", ")));
        }
        let read_by: Vec<String> = project.dag.children(&m.name).map(|c| link(&GraphNode::Model(c.clone()))).collect();
        if !read_by.is_empty() {
            facts.push(format!("read by: {}", read_by.join(", ")));
        }
        if !facts.is_empty() {
            let _ = writeln!(html, "<p class=\"facts\">{}</p>", facts.join(" · "));
        }
        let tests = tests_by_model.get(m.name.as_str()).cloned().unwrap_or_default();
        let mut columns: Vec<(String, String)> =
            m.columns.iter().map(|c| (c.name.clone(), c.description.clone())).collect();
        for t in &tests {
            if let Some(c) = &t.column
                && !columns.iter().any(|(n, _)| n == c)
            {
                columns.push((c.clone(), String::new()));
            }
        }
        if !columns.is_empty() {
            html.push_str("<table><thead><tr><th>column</th><th>description</th><th>tests</th></tr></thead><tbody>\n");
            for (name, description) in &columns {
                let on_column: Vec<String> = tests
                    .iter()
                    .filter(|t| t.column.as_deref() == Some(name.as_str()))
                    .map(|t| format!("<a href=\"#test-{0}\">{1}</a>", esc(&t.name), esc(t.kind.name())))
                    .collect();
                let _ = writeln!(
                    html,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(name),
                    esc(description),
                    on_column.join(", ")
                );
            }
            html.push_str("</tbody></table>\n");
        }
        let _ = writeln!(html, "<details><summary>SQL</summary><pre>{}</pre></details></article>", esc(&m.raw_sql));
    }
    html.push_str("</section>\n<section id=\"tests\"><h2>Data tests</h2>\n<table><thead><tr><th>test</th><th>checks</th><th>severity</th><th>declared</th></tr></thead><tbody>\n");
    for t in &project.pipelines.tests {
        let checks = match (&t.kind, &t.model, &t.column) {
            (TestKind::Singular { .. }, _, _) => "singular SQL: returns offending rows".to_string(),
            (TestKind::AcceptedValues { values, .. }, Some(m), Some(c)) => {
                format!("{} in ({})", link_col(m, c), esc(&values.join(", ")))
            }
            (TestKind::Relationships { to, field }, Some(m), Some(c)) => {
                format!("{} references {} . {}", link_col(m, c), esc(to), esc(field))
            }
            (kind, Some(m), Some(c)) => format!("{} of {}", kind.name(), link_col(m, c)),
            (kind, _, _) => kind.name().to_string(),
        };
        let _ = writeln!(
            html,
            "<tr id=\"test-{name}\"><td><code>{name}</code></td><td>{checks}</td><td>{sev}</td><td class=\"path\">{file}:{line}</td></tr>",
            name = esc(&t.name),
            sev = if t.severity == crate::Severity::Warn { "warn" } else { "error" },
            file = esc(&t.file),
            line = t.line
        );
    }
    html.push_str("</tbody></table></section>\n<section id=\"tables\"><h2>Canonical tables</h2>\n");
    for t in contract.tables() {
        let node = GraphNode::Source(t.id.to_string());
        let _ = write!(
            html,
            "<article id=\"{}\"><h3>{} <span class=\"k source\">{}</span></h3>\n<p>{}</p><p class=\"facts\">grain: {} · key: {}</p>\n",
            node.anchor(),
            esc(&t.id.to_string()),
            esc(&format!("{:?}", t.write_mode).to_lowercase()),
            esc(&t.description),
            esc(&t.grain),
            esc(&t.unique_key.join(", "))
        );
        html.push_str("<details><summary>columns</summary><table><thead><tr><th>column</th><th>type</th><th>description</th></tr></thead><tbody>\n");
        for c in &t.columns {
            let _ = writeln!(
                html,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.name),
                if c.nullable { "" } else { " <span class=\"req\">required</span>" },
                esc(&c.ty.to_string()),
                esc(&c.description)
            );
        }
        html.push_str("</tbody></table></details></article>\n");
    }
    html.push_str("</section>\n</body>\n</html>\n");
    html
}

fn link(n: &GraphNode) -> String {
    format!("<a href=\"#{}\">{}</a>", n.anchor(), esc(n.label()))
}

fn link_col(model: &str, column: &str) -> String {
    format!("<a href=\"#model-{0}\">{0}</a>.<code>{1}</code>", esc(model), esc(column))
}

/// The lineage as SVG: canonical tables read by models in the first column, then each model
/// one column right of its deepest input; edges from input to reader.
fn lineage_svg(project: &Project) -> String {
    let mut parents: BTreeMap<GraphNode, Vec<GraphNode>> = BTreeMap::new();
    for m in &project.pipelines.models {
        let node = project.node(&m.name);
        let mut inputs: Vec<GraphNode> = node.refs.iter().map(|r| GraphNode::Model(r.clone())).collect();
        for (ns, t) in &node.sources {
            let s = GraphNode::Source(format!("{ns}.{t}"));
            parents.entry(s.clone()).or_default();
            inputs.push(s);
        }
        parents.insert(GraphNode::Model(m.name.clone()), inputs);
    }
    let mut depth: BTreeMap<GraphNode, usize> = BTreeMap::new();
    fn depth_of(
        n: &GraphNode,
        parents: &BTreeMap<GraphNode, Vec<GraphNode>>,
        memo: &mut BTreeMap<GraphNode, usize>,
        guard: &mut BTreeSet<GraphNode>,
    ) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        if !guard.insert(n.clone()) {
            return 0; // a cycle: the project reports it; draw what there is
        }
        let d = match n {
            GraphNode::Source(_) => 0,
            GraphNode::Model(_) => {
                1 + parents.get(n).into_iter().flatten().map(|p| depth_of(p, parents, memo, guard)).max().unwrap_or(0)
            }
        };
        memo.insert(n.clone(), d);
        d
    }
    for n in parents.keys() {
        depth_of(n, &parents, &mut depth, &mut BTreeSet::new());
    }
    let mut columns: BTreeMap<usize, Vec<GraphNode>> = BTreeMap::new();
    for (n, d) in &depth {
        columns.entry(*d).or_default().push(n.clone());
    }
    let mut pos: BTreeMap<GraphNode, (i64, i64)> = BTreeMap::new();
    for (d, nodes) in &columns {
        for (i, n) in nodes.iter().enumerate() {
            pos.insert(n.clone(), (PAD + *d as i64 * (NODE_W + COL_GAP), PAD + i as i64 * (NODE_H + ROW_GAP)));
        }
    }
    let width = PAD * 2 + columns.len().max(1) as i64 * (NODE_W + COL_GAP) - COL_GAP;
    let tallest = columns.values().map(Vec::len).max().unwrap_or(1) as i64;
    let height = PAD * 2 + tallest * (NODE_H + ROW_GAP) - ROW_GAP;
    let mut svg = format!(
        "<svg id=\"lineage-graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"lineage graph\">\n"
    );
    for (child, inputs) in &parents {
        let Some(&(cx, cy)) = pos.get(child) else { continue };
        for p in inputs {
            let Some(&(px, py)) = pos.get(p) else { continue };
            let (x1, y1, x2, y2) = (px + NODE_W, py + NODE_H / 2, cx, cy + NODE_H / 2);
            let mid = (x1 + x2) / 2;
            let _ = writeln!(svg, "<path class=\"edge\" d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\"/>");
        }
    }
    for (n, (x, y)) in &pos {
        let class = match n {
            GraphNode::Source(_) => "source",
            GraphNode::Model(m) => project.config(m).materialized.as_str(),
        };
        let _ = writeln!(
            svg,
            "<a href=\"#{anchor}\"><g class=\"node {class}\"><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\"/><text x=\"{tx}\" y=\"{ty}\">{label}</text></g></a>",
            anchor = n.anchor(),
            tx = x + 10,
            ty = y + NODE_H / 2 + 5,
            label = esc(n.label())
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
header{background:#1d2430;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0 0 8px;color:#c9d1dc}nav a{color:#9fd0ff;margin-right:16px}
section{padding:8px 28px}h2{border-bottom:1px solid #d8dee6;padding-bottom:4px}
article{background:#fff;border:1px solid #e1e6ec;border-radius:8px;padding:10px 16px;margin:12px 0}
h3{margin:4px 0}.path{color:#5c6878;font-family:ui-monospace,monospace;font-size:13px}
.facts{color:#3b4757;font-size:14px}table{border-collapse:collapse;margin:8px 0;font-size:14px}
td,th{border:1px solid #e1e6ec;padding:4px 8px;text-align:left;vertical-align:top}
pre{background:#f3f5f8;padding:10px;overflow:auto;font-size:13px;white-space:pre-wrap}
td{word-break:break-word}table{max-width:100%}
.k{font-size:12px;font-weight:600;border-radius:10px;padding:2px 8px;color:#fff}
.k.source{background:#2e8b57}.k.view{background:#2f6fd6}.k.table{background:#7a3fd1}.k.incremental{background:#d9822b}
.req{font-size:11px;color:#b3261e}
#lineage-graph{background:#fff;border:1px solid #e1e6ec;border-radius:8px;max-width:100%;height:auto}
.edge{fill:none;stroke:#8a97a8;stroke-width:1.6}
.node rect{stroke:#1d2430;stroke-width:1}.node text{font:13px ui-monospace,monospace;fill:#fff}
.node.source rect{fill:#2e8b57}.node.view rect{fill:#2f6fd6}.node.table rect{fill:#7a3fd1}.node.incremental rect{fill:#d9822b}
.legend .k{margin-right:6px}
";

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_page_escapes_text_and_links_every_node_of_the_graph() {
        let contract = Contract::embedded().expect("contract");
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write("models/staging/stg_p.sql", "select * from {{ source('finance', 'payments') }} where amount < 0");
        write("models/marts/fct_c.sql", "select * from {{ ref('stg_p') }}");
        write(
            "models/marts/_m.yml",
            "models:\n  - name: fct_c\n    description: \"Cash <by> month & more\"\n    columns:\n      - name: month\n        data_tests: [unique]\n",
        );
        let (project, problems) = Project::load(dir.path(), &contract, BTreeMap::new()).expect("loads");
        assert!(problems.is_empty(), "{problems:?}");
        let html = site(&project, &contract);
        assert!(html.contains("Cash &lt;by&gt; month &amp; more"));
        assert!(html.contains("amount &lt; 0"));
        let svg = &html[html.find("<svg").expect("svg")..html.find("</svg>").expect("end")];
        for anchor in ["#table-finance-payments", "#model-stg_p", "#model-fct_c"] {
            assert!(svg.contains(anchor), "{anchor} not in the graph");
        }
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
        assert!(html.contains("id=\"model-fct_c\"") && html.contains("id=\"table-finance-payments\""));
        assert!(html.contains("<a href=\"#test-unique_fct_c_month\">unique</a>"));
        assert!(!html.contains("<script"), "the page runs no script");
    }
}
