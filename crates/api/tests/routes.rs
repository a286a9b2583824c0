//! The router, route by route and error by error, for two users who must never see or touch each
//! other's messages.

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use transcoder_api::{Api, ApiConfig};
use transcoder_core::{Message, MessageStore, UploadState, UploadStore};
use transcoder_testkit::{
    MemoryStore, UnsignedLinks,
    contract::{MessageBuilder, upload},
    message_ids,
};

fn message(owner: &str, id: &str, minute: i64) -> Message {
    MessageBuilder::new(owner, id, minute)
        .output("wav", "wav", Some(6000))
        .build()
}

async fn api() -> Api<MemoryStore, UnsignedLinks> {
    let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
    let api = Api::new(config, MemoryStore::default(), UnsignedLinks);
    for (owner, id, minute) in [
        ("alice", "a1", 1),
        ("alice", "a2", 2),
        ("alice", "a3", 3),
        ("bob", "b1", 4),
    ] {
        api.store()
            .insert(&message(owner, id, minute))
            .await
            .unwrap();
    }
    api
}

async fn call(
    api: &Api<MemoryStore, UnsignedLinks>,
    caller: Option<&str>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, Value, Response<String>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Bytes::from(body.to_owned()))
        .unwrap();
    let response = api.handle(caller, &request).await;
    let value = serde_json::from_str(response.body()).unwrap_or(Value::Null);
    (response.status(), value, response)
}

fn error_code(body: &Value) -> &str {
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn each_user_lists_only_their_unread_messages_newest_first() {
    let api = api().await;
    let (status, body, response) = call(&api, Some("alice"), "GET", "/messages", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(message_ids(&body), ["a3", "a2", "a1"]);
    assert_eq!(
        body["messages"][0],
        json!({
            "id": "a3",
            "text": "Your file a3.mp3 has been processed",
            "file": "a3.mp3",
            "state": "completed",
            "created_at": "2026-11-23T08:03:00.000Z",
            "outputs": [{"format": "wav", "key": "transcoded/alice/a3.wav", "url": "https://links.test/get/transcoded/alice/a3.wav"}]
        })
    );
    assert_eq!(body["next_cursor"], Value::Null);

    let (_, body, _) = call(&api, Some("bob"), "GET", "/messages", "").await;
    assert_eq!(message_ids(&body), ["b1"]);
    let (_, body, _) = call(&api, Some("mallory"), "GET", "/messages", "").await;
    assert!(message_ids(&body).is_empty());
}

#[tokio::test]
async fn pages_follow_the_cursor_and_bad_paging_is_a_400() {
    let api = api().await;
    let (_, first, _) = call(&api, Some("alice"), "GET", "/messages?limit=2", "").await;
    assert_eq!(message_ids(&first), ["a3", "a2"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("cursor", cursor)
        .finish();
    let (_, second, _) = call(
        &api,
        Some("alice"),
        "GET",
        &format!("/messages?limit=2&{query}"),
        "",
    )
    .await;
    assert_eq!(message_ids(&second), ["a1"]);
    assert_eq!(second["next_cursor"], Value::Null);

    // Alice's cursor means nothing to Bob.
    let (status, body, _) = call(&api, Some("bob"), "GET", &format!("/messages?{query}"), "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad_cursor")
    );
    for uri in ["/messages?cursor=garbage", "/messages?cursor="] {
        let (status, body, _) = call(&api, Some("alice"), "GET", uri, "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_cursor"),
            "{uri}"
        );
    }
    for uri in [
        "/messages?limit=0",
        "/messages?limit=101",
        "/messages?limit=ten",
        "/messages?limit=-1",
        "/messages?limit=",
    ] {
        let (status, body, _) = call(&api, Some("alice"), "GET", uri, "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_limit"),
            "{uri}"
        );
    }
    let (status, body, _) = call(
        &api,
        Some("alice"),
        "GET",
        "/messages?limit=100&other=ignored",
        "",
    )
    .await;
    assert_eq!((status, message_ids(&body).len()), (StatusCode::OK, 3));
}

#[tokio::test]
async fn dismissing_is_for_the_owner_only_and_idempotent() {
    let api = api().await;
    // Bob cannot dismiss Alice's message: for him it does not exist.
    let (status, body, _) = call(&api, Some("bob"), "POST", "/messages/a2/dismiss", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "message_not_found")
    );
    let (_, body, _) = call(&api, Some("alice"), "GET", "/messages", "").await;
    assert_eq!(message_ids(&body), ["a3", "a2", "a1"]);

    let (status, _, response) = call(&api, Some("alice"), "POST", "/messages/a2/dismiss", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(response.body().is_empty());
    let (status, _, _) = call(&api, Some("alice"), "POST", "/messages/a2/dismiss", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body, _) = call(&api, Some("alice"), "GET", "/messages", "").await;
    assert_eq!(message_ids(&body), ["a3", "a1"]);

    let (status, body, _) = call(&api, Some("alice"), "POST", "/messages/nope/dismiss", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "message_not_found")
    );
    let (_, body, _) = call(&api, Some("bob"), "GET", "/messages", "").await;
    assert_eq!(message_ids(&body), ["b1"]);
}

#[tokio::test]
async fn an_upload_link_is_for_the_callers_own_folder_size_and_type() {
    let api = api().await;
    let (status, body, _) = call(
        &api,
        Some("alice"),
        "POST",
        "/uploads",
        r#"{"filename": "red flower.MP3", "size": 5000000, "content_type": "audio/mpeg"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["key"], "media/alice/red flower.MP3");
    assert_eq!(
        body["url"],
        "https://links.test/put/media/alice/red flower.MP3?size=5000000&type=audio/mpeg"
    );
    assert_eq!(body["method"], "PUT");
    assert_eq!(
        body["headers"],
        json!({"Content-Type": "audio/mpeg", "Content-Length": "5000000"})
    );
    let expires: DateTime<Utc> = body["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = expires - Utc::now();
    assert!(
        lifetime > TimeDelta::minutes(4) && lifetime <= TimeDelta::minutes(5),
        "{lifetime}"
    );
}

#[tokio::test]
async fn an_upload_link_binds_the_chosen_outputs_and_loudness_headers() {
    let api = api().await;
    let (status, body, _) = call(
        &api,
        Some("alice"),
        "POST",
        "/uploads",
        r#"{"filename": "talk.wav", "size": 10, "content_type": "audio/wav",
            "outputs": [{"format": "mp3", "bitrate_kbps": 128}, {"format": "opus", "bitrate_kbps": 96}],
            "loudness": "podcast"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["headers"],
        json!({
            "Content-Type": "audio/wav",
            "Content-Length": "10",
            "x-amz-meta-outputs": "mp3:128,opus:96",
            "x-amz-meta-loudness": "podcast"
        })
    );
}

#[tokio::test]
async fn a_choice_is_refused_with_what_is_wrong_and_the_backend_that_cannot() {
    let api = api().await;
    let upload = |choice: &str| {
        format!(r#"{{"filename": "a.mp3", "size": 10, "content_type": "audio/mpeg", {choice}}}"#)
    };
    for (choice, code, says) in [
        (
            r#""outputs": [{"format": "ogg"}]"#,
            "bad_outputs",
            "unknown output format 'ogg'",
        ),
        (
            r#""outputs": [{"format": "opus", "bitrate_kbps": 512}]"#,
            "bad_outputs",
            "choose 16 to 256 kb/s",
        ),
        (
            r#""loudness": "quiet""#,
            "bad_loudness",
            "podcast, broadcast",
        ),
    ] {
        let (status, body, _) =
            call(&api, Some("alice"), "POST", "/uploads", &upload(choice)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{choice}");
        assert_eq!(error_code(&body), code, "{choice}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{choice}: {message}");
    }
    let config = ApiConfig::from_env(&[
        ("BUCKET_NAME", "audio-transcoder-media"),
        ("TRANSCODER", "elastictranscoder"),
    ])
    .unwrap();
    let et = Api::new(config, MemoryStore::default(), UnsignedLinks);
    let (status, body, _) = call(
        &et,
        Some("alice"),
        "POST",
        "/uploads",
        &upload(r#""outputs": [{"format": "opus"}]"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "unsupported_choice");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Elastic Transcoder"),
        "{body}"
    );
}

#[tokio::test]
async fn a_caller_is_one_folder_however_the_accents_of_the_name_are_typed() {
    let api = api().await;
    let body = r#"{"filename": "song.mp3", "size": 10, "content_type": "audio/mpeg"}"#;
    for user in ["Ren\u{e9}e", "Rene\u{301}e"] {
        let (status, link, _) = call(&api, Some(user), "POST", "/uploads", body).await;
        assert_eq!(status, StatusCode::CREATED, "{link}");
        assert_eq!(link["key"], "media/Ren\u{e9}e/song.mp3", "{user:?}");
    }
    for user in [".bob", "..."] {
        let (status, refused, _) = call(&api, Some(user), "POST", "/uploads", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(error_code(&refused), "bad_user");
    }
}

#[tokio::test]
async fn bad_upload_requests_are_400_or_413() {
    let api = api().await;
    let upload = |name: &str| {
        json!({"filename": name, "size": 1000, "content_type": "audio/mpeg"}).to_string()
    };
    for (body, code) in [
        ("".to_owned(), "bad_json"),
        ("not json".to_owned(), "bad_json"),
        (r#"{"name": "song.mp3"}"#.to_owned(), "bad_json"),
        (r#"{"filename": 3}"#.to_owned(), "bad_json"),
        (r#"{"filename": "song.mp3"}"#.to_owned(), "bad_json"),
        (
            r#"{"filename": "song.mp3", "content_type": "audio/mpeg"}"#.to_owned(),
            "bad_json",
        ),
        (
            r#"{"filename": "song.mp3", "size": 10}"#.to_owned(),
            "bad_json",
        ),
        (
            r#"{"filename": "song.mp3", "size": -1, "content_type": "audio/mpeg"}"#.to_owned(),
            "bad_json",
        ),
        (
            r#"{"filename": "song.mp3", "size": 1.5, "content_type": "audio/mpeg"}"#.to_owned(),
            "bad_json",
        ),
        (
            r#"{"filename": "song.mp3", "size": "10", "content_type": "audio/mpeg"}"#.to_owned(),
            "bad_json",
        ),
        (
            r#"{"filename": "song.mp3", "size": 0, "content_type": "audio/mpeg"}"#.to_owned(),
            "bad_size",
        ),
        (
            r#"{"filename": "song.mp3", "size": 10, "content_type": "text/html"}"#.to_owned(),
            "bad_content_type",
        ),
        (
            r#"{"filename": "song.mp3", "size": 10, "content_type": "audio/flac"}"#.to_owned(),
            "bad_content_type",
        ),
        (upload(""), "bad_filename"),
        (upload("../bob/song.mp3"), "bad_filename"),
        (upload("sub/song.mp3"), "bad_filename"),
        (upload("..\\song.mp3"), "bad_filename"),
        (upload("song\u{0}.mp3"), "bad_filename"),
        (upload("notes.txt"), "bad_filename"),
        (upload(&format!("{}.mp3", "a".repeat(300))), "bad_filename"),
    ] {
        let (status, response, _) = call(&api, Some("alice"), "POST", "/uploads", &body).await;
        assert_eq!(
            (status, error_code(&response)),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
    // Over MAX_UPLOAD_BYTES (500 MiB by default): 413, naming the limit.
    let over = r#"{"filename": "song.mp3", "size": 524288001, "content_type": "audio/mpeg"}"#;
    let (status, body, _) = call(&api, Some("alice"), "POST", "/uploads", over).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("524288000 bytes"),
        "{body}"
    );
    let at_limit = r#"{"filename": "song.mp3", "size": 524288000, "content_type": "audio/mpeg"}"#;
    let (status, _, _) = call(&api, Some("alice"), "POST", "/uploads", at_limit).await;
    assert_eq!(status, StatusCode::CREATED);
    let huge = json!({"filename": "a".repeat(5000)}).to_string();
    let (status, body, _) = call(&api, Some("alice"), "POST", "/uploads", &huge).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
}

#[tokio::test]
async fn without_an_identity_every_route_is_401() {
    let api = api().await;
    for (method, uri) in [
        ("GET", "/messages"),
        ("POST", "/messages/a1/dismiss"),
        ("POST", "/uploads"),
        ("GET", "/uploads"),
        ("GET", "/uploads/u1"),
    ] {
        for caller in [None, Some(""), Some("a/b")] {
            let (status, body, _) =
                call(&api, caller, method, uri, r#"{"filename": "x.mp3"}"#).await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{method} {uri}"
            );
        }
    }
    // Nothing was dismissed on the way.
    let (_, body, _) = call(&api, Some("alice"), "GET", "/messages", "").await;
    assert_eq!(message_ids(&body).len(), 3);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let api = api().await;
    for uri in [
        "/",
        "/message",
        "/messages/",
        "/messages/a1",
        "/messages/a1/dismiss/now",
        "/messages//dismiss",
        "/uploads/",
        "/uploads/x/y",
    ] {
        let (status, body, _) = call(&api, Some("alice"), "GET", uri, "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{uri}"
        );
    }
    for (method, uri, allow) in [
        ("POST", "/messages", "GET"),
        ("DELETE", "/messages", "GET"),
        ("GET", "/messages/a1/dismiss", "POST"),
        ("PUT", "/uploads", "GET, POST"),
        ("DELETE", "/uploads", "GET, POST"),
        ("POST", "/uploads/x", "GET"),
    ] {
        let (status, body, response) = call(&api, Some("alice"), method, uri, "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{method} {uri}"
        );
        assert_eq!(response.headers()["allow"], allow);
    }
    // API Gateway routes no HEAD, so neither does the router; the answer has no body (RFC 9110).
    let (status, _, response) = call(&api, Some("alice"), "HEAD", "/messages", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(response.body(), "");
}

#[tokio::test]
async fn uploads_are_the_callers_own_newest_first_in_pages_with_links() {
    let api = api().await;
    for u in [
        upload("alice", "old.mp3", UploadState::Completed, None, 1),
        upload("alice", "new.mp3", UploadState::Transcoding, Some(40), 3),
        upload("alice", "bad.mp3", UploadState::Rejected, None, 2),
        upload("bob", "bobs.mp3", UploadState::Received, None, 4),
    ] {
        assert!(api.store().advance(&u).await.unwrap());
    }
    let (status, page, _) = call(&api, Some("alice"), "GET", "/uploads?limit=2", "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = |page: &Value| -> Vec<String> {
        page["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&page), ["new.mp3", "bad.mp3"]);
    let first = &page["uploads"][0];
    assert_eq!(
        (&first["state"], &first["percent"], &first["reason"]),
        (&json!("transcoding"), &json!(40), &Value::Null)
    );
    assert_eq!(first["file"], "new.mp3");
    assert_eq!(first["key"], "media/alice/new.mp3");
    assert_eq!(first["created_at"], "2026-11-23T08:03:00.123Z");
    assert_eq!(first["outputs"], json!([]));
    assert_eq!(page["uploads"][1]["reason"], "not an audio file");
    let cursor: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("cursor", page["next_cursor"].as_str().unwrap())
        .finish();
    let (_, next, _) = call(
        &api,
        Some("alice"),
        "GET",
        &format!("/uploads?limit=2&{cursor}"),
        "",
    )
    .await;
    assert_eq!(
        (listed(&next), &next["next_cursor"]),
        (vec!["old.mp3".to_owned()], &Value::Null)
    );

    // One upload, with a download link for each output.
    let (status, old, _) = call(&api, Some("alice"), "GET", "/uploads/old.mp3", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&old["state"], &old["percent"]),
        (&json!("completed"), &json!(100))
    );
    assert_eq!(
        old["outputs"][0]["url"],
        "https://links.test/get/transcoded/alice/old.mp3.wav"
    );
    assert_eq!(old["outputs"][0]["format"], "wav");

    // Bob sees his own only; Alice's upload does not exist for him, nor his cursor for her.
    let (_, bobs, _) = call(&api, Some("bob"), "GET", "/uploads", "").await;
    assert_eq!(listed(&bobs), ["bobs.mp3"]);
    for (caller, uri) in [
        ("bob", "/uploads/old.mp3"),
        ("alice", "/uploads/nope"),
        ("alice", "/uploads/bobs.mp3"),
    ] {
        let (status, body, _) = call(&api, Some(caller), "GET", uri, "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "upload_not_found"),
            "{caller} {uri}"
        );
    }
    let (status, body, _) = call(&api, Some("bob"), "GET", &format!("/uploads?{cursor}"), "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad_cursor")
    );
    let (status, body, _) = call(&api, Some("bob"), "GET", "/uploads?limit=0", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad_limit")
    );
}

#[tokio::test]
async fn percent_encoded_ids_are_decoded() {
    let api = api().await;
    api.store()
        .insert(&message("alice", "job 7/8", 9))
        .await
        .unwrap();
    let (status, _, _) = call(
        &api,
        Some("alice"),
        "POST",
        "/messages/job%207%2F8/dismiss",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_id_that_is_not_utf8_is_the_same_400_on_every_route_with_an_id() {
    let api = api().await;
    let mut bodies = Vec::new();
    for (method, uri) in [
        ("POST", "/messages/%FF/dismiss"),
        ("POST", "/messages/a%FFb/dismiss"),
        ("GET", "/uploads/%FF"),
        ("GET", "/uploads/%C3%28"),
    ] {
        let (status, body, response) = call(&api, Some("alice"), method, uri, "").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_id"),
            "{method} {uri}"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    // The id is still checked after the caller: nobody gets a 400 before a 401.
    let (status, _, _) = call(&api, None, "GET", "/uploads/%FF", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing was dismissed on the way.
    let (_, body, _) = call(&api, Some("alice"), "GET", "/messages", "").await;
    assert_eq!(message_ids(&body).len(), 3);
}

#[tokio::test]
async fn a_page_parameter_given_twice_is_a_400() {
    let api = api().await;
    for listing in ["/messages", "/uploads"] {
        for query in [
            "limit=1&limit=2",
            "cursor=a&cursor=b",
            "limit=1&cursor=a&limit=1",
        ] {
            let uri = format!("{listing}?{query}");
            let (status, body, _) = call(&api, Some("alice"), "GET", &uri, "").await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::BAD_REQUEST, "bad_query"),
                "{uri}"
            );
        }
        let (status, body, _) = call(
            &api,
            Some("alice"),
            "GET",
            &format!("{listing}?limit=1"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{listing}: {body}");
    }
}

/// Each route's `Allow` names exactly the methods it answers: every other method is 405 with that
/// `Allow`, and none of those it names is.
#[tokio::test]
async fn every_route_allows_exactly_the_methods_of_routes_and_its_405_says_so() {
    let api = api().await;
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut paths: Vec<&str> = transcoder_api::ROUTES.iter().map(|(_, p)| *p).collect();
    paths.dedup();
    assert_eq!(paths.len(), 4, "{paths:?}");
    for path in paths {
        let allowed: Vec<&str> = transcoder_api::ROUTES
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .collect();
        let uri = path.replace("{id}", "a1");
        for method in methods {
            let (status, body, response) = call(&api, Some("alice"), method, &uri, "{}").await;
            if allowed.contains(&method) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
                continue;
            }
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert_eq!(
                response.headers()["allow"],
                allowed.join(", "),
                "{method} {uri}"
            );
            if method != "HEAD" {
                assert_eq!(error_code(&body), "method_not_allowed");
                let message = body["error"]["message"].as_str().unwrap();
                assert_eq!(
                    message,
                    format!(
                        "{uri} does not accept {method}; it accepts {}",
                        allowed.join(", ")
                    )
                );
            }
        }
    }
}
