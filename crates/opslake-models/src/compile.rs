//! Jinja templating of models and tests with minijinja: `ref`, `source`, `config`, `var`,
//! `is_incremental` and `this`, as dbt has them. Rendering records what a template refers to,
//! so the same call builds the DAG (once, with `is_incremental()` false) and the SQL to run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use opslake_schema::{Contract, Problem};

use crate::project::{Materialized, OneOrMany, RawConfig, did_you_mean};

/// The source name of opslake's own tables: `{{ source('opslake', '_rejects') }}`.
pub const SYSTEM_SOURCE: &str = "opslake";

/// What templates may refer to.
#[derive(Debug, Clone)]
pub struct Scope {
    models: Arc<BTreeSet<String>>,
    tables: Arc<BTreeMap<String, BTreeSet<String>>>,
    vars: Arc<BTreeMap<String, serde_json::Value>>,
}

impl Scope {
    /// Models by name, the contract's tables, and the values of `var()`.
    pub fn new(
        models: impl IntoIterator<Item = String>,
        contract: &Contract,
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Self {
        let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in contract.tables().chain(contract.system_tables()) {
            // System tables have no namespace; templates name them as the source `opslake`.
            let ns = if t.id.namespace.is_empty() { SYSTEM_SOURCE } else { t.id.namespace.as_str() };
            tables.entry(ns.to_string()).or_default().insert(t.id.name.clone());
        }
        Self { models: Arc::new(models.into_iter().collect()), tables: Arc::new(tables), vars: Arc::new(vars) }
    }
}

/// A rendered template and what it referred to.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The SQL.
    pub sql: String,
    /// Models named by `ref()`, in order of first use.
    pub refs: Vec<String>,
    /// Tables named by `source()`, in order of first use.
    pub sources: Vec<(String, String)>,
    /// The `{{ config() }}` call's settings.
    pub config: Option<ConfigCall>,
}

/// What `{{ config(...) }}` set.
#[derive(Debug, Clone, Default)]
pub struct ConfigCall {
    pub(crate) raw: RawConfig,
}

#[derive(Default)]
struct Capture {
    refs: Vec<String>,
    sources: Vec<(String, String)>,
    config: Option<ConfigCall>,
}

/// Renders `template` (from `file`). `this` is the model's own relation; `incremental` is what
/// `is_incremental()` answers. Errors carry the file and the template line.
pub fn render(
    scope: &Scope,
    file: &str,
    template: &str,
    this: Option<&str>,
    incremental: bool,
) -> Result<Rendered, Problem> {
    let capture = Arc::new(Mutex::new(Capture::default()));
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // SQL keeps its own newlines: a compiled line is the template's line.
    env.set_keep_trailing_newline(true);

    let (models, cap) = (Arc::clone(&scope.models), Arc::clone(&capture));
    env.add_function("ref", move |name: String| -> Result<String, minijinja::Error> {
        if !models.contains(&name) {
            let hint = did_you_mean(&name, models.iter().map(String::as_str));
            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("unknown model '{name}'{hint}")));
        }
        let mut c = cap.lock().expect("capture lock");
        if !c.refs.contains(&name) {
            c.refs.push(name.clone());
        }
        Ok(name)
    });

    let (tables, cap) = (Arc::clone(&scope.tables), Arc::clone(&capture));
    env.add_function("source", move |ns: String, table: String| -> Result<String, minijinja::Error> {
        let Some(names) = tables.get(&ns) else {
            let hint = did_you_mean(&ns, tables.keys().map(String::as_str));
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown source '{ns}'{hint}; sources are the canonical namespaces"),
            ));
        };
        if !names.contains(&table) {
            let hint = did_you_mean(&table, names.iter().map(String::as_str));
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("no table '{table}' in source '{ns}'{hint}"),
            ));
        }
        let mut c = cap.lock().expect("capture lock");
        let pair = (ns.clone(), table.clone());
        if !c.sources.contains(&pair) {
            c.sources.push(pair);
        }
        Ok(if ns == SYSTEM_SOURCE { table } else { format!("{ns}.{table}") })
    });

    let cap = Arc::clone(&capture);
    env.add_function("config", move |kwargs: Kwargs| -> Result<String, minijinja::Error> {
        let materialized = match kwargs.get::<Option<String>>("materialized")? {
            None => None,
            Some(m) => Some(match m.as_str() {
                "view" => Materialized::View,
                "table" => Materialized::Table,
                "incremental" => Materialized::Incremental,
                other => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("materialized='{other}': use view, table or incremental"),
                    ));
                }
            }),
        };
        let unique_key = kwargs.get::<Option<Value>>("unique_key")?.map(strings).transpose()?;
        let tags = kwargs.get::<Option<Value>>("tags")?.map(strings).transpose()?;
        kwargs.assert_all_used()?;
        cap.lock().expect("capture lock").config = Some(ConfigCall {
            raw: RawConfig {
                materialized,
                unique_key: unique_key.map(OneOrMany::Many),
                tags: tags.map(OneOrMany::Many),
            },
        });
        Ok(String::new())
    });

    let vars = Arc::clone(&scope.vars);
    env.add_function("var", move |name: String, default: Option<Value>| -> Result<Value, minijinja::Error> {
        match (vars.get(&name), default) {
            (Some(v), _) => Ok(Value::from_serialize(v)),
            (None, Some(d)) => Ok(d),
            (None, None) => {
                let hint = did_you_mean(&name, vars.keys().map(String::as_str));
                Err(minijinja::Error::new(
                    ErrorKind::UndefinedError,
                    format!("var '{name}' is not set{hint}; give a default: var('{name}', ...)"),
                ))
            }
        }
    });
    env.add_function("is_incremental", move || incremental);
    if let Some(this) = this {
        env.add_global("this", this.to_string());
    }

    let sql = env.render_named_str(file, template, ()).map_err(|e| problem(file, &e))?;
    let c = std::mem::take(&mut *capture.lock().expect("capture lock"));
    Ok(Rendered { sql, refs: c.refs, sources: c.sources, config: c.config })
}

fn strings(v: Value) -> Result<Vec<String>, minijinja::Error> {
    if let Some(s) = v.as_str() {
        return Ok(vec![s.to_string()]);
    }
    v.try_iter()?
        .map(|item| {
            item.as_str().map(str::to_string).ok_or_else(|| {
                minijinja::Error::new(ErrorKind::InvalidOperation, format!("expected text, found {item}"))
            })
        })
        .collect()
}

fn problem(file: &str, e: &minijinja::Error) -> Problem {
    let message = e.detail().map_or_else(|| e.kind().to_string(), str::to_string);
    Problem { file: file.to_string(), line: e.line().unwrap_or(0) as u64, column: 0, message }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn scope() -> Scope {
        let contract = Contract::embedded().expect("contract");
        let vars = BTreeMap::from([("reporting_currency".to_string(), serde_json::json!("EUR"))]);
        Scope::new(["stg_payments".to_string(), "fct_cash".to_string()], &contract, vars)
    }

    #[test]
    fn refs_sources_config_and_vars_are_recorded() {
        let t = "{{ config(materialized='incremental', unique_key='month', tags=['finance']) }}\n\
                 SELECT * FROM {{ ref('stg_payments') }} JOIN {{ source('crm', 'opportunities') }}\n\
                 WHERE currency = '{{ var('reporting_currency') }}'\n\
                 {% if is_incremental() %}AND month > (SELECT max(month) FROM {{ this }}){% endif %}";
        let r = render(&scope(), "m.sql", t, Some("fct_cash"), false).expect("renders");
        assert_eq!(r.refs, ["stg_payments"]);
        assert_eq!(r.sources, [("crm".to_string(), "opportunities".to_string())]);
        assert!(r.sql.contains("FROM stg_payments JOIN crm.opportunities"), "{}", r.sql);
        let system = render(&scope(), "m.sql", "select * from {{ source('opslake', '_rejects') }}", None, false);
        assert_eq!(system.expect("renders").sql, "select * from _rejects");
        assert!(r.sql.contains("currency = 'EUR'"), "{}", r.sql);
        assert!(!r.sql.contains("max(month)"), "{}", r.sql);
        let cfg = r.config.expect("config").raw;
        assert_eq!(cfg.materialized, Some(Materialized::Incremental));
        let incremental = render(&scope(), "m.sql", t, Some("fct_cash"), true).expect("renders");
        assert!(incremental.sql.contains("(SELECT max(month) FROM fct_cash)"), "{}", incremental.sql);
    }

    #[test]
    fn unknown_names_are_reported_with_line_and_a_suggestion() {
        let e = render(&scope(), "models/m.sql", "SELECT 1\nFROM {{ ref('stg_paymnts') }}", None, false)
            .expect_err("unknown ref");
        assert_eq!((e.file.as_str(), e.line), ("models/m.sql", 2), "{e}");
        assert!(e.message.contains("unknown model 'stg_paymnts' (did you mean 'stg_payments'?)"), "{e}");
        let e = render(&scope(), "m.sql", "{{ source('finance', 'paymnts') }}", None, false).expect_err("source");
        assert!(e.message.contains("did you mean 'payments'"), "{e}");
        let e = render(&scope(), "m.sql", "{{ var('fiscal_month') }}", None, false).expect_err("var");
        assert!(e.message.contains("var 'fiscal_month' is not set"), "{e}");
        let e = render(&scope(), "m.sql", "{{ config(materialised='table') }}", None, false).expect_err("kwarg");
        assert!(e.message.contains("materialised"), "{e}");
    }
}
