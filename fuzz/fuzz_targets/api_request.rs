//! `Api::handle` on any request: any caller, method, path, query and body, against an in-memory
//! store holding two users' messages. Never a 5xx, always JSON (but for 204) with an error code on
//! 4xx, listings hold the caller's messages only, and another user's messages never change.
#![no_main]

use bytes::Bytes;
use http::{Method, Request};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use transcoder_api::{Api, ApiConfig};
use transcoder_core::{Message, MessageStore, Owner, contract::{self, UnsignedLinks}, memory::MemoryStore};

#[derive(Debug, Arbitrary)]
struct ClientRequest {
    caller: Option<String>,
    method: String,
    path: String,
    query: Option<String>,
    body: Vec<u8>,
}

const USERS: [&str; 2] = ["alice", "bob"];

fn message(owner: &str, n: u32) -> Message {
    contract::message(owner, &format!("msg-{owner}-{n}"), n.into())
}

async fn unread(api: &Api<MemoryStore, UnsignedLinks>, owner: &str) -> Vec<Message> {
    let owner = Owner::new(owner).unwrap();
    api.store()
        .list_unread(&owner, 100, None)
        .await
        .unwrap()
        .messages
}

fuzz_target!(|input: ClientRequest| {
    let uri = match &input.query {
        Some(query) => format!("/{}?{query}", input.path),
        None => format!("/{}", input.path),
    };
    let Ok(method) = Method::from_bytes(input.method.as_bytes()) else {
        return;
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(uri)
        .body(Bytes::from(input.body.clone()))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = ApiConfig::from_env(&[("BUCKET_NAME", "audio-transcoder-media")]).unwrap();
        let api = Api::new(config, MemoryStore::default(), UnsignedLinks);
        for owner in USERS {
            for n in 1..=3 {
                api.store().insert(&message(owner, n)).await.unwrap();
            }
        }
        let response = api.handle(input.caller.as_deref(), &request).await;
        let status = response.status();
        assert!(!status.is_server_error(), "{status}: {}", response.body());
        // A 204 has no body, nor has any answer to HEAD (RFC 9110).
        if status.as_u16() == 204 || request.method() == Method::HEAD {
            assert!(response.body().is_empty());
        } else {
            let body: Value = serde_json::from_str(response.body()).expect("a JSON body");
            if status.is_client_error() {
                assert!(
                    body["error"]["code"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
                );
            }
            if status.as_u16() == 200 {
                let caller = input.caller.as_deref().unwrap_or_default();
                for listed in body["messages"].as_array().into_iter().flatten() {
                    let id = listed["id"].as_str().unwrap_or_default();
                    assert!(
                        id.starts_with(&format!("msg-{caller}-")),
                        "{id} for {caller}"
                    );
                }
            }
        }
        for owner in USERS {
            if input.caller.as_deref() != Some(owner) {
                assert_eq!(
                    unread(&api, owner).await.len(),
                    3,
                    "{owner}'s messages changed"
                );
            }
        }
    });
});
