//! S3 as far as the starter uses it: ranged GetObject, path-style (`/{bucket}/{key}`, as the SDK
//! addresses an IP endpoint), answered from bytes held in the test, with S3's statuses for a
//! missing key (404), a range past the end (416) and a failed `If-Match` (412).

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use transcoder_core::mp3_frames;

use crate::{Recorded, Reply, Stub};

/// One object in a bucket stub.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Vec<u8>,
    /// When set, a GET whose `If-Match` names another ETag gets 412, as from S3 after a newer
    /// upload replaced the object.
    pub etag: Option<String>,
}

impl From<&[u8]> for Object {
    fn from(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.to_vec(),
            etag: None,
        }
    }
}

/// A bucket stub holding `objects` by key; every other key holds a short MP3, so that the sample
/// events' uploads are audio.
pub async fn bucket(objects: Vec<(&str, Object)>) -> Stub {
    bucket_delayed(Duration::ZERO, objects).await
}

/// [`bucket`], taking `delay` to answer each request, as S3 would across the network.
pub async fn bucket_delayed(delay: Duration, objects: Vec<(&str, Object)>) -> Stub {
    bucket_at("127.0.0.1:0", delay, objects).await
}

/// [`bucket_delayed`] on `address` (`host:port`).
pub async fn bucket_at(address: &str, delay: Duration, objects: Vec<(&str, Object)>) -> Stub {
    let objects: HashMap<String, Object> = objects
        .into_iter()
        .map(|(key, object)| (key.to_owned(), object))
        .collect();
    let audio = Object {
        bytes: mp3_frames(8),
        etag: None,
    };
    Stub::start_replying_at(address, delay, move |req| {
        if req.method != "GET" {
            return error(405, "MethodNotAllowed");
        }
        let Some(key) = key_of(&req.path) else {
            return error(400, "InvalidRequest");
        };
        let object = objects.get(&key).unwrap_or(&audio);
        if let (Some(wanted), Some(etag)) = (header(req, "if-match"), &object.etag)
            && wanted.trim_matches('"') != etag
        {
            return error(412, "PreconditionFailed");
        }
        let len = object.bytes.len();
        let (start, end) = match header(req, "range").and_then(|r| range(&r)) {
            Some((start, _)) if start >= len => return error(416, "InvalidRange"),
            Some((start, last)) => (start, last.saturating_add(1).min(len)),
            None => (0, len),
        };
        Reply {
            status: if header(req, "range").is_some() {
                206
            } else {
                200
            },
            headers: vec![
                ("content-type", "application/octet-stream".into()),
                (
                    "content-range",
                    format!("bytes {start}-{}/{len}", end.max(1) - 1),
                ),
            ],
            body: object.bytes[start..end].to_vec(),
        }
    })
    .await
}

/// A stub whose every GetObject fails with a 503, as S3 does when it sheds load.
pub async fn unavailable() -> Stub {
    Stub::start_replying(Duration::ZERO, |_| error(503, "SlowDown")).await
}

/// The GetObject requests a bucket stub received, as (key, `Range` header).
pub fn gets(stub: &Stub) -> Vec<(String, String)> {
    stub.requests()
        .iter()
        .filter(|r| r.method == "GET")
        .filter_map(|r| Some((key_of(&r.path)?, header(r, "range").unwrap_or_default())))
        .collect()
}

/// The key of a path-style request: everything after the bucket's segment, decoded.
fn key_of(path: &str) -> Option<String> {
    let (_bucket, key) = path.trim_start_matches('/').split_once('/')?;
    percent_decode_str(key)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

fn header(req: &Recorded, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `bytes=a-b` as (a, b); an open end (`bytes=a-`) reads to the end.
fn range(header: &str) -> Option<(usize, usize)> {
    let (start, last) = header.strip_prefix("bytes=")?.split_once('-')?;
    let last = if last.is_empty() {
        usize::MAX
    } else {
        last.parse().ok()?
    };
    Some((start.parse().ok()?, last))
}

fn error(status: u16, code: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/xml".into())],
        body: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>")
            .into_bytes(),
    }
}
