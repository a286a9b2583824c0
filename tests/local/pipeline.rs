//! `make run`'s pipeline end to end: the built `transcoder-local` binary with a folder as the
//! bucket, real ffmpeg, and the API on loopback. Outputs are checked with ffprobe.

use std::time::Duration;

use serde_json::{Value, json};

use system_tests::local::{Runner, probe, scratch, tone};

#[tokio::test]
async fn files_dropped_in_the_folder_are_transcoded_listed_and_dismissed() {
    let dir = scratch();
    let song = dir.join("song.mp3");
    tone(&song, 2.5).await;
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
        .wait_for(
            // The broken file is refused by its bytes before any job: the starter tells its owner.
            |r| r.count(&["message written"]) + r.count(&["upload refused"]) == 2,
            "two messages",
        )
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
            .starts_with("Your file broken.mp3 could not be processed: not an audio file: "),
        "{}",
        broken["text"]
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
                "transcoded/alice/take one (live).mp3.wav".to_owned()
            ),
            (
                "flac".to_owned(),
                "transcoded/alice/take one (live).mp3.flac".to_owned()
            ),
            (
                "aac".to_owned(),
                "transcoded/alice/take one (live).mp3.m4a".to_owned()
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
    assert_eq!(runner.count(&["job started"]), 1);
    assert_eq!(runner.count(&["upload refused", "broken.mp3"]), 1);
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
    assert_eq!(runner.files("alice").await, ["broken.mp3"]);

    // Stopped: a file arrives meanwhile. Restarted: it is transcoded, the finished ones are not.
    let wav = bucket.join("transcoded/alice/take one (live).mp3.wav");
    let written = std::fs::metadata(&wav).unwrap().modified().unwrap();
    runner.stop().await;
    std::fs::create_dir_all(bucket.join("media/bob")).unwrap();
    std::fs::write(bucket.join("media/bob/late.mp3"), &bytes).unwrap();
    let runner = Runner::start(&dir).await;
    runner.wait_for_messages(1).await;
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
    assert_eq!(runner.files("alice").await, ["broken.mp3"]);
    runner.stop().await;
}

#[tokio::test]
async fn an_upload_is_visible_while_ffmpeg_transcodes_it_with_its_progress_and_completed_after() {
    let dir = scratch();
    // Long enough that transcoding takes a while, so its progress can be seen.
    let song = dir.join("long set.flac");
    tone(&song, 600.0).await;
    let runner = Runner::start(&dir).await;
    let alice = dir.join("bucket/media/alice");
    std::fs::create_dir_all(&alice).unwrap();
    // Written elsewhere and moved in, so the runner sees it whole at once.
    std::fs::rename(&song, alice.join("long set.flac")).unwrap();

    // Every state Alice's list shows while she watches, until it is final.
    let mut seen: Vec<(String, Value)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let last = loop {
        let (status, page) = runner.http("GET", "/uploads", "alice", "").await;
        assert_eq!(status, 200, "{page}");
        if let Some(upload) = page["uploads"].as_array().and_then(|u| u.first()).cloned() {
            let state = (
                upload["state"].as_str().unwrap().to_owned(),
                upload["percent"].clone(),
            );
            if seen.last() != Some(&state) {
                seen.push(state);
            }
            if upload["state"] != "received" && upload["state"] != "transcoding" {
                break upload;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never final: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last["state"], "completed", "{last}");
    assert_eq!(
        (&last["file"], &last["key"]),
        (&json!("long set.flac"), &json!("media/alice/long set.flac"))
    );
    assert_eq!(last["outputs"].as_array().unwrap().len(), 3);
    // It was seen before it ended, with a percentage that only rose.
    let percents: Vec<u64> = seen
        .iter()
        .filter(|(state, _)| state == "transcoding")
        .filter_map(|(_, percent)| percent.as_u64())
        .collect();
    assert!(seen.len() >= 2, "only ever saw {seen:?}");
    assert!(
        !percents.is_empty(),
        "no percentage while transcoding: {seen:?}"
    );
    assert!(percents.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // The one upload, found by id; nobody else sees it.
    let id = last["id"].as_str().unwrap();
    let (status, one) = runner
        .http("GET", &format!("/uploads/{id}"), "alice", "")
        .await;
    assert_eq!((status, &one), (200, &last));
    let (status, body) = runner
        .http("GET", &format!("/uploads/{id}"), "bob", "")
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("upload_not_found"))
    );
    let (_, bobs) = runner.http("GET", "/uploads", "bob", "").await;
    assert_eq!(bobs["uploads"], json!([]));
    runner.stop().await;
}
