//! Does listing a user's messages or uploads cost more as other users' data and the user's own
//! history grow? `GET /messages` and `GET /uploads` through the router against DynamoDB Local,
//! before and after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, stream};
use system_tests::dynamodb_local::DynamoDbLocal;
use transcoder_api::{Api, ApiConfig};
use transcoder_aws::{DynamoStore, S3Links};
use transcoder_core::{
    Message, MessageStore, Owner, UploadRecord, UploadState, UploadStore,
    contract::{self, MessageBuilder},
};

use crate::{ms, percentile};

fn message(owner: &str, n: usize) -> Message {
    let id = format!("{owner}-{n:06}");
    ["wav", "flac", "m4a"]
        .into_iter()
        .fold(MessageBuilder::new(owner, &id, n as i64), |m, ext| {
            m.output(ext, ext, Some(6000))
        })
        .build()
}

async fn insert_all(store: &Arc<DynamoStore>, messages: impl Iterator<Item = Message>) {
    stream::iter(messages)
        .for_each_concurrent(32, |m| {
            let store = store.clone();
            async move {
                store.insert(&m).await.unwrap();
            }
        })
        .await;
}

/// p50 and p99 of 1,000 `GET {path}` listings, after `warm_up` unmeasured ones (DynamoDB Local
/// is a JVM: its first thousand queries are slower while the JIT compiles them).
async fn sample(
    api: &Api<Arc<DynamoStore>, S3Links>,
    path: &str,
    warm_up: usize,
) -> (Duration, Duration) {
    let request = http::Request::get(path).body(Bytes::new()).unwrap();
    // Let the emulator finish what the loading left it (garbage collection, SQLite checkpoints).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..warm_up {
        api.handle(Some("alice"), &request).await;
    }
    let mut times = Vec::new();
    for _ in 0..1000 {
        let started = Instant::now();
        let response = api.handle(Some("alice"), &request).await;
        times.push(started.elapsed());
        assert_eq!(response.status(), 200);
    }
    (percentile(&mut times, 0.5), percentile(&mut times, 0.99))
}

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh table and the API over it.
async fn api(
    db: &DynamoDbLocal,
    table: &str,
) -> (Arc<DynamoStore>, Api<Arc<DynamoStore>, S3Links>) {
    db.create_table(table).await;
    let store = Arc::new(DynamoStore::new(db.client(), table, 30));
    let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
    let links = S3Links::from_sdk(&db.sdk_config(), "audio-transcoder-media");
    (store.clone(), Api::new(config, store, links))
}

/// Prints one listing's table: each row's p50 and p99, and their ratio to the first row's.
fn table(heading: &str, description: &str, rows: &[(String, (Duration, Duration))]) {
    println!("## {heading}\n");
    println!("{description}\n");
    println!("| table holds | p50 | p99 | p50 ratio | p99 ratio |");
    println!("| --- | --- | --- | --- | --- |");
    let base = rows[0].1;
    for (what, (p50, p99)) in rows {
        println!(
            "| {what} | {} | {} | {:.2} | {:.2} |",
            ms(*p50),
            ms(*p99),
            p50.as_secs_f64() / base.0.as_secs_f64(),
            p99.as_secs_f64() / base.1.as_secs_f64()
        );
    }
    println!();
}

const METHOD: &str = "through the router against DynamoDB Local: 1,000 requests after a 3 s pause and a warm-up (3,000 requests before the first row, 300 before the others).";

pub async fn listing_cost() {
    let others = count("BENCH_OTHER_MESSAGES", 100_000);
    let dismissed = count("BENCH_DISMISSED", 10_000);
    let db = DynamoDbLocal::start().await;
    let (store, api) = api(&db, "messages").await;
    // Alice's unread messages: newer than everything else.
    insert_all(&store, (0..40).map(|n| message("alice", 1_000_000 + n))).await;
    let path = "/messages?limit=20";

    let base = sample(&api, path, 3000).await;
    let seeding = Instant::now();
    insert_all(
        &store,
        (0..others).map(|n| message(&format!("user{:04}", n % 1000), n)),
    )
    .await;
    let seeded_in = seeding.elapsed();
    let with_others = sample(&api, path, 300).await;
    let alice = Owner::new("alice").unwrap();
    insert_all(&store, (0..dismissed).map(|n| message("alice", n))).await;
    stream::iter(0..dismissed)
        .for_each_concurrent(32, |n| {
            let (store, alice) = (store.clone(), alice.clone());
            async move {
                assert!(
                    store
                        .dismiss(&alice, &message("alice", n).id)
                        .await
                        .unwrap()
                );
            }
        })
        .await;
    let with_dismissed = sample(&api, path, 300).await;
    table(
        "Listing cost as data grows",
        &format!(
            "`GET {path}` for one user (40 unread, 3 outputs each, links signed) {METHOD} \
             Loading {others} other users' messages took {:.0} s.",
            seeded_in.as_secs_f64()
        ),
        &[
            ("only this user's 40 unread".into(), base),
            (
                format!("+ {others} messages of 1,000 other users"),
                with_others,
            ),
            (
                format!("+ {dismissed} dismissed messages of this user"),
                with_dismissed,
            ),
        ],
    );

    upload_listing_cost(&db, others, count("BENCH_OLD_UPLOADS", dismissed)).await;
}

/// An upload, completed with outputs, `minute` minutes after the fixtures' base time.
fn upload(owner: &str, n: usize, minute: usize) -> UploadRecord {
    let name = format!("{owner}-{n:06}.mp3");
    contract::upload(owner, &name, UploadState::Completed, None, minute as i64)
}

async fn advance_all(store: &Arc<DynamoStore>, uploads: impl Iterator<Item = UploadRecord>) {
    stream::iter(uploads)
        .for_each_concurrent(32, |u| {
            let store = store.clone();
            async move {
                assert!(store.advance(&u).await.unwrap());
            }
        })
        .await;
}

/// `GET /uploads` the same way: every upload stays listed (none is dismissed), so what must not
/// cost more is other users' uploads and this user's older ones.
async fn upload_listing_cost(db: &DynamoDbLocal, others: usize, old: usize) {
    let (store, api) = api(db, "uploads").await;
    let newest = 1_000_000;
    advance_all(&store, (0..40).map(|n| upload("alice", n, newest + n))).await;
    let path = "/uploads?limit=20";
    let base = sample(&api, path, 3000).await;
    let others_of = |n| upload(&format!("user{:04}", n % 1000), n, n);
    advance_all(&store, (0..others).map(others_of)).await;
    let with_others = sample(&api, path, 300).await;
    advance_all(&store, (40..40 + old).map(|n| upload("alice", n, n))).await;
    let with_old = sample(&api, path, 300).await;
    table(
        "Upload listing cost as data grows",
        &format!(
            "`GET {path}` for one user (40 recent uploads, completed, 2 outputs each, links signed) \
             {METHOD}"
        ),
        &[
            ("only this user's 40 uploads".into(), base),
            (
                format!("+ {others} uploads of 1,000 other users"),
                with_others,
            ),
            (format!("+ {old} older uploads of this user"), with_old),
        ],
    );
}
