//! Untrusted uploads through `make run`'s pipeline: the built `transcoder-local` binary with a
//! folder as the bucket and real ffmpeg. Playlists named like audio read nobody's files, files of
//! one name keep outputs of their own, jobs keep their temporary files apart, and
//! audio longer than `MAX_DURATION_SECONDS` is refused. An ID3 header that claims more than the
//! file is refused for that reason; links, FIFOs and names that are not UTF-8 or not NFC are
//! logged once each, and a name's bidi controls are escaped in the log.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use system_tests::local::{Runner, files_under, hls_playlist, probe, scratch, tone};

fn by_file<'m>(messages: &'m [Value], file: &str) -> &'m Value {
    messages
        .iter()
        .find(|m| m["file"] == file)
        .unwrap_or_else(|| panic!("no message for {file}: {messages:?}"))
}

#[tokio::test]
async fn playlists_uploaded_as_mp3_fail_and_read_nobody_elses_audio() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let song = bucket.join("media/alice/song.mp3");
    tone(&song, 2.0).await;
    let bob = bucket.join("media/bob");
    std::fs::create_dir_all(&bob).unwrap();
    let absolute = std::path::absolute(&song).unwrap();
    let playlists = [
        ("absolute.mp3", hls_playlist(absolute.to_str().unwrap(), 1)),
        ("relative.mp3", hls_playlist("../alice/song.mp3", 1)),
        ("repeated.mp3", hls_playlist("../alice/song.mp3", 500)),
    ];
    for (name, text) in &playlists {
        std::fs::write(bob.join(name), text).unwrap();
    }
    let runner = Runner::start(&dir).await;
    // The starter refuses each playlist by its bytes and tells bob; alice's song is transcoded.
    runner
        .wait_for(
            |r| r.count(&["upload refused"]) == 3 && r.count(&["message written"]) == 1,
            "three refusals and alice's message",
        )
        .await;
    assert_eq!(runner.count(&["job started"]), 1);

    assert_eq!(runner.messages("alice").await[0]["state"], "completed");
    let messages = runner.messages("bob").await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    for (name, _) in &playlists {
        let message = by_file(&messages, name);
        assert_eq!(message["state"], "failed", "{message}");
        let text = message["text"].as_str().unwrap();
        assert!(text.contains("not an audio file"), "{text}");
        assert_eq!(message["outputs"], serde_json::json!([]), "{message}");
    }
    assert_eq!(
        files_under(&bucket.join("transcoded/bob")),
        Vec::<PathBuf>::new()
    );
    runner.stop().await;
}

#[tokio::test]
async fn an_id3_header_claiming_more_than_the_file_is_refused_for_that_reason() {
    let dir = scratch();
    let alice = dir.join("bucket/media/alice");
    std::fs::create_dir_all(&alice).unwrap();
    // An ID3v2.4 header claiming the largest tag there is (256 MiB), in a 56 KiB file.
    let mut bomb = b"ID3\x04\x00\x00\x7F\x7F\x7F\x7F".to_vec();
    bomb.resize(56 * 1024, 0xAA);
    std::fs::write(alice.join("bomb.mp3"), &bomb).unwrap();
    let runner = Runner::start(&dir).await;
    runner
        .wait_for(|r| r.count(&["upload refused"]) == 1, "the refusal")
        .await;
    let messages = runner.messages("alice").await;
    let message = by_file(&messages, "bomb.mp3");
    assert_eq!(message["state"], "failed", "{message}");
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("not an audio file: its ID3 tag claims 256 MiB but the file is 56 KiB"),
        "{text}"
    );
    assert!(!text.contains("empty"), "{text}");
    assert_eq!(runner.count(&["job started"]), 0);
}

#[tokio::test]
async fn skipped_entries_are_logged_once_with_their_reason_and_names_are_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = scratch();
    let alice = dir.join("bucket/media/alice");
    std::fs::create_dir_all(&alice).unwrap();
    let song = dir.join("song.mp3");
    tone(&song, 1.0).await;
    std::os::unix::fs::symlink(&song, alice.join("link.mp3")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(alice.join("pipe.mp3"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let not_utf8 = alice.join(std::ffi::OsStr::from_bytes(b"caf\xE9.mp3"));
    std::fs::copy(&song, &not_utf8).unwrap();
    std::fs::copy(&song, alice.join("cafe\u{301}.mp3")).unwrap();
    // Shown as `evil.mp3` by a terminal that obeys U+202E; the log must show it as it is.
    std::fs::copy(&song, alice.join("\u{202e}3pm.evil.mp3")).unwrap();

    let runner = Runner::start(&dir).await;
    runner
        .wait_for(
            |r| r.count(&["message written"]) >= 1,
            "the real upload's message",
        )
        .await;
    // Many scans later (four a second), each skipped entry has been logged exactly once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, reason) in [
        ("link.mp3", "symbolic link"),
        ("pipe.mp3", "not a regular file"),
        ("caf\u{fffd}.mp3", "not UTF-8"),
        ("cafe\u{301}.mp3", "not in Unicode NFC"),
    ] {
        assert_eq!(runner.count(&["skipped", name, reason]), 1, "{name}");
    }
    // Only the file with the U+202E is an upload: the name not in NFC is not a second `café`.
    assert_eq!(runner.files("alice").await, ["\u{202e}3pm.evil.mp3"]);
    let logs = runner.stop().await;
    assert!(
        logs.iter().all(|l| !l.contains('\u{202e}')),
        "a raw U+202E reached the log"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("job started") && l.contains("\\u{202e}3pm.evil.mp3")),
        "{}",
        logs.join("\n")
    );
}

#[tokio::test]
async fn an_mp3_and_a_wav_of_one_name_get_outputs_of_their_own() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (mp3, wav) = (
        bucket.join("media/alice/x.mp3"),
        bucket.join("media/alice/x.wav"),
    );
    tone(&mp3, 2.0).await;
    tone(&wav, 3.5).await;
    let runner = Runner::start(&dir).await;
    runner.wait_for_messages(2).await;

    let messages = runner.messages("alice").await;
    let mut keys = BTreeSet::new();
    for (source, file) in [(&mp3, "x.mp3"), (&wav, "x.wav")] {
        let message = by_file(&messages, file);
        assert_eq!(message["state"], "completed", "{message}");
        let (_, _, _, expected) = probe(source).await;
        for output in message["outputs"].as_array().unwrap() {
            let key = output["key"].as_str().unwrap();
            assert!(keys.insert(key.to_owned()), "{key} is shared");
            let (_, _, _, seconds) = probe(&bucket.join(key)).await;
            assert!(
                (seconds - expected).abs() <= 0.1,
                "{key}: {seconds} s, its source {expected} s"
            );
        }
    }
    assert_eq!(keys.len(), 6, "{keys:?}");
    runner.stop().await;
}

#[tokio::test]
async fn a_new_upload_of_a_key_stops_its_running_job_and_no_temporary_file_is_shared() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (first, second) = (dir.join("first.mp3"), dir.join("second.mp3"));
    // The later upload is the shorter: were the earlier job let run, it would finish last and
    // overwrite the newer outputs.
    tone(&first, 300.0).await;
    tone(&second, 240.0).await;
    let (_, _, _, second_seconds) = probe(&second).await;
    let runner = Runner::start_with(&dir, &[("TRANSCODE_CONCURRENCY", "2")]).await;
    let alice = bucket.join("media/alice");
    std::fs::create_dir_all(&alice).unwrap();
    let outputs = bucket.join("transcoded/alice");

    // Every set of temporary files seen in the output folder while the jobs run.
    let seen: Arc<Mutex<Vec<BTreeSet<String>>>> = Arc::default();
    let watching = {
        let (seen, outputs) = (seen.clone(), outputs.clone());
        tokio::spawn(async move {
            loop {
                let parts: BTreeSet<String> = files_under(&outputs)
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                    .filter(|n| n.starts_with('.'))
                    .collect();
                if !parts.is_empty() {
                    seen.lock().unwrap().push(parts);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // An upload, then a new upload of the same key (written beside it and renamed over it, as
    // the upload route does) once the first job is writing.
    std::fs::copy(&first, alice.join("talk.mp3")).unwrap();
    runner
        .wait_for(
            |_| !seen.lock().unwrap().is_empty(),
            "the first job to write",
        )
        .await;
    std::fs::copy(&second, alice.join(".talk.mp3.upload")).unwrap();
    std::fs::rename(alice.join(".talk.mp3.upload"), alice.join("talk.mp3")).unwrap();
    runner.wait_for_messages(1).await;
    // A second message would come from the older job, had it been let finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    watching.abort();
    let messages = runner.messages("alice").await;
    let logs = runner.stop().await;

    // One job per upload, each with its own id; every temporary file names the job it is of.
    let ids: BTreeSet<String> = logs
        .iter()
        .filter(|l| l.contains("job started"))
        .filter_map(|l| {
            l.split("job_id=")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), 2, "{}", logs.join("\n"));
    let seen = seen.lock().unwrap().clone();
    for name in seen.iter().flatten() {
        let owners = ids.iter().filter(|id| name.contains(id.as_str())).count();
        assert_eq!(owners, 1, "{name} names no job, or two: {ids:?}");
    }
    // The newer upload stopped the older job: one message, the newer audio's outputs.
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["state"], "completed", "{messages:?}");
    assert!(ids.contains(messages[0]["id"].as_str().unwrap()));
    for key in ["talk.mp3.wav", "talk.mp3.flac", "talk.mp3.m4a"] {
        let (_, _, _, seconds) = probe(&outputs.join(key)).await;
        assert!(
            (seconds - second_seconds).abs() <= 0.1,
            "{key}: {seconds} s, the newer upload {second_seconds} s"
        );
    }
    let left: Vec<PathBuf> = files_under(&outputs)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new());
}

#[tokio::test]
async fn audio_longer_than_max_duration_seconds_fails_saying_so() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    tone(&bucket.join("media/alice/long.wav"), 3.0).await;
    tone(&bucket.join("media/alice/short.wav"), 1.5).await;
    let runner = Runner::start_with(&dir, &[("MAX_DURATION_SECONDS", "2")]).await;
    runner.wait_for_messages(2).await;

    let messages = runner.messages("alice").await;
    assert_eq!(by_file(&messages, "short.wav")["state"], "completed");
    let long = by_file(&messages, "long.wav");
    assert_eq!(long["state"], "failed");
    assert_eq!(
        long["text"],
        "Your file long.wav could not be processed: the file is too long: 3.0 s of audio; the \
         limit is 2.0 s."
    );
    assert!(!bucket.join("transcoded/alice/long.wav.wav").exists());
    runner.stop().await;
}

#[tokio::test]
async fn temporary_outputs_of_a_killed_run_are_removed_at_start_up() {
    let dir = scratch();
    let outputs = dir.join("bucket/transcoded/alice");
    std::fs::create_dir_all(&outputs).unwrap();
    let left = outputs.join(".song.mp3.wav.local-1700000000000-0.part");
    std::fs::write(&left, b"half a file").unwrap();
    std::fs::write(outputs.join("song.mp3.wav"), b"a finished file").unwrap();
    let runner = Runner::start(&dir).await;
    assert!(!left.exists());
    assert!(outputs.join("song.mp3.wav").exists());
    assert_eq!(
        runner.count(&["0 unfinished jobs resumed, 1 partial file removed"]),
        1
    );
    runner.stop().await;
}
