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
            "crm.opportunity_line_items",
            "crm.field_history",
            "marketing.ad_accounts",
            "marketing.ad_campaigns",
            "marketing.ad_performance_daily",
            "marketing.ad_performance_periods",
            "marketing.ad_actions_daily",
            "marketing.email_lists",
            "marketing.email_campaigns",
            "marketing.email_activity",
            "marketing.email_list_members",
            "marketing.ad_performance_breakdowns",
            "finance.customers",
            "finance.gl_accounts",
            "finance.journal_lines",
            "finance.journal_entries",
            "finance.invoices",
            "finance.invoice_lines",
            "finance.payments",
            "finance.subscriptions",
            "finance.balance_transactions",
            "finance.payouts",
            "finance.suppliers",
            "finance.tax_rates",
            "finance.payment_intents",
            "finance.subscription_items",
            "finance.trial_balances",
            "finance.transaction_report_lines",
            "hr.employees",
            "hr.employment_history",
            "hr.departments",
            "hr.payroll_lines",
            "hr.job_requisitions",
            "hr.candidates",
            "hr.applications",
            "hr.interview_stages",
            "hr.interviews",
            "hr.recruiting_users",
            "hr.offices",
            "hr.pay_schedules",
            "hr.employee_addresses",
            "hr.employee_tax_elections",
            "hr.field_definitions",
            "hr.time_off_balances",
            "hr.candidate_activities",
            "hr.job_posts",
            "hr.job_profiles",
            "ref.fx_rates",
            "ref.dim_date",
            "ref.map_department",
            "ref.map_campaign",
            "ref.legal_entities",
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
