//! The messages API against a real DynamoDB that misbehaves or is handed what no client should
//! send: while DynamoDB is down the API answers 503 (retry), and serves again once it is back;
//! ids and cursors with keys over DynamoDB's size limits are the client's mistake, never a 5xx
//! that invites a retry.

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::Value;
use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::{functions, sample_event};
use transcoder_api::{Api, ApiConfig};
use transcoder_aws::DynamoStore;
use transcoder_core::MessageStore;
use transcoder_testkit::{UnsignedLinks, contract::MessageBuilder, scratch};

#[tokio::test]
async fn while_dynamodb_is_down_the_api_answers_503_and_serves_again_when_it_is_back() {
    let dir = scratch();
    let mut db = DynamoDbLocal::start_persistent(&dir).await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    store
        .insert(&MessageBuilder::new("alice", "1700000000000-abc001", 1).build())
        .await
        .unwrap();
    let mut function = functions::messages_api(&db, "messages").await;
    let list = sample_event("http-list-messages-alice.json");

    let (status, body) = functions::http(function.invoke(&list).await.response());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["id"], "1700000000000-abc001");

    db.stop().await;
    let (status, body) = functions::http(function.invoke(&list).await.response());
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &"unavailable".into())
    );

    db.restart().await;
    let (status, body) = functions::http(function.invoke(&list).await.response());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["id"], "1700000000000-abc001");

    db.stop().await;
}

#[tokio::test]
async fn ids_and_cursors_too_large_for_dynamodb_keys_are_never_a_server_error() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    for minute in 1..=3 {
        store
            .insert(&MessageBuilder::new("alice", &format!("job-{minute}"), minute).build())
            .await
            .unwrap();
    }
    let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
    let api = Api::new(config, store, UnsignedLinks);
    let call = |method: &str, uri: String| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Bytes::new())
            .unwrap();
        let api = &api;
        async move {
            let response = api.handle(Some("alice"), &request).await;
            let body: Value = serde_json::from_str(response.body()).unwrap_or_default();
            (response.status(), body["error"]["code"].clone())
        }
    };

    // A sort key may be 1 KiB at most: no message has an id this long, so it is not found.
    for length in [1100, 3000] {
        let id = "x".repeat(length);
        let (status, code) = call("POST", format!("/messages/{id}/dismiss")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, Some("message_not_found")),
            "{length}"
        );
    }

    // A forged cursor for alice's own partition, with keys no item can have: at worst a page of
    // her own messages, never a 5xx. (DynamoDB Local accepts such a start key.)
    use base64::Engine;
    let forged = serde_json::json!({
        "pk": "USER#alice",
        "sk": format!("MSG#{}", "x".repeat(1100)),
        "unread_pk": "USER#alice",
        "unread_sk": "y".repeat(1100),
    });
    let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
    let (status, code) = call("GET", format!("/messages?cursor={cursor}")).await;
    assert!(!status.is_server_error(), "{status} {code}");

    // And what is in range still works.
    let (status, _) = call("POST", "/messages/job-1/dismiss".into()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}
