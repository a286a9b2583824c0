//! The local backend against the bare ffmpeg command that makes the same three outputs from one
//! decode: what the runner adds (probing, notifications, renames) on top of ffmpeg itself.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::Command;
use transcoder_core::{JobId, ObjectKey, OutputFormat, Owner, TranscodeJob};
use transcoder_local::ffmpeg::{Ended, Ffmpeg, Limits, encoder_args};

use crate::{median, ms};

/// `seconds` of a 440 Hz sine mixed with noise (so that FLAC has something to compress), as a
/// stereo 44.1 kHz mp3 at 192 kb/s at `path`: the input of every transcode benchmark.
pub async fn make_input(path: &Path, seconds: u32) {
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("anoisesrc=amplitude=0.1:duration={seconds}"),
            "-filter_complex",
            "amix=inputs=2",
            "-ac",
            "2",
            "-ar",
            "44100",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "192k",
        ])
        .arg(path)
        .status()
        .await
        .unwrap();
    assert!(made.success());
}

/// One run of the bare ffmpeg command that makes the default outputs of `input` into `dir`, with
/// the encoder arguments every backend uses, from one decode; returns its wall time.
pub async fn bare_ffmpeg(input: &Path, dir: &Path) -> Duration {
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(input);
    for format in OutputFormat::DEFAULT {
        command
            .args(["-map", "0:a:0", "-map_metadata", "-1", "-vn"])
            .args(encoder_args(format, None))
            .arg(dir.join(format!("bare.{}", format.extension())));
    }
    let started = Instant::now();
    assert!(command.status().await.unwrap().success());
    started.elapsed()
}

pub async fn local_transcode() {
    let seconds: u32 = std::env::var("BENCH_AUDIO_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("bench-transcode-{}", std::process::id()));
    let bucket = dir.join("bucket");
    std::fs::create_dir_all(bucket.join("media/alice")).unwrap();
    let input = bucket.join("media/alice/input.mp3");
    make_input(&input, seconds).await;
    let mut bare = Vec::new();
    for _ in 0..3 {
        bare.push(bare_ffmpeg(&input, &dir).await);
    }

    let backend = Ffmpeg::new(&bucket, Limits::new(Duration::from_secs(4 * 3600)));
    let mut runs = Vec::new();
    for run in 0..3 {
        let job = TranscodeJob::plan(
            "local-bucket",
            ObjectKey::new("media/alice/input.mp3").unwrap(),
            &format!("{run}"),
            Owner::new("alice").unwrap(),
            "input.mp3",
            "transcoded/",
            &OutputFormat::DEFAULT,
        );
        let started = Instant::now();
        let ended = backend
            .run(&JobId(format!("local-bench-{run}")), &job, None)
            .await;
        runs.push(started.elapsed());
        let Ended::Notification(notification) = ended else {
            panic!("nothing replaced the bench's input");
        };
        assert_eq!(notification["state"], "COMPLETED", "{notification}");
    }
    let (bare, backend): (Duration, Duration) = (median(&mut bare), median(&mut runs));
    println!("## Local transcode\n");
    println!(
        "A {seconds}-second stereo mp3 (192 kb/s) to WAV, FLAC and AAC 256k: the runner's ffmpeg backend, from"
    );
    println!(
        "job start to its final notification, against the bare ffmpeg command that makes the same outputs"
    );
    println!("from one decode. Median of 3.\n");
    println!("| | time | ratio |");
    println!("| --- | --- | --- |");
    println!("| bare ffmpeg | {} | 1.00 × |", ms(bare));
    println!(
        "| local backend | {} | {:.3} × |\n",
        ms(backend),
        backend.as_secs_f64() / bare.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
