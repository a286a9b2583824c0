//! `make run`'s pipeline end to end: the built `transcoder-local` binary with a folder as the
//! bucket, real ffmpeg, and the API on loopback. Outputs are checked with ffprobe.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::binary;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The runner as a child process, with its log lines collected.
struct Runner {
    child: Child,
    address: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Runner {
    async fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let mut child = Command::new(binary("transcoder-local"))
            .env("BUCKET_DIR", dir.join("bucket"))
            .env("STORE_PATH", dir.join("store/messages.sqlite3"))
            .env("LISTEN_ADDR", &address)
            .env("SETTLE_MS", "400")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start transcoder-local");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let runner = Self {
            child,
            address,
            logs,
        };
        runner
            .wait_for(
                |r| r.count(&["local pipeline running"]) == 1,
                "the runner to start",
            )
            .await;
        runner
    }

    fn count(&self, parts: &[&str]) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    async fn wait_for(&self, done: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One HTTP/1.1 request; returns the status and the body parsed as JSON (Null if empty).
    async fn http(&self, method: &str, path: &str, user: &str, body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.address).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-User: {user}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn messages(&self, user: &str) -> Vec<Value> {
        let (status, body) = self.http("GET", "/messages", user, "").await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().unwrap().clone()
    }

    /// Stops the runner as a service manager would, and waits for it to exit.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().unwrap().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}");
        self.logs.lock().unwrap().clone()
    }
}

async fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// codec, sample rate, channels and duration of a file's first audio stream.
async fn probe(path: &Path) -> (String, u64, u64, f64) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "ffprobe {}", path.display());
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    let stream = &v["streams"][0];
    (
        stream["codec_name"].as_str().unwrap().to_owned(),
        stream["sample_rate"].as_str().unwrap().parse().unwrap(),
        stream["channels"].as_u64().unwrap(),
        v["format"]["duration"].as_str().unwrap().parse().unwrap(),
    )
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "local-pipeline-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn files_dropped_in_the_folder_are_transcoded_listed_and_dismissed() {
    let dir = scratch();
    let song = dir.join("song.mp3");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2.5",
        "-ac",
        "2",
        "-ar",
        "44100",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        song.to_str().unwrap(),
    ])
    .await;
    let (_, _, _, input_duration) = probe(&song).await;
    let runner = Runner::start(&dir).await;
    let bucket = dir.join("bucket");
    let alice = bucket.join("media/alice");
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::create_dir_all(bucket.join("transcoded/alice")).unwrap();

    // A slow copy: half now, the rest later; it must be picked up once, when complete.
    let bytes = std::fs::read(&song).unwrap();
    let target = alice.join("take one (live).mp3");
    std::fs::write(&target, &bytes[..bytes.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .unwrap();
    std::io::Write::write_all(&mut file, &bytes[bytes.len() / 2..]).unwrap();
    drop(file);
    // A corrupt mp3, a text file, and an mp3 under the output prefix.
    std::fs::write(
        alice.join("broken.mp3"),
        b"ID3 this is not really an mp3 file at all".repeat(50),
    )
    .unwrap();
    std::fs::write(alice.join("notes.txt"), b"not audio").unwrap();
    std::fs::write(bucket.join("transcoded/alice/stray.mp3"), &bytes).unwrap();

    runner
        .wait_for(|r| r.count(&["message written"]) == 2, "two messages")
        .await;
    let messages = runner.messages("alice").await;
    let by_file = |file: &str| {
        messages
            .iter()
            .find(|m| m["file"] == file)
            .cloned()
            .unwrap()
    };
    let done = by_file("take one (live).mp3");
    assert_eq!(done["state"], "completed");
    let broken = by_file("broken.mp3");
    assert_eq!(broken["state"], "failed");
    assert!(
        broken["text"]
            .as_str()
            .unwrap()
            .starts_with("Your file broken.mp3 could not be processed: ")
    );

    // Three outputs, each checked with ffprobe.
    let outputs: Vec<(String, String)> = done["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["format"].as_str().unwrap().to_owned(),
                o["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outputs,
        [
            (
                "wav".to_owned(),
                "transcoded/alice/take one (live).wav".to_owned()
            ),
            (
                "flac".to_owned(),
                "transcoded/alice/take one (live).flac".to_owned()
            ),
            (
                "aac".to_owned(),
                "transcoded/alice/take one (live).m4a".to_owned()
            ),
        ]
    );
    for ((_, key), codec) in outputs.iter().zip(["pcm_s16le", "flac", "aac"]) {
        let (found, rate, channels, duration) = probe(&bucket.join(key)).await;
        assert_eq!((found.as_str(), rate, channels), (codec, 44100, 2), "{key}");
        assert!(
            (duration - input_duration).abs() <= 0.1,
            "{key}: {duration} s, input {input_duration} s"
        );
    }
    // The download link serves the file.
    let url = done["outputs"][1]["url"].as_str().unwrap();
    let path = url.split_once(&runner.address).unwrap().1;
    let (status, _) = runner.http("GET", path, "alice", "").await;
    assert_eq!(status, 200);

    assert!(runner.messages("bob").await.is_empty());
    assert_eq!(runner.count(&["job started"]), 2);
    assert_eq!(runner.count(&["record skipped", "notes.txt"]), 1);
    assert!(!bucket.join("transcoded/alice/stray.wav").exists());

    let id = done["id"].as_str().unwrap();
    let (status, _) = runner
        .http("POST", &format!("/messages/{id}/dismiss"), "bob", "")
        .await;
    assert_eq!(status, 404);
    let (status, _) = runner
        .http("POST", &format!("/messages/{id}/dismiss"), "alice", "")
        .await;
    assert_eq!(status, 204);
    let left: Vec<_> = runner
        .messages("alice")
        .await
        .iter()
        .map(|m| m["file"].clone())
        .collect();
    assert_eq!(left, ["broken.mp3"]);

    // Stopped: a file arrives meanwhile. Restarted: it is transcoded, the finished ones are not.
    let wav = bucket.join("transcoded/alice/take one (live).wav");
    let written = std::fs::metadata(&wav).unwrap().modified().unwrap();
    runner.stop().await;
    std::fs::create_dir_all(bucket.join("media/bob")).unwrap();
    std::fs::write(bucket.join("media/bob/late.mp3"), &bytes).unwrap();
    let runner = Runner::start(&dir).await;
    runner
        .wait_for(|r| r.count(&["message written"]) == 1, "bob's message")
        .await;
    runner
        .wait_for(
            |r| r.count(&["duplicate delivery"]) == 2,
            "the finished files to be recognised",
        )
        .await;
    assert_eq!(runner.count(&["job started"]), 1);
    assert_eq!(runner.messages("bob").await[0]["file"], "late.mp3");
    assert_eq!(
        std::fs::metadata(&wav).unwrap().modified().unwrap(),
        written
    );
    let left: Vec<_> = runner
        .messages("alice")
        .await
        .iter()
        .map(|m| m["file"].clone())
        .collect();
    assert_eq!(left, ["broken.mp3"]);
    runner.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
