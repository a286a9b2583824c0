//! The local pipeline loses nothing: whatever stops the runner mid-job (Ctrl-C, `kill -9`), the next
//! start finishes the job exactly once, and a file rewritten mid-job is transcoded as it is now.
//! The built `transcoder-local` with real ffmpeg; outputs checked with ffprobe.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use system_tests::local::{Runner, files_under, probe, scratch, tone};

/// Hidden temporary files below `dir`, as ffmpeg writes them while a job runs.
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".part"))
        })
        .collect()
}

/// Waits until ffmpeg is writing in `dir`.
async fn transcoding(dir: &Path, runner: &Runner) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_files(dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no transcode started in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(runner.count(&["job started"]) >= 1);
}

/// Waits for `user`'s messages to number `count`, then checks that no more arrive for a while.
async fn settled_messages(runner: &Runner, user: &str, count: usize) -> Vec<serde_json::Value> {
    // A hang guard, not a timing: a 15-minute tone is transcoded again after the restart, and a
    // loaded machine may take minutes.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let messages = runner.messages(user).await;
        assert!(messages.len() <= count, "too many messages: {messages:#?}");
        if messages.len() == count {
            break;
        }
        assert!(Instant::now() < deadline, "waited for {count} messages");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second job for the same upload would write its message within this time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = runner.messages(user).await;
    assert_eq!(messages.len(), count, "{messages:#?}");
    messages
}

/// Each output of a `completed` message exists, whole, as long as `seconds`.
async fn assert_outputs(bucket: &Path, message: &serde_json::Value, seconds: f64) {
    assert_eq!(message["state"], "completed", "{message:#}");
    let outputs = message["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3, "{message:#}");
    for output in outputs {
        let key = output["key"].as_str().unwrap();
        let (_, _, _, duration) = probe(&bucket.join(key)).await;
        assert!(
            (duration - seconds).abs() <= 0.5,
            "{key}: {duration} s, expected {seconds} s"
        );
    }
}

async fn stopped_mid_transcode_then_restarted(signal: &str) {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (media, out) = (bucket.join("media/alice"), bucket.join("transcoded/alice"));
    std::fs::create_dir_all(&media).unwrap();
    let long = dir.join("long.mp3");
    tone(&long, 900.0).await;
    let runner = Runner::start(&dir).await;
    std::fs::copy(&long, media.join("long.mp3")).unwrap();
    transcoding(&out, &runner).await;

    // (The harness gives up on a runner that has not exited 20 s after the signal.)
    let (status, logs) = runner.signal(signal).await;
    if signal == "INT" {
        // Ctrl-C stops cleanly and says what is left to do.
        assert!(status.success(), "{status}; logs:\n{}", logs.join("\n"));
        assert!(
            logs.iter().any(|l| l.contains("1 job waiting")),
            "{}",
            logs.join("\n")
        );
    }

    let runner = Runner::start(&dir).await;
    let messages = settled_messages(&runner, "alice", 1).await;
    let (_, _, _, seconds) = probe(&long).await;
    assert_outputs(&bucket, &messages[0], seconds).await;
    assert!(partial_files(&out).is_empty(), "{:?}", partial_files(&out));
    assert!(
        runner.count(&["unfinished job", "resumed"]) == 1,
        "the start-up log says what it recovered"
    );
    runner.stop().await;
}

#[tokio::test]
async fn ctrl_c_during_a_transcode_loses_nothing() {
    stopped_mid_transcode_then_restarted("INT").await;
}

#[tokio::test]
async fn a_kill_during_a_transcode_loses_nothing() {
    stopped_mid_transcode_then_restarted("KILL").await;
}

#[tokio::test]
async fn a_kill_after_a_file_is_announced_and_before_it_transcodes_loses_nothing() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (media, out) = (bucket.join("media/alice"), bucket.join("transcoded/alice"));
    std::fs::create_dir_all(&media).unwrap();
    let (long, short) = (dir.join("long.mp3"), dir.join("short.mp3"));
    tone(&long, 900.0).await;
    tone(&short, 4.0).await;
    // One job at a time: the short file is announced and queued while the long one transcodes.
    let env = [("TRANSCODE_CONCURRENCY", "1")];
    let runner = Runner::start_with(&dir, &env).await;
    std::fs::copy(&long, media.join("long.mp3")).unwrap();
    transcoding(&out, &runner).await;
    std::fs::copy(&short, media.join("short.mp3")).unwrap();
    runner
        .wait_for(|r| r.count(&["job started"]) == 2, "the short file's job")
        .await;
    let (status, _) = runner.signal("KILL").await;
    assert!(!status.success());

    let runner = Runner::start_with(&dir, &env).await;
    let messages = settled_messages(&runner, "alice", 2).await;
    for (name, path) in [("long.mp3", &long), ("short.mp3", &short)] {
        let message = messages.iter().find(|m| m["file"] == name).unwrap();
        let (_, _, _, seconds) = probe(path).await;
        assert_outputs(&bucket, message, seconds).await;
    }
    assert!(partial_files(&out).is_empty());
    runner.stop().await;
}

#[tokio::test]
async fn a_file_rewritten_while_it_transcodes_is_transcoded_as_it_is_now() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (media, out) = (bucket.join("media/alice"), bucket.join("transcoded/alice"));
    std::fs::create_dir_all(&media).unwrap();
    let (first, second) = (dir.join("first.mp3"), dir.join("second.mp3"));
    tone(&first, 900.0).await;
    tone(&second, 7.0).await;
    let runner = Runner::start(&dir).await;
    std::fs::copy(&first, media.join("song.mp3")).unwrap();
    transcoding(&out, &runner).await;
    // The user uploads again, under the same name, while the first version transcodes.
    let replaced = media.join(".song.mp3.upload");
    std::fs::copy(&second, &replaced).unwrap();
    std::fs::rename(&replaced, media.join("song.mp3")).unwrap();

    let messages = settled_messages(&runner, "alice", 1).await;
    let (_, _, _, seconds) = probe(&second).await;
    assert_outputs(&bucket, &messages[0], seconds).await;
    assert!(partial_files(&out).is_empty());
    runner.stop().await;
}

#[tokio::test]
async fn a_message_that_cannot_be_written_for_a_while_is_written_when_the_store_frees_up() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (media, out) = (bucket.join("media/alice"), bucket.join("transcoded/alice"));
    std::fs::create_dir_all(&media).unwrap();
    let song = dir.join("song.mp3");
    tone(&song, 300.0).await;
    let runner = Runner::start(&dir).await;
    std::fs::copy(&song, media.join("song.mp3")).unwrap();
    transcoding(&out, &runner).await;

    // While the job runs, another program takes the store's write lock and holds it for longer
    // than the runner ever waited (a 5 s busy timeout, five attempts): the job ends meanwhile.
    let store = dir.join("store/messages.sqlite3");
    let (locked, is_locked) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let connection = rusqlite::Connection::open(store).unwrap();
        connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(40));
        connection.execute_batch("COMMIT").unwrap();
    });
    is_locked.recv().unwrap();
    runner
        .wait_for(
            |r| r.count(&["job finished"]) == 1,
            "the job to end while the store is locked",
        )
        .await;
    tokio::task::spawn_blocking(move || locker.join().unwrap())
        .await
        .unwrap();

    let messages = settled_messages(&runner, "alice", 1).await;
    let (_, _, _, seconds) = probe(&song).await;
    assert_outputs(&bucket, &messages[0], seconds).await;
    runner.stop().await;
}
