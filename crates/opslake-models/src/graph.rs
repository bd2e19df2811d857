//! The DAG of models (edges from `ref()`), its cycles and dbt's node selection syntax.

use std::collections::{BTreeMap, BTreeSet};

use crate::project::did_you_mean;

/// Models and what each reads.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    parents: BTreeMap<String, BTreeSet<String>>,
    children: BTreeMap<String, BTreeSet<String>>,
}

/// What a selector can match a model on.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The model.
    pub name: String,
    /// Its path inside the project (`models/marts/...`).
    pub rel_path: String,
    /// Its tags.
    pub tags: Vec<String>,
}

impl Dag {
    /// A DAG over `nodes` with `edges` (child, parent).
    pub fn new<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
        edges: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut dag = Self::default();
        for n in nodes {
            dag.parents.entry(n.to_string()).or_default();
            dag.children.entry(n.to_string()).or_default();
        }
        for (child, parent) in edges {
            dag.parents.entry(child.to_string()).or_default().insert(parent.to_string());
            dag.children.entry(parent.to_string()).or_default().insert(child.to_string());
        }
        dag
    }

    /// The models `name` reads.
    pub fn parents(&self, name: &str) -> impl Iterator<Item = &String> {
        self.parents.get(name).into_iter().flatten()
    }

    /// The models that read `name`.
    pub fn children(&self, name: &str) -> impl Iterator<Item = &String> {
        self.children.get(name).into_iter().flatten()
    }

    /// A cycle, as the path that closes it (`a -> b -> a`), when there is one.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit<'a>(
            dag: &'a Dag,
            n: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match marks.get(n) {
                Some(Mark::Done) => return None,
                Some(Mark::Open) => {
                    let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                    let mut path: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                    path.push(n.to_string());
                    return Some(path);
                }
                None => {}
            }
            marks.insert(n, Mark::Open);
            stack.push(n);
            for p in dag.parents(n) {
                if let Some(c) = visit(dag, p, marks, stack) {
                    return Some(c);
                }
            }
            stack.pop();
            marks.insert(n, Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for n in self.parents.keys() {
            let mut stack = Vec::new();
            if let Some(mut cycle) = visit(self, n, &mut marks, &mut stack) {
                // Found walking from children to parents: show it in the order data flows.
                cycle.reverse();
                return Some(cycle);
            }
        }
        None
    }

    /// `of` and everything upstream of it.
    pub fn ancestors(&self, of: &str, depth: Option<usize>) -> BTreeSet<String> {
        walk(&self.parents, of, depth)
    }

    /// `of` and everything downstream of it.
    pub fn descendants(&self, of: &str, depth: Option<usize>) -> BTreeSet<String> {
        walk(&self.children, of, depth)
    }

    /// The nodes of `subset` ordered so every node comes after its parents (ties by name).
    /// The DAG must be acyclic.
    pub fn order(&self, subset: &BTreeSet<String>) -> Vec<String> {
        let mut waiting: BTreeMap<&str, usize> =
            subset.iter().map(|n| (n.as_str(), self.parents(n).filter(|p| subset.contains(*p)).count())).collect();
        let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, c)| **c == 0).map(|(n, _)| *n).collect();
        let mut out = Vec::with_capacity(subset.len());
        while let Some(n) = ready.pop_first() {
            waiting.remove(n);
            out.push(n.to_string());
            for c in self.children.get(n).into_iter().flatten() {
                if let Some(count) = waiting.get_mut(c.as_str()) {
                    *count -= 1;
                    if *count == 0 {
                        ready.insert(c.as_str());
                    }
                }
            }
        }
        out
    }

    /// The models `select` names (all when empty), less those `exclude` names. Each argument
    /// is a space-separated union of selectors; a selector with commas is an intersection.
    /// A selector is a model name, `tag:x` or `path:models/marts`, with `+` before it for its
    /// ancestors and after it for its descendants (`2+m`, `m+1` to bound the depth).
    pub fn select(
        &self,
        nodes: &[NodeInfo],
        select: &[String],
        exclude: &[String],
    ) -> Result<BTreeSet<String>, String> {
        let all: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let mut chosen = if select.iter().all(|s| s.trim().is_empty()) { all } else { self.union(nodes, select)? };
        if !exclude.iter().all(|s| s.trim().is_empty()) {
            for n in self.union(nodes, exclude)? {
                chosen.remove(&n);
            }
        }
        Ok(chosen)
    }

    fn union(&self, nodes: &[NodeInfo], args: &[String]) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for word in args.iter().flat_map(|a| a.split_whitespace()) {
            let mut parts = word.split(',');
            let first = self.one(nodes, parts.next().unwrap_or_default())?;
            let meet = parts.try_fold(first, |acc, p| {
                let next = self.one(nodes, p)?;
                Ok::<_, String>(acc.intersection(&next).cloned().collect())
            })?;
            out.extend(meet);
        }
        Ok(out)
    }

    fn one(&self, nodes: &[NodeInfo], selector: &str) -> Result<BTreeSet<String>, String> {
        let (up, rest) = graph_op(selector, true);
        let (down, core) = graph_op(rest, false);
        let base: BTreeSet<String> = if let Some(tag) = core.strip_prefix("tag:") {
            nodes.iter().filter(|n| n.tags.iter().any(|t| t == tag)).map(|n| n.name.clone()).collect()
        } else if let Some(path) = core.strip_prefix("path:") {
            let path = path.trim_end_matches('/');
            nodes
                .iter()
                .filter(|n| n.rel_path == path || n.rel_path.starts_with(&format!("{path}/")))
                .map(|n| n.name.clone())
                .collect()
        } else if nodes.iter().any(|n| n.name == core) {
            BTreeSet::from([core.to_string()])
        } else {
            let hint = did_you_mean(core, nodes.iter().map(|n| n.name.as_str()));
            return Err(format!(
                "selector '{selector}': no model '{core}'{hint}; selectors are model names, tag:x and path:models/..."
            ));
        };
        let mut out = base.clone();
        for n in &base {
            if let Some(depth) = up {
                out.extend(self.ancestors(n, depth));
            }
            if let Some(depth) = down {
                out.extend(self.descendants(n, depth));
            }
        }
        Ok(out)
    }
}

/// A `+` (or `N+`) before the selector (`leading`) or after it (`+`, `+N`): `Some(depth)`.
fn graph_op(s: &str, leading: bool) -> (Option<Option<usize>>, &str) {
    if leading {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if s[digits..].starts_with('+') {
            return (Some(s[..digits].parse().ok()), &s[digits + 1..]);
        }
    } else if let Some(i) = s.rfind('+') {
        let tail = &s[i + 1..];
        if tail.chars().all(|c| c.is_ascii_digit()) {
            return (Some(tail.parse().ok()), &s[..i]);
        }
    }
    (None, s)
}

fn walk(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, depth: Option<usize>) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([from.to_string()]);
    let mut frontier = vec![from.to_string()];
    let mut level = 0;
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        let mut next = Vec::new();
        for n in frontier {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    next.push(m.clone());
                }
            }
        }
        frontier = next;
        level += 1;
    }
    seen
}

#[cfg(test)]
mod unit {
    use super::*;

    fn dag() -> (Dag, Vec<NodeInfo>) {
        let edges = [("stg_b", "stg_a"), ("int_c", "stg_b"), ("fct_d", "int_c"), ("fct_e", "stg_a")];
        let names = ["stg_a", "stg_b", "int_c", "fct_d", "fct_e", "lonely"];
        let nodes = names
            .iter()
            .map(|n| NodeInfo {
                name: n.to_string(),
                rel_path: if n.starts_with("fct") {
                    format!("models/marts/{n}.sql")
                } else {
                    format!("models/x/{n}.sql")
                },
                tags: if *n == "fct_e" { vec!["finance".into()] } else { vec![] },
            })
            .collect();
        (Dag::new(names, edges), nodes)
    }

    fn sel(s: &str) -> Vec<String> {
        let (d, nodes) = dag();
        d.select(&nodes, &[s.to_string()], &[]).expect("selects").into_iter().collect()
    }

    #[test]
    fn selectors_follow_dbt() {
        assert_eq!(sel("int_c"), ["int_c"]);
        assert_eq!(sel("+int_c"), ["int_c", "stg_a", "stg_b"]);
        assert_eq!(sel("stg_b+"), ["fct_d", "int_c", "stg_b"]);
        assert_eq!(sel("stg_a+1"), ["fct_e", "stg_a", "stg_b"]);
        assert_eq!(sel("1+int_c"), ["int_c", "stg_b"]);
        assert_eq!(sel("tag:finance lonely"), ["fct_e", "lonely"]);
        assert_eq!(sel("path:models/marts"), ["fct_d", "fct_e"]);
        assert_eq!(sel("path:models/marts,+fct_d"), ["fct_d"]);
        assert_eq!(sel("").len(), 6);
        let (d, nodes) = dag();
        let picked = d.select(&nodes, &["stg_a+".into()], &["fct_d".into()]).expect("selects");
        assert!(!picked.contains("fct_d") && picked.contains("int_c"));
        let e = d.select(&nodes, &["int_cc".into()], &[]).expect_err("unknown");
        assert!(e.contains("did you mean 'int_c'"), "{e}");
    }

    #[test]
    fn order_puts_parents_first_and_cycles_show_their_path() {
        let (d, _) = dag();
        let all: BTreeSet<String> =
            ["stg_a", "stg_b", "int_c", "fct_d", "fct_e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(d.order(&all), ["stg_a", "fct_e", "stg_b", "int_c", "fct_d"]);
        assert!(d.find_cycle().is_none());
        let cyclic = Dag::new(["a", "b", "c"], [("b", "a"), ("c", "b"), ("a", "c")]);
        let cycle = cyclic.find_cycle().expect("a cycle").join(" -> ");
        assert!(["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"].contains(&cycle.as_str()), "{cycle}");
    }
}
