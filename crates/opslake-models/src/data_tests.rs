//! Data tests: the four generic tests dbt has (declared in YAML under a model's columns) and
//! singular tests (SQL files in `tests/`). Every test is a query returning the offending rows;
//! no rows is a pass.

use serde::{Deserialize, Serialize};

/// What a failing test does to the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported, and the command exits non-zero.
    Error,
    /// Reported only.
    Warn,
}

/// What a test checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// The column has no null.
    NotNull,
    /// No value of the column appears twice.
    Unique,
    /// Every value of the column is one of these.
    AcceptedValues {
        /// The allowed values, as text.
        values: Vec<String>,
        /// Whether they are compared as strings (`'a'`) or written as they are (numbers).
        quote: bool,
    },
    /// Every value of the column is a `field` of the relation `to` (`ref('m')`, `source(..)`).
    Relationships {
        /// A Jinja expression naming the parent relation.
        to: String,
        /// The parent's column.
        field: String,
    },
    /// A SQL template returning offending rows.
    Singular {
        /// The template.
        sql: String,
    },
}

impl TestKind {
    /// The generic test's name (`not_null`, ...) or `singular`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NotNull => "not_null",
            Self::Unique => "unique",
            Self::AcceptedValues { .. } => "accepted_values",
            Self::Relationships { .. } => "relationships",
            Self::Singular { .. } => "singular",
        }
    }
}

/// One data test.
#[derive(Debug, Clone)]
pub struct DataTest {
    /// Unique name: `not_null_fct_cash_month`, or the singular test's file stem.
    pub name: String,
    /// What it checks.
    pub kind: TestKind,
    /// The model it is attached to (generic tests).
    pub model: Option<String>,
    /// The column it is attached to (generic tests).
    pub column: Option<String>,
    /// Whether a failure fails the command.
    pub severity: Severity,
    /// Where it is declared.
    pub file: String,
    /// Line of the declaration.
    pub line: u64,
}

impl DataTest {
    /// The test as a Jinja SQL template over its model (`{{ ref('m') }}`): a query returning
    /// the offending rows. Singular tests are their own template.
    pub fn template(&self) -> String {
        let model = self.model.as_deref().unwrap_or_default();
        let col = quote_ident(self.column.as_deref().unwrap_or_default());
        let rel = format!("{{{{ ref('{model}') }}}}");
        match &self.kind {
            TestKind::NotNull => format!("SELECT * FROM {rel} WHERE {col} IS NULL"),
            TestKind::Unique => format!(
                "SELECT {col} AS unique_field, count(*) AS n_records FROM {rel} \
                 WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1"
            ),
            TestKind::AcceptedValues { values, quote } => {
                let list = values
                    .iter()
                    .map(|v| if *quote { format!("'{}'", v.replace('\'', "''")) } else { v.clone() })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "SELECT {col} AS value_field, count(*) AS n_records FROM {rel} \
                     WHERE {col} IS NOT NULL AND {col} NOT IN ({list}) GROUP BY {col}"
                )
            }
            TestKind::Relationships { to, field } => {
                let field = quote_ident(field);
                format!(
                    "SELECT child.{col} AS from_field FROM {rel} AS child \
                     LEFT JOIN {{{{ {to} }}}} AS parent ON child.{col} = parent.{field} \
                     WHERE child.{col} IS NOT NULL AND parent.{field} IS NULL"
                )
            }
            TestKind::Singular { sql } => sql.clone(),
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn test(kind: TestKind) -> DataTest {
        DataTest {
            name: "t".into(),
            kind,
            model: Some("fct_cash".into()),
            column: Some("month".into()),
            severity: Severity::Error,
            file: "f.yml".into(),
            line: 3,
        }
    }

    #[test]
    fn generic_tests_are_queries_of_offending_rows() {
        assert_eq!(test(TestKind::NotNull).template(), "SELECT * FROM {{ ref('fct_cash') }} WHERE \"month\" IS NULL");
        let accepted = test(TestKind::AcceptedValues { values: vec!["a".into(), "o'k".into()], quote: true });
        assert!(accepted.template().contains("NOT IN ('a', 'o''k')"), "{}", accepted.template());
        let rel = test(TestKind::Relationships { to: "ref('dim_month')".into(), field: "id".into() });
        assert!(rel.template().contains("LEFT JOIN {{ ref('dim_month') }} AS parent"), "{}", rel.template());
    }
}
