//! The local runner's `/files/` route and its front door, through real HTTP requests to the built
//! `transcoder-local`: an upload link admits exactly the file it was signed for (size and type) and
//! nothing larger, however it is sent; a refused upload leaves no file behind; downloads come back
//! byte for byte, or the byte range asked for; names starting with `.` get no link and accents
//! make one key; slow and stalled clients are closed; a request addressed to another host name is
//! refused (DNS rebinding); partial uploads of an earlier run are gone after start-up.

use std::path::Path;

use serde_json::{Value, json};
use system_tests::local::{Runner, scratch, tone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 exchange: the status, the headers (names in lower case) and the body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn error_code(&self) -> String {
        let body = self.json();
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` as they are.
async fn send(runner: &Runner, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(&runner.address).await.unwrap();
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

/// The path and query of a link to the runner.
fn path_of<'a>(runner: &Runner, url: &'a str) -> &'a str {
    url.split_once(&runner.address).unwrap().1
}

/// Asks the API for an upload link; returns the response body.
async fn upload_link(
    runner: &Runner,
    filename: &str,
    size: u64,
    content_type: &str,
) -> (u16, Value) {
    let body = json!({"filename": filename, "size": size, "content_type": content_type});
    runner
        .http("POST", "/uploads", "alice", &body.to_string())
        .await
}

/// Files whose names start with `.upload-` anywhere under `dir`.
fn partial_uploads(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(".upload-") {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn an_upload_link_admits_only_its_own_size_and_type() {
    let dir = scratch();
    let runner = Runner::start_with(&dir, &[("MAX_UPLOAD_BYTES", "100000")]).await;
    let bucket = dir.join("bucket");

    // The API refuses a file over MAX_UPLOAD_BYTES before any link exists.
    let (status, body) = upload_link(&runner, "long.mp3", 100_001, "audio/mpeg").await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100000 bytes"),
        "{body}"
    );

    let (status, link) = upload_link(&runner, "big.mp3", 1000, "audio/mpeg").await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(
        link["headers"],
        json!({"Content-Type": "audio/mpeg", "Content-Length": "1000"})
    );
    let path = path_of(&runner, link["url"].as_str().unwrap()).to_owned();
    let head = |extra: &str| {
        format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: audio/mpeg\r\n{extra}",
            runner.address
        )
    };

    // One byte more than signed, announced.
    let answer = send(&runner, &head("Content-Length: 1001"), &[b'a'; 1001]).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "file_too_large")
    );
    // More than signed, chunked with no length announced: refused once it passes the size.
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 600).as_bytes());
        chunked.extend_from_slice(&[b'b'; 600]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = send(&runner, &head("Transfer-Encoding: chunked"), &chunked).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "file_too_large")
    );
    // The signed size, but another type than signed.
    let other_type = format!(
        "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: audio/wav\r\nContent-Length: 1000",
        runner.address
    );
    let answer = send(&runner, &other_type, &[b'c'; 1000]).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (403, "link_refused")
    );
    // Fewer bytes than signed.
    let answer = send(&runner, &head("Content-Length: 999"), &[b'd'; 999]).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (400, "incomplete_upload")
    );
    // Cut off half way: the client goes away before sending the rest.
    let mut stream = TcpStream::connect(&runner.address).await.unwrap();
    let cut = format!("{}\r\n\r\n", head("Content-Length: 1000"));
    stream.write_all(cut.as_bytes()).await.unwrap();
    stream.write_all(&[b'f'; 500]).await.unwrap();
    drop(stream);
    runner
        .wait_for(
            |r| r.count(&["upload refused", "stopped sending"]) == 1,
            "the cut-off upload to be dropped",
        )
        .await;

    assert!(!bucket.join("media/alice/big.mp3").exists());
    assert_eq!(partial_uploads(&bucket), Vec::<String>::new());
    // The link still works for exactly what it was signed for.
    let answer = send(&runner, &head("Content-Length: 1000"), &[b'e'; 1000]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        std::fs::read(bucket.join("media/alice/big.mp3")).unwrap(),
        [b'e'; 1000]
    );
}

#[tokio::test]
async fn an_upload_through_its_link_is_transcoded_and_its_outputs_downloaded_whole() {
    let dir = scratch();
    let song = dir.join("song.mp3");
    tone(&song, 1.5).await;
    let bytes = std::fs::read(&song).unwrap();
    let runner = Runner::start(&dir).await;
    let bucket = dir.join("bucket");

    let (status, link) = upload_link(&runner, "song.mp3", bytes.len() as u64, "audio/mpeg").await;
    assert_eq!(status, 201, "{link}");
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/mpeg\r\nContent-Length: {}",
        path_of(&runner, link["url"].as_str().unwrap()),
        bytes.len()
    );
    assert_eq!(send(&runner, &head, &bytes).await.status, 200);
    assert_eq!(
        std::fs::read(bucket.join("media/alice/song.mp3")).unwrap(),
        bytes
    );

    runner.wait_for_messages(1).await;
    let messages = runner.messages("alice").await;
    assert_eq!(messages[0]["state"], "completed", "{messages:?}");
    let outputs = messages[0]["outputs"].as_array().unwrap();
    assert!(!outputs.is_empty());
    for output in outputs {
        let key = output["key"].as_str().unwrap();
        let path = path_of(&runner, output["url"].as_str().unwrap());
        let answer = send(&runner, &format!("GET {path} HTTP/1.1\r\nHost: [::1]"), b"").await;
        let on_disk = std::fs::read(bucket.join(key)).unwrap();
        assert_eq!(answer.status, 200, "{key}");
        assert_eq!(
            answer.header("content-length"),
            Some(on_disk.len().to_string().as_str()),
            "{key}"
        );
        assert!(
            answer.body == on_disk,
            "{key}: the download differs from the file"
        );
    }
}

#[tokio::test]
async fn an_upload_link_with_a_choice_admits_only_its_headers_and_the_job_makes_what_was_chosen() {
    let dir = scratch();
    let song = dir.join("talk.mp3");
    tone(&song, 1.5).await;
    let bytes = std::fs::read(&song).unwrap();
    let runner = Runner::start(&dir).await;
    let body = json!({
        "filename": "talk.mp3", "size": bytes.len(), "content_type": "audio/mpeg",
        "outputs": [{"format": "mp3", "bitrate_kbps": 128}, {"format": "opus", "bitrate_kbps": 64}]
    });
    let (status, link) = runner
        .http("POST", "/uploads", "alice", &body.to_string())
        .await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["headers"]["x-amz-meta-outputs"], "mp3:128,opus:64");
    let path = path_of(&runner, link["url"].as_str().unwrap()).to_owned();
    let head = |metadata: &str| {
        format!(
            "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/mpeg\r\nContent-Length: {}{metadata}",
            bytes.len()
        )
    };
    for refused in [
        "",
        "\r\nx-amz-meta-outputs: wav",
        "\r\nx-amz-meta-outputs: mp3:128,opus:64\r\nx-amz-meta-loudness: podcast",
    ] {
        let answer = send(&runner, &head(refused), &bytes).await;
        assert_ne!(answer.status, 200, "{refused:?}");
        assert_eq!(answer.error_code(), "link_refused", "{refused:?}");
    }
    let answer = send(
        &runner,
        &head("\r\nx-amz-meta-outputs: mp3:128,opus:64"),
        &bytes,
    )
    .await;
    assert_eq!(answer.status, 200);
    runner.wait_for_messages(1).await;
    let messages = runner.messages("alice").await;
    assert_eq!(messages[0]["state"], "completed", "{messages:?}");
    let keys: Vec<_> = messages[0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "transcoded/alice/talk.mp3.mp3",
            "transcoded/alice/talk.mp3.opus"
        ]
    );
}

/// A transcoded output of a short tone, its download link's path and its bytes on disk.
async fn an_output(runner: &Runner, dir: &Path) -> (String, Vec<u8>) {
    tone(&dir.join("bucket/media/alice/song.mp3"), 1.5).await;
    runner.wait_for_messages(1).await;
    let messages = runner.messages("alice").await;
    let output = &messages[0]["outputs"][0];
    let bytes = std::fs::read(dir.join("bucket").join(output["key"].as_str().unwrap())).unwrap();
    let path = path_of(runner, output["url"].as_str().unwrap()).to_owned();
    (path, bytes)
}

#[tokio::test]
async fn downloads_answer_byte_ranges_as_s3_does() {
    let dir = scratch();
    let runner = Runner::start(&dir).await;
    let (path, bytes) = an_output(&runner, &dir).await;
    let len = bytes.len();
    assert!(len > 1000, "{len}");
    let get = |range: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nRange: {range}");

    let whole = send(
        &runner,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost"),
        b"",
    )
    .await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert!(whole.body == bytes);

    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len - 1),
        ("bytes=-200", len - 200, len - 1),
        (&format!("bytes=10-{}", len + 5000), 10, len - 1),
    ] {
        let part = send(&runner, &get(range), b"").await;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(
            part.header("content-length"),
            Some((end - start + 1).to_string().as_str()),
            "{range}"
        );
        assert_eq!(part.header("accept-ranges"), Some("bytes"), "{range}");
        assert!(part.body == bytes[start..=end], "{range}: other bytes");
    }
    // HEAD says the same without the body.
    let head = send(
        &runner,
        &format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\nRange: bytes=-200"),
        b"",
    )
    .await;
    assert_eq!(head.status, 206);
    assert_eq!(
        head.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 200, len - 1).as_str())
    );
    assert!(head.body.is_empty());
    // Past the end: 416, with the length.
    for range in [format!("bytes={len}-"), "bytes=-0".to_owned()] {
        let refused = send(&runner, &get(&range), b"").await;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (416, "range_not_satisfiable"),
            "{range}"
        );
        assert_eq!(
            refused.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{range}"
        );
    }
    // Several ranges, as S3 answers them: the whole file.
    let several = send(&runner, &get("bytes=0-1,5-9"), b"").await;
    assert_eq!(several.status, 200);
    assert!(several.body == bytes);
}

#[tokio::test]
async fn names_that_start_with_a_dot_get_no_link_and_accents_make_one_key() {
    let dir = scratch();
    let runner = Runner::start(&dir).await;
    let (status, body) = upload_link(&runner, ".hidden.mp3", 10, "audio/mpeg").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_filename"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("'.'"),
        "{body}"
    );
    let request = json!({"filename": "song.mp3", "size": 10, "content_type": "audio/mpeg"});
    for user in [".bob", "..."] {
        let (status, body) = runner
            .http("POST", "/uploads", user, &request.to_string())
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_user")),
            "{user}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(user),
            "{body}"
        );
    }
    // `café` with a combining accent is stored as the `café` of one character.
    let (status, link) = upload_link(&runner, "cafe\u{301}.mp3", 10, "audio/mpeg").await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["key"], "media/alice/caf\u{e9}.mp3");
    let put = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/mpeg\r\nContent-Length: 10",
        path_of(&runner, link["url"].as_str().unwrap())
    );
    assert_eq!(send(&runner, &put, b"0123456789").await.status, 200);
    let alice = dir.join("bucket/media/alice");
    assert!(alice.join("caf\u{e9}.mp3").exists());
    assert!(!alice.join("cafe\u{301}.mp3").exists());
}

/// Whether the server closes `stream` (read to its end) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: std::time::Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test]
async fn slow_and_stalled_clients_are_closed_by_the_timeouts() {
    let dir = scratch();
    let runner = Runner::start_with(
        &dir,
        &[
            ("HEADER_TIMEOUT_SECONDS", "2"),
            ("IDLE_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let (status, link) = upload_link(&runner, "stalled.mp3", 1000, "audio/mpeg").await;
    assert_eq!(status, 201, "{link}");
    // Half a header on a few sockets, and a socket that sends nothing.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(&runner.address).await.unwrap();
        stream
            .write_all(b"GET /messages HTTP/1.1\r\nHost: local")
            .await
            .unwrap();
        slow.push(stream);
    }
    slow.push(TcpStream::connect(&runner.address).await.unwrap());
    // An upload whose body stops half way, its connection left open.
    let mut stalled = TcpStream::connect(&runner.address).await.unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/mpeg\r\nContent-Length: 1000\r\n\r\n",
        path_of(&runner, link["url"].as_str().unwrap())
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[b'a'; 500]).await.unwrap();
    slow.push(stalled);

    // A limit, not a measure: configured for 2 s, each is closed well within 30.
    let limit = std::time::Duration::from_secs(30);
    for (n, stream) in slow.iter_mut().enumerate() {
        assert!(closed_within(stream, limit).await, "socket {n} still open");
    }
    runner
        .wait_for(
            |r| r.count(&["upload refused"]) == 1,
            "the stalled upload to be dropped",
        )
        .await;
    assert_eq!(partial_uploads(&dir.join("bucket")), Vec::<String>::new());
    assert!(!dir.join("bucket/media/alice/stalled.mp3").exists());
    // The server still answers.
    let (status, _) = runner.http("GET", "/messages", "alice", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn requests_for_another_host_name_are_misdirected() {
    let dir = scratch();
    let runner = Runner::start(&dir).await;
    let (status, link) = upload_link(&runner, "song.mp3", 10, "audio/mpeg").await;
    assert_eq!(status, 201, "{link}");
    let upload = path_of(&runner, link["url"].as_str().unwrap()).to_owned();

    for host in [
        "evil.example",
        "127.0.0.1.evil.example",
        "127.0.0.1.evil.example:3000",
    ] {
        let answer = send(
            &runner,
            &format!("GET /messages HTTP/1.1\r\nHost: {host}\r\nX-User: alice"),
            b"",
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (421, "misdirected_request"),
            "{host}"
        );
        let put = format!(
            "PUT {upload} HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/mpeg\r\nContent-Length: 10"
        );
        let answer = send(&runner, &put, b"0123456789").await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (421, "misdirected_request"),
            "{host}"
        );
    }
    assert!(!dir.join("bucket/media/alice/song.mp3").exists());
    // The same requests, addressed to the runner by a loopback name, are answered.
    let answer = send(
        &runner,
        &format!(
            "GET /messages HTTP/1.1\r\nHost: {}\r\nX-User: alice",
            runner.address
        ),
        b"",
    )
    .await;
    assert_eq!(answer.status, 200);
    let put = format!(
        "PUT {upload} HTTP/1.1\r\nHost: localhost:1\r\nContent-Type: audio/mpeg\r\nContent-Length: 10"
    );
    assert_eq!(send(&runner, &put, b"0123456789").await.status, 200);
}

#[tokio::test]
async fn partial_uploads_of_an_earlier_run_are_removed_at_start_up() {
    let dir = scratch();
    let alice = dir.join("bucket/media/alice");
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::write(alice.join(".upload-4242-0"), b"cut off").unwrap();
    std::fs::write(dir.join("bucket/.upload-4242-1"), b"cut off").unwrap();
    std::fs::write(alice.join("kept.txt"), b"not an upload in flight").unwrap();

    let runner = Runner::start(&dir).await;
    assert_eq!(partial_uploads(&dir.join("bucket")), Vec::<String>::new());
    assert!(alice.join("kept.txt").exists());
    assert_eq!(runner.count(&["removed=2", "partial uploads"]), 1);
}
