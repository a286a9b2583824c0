//! `messages-api` as Lambda runs it: the built binary, fed API Gateway HTTP API (payload 2.0)
//! sample events through the Runtime API, with its messages in DynamoDB Local.

use system_tests::dynamodb_local::DynamoDbLocal;
use system_tests::{Function, functions};
use transcoder_aws::DynamoStore;
use transcoder_core::{Message, MessageStore};
use transcoder_testkit::contract::MessageBuilder;
use transcoder_testkit::message_ids;

fn message(owner: &str, id: &str, minute: i64) -> Message {
    MessageBuilder::new(owner, id, minute)
        .output("flac", "flac", None)
        .build()
}

#[tokio::test]
async fn two_users_through_the_sample_events() {
    let db = DynamoDbLocal::start().await;
    db.create_table("messages").await;
    let store = DynamoStore::new(db.client(), "messages", 30);
    for (owner, id, minute) in [
        ("alice", "1700000000000-abc001", 1),
        ("alice", "1700000000000-abc002", 2),
        ("alice", "1700000000000-abc003", 3),
        ("bob", "1763885000000-mc0001", 4),
    ] {
        store.insert(&message(owner, id, minute)).await.unwrap();
    }
    let mut function = functions::messages_api(&db, "messages").await;
    let mut call =
        async |file: &str| functions::http(function.invoke_sample(file).await.response());

    // Alice, first page of two, newest first, with presigned download links.
    let (status, page) = call("http-list-messages-alice.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        message_ids(&page),
        ["1700000000000-abc003", "1700000000000-abc002"]
    );
    assert!(page["next_cursor"].is_string());
    let url = page["messages"][0]["outputs"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://audio-transcoder-media.s3.eu-west-1.amazonaws.com/transcoded/alice/1700000000000-abc003.flac?"),
        "{url}"
    );
    assert!(
        url.contains("X-Amz-Expires=900") && url.contains("X-Amz-Signature="),
        "{url}"
    );

    // Bob sees his own message only, and cannot dismiss Alice's.
    let (status, page) = call("http-list-messages-bob.json").await;
    assert_eq!(
        (status, message_ids(&page)),
        (200, vec!["1763885000000-mc0001"])
    );
    let (status, body) = call("http-dismiss-foreign-bob.json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("message_not_found"))
    );

    // Alice dismisses it, twice.
    assert_eq!(call("http-dismiss-alice.json").await.0, 204);
    assert_eq!(call("http-dismiss-alice.json").await.0, 204);
    let unread = functions::unread(&store, "alice").await;
    let unread: Vec<_> = unread.iter().map(|m| m.id.0.as_str()).collect();
    assert_eq!(unread, ["1700000000000-abc003", "1700000000000-abc002"]);

    // An upload link for her own folder (the event's body is base64, as API Gateway may send it).
    let (status, upload) = call("http-upload-alice.json").await;
    assert_eq!(status, 201);
    assert_eq!(upload["key"], "media/alice/red flower.mp3");
    assert_eq!(upload["method"], "PUT");
    let url = upload["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://audio-transcoder-media.s3.eu-west-1.amazonaws.com/media/alice/red%20flower.mp3?"),
        "{url}"
    );
    // Signed for the size and type the request stated, which the client must send.
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
        "{url}"
    );
    assert_eq!(
        upload["headers"],
        serde_json::json!({"Content-Type": "audio/mpeg", "Content-Length": "5000000"})
    );

    // A file over MAX_UPLOAD_BYTES (500 MiB by default) gets no link at all.
    let (status, body) = call("http-upload-too-large-alice.json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("file_too_large"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("524288000 bytes")),
        "{body}"
    );

    // No verified identity: 401, whatever headers claim.
    let (status, body) = call("http-no-claims.json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // The web page's configuration, on a route without the authorizer: sign in with Cognito's
    // endpoint and the stack's app client; connect to Cognito and the bucket, nowhere else.
    let response = function
        .invoke_sample("http-web-page-config.json")
        .await
        .response();
    let csp = response["headers"]["content-security-policy"].clone();
    let hsts = response["headers"]["strict-transport-security"].clone();
    assert_eq!(
        functions::http(response),
        (
            200,
            serde_json::json!({
                "sign_in": "cognito",
                "endpoint": "https://cognito-idp.eu-west-1.amazonaws.com/",
                "client_id": "4example0client0id"
            })
        )
    );
    let csp = csp.as_str().unwrap_or_default();
    assert!(
        csp.contains(
            "connect-src 'self' https://audio-transcoder-media.s3.eu-west-1.amazonaws.com \
             https://cognito-idp.eu-west-1.amazonaws.com;"
        ),
        "{csp}"
    );
    assert_eq!(hsts, "max-age=31536000");
}

#[tokio::test]
async fn a_missing_bucket_is_refused_at_start_up() {
    let mut function = Function::start("messages-api", &[("TABLE_NAME", "messages")]).await;
    function
        .assert_refused_at_start_up("BUCKET_NAME is required")
        .await;
}
