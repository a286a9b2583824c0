//! The DynamoDB store against DynamoDB Local, with the table `template.yaml` defines: the store
//! contract every store honours, then what only DynamoDB has (keys, expiry, the sparse index).
//! Each test starts its own DynamoDB Local (2 to 3 s); `make test` installs it.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::TimeDelta;
use transcoder_aws::DynamoStore;
use transcoder_core::{
    CLAIM_LEASE, Chain, Claim, ClaimOutcome, ClaimStore, MessageId, MessageStore, StoreError,
    UploadId, UploadState, UploadStore,
};
use transcoder_testkit::dynamodb_local::{DynamoDbLocal, table_definition};
use transcoder_testkit::{
    contract,
    contract::{message, owner},
};

/// One test at a time. Run side by side, one of these tests sometimes finds a message it has just
/// written gone (about one run in three under load; cause not found yet): each test still starts a
/// DynamoDB Local of its own, but never while another runs.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn table(local: &DynamoDbLocal, name: &str) -> DynamoStore {
    local.create_table(name).await;
    DynamoStore::from_env(&local.sdk_config(), &[("TABLE_NAME", name)]).unwrap()
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// The stored item, straight from the table.
async fn item(
    store: &DynamoStore,
    pk: &str,
    sk: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", s(pk))
        .key("sk", s(sk))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("no item {pk} {sk}"))
}

fn number(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().unwrap(),
        other => panic!("{name} is {other:?}, not a number"),
    }
}

/// The `unread_sk` of every entry of the index for `owner`, read from the index itself.
async fn index_entries(store: &DynamoStore, owner: &str) -> Vec<String> {
    let page = store
        .client()
        .query()
        .table_name(store.table())
        .index_name(transcoder_aws::UNREAD_INDEX)
        .key_condition_expression("unread_pk = :pk")
        .expression_attribute_values(":pk", s(&format!("USER#{owner}")))
        .send()
        .await
        .unwrap();
    page.items()
        .iter()
        .map(|i| i["unread_sk"].as_s().unwrap().clone())
        .collect()
}

#[test]
fn the_table_comes_from_the_template() {
    let table = table_definition();
    assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
    let keys: Vec<_> = table
        .key_schema
        .iter()
        .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    let [unread, uploads] = &table.global_secondary_indexes[..] else {
        panic!("two indexes expected: {:?}", table.global_secondary_indexes);
    };
    assert_eq!(unread.index_name, transcoder_aws::UNREAD_INDEX);
    assert_eq!(uploads.index_name, transcoder_aws::UPLOADS_INDEX);
    for index in [unread, uploads] {
        assert_eq!(index.projection.projection_type, "ALL");
    }
    assert_eq!(
        table.time_to_live_specification.map(|t| t.attribute_name),
        Some("expires_at".to_owned())
    );
}

#[tokio::test]
async fn the_dynamodb_store_honours_the_store_contract() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let local = DynamoDbLocal::start().await;
    let store = table(&local, "contract").await;
    contract::all(&store).await;
}

#[tokio::test]
async fn items_have_the_documented_keys_expiry_and_index_entries() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let local = DynamoDbLocal::start().await;
    local.create_table("items").await;
    let store = DynamoStore::new(local.client(), "items", 7);

    // A message: its keys, its expiry, and its entry in the sparse index while unread.
    let m = message("alice", "1700000000000-abc001", 0);
    assert!(store.insert(&m).await.unwrap());
    assert!(
        store
            .insert(&message("alice", "1700000000000-abc002", 1))
            .await
            .unwrap()
    );
    let stored = item(&store, "USER#alice", "MSG#1700000000000-abc001").await;
    assert_eq!(
        number(&stored, "expires_at"),
        (m.created_at + TimeDelta::days(7)).timestamp()
    );
    assert_eq!(stored["unread_pk"], s("USER#alice"));
    assert_eq!(stored["owner"], s("alice"));
    assert_eq!(
        index_entries(&store, "alice").await,
        [
            "2026-11-23T08:00:00.123Z#1700000000000-abc001",
            "2026-11-23T08:01:00.123Z#1700000000000-abc002",
        ]
    );

    // Dismissed: gone from the index, kept in the table until it expires.
    let id = MessageId("1700000000000-abc001".into());
    assert!(store.dismiss(&owner("alice"), &id).await.unwrap());
    assert_eq!(
        index_entries(&store, "alice").await,
        ["2026-11-23T08:01:00.123Z#1700000000000-abc002"]
    );
    let dismissed = item(&store, "USER#alice", "MSG#1700000000000-abc001").await;
    assert!(!dismissed.contains_key("unread_pk") && !dismissed.contains_key("unread_sk"));
    assert_eq!(
        number(&dismissed, "expires_at"),
        number(&stored, "expires_at")
    );

    // An upload record: its keys, its rank, its entry in the uploads index, and the TTL from its
    // last change; the first time it was seen stays.
    let seen = contract::upload("alice", "u1", UploadState::Received, None, 0);
    let later = contract::upload("alice", "u1", UploadState::Transcoding, Some(40), 5);
    assert!(store.advance(&seen).await.unwrap());
    assert!(store.advance(&later).await.unwrap());
    let upload = item(&store, "USER#alice", "UPLOAD#u1").await;
    assert_eq!(upload["upload_pk"], s("USER#alice"));
    assert_eq!(upload["upload_sk"], s("2026-11-23T08:00:00.123Z#u1"));
    assert_eq!(number(&upload, "rank"), i64::from(later.rank()));
    assert_eq!(number(&upload, "percent"), 40);
    assert_eq!(
        number(&upload, "expires_at"),
        (later.updated_at + TimeDelta::days(7)).timestamp()
    );
    let stored = store
        .upload(&owner("alice"), &later.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.created_at, seen.created_at);
    // An id no key could hold is simply no upload.
    let huge = UploadId("x".repeat(2000));
    assert_eq!(store.upload(&owner("alice"), &huge).await.unwrap(), None);

    // A claim: when it was taken, its job, and a week to live.
    let claim = Claim {
        bucket: "uploads".into(),
        key: transcoder_core::ObjectKey::new("media/alice/song.mp3").unwrap(),
        version: "0062E99A88DC407460".into(),
    };
    let now = contract::base_time();
    assert_eq!(
        store.claim(&claim, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
    store
        .record_job(&claim, "1700000000000-abc001")
        .await
        .unwrap();
    let claimed = item(
        &store,
        "CLAIM#uploads/media/alice/song.mp3",
        "VERSION#0062E99A88DC407460",
    )
    .await;
    assert_eq!(number(&claimed, "claimed_at"), now.timestamp_millis());
    assert_eq!(claimed["job_id"], s("1700000000000-abc001"));
    assert_eq!(
        number(&claimed, "expires_at"),
        (now + TimeDelta::days(7)).timestamp()
    );
    // The claim lease is compared to the millisecond.
    let c2 = Claim {
        version: "2".into(),
        ..claim
    };
    assert_eq!(store.claim(&c2, now).await.unwrap(), ClaimOutcome::Claimed);
    let just_before = now + CLAIM_LEASE - TimeDelta::milliseconds(1);
    assert_eq!(
        store.claim(&c2, just_before).await.unwrap(),
        ClaimOutcome::Held
    );
}

#[tokio::test]
async fn cursors_and_items_that_do_not_belong_are_refused() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let local = DynamoDbLocal::start().await;
    let store = table(&local, "refusals").await;
    for i in 0..3 {
        assert!(
            store
                .insert(&message("carol", &format!("c{i}"), i))
                .await
                .unwrap()
        );
    }
    let page = store.list_unread(&owner("carol"), 2, None).await.unwrap();
    let cursor = page.next_cursor.unwrap();
    // Carol's cursor opens nobody else's list, and a cursor that was tampered with opens none.
    let mut tampered = cursor.clone();
    tampered.insert(5, 'x');
    for (who, cursor) in [
        ("dave", cursor.as_str()),
        ("carol", tampered.as_str()),
        ("carol", "e30"),
    ] {
        let listed = store.list_unread(&owner(who), 2, Some(cursor)).await;
        assert!(
            matches!(listed, Err(StoreError::BadCursor)),
            "{who} {cursor}: {listed:?}"
        );
    }

    // An item in the index that is not a message is reported, not skipped or guessed at.
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", s("USER#erin"))
        .item("sk", s("MSG#broken"))
        .item("unread_pk", s("USER#erin"))
        .item("unread_sk", s("2026-11-23T08:00:00.000Z#broken"))
        .item("text", s("no owner, no state, no date"))
        .send()
        .await
        .unwrap();
    let listed = store.list_unread(&owner("erin"), 10, None).await;
    assert!(
        matches!(listed, Err(StoreError::Corrupt { .. })),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_stopped_database_is_unavailable_and_worth_a_retry() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut local = DynamoDbLocal::start().await;
    local.create_table("stopped").await;
    // Fail at once rather than after the SDK's retries.
    let sdk = local
        .sdk_config()
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    let store = DynamoStore::from_env(&sdk, &[("TABLE_NAME", "stopped")]).unwrap();
    assert!(store.insert(&message("frank", "f1", 0)).await.unwrap());

    local.stop().await;
    let inserted = store.insert(&message("frank", "f2", 1)).await;
    assert!(
        matches!(inserted, Err(StoreError::Unavailable { .. })),
        "{inserted:?}"
    );
    // The SDK's error is the source, with the connection's failure beneath it.
    let err = inserted.unwrap_err();
    let cause = std::error::Error::source(&err).expect("the SDK's error as the source");
    assert!(
        cause.is::<aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::put_item::PutItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >>(),
        "{cause:?}"
    );
    assert!(cause.source().is_some(), "{}", Chain(&err));
    let listed = store.list_unread(&owner("frank"), 10, None).await;
    assert!(
        matches!(listed, Err(StoreError::Unavailable { .. })),
        "{listed:?}"
    );
    let claim = Claim {
        bucket: "uploads".into(),
        key: transcoder_core::ObjectKey::new("media/frank/f.mp3").unwrap(),
        version: "1".into(),
    };
    let claimed = store.claim(&claim, contract::base_time()).await;
    assert!(
        matches!(claimed, Err(StoreError::Unavailable { .. })),
        "{claimed:?}"
    );
}
