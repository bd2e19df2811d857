//! Integration tests of opslake-schema against the repository's contract and fixtures.

mod contract {
    use arrow_schema::DataType;
    use opslake_schema::{ColumnType, Contract, EnvelopeRole};

    #[test]
    fn every_table_builds_an_arrow_schema_with_the_envelope() {
        let contract = Contract::embedded().expect("the repository contract is valid");
        let envelope: Vec<_> = contract.envelope_columns().collect();
        assert_eq!(envelope.len(), EnvelopeRole::ALL.len());
        for table in contract.tables() {
            let schema = table.arrow_schema();
            assert_eq!(schema.fields().len(), table.columns.len(), "{}", table.id);
            let history = table.write_mode == opslake_schema::WriteMode::History;
            for role in EnvelopeRole::ALL {
                if role.is_history() {
                    assert_eq!(table.history_column(role).is_some(), history, "{}: {}", table.id, role.as_str());
                    continue;
                }
                let col = table.envelope(role);
                let field = schema.field_with_name(&col.name).unwrap_or_else(|_| panic!("{}: {}", table.id, col.name));
                assert_eq!(field.is_nullable(), col.nullable, "{}.{}", table.id, col.name);
            }
            let key = table.envelope(EnvelopeRole::EntityKey);
            assert_eq!(key.name, format!("{}_key", table.entity), "{}", table.id);
            assert!(!table.unique_key.is_empty(), "{}", table.id);
            for k in &table.unique_key {
                let field = schema.field_with_name(k).expect("key column exists");
                assert!(!field.is_nullable(), "{}: key column {k} is nullable", table.id);
            }
            assert!(!table.grain.is_empty() && !table.description.is_empty(), "{}", table.id);
        }
    }

    /// The personal-data policy drops what it cannot hash (dates, amounts): a personal column
    /// that could not be null would make its rows unwritable instead.
    #[test]
    fn every_personal_column_can_be_dropped() {
        let contract = Contract::embedded().expect("valid");
        let required: Vec<String> = contract
            .tables()
            .flat_map(|t| {
                t.columns.iter().filter(|c| c.pii && !c.nullable).map(move |c| format!("{}.{}", t.id, c.name))
            })
            .collect();
        assert!(required.is_empty(), "required personal columns: {required:?}");
        assert!(contract.tables().flat_map(|t| &t.columns).filter(|c| c.pii).count() >= 20);
    }

    #[test]
    fn covers_the_core_tables_of_the_design() {
        let contract = Contract::embedded().expect("valid");
        let expected = [
            "crm.organizations",
            "crm.people",
            "crm.users",
            "crm.opportunities",
            "crm.opportunity_history",
            "crm.activities",
            "marketing.ad_accounts",
            "marketing.ad_campaigns",
            "marketing.ad_performance_daily",
            "marketing.ad_performance_periods",
            "marketing.ad_actions_daily",
            "marketing.email_lists",
            "marketing.email_campaigns",
            "marketing.email_activity",
            "finance.customers",
            "finance.gl_accounts",
            "finance.journal_lines",
            "finance.invoices",
            "finance.invoice_lines",
            "finance.payments",
            "finance.subscriptions",
            "hr.employees",
            "hr.employment_history",
            "hr.departments",
            "hr.payroll_lines",
            "hr.job_requisitions",
            "hr.candidates",
            "hr.applications",
            "ref.fx_rates",
            "ref.dim_date",
            "ref.map_department",
            "ref.map_campaign",
            "identity.xref_identity",
        ];
        let mut actual: Vec<String> = contract.tables().map(|t| t.id.to_string()).collect();
        let mut expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected);
    }

    #[test]
    fn instants_are_utc_and_money_is_never_float() {
        let contract = Contract::embedded().expect("valid");
        for table in contract.tables() {
            for col in &table.columns {
                if col.ty == ColumnType::Timestamp {
                    assert!(matches!(col.ty.arrow(), DataType::Timestamp(_, Some(tz)) if &*tz == "UTC"));
                }
                let money_like = col.name.starts_with("amount")
                    || [
                        "amount",
                        "spend",
                        "total",
                        "balance",
                        "revenue",
                        "fee",
                        "net",
                        "mrr",
                        "pay_rate",
                        "conversion_value",
                    ]
                    .iter()
                    .any(|m| col.name.ends_with(m));
                if money_like {
                    assert!(
                        matches!(col.ty, ColumnType::Decimal { .. }),
                        "{}.{} is money but {}",
                        table.id,
                        col.name,
                        col.ty
                    );
                }
            }
        }
    }

    #[test]
    fn personal_columns_are_marked() {
        let contract = Contract::embedded().expect("valid");
        let about_people = ["person", "user", "customer", "employee", "candidate", "email_event"];
        for table in contract.tables().filter(|t| about_people.contains(&t.entity.as_str())) {
            for col in table.own_columns() {
                let personal = matches!(
                    col.name.as_str(),
                    "email" | "first_name" | "last_name" | "full_name" | "phone" | "work_email" | "date_of_birth"
                );
                if personal {
                    assert!(col.pii, "{}.{} holds personal data but is not pii: true", table.id, col.name);
                }
            }
        }
    }

    #[test]
    fn loads_the_same_contract_from_the_repository_directory() {
        let dir = opslake_testkit::repo_root().join("schemas/canonical");
        let from_disk = Contract::load_dir(&dir).expect("valid on disk");
        let embedded = Contract::embedded().expect("valid embedded");
        let names = |c: &Contract| c.tables().map(|t| (t.id.to_string(), t.arrow_schema())).collect::<Vec<_>>();
        assert_eq!(names(&from_disk), names(&embedded));
    }
}

/// `tests/config/invalid/*.yml`: each file's first line `# error: <text>` names the message
/// its problem must contain. `config_*` are opslake.yml files, `contract_*` canonical table
/// files (with the repository envelope), `envelope_*` envelope files.
mod invalid_files {
    use std::collections::BTreeSet;

    use opslake_schema::{Contract, Problem, ProjectConfig, contract::ENVELOPE_FILE, embedded};

    fn problems_for(stem: &str, text: &str) -> Vec<Problem> {
        let file = format!("{stem}.yml");
        let envelope = embedded::files().find(|(p, _)| *p == ENVELOPE_FILE).map(|(_, t)| t).expect("envelope");
        let minimal_table =
            "description: d\ngrain: g\nentity: widget\ncolumns:\n  - {name: size, type: int64, description: s}\n";
        if stem.starts_with("config_") {
            let tools: BTreeSet<String> = ["fixture_tool".to_string()].into();
            match ProjectConfig::parse(&file, text) {
                Ok(config) => config.validate(&file, &tools),
                Err(problem) => vec![problem],
            }
        } else if stem.starts_with("contract_") {
            Contract::from_files([(ENVELOPE_FILE, envelope), ("canonical/fixture/widgets.yaml", text)])
                .err()
                .unwrap_or_default()
        } else if stem.starts_with("envelope_") {
            Contract::from_files([(ENVELOPE_FILE, text), ("canonical/fixture/widgets.yaml", minimal_table)])
                .err()
                .unwrap_or_default()
        } else {
            panic!("{file}: name it config_*, contract_* or envelope_*");
        }
    }

    #[test]
    fn every_invalid_file_fails_with_its_expected_message() {
        let dir = opslake_testkit::repo_root().join("tests/config/invalid");
        let cases = opslake_testkit::expected_errors(&dir);
        assert!(cases.len() >= 20, "only {} cases found in {}", cases.len(), dir.display());
        let mut failures = Vec::new();
        for case in &cases {
            let problems = problems_for(&case.stem, &case.text);
            let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
            if !rendered.iter().any(|p| p.contains(&case.expected)) {
                failures.push(format!("{}: expected '{}', got {rendered:#?}", case.path.display(), case.expected));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
