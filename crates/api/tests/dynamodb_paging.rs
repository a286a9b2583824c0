//! Paging through the router against DynamoDB Local: every unread message exactly once, newest
//! first, however much of other users' data and of the caller's dismissed history is around it.

use bytes::Bytes;
use http::Request;
use serde_json::Value;
use system_tests::dynamodb_local::DynamoDbLocal;
use transcoder_api::{Api, ApiConfig};
use transcoder_aws::DynamoStore;
use transcoder_core::{
    Message, MessageStore, Owner,
    contract::{MessageBuilder, UnsignedLinks},
};

fn message(owner: &str, n: i64) -> Message {
    MessageBuilder::new(owner, &format!("{owner}-{n:03}"), n).build()
}

async fn get(api: &Api<DynamoStore, UnsignedLinks>, caller: &str, uri: &str) -> Value {
    let request = Request::get(uri).body(Bytes::new()).unwrap();
    let response = api.handle(Some(caller), &request).await;
    assert_eq!(response.status(), 200, "{}", response.body());
    serde_json::from_str(response.body()).unwrap()
}

#[tokio::test]
async fn three_pages_return_each_unread_message_once_newest_first() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    // Alice: 8 unread, 6 dismissed in between; Bob and Carol: messages of their own.
    for n in 0..14 {
        store.insert(&message("alice", n)).await.unwrap();
    }
    for n in (1..14).step_by(2).take(6) {
        assert!(
            store
                .dismiss(&Owner::new("alice").unwrap(), &message("alice", n).id)
                .await
                .unwrap()
        );
    }
    for (owner, count) in [("bob", 10), ("carol", 3)] {
        for n in 0..count {
            store.insert(&message(owner, n)).await.unwrap();
        }
    }
    let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
    let api = Api::new(config, store, UnsignedLinks);

    let mut pages = Vec::new();
    let mut uri = "/messages?limit=3".to_owned();
    loop {
        let page = get(&api, "alice", &uri).await;
        let ids: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        pages.push(ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("limit", "3")
                    .append_pair("cursor", cursor)
                    .finish();
                uri = format!("/messages?{query}");
            }
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    let unread = [
        "alice-013",
        "alice-012",
        "alice-010",
        "alice-008",
        "alice-006",
        "alice-004",
        "alice-002",
        "alice-000",
    ];
    assert_eq!(pages, [&unread[0..3], &unread[3..6], &unread[6..8]]);

    let bob = get(&api, "bob", "/messages?limit=100").await;
    assert_eq!(bob["messages"].as_array().unwrap().len(), 10);
}
