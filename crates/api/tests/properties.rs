//! Properties of the router for any request a client can send: any method, path, query, body and
//! caller. Sequences of requests run against one in-memory store holding three users' messages
//! and uploads (an upload's id is its message's, so one leak check covers both).
//! 256 generated sequences in `make test`; `make fuzz` runs many more (`PROPTEST_CASES`).
//!
//! For every request: never a 500 (nor a 503: the in-memory store is always up); JSON with
//! `application/json` unless 204; every 4xx names an error code and a message, a 405 its `Allow`;
//! a 401 only for a request without a usable identity. And isolation: no response shows a caller
//! another user's message or upload id (unless the caller typed it), listings hold the caller's
//! own messages and uploads only, and nothing a caller does changes another user's messages.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use serde_json::{Value, json};
use transcoder_api::{Api, ApiConfig, MAX_BODY_BYTES};
use transcoder_core::{MessageStore, Owner, UploadState, UploadStore};
use transcoder_testkit::{
    MemoryStore, UnsignedLinks,
    contract::{message, upload},
};

/// Who owns messages, and how many.
const USERS: [(&str, usize); 3] = [("alice", 4), ("bob", 3), ("carol", 2)];

/// Ids name their owner, so a leak is visible in any response text.
fn id(owner: &str, n: usize) -> String {
    format!("msg-{owner}-{n}")
}

fn all_ids() -> Vec<(String, String)> {
    USERS
        .iter()
        .flat_map(|(owner, count)| (1..=*count).map(|n| (owner.to_string(), id(owner, n))))
        .collect()
}

async fn api() -> Api<MemoryStore, UnsignedLinks> {
    let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
    let api = Api::new(config, MemoryStore::default(), UnsignedLinks);
    for (minute, (owner, id)) in (0..).zip(all_ids()) {
        api.store()
            .insert(&message(&owner, &id, minute))
            .await
            .unwrap();
        let state = UploadState::ALL[minute as usize % UploadState::ALL.len()];
        let record = upload(&owner, &id, state, Some(50), minute);
        assert!(api.store().advance(&record).await.unwrap());
    }
    api
}

/// Each user's unread message ids.
async fn unread(api: &Api<MemoryStore, UnsignedLinks>) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for (owner, _) in USERS {
        let page = api
            .store()
            .list_unread(&Owner::new(owner).unwrap(), 100, None)
            .await
            .unwrap();
        let ids = page.messages.into_iter().map(|m| m.id.0).collect();
        all.insert(owner.to_owned(), ids);
    }
    all
}

/// A page cursor that `owner` was really given (limit 1, so there is a next page).
async fn real_cursor(owner: &str) -> String {
    let request = Request::builder()
        .uri("/messages?limit=1")
        .body(Bytes::new())
        .unwrap();
    let response = api().await.handle(Some(owner), &request).await;
    let body: Value = serde_json::from_str(response.body()).unwrap();
    body["next_cursor"].as_str().unwrap().to_owned()
}

#[derive(Debug, Clone)]
struct ClientRequest {
    caller: Option<String>,
    method: String,
    uri: String,
    body: Vec<u8>,
}

fn any_caller() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(Some("alice".to_owned())),
        3 => Just(Some("bob".to_owned())),
        1 => Just(Some("mallory".to_owned())),
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => ".{0,140}".prop_map(Some),
    ]
}

fn any_method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("GET".to_owned()),
        4 => Just("POST".to_owned()),
        1 => Just("PUT".to_owned()),
        1 => Just("DELETE".to_owned()),
        1 => Just("HEAD".to_owned()),
        1 => Just("OPTIONS".to_owned()),
        1 => "[A-Z]{1,10}",
    ]
}

fn encoded(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string()
}

/// An id as it may appear in a path: anyone's real id, or anything at all, encoded or not.
fn any_id_segment() -> impl Strategy<Value = String> {
    let ids: Vec<String> = all_ids().into_iter().map(|(_, id)| id).collect();
    prop_oneof![
        4 => prop::sample::select(ids),
        1 => ".{0,40}".prop_map(|s| encoded(&s)),
        1 => "(%[0-9A-Fa-f]{2}|[a-z0-9-]){0,12}",
        1 => Just("%FF%FE".to_owned()),
    ]
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("/messages".to_owned()),
        4 => any_id_segment().prop_map(|id| format!("/messages/{id}/dismiss")),
        3 => Just("/uploads".to_owned()),
        3 => any_id_segment().prop_map(|id| format!("/uploads/{id}")),
        1 => Just("/".to_owned()),
        2 => prop::collection::vec(
                prop_oneof![
                    Just("messages".to_owned()),
                    Just("dismiss".to_owned()),
                    Just("uploads".to_owned()),
                    Just(String::new()),
                    any_id_segment(),
                ],
                1..5,
            )
            .prop_map(|segments| format!("/{}", segments.join("/"))),
    ]
}

fn any_query(cursors: Vec<String>) -> impl Strategy<Value = Option<String>> {
    let limit = prop_oneof![
        Just("1".to_owned()),
        Just("2".to_owned()),
        Just("100".to_owned()),
        Just("0".to_owned()),
        Just("101".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999999".to_owned()),
        ".{0,6}",
    ];
    let cursor = prop_oneof![
        2 => prop::sample::select(cursors),
        1 => ".{0,30}",
        1 => Just("alice\nmsg-bob-1".to_owned()),
    ];
    let pair = prop_oneof![
        2 => limit.prop_map(|v| ("limit".to_owned(), v)),
        2 => cursor.prop_map(|v| ("cursor".to_owned(), v)),
        1 => (".{0,6}", ".{0,6}"),
    ];
    prop::option::weighted(0.6, prop::collection::vec(pair, 0..4)).prop_map(|pairs| {
        pairs.map(|pairs| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        })
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        3 => prop_oneof![
                Just("song.mp3".to_owned()),
                Just("../bob/song.mp3".to_owned()),
                Just("msg-bob-1.mp3".to_owned()),
                ".{0,300}",
            ]
            .prop_flat_map(|name| {
                (
                    Just(name),
                    prop_oneof![8 => Just(1000u64), 1 => Just(0), 1 => any::<u64>()],
                    prop_oneof![8 => Just("audio/mpeg".to_owned()), 1 => ".{0,20}"],
                )
            })
            .prop_map(|(name, size, content_type)| {
                json!({"filename": name, "size": size, "content_type": content_type})
                    .to_string()
                    .into_bytes()
            }),
        1 => Just(br#"{"filename": 7}"#.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (MAX_BODY_BYTES + 1..MAX_BODY_BYTES * 2).prop_map(|n| vec![b'a'; n]),
    ]
}

fn any_request(cursors: Vec<String>) -> impl Strategy<Value = ClientRequest> {
    (
        any_caller(),
        any_method(),
        any_path(),
        any_query(cursors),
        any_body(),
    )
        .prop_map(|(caller, method, path, query, body)| ClientRequest {
            caller,
            method,
            uri: match query {
                Some(query) => format!("{path}?{query}"),
                None => path,
            },
            body,
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Checks one answer to one request; `Err` says what is wrong.
fn check(
    request: &ClientRequest,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(
        !status.is_server_error(),
        "{} {} as {:?}: {} {}",
        request.method,
        request.uri,
        request.caller,
        status,
        body
    );
    // A 204 has no body, nor has any answer to HEAD (RFC 9110); its status still counts.
    if status == StatusCode::NO_CONTENT || request.method == "HEAD" {
        prop_assert_eq!(body, "");
        return Ok(());
    }
    prop_assert_eq!(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let json: Value = serde_json::from_str(body)
        .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {body}")))?;
    if status.is_client_error() {
        let code = json["error"]["code"].as_str().unwrap_or_default();
        let message = json["error"]["message"].as_str().unwrap_or_default();
        prop_assert!(!code.is_empty() && !message.is_empty(), "{}", body);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        prop_assert!(headers.contains_key(header::ALLOW));
    }
    if status == StatusCode::UNAUTHORIZED {
        let usable = request
            .caller
            .as_deref()
            .is_some_and(|c| Owner::new(c).is_ok());
        prop_assert!(!usable, "{:?} was refused", request.caller);
    }
    if status == StatusCode::OK {
        let caller = request.caller.as_deref().unwrap_or_default();
        let messages = json["messages"].as_array().cloned().unwrap_or_default();
        let uploads = json["uploads"].as_array().cloned().unwrap_or_default();
        for item in messages.into_iter().chain(uploads) {
            let id = item["id"].as_str().unwrap_or_default();
            prop_assert!(
                id.starts_with(&format!("msg-{caller}-")),
                "{} listed for {}",
                id,
                caller
            );
        }
    }
    // No other user's id, unless the caller wrote it into the request (404s quote the id asked
    // for, and an upload's key quotes its file name).
    let sent = format!(
        "{}\n{}",
        percent_encoding::percent_decode_str(&request.uri).decode_utf8_lossy(),
        String::from_utf8_lossy(&request.body)
    );
    for (owner, id) in all_ids() {
        if Some(owner.as_str()) != request.caller.as_deref() && !sent.contains(&id) {
            prop_assert!(
                !body.contains(&id),
                "{} leaked to {:?}: {}",
                id,
                request.caller,
                body
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_request_is_answered_in_json_never_500_and_never_with_another_users_data(
        requests in prop::collection::vec(
            any_request(vec![
                "alice\nmsg-alice-4".to_owned(),
                "bob\nmsg-bob-3".to_owned(),
            ]),
            1..6,
        )
    ) {
        let rt = runtime();
        let api = rt.block_on(api());
        for request in &requests {
            let Ok(method) = Method::from_bytes(request.method.as_bytes()) else { continue };
            let built = Request::builder()
                .method(method)
                .uri(&request.uri)
                .body(Bytes::from(request.body.clone()));
            let built = built.map_err(|e| TestCaseError::fail(format!("{}: {e}", request.uri)))?;
            let before = rt.block_on(unread(&api));
            let response = rt.block_on(api.handle(request.caller.as_deref(), &built));
            check(request, response.status(), response.headers(), response.body())?;
            let after = rt.block_on(unread(&api));
            for (owner, ids) in &before {
                if Some(owner.as_str()) != request.caller.as_deref() {
                    prop_assert_eq!(ids, &after[owner], "{}'s messages changed", owner);
                }
            }
        }
    }
}

/// The cursors the generator uses are the very ones the API hands out, so "another user's real
/// cursor" is what is tested; and a real cursor pages, while another user's is refused.
#[test]
fn the_generators_cursors_are_real_and_work_only_for_their_owner() {
    let rt = runtime();
    let alice = rt.block_on(real_cursor("alice"));
    let bob = rt.block_on(real_cursor("bob"));
    assert_eq!(alice, "alice\nmsg-alice-4");
    assert_eq!(bob, "bob\nmsg-bob-3");
    let api = rt.block_on(api());
    let call = |caller: &str, cursor: &str| {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", cursor)
            .finish();
        let request = Request::builder()
            .uri(format!("/messages?{query}"))
            .body(Bytes::new())
            .unwrap();
        rt.block_on(api.handle(Some(caller), &request)).status()
    };
    assert_eq!(call("alice", &alice), StatusCode::OK);
    assert_eq!(call("alice", &bob), StatusCode::BAD_REQUEST);
}

/// The request generator reaches every answer the API can give a client, so the properties above
/// are checked on each of them. On a fixed seed, so it cannot pass by luck.
#[test]
fn the_request_generator_reaches_every_answer() {
    use std::collections::BTreeSet;

    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = any_request(vec!["alice\nmsg-alice-4".to_owned()]);
    let rt = runtime();
    let api = rt.block_on(api());
    let mut answers = BTreeSet::new();
    for _ in 0..500 {
        let request = strategy.new_tree(&mut runner).unwrap().current();
        let Ok(method) = Method::from_bytes(request.method.as_bytes()) else {
            continue;
        };
        let built = Request::builder()
            .method(method)
            .uri(&request.uri)
            .body(Bytes::from(request.body.clone()))
            .unwrap();
        let response = rt.block_on(api.handle(request.caller.as_deref(), &built));
        let body: Value = serde_json::from_str(response.body()).unwrap_or_default();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        answers.insert((response.status().as_u16(), code));
    }
    for expected in [
        (200, ""),
        (201, ""),
        (204, ""),
        (400, "bad_limit"),
        (400, "bad_cursor"),
        (400, "bad_query"),
        (400, "bad_id"),
        (400, "bad_json"),
        (400, "bad_filename"),
        (401, "unauthorized"),
        (404, "not_found"),
        (404, "message_not_found"),
        (404, "upload_not_found"),
        (405, "method_not_allowed"),
        (413, "payload_too_large"),
    ] {
        assert!(
            answers.contains(&(expected.0, expected.1.to_owned())),
            "never answered {expected:?}: {answers:?}"
        );
    }
}
