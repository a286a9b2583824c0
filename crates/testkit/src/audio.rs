//! Audio made and measured by Debian's ffmpeg (and a voice by espeak-ng), for the tests of the
//! code that transcodes: what goes in is real audio, and what comes out is read by a second tool.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

/// Runs ffmpeg with `args` (after `-y`) and asserts that it succeeded.
pub async fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// Writes `source`, one of ffmpeg's lavfi sources (`sine=frequency=440:duration=2`), to `path`
/// with the output options `args`, in the container `path`'s extension names.
pub async fn lavfi(path: &Path, source: &str, args: &[&str]) {
    let path = path.to_str().unwrap();
    ffmpeg(&[&["-f", "lavfi", "-i", source], args, &[path]].concat()).await;
}

/// codec, sample rate, channels and duration of a file's first audio stream.
pub async fn probe(path: &Path) -> (String, u64, u64, f64) {
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

/// A 440 Hz sine of `seconds`, stereo 44.1 kHz, at `path` in the container its extension names.
pub async fn tone(path: &Path, seconds: f64) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let sine = format!("sine=frequency=440:duration={seconds}");
    lavfi(path, &sine, &["-ac", "2", "-ar", "44100"]).await;
}

/// A silence bomb: `seconds` of 8 kHz mono silence as FLAC at `path`, a few hundred bytes a
/// minute that decode to 10 MB a minute of the outputs' 44.1 kHz stereo WAV.
pub async fn silence_bomb(path: &Path, seconds: u32) {
    let seconds = seconds.to_string();
    lavfi(
        path,
        "anullsrc=r=8000:cl=mono",
        &["-t", &seconds, "-c:a", "flac"],
    )
    .await;
}

/// An HLS playlist that plays `segment` `times` times. Its `#EXT-X-TARGETDURATION` line is what
/// makes plain ffmpeg recognise it by content, whatever the file is named.
pub fn hls_playlist(segment: &str, times: usize) -> String {
    let entries = format!("#EXTINF:2.0,\n{segment}\n").repeat(times);
    format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n{entries}#EXT-X-ENDLIST\n")
}

/// Every file below `dir`, hidden ones (temporary files) included; none if it does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Integrated loudness (LUFS) and true peak (dBTP) by ffmpeg's `ebur128` filter: the
/// second tool, beside the `ebur128` crate the code under test measures with.
pub async fn ffmpeg_ebur128(path: &Path) -> (f64, f64) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-af", "ebur128=peak=true", "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let summary = log.rsplit("Summary:").next().unwrap();
    let value = |label: &str| -> f64 {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in {summary}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (value("I:"), value("Peak:"))
}

/// A quiet speech file: espeak-ng's voice, 18 dB down.
pub async fn quiet_speech(dir: &Path) -> PathBuf {
    let loud = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&loud)
        .arg("Welcome to the show. Today we talk about loudness, true peaks, and why a podcast should sound the same from one episode to the next. Thank you for listening.")
        .status()
        .await
        .expect("espeak-ng runs (Debian's espeak-ng; `make test` installs it)");
    assert!(status.success());
    let quiet = dir.join("quiet.wav");
    ffmpeg(&[
        "-i",
        loud.to_str().unwrap(),
        "-af",
        "volume=-18dB",
        quiet.to_str().unwrap(),
    ])
    .await;
    quiet
}
