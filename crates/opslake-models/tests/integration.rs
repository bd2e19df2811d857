//! Integration tests of the models engine against a real lake.

/// The sqllogictest suite of the engine: `tests/slt/models/*.slt`, each file in a fresh
/// project and lake. Besides SQL (run against the lake, models included), records may be
/// commands of the harness:
///
/// - `FILE <path>` and the file's lines: writes a file of the pipelines project;
/// - `REMOVE <path>`: deletes one;
/// - `INGEST <tool> <dir>`: ingests the files of a directory of the repository into the lake;
/// - `BUILD [args]`, `TEST [args]`: `opslake build` / `opslake test` with `--select`,
///   `--exclude`, `--full-refresh`, `--no-tests` and `--vars '{"k": "v"}'`. As a `query`, one
///   row per node: kind, name, status and rows written (models) or offending rows (tests).
///   An invalid project or selector is an error (`statement error <message>`);
/// - `MESSAGES`: fails with the messages of the last build's nodes that did not succeed or
///   pass (for `statement error <regex>`), succeeds when there are none.
mod slt {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use arrow::array::RecordBatch;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use async_trait::async_trait;
    use opslake_config::StorageLocation;
    use opslake_ingest::{Connection, IngestOptions, Input};
    use opslake_lake::Lake;
    use opslake_lake::lock::LakeLock;
    use opslake_models::Project;
    use opslake_models::execute::{BuildOptions, Status};
    use opslake_schema::Contract;
    use opslake_tools::ToolRegistry;
    use opslake_tools::udf::UdfContext;
    use sqllogictest::{DBOutput, DefaultColumnType};

    #[derive(Debug)]
    struct HarnessError(String);

    impl std::fmt::Display for HarnessError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for HarnessError {}

    fn err(e: impl std::fmt::Display) -> HarnessError {
        HarnessError(e.to_string())
    }

    struct ModelsDb {
        pipelines: PathBuf,
        lake_dir: PathBuf,
        target: PathBuf,
        contract: Contract,
        messages: Vec<String>,
    }

    type Output = DBOutput<DefaultColumnType>;

    impl ModelsDb {
        fn lake(&self) -> Result<Lake, HarnessError> {
            Lake::open(&StorageLocation::Local(self.lake_dir.clone())).map_err(err)
        }

        /// As `opslake build` has them in a project with the default settings (USD, UTC).
        fn udf() -> UdfContext {
            opslake_models::model_udfs(&opslake_config::ProjectConfig::default())
        }

        async fn ingest(&self, args: &str) -> Result<Output, HarnessError> {
            let (tool, dir) = args.split_once(' ').ok_or_else(|| err("INGEST <tool> <dir>"))?;
            let dir = opslake_testkit::repo_root().join(dir.trim());
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| err(format!("{}: {e}", dir.display())))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            files.sort();
            let inputs: Vec<Input> = files
                .into_iter()
                .map(|path| {
                    Input::new(
                        path,
                        Connection {
                            tool: Some(tool.to_string()),
                            currency: Some("USD".into()),
                            ..Connection::named("test")
                        },
                    )
                })
                .collect();
            let (registry, _) = ToolRegistry::load(None, &self.contract).map_err(err)?;
            let report = opslake_ingest::ingest(
                &self.lake()?,
                &self.contract,
                &registry.tools(),
                &inputs,
                &IngestOptions::default(),
                &mut |_| {},
            )
            .await
            .map_err(err)?;
            Ok(DBOutput::StatementComplete(report.rows_read()))
        }

        async fn build(&mut self, models: bool, args: &str) -> Result<Output, HarnessError> {
            let mut options = BuildOptions {
                select: Vec::new(),
                exclude: Vec::new(),
                full_refresh: false,
                threads: 2,
                run_models: models,
                run_tests: true,
                target_dir: self.target.clone(),
                udf: Self::udf(),
                fail_fast: false,
            };
            let mut vars = BTreeMap::new();
            let mut words = args.split_whitespace().peekable();
            let mut list = None;
            while let Some(w) = words.next() {
                match w {
                    "--select" | "-s" => list = Some(true),
                    "--exclude" => list = Some(false),
                    "--full-refresh" => options.full_refresh = true,
                    "--no-tests" => options.run_tests = false,
                    "--fail-fast" => options.fail_fast = true,
                    "--threads" => options.threads = words.next().and_then(|n| n.parse().ok()).unwrap_or(1),
                    "--vars" => {
                        let json: String = words.by_ref().collect::<Vec<_>>().join(" ");
                        vars = serde_json::from_str(json.trim_matches('\'')).map_err(err)?;
                    }
                    s if list == Some(true) => options.select.push(s.to_string()),
                    s if list == Some(false) => options.exclude.push(s.to_string()),
                    other => return Err(err(format!("BUILD does not take '{other}'"))),
                }
            }
            let (project, problems) = Project::load(&self.pipelines, &self.contract, vars).map_err(err)?;
            if !problems.is_empty() {
                let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return Err(err(text.join("\n")));
            }
            let lake = self.lake()?;
            let mut lock =
                LakeLock::acquire(&lake, "slt", "build", std::time::Duration::from_secs(60)).await.map_err(err)?;
            let report =
                opslake_models::execute::build(&project, &lake, &self.contract, &options, &mut lock, &|_| {}).await;
            lock.release().await.map_err(err)?;
            let report = report.map_err(err)?;
            self.messages = report
                .results
                .iter()
                .filter(|r| !matches!(r.status, Status::Success | Status::Pass))
                .map(|r| format!("{}: {}", r.name, r.message))
                .collect();
            opslake_models::artifacts::write(&self.target, &project, &report.invocation_id, Some(&report))
                .map_err(err)?;
            let rows = report
                .results
                .iter()
                .map(|r| {
                    let status = serde_json::to_value(r.status).map_err(err)?;
                    let count = r.rows_affected.or(r.failures).map_or("NULL".to_string(), |n| n.to_string());
                    let status = status.as_str().unwrap_or_default().to_string();
                    Ok(vec![r.resource_type.to_string(), r.name.clone(), status, count])
                })
                .collect::<Result<Vec<_>, HarnessError>>()?;
            Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; 4], rows })
        }

        async fn sql(&self, sql: &str) -> Result<Output, HarnessError> {
            let lake = self.lake()?;
            let ctx = opslake_models::session::open(&lake, &self.contract, &Self::udf(), None).await.map_err(err)?.ctx;
            let df = ctx.sql(sql).await.map_err(err)?;
            let batches = df.collect().await.map_err(err)?;
            rows(&batches)
        }
    }

    fn rows(batches: &[RecordBatch]) -> Result<Output, HarnessError> {
        let options = FormatOptions::default().with_null("NULL");
        let mut out = Vec::new();
        let mut width = 0;
        for b in batches {
            width = b.num_columns();
            let formatters: Vec<ArrayFormatter<'_>> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            for i in 0..b.num_rows() {
                out.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; width], rows: out })
    }

    #[async_trait]
    impl sqllogictest::AsyncDB for ModelsDb {
        type Error = HarnessError;
        type ColumnType = DefaultColumnType;

        async fn run(&mut self, sql: &str) -> Result<Output, HarnessError> {
            let (first, rest) = sql.split_once('\n').unwrap_or((sql, ""));
            let (command, args) = first.trim().split_once(' ').unwrap_or((first.trim(), ""));
            match command {
                "FILE" => {
                    let path = self.pipelines.join(args.trim());
                    std::fs::create_dir_all(path.parent().expect("a file has a parent")).map_err(err)?;
                    std::fs::write(&path, format!("{rest}\n")).map_err(err)?;
                    Ok(DBOutput::StatementComplete(0))
                }
                "REMOVE" => {
                    std::fs::remove_file(self.pipelines.join(args.trim())).map_err(err)?;
                    Ok(DBOutput::StatementComplete(0))
                }
                "INGEST" => self.ingest(args).await,
                "BUILD" => self.build(true, args).await,
                "TEST" => self.build(false, args).await,
                "MESSAGES" if self.messages.is_empty() => Ok(DBOutput::StatementComplete(0)),
                "MESSAGES" => Err(err(self.messages.join("\n"))),
                _ => self.sql(sql).await,
            }
        }

        async fn shutdown(&mut self) {}

        fn engine_name(&self) -> &str {
            "opslake-models"
        }
    }

    async fn run_file(path: &Path) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().to_path_buf();
        let mut runner = sqllogictest::Runner::new(move || {
            let root = root.clone();
            async move {
                Ok(ModelsDb {
                    pipelines: root.join("pipelines"),
                    lake_dir: root.join("lake"),
                    target: root.join("target"),
                    contract: Contract::embedded().expect("the embedded contract loads"),
                    messages: Vec::new(),
                })
            }
        });
        runner.with_column_validator(sqllogictest::default_column_validator);
        runner.run_file_async(path).await.map_err(|e| e.display(true).to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engine_suite() {
        let dir = opslake_testkit::repo_root().join("tests/slt/models");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("tests/slt/models")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "slt"))
            .collect();
        files.sort();
        assert!(files.len() >= 5, "slt files: {files:?}");
        let mut failures = Vec::new();
        for f in &files {
            if let Err(e) = run_file(f).await {
                failures.push(format!("{}:\n{e}", f.display()));
            }
        }
        assert!(failures.is_empty(), "{} of {} files failed:\n{}", failures.len(), files.len(), failures.join("\n\n"));
    }
}
