//! The lake's guarantees with real processes: one writer, crash safety, run records, time
//! travel, publish and maintain. Every test ingests the repository's own project (the golden
//! samples of opslake.yml) into a lake of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opslake_config::StorageLocation;
use opslake_lake::Lake;
use opslake_schema::Contract;

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opslake"));
    cmd.args(args).current_dir(opslake_testkit::repo_root()).env_remove("OPSLAKE_LAKE");
    cmd
}

fn opslake(args: &[&str]) -> Output {
    command(args).output().expect("the opslake binary runs")
}

fn spawn(args: &[&str]) -> Child {
    spawn_command(command(args))
}

fn spawn_command(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawns")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ingest_args(lake: &Path) -> Vec<String> {
    vec!["ingest".into(), ".".into(), "--lake".into(), lake.display().to_string()]
}

fn ingest(lake: &Path, extra: &[&str]) -> Output {
    let mut args = ingest_args(lake);
    args.extend(extra.iter().map(|s| s.to_string()));
    opslake(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn lake_at(dir: &Path) -> Lake {
    Lake::open(&StorageLocation::Local(dir.to_path_buf())).expect("lake")
}

/// A lake built by one uninterrupted run: what every other run must converge to.
fn reference(dir: &Path) -> PathBuf {
    let lake = dir.join("reference");
    let out = ingest(&lake, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    lake
}

/// Every table of the contract that exists opens at a committed version and reads whole.
async fn every_table_reads(dir: &Path) {
    let lake = lake_at(dir);
    let contract = Contract::embedded().expect("contract");
    let ctx = opslake_lake::read::context();
    let names = opslake_lake::read::register_lake(&ctx, &lake, &contract, None).await.expect("every table opens");
    for name in names {
        let df = ctx.sql(&format!("SELECT count(*) FROM {name}")).await.expect("plans");
        df.collect().await.unwrap_or_else(|e| panic!("{name} does not read: {e}"));
    }
}

/// A small xorshift: kill times vary from run to run, and the seed is printed to replay one.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_on_a_held_lake_exits_busy_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_dir = dir.path().join("lake");
    let lake = lake_at(&lake_dir);
    let held = opslake_lake::lock::LakeLock::acquire(&lake, "holder-run", "ingest", Duration::from_secs(600))
        .await
        .expect("free lake");
    let out = ingest(&lake_dir, &[]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("is busy") && err.contains("holder-run") && err.contains("Run again later"), "{err}");
    assert!(!lake_dir.join("crm").exists(), "the refused run wrote tables");
    assert!(held.release().await.expect("releases"));
    let out = ingest(&lake_dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_started_together_one_proceeds_the_other_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = opslake_testkit::local_lake_content(&reference(dir.path())).await;
    let lake = dir.path().join("lake");
    let args = ingest_args(&lake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (a, b) = (spawn(&args), spawn(&args));
    let (a, b) = (a.wait_with_output().expect("waits"), b.wait_with_output().expect("waits"));
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(75)], "a: {}\nb: {}", text(&a.stderr), text(&b.stderr));
    let busy = if a.status.code() == Some(75) { &a } else { &b };
    assert!(text(&busy.stderr).contains("is busy"), "{}", text(&busy.stderr));
    every_table_reads(&lake).await;
    assert_eq!(opslake_testkit::local_lake_content(&lake).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_killed_at_random_moments_leave_committed_tables_and_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = reference(dir.path());
    let expected = opslake_testkit::local_lake_content(&reference).await;
    // How long a full run takes here: kills are spread over that span.
    let started = Instant::now();
    let out = ingest(&reference, &["--full-refresh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let span = started.elapsed().as_millis().max(200) as u64;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1;
    println!("seed {seed}, full run {span} ms");
    let mut rng = Rng(seed);
    let lake = dir.path().join("lake");
    // The runs' own temporary directory, to see what the killed ones leave in it.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let mut finished = 0;
    for i in 0..20 {
        let mut args = ingest_args(&lake);
        // Odd rounds rebuild everything, so kills also land in full rewrites of every table.
        if i % 2 == 1 {
            args.push("--full-refresh".into());
        }
        let mut cmd = command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("TMPDIR", &tmp);
        let mut child = spawn_command(cmd);
        std::thread::sleep(Duration::from_millis(rng.next() % span));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        if status.success() {
            finished += 1;
        }
        every_table_reads(&lake).await;
    }
    println!("{finished} of 20 runs finished before their kill");
    let out = command(&ingest_args(&lake).iter().map(String::as_str).collect::<Vec<_>>())
        .env("TMPDIR", &tmp)
        .output()
        .expect("the opslake binary runs");
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    // The killed runs' staged parts are gone with the run that came after them.
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert!(left.is_empty(), "left in the temporary directory: {left:?}");
    assert_eq!(opslake_testkit::local_lake_content(&lake).await, expected, "seed {seed}");
    // Killed runs show as interrupted, not as running forever.
    let out = opslake(&["runs", ".", "--lake", &lake.display().to_string(), "--limit", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(!listing.contains("RUNNING"), "{listing}");
    if finished < 20 {
        assert!(listing.contains("INTERRUPTED"), "{listing}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_listed_and_queries_read_as_of_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let lake_arg = lake.display().to_string();
    assert_eq!(ingest(&lake, &[]).status.code(), Some(0));
    let count = |extra: &[&str]| {
        let mut args = vec!["query", "--lake", &lake_arg, "--format", "csv"];
        args.extend_from_slice(extra);
        args.push("SELECT count(*) AS n FROM crm.people");
        let out = opslake(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let first_count = count(&[]);
    let out = opslake(&["runs", ".", "--lake", &lake_arg, "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let first = runs[0]["run_id"].as_str().expect("run id").to_string();
    assert_eq!(runs[0]["status"], "SUCCEEDED", "{runs}");
    // A full refresh from a smaller set of files: the people table shrinks, the old run still
    // reads as it was.
    let out = opslake(&[
        "ingest",
        "--lake",
        &lake_arg,
        "--full-refresh",
        "--tool",
        "hubspot",
        "--path",
        "tests/golden/hubspot/ui_export_contacts",
    ]);
    assert!(matches!(out.status.code(), Some(0 | 5)), "{}", text(&out.stderr));
    assert_ne!(count(&[]), first_count);
    assert_eq!(count(&["--as-of", &first]), first_count);
    let out = opslake(&["runs", ".", "--lake", &lake_arg, "--show", &first]);
    let shown = text(&out.stdout);
    assert!(shown.contains("crm.people") && shown.contains("LOADED"), "{shown}");
    let out = opslake(&["query", "--lake", &lake_arg, "--as-of", "no-such-run", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_writes_a_switched_snapshot_with_the_lake_row_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out_dir = dir.path().join("bi");
    let lake_arg = lake.display().to_string();
    let out_arg = out_dir.display().to_string();
    assert_eq!(ingest(&lake, &[]).status.code(), Some(0));
    for _ in 0..3 {
        let out = opslake(&["publish", ".", "--lake", &lake_arg, "--out", &out_arg]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let manifest: opslake_lake::publish::PublishManifest =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).expect("manifest")).expect("parses");
    let current = std::fs::read_link(out_dir.join("current")).expect("current is a symlink");
    assert_eq!(current, Path::new("snapshots").join(&manifest.snapshot_id));
    // The new snapshot and the one before it; older ones are gone.
    assert_eq!(std::fs::read_dir(out_dir.join("snapshots")).expect("dir").count(), 2);
    let ctx = opslake_lake::read::context();
    opslake_lake::read::register_lake(&ctx, &lake_at(&lake), &Contract::embedded().expect("contract"), None)
        .await
        .expect("registers");
    assert!(manifest.tables.iter().any(|t| t.table == "crm.people"));
    for t in &manifest.tables {
        let batches =
            ctx.sql(&format!("SELECT count(*) FROM {}", t.table)).await.expect("plans").collect().await.expect("runs");
        let n = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().expect("count").value(0);
        assert_eq!(t.rows, n as u64, "{}", t.table);
        let file = std::fs::File::open(out_dir.join(&t.path)).expect("file");
        let meta = parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
        use parquet::file::reader::FileReader;
        assert_eq!(meta.metadata().file_metadata().num_rows() as u64, t.rows, "{}", t.path);
    }
    // Other tools read it: pyarrow and DuckDB from the venv scripts/test makes.
    if let Ok(python) = std::env::var("OPSLAKE_TEST_PYTHON") {
        let script = opslake_testkit::repo_root().join("tests/python/check_publish.py");
        let out = Command::new(python).arg(script).arg(&out_dir).output().expect("python runs");
        assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains("pyarrow and duckdb agree"), "{}", text(&out.stdout));
    } else if std::env::var("CI").is_ok() {
        panic!("OPSLAKE_TEST_PYTHON is not set: run the tests with scripts/test");
    }
}

/// Pruning takes only the snapshots publish made, and only the files they list: a user's folders
/// beside them, a file dropped into a snapshot, and a folder outside reached by a symlink stay.
#[tokio::test(flavor = "multi_thread")]
async fn publish_prunes_only_its_own_snapshots_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out_dir = dir.path().join("bi");
    let (lake_arg, out_arg) = (lake.display().to_string(), out_dir.display().to_string());
    assert_eq!(ingest(&lake, &[]).status.code(), Some(0));
    let publish = || {
        let out = opslake(&["publish", ".", "--lake", &lake_arg, "--out", &out_arg]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let manifest: opslake_lake::publish::PublishManifest =
            serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).expect("manifest")).expect("parses");
        manifest.snapshot_id
    };
    let first = publish();
    let snapshots = out_dir.join("snapshots");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("dir");
    std::fs::write(outside.join("keep.parquet"), b"not publish's").expect("file");
    let planted = [
        snapshots.join("0_user/keep.txt"),
        snapshots.join(".archive/a.parquet"),
        snapshots.join("2019/b.parquet"),
        snapshots.join(&first).join("notes.txt"),
    ];
    for p in &planted {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, b"mine").expect("file");
    }
    std::os::unix::fs::symlink(&outside, snapshots.join("0000-link")).expect("symlink");
    for _ in 0..3 {
        publish();
    }
    for p in &planted {
        assert_eq!(std::fs::read(p).expect("still there"), b"mine", "{}", p.display());
    }
    assert!(outside.join("keep.parquet").exists(), "a file reached through a symlink was deleted");
    // The first snapshot's own files are gone; the user's note keeps its folder.
    let left: Vec<String> = std::fs::read_dir(snapshots.join(&first))
        .expect("kept for the note")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    let ours = std::fs::read_dir(&snapshots)
        .expect("dir")
        .filter(|e| e.as_ref().expect("entry").path().join("manifest.json").exists())
        .count();
    assert_eq!(ours, 2, "the two newest snapshots");
}

#[tokio::test(flavor = "multi_thread")]
async fn maintain_compacts_and_vacuums_without_changing_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let lake_arg = lake.display().to_string();
    assert_eq!(ingest(&lake, &[]).status.code(), Some(0));
    // Two more commits per table: small files to compact, old files to vacuum.
    assert_eq!(ingest(&lake, &["--full-refresh"]).status.code(), Some(0));
    assert_eq!(ingest(&lake, &["--full-refresh"]).status.code(), Some(0));
    let before = opslake_testkit::local_lake_content(&lake).await;
    let out = opslake(&["maintain", ".", "--lake", &lake_arg, "--retain-hours", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("crm.people"), "{report}");
    let vacuumed: u64 =
        report.lines().filter_map(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<u64>().ok())).sum();
    assert!(vacuumed > 0, "nothing vacuumed:\n{report}");
    assert_eq!(opslake_testkit::local_lake_content(&lake).await, before);
    let out = opslake(&["runs", ".", "--lake", &lake_arg]);
    assert!(text(&out.stdout).contains("maintain"), "{}", text(&out.stdout));
}

/// A project under a hash policy, with a malformed email, an impossible birth date and a
/// personal custom field: after `opslake run` (a data test fails and keeps its rows),
/// `publish` and `docs build`, none of the values is in any byte of the lake (`_rejects` and
/// `test_failures` included), the snapshot, the docs site, or the logs, human or JSON at -vv;
/// nor is the key. The same scan finds them when the policy keeps them: it is not blind.
#[test]
fn personal_values_under_a_hash_policy_appear_nowhere() {
    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let raw = ["Zorbina", "Quixleigh", "zorbina.at.example.org", "1987-02-30", "Vermilion Lane"];
    for policy in ["namespaces: {crm: hash, hr: hash}", "default: keep"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path();
        let exports = project.join("exports");
        std::fs::create_dir_all(&exports).expect("dir");
        std::fs::write(
            exports.join("hubspot_contacts.csv"),
            "Record ID,First Name,Last Name,Email,Create Date,Home Street\n\
             501,Zorbina,Quixleigh,Zorbina.at.example.org,2/5/24 1:51,12 Vermilion Lane\n",
        )
        .expect("write");
        std::fs::write(
            exports.join("employee.json"),
            r#"{"id": "77", "firstName": "Zorbina", "lastName": "Quixleigh", "employeeNumber": "E-77",
                "hireDate": "2024-02-01", "workEmail": "zorbina.at.example.org", "dateOfBirth": "1987-02-30",
                "jobTitle": "AE"}"#,
        )
        .expect("write");
        std::fs::write(
            project.join("opslake.yml"),
            format!(
                "personal_data:\n  {policy}\n  key_env: TEST_PERSONAL_KEY\nconnections:\n  \
                 - {{name: hubspot_main, tool: hubspot, path: exports/hubspot_contacts.csv}}\n  \
                 - {{name: bamboo, tool: bamboohr, path: exports/employee.json}}\n"
            ),
        )
        .expect("config");
        let models = project.join("pipelines/models");
        std::fs::create_dir_all(&models).expect("dir");
        std::fs::write(models.join("people.sql"), "select first_name, last_name, email from crm.people\n")
            .expect("model");
        std::fs::write(
            models.join("_people.yml"),
            "version: 2\nmodels:\n  - name: people\n    columns:\n      - name: email\n        data_tests: [not_null]\n",
        )
        .expect("yml");
        let mut logs = String::new();
        for format in ["human", "json"] {
            let lake = project.join(format!("lake_{format}"));
            let out = command(&["-vv", "--log-format", format, "run", ".", "--lake", &lake.display().to_string()])
                .current_dir(project)
                .env("TEST_PERSONAL_KEY", KEY)
                .output()
                .expect("runs");
            // The malformed email fails the not_null test: exit 6, its rows kept.
            assert_eq!(out.status.code(), Some(6), "{policy}: {}{}", text(&out.stdout), text(&out.stderr));
            logs.push_str(&text(&out.stdout));
            logs.push_str(&text(&out.stderr));
            assert!(lake.join("test_failures").is_dir(), "{policy}: the failing test kept its rows");
        }
        let lake = project.join("lake_json").display().to_string();
        for args in [&["publish", ".", "--lake", &lake, "--out", "bi"][..], &["docs", "build", ".", "--out", "site"]] {
            let out = command(args).current_dir(project).env("TEST_PERSONAL_KEY", KEY).output().expect("runs");
            assert_eq!(out.status.code(), Some(0), "{policy} {args:?}: {}", text(&out.stderr));
            logs.push_str(&text(&out.stderr));
        }
        let mut everything = logs;
        for dir in ["lake_human", "lake_json", "bi", "site", "target"] {
            everything.push_str(&opslake_testkit::all_text(&project.join(dir)));
        }
        let found: Vec<&str> =
            raw.iter().copied().filter(|v| everything.to_lowercase().contains(&v.to_lowercase())).collect();
        if policy == "default: keep" {
            assert_eq!(found.len(), raw.len(), "the scan finds kept values: {found:?}");
        } else {
            assert_eq!(found, Vec::<&str>::new(), "{policy}: in clear");
        }
        assert!(!everything.contains(KEY), "{policy}: the key is somewhere");
    }
}
