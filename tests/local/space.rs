//! Bounded outputs and a full disk, through the built `transcoder-local`: a few hundred
//! kilobytes of silence that would become gigabytes are refused before anything is encoded; a
//! user past their quota is refused; below the free-space floor uploads get 507 and queued jobs
//! wait; a disk that fills up during a transcode fails no job, and an upload onto a full disk is
//! 507, never the user's fault. The tests that need a disk of their own run the runner on a
//! tmpfs in its own mount namespace, and are skipped (saying why) where that is not allowed.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::local::{Runner, drop_in, files_under, scratch, silence_bomb, tone};

/// Asks the API for an upload link for `user`; returns the status and the body.
async fn upload_link(runner: &Runner, user: &str, filename: &str, size: u64) -> (u16, Value) {
    let body = json!({"filename": filename, "size": size, "content_type": "audio/wav"});
    runner
        .http("POST", "/uploads", user, &body.to_string())
        .await
}

/// The path and query of a link to the runner.
fn path_of(runner: &Runner, link: &Value) -> String {
    let url = link["url"].as_str().unwrap();
    url.split_once(&runner.address).unwrap().1.to_owned()
}

/// `user`'s only message, once written.
async fn only_message(runner: &Runner, user: &str) -> Value {
    let messages = runner.messages(user).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages[0].clone()
}

/// Fills the disk under `dir` with a file of zeros at `path` until it is full; returns its size.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    while let Ok(n) = file.write(&chunk) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

/// Shrinks the file at `path` to `size` bytes, freeing the rest of it.
fn shrink(path: &Path, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

#[tokio::test]
async fn a_silence_bomb_is_refused_before_it_is_encoded() {
    let dir = scratch();
    // An hour of 8 kHz mono silence: 656 KB of FLAC that would be 635 MB of WAV and 1.3 GiB in
    // all.
    let bomb = dir.join("bomb.flac");
    silence_bomb(&bomb, 3600).await;
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2 << 20);
    let runner = Runner::start(&dir).await;
    let bucket = dir.join("bucket");
    drop_in(&bucket, "media/alice/bomb.flac", &bomb);
    runner.wait_for_messages(1).await;
    let message = only_message(&runner, "alice").await;
    assert_eq!(message["state"], "failed", "{message}");
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains(
            "the outputs of its 1 h 0 min of audio would be 1.3 GiB, more than the 1 GiB limit per upload"
        ),
        "{text}"
    );
    // Nothing was encoded, not even a temporary file that was then removed.
    assert_eq!(runner.count(&["output written"]), 0);
    assert_eq!(
        files_under(&bucket.join("transcoded")),
        Vec::<std::path::PathBuf>::new()
    );
    let logs = runner.stop().await;
    assert!(!logs.iter().any(|l| l.contains("transcoding")), "{logs:?}");
}

#[tokio::test]
async fn a_user_past_their_quota_is_refused_and_another_user_is_not() {
    let dir = scratch();
    let (alice_song, bob_song) = (dir.join("alice.wav"), dir.join("bob.wav"));
    tone(&alice_song, 8.0).await;
    tone(&bob_song, 1.0).await;
    // 2 MiB each: 8 s of audio makes 3 MiB of outputs, 1 s under half a MiB.
    let runner = Runner::start_with(&dir, &[("USER_QUOTA_BYTES", "2097152")]).await;
    let bucket = dir.join("bucket");
    drop_in(&bucket, "media/alice/long.wav", &alice_song);
    drop_in(&bucket, "media/bob/short.wav", &bob_song);
    runner.wait_for_messages(2).await;
    let alices = only_message(&runner, "alice").await;
    assert_eq!(alices["state"], "failed", "{alices}");
    let text = alices["text"].as_str().unwrap();
    assert!(text.contains("past your 2 MiB quota"), "{text}");
    assert!(text.contains("remove some of your files"), "{text}");
    assert_eq!(only_message(&runner, "bob").await["state"], "completed");
    assert_eq!(files_under(&bucket.join("transcoded/alice")).len(), 0);

    // An upload that would take alice's files past the quota is refused with nothing stored.
    let size = 1_500_000;
    let (status, link) = upload_link(&runner, "alice", "more.wav", size).await;
    assert_eq!(status, 201, "{link}");
    let (status, body) = runner
        .put(
            &path_of(&runner, &link),
            "audio/wav",
            &vec![0; size as usize],
        )
        .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert!(!bucket.join("media/alice/more.wav").exists());
    runner.stop().await;
}

#[tokio::test]
async fn below_the_free_space_floor_uploads_are_refused_and_a_dropped_file_waits() {
    let dir = scratch();
    let song = dir.join("song.wav");
    tone(&song, 2.0).await;
    // A floor no disk has: the runner is below it from the start.
    let floor = [("MIN_FREE_BYTES", "1000000000000000000")];
    let runner = Runner::start_with(&dir, &floor).await;
    let (status, body) = upload_link(&runner, "alice", "song.wav", 1000).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    let bucket = dir.join("bucket");
    drop_in(&bucket, "media/alice/song.wav", &song);
    runner
        .wait_for(
            |r| r.count(&["waiting for free space"]) == 1,
            "the job to wait",
        )
        .await;
    // Several looks at the disk later, still one line, and the job neither ran nor failed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(runner.count(&["waiting for free space"]), 1);
    assert_eq!(runner.count(&["job finished"]), 0);
    assert!(runner.messages("alice").await.is_empty());
    let logs = runner.stop().await;
    assert!(logs.iter().any(|l| l.contains("1 job waiting")), "{logs:?}");

    // With the default floor, the waiting job runs.
    let runner = Runner::start(&dir).await;
    runner.wait_for_messages(1).await;
    assert_eq!(only_message(&runner, "alice").await["state"], "completed");
    runner.stop().await;
}

#[tokio::test]
async fn a_disk_that_fills_up_fails_no_job_and_the_job_completes_once_space_is_back() {
    let dir = scratch();
    let song = dir.join("long.mp3");
    // 60 s: about 1 MB of MP3, and 14 MB or so of outputs.
    tone(&song, 60.0).await;
    let env = [("MIN_FREE_BYTES", "8388608")];
    let Some(runner) = Runner::start_on_tmpfs(&dir, "24m", &env).await else {
        return;
    };
    let root = runner.inside(&dir);
    let filler = root.join("filler");

    // Below the 8 MiB floor: no link, no upload through a link signed before, and a dropped
    // file's job waits.
    let (status, link) = upload_link(&runner, "alice", "early.wav", 100_000).await;
    assert_eq!(status, 201, "{link}");
    fill(&filler);
    shrink(&filler, 20 << 20);
    let (status, body) = upload_link(&runner, "alice", "song.wav", 1000).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (507, &json!("insufficient_storage"))
    );
    let (status, body) = runner
        .put(&path_of(&runner, &link), "audio/wav", &vec![0; 100_000])
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (507, &json!("insufficient_storage"))
    );
    drop_in(&root.join("bucket"), "media/alice/long.mp3", &song);
    runner
        .wait_for(
            |r| r.count(&["waiting for free space"]) == 1,
            "the job to wait below the floor",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runner.count(&["job finished"]), 0);

    // Above the floor, but with less room than the outputs take: ffmpeg finds the disk full.
    shrink(&filler, 12 << 20);
    runner
        .wait_for(
            |r| r.count(&["the disk is full", "No space left on device"]) == 1,
            "ffmpeg to find the disk full",
        )
        .await;
    runner
        .wait_for(
            |r| r.count(&["waiting for free space"]) == 2,
            "the job to wait for more space",
        )
        .await;
    // A full disk is nobody's failure: no message, no end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(runner.messages("alice").await.is_empty());
    assert_eq!(runner.count(&["job finished"]), 0);

    std::fs::remove_file(&filler).unwrap();
    runner.wait_for_messages(1).await;
    let message = only_message(&runner, "alice").await;
    assert_eq!(message["state"], "completed", "{message}");
    for output in message["outputs"].as_array().unwrap() {
        let key = output["key"].as_str().unwrap();
        assert!(root.join("bucket").join(key).is_file(), "{key}");
    }
    // Each change of the disk's state logged once, however often it was looked at.
    let logs = runner.stop().await;
    let lines = |what: &str| logs.iter().filter(|l| l.contains(what)).count();
    let all = logs.join("\n");
    assert_eq!(lines("waiting for free space"), 2, "{all}");
    assert_eq!(lines("space is back"), 2, "{all}");
}

#[tokio::test]
async fn an_upload_onto_a_full_disk_is_507_and_leaves_nothing() {
    let dir = scratch();
    let env = [("MIN_FREE_BYTES", "0")];
    let Some(runner) = Runner::start_on_tmpfs(&dir, "4m", &env).await else {
        return;
    };
    let root = runner.inside(&dir);
    let size = 256 << 10;
    let (status, link) = upload_link(&runner, "alice", "song.wav", size).await;
    assert_eq!(status, 201, "{link}");
    let filler = root.join("filler");
    let filled = fill(&filler);
    shrink(&filler, filled - (64 << 10));
    let (status, body) = runner
        .put(
            &path_of(&runner, &link),
            "audio/wav",
            &vec![0; size as usize],
        )
        .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    let left: Vec<_> = files_under(&root.join("bucket/media"));
    assert_eq!(left, Vec::<std::path::PathBuf>::new());
    runner.stop().await;
}
