//! opslake.yml and the contract's files, invalid on purpose: every problem is found where it is.

/// `tests/config/invalid/*.yml`: each file's first line `# error: <text>` names the message
/// its problem must contain. `config_*` are opslake.yml files, `contract_*` canonical table
/// files (with the repository envelope), `envelope_*` envelope files.
mod invalid_files {
    use std::collections::BTreeSet;

    use opslake_config::ProjectConfig;
    use opslake_schema::{Contract, Problem, contract::ENVELOPE_FILE, embedded};

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
