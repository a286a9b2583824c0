//! The Lambda layer's ffmpeg (`make layer`: the static aarch64 build from the pinned wheel in
//! tools/ffmpeg-layer.txt), run under qemu-aarch64-static: it reads every accepted container with
//! its exact demuxer, writes every output format with the runner's own encoder arguments, and
//! honours the protocol whitelist that keeps untrusted input from opening a URL.

use std::path::{Path, PathBuf};
use std::process::Output;

use system_tests::{arm64, local};
use tokio::process::Command;
use transcoder_core::{Analysis, AudioFormat, Loudness, OutputFormat};
use transcoder_local::ffmpeg::{encoder_args, loudness_filter};

/// Runs the layer's ffmpeg with `args` under qemu, the way an arm64 Lambda would run it.
async fn arm64_ffmpeg(args: &[&str]) -> Output {
    Command::new("qemu-aarch64-static")
        .arg(arm64::layer_ffmpeg())
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("qemu-aarch64-static runs (Debian's qemu-user-static; `make test` installs it)")
}

/// The filter a `podcast` job of a quiet file with loud peaks is encoded through: a gain and
/// the limiter.
fn quiet_to_podcast() -> String {
    let quiet = Analysis {
        duration_s: 1.0,
        integrated_lufs: Some(-38.0),
        true_peak_dbtp: Some(-12.0),
        loudness_range_lu: Some(1.0),
        peaks: None,
    };
    let filter = loudness_filter(Loudness::Podcast, &quiet, 0.0).expect("a gain for a quiet file");
    assert!(filter.contains("alimiter"), "{filter}");
    filter
}

/// Host ffmpeg's encoder arguments for a source in `format`.
fn source_args(format: AudioFormat) -> &'static [&'static str] {
    match format {
        AudioFormat::Mp3 => &["-c:a", "libmp3lame", "-f", "mp3"],
        AudioFormat::Aac => &["-c:a", "aac", "-f", "adts"],
        AudioFormat::Wav => &["-c:a", "pcm_s16le", "-f", "wav"],
        AudioFormat::Flac => &["-c:a", "flac", "-f", "flac"],
        AudioFormat::Ogg => &["-c:a", "libvorbis", "-f", "ogg"],
        AudioFormat::Mp4 => &["-c:a", "aac", "-f", "mp4"],
    }
}

/// Two seconds of a 440 Hz tone in `format`, written by the host's ffmpeg.
async fn source(dir: &Path, format: AudioFormat) -> PathBuf {
    let path = dir.join(format!("source.{}", format.demuxer()));
    let mut args = vec!["-f", "lavfi", "-i", "sine=frequency=440:duration=2"];
    args.extend(["-ac", "2", "-ar", "44100"]);
    args.extend(source_args(format));
    args.push(path.to_str().unwrap());
    local::ffmpeg(&args).await;
    path
}

/// The input as the runner gives it: its exact demuxer, the `file` protocol only, and only the
/// accepted demuxers.
fn input_args(format: AudioFormat, path: &Path) -> Vec<String> {
    vec![
        "-f".into(),
        format.demuxer().into(),
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        AudioFormat::ALL.map(AudioFormat::demuxer).join(","),
        "-i".into(),
        format!("file:{}", path.display()),
    ]
}

#[tokio::test]
async fn the_layers_ffmpeg_reads_every_accepted_container_and_writes_every_output_format() {
    let dir = local::scratch();
    // Each accepted container once, into the output formats in turn: every demuxer and every
    // encoder the runner uses runs at least once in the arm64 build.
    let outputs = OutputFormat::ALL.iter().cycle();
    for (input, &output) in AudioFormat::ALL.into_iter().zip(outputs) {
        let source = source(&dir, input).await;
        let target = dir.join(format!("from-{}.{}", input.demuxer(), output.extension()));
        let mut args = input_args(input, &source);
        args.extend(["-map", "0:a:0", "-vn"].map(String::from));
        // The loudness gain and the true-peak limiter, as a `podcast` job of a quiet file runs
        // them: every filter in it must be in the layer's build.
        args.extend(["-af".to_owned(), quiet_to_podcast()]);
        args.extend(encoder_args(output, None));
        args.push(target.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = arm64_ffmpeg(&args).await;
        assert!(
            run.status.success(),
            "{input} into {output}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (_, _, _, seconds) = local::probe(&target).await;
        assert!(
            (seconds - 2.0).abs() < 0.1,
            "{input} into {output} lasts {seconds} s, not 2 s"
        );
    }
}

#[tokio::test]
async fn the_layers_ffmpeg_is_the_pinned_build_and_refuses_other_protocols() {
    let version = arm64_ffmpeg(&["-version"]).await;
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.starts_with("ffmpeg version 7.0.2"), "{text}");
    // The same whitelist as every untrusted input: a URL is refused, not fetched (nothing
    // listens on port 9 of loopback either way).
    let run = arm64_ffmpeg(&[
        "-f",
        "mp3",
        "-protocol_whitelist",
        "file",
        "-i",
        "http://127.0.0.1:9/song.mp3",
        "-f",
        "null",
        "-",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a URL was opened: {stderr}");
    assert!(stderr.contains("not on whitelist"), "{stderr}");
}
