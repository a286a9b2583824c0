//! ffmpeg over an untrusted upload, the one way every host runs it: the local runner
//! (`transcoder-local`) and the `transcode-audio` Lambda call these same functions, so the two can
//! never disagree on what ffmpeg may open, how each output is encoded and bounded, or how a job's
//! progress and end are reported.
//!
//! An input is identified by its bytes ([`identify_file`], core's sniffer, as the starter does)
//! before ffmpeg sees it; ffmpeg is then told its exact demuxer, may open only local files and only
//! the accepted containers, so no playlist, concat list or network URL is ever followed. Every run
//! is bounded in time and every output in size ([`Limits`]). Only `ffmpeg` is run, never
//! `ffprobe`: the Lambda layer's static build has none.
//!
//! It must not decide where files come from or go: callers pick the paths, move the outputs into
//! place (or upload them) and remove them, and charge a job to whatever budget they keep.

mod analysis;
mod encode;
mod notification;
mod probe;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use transcoder_core::{AudioFormat, Escaped, JobOutput, OutputFormat};

pub use analysis::{Peaks, WAVEFORM_POINTS, analyze, loudness_filter};
pub use encode::{Encoded, Output, ProgressSender, encode, measure_and_encode};
pub use notification::{Done, final_notification, progress_notification};
pub use probe::{FileSource, Inspected, identify_file, inspect, probe_duration, probe_outputs};

/// The encoder arguments of an output of `format` at `bitrate_kbps` (lossy formats; the
/// format's default when `None`, ignored for lossless ones): the settings of Elastic
/// Transcoder's system presets. Every output is stereo, as in the cloud, which also keeps its
/// size within its bound.
pub fn encoder_args(format: OutputFormat, bitrate_kbps: Option<u32>) -> Vec<String> {
    let bitrate = format
        .bitrates()
        .map(|(_, default)| format!("{}k", bitrate_kbps.unwrap_or(default)));
    let args: &[&str] = match format {
        OutputFormat::Wav => &["-c:a", "pcm_s16le", "-ar", "44100", "-ac", "2", "-f", "wav"],
        OutputFormat::Flac => &[
            "-c:a",
            "flac",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-sample_fmt",
            "s16",
            "-f",
            "flac",
        ],
        OutputFormat::Aac => &[
            "-c:a",
            "aac",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ],
        OutputFormat::Mp3 => &[
            "-c:a",
            "libmp3lame",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-f",
            "mp3",
        ],
        // Opus runs at 48 kHz only.
        OutputFormat::Opus => &["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-f", "ogg"],
    };
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if let Some(bitrate) = bitrate {
        args.splice(2..2, ["-b:a".to_owned(), bitrate]);
    }
    args
}

/// The most bytes a second of audio takes in an output of `format` at `bitrate_kbps`, before
/// headroom: what bounds an output's size (`ffmpeg -fs`).
fn bytes_per_second(format: OutputFormat, bitrate_kbps: Option<u32>) -> u64 {
    match (format, bitrate_kbps.or(format.bitrates().map(|(_, d)| d))) {
        // 44.1 kHz, 16 bits, two channels (`encoder_args` mixes more down). FLAC falls back to
        // verbatim frames, so it never needs much more than PCM.
        (OutputFormat::Wav | OutputFormat::Flac, _) => 176_400,
        (_, Some(kbps)) => u64::from(kbps) * 1000 / 8,
        (_, None) => 176_400,
    }
}

/// The container an output is written in, to read it back with the same guarded flags.
pub fn container_of(format: OutputFormat) -> AudioFormat {
    match format {
        OutputFormat::Wav => AudioFormat::Wav,
        OutputFormat::Flac => AudioFormat::Flac,
        OutputFormat::Aac => AudioFormat::Mp4,
        OutputFormat::Mp3 => AudioFormat::Mp3,
        OutputFormat::Opus => AudioFormat::Ogg,
    }
}

/// What one job may cost: how long its audio may be, and how long each ffmpeg run for it may
/// take before it is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The longest audio transcoded (`MAX_DURATION_SECONDS`); a longer input fails.
    pub max_duration: Duration,
    /// Time any run may take, whatever the audio: process start-up, a busy disk.
    pub base_time: Duration,
    /// Time added per second of audio, for a run that reads or writes all of it.
    pub time_per_audio_second: Duration,
}

impl Limits {
    /// 60 s per run and 1 s more per second of audio: ffmpeg writes the outputs many times
    /// faster than real time even on a busy core, so only a stuck or cheated run gets there.
    pub fn new(max_duration: Duration) -> Self {
        Self {
            max_duration,
            base_time: Duration::from_secs(60),
            time_per_audio_second: Duration::from_secs(1),
        }
    }

    /// How long a run over `seconds` of audio may take.
    pub fn time_for(&self, seconds: f64) -> Duration {
        let seconds = seconds.clamp(0.0, self.max_duration.as_secs_f64());
        self.base_time + self.time_per_audio_second.mul_f64(seconds)
    }

    /// The largest an output of `seconds` of audio may grow: a quarter more and 1 MiB for
    /// container overhead, encoder overshoot and a duration the probe slightly underestimated.
    pub fn output_bytes(
        &self,
        format: OutputFormat,
        bitrate_kbps: Option<u32>,
        seconds: f64,
    ) -> u64 {
        let seconds = seconds.clamp(0.0, self.max_duration.as_secs_f64());
        (seconds * bytes_per_second(format, bitrate_kbps) as f64 * 1.25) as u64 + (1 << 20)
    }

    /// What `outputs` of `seconds` of audio take at their byte rates: what a job is charged
    /// against a budget or a quota before it encodes.
    pub fn job_bytes(&self, outputs: &[JobOutput], seconds: f64) -> u64 {
        let seconds = seconds.clamp(0.0, self.max_duration.as_secs_f64());
        outputs
            .iter()
            .map(|o| (seconds * bytes_per_second(o.format, o.bitrate()) as f64) as u64)
            .sum()
    }
}

/// The program run for ffmpeg: `FFMPEG` from the environment if set (a path: the Lambda layer's
/// `/opt/bin/ffmpeg`, say), else `ffmpeg` on `PATH`. An empty `FFMPEG` counts as unset.
pub fn program() -> OsString {
    std::env::var_os("FFMPEG")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "ffmpeg".into())
}

/// A new ffmpeg command, with [`program`] as its program.
fn ffmpeg() -> Command {
    Command::new(program())
}

/// Why ffmpeg could not be started, naming the program and where it came from.
fn cannot_run(err: std::io::Error) -> String {
    let program = program();
    if program == "ffmpeg" {
        format!("cannot run ffmpeg: {err}")
    } else {
        format!(
            "cannot run ffmpeg at {} (FFMPEG): {err}",
            Escaped(&program.to_string_lossy())
        )
    }
}

/// Why a job wrote no outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Something the upload's owner can read: the job fails with it.
    Reason(String),
    /// The disk is full (ffmpeg's complaint or our own write's error): not the user's fault, so
    /// the job is to run again once there is space, not to fail.
    NoSpace(String),
}

impl Failure {
    /// `what` failed with `err`: a full disk, or a reason the job fails with.
    pub fn of_io(what: String, err: &std::io::Error) -> Self {
        if is_no_space(err) {
            Self::NoSpace(format!("{what}: {err}"))
        } else {
            Self::Reason(format!("{what}: {err}"))
        }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self::Reason(reason)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reason(reason) => f.write_str(reason),
            Self::NoSpace(complaint) => write!(f, "the disk is full: {complaint}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Whether a write failed because the disk (or the user's disk quota) is full.
pub fn is_no_space(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || err.raw_os_error() == Some(28)
}

/// Whether a program's complaint (ffmpeg's stderr, SQLite's error) says the disk is full.
pub fn says_no_space(text: &str) -> bool {
    [
        "No space left on device",
        "Disk quota exceeded",
        "disk is full",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// The bytes an unprivileged writer may still write on the disk under `dir` (statvfs's
/// `f_bavail`), or `None` when the disk cannot be asked.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// A size as a person reads it: "512 bytes", "3.2 MiB", "1 GiB".
pub fn bytes(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    let (unit, name) = match n {
        n if n >= KIB * KIB * KIB => (KIB * KIB * KIB, "GiB"),
        n if n >= KIB * KIB => (KIB * KIB, "MiB"),
        n if n >= KIB => (KIB, "KiB"),
        n => return format!("{n} bytes"),
    };
    let value = format!("{:.1}", n as f64 / unit as f64);
    format!("{} {name}", value.trim_end_matches(".0"))
}

/// A length of time as a person reads it: "2.5 s", "12 min 5 s", "4 h 0 min".
pub fn span(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{} min {} s", whole / 60, whole % 60)
    } else {
        format!("{} h {} min", whole / 3600, whole % 3600 / 60)
    }
}

/// The demuxers ffmpeg may use at all: those of the accepted containers.
fn accepted_demuxers() -> String {
    AudioFormat::ALL.map(AudioFormat::demuxer).join(",")
}

/// Adds the input `url` (from [`file_url`]) to an ffmpeg `command`, to be read as `format` and
/// nothing else: its exact demuxer rather than a guess from the content, only the `file`
/// protocol, and only the accepted demuxers, so neither the input nor anything inside it can open
/// a playlist (HLS), a concat list, an image sequence or a URL.
fn read_as(command: &mut Command, format: AudioFormat, url: &OsString) {
    command
        .args(["-f", format.demuxer(), "-protocol_whitelist", "file"])
        .arg("-format_whitelist")
        .arg(accepted_demuxers())
        .arg("-i")
        .arg(url);
}

/// `file:` and the absolute path, so that no name (`http:x.mp3`, `concat:a|b`) is taken for a
/// protocol.
fn file_url(path: &Path) -> Result<OsString, String> {
    let absolute = std::path::absolute(path)
        .map_err(|e| format!("cannot resolve {}: {e}", Escaped(&path.to_string_lossy())))?;
    let mut url = OsString::from("file:");
    url.push(absolute);
    Ok(url)
}

/// The last lines of ffmpeg's complaints. The pipe is read to its end so that ffmpeg never
/// blocks on it, but only a few lines are kept however much a damaged file makes it complain.
async fn tail(pipe: Option<tokio::process::ChildStderr>) -> String {
    const KEPT: usize = 20;
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut reader = BufReader::new(pipe);
    let mut lines = std::collections::VecDeque::with_capacity(KEPT);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if lines.len() == KEPT {
                    lines.pop_front();
                }
                lines.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
        }
    }
    Vec::from(lines).join("\n")
}

/// ffmpeg's complaint, as a reason a person can read.
fn readable(stderr: &str) -> String {
    format!(
        "the audio could not be decoded cleanly ({})",
        complaint(stderr)
    )
}

/// The last thing ffmpeg complained of, without the file path it starts with.
fn complaint(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let reason = line.rsplit_once(": ").map_or(line, |(_, r)| r).trim();
    if reason.is_empty() {
        "no details".to_owned()
    } else {
        reason.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_a_person_would_say_them() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 * (1 << 20) + (1 << 20) / 5), "3.2 MiB");
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(2_500_000_000), "2.3 GiB");
    }

    #[test]
    fn free_space_is_asked_of_the_disk_and_none_for_a_missing_folder() {
        assert!(free_bytes(&std::env::temp_dir()).is_some_and(|free| free > 0));
        assert_eq!(free_bytes(std::path::Path::new("/no/such/folder")), None);
    }

    #[test]
    fn outputs_are_bounded_by_their_bitrate_and_the_duration() {
        let limits = Limits::new(Duration::from_secs(100));
        // 10 s of WAV is 1,764,000 bytes; the bound leaves a quarter and 1 MiB above it.
        assert_eq!(
            limits.output_bytes(OutputFormat::Wav, None, 10.0),
            2_205_000 + 1_048_576
        );
        // A lossy output's bound follows its bitrate: 10 s at 64 kb/s is 80,000 bytes.
        assert_eq!(
            limits.output_bytes(OutputFormat::Opus, Some(64), 10.0),
            100_000 + 1_048_576
        );
        assert_eq!(
            limits.output_bytes(OutputFormat::Mp3, None, 10.0),
            limits.output_bytes(OutputFormat::Mp3, Some(192), 10.0)
        );
        // A duration above the limit counts as the limit.
        assert_eq!(
            limits.output_bytes(OutputFormat::Mp3, None, 1000.0),
            limits.output_bytes(OutputFormat::Mp3, None, 100.0)
        );
        assert_eq!(limits.time_for(30.0), Duration::from_secs(90));
        assert_eq!(limits.time_for(f64::INFINITY), Duration::from_secs(160));
    }

    #[test]
    fn a_lossy_output_is_encoded_at_its_bitrate_and_a_lossless_one_has_none() {
        let args = encoder_args(OutputFormat::Opus, Some(64));
        assert_eq!(args[..4], ["-c:a", "libopus", "-b:a", "64k"]);
        assert_eq!(encoder_args(OutputFormat::Mp3, None)[3], "192k");
        assert!(!encoder_args(OutputFormat::Flac, Some(128)).contains(&"-b:a".to_owned()));
    }

    #[test]
    fn spans_read_as_a_person_would_say_them() {
        assert_eq!(span(2.46), "2.5 s");
        assert_eq!(span(725.0), "12 min 5 s");
        assert_eq!(span(14_400.0), "4 h 0 min");
    }

    #[test]
    fn a_full_disk_is_recognised_in_errors_and_complaints() {
        assert!(is_no_space(&std::io::Error::from_raw_os_error(28)));
        assert!(is_no_space(&std::io::Error::from(
            std::io::ErrorKind::StorageFull
        )));
        assert!(!is_no_space(&std::io::Error::from(
            std::io::ErrorKind::PermissionDenied
        )));
        assert!(says_no_space(
            "[out#0/wav @ 0x1] Error writing trailer: No space left on device"
        ));
        assert!(says_no_space("SQLite: database or disk is full"));
        assert!(!says_no_space("Invalid data found when processing input"));
        let full = Failure::of_io(
            "cannot write x".into(),
            &std::io::Error::from_raw_os_error(28),
        );
        assert!(matches!(full, Failure::NoSpace(_)), "{full:?}");
    }
}
