//! The starter in the local pipeline: the built `transcoder-local` reads each dropped file's first
//! bytes from the bucket folder before any ffmpeg run, so a playlist named like audio never
//! reaches ffmpeg and its owner is told why.

use system_tests::local::{Runner, scratch, tone};

#[tokio::test]
async fn playlists_dropped_in_the_folder_reach_no_transcoder_and_a_restart_reads_none_again() {
    let dir = scratch();
    let bucket = dir.join("bucket");
    let (alice, bob) = (bucket.join("media/alice"), bucket.join("media/bob"));
    std::fs::create_dir_all(&alice).unwrap();
    std::fs::create_dir_all(&bob).unwrap();
    let song = bob.join("song.mp3");
    tone(&song, 1.0).await;
    let absolute = format!("#EXTM3U\n#EXTINF:5.0,\n{}\n", song.display());
    let repeated = "#EXTINF:1.0,\n../bob/song.mp3\n".repeat(500);
    std::fs::write(alice.join("absolute.mp3"), absolute).unwrap();
    std::fs::write(
        alice.join("relative.mp3"),
        "#EXTM3U\n#EXTINF:5.0,\n../bob/song.mp3\n",
    )
    .unwrap();
    std::fs::write(alice.join("repeated.mp3"), format!("#EXTM3U\n{repeated}")).unwrap();

    let runner = Runner::start(&dir).await;
    runner
        .wait_for(
            |r| r.count(&["upload refused"]) == 3 && r.count(&["message written"]) == 1,
            "three refusals and bob's message",
        )
        .await;
    assert_eq!(runner.count(&["job started", "media/bob/song.mp3"]), 1);
    assert_eq!(runner.count(&["job started"]), 1);
    let told = runner.messages("alice").await;
    let mut files = runner.files("alice").await;
    files.sort();
    assert_eq!(files, ["absolute.mp3", "relative.mp3", "repeated.mp3"]);
    for message in &told {
        assert_eq!(message["state"], "failed");
        let text = message["text"].as_str().unwrap_or_default();
        assert!(text.contains("not an audio file"), "{text}");
    }
    let outputs = std::fs::read_dir(bucket.join("transcoded/alice"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(outputs, 0, "no output for a playlist");

    // A restart announces every file again: the claims answer, nothing is read or told twice.
    runner.stop().await;
    let runner = Runner::start(&dir).await;
    runner
        .wait_for(
            |r| r.count(&["duplicate delivery"]) == 4,
            "the four files seen as delivered before",
        )
        .await;
    assert_eq!(runner.count(&["upload refused"]), 0);
    assert_eq!(runner.count(&["job started"]), 0);
    assert_eq!(runner.messages("alice").await.len(), 3);
    runner.stop().await;
}
