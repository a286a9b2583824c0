//! Every upload ends: a file copied over itself while it transcodes is one upload per copy, and
//! each of them reaches an end state its owner can see (the newest `completed`, every older one
//! `superseded`), never a progress bar that stays for ever; also across a restart and a `kill -9`.
//! The built `transcoder-local` with real ffmpeg.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::local::{Runner, scratch, tone};
use transcoder_testkit::Scratch;

/// What the runner's record of a superseded upload says.
const REPLACED: &str = "replaced by a newer upload of the same file";

/// `user`'s uploads, newest first.
async fn uploads(runner: &Runner, user: &str) -> Vec<Value> {
    let (status, body) = runner.http("GET", "/uploads?limit=100", user, "").await;
    assert_eq!(status, 200, "{body}");
    body["uploads"].as_array().unwrap().clone()
}

/// Waits until `user` has `count` uploads, none of them `received` or `transcoding`.
async fn ended(runner: &Runner, user: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let uploads = uploads(runner, user).await;
        let open = uploads
            .iter()
            .filter(|u| u["state"] == "received" || u["state"] == "transcoding")
            .count();
        if uploads.len() == count && open == 0 {
            return uploads;
        }
        assert!(
            Instant::now() < deadline,
            "uploads still open after 4 minutes: {uploads:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each upload's id, state, reason and percentage (its links are signed anew by each run).
fn ends(uploads: &[Value]) -> Vec<[Value; 4]> {
    uploads
        .iter()
        .map(|u| ["id", "state", "reason", "percent"].map(|f| u[f].clone()))
        .collect()
}

/// The newest upload `completed` and every older one `superseded` by the next, with its reason
/// and no percentage (the page shows no progress bar for it).
fn newest_completed_the_rest_superseded(uploads: &[Value]) {
    let states: Vec<&str> = uploads
        .iter()
        .map(|u| u["state"].as_str().unwrap())
        .collect();
    let mut expected = vec!["superseded"; uploads.len()];
    expected[0] = "completed";
    assert_eq!(states, expected, "{uploads:#?}");
    for older in &uploads[1..] {
        assert_eq!(older["reason"], REPLACED, "{older:#}");
        assert_eq!(older["percent"], Value::Null, "{older:#}");
        assert!(older["outputs"].as_array().unwrap().is_empty(), "{older:#}");
    }
    assert_eq!(uploads[0]["outputs"].as_array().unwrap().len(), 3);
}

/// A scratch folder with a 15-minute tone beside its bucket, and a runner on it.
async fn runner_and_long_file() -> (Scratch, Runner) {
    let dir = scratch();
    std::fs::create_dir_all(dir.join("bucket/media/dup")).unwrap();
    tone(&dir.join("long.flac"), 900.0).await;
    let runner = Runner::start(&dir).await;
    (dir, runner)
}

/// Copies `dir`'s long file over `dup`'s `re.flac` `times` times, each once the previous copy
/// became an upload whose job runs.
async fn copy_over_itself(runner: &Runner, dir: &Path, times: usize) {
    let target = dir.join("bucket/media/dup/re.flac");
    for copy in 1..=times {
        std::fs::copy(dir.join("long.flac"), &target).unwrap();
        runner
            .wait_for(
                |r| r.count(&["job started"]) == copy,
                "the copy's job to start",
            )
            .await;
        // Into its transcode, as a user copying again a few seconds later would be.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

#[tokio::test]
async fn a_file_copied_over_itself_while_it_transcodes_ends_every_upload() {
    let (dir, runner) = runner_and_long_file().await;
    copy_over_itself(&runner, &dir, 5).await;
    let first = ended(&runner, "dup", 5).await;
    newest_completed_the_rest_superseded(&first);
    // The user hears of the file in the bucket alone.
    assert_eq!(runner.files("dup").await, ["re.flac"]);

    // A restart runs none of them again and leaves every end as it was.
    runner.stop().await;
    let runner = Runner::start(&dir).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ends(&uploads(&runner, "dup").await), ends(&first));
    assert_eq!(runner.count(&["job started"]), 0);
    assert_eq!(runner.files("dup").await, ["re.flac"]);
    runner.stop().await;
}

#[tokio::test]
async fn superseded_uploads_end_across_a_kill_and_a_restart() {
    let (dir, runner) = runner_and_long_file().await;
    copy_over_itself(&runner, &dir, 3).await;
    // Killed while the newest copy transcodes, two older ones superseded.
    let (status, _) = runner.signal("KILL").await;
    assert!(!status.success());

    // A build before this one left superseded uploads `transcoding`: one of them is put back so.
    let store = rusqlite::Connection::open(dir.join("store/messages.sqlite3")).unwrap();
    let stuck = store
        .execute(
            // Rank 12 is `transcoding` at 10 % (`UploadRecord::rank`).
            "UPDATE uploads SET rank = 12, body = json_set(body, '$.state', 'transcoding',
                 '$.percent', 10, '$.reason', json('null'))
             WHERE rowid = (SELECT min(rowid) FROM uploads)",
            [],
        )
        .unwrap();
    assert_eq!(stuck, 1);
    drop(store);

    let runner = Runner::start(&dir).await;
    let uploads = ended(&runner, "dup", 3).await;
    newest_completed_the_rest_superseded(&uploads);
    assert_eq!(runner.files("dup").await, ["re.flac"]);
    // Only the newest, interrupted job ran again.
    assert!(runner.count(&["unfinished job", "resumed"]) == 1);
    runner.stop().await;
}
