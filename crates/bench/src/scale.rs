//! Does listing a user's messages cost more as other users' data and the user's own dismissed
//! history grow? `GET /messages` through the router against DynamoDB Local, before and after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, stream};
use system_tests::dynamodb_local::DynamoDbLocal;
use transcoder_api::{Api, ApiConfig};
use transcoder_aws::{DynamoStore, S3Links};
use transcoder_core::contract::MessageBuilder;
use transcoder_core::{Message, MessageStore, Owner};

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

/// p50 and p99 of 1,000 listings, after `warm_up` unmeasured ones (DynamoDB Local is a JVM: its
/// first thousand queries are slower while the JIT compiles them).
async fn sample(api: &Api<Arc<DynamoStore>, S3Links>, warm_up: usize) -> (Duration, Duration) {
    let request = http::Request::get("/messages?limit=20")
        .body(Bytes::new())
        .unwrap();
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

pub async fn listing_cost() {
    let others: usize = std::env::var("BENCH_OTHER_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dismissed: usize = std::env::var("BENCH_DISMISSED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = Arc::new(DynamoStore::new(db.client(), "messages", 30));
    // Alice's unread messages: newer than everything else.
    insert_all(&store, (0..40).map(|n| message("alice", 1_000_000 + n))).await;
    let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
    let api = Api::new(
        config,
        store.clone(),
        S3Links::from_sdk(&db.sdk_config(), "audio-transcoder-media"),
    );

    let base = sample(&api, 3000).await;
    let seeding = Instant::now();
    insert_all(
        &store,
        (0..others).map(|n| message(&format!("user{:04}", n % 1000), n)),
    )
    .await;
    let seeded_in = seeding.elapsed();
    let with_others = sample(&api, 300).await;
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
    let with_dismissed = sample(&api, 300).await;

    println!("## Listing cost as data grows\n");
    println!(
        "`GET /messages?limit=20` for one user (40 unread, 3 outputs each, links signed) through the router"
    );
    println!(
        "against DynamoDB Local: 1,000 requests after a 3 s pause and a warm-up (3,000 requests before"
    );
    println!("the first row, 300 before the others). Loading {others} other users' messages took");
    println!("{:.0} s.\n", seeded_in.as_secs_f64());
    println!("| table holds | p50 | p99 | p50 ratio | p99 ratio |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |what: &str, (p50, p99): (Duration, Duration)| {
        println!(
            "| {what} | {} | {} | {:.2} | {:.2} |",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / base.0.as_secs_f64(),
            p99.as_secs_f64() / base.1.as_secs_f64()
        );
    };
    row("only this user's 40 unread", base);
    row(
        &format!("+ {others} messages of 1,000 other users"),
        with_others,
    );
    row(
        &format!("+ {dismissed} dismissed messages of this user"),
        with_dismissed,
    );
    println!();
}
