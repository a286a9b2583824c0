//! One owner per data folder, and no orphans, through the built `transcoder-local` with real
//! ffmpeg: a second runner on the same folders (or on a taken port) exits at once and touches
//! nothing of the first's; a runner killed with `kill -9` leaves no ffmpeg behind, and the next
//! start runs the job with one ffmpeg, once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::local::{Runner, drop_in, files_under, lavfi, scratch, tone};
use system_tests::processes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hidden files below `dir` whose names start with `prefix` and end with `suffix`: ffmpeg's
/// temporary outputs (`.` … `.part`), uploads in flight (`.upload-` …).
fn hidden(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    found.sort();
    found
}

/// `seconds` of a mono 8 kHz tone as WAV: quick to make, and long enough (over 30 s) that the
/// runner logs the transcode's progress.
async fn long_wav(path: &Path, seconds: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let sine = format!("sine=frequency=440:sample_rate=8000:duration={seconds}");
    lavfi(path, &sine, &["-ac", "1"]).await;
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
async fn signal(pid: u32, signal: &str) {
    let status = tokio::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_second_runner_on_the_same_folders_exits_at_once_and_touches_nothing() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let out = bucket.join("transcoded/alice");
    let long = dir.join("long.wav");
    long_wav(&long, 60).await;
    let song = dir.join("song.mp3");
    tone(&song, 1.5).await;
    let bytes = std::fs::read(&song).unwrap();

    let first = Runner::start(&dir).await;
    drop_in(&bucket, "media/alice/long.wav", &long);
    wait_until("ffmpeg to write", || !hidden(&out, ".", ".part").is_empty()).await;
    // Paused, so that the job is surely running while the second runner starts.
    let ffmpeg = processes::transcodes_in(&dir);
    assert_eq!(ffmpeg.len(), 1, "{ffmpeg:?}");
    signal(ffmpeg[0].pid, "STOP").await;
    // An upload in flight: its head and half its body sent.
    let body = json!({"filename": "song.mp3", "size": bytes.len(), "content_type": "audio/mpeg"});
    let (status, link) = first
        .http("POST", "/uploads", "alice", &body.to_string())
        .await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap();
    let path = url.split_once(&first.address).unwrap().1;
    let mut put = TcpStream::connect(&first.address).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/mpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    put.write_all(head.as_bytes()).await.unwrap();
    let half = bytes.len() / 2;
    put.write_all(&bytes[..half]).await.unwrap();
    wait_until("the upload to be in flight", || {
        !hidden(&bucket, ".upload-", "").is_empty()
    })
    .await;
    let parts = hidden(&out, ".", ".part");
    let uploading = hidden(&bucket, ".upload-", "");

    // Same BUCKET_DIR and STORE_PATH, another port.
    let (status, logs) = Runner::start_refused(&dir, &[]).await;
    assert!(!status.success(), "{status}");
    let said = format!("another transcoder-local (PID {}) is using", first.pid());
    assert!(
        logs.iter().any(|l| l.contains(&said)),
        "{said}; logs:\n{}",
        logs.join("\n")
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("removed") || l.contains("resumed")),
        "it recovered nothing: {}",
        logs.join("\n")
    );
    // The first runner's temporary outputs and its upload are where they were...
    for part in &parts {
        assert!(part.exists(), "{} was removed", part.display());
    }
    assert_eq!(hidden(&bucket, ".upload-", ""), uploading);
    signal(ffmpeg[0].pid, "CONT").await;

    // ...the upload ends well...
    put.write_all(&bytes[half..]).await.unwrap();
    let mut answer = Vec::new();
    put.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        std::fs::read(bucket.join("media/alice/song.mp3")).unwrap(),
        bytes
    );
    // ...and the running job ends once, completed.
    first.wait_for_messages(2).await;
    let messages = first.messages("alice").await;
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages.iter().all(|m| m["state"] == "completed"),
        "{messages:#?}"
    );
    assert_eq!(first.count(&["job started", "long.wav"]), 1);
    assert_eq!(first.count(&["cannot move"]), 0);
    first.stop().await;
}

#[tokio::test]
async fn a_runner_whose_port_is_taken_exits_before_it_touches_its_folders() {
    let dir = scratch();
    let alice = dir.join("bucket/media/alice");
    let out = dir.join("bucket/transcoded/alice");
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    // What an earlier run would leave, which a runner that starts removes.
    let upload = alice.join(".upload-4242-0");
    let part = out.join(".song.mp3.wav.local-1-0.part");
    std::fs::write(&upload, b"cut off").unwrap();
    std::fs::write(&part, b"cut off").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();

    let (status, logs) = Runner::start_refused(&dir, &[("LISTEN_ADDR", &address)]).await;
    assert!(!status.success(), "{status}");
    assert!(
        logs.iter()
            .any(|l| l.contains(&format!("cannot listen on {address} (LISTEN_ADDR)"))),
        "{}",
        logs.join("\n")
    );
    assert!(upload.exists() && part.exists(), "{}", logs.join("\n"));
    assert!(!dir.join("store/messages.sqlite3").exists());
    drop(taken);
}

#[tokio::test]
async fn a_killed_runner_leaves_no_ffmpeg_behind_and_the_restart_runs_the_job_once() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let long = dir.join("long.wav");
    long_wav(&long, 60).await;
    let mut runner = Runner::start(&dir).await;
    drop_in(&bucket, "media/alice/long.wav", &long);
    runner
        .wait_for(
            // Progress comes every half second in steps of 10 %: a fast ffmpeg skips 20.
            |r| {
                r.logs().iter().any(|l| {
                    l.contains("transcoding")
                        && l.split_once("percent=")
                            .and_then(|(_, p)| {
                                p.split(|c: char| !c.is_ascii_digit())
                                    .next()?
                                    .parse::<u32>()
                                    .ok()
                            })
                            .is_some_and(|p| p >= 20)
                })
            },
            "20 % of the transcode or more",
        )
        .await;
    let running = processes::transcodes_in(&dir);
    assert_eq!(running.len(), 1, "{running:?}");
    let pid = runner.pid();
    assert_eq!(running[0].parent, pid, "{running:?}");
    // Paused, so that it cannot finish on its own meanwhile: only a kill ends it.
    signal(running[0].pid, "STOP").await;

    runner.crash().await;
    // The kernel kills ffmpeg as the runner dies; without that, it would stay, adopted by init.
    let gone = processes::wait_until(|| !processes::alive(running[0].pid)).await;
    let left = processes::ffmpeg_in(&dir);
    if !gone {
        signal(running[0].pid, "KILL").await;
    }
    assert!(gone, "ffmpeg {left:?} outlived its runner");
    drop(runner);

    let runner = Runner::start(&dir).await;
    let mut most = 0;
    let mut seen = Vec::new();
    while runner.count(&["message written"]) == 0 {
        let now = processes::transcodes_in(&dir);
        most = most.max(now.len());
        seen.extend(now.iter().map(|p| p.pid));
        assert!(most <= 1, "two ffmpeg transcoding one job: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            runner.count(&["job finished"]) <= 1,
            "{}",
            runner.logs().join("\n")
        );
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "one ffmpeg ran the job again: {seen:?}");
    let messages = runner.messages("alice").await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["state"], "completed", "{messages:#?}");
    assert_eq!(runner.count(&["job finished"]), 1);
    assert_eq!(runner.count(&["unfinished job", "resumed"]), 1);
    assert_eq!(
        hidden(&bucket.join("transcoded"), ".", ".part"),
        Vec::<PathBuf>::new()
    );
    runner.stop().await;
}
