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
