//! The `opslake` binary driven as a user would: real processes, real files, exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn opslake(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opslake"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPSLAKE_LAKE")
        .output()
        .expect("the opslake binary runs")
}

/// `opslake query --lake <lake> --format csv <sql>`, run in `dir`.
fn query_lake_csv(lake: &str, sql: &str, dir: &Path) -> Output {
    opslake(&["query", "--lake", lake, "--format", "csv", sql], dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

mod init_and_validate {
    use super::*;

    #[test]
    fn the_starter_project_validates() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = opslake(&["init", "acme"], tmp.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        for file in ["acme/opslake.yml", "acme/pipelines/sources.yml", "acme/pipelines/models/marts"] {
            assert!(tmp.path().join(file).exists(), "{file} missing");
        }
        let out = opslake(&["validate", "acme"], tmp.path());
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let contract = opslake_schema::Contract::embedded().expect("contract");
        let summary = format!("{} tables in {} namespaces", contract.tables().count(), contract.namespaces().len());
        assert!(text(&out.stdout).contains(&summary), "{}", text(&out.stdout));
        // The effective personal-data policy is shown, namespace by namespace.
        assert!(text(&out.stdout).contains("personal   crm: keep ("), "{}", text(&out.stdout));
        assert!(text(&out.stdout).contains("national ids or bank details: dropped"), "{}", text(&out.stdout));
        assert!(text(&out.stdout).ends_with("ok\n"));
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(opslake(&["init", "p"], tmp.path()).status.success());
        std::fs::write(tmp.path().join("p/opslake.yml"), "reporting_currency: EUR\n").expect("write");
        let out = opslake(&["init", "p"], tmp.path());
        assert_eq!(out.status.code(), Some(3));
        assert!(text(&out.stderr).contains("already has opslake.yml"), "{}", text(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("p/opslake.yml")).expect("read"),
            "reporting_currency: EUR\n"
        );
        assert!(opslake(&["init", "p", "--force"], tmp.path()).status.success());
    }

    #[test]
    fn three_mistakes_are_all_reported_with_file_and_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(opslake(&["init", "p"], tmp.path()).status.success());
        let config = "lake: ./lake\nreporting_currency: DOLLARS\nreporting_timezone: Europe/Pariss\nfiscal_year_start_month: 0\n";
        std::fs::write(tmp.path().join("p/opslake.yml"), config).expect("write");
        let out = opslake(&["validate", "p"], tmp.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        let file = Path::new("p").join("opslake.yml").display().to_string();
        for expected in [
            format!("{file}:2:21: reporting_currency 'DOLLARS'"),
            format!("{file}:3:21: reporting_timezone 'Europe/Pariss'"),
            format!("{file}:4:26: fiscal_year_start_month 0"),
        ] {
            assert!(stderr.contains(&expected), "missing {expected} in:\n{stderr}");
        }
        assert!(stderr.contains("3 problem(s) found"), "{stderr}");
    }

    #[test]
    fn a_personal_data_policy_naming_what_does_not_exist_is_reported_with_its_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            tmp.path().join("opslake.yml"),
            "personal_data:\n  namespaces: {hr: hash, people: drop}\n  columns:\n    hr.employees.job_title: drop\n",
        )
        .expect("write");
        let out = opslake(&["validate", "."], tmp.path());
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("opslake.yml:2:") && stderr.contains("unknown namespace 'people'"), "{stderr}");
        assert!(stderr.contains("opslake.yml:4:") && stderr.contains("not a personal column"), "{stderr}");
    }

    #[test]
    fn problems_in_different_files_are_reported_together() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(opslake(&["init", "p"], tmp.path()).status.success());
        std::fs::write(tmp.path().join("p/opslake.yml"), "lake: [unclosed\n").expect("write");
        std::fs::write(
            tmp.path().join("p/pipelines/sources.yml"),
            "sources:\n  - name: crm\n    tables:\n      - name: deals\n",
        )
        .expect("write");
        let out = opslake(&["validate", "p"], tmp.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("opslake.yml:1:"), "{stderr}");
        assert!(stderr.contains("sources.yml:4:15: table 'crm.deals' is not in the canonical contract"), "{stderr}");
        assert!(stderr.contains("2 problem(s) found"), "{stderr}");
    }

    #[test]
    fn works_without_a_config_file_and_checks_the_lake_flag() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = opslake(&["validate", "--lake", "s3://acme-lake/prod"], tmp.path());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("lake       s3://acme-lake/prod"), "{}", text(&out.stdout));
        let out = opslake(&["validate", "--lake", "ftp://nope/x"], tmp.path());
        assert_eq!(out.status.code(), Some(3));
        assert!(
            text(&out.stderr).contains("--lake: 'ftp://nope/x': unsupported scheme 'ftp'"),
            "{}",
            text(&out.stderr)
        );
    }

    #[test]
    fn a_missing_explicit_config_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = opslake(&["validate", "--config", "nope.yml"], tmp.path());
        assert_ne!(out.status.code(), Some(0));
        assert!(text(&out.stderr).contains("nope.yml"), "{}", text(&out.stderr));
    }
}

mod cli {
    use super::*;

    #[test]
    fn every_command_has_help_with_an_example() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for args in [
            &["--help"][..],
            &["init", "--help"],
            &["validate", "--help"],
            &["ingest", "--help"],
            &["inspect", "--help"],
            &["run", "--help"],
            &["query", "--help"],
            &["serve", "--help"],
            &["docs", "schema", "--help"],
            &["drift", "--help"],
        ] {
            let out = opslake(args, tmp.path());
            assert!(out.status.success(), "{args:?}");
            let help = text(&out.stdout);
            assert!(help.contains("Example") && help.contains("opslake "), "{args:?} has no example:\n{help}");
        }
    }

    #[test]
    fn bad_arguments_exit_with_the_usage_code() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(opslake(&["frobnicate"], tmp.path()).status.code(), Some(2));
    }
}

mod docs {
    use super::*;

    /// `docs schema --out` replaces and removes only pages it wrote (told by their first line):
    /// a folder with a user's files is safe to point it at.
    #[test]
    fn docs_schema_touches_only_its_own_pages() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("docs");
        let out_arg = out.display().to_string();
        let first = opslake(&["docs", "schema", "--out", &out_arg], tmp.path());
        assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
        let readme = std::fs::read_to_string(out.join("README.md")).expect("a generated page");
        std::fs::write(out.join("notes.md"), "# my notes\n").expect("user file");
        std::fs::write(out.join("old_namespace.md"), &readme).expect("a stale generated page");
        let again = opslake(&["docs", "schema", "--out", &out_arg], tmp.path());
        assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
        assert_eq!(std::fs::read_to_string(out.join("notes.md")).expect("kept"), "# my notes\n");
        assert!(!out.join("old_namespace.md").exists(), "a stale generated page is removed");
        // A page of the user's where a generated one would go: refused, left as it was.
        std::fs::write(out.join("README.md"), "# my project\n").expect("user readme");
        let refused = opslake(&["docs", "schema", "--out", &out_arg], tmp.path());
        assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
        assert!(
            text(&refused.stderr).contains("was not written by `opslake docs schema`"),
            "{}",
            text(&refused.stderr)
        );
        assert_eq!(std::fs::read_to_string(out.join("README.md")).expect("kept"), "# my project\n");
    }

    #[test]
    fn generated_schema_reference_matches_the_committed_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = opslake(&["docs", "schema", "--out", "schema"], tmp.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let committed = opslake_testkit::repo_root().join("docs/schema");
        let mut generated: Vec<_> =
            std::fs::read_dir(tmp.path().join("schema")).expect("written").map(|e| e.expect("entry").path()).collect();
        generated.sort();
        assert!(generated.len() > 6, "{generated:?}");
        for path in generated {
            let name = path.file_name().expect("file");
            let want = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
            assert!(
                std::fs::read_to_string(&path).expect("read") == want,
                "docs/schema/{} is stale: run `cargo run -p opslake-cli -- docs schema`",
                name.to_string_lossy()
            );
        }
    }
}

mod ingest {
    use super::*;

    fn golden(rel: &str) -> String {
        opslake_testkit::repo_root().join("tests/golden").join(rel).display().to_string()
    }

    #[test]
    fn ad_hoc_ingest_detects_tools_and_writes_a_summary() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let account = golden("salesforce/data_export_account/latin1_all_quoted/input/Account.csv");
        let webhook = golden("pipedrive/webhook/deal_updated_with_bom/input/webhook_deal_update.json");
        let out = opslake(
            &["ingest", "--path", &account, "--path", &webhook, "--lake", "lake", "--summary-json", "run.json"],
            tmp.path(),
        );
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(stdout.contains("salesforce.data_export_account"), "{stdout}");
        assert!(stdout.contains("crm.opportunities"), "{stdout}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run.json")).expect("written"))
                .expect("json");
        let files = summary["files"].as_array().expect("files");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["tool"], "salesforce");
        assert_eq!(files[0]["rows_read"], 2);
        assert_eq!(files[1]["shape"], "pipedrive.webhook");
        assert!(tmp.path().join("lake/crm/organizations/_delta_log").is_dir());
    }

    #[test]
    fn a_failed_file_or_too_many_rejects_exit_with_the_data_code() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("mystery.csv"), "a,b\n1,2\n").expect("write");
        let out = opslake(&["ingest", "--path", "mystery.csv", "--lake", "lake"], tmp.path());
        assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("FAILED") && text(&out.stdout).contains("no source recognises"),
            "{}",
            text(&out.stdout)
        );

        let ragged = golden("salesforce/fivetran_opportunity/ragged_row/input/sf_opportunity_data.csv");
        let out = opslake(&["ingest", "--tool", "salesforce", "--path", &ragged, "--lake", "lake2"], tmp.path());
        assert_eq!(out.status.code(), Some(5), "{}", text(&out.stdout));
        assert!(text(&out.stderr).contains("more than max_reject_ratio"), "{}", text(&out.stderr));
    }

    #[test]
    fn a_frozen_connection_fails_a_drifted_file_until_drift_accept_and_drift_lists_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("exports")).expect("mkdir");
        std::fs::write(
            dir.join("opslake.yml"),
            "connections:\n  - name: sf\n    tool: salesforce\n    path: exports/*.csv\n    options: {schema_drift: freeze}\n",
        )
        .expect("config");
        let header = "Id,IsDeleted,Name,BillingCity,Phone,OwnerId";
        std::fs::write(dir.join("exports/Account-1.csv"), format!("{header}\n001A,0,Acme,Lima,555,005A\n"))
            .expect("write");
        let first = opslake(&["ingest"], dir);
        assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

        std::fs::write(
            dir.join("exports/Account-2.csv"),
            format!("{header},Region__c\n001B,0,Bolt,Quito,556,005A,North\n"),
        )
        .expect("write");
        let frozen = opslake(&["ingest"], dir);
        assert_eq!(frozen.status.code(), Some(5), "{}", text(&frozen.stderr));
        let (out, err) = (text(&frozen.stdout), text(&frozen.stderr));
        assert!(out.contains("Account-2.csv FAILED") && out.contains("frozen"), "{out}");
        assert!(err.contains("schema drift") && err.contains("'Region__c'") && err.contains("Account-1.csv"), "{err}");

        let listed = opslake(&["drift"], dir);
        assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
        let out = text(&listed.stdout);
        assert!(
            out.contains("sf · salesforce.data_export_account (freeze)")
                && out.contains("FAILED  NEW_COLUMN")
                && out.contains("1 event(s)"),
            "{out}"
        );
        let unknown = opslake(&["drift", "accept", "hubspot"], dir);
        assert_eq!(unknown.status.code(), Some(3), "{}", text(&unknown.stderr));
        assert!(text(&unknown.stderr).contains("no schema drift to accept"), "{}", text(&unknown.stderr));

        let accepted = opslake(&["drift", "accept", "sf"], dir);
        assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted.stderr));
        assert!(
            text(&accepted.stdout).contains("accepted sf · salesforce.data_export_account"),
            "{}",
            text(&accepted.stdout)
        );
        let loaded = opslake(&["ingest"], dir);
        assert_eq!(loaded.status.code(), Some(0), "{}", text(&loaded.stderr));
        assert!(text(&opslake(&["drift"], dir).stdout).contains("no schema drift since"));
        let all = text(&opslake(&["drift", "--all", "--json"], dir).stdout);
        let events: serde_json::Value = serde_json::from_str(&all).expect("json");
        assert_eq!(events.as_array().map(Vec::len), Some(1), "{all}");
        let runs =
            text(&query_lake_csv("lake", "SELECT command, status FROM _runs WHERE command = 'drift'", dir).stdout);
        assert!(runs.contains("drift,SUCCEEDED"), "accepting is a run of its own: {runs}");
    }

    #[test]
    fn inspect_shows_detection_and_mapped_rows() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let account = golden("salesforce/data_export_account/latin1_all_quoted/input/Account.csv");
        let out = opslake(&["inspect", &account], tmp.path());
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(stdout.contains("salesforce.data_export_account"), "{stdout}");
        assert!(stdout.contains("windows-1252"), "{stdout}");
        assert!(stdout.contains("Panadería Ñandú"), "{stdout}");
        assert!(stdout.contains("encoding   windows-1252 (detected)"), "{stdout}");
        // The evidence: the chosen shape marked, with its score and fit.
        let chosen = stdout.lines().find(|l| l.contains("* salesforce.data_export_account")).unwrap_or_default();
        assert!(chosen.contains("score") && chosen.contains("fit"), "{stdout}");
    }

    /// A table that only shares generic columns with a shape is refused, and the error says
    /// which shape it fits too little and by how much.
    #[test]
    fn a_file_that_fits_a_shape_too_little_is_refused_with_the_fit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("customer.csv");
        std::fs::write(
            &file,
            // Without delinquent, which every Stripe customer has, not one: only generic columns fit.
            "id,_fivetran_synced,name,currency,email,invoice_prefix,balance\ncus_1,2024-01-02,Acme,usd,a@acme.test,ABC,0\n",
        )
        .expect("write");
        let out = opslake(&["inspect", &file.display().to_string()], tmp.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("meta_ads.fivetran_account_history: fits too little"), "{stderr}");
        assert!(stderr.contains("% is needed"), "{stderr}");
    }

    #[test]
    fn inspect_names_the_sheet_and_the_connections_encoding_and_separators() {
        use opslake_testkit::workbook::{Cell, Sheet, write_xlsx};
        let tmp = tempfile::tempdir().expect("tempdir");
        let book = tmp.path().join("Accounts.xlsx");
        let t = Cell::Text;
        write_xlsx(
            &book,
            &[Sheet {
                name: "Account List",
                first_row: 2,
                rows: vec![
                    vec![t("Full name"), t("Type"), t("Detail type"), t("Total balance")],
                    vec![t("Checking"), t("Bank"), t("Checking"), Cell::Number(1250.5)],
                ],
                merged: vec![],
            }],
        );
        let out = opslake(&["inspect", &book.display().to_string()], tmp.path());
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(stdout.contains("sheet      'Account List' of an Excel workbook (XLSX)"), "{stdout}");
        assert!(stdout.contains("header at record 1"), "{stdout}");
        assert!(stdout.contains("1250.500000"), "{stdout}");

        // A connection that declares its files' encoding and separators: inspect reads as it.
        std::fs::write(
            tmp.path().join("opslake.yml"),
            "connections:\n  - name: pl\n    tool: acme_crm\n    path: ./exports\n    options: {encoding: windows-1250, decimal_separator: ',', thousands_separator: ' '}\n",
        )
        .expect("config");
        let tools = opslake_testkit::repo_root().join("tests/fixtures/user_tool/tools");
        std::fs::create_dir(tmp.path().join("tools")).expect("mkdir");
        std::fs::copy(tools.join("acme_crm.yaml"), tmp.path().join("tools/acme_crm.yaml")).expect("copy tool");
        let (bytes, _, _) =
            encoding_rs::WINDOWS_1250.encode("Kunde-ID;Firma;Webseite;Umsatz\nK-1;Zakład;z.pl;1 234,5\n");
        let file = tmp.path().join("k.csv");
        std::fs::write(&file, bytes).expect("write");
        let out = opslake(&["inspect", &file.display().to_string(), "--connection", "pl"], tmp.path());
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(stdout.contains("encoding   windows-1250 (declared by the connection)"), "{stdout}");
        assert!(stdout.contains("numbers    decimal mark ',', thousands separator ' '"), "{stdout}");
        assert!(stdout.contains("Zakład") && stdout.contains("1234.500000"), "{stdout}");
        let out = opslake(&["inspect", &file.display().to_string(), "--connection", "nope"], tmp.path());
        assert!(
            text(&out.stderr).contains("no connection 'nope' in opslake.yml (connections: pl)"),
            "{}",
            text(&out.stderr)
        );
    }
}

mod models {
    use super::*;

    /// The repository's own project: its sample exports ingested, then its pipelines built,
    /// as the README's commands do.
    #[test]
    fn the_example_mart_builds_from_the_sample_exports() {
        let root = opslake_testkit::repo_root();
        let tmp = tempfile::tempdir().expect("tempdir");
        let lake = tmp.path().join("lake").display().to_string();
        let target = tmp.path().join("target");
        let out = opslake(&["ingest", "--lake", &lake], &root);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let out = opslake(&["build", "--lake", &lake, "--target", &target.display().to_string()], &root);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(stdout.contains("OK    table model fct_pipeline_bookings_cash"), "{stdout}");
        // The deal in PEN has no rate: said, with the pair and the day.
        let stderr = text(&out.stderr);
        assert!(stderr.contains("warning: fx_convert:") && stderr.contains("PEN"), "{stderr}");

        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(target.join("run_results.json")).expect("run_results"))
                .expect("JSON");
        let statuses: Vec<(String, String)> = results["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| {
                (r["unique_id"].as_str().unwrap_or_default().into(), r["status"].as_str().unwrap_or_default().into())
            })
            .collect();
        assert!(
            statuses.iter().filter(|(id, _)| id.starts_with("model.")).all(|(_, s)| s == "success"),
            "{statuses:?}"
        );
        assert!(statuses.iter().all(|(_, s)| s != "fail" && s != "error"), "{statuses:?}");
        // Deals in currencies the sample rates do not cover are counted, not summed: a warning.
        assert!(statuses.contains(&(
            "test.opslake.accepted_values_fct_pipeline_bookings_cash_amounts_without_rate".into(),
            "warn".into()
        )));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(target.join("manifest.json")).expect("manifest"))
                .expect("JSON");
        assert_eq!(
            manifest["parent_map"]["model.opslake.fct_pipeline_bookings_cash"],
            serde_json::json!(["model.opslake.stg_crm__opportunities", "model.opslake.stg_finance__payments"])
        );

        // The Pipedrive sample's open deal of 9,999 EUR closing 2018-08-01, at the ECB sample's
        // latest rate on or before that day (1.4721 USD per EUR, 2007-12-31): 14,719.5279 USD.
        // Bookings: the won deals in USD (Salesforce's 24,120,000 and 220,000 and HubSpot's
        // 12,000.50, all from single-currency accounts, so in the connection's currency, and
        // Pipedrive's 1,500), 24,353,500.50; Salesforce's 18,490 PEN has no rate and is counted
        // in amounts_without_rate instead.
        let out = query_lake_csv(
            &lake,
            "SELECT CAST(pipeline AS VARCHAR) AS p, (SELECT CAST(sum(bookings) AS VARCHAR) FROM fct_pipeline_bookings_cash) AS b \
                 FROM fct_pipeline_bookings_cash WHERE month = DATE '2018-08-01'",
            &root,
        );
        assert_eq!(text(&out.stdout), "p,b\n14719.527900,24353500.500000\n", "{}", text(&out.stderr));
    }

    /// A company connects its tools one department at a time: the repository's pipelines build
    /// on a lake that holds none, or only some, of the departments their marts read.
    #[test]
    fn the_pipelines_build_on_a_lake_holding_any_subset_of_departments() {
        let root = opslake_testkit::repo_root();
        let subsets: [&[&str]; 3] = [&[], &["salesforce", "stripe"], &["bamboohr", "gusto"]];
        for tools in subsets {
            let tmp = tempfile::tempdir().expect("tempdir");
            let lake = tmp.path().join("lake").display().to_string();
            for tool in tools {
                let glob = format!("tests/golden/{tool}/**/input/*");
                let out = opslake(&["ingest", "--lake", &lake, "--tool", tool, "--path", &glob], &root);
                assert_eq!(out.status.code(), Some(0), "{tool}: {}{}", text(&out.stdout), text(&out.stderr));
            }
            let target = tmp.path().join("target").display().to_string();
            let out = opslake(&["build", "--lake", &lake, "--target", &target], &root);
            let stdout = text(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "with {tools:?}: {stdout}{}", text(&out.stderr));
            for mart in ["fct_marketing_cac", "fct_cross_dept_monthly", "customer_360"] {
                assert!(stdout.contains(&format!("OK    table model {mart}")), "with {tools:?}: {stdout}");
            }
        }
    }

    /// The cross-department mart places a payment by the email the payment records (Stripe's
    /// exports carry one per payment), and one that records none by its customer's email.
    #[test]
    fn a_payment_is_placed_by_its_own_email_and_one_without_by_its_customers() {
        let root = opslake_testkit::repo_root();
        let tmp = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, body: &str| {
            let path = tmp.path().join(name);
            std::fs::write(&path, body).expect("write");
            path.display().to_string()
        };
        let contacts = write(
            "contacts.csv",
            "Record ID,First Name,Last Name,Email,Last Modified Date,Country/Region\n\
             1,Old,Address,old@example.com,2026-01-01 00:00,Germany\n\
             2,New,Address,new@example.com,2026-01-01 00:00,France\n\
             3,Api,Buyer,api@example.com,2026-01-01 00:00,Japan\n",
        );
        // One customer paid twice and changed email in between: the customer keeps the later
        // email, each payment its own.
        let payments = write(
            "unified_payments.csv",
            "id,Created date (UTC),Amount,Amount Refunded,Currency,Converted Amount,Converted Amount Refunded,\
             Converted Currency,Fee,Status,Customer ID,Customer Email\n\
             ch_1,2026-01-05 10:00:00,10.00,0.00,usd,10.00,0.00,usd,0.30,Paid,cus_A, Old@Example.com\n\
             ch_2,2026-01-20 10:00:00,20.00,0.00,usd,20.00,0.00,usd,0.30,Paid,cus_A,new@example.com\n",
        );
        // Charges from the API without a receipt or billing email: one of a customer whose
        // email the customers list has, one of nobody.
        let charges = write(
            "charges.json",
            r#"{"object": "list", "data": [
                {"id": "ch_3", "object": "charge", "amount": 4000, "amount_refunded": 0, "captured": true,
                 "created": 1768000000, "currency": "usd", "customer": "cus_B", "paid": true, "status": "succeeded"},
                {"id": "ch_4", "object": "charge", "amount": 700, "amount_refunded": 0, "captured": true,
                 "created": 1768000000, "currency": "usd", "customer": null, "paid": true, "status": "succeeded"}]}"#,
        );
        let customers = write(
            "customers.json",
            r#"{"object": "list", "data": [{"id": "cus_B", "object": "customer", "email": "api@example.com",
                "delinquent": false, "invoice_prefix": "B", "created": 1767000000, "currency": "usd"}]}"#,
        );
        // The mart's sales side, which it needs to build: one deal won in the same month.
        let accounts = write(
            "Account.csv",
            "Id,IsDeleted,Name,BillingCity,BillingCountry,OwnerId\n001A,0,Acme,Berlin,Germany,005A\n",
        );
        let deals = write(
            "Opportunity.csv",
            "Id,IsDeleted,AccountId,Name,StageName,Amount,CloseDate,IsClosed,IsWon,ForecastCategoryName,\
             CurrencyIsoCode,CreatedDate\n006A,0,001A,Deal,Closed Won,100,2026-01-15,1,1,Closed,USD,2026-01-02 00:00:00\n",
        );
        let lake = tmp.path().join("lake").display().to_string();
        let mut args = vec!["ingest", "--lake", &lake];
        for path in [&contacts, &payments, &charges, &customers, &accounts, &deals] {
            args.extend(["--path", path.as_str()]);
        }
        let out = opslake(&args, &root);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let target = tmp.path().join("target").display().to_string();
        let out =
            opslake(&["build", "--lake", &lake, "--target", &target, "--select", "+fct_cross_dept_monthly"], &root);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let out = query_lake_csv(
            &lake,
            "SELECT CAST(month AS VARCHAR) AS month, country, CAST(cash_collected AS VARCHAR) AS cash, payments \
                 FROM fct_cross_dept_monthly ORDER BY country",
            &root,
        );
        assert_eq!(
            text(&out.stdout),
            "month,country,cash,payments\n2026-01-01,France,20.00,1\n2026-01-01,Germany,10.00,1\n\
             2026-01-01,Japan,40.00,1\n2026-01-01,Unknown,7.00,1\n",
            "{}",
            text(&out.stderr)
        );
    }
}

mod demo {
    use super::*;

    fn csv_query(project: &Path, sql: &str) -> String {
        let out = opslake(&["query", "--project", &project.display().to_string(), "--format", "csv", sql], project);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    #[test]
    fn the_demo_company_lands_from_every_tool_and_its_customers_resolve() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("demo");
        let out =
            opslake(&["demo", "--dir", &dir.display().to_string(), "--companies", "40", "--seed", "11"], tmp.path());
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        for title in
            ["Customers across billing, CRM and marketing", "Marketing CAC and ROAS by channel", "resolve to a CRM"]
        {
            assert!(stdout.contains(title), "{title} missing from:\n{stdout}");
        }

        // The generated exports are valid: nothing rejected, only the Google Ads report's totals
        // set apart.
        assert_eq!(
            csv_query(&dir, "SELECT action, count(*) AS n FROM _rejects GROUP BY action"),
            "action,n\nSUMMARY,2\n"
        );
        // Every tool of the demo wrote rows.
        let systems = csv_query(
            &dir,
            "SELECT DISTINCT source_system FROM (\
               SELECT source_system FROM crm.opportunities UNION ALL SELECT source_system FROM crm.people \
               UNION ALL SELECT source_system FROM finance.customers UNION ALL SELECT source_system FROM finance.payments \
               UNION ALL SELECT source_system FROM marketing.ad_performance_daily \
               UNION ALL SELECT source_system FROM marketing.email_activity UNION ALL SELECT source_system FROM ref.fx_rates \
               UNION ALL SELECT source_system FROM hr.employees UNION ALL SELECT source_system FROM hr.payroll_lines \
               UNION ALL SELECT source_system FROM hr.applications UNION ALL SELECT source_system FROM hr.departments) \
             ORDER BY 1",
        );
        assert_eq!(
            systems,
            "source_system\nbamboohr\nfx_rates\ngoogle_ads\ngreenhouse\ngusto\nhubspot\nlinkedin_ads\nmailchimp\nmeta_ads\npipedrive\nquickbooks\nsalesforce\nstripe\nworkday\nxero\n"
        );
        // The sales reps are employees: every CRM user (in Salesforce and Pipedrive) is an HR
        // record with the same work email.
        assert_eq!(
            csv_query(
                &dir,
                "SELECT count(DISTINCT u.email) AS reps, count(DISTINCT e.work_email) AS employed FROM crm.users u \
                 LEFT JOIN (SELECT DISTINCT work_email FROM hr.employees WHERE source_system = 'bamboohr') e ON e.work_email = u.email"
            ),
            "reps,employed\n4,4\n"
        );
        // Every paycheck adds up, and every hire came through Greenhouse.
        let payroll = csv_query(
            &dir,
            "SELECT count(*) AS paychecks, count(CASE WHEN gross = net + taxes + deductions THEN 1 END) AS adding_up FROM ( \
               SELECT payroll_id, employee_id, sum(CASE line_type WHEN 'GROSS_PAY' THEN amount END) AS gross, \
               sum(CASE line_type WHEN 'NET_PAY' THEN amount END) AS net, \
               sum(CASE line_type WHEN 'EMPLOYEE_TAX' THEN amount END) AS taxes, \
               sum(CASE line_type WHEN 'DEDUCTION' THEN amount END) AS deductions FROM hr.payroll_lines GROUP BY 1, 2)",
        );
        let counts: Vec<&str> = payroll.lines().nth(1).expect("row").split(',').collect();
        assert!(counts[0] != "0" && counts[0] == counts[1], "{payroll}");
        assert_eq!(
            csv_query(&dir, "SELECT count(*) AS hired FROM hr.applications WHERE status = 'HIRED'"),
            "hired\n12\n"
        );
        // At least 80% of billing customers resolve to a CRM organization (the self-serve buyers
        // sales never met do not).
        let resolved = csv_query(
            &dir,
            "SELECT CAST(count(crm_organization) * 1000 / count(*) AS BIGINT) AS permille FROM customer_360",
        );
        let permille: i64 = resolved.lines().nth(1).and_then(|l| l.parse().ok()).expect("a number");
        assert!((800..1000).contains(&permille), "{permille} per mille resolve");
        // The campaigns bring the leads that become customers: paid channels have spend and wins.
        let cac = csv_query(
            &dir,
            "SELECT channel FROM fct_marketing_cac WHERE spend > 0 AND customers_won > 0 AND cac IS NOT NULL ORDER BY channel",
        );
        assert_eq!(cac, "channel\nPAID_SEARCH\nPAID_SOCIAL\n");

        // The same seed writes the same exports; running again over an earlier demo is allowed.
        let first = std::fs::read(dir.join("exports/salesforce/Opportunity.csv")).expect("export");
        let out = opslake(
            &["demo", "--dir", &dir.display().to_string(), "--companies", "40", "--seed", "11", "--no-run"],
            tmp.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(dir.join("exports/salesforce/Opportunity.csv")).expect("export"), first);
        // A folder that is not a demo is never overwritten.
        std::fs::write(tmp.path().join("mine.txt"), "keep").expect("write");
        let out = opslake(&["demo", "--dir", &tmp.path().display().to_string(), "--no-run"], tmp.path());
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("not an earlier demo"), "{}", text(&out.stderr));
    }
}

mod functions {
    //! Every function docs/models.md lists, in the one session every command answers with.

    use super::*;

    /// The functions docs/models.md's table lists (its first column, up to the parenthesis).
    pub(super) fn documented() -> Vec<String> {
        let doc = std::fs::read_to_string(opslake_testkit::repo_root().join("docs/models.md")).expect("docs/models.md");
        let table = doc.split("| function | answers |").nth(1).expect("docs/models.md has the functions table");
        table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.trim_start_matches("| `").split('(').next().map(str::to_string))
            .collect()
    }

    /// One statement calling every documented function, each column true when the function
    /// answered as documented. A function listed without a case here fails the test.
    pub(super) fn statement() -> (String, usize) {
        let cases: &[(&str, &str)] = &[
            // A conversion to the same currency needs no rate; one without a rate is null.
            (
                "fx_convert",
                "fx_convert(CAST(12.5 AS DECIMAL(20, 2)), 'EUR', 'EUR', DATE '2024-01-05') = 12.5 \
                 AND fx_convert(CAST(1 AS DECIMAL(20, 2)), 'EUR', 'XTS', DATE '2024-01-05') IS NULL",
            ),
            ("normalize_email", "normalize_email(' Ann@Example.COM ') = 'ann@example.com'"),
            ("email_domain", "email_domain('mailto:Ann@Example.COM') = 'example.com'"),
            ("url_domain", "url_domain('https://www.Acme.com/pricing?x=1') = 'acme.com'"),
            ("parse_decimal", "parse_decimal('1,234.56') = 1234.56 AND parse_decimal('(12.00)') = -12"),
            ("parse_date", "parse_date('03/04/2024') = DATE '2024-03-04'"),
            (
                "parse_timestamp",
                "parse_timestamp('2024-03-04 10:30:00') = CAST('2024-03-04T10:30:00Z' AS TIMESTAMP WITH TIME ZONE)",
            ),
            (
                "max_by",
                "(SELECT max_by(v, o) FROM (VALUES ('a', 1), ('b', 3), ('c', 2), ('d', NULL)) AS t(v, o)) = 'b'",
            ),
            ("min_by", "(SELECT min_by(v, o) FROM (VALUES ('a', 1), ('b', 3), ('c', 1)) AS t(v, o)) = 'a'"),
        ];
        let documented = documented();
        assert!(documented.len() >= 9, "the functions table of docs/models.md: {documented:?}");
        let columns: Vec<String> = documented
            .iter()
            .map(|name| {
                let (_, case) = cases
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("docs/models.md lists {name}: add a case for it here"));
                format!("{case} AS {name}")
            })
            .collect();
        (format!("SELECT {}", columns.join(", ")), documented.len())
    }

    /// On a lake no file has fed yet: the functions need no table, and every contract table
    /// reads, empty, as SQL written for a whole company expects.
    #[test]
    fn every_documented_function_answers_in_opslake_query_on_an_empty_lake() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lake = tmp.path().join("lake").display().to_string();
        let (sql, n) = statement();
        let out = query_lake_csv(&lake, &sql, tmp.path());
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let stdout = text(&out.stdout);
        let row = stdout.lines().nth(1).unwrap_or_default();
        assert_eq!(row.split(',').filter(|v| *v == "true").count(), n, "{stdout}");
        let out = query_lake_csv(
            &lake,
            "SELECT (SELECT count(*) FROM marketing.ad_campaigns) + (SELECT count(*) FROM hr.employees) AS n",
            tmp.path(),
        );
        assert_eq!(text(&out.stdout), "n\n0\n", "{}", text(&out.stderr));
    }
}

mod serve {
    //! `opslake serve` with real clients: psql (simple protocol, its `\dt` catalog queries) and
    //! psycopg (extended protocol, server-side parameters), against the demo company's lake.

    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{Child, Stdio};

    use super::*;

    const PASSWORD: &str = "correct horse battery staple";
    const JOIN: &str = "SELECT o.name AS organization, c.source_system, c.email FROM crm.organizations o \
                        JOIN finance.customers c ON lower(split_part(c.email, '@', 2)) = lower(o.domain) \
                        ORDER BY 1, 2, 3";

    fn tool(var: &str) -> PathBuf {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{var} is not set: run the tests with scripts/test, which installs it"))
    }

    /// A running server, stopped when dropped.
    struct Server {
        child: Child,
        port: u16,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn hash(dir: &Path) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_opslake"))
            .args(["serve", "--hash-password"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawns");
        writeln!(child.stdin.take().expect("stdin"), "{PASSWORD}").expect("writes");
        let out = child.wait_with_output().expect("runs");
        assert!(out.status.success());
        text(&out.stdout).trim().to_string()
    }

    /// Starts `opslake serve` on a free port; the first line it prints names the port.
    fn start(project: &Path, secret: &str) -> Result<Server, String> {
        start_with(project, secret, &[])
    }

    fn start_with(project: &Path, secret: &str, envs: &[(&str, &str)]) -> Result<Server, String> {
        let mut all = vec![("OPSLAKE_SERVE_USER", "analyst"), ("OPSLAKE_SERVE_PASSWORD_HASH", secret)];
        all.extend_from_slice(envs);
        start_project(project, &all, &[], None)
    }

    /// `opslake serve` with only the users of the project's opslake.yml, unless `envs` adds one;
    /// its log goes to `log` when given (a verbose log would fill an undrained pipe).
    fn start_project(
        project: &Path,
        envs: &[(&str, &str)],
        args: &[&str],
        log: Option<&Path>,
    ) -> Result<Server, String> {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::piped(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_opslake"))
            .args(["serve", &project.display().to_string(), "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(project)
            .env_remove("OPSLAKE_SERVE_USER")
            .env_remove("OPSLAKE_SERVE_PASSWORD_HASH")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawns");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("reads");
        let port = line.split_whitespace().nth(2).and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Server { child, port }),
            None => {
                let out = child.wait_with_output().expect("exits");
                Err(format!("exit {:?}: {line}{}", out.status.code(), text(&out.stderr)))
            }
        }
    }

    fn psql(server: &Server, password: &str, sslmode: &str, args: &[&str]) -> Output {
        Command::new(tool("OPSLAKE_TEST_PSQL"))
            .arg(format!("host=127.0.0.1 port={} user=analyst dbname=opslake sslmode={sslmode}", server.port))
            .args(["--no-psqlrc", "-X", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs")
    }

    fn python(server: &Server, password: &str, sql: &str, params: &[&str]) -> Output {
        Command::new(tool("OPSLAKE_TEST_PYTHON"))
            .arg(opslake_testkit::repo_root().join("tests/python/pg_client.py"))
            .args([&server.port.to_string(), "analyst", password, sql])
            .args(params)
            .output()
            .expect("python runs")
    }

    #[test]
    #[ignore = "needs psql and psycopg: run with scripts/test"]
    fn psql_and_psycopg_log_in_list_tables_and_join_like_opslake_query() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let demo = tmp.path().join("demo");
        let out = opslake(&["demo", "--dir", &demo.display().to_string(), "--companies", "20"], tmp.path());
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        let server = start(&demo, &hash(tmp.path())).expect("serve starts");

        // A wrong password is refused, by both clients.
        let out = psql(&server, "wrong", "disable", &["-c", "SELECT 1"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(text(&out.stderr).contains("authentication failed"), "{}", text(&out.stderr));
        let out = python(&server, "wrong", "SELECT 1", &[]);
        assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));

        // \dt lists the canonical tables by schema, the models and the system tables.
        let out = psql(&server, PASSWORD, "disable", &["-c", "\\dt *.*"]);
        let listing = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{listing}{}", text(&out.stderr));
        for (schema, table) in
            [("crm", "organizations"), ("finance", "customers"), ("hr", "employees"), ("public", "customer_360")]
        {
            assert!(
                listing.lines().any(|l| l.split('|').map(str::trim).take(2).eq([schema, table])),
                "{schema}.{table} is not listed:\n{listing}"
            );
        }
        let out = psql(&server, PASSWORD, "disable", &["-c", "\\d crm.organizations"]);
        assert!(text(&out.stdout).contains("domain"), "{}{}", text(&out.stdout), text(&out.stderr));
        // What BI tools browse: information_schema.
        let columns = "SELECT column_name FROM information_schema.columns \
                       WHERE table_schema = 'crm' AND table_name = 'organizations' AND column_name = 'domain'";
        let out = python(&server, PASSWORD, columns, &[]);
        assert_eq!(text(&out.stdout).trim(), "domain", "{}", text(&out.stderr));

        // The same join through the server as through `opslake query`, row for row.
        let expected =
            text(&opslake(&["query", "--project", &demo.display().to_string(), "--format", "csv", JOIN], &demo).stdout);
        let expected: Vec<&str> = expected.lines().skip(1).collect();
        assert!(expected.len() >= 10, "the demo's customers should join its organizations: {expected:?}");
        let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-F", ",", "-c", JOIN]);
        assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), expected, "{}", text(&out.stderr));
        let out = python(&server, PASSWORD, JOIN, &[]);
        assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), expected, "{}", text(&out.stderr));
        let stripe: Vec<&str> = expected.iter().copied().filter(|l| l.contains(",stripe,")).collect();
        let filtered = JOIN.replace("ORDER BY", "WHERE c.source_system = %s ORDER BY");
        let out = python(&server, PASSWORD, &filtered, &["stripe"]);
        assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), stripe, "{}", text(&out.stderr));

        // Read-only: DDL and DML are refused with SQLSTATE 25006 and change nothing.
        for sql in
            ["CREATE TABLE x AS SELECT 1", "INSERT INTO crm.organizations (name) VALUES ('x')", "DROP TABLE crm.people"]
        {
            let out = psql(&server, PASSWORD, "disable", &["-c", sql]);
            assert_ne!(out.status.code(), Some(0), "{sql} ran");
            assert!(text(&out.stderr).contains("read-only"), "{sql}: {}", text(&out.stderr));
        }
        let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-c", "SELECT count(*) FROM crm.people"]);
        assert!(text(&out.stdout).trim().parse::<u64>().is_ok_and(|n| n > 0), "{}", text(&out.stderr));
    }

    #[test]
    #[ignore = "needs psql: run with scripts/test"]
    fn every_documented_function_answers_over_the_wire_as_in_opslake_query() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path().join("empty");
        std::fs::create_dir(&project).expect("mkdir");
        std::fs::write(project.join("opslake.yml"), "lake: ./lake\n").expect("config");
        let server = start(&project, &hash(tmp.path())).expect("serve starts");
        let (sql, n) = functions::statement();
        let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-F", ",", "-c", &sql]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert_eq!(stdout.trim().split(',').filter(|v| *v == "t").count(), n, "{stdout}");
        let out =
            psql(&server, PASSWORD, "disable", &["-A", "-t", "-c", "SELECT count(*) FROM marketing.ad_campaigns"]);
        assert_eq!(text(&out.stdout).trim(), "0", "{}", text(&out.stderr));
    }

    /// psycopg through tests/python/pg_attack.py: one JSON document out.
    fn attack(server: &Server, mode: &str, arg: Option<&str>, stdin: &serde_json::Value) -> serde_json::Value {
        let mut child = Command::new(tool("OPSLAKE_TEST_PYTHON"))
            .arg(opslake_testkit::repo_root().join("tests/python/pg_attack.py"))
            .args([mode, &server.port.to_string(), "analyst", PASSWORD])
            .args(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python runs");
        writeln!(child.stdin.take().expect("stdin"), "{stdin}").expect("writes");
        let out = child.wait_with_output().expect("runs");
        assert!(out.status.success(), "pg_attack {mode}: {}{}", text(&out.stdout), text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
    }

    /// Every file under `dir` with its bytes: what must not change.
    fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).expect("dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.insert(p.strip_prefix(dir).expect("under").to_path_buf(), std::fs::read(&p).expect("read"));
                }
            }
        }
        out
    }

    /// The demo company's project with `serve:` settings added to its opslake.yml.
    fn demo_project(tmp: &Path, serve: &str) -> PathBuf {
        let demo = tmp.join("demo");
        let out = opslake(&["demo", "--dir", &demo.display().to_string(), "--companies", "20"], tmp);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        if !serve.is_empty() {
            let config = demo.join("opslake.yml");
            let mut yml = std::fs::read_to_string(&config).expect("config");
            yml.push_str(&format!("serve:\n{serve}"));
            std::fs::write(&config, yml).expect("config");
        }
        demo
    }

    /// psql's `ERROR:  <SQLSTATE>: ...` with VERBOSITY verbose, for a refused statement.
    fn psql_sqlstate(server: &Server, sql: &str) -> Option<String> {
        let out = psql(server, PASSWORD, "disable", &["-v", "VERBOSITY=verbose", "-c", sql]);
        if out.status.code() == Some(0) {
            return None;
        }
        let err = text(&out.stderr);
        Some(
            err.lines()
                .find_map(|l| l.strip_prefix("ERROR:  ").and_then(|r| r.split(':').next()))
                .unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {err}"))
                .to_string(),
        )
    }

    /// Writes, file access and server settings through both protocols, cursors and
    /// multi-statement strings: each refused with its SQLSTATE, and every byte of the lake and
    /// of the project the same afterwards, with no file written anywhere.
    #[test]
    #[ignore = "needs psql and psycopg: run with scripts/test"]
    fn attacks_through_psql_and_psycopg_are_refused_and_change_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let demo = demo_project(tmp.path(), "");
        let outside = tmp.path().join("outside.csv");
        let before = files(&demo);
        let server = start(&demo, &hash(tmp.path())).expect("serve starts");
        let count = |server: &Server| {
            let out = psql(server, PASSWORD, "disable", &["-A", "-t", "-c", "SELECT count(*) FROM finance.payments"]);
            text(&out.stdout).trim().parse::<u64>().unwrap_or_else(|_| panic!("{}", text(&out.stderr)))
        };
        let payments = count(&server);
        assert!(payments > 0);

        let copy_out = format!("COPY (SELECT 1 AS x) TO '{}'", outside.display());
        let writes = [
            "BEGIN; DECLARE c CURSOR FOR INSERT INTO finance.payments SELECT * FROM finance.payments; FETCH ALL FROM c; COMMIT;",
            "DECLARE c CURSOR FOR DELETE FROM crm.people RETURNING *",
            "COPY (SELECT 1 AS x) TO 'x.csv'",
            &copy_out,
            "INSERT INTO finance.payments SELECT * FROM finance.payments",
            "DELETE FROM crm.people",
            "UPDATE crm.people SET email = NULL",
            "TRUNCATE crm.people",
            "WITH w AS (DELETE FROM crm.people RETURNING *) SELECT * FROM w",
            "SELECT * INTO stolen FROM crm.people",
            "CREATE TABLE stolen AS SELECT * FROM crm.people",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE crm.people",
            "ALTER TABLE crm.people ADD COLUMN x INT",
            "EXPLAIN ANALYZE INSERT INTO finance.payments SELECT * FROM finance.payments",
            "PREPARE p AS INSERT INTO finance.payments SELECT * FROM finance.payments",
            "SELECT 1; DROP TABLE crm.people",
            "SELECT * FROM read_csv('/etc/passwd')",
        ];
        let settings = ["SET datafusion.execution.batch_size = 1", "SET ROLE postgres", "RESET ALL"];
        for sql in writes {
            assert_eq!(psql_sqlstate(&server, sql).as_deref(), Some("25006"), "psql: {sql}");
        }
        for sql in settings {
            assert_eq!(psql_sqlstate(&server, sql).as_deref(), Some("42501"), "psql: {sql}");
        }
        // Not parsed by the Postgres parser: refused as a syntax error (DataFusion's own parser,
        // which would take it, never sees it).
        for sql in [
            "COPY finance.payments TO 'payments.parquet' STORED AS PARQUET",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'",
        ] {
            assert_eq!(psql_sqlstate(&server, sql).as_deref(), Some("42601"), "psql: {sql}");
        }
        // Not planned means not run: a table that is no table, or a file as a table.
        for sql in ["SELECT * FROM '/etc/passwd'", "SELECT * FROM nowhere"] {
            assert_eq!(psql_sqlstate(&server, sql).as_deref(), Some("42000"), "psql: {sql}");
        }

        // The extended protocol: the same statements as prepared ones, and a second statement
        // hidden behind a first.
        let mut extended: Vec<&str> = writes.iter().copied().filter(|s| !s.contains(';')).collect();
        extended.extend(settings);
        extended.push("SELECT 1; DELETE FROM crm.people");
        let results = attack(&server, "extended", None, &serde_json::json!(extended));
        for r in results.as_array().expect("list") {
            let (sql, code) = (r["sql"].as_str().expect("sql"), r["sqlstate"].as_str());
            let expected = if settings.contains(&sql) {
                "42501"
            } else if sql.contains(';') {
                "42601"
            } else {
                "25006"
            };
            assert_eq!(code, Some(expected), "psycopg prepared: {sql}: {r}");
        }
        // Server-side cursors over writes, as psycopg declares them; a read-only cursor works
        // (through psql: psycopg's own cursor of a read crashes psycopg's C loader over
        // datafusion-postgres, an interoperability gap, not a security one).
        let cursors = serde_json::json!([
            "INSERT INTO finance.payments SELECT * FROM finance.payments RETURNING *",
            "DELETE FROM crm.people RETURNING *"
        ]);
        let results = attack(&server, "cursor", None, &cursors);
        let codes: Vec<Option<&str>> =
            results.as_array().expect("list").iter().map(|r| r["sqlstate"].as_str()).collect();
        assert_eq!(codes, [Some("25006"), Some("25006")], "{results}");
        let read = "BEGIN; DECLARE r CURSOR FOR SELECT 7 AS n; FETCH ALL FROM r; COMMIT;";
        let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-c", read]);
        assert!(text(&out.stdout).lines().any(|l| l == "7"), "{}{}", text(&out.stdout), text(&out.stderr));

        // A SET stays in its connection; server settings stay the server's.
        let iso = attack(&server, "isolation", None, &serde_json::json!(null));
        assert_eq!(iso["a"]["set_server_setting"], "42501", "{iso}");
        assert_eq!(iso["a"]["set_time_zone"], serde_json::Value::Null, "{iso}");
        assert_eq!(iso["a"]["time_zone"], serde_json::json!([["Asia/Tokyo"]]), "{iso}");
        assert_ne!(iso["b"]["time_zone"], iso["a"]["time_zone"], "{iso}");
        assert_eq!(iso["a"]["heavy"], "57014", "a's 1 ms statement_timeout: {iso}");
        assert_eq!(iso["b"]["light_rows"], serde_json::json!([["1000"]]), "b keeps the server's: {iso}");

        // Reads still work; nothing changed, and nothing was written anywhere.
        assert_eq!(count(&server), payments);
        drop(server);
        assert!(!outside.exists(), "COPY wrote outside the project");
        let after = files(&demo);
        let changed: Vec<&PathBuf> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert!(changed.is_empty(), "files changed, appeared or went: {changed:?}");
    }

    /// The connection cap: the one over it is refused with 53300 and a seat freed is taken.
    /// Then 200 connections at once running queries too heavy for their limits: each fails
    /// cleanly (memory 53200, time 57014) or finishes, none is dropped, a new connection answers
    /// while they run and after, and the server's peak RSS stays near its memory bound.
    #[test]
    #[ignore = "needs psql and psycopg: run with scripts/test"]
    fn limits_hold_under_two_hundred_heavy_connections() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let demo = demo_project(tmp.path(), "  max_connections: 5\n");
        let secret = hash(tmp.path());
        let server = start(&demo, &secret).expect("serve starts");
        let cap = attack(&server, "cap", Some("5"), &serde_json::json!(null));
        assert_eq!(cap["held"], 5, "{cap}");
        // psycopg gives no SQLSTATE for a refused connection; the FATAL message is 53300's.
        assert!(
            cap["extra_message"].as_str().is_some_and(
                |m| m.contains("FATAL:  sorry, too many clients already") && m.contains("max_connections is 5")
            ),
            "{cap}"
        );
        assert_eq!(cap["after_close"], serde_json::Value::Null, "{cap}");
        drop(server);

        let config = demo.join("opslake.yml");
        let yml = std::fs::read_to_string(&config).expect("config").replace(
            "  max_connections: 5\n",
            "  max_connections: 250\n  query_memory_mib: 64\n  total_memory_mib: 512\n  statement_timeout_seconds: 5\n",
        );
        std::fs::write(&config, yml).expect("config");
        let server = start(&demo, &secret).expect("serve starts");
        let load = attack(&server, "load", Some("200"), &serde_json::json!(null));
        assert_eq!(load["alone"], "53200", "a query over serve.query_memory_mib: {load}");
        let outcomes = load["outcomes"].as_object().expect("outcomes");
        for (outcome, n) in outcomes {
            assert!(
                ["ok", "53200", "57014"].contains(&outcome.as_str()),
                "{n} connections ended with {outcome}: {load}"
            );
        }
        let limited: u64 = ["53200", "57014"].iter().filter_map(|k| outcomes.get(*k)).filter_map(|v| v.as_u64()).sum();
        assert!(limited >= 100, "the heavy queries should meet their limits: {load}");
        assert_eq!(load["unfinished"], 0, "{load}");
        for probe in ["probe_during", "probe_after"] {
            assert_eq!(load[probe]["rows"], serde_json::json!([["1"]]), "{probe}: {load}");
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmHWM");
        eprintln!("200 heavy connections: {load}; server peak RSS {} MiB", peak_kib / 1024);
        // The pools bound working memory (512 MiB); the rest is the process and its sessions.
        assert!(peak_kib / 1024 < 512 + 768, "peak RSS {} MiB", peak_kib / 1024);
    }

    /// A user's secret from a file or an environment variable named in opslake.yml; a missing
    /// one stops the server naming where it looked; no secret in any log line, also at -vv in
    /// JSON; an inline secret in a file git tracks is a warning of `opslake validate`.
    #[test]
    #[ignore = "needs psql: run with scripts/test"]
    fn secrets_come_from_a_file_or_the_environment_and_are_never_logged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path();
        let secret = hash(project);
        std::fs::create_dir(project.join("secrets")).expect("dir");
        std::fs::write(project.join("secrets/analyst.hash"), format!("{secret}\n")).expect("secret file");
        let config = |user: &str| format!("serve:\n  users:\n    - {{name: analyst, {user}}}\n");

        std::fs::write(project.join("opslake.yml"), config("password_hash_file: secrets/analyst.hash"))
            .expect("config");
        let server = start_project(project, &[], &[], None).expect("serve starts with the file's secret");
        let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-c", "SELECT 1"]);
        assert_eq!(text(&out.stdout).trim(), "1", "{}", text(&out.stderr));
        drop(server);

        std::fs::write(project.join("opslake.yml"), config("password_hash_env: ANALYST_HASH")).expect("config");
        let err = start_project(project, &[], &[], None).err().expect("no secret, no server");
        assert!(err.contains("password_hash_env ANALYST_HASH is not set"), "{err}");
        let log_file = project.join("serve.log");
        let server =
            start_project(project, &[("ANALYST_HASH", &secret)], &["-vv", "--log-format", "json"], Some(&log_file))
                .expect("serve starts with the environment's secret");
        for password in [PASSWORD, "wrong"] {
            psql(&server, password, "disable", &["-c", "SELECT 1"]);
        }
        drop(server);
        let log = std::fs::read_to_string(&log_file).expect("log");
        assert!(log.contains("connection"), "the -vv log has the connections: {log}");
        let (_, parts) = secret.split_once(':').expect("iterations:salt$key");
        for part in parts.split('$').chain([secret.as_str(), PASSWORD]) {
            assert!(!log.contains(part), "the log holds a secret ({part}):\n{log}");
        }

        // Inline, in a file git tracks: a warning that says where to keep it instead.
        std::fs::write(project.join("opslake.yml"), config(&format!("password_hash: \"{secret}\""))).expect("config");
        for args in [&["init", "-q"][..], &["add", "opslake.yml"]] {
            assert!(Command::new("git").args(args).current_dir(project).status().expect("git").success());
        }
        let out = opslake(&["validate"], project);
        let stderr = text(&out.stderr);
        assert!(stderr.contains("password_hash is written in a file git tracks"), "{stderr}");
        assert!(!stderr.contains(&secret), "{stderr}");
    }

    /// A query that panics fails alone: its client gets an error, the server goes on.
    #[test]
    #[ignore = "needs psql: run with scripts/test"]
    fn a_query_that_panics_leaves_the_server_serving() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path();
        let mut server =
            start_with(project, &hash(project), &[("OPSLAKE_SERVE_TEST_PANIC", "1")]).expect("serve starts");
        for _ in 0..2 {
            let out =
                psql(&server, PASSWORD, "disable", &["-v", "VERBOSITY=verbose", "-c", "SELECT opslake_test_panic()"]);
            assert_ne!(out.status.code(), Some(0));
            assert!(text(&out.stderr).contains("XX000"), "{}", text(&out.stderr));
            let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-c", "SELECT 41 + 1"]);
            assert_eq!(text(&out.stdout).trim(), "42", "{}", text(&out.stderr));
        }
        assert!(server.child.try_wait().expect("status").is_none(), "the server exited");
    }

    #[test]
    #[ignore = "needs psql and openssl: run with scripts/test"]
    fn tls_is_offered_with_a_certificate_and_a_bad_one_stops_the_server() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path();
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost"])
            .current_dir(project)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let secret = hash(project);
        std::fs::write(project.join("opslake.yml"), "serve:\n  tls: {cert: cert.pem, key: key.pem}\n").expect("config");
        let server = start(project, &secret).expect("serve starts with TLS");
        let out = psql(&server, PASSWORD, "require", &["-c", "\\conninfo"]);
        assert!(text(&out.stdout).contains("SSL connection"), "{}{}", text(&out.stdout), text(&out.stderr));
        // Offered, not required: plaintext is served.
        let out = psql(&server, PASSWORD, "disable", &["-A", "-t", "-c", "SELECT 1"]);
        assert_eq!(text(&out.stdout).trim(), "1", "{}", text(&out.stderr));
        drop(server);

        // Required: a plaintext client is refused before it authenticates.
        std::fs::write(project.join("opslake.yml"), "serve:\n  tls: {cert: cert.pem, key: key.pem, required: true}\n")
            .expect("config");
        let server = start(project, &secret).expect("serve starts with TLS required");
        let out = psql(&server, PASSWORD, "disable", &["-c", "SELECT 1"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(text(&out.stderr).contains("requires TLS"), "{}", text(&out.stderr));
        let out = psql(&server, PASSWORD, "require", &["-A", "-t", "-c", "SELECT 1"]);
        assert_eq!(text(&out.stdout).trim(), "1", "{}", text(&out.stderr));
        drop(server);

        // A key that does not match, or is not there: no fallback to plaintext.
        std::fs::write(project.join("key.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .expect("key");
        let err = start(project, &secret).err().expect("serve must not start");
        assert!(err.starts_with("exit Some(3)") && err.contains("not starting without TLS"), "{err}");
    }
}

mod run {
    //! `opslake run` as a scheduler sees it: exit codes by failure class, `--fail-fast`, one
    //! `_runs` record per run that says what happened, and the snapshot published only when
    //! nothing failed.

    use super::*;

    /// The last `_runs` row, as JSON.
    fn last_run(project: &Path) -> serde_json::Value {
        let out = opslake(
            &[
                "query",
                "--project",
                &project.display().to_string(),
                "--format",
                "json",
                "SELECT command, status, failed_step, exit_code, models_built, models_failed, tests_passed, \
                 tests_failed, files_failed, snapshot_id, message, \
                 (SELECT count(*) FROM _runs r2 WHERE r2.run_id = r.run_id) AS rows_of_run \
                 FROM _runs r ORDER BY started_at DESC, ended_at DESC NULLS LAST LIMIT 1",
            ],
            project,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_str(text(&out.stdout).trim()).expect("one JSON row")
    }

    #[test]
    fn exit_codes_fail_fast_and_the_run_record_say_what_failed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let demo = tmp.path().join("demo");
        let dir = demo.display().to_string();
        let out = opslake(&["demo", "--dir", &dir, "--companies", "12", "--no-run"], tmp.path());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let config = demo.join("opslake.yml");
        let yml = std::fs::read_to_string(&config).expect("config");
        std::fs::write(&config, format!("{yml}\npublish:\n  out: snapshot\n")).expect("config");

        // A file that fails: with --fail-fast nothing is built or published, exit 5.
        let broken = demo.join("exports/stripe/zz_broken.csv");
        std::fs::write(&broken, "not,a,stripe,export\n1,2,3,4\n").expect("broken file");
        let out = opslake(&["run", &dir, "--fail-fast"], tmp.path());
        assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
        let run = last_run(&demo);
        assert_eq!(run["command"], "run");
        assert_eq!(run["status"], "FAILED");
        assert_eq!(run["failed_step"], "ingest");
        assert_eq!(run["exit_code"], 5);
        assert_eq!(run["files_failed"], 1);
        assert!(run["message"].as_str().is_some_and(|m| m.contains("zz_broken.csv")), "{run}");
        assert!(run.get("models_built").is_none_or(serde_json::Value::is_null), "built despite --fail-fast: {run}");
        assert_eq!(run["rows_of_run"], 2, "one RUNNING and one final row: {run}");
        assert!(!demo.join("snapshot").exists());

        // Without it the models build on what landed; still exit 5, still no snapshot.
        let out = opslake(&["run", &dir], tmp.path());
        assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
        let run = last_run(&demo);
        assert_eq!(run["failed_step"], "ingest");
        assert!(run["models_built"].as_i64().is_some_and(|n| n >= 5), "{run}");
        assert_eq!(run["models_failed"], 0);
        assert!(text(&out.stderr).contains("not publishing"), "{}", text(&out.stderr));
        assert!(!demo.join("snapshot").exists());

        // A model that errors: exit 6, the build is the failed step.
        std::fs::remove_file(&broken).expect("rm");
        let model = demo.join("pipelines/models/marts/broken_mart.sql");
        std::fs::write(&model, "select no_such_column from {{ ref('customer_360') }}\n").expect("model");
        let out = opslake(&["run", &dir], tmp.path());
        assert_eq!(out.status.code(), Some(6), "{}{}", text(&out.stdout), text(&out.stderr));
        let run = last_run(&demo);
        assert_eq!((run["failed_step"].as_str(), run["exit_code"].as_i64()), (Some("build"), Some(6)), "{run}");
        assert_eq!(run["models_failed"], 1);

        // All well: exit 0, the snapshot is published and the record names it.
        std::fs::remove_file(&model).expect("rm");
        let out = opslake(&["run", &dir, "--log-format", "json"], tmp.path());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let run = last_run(&demo);
        assert_eq!((run["status"].as_str(), run["exit_code"].as_i64()), (Some("SUCCEEDED"), Some(0)), "{run}");
        assert!(run.get("failed_step").is_none_or(serde_json::Value::is_null));
        assert_eq!(run["tests_failed"], 0);
        let snapshot = run["snapshot_id"].as_str().expect("a snapshot id");
        let manifest = std::fs::read_to_string(demo.join("snapshot/manifest.json")).expect("manifest");
        assert!(manifest.contains(snapshot), "{manifest}");
        // JSON logs: every stderr line is an object; the models' events are there.
        let stderr = text(&out.stderr);
        let events: Vec<serde_json::Value> =
            stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        assert!(events.iter().any(|e| e["message"] == "node done" && e["node"] == "model.customer_360"));
        assert!(events.iter().any(|e| e["message"] == "build done"));
    }
}

mod snapshots {
    //! What users read, pinned: help, error messages and outputs. `cargo insta review` (or
    //! `INSTA_UPDATE=always`) accepts a deliberate change.

    use insta_cmd::{assert_cmd_snapshot, get_cargo_bin};

    use super::*;

    fn cmd(dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(get_cargo_bin("opslake"));
        cmd.args(args)
            .current_dir(dir)
            .env_remove("OPSLAKE_LAKE")
            .env_remove("OPSLAKE_SERVE_USER")
            .env_remove("OPSLAKE_SERVE_PASSWORD_HASH")
            .env_remove("OPSLAKE_LOG_FORMAT")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Run ids, temporary paths and timings change every run.
    fn settings(tmp: &Path) -> insta::Settings {
        let mut s = insta::Settings::clone_current();
        s.add_filter(&regex_escape(&tmp.display().to_string()), "[TMP]");
        s.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[RUN_ID]");
        s.add_filter(r"\d+\.\d+s\b", "[SECS]");
        s.add_filter(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?", "[TIME]");
        s.add_filter(r"opslake \d+\.\d+\.\d+", "opslake [VERSION]");
        s
    }

    fn regex_escape(text: &str) -> String {
        text.chars().fold(String::new(), |mut out, c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                out.push('\\');
            }
            out.push(c);
            out
        })
    }

    #[test]
    fn help() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _guard = settings(tmp.path()).bind_to_scope();
        assert_cmd_snapshot!("help", cmd(tmp.path(), &["--help"]));
        assert_cmd_snapshot!("help_run", cmd(tmp.path(), &["run", "--help"]));
        assert_cmd_snapshot!("help_query", cmd(tmp.path(), &["query", "--help"]));
        assert_cmd_snapshot!("help_serve", cmd(tmp.path(), &["serve", "--help"]));
    }

    #[test]
    fn errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _guard = settings(tmp.path()).bind_to_scope();
        assert_cmd_snapshot!("error_unknown_command", cmd(tmp.path(), &["frobnicate"]));
        assert_cmd_snapshot!("error_run_without_connections", cmd(tmp.path(), &["run"]));
        assert_cmd_snapshot!("error_serve_without_users", cmd(tmp.path(), &["serve"]));
        assert_cmd_snapshot!("error_query_bad_sql", cmd(tmp.path(), &["query", "SELEC 1"]));
        assert_cmd_snapshot!("error_query_unknown_table", cmd(tmp.path(), &["query", "SELECT * FROM crm.peeple"]));
        std::fs::write(
            tmp.path().join("opslake.yml"),
            "serve:\n  listen: localhost\n  users:\n    - {name: bi, password_hash: SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5}\n",
        )
        .expect("config");
        assert_cmd_snapshot!("error_validate_serve_config", cmd(tmp.path(), &["validate"]));
        assert_cmd_snapshot!(
            "error_csv_takes_one_statement",
            cmd(tmp.path(), &["query", "--format", "csv", "SELECT 1; SELECT 2"])
        );
    }

    #[test]
    fn outputs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _guard = settings(tmp.path()).bind_to_scope();
        let sample = opslake_testkit::repo_root().join(
            "tests/golden/stripe/dashboard_unified_payments/thousands_separators_refunds_and_conversion/input/unified_payments.csv",
        );
        std::fs::copy(sample, tmp.path().join("unified_payments.csv")).expect("copies");
        assert_cmd_snapshot!(
            "ingest_summary",
            cmd(tmp.path(), &["ingest", "--tool", "stripe", "--path", "unified_payments.csv", "--lake", "lake"])
        );
        let sql = "SELECT currency, count(*) AS payments, sum(amount) AS amount FROM finance.payments \
                   GROUP BY currency ORDER BY currency";
        assert_cmd_snapshot!("query_table", cmd(tmp.path(), &["query", "--lake", "lake", sql]));
        assert_cmd_snapshot!("query_csv", cmd(tmp.path(), &["query", "--lake", "lake", "--format", "csv", sql]));
        assert_cmd_snapshot!("query_json", cmd(tmp.path(), &["query", "--lake", "lake", "--format", "json", sql]));
        assert_cmd_snapshot!("runs", cmd(tmp.path(), &["runs", "--lake", "lake"]));
    }
}
