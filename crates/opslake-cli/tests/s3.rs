//! The lake on S3: moto 5.2.5 in server mode on loopback (single-threaded, so conditional PUTs
//! are atomic), and the same through a proxy that injects latency, resets, 503s and lost
//! responses. scripts/test starts both and sets `OPSLAKE_TEST_S3_ENDPOINT` and
//! `OPSLAKE_TEST_S3_FAULTY_ENDPOINT`; run without them, these tests are ignored.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Output};

use opslake_config::StorageLocation;
use opslake_lake::Lake;

const BUCKET: &str = "opslake-test";

fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run these tests with scripts/test"))
}

fn aws_env(endpoint: &str) -> HashMap<String, String> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// moto creates a bucket on an unsigned PUT; one raw request keeps the test free of an S3 SDK.
fn create_bucket(endpoint: &str) {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).expect("moto is listening");
    write!(conn, "PUT /{BUCKET} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("reply");
    let status = reply.split_whitespace().nth(1).unwrap_or_default();
    assert!(status == "200" || reply.contains("BucketAlreadyOwnedByYou"), "{reply}");
}

fn opslake(args: &[&str], endpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opslake"))
        .args(args)
        .current_dir(opslake_testkit::repo_root())
        .env_remove("OPSLAKE_LAKE")
        .envs(aws_env(endpoint))
        .output()
        .expect("the opslake binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn unique(name: &str) -> String {
    format!("s3://{BUCKET}/{name}-{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

async fn reference() -> (tempfile::TempDir, std::collections::BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out = Command::new(env!("CARGO_BIN_EXE_opslake"))
        .args(["ingest", ".", "--lake", &lake.display().to_string()])
        .current_dir(opslake_testkit::repo_root())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let content = opslake_testkit::local_lake_content(&lake).await;
    (dir, content)
}

fn s3_lake(url: &str, endpoint: &str) -> Lake {
    let options = aws_env(endpoint).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    Lake::open_with(&StorageLocation::parse(url).expect("url"), options).expect("lake")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server scripts/test starts"]
async fn ingest_and_publish_on_an_s3_lake() {
    let moto = endpoint("OPSLAKE_TEST_S3_ENDPOINT");
    create_bucket(&moto);
    let (_dir, expected) = reference().await;
    let lake_url = unique("lake");
    let out = opslake(&["ingest", ".", "--lake", &lake_url], &moto);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(opslake_testkit::lake_content(&s3_lake(&lake_url, &moto)).await, expected);
    // The manifest lives in the lake too: a rerun reads nothing.
    let out = opslake(&["ingest", ".", "--lake", &lake_url], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 file(s) read"), "{}", text(&out.stdout));
    let bi = unique("bi");
    let out = opslake(&["publish", ".", "--lake", &lake_url, "--out", &bi], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lake = s3_lake(&lake_url, &moto);
    let manifest = opslake_lake::publish::read_manifest(&lake, &StorageLocation::parse(&bi).expect("url"))
        .await
        .expect("manifest.json on S3");
    let people = manifest.tables.iter().find(|t| t.table == "crm.people").expect("people published");
    let out =
        opslake(&["query", "--lake", &lake_url, "--format", "csv", "SELECT count(*) AS n FROM crm.people"], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("n\n{}\n", people.rows));
    assert!(people.rows > 0);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 servers scripts/test starts"]
async fn faults_between_opslake_and_s3_end_in_success_or_a_clean_failure() {
    let moto = endpoint("OPSLAKE_TEST_S3_ENDPOINT");
    let faulty = endpoint("OPSLAKE_TEST_S3_FAULTY_ENDPOINT");
    create_bucket(&moto);
    let (_dir, expected) = reference().await;
    let lake_url = unique("faulty");
    let mut outcomes = Vec::new();
    for attempt in 0..3 {
        let out = opslake(&["ingest", ".", "--lake", &lake_url, "--lock-ttl", "5"], &faulty);
        let code = out.status.code();
        // Success, a storage failure (4), or busy (75) after a lost lock; never a bug (70) or
        // a crash.
        assert!(matches!(code, Some(0 | 4 | 75)), "attempt {attempt}: {code:?}\n{}", text(&out.stderr));
        outcomes.push(code);
        // Whatever happened, every table opens and reads, straight from the store.
        let lake = s3_lake(&lake_url, &moto);
        opslake_testkit::lake_content(&lake).await;
        if code == Some(0) {
            break;
        }
    }
    println!("outcomes through the faulty proxy: {outcomes:?}");
    // Converge: a clean run straight to the store finishes the job if the faulty ones did not.
    let out = opslake(&["ingest", ".", "--lake", &lake_url], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(opslake_testkit::lake_content(&s3_lake(&lake_url, &moto)).await, expected);
}

/// Storage credentials and the personal-data key never reach a log line: an ingest onto S3
/// under a hash policy, at -vv, human and JSON, with every library's debug events on.
#[test]
#[ignore = "needs the S3 server scripts/test starts"]
fn credentials_and_the_key_are_never_logged() {
    let moto = endpoint("OPSLAKE_TEST_S3_ENDPOINT");
    create_bucket(&moto);
    let (secret, key) =
        ("opslake-test-secret-5d1c9e", "5d1c9e7a5d1c9e7a5d1c9e7a5d1c9e7a5d1c9e7a5d1c9e7a5d1c9e7a5d1c9e7a");
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(project.path().join("opslake.yml"), "personal_data:\n  namespaces: {crm: hash}\n").expect("config");
    let exports = opslake_testkit::repo_root().join("tests/golden/hubspot");
    for format in ["human", "json"] {
        let lake = unique("logs");
        let out = Command::new(env!("CARGO_BIN_EXE_opslake"))
            .args(["-vv", "--log-format", format, "ingest", ".", "--lake", &lake, "--tool", "hubspot", "--path"])
            .arg(&exports)
            .current_dir(project.path())
            .env_remove("OPSLAKE_LAKE")
            .envs(aws_env(&moto))
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("OPSLAKE_PERSONAL_DATA_KEY", key)
            .output()
            .expect("runs");
        let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(matches!(out.status.code(), Some(0 | 5)), "{log}");
        assert!(log.lines().count() > 20, "the -vv log is there: {log}");
        assert!(!log.contains(secret), "{format}: the AWS secret is logged");
        assert!(!log.contains(key), "{format}: the personal-data key is logged");
    }
}

/// The sample exports (every file the repository's connections read), uploaded under `prefix`
/// in the bucket with their paths kept; returns how many there are.
async fn upload_exports(moto: &str, prefix: &str) -> usize {
    use object_store::{ObjectStoreExt, PutPayload};
    let store = s3_lake(&format!("s3://{BUCKET}/{prefix}"), moto);
    let root = opslake_testkit::repo_root();
    let mut count = 0;
    for entry in files_under(&root.join("tests/golden")) {
        let relative = entry.strip_prefix(&root).expect("under the repo").to_string_lossy().replace('\\', "/");
        if !relative.contains("/input/") {
            continue;
        }
        let bytes = std::fs::read(&entry).expect("reads");
        store
            .store()
            .put(&object_store::path::Path::from(relative.as_str()), PutPayload::from(bytes))
            .await
            .expect("uploads");
        count += 1;
    }
    count
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("reads the dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A project that is the repository's, its connections' paths in the bucket under `prefix`.
fn project_in_s3(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = std::fs::read_to_string(opslake_testkit::repo_root().join("opslake.yml")).expect("opslake.yml");
    let moved = config.replace("path: \"tests/golden/", &format!("path: \"s3://{BUCKET}/{prefix}/tests/golden/"));
    assert_ne!(moved, config, "the connections' paths were moved");
    std::fs::write(dir.path().join("opslake.yml"), moved).expect("config");
    dir
}

/// The content of the local lake at `lake`, objects named as the files they were uploaded from
/// and the times taken from a file's modification (`valid_from` where a row has none) left out.
async fn content_as_local(lake: &std::path::Path, prefix: &str) -> std::collections::BTreeMap<String, String> {
    let lake = Lake::open(&StorageLocation::Local(lake.to_path_buf())).expect("lake");
    let url = format!("s3://{BUCKET}/{prefix}/");
    opslake_testkit::lake_content_as(&lake, &["valid_from", "valid_to"], &|_, v| v.replace(&url, "")).await
}

async fn reference_without_times() -> std::collections::BTreeMap<String, String> {
    let (dir, _) = reference().await;
    let lake = Lake::open(&StorageLocation::Local(dir.path().join("lake"))).expect("lake");
    opslake_testkit::lake_content_as(&lake, &["valid_from", "valid_to"], &|_, v| v).await
}

fn opslake_in(dir: &std::path::Path, args: &[&str], endpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opslake"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPSLAKE_LAKE")
        .envs(aws_env(endpoint))
        .output()
        .expect("the opslake binary runs")
}

/// Connections whose exports are in a bucket land what the same files land from disk; a rerun
/// skips every object by its ETag, a rewritten object alone is read again, and `--path` takes
/// a glob of objects.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server scripts/test starts"]
async fn connections_in_s3_land_as_the_same_files_on_disk() {
    let moto = endpoint("OPSLAKE_TEST_S3_ENDPOINT");
    create_bucket(&moto);
    let prefix = format!("exports-{}", uuid_like());
    let uploaded = upload_exports(&moto, &prefix).await;
    assert!(uploaded > 20, "{uploaded} sample exports uploaded");
    let project = project_in_s3(&prefix);
    let out = opslake_in(project.path(), &["ingest", "."], &moto);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(&format!("{uploaded} file(s) read")), "{stdout}");
    let lake = project.path().join("lake");
    assert_eq!(content_as_local(&lake, &prefix).await, reference_without_times().await);

    let out = opslake_in(project.path(), &["ingest", "."], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 file(s) read"), "unchanged objects are skipped: {}", text(&out.stdout));

    // One object rewritten: read again, under its URL, with its new ETag.
    use object_store::{ObjectStoreExt, PutPayload};
    let key = "tests/golden/hubspot/fivetran_owner/owners/input/owner_data.csv";
    let store = s3_lake(&format!("s3://{BUCKET}/{prefix}"), &moto);
    let path = object_store::path::Path::from(key);
    let before = store.store().head(&path).await.expect("the sample is there");
    let mut bytes = std::fs::read(opslake_testkit::repo_root().join(key)).expect("reads");
    bytes.extend_from_slice(b"\n");
    store.store().put(&path, PutPayload::from(bytes)).await.expect("rewrites");
    let out = opslake_in(project.path(), &["ingest", "."], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 file(s) read"), "{}", text(&out.stdout));
    let url = format!("s3://{BUCKET}/{prefix}/{key}");
    let sql =
        format!("SELECT count(DISTINCT etag) AS etags FROM _run_files WHERE path = '{url}' AND status = 'LOADED'");
    let lake_arg = lake.display().to_string();
    let out = opslake_in(project.path(), &["query", "--lake", &lake_arg, "--format", "csv", &sql], &moto);
    assert_eq!(text(&out.stdout), "etags\n2\n", "{}", text(&out.stderr));
    assert!(before.e_tag.is_some(), "moto gives ETags");

    // --path with a glob of objects, into another lake.
    let glob = format!("s3://{BUCKET}/{prefix}/tests/golden/hubspot/**/input/*");
    let other = tempfile::tempdir().expect("tempdir");
    let other_lake = other.path().join("lake").display().to_string();
    let args = ["ingest", ".", "--lake", &other_lake, "--tool", "hubspot", "--path", &glob];
    let out = opslake_in(project.path(), &args, &moto);
    let local = files_under(&opslake_testkit::repo_root().join("tests/golden/hubspot"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/input/"))
        .count();
    assert!(matches!(out.status.code(), Some(0 | 5)), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("{local} file(s) read")), "{}", text(&out.stdout));

    // A URL that names nothing is an error naming it, before the lake is touched.
    let missing = format!("s3://{BUCKET}/{prefix}/no-such-export.csv");
    let out = opslake_in(project.path(), &["ingest", ".", "--lake", &other_lake, "--path", &missing], &moto);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("{missing}: no such object")), "{}", text(&out.stderr));
}

/// Exports read through a proxy that resets, delays, refuses and cuts downloads partway: each
/// run ends in success or a clean failure, never a bug, and never loads a cut object's part;
/// a clean run then lands exactly what the files land from disk.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 servers scripts/test starts"]
async fn exports_read_through_faults_load_whole_or_not_at_all() {
    let moto = endpoint("OPSLAKE_TEST_S3_ENDPOINT");
    let faulty = endpoint("OPSLAKE_TEST_S3_FAULTY_ENDPOINT");
    create_bucket(&moto);
    let prefix = format!("faulty-exports-{}", uuid_like());
    upload_exports(&moto, &prefix).await;
    let project = project_in_s3(&prefix);
    let expected = reference_without_times().await;
    let mut outcomes = Vec::new();
    for attempt in 0..3 {
        let out = opslake_in(project.path(), &["ingest", "."], &faulty);
        let code = out.status.code();
        // Success, a storage failure listing (4), or files that failed to arrive (5).
        assert!(matches!(code, Some(0 | 4 | 5)), "attempt {attempt}: {code:?}\n{}", text(&out.stderr));
        outcomes.push(code);
        if code == Some(0) {
            break;
        }
    }
    println!("outcomes through the faulty proxy: {outcomes:?}");
    let out = opslake_in(project.path(), &["ingest", "."], &moto);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(content_as_local(&project.path().join("lake"), &prefix).await, expected);
}
