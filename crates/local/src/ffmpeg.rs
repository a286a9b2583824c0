//! ffmpeg on this machine as the transcoder: what runs a job of the third `Transcoder`, the local
//! queue (`crate::jobs`). One ffmpeg run per job decodes the input once and encodes every output
//! from it. When a job ends, it is reported in Elastic Transcoder's notification shape, so the
//! completion goes through the same parser and the same `record_completion` handler as in the cloud.
//! While it runs, its progress (ffmpeg's `-progress`, as a share of the probed duration) is
//! reported at each further tenth, in MediaConvert's `STATUS_UPDATE` shape, the one with a
//! percentage.
//!
//! Uploads are untrusted: an input is identified by its bytes before ffmpeg sees it, and ffmpeg
//! and ffprobe are told its exact demuxer, may open only local files and only the accepted
//! containers, so no playlist, concat list or network URL is ever followed. Every run is bounded
//! in time and every output in size, and a job's temporary files are its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tracing::{info, warn};
use transcoder_core::{
    AudioFormat, Escaped, JobId, OutputFormat, SourceObject, TranscodeJob, metadata,
};

use crate::bucket::BucketFolder;
use crate::space::{
    DEFAULT_JOB_OUTPUT_BYTES, DEFAULT_USER_QUOTA_BYTES, bytes, bytes_under, is_no_space,
    says_no_space,
};
/// The encoder arguments of each output: the settings of Elastic Transcoder's system presets.
/// Every output is stereo, as in the cloud, which also keeps its size within its bound.
pub fn encoder_args(format: OutputFormat) -> &'static [&'static str] {
    match format {
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
            "-b:a",
            "256k",
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
            "-b:a",
            "192k",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-f",
            "mp3",
        ],
    }
}

/// The most bytes a second of audio takes in each output, before headroom: what bounds an
/// output's size (`ffmpeg -fs`).
fn bytes_per_second(format: OutputFormat) -> u64 {
    match format {
        // 44.1 kHz, 16 bits, two channels (`encoder_args` mixes more down).
        OutputFormat::Wav => 176_400,
        // FLAC falls back to verbatim frames, so it never needs much more than PCM.
        OutputFormat::Flac => 176_400,
        OutputFormat::Aac => 256_000 / 8,
        OutputFormat::Mp3 => 192_000 / 8,
    }
}

/// The container an output is written in, to read it back with the same guarded flags.
fn container_of(format: OutputFormat) -> AudioFormat {
    match format {
        OutputFormat::Wav => AudioFormat::Wav,
        OutputFormat::Flac => AudioFormat::Flac,
        OutputFormat::Aac => AudioFormat::Mp4,
        OutputFormat::Mp3 => AudioFormat::Mp3,
    }
}

/// What one job may cost: how long its audio may be, and how long each ffmpeg or ffprobe run
/// for it may take before it is killed.
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
    fn time_for(&self, seconds: f64) -> Duration {
        let seconds = seconds.clamp(0.0, self.max_duration.as_secs_f64());
        self.base_time + self.time_per_audio_second.mul_f64(seconds)
    }

    /// The largest an output of `seconds` of audio may grow: a quarter more and 1 MiB for
    /// container overhead, encoder overshoot and a duration the probe slightly underestimated.
    fn output_bytes(&self, format: OutputFormat, seconds: f64) -> u64 {
        let seconds = seconds.clamp(0.0, self.max_duration.as_secs_f64());
        (seconds * bytes_per_second(format) as f64 * 1.25) as u64 + (1 << 20)
    }

    /// What the outputs of `seconds` of audio in `formats` take at their byte rates: what a job
    /// is charged against its budget and its owner's quota before it encodes.
    fn job_bytes(&self, formats: impl Iterator<Item = OutputFormat>, seconds: f64) -> u64 {
        let seconds = seconds.clamp(0.0, self.max_duration.as_secs_f64());
        formats
            .map(|format| (seconds * bytes_per_second(format) as f64) as u64)
            .sum()
    }
}

/// What a job may add to the disk: its outputs' size (`MAX_JOB_OUTPUT_BYTES`), and what its
/// owner's uploads and outputs may take in all (`USER_QUOTA_BYTES`). Both are checked from the
/// probed duration before anything is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub per_job: u64,
    pub per_user: u64,
    /// Where an owner's uploads and outputs are: `{input}{owner}/` and `{output}{owner}/`.
    pub input_prefix: String,
    pub output_prefix: String,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            per_job: DEFAULT_JOB_OUTPUT_BYTES,
            per_user: DEFAULT_USER_QUOTA_BYTES,
            input_prefix: "media/".into(),
            output_prefix: "transcoded/".into(),
        }
    }
}

impl Budget {
    /// What `owner`'s files take below `bucket`, less `replaced` (files a job or upload
    /// overwrites, which it does not add). The folders are walked on a blocking thread.
    pub async fn used_by(&self, bucket: &Path, owner: &str, replaced: Vec<PathBuf>) -> u64 {
        let mine = [
            bucket.join(format!("{}{owner}", self.input_prefix)),
            bucket.join(format!("{}{owner}", self.output_prefix)),
        ];
        let walk = move || {
            let replaced: u64 = replaced
                .iter()
                .filter_map(|p| std::fs::symlink_metadata(p).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            let total: u64 = mine.iter().map(|dir| bytes_under(dir)).sum();
            total.saturating_sub(replaced)
        };
        tokio::task::spawn_blocking(walk).await.unwrap_or(0)
    }
}

/// Runs one job with ffmpeg; the queue in [`crate::jobs`] decides which and when.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    bucket: PathBuf,
    limits: Limits,
    budget: Budget,
}

/// How a job's run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// The job's final notification, in Elastic Transcoder's shape: completed, with a warning,
    /// or failed.
    Notification(Value),
    /// A newer upload replaced the input while it was transcoded: nothing was written, nobody is
    /// told; that upload is transcoded on its own and its owner hears of it alone.
    Replaced,
    /// The disk filled up: nothing was written, nobody is told, and the job is to run again
    /// once there is more space. A full disk is never the owner's fault.
    NoSpace,
}

/// Where a running job's progress goes: whole percentages, each higher than the last.
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<u8>;

/// The user metadata every notification of `job` carries, as the transcoders in the cloud do.
fn user_metadata(job: &TranscodeJob) -> serde_json::Map<String, Value> {
    metadata::for_job(job)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect()
}

/// A running job's progress as a notification: MediaConvert's `STATUS_UPDATE`, the shape that
/// carries a percentage (Elastic Transcoder's `PROGRESSING` has none).
pub fn progress_notification(job_id: &JobId, job: &TranscodeJob, percent: u8) -> Value {
    json!({
        "detail-type": "MediaConvert Job State Change",
        "source": "local.ffmpeg",
        "detail": {
            "jobId": job_id.0,
            "status": "STATUS_UPDATE",
            "userMetadata": user_metadata(job),
            "jobProgress": {"jobPercentComplete": percent},
        },
    })
}

impl Ffmpeg {
    pub fn new(bucket: impl Into<PathBuf>, limits: Limits) -> Self {
        Self {
            bucket: bucket.into(),
            limits,
            budget: Budget::default(),
        }
    }

    /// The same, with `budget` in place of the default one.
    pub fn with_budget(self, budget: Budget) -> Self {
        Self { budget, ..self }
    }
    /// Transcodes one job and says how it ended; its progress goes to `progress`, if given.
    pub async fn run(
        &self,
        job_id: &JobId,
        job: &TranscodeJob,
        progress: Option<ProgressSender>,
    ) -> Ended {
        let started = Instant::now();
        let job_id = job_id.0.as_str();
        let input = self.bucket.join(job.source.as_str());
        let result = match self.transcode(job_id, job, &input, progress).await {
            Err(Failure::Replaced) => {
                info!(job_id, key = %job.source.escaped(), "a newer upload replaced the file: outputs dropped");
                return Ended::Replaced;
            }
            Err(Failure::NoSpace(complaint)) => {
                warn!(job_id, key = %job.source.escaped(), complaint = %Escaped(&complaint), "the disk is full: outputs dropped; the job runs again once more space is free");
                return Ended::NoSpace;
            }
            Err(Failure::Reason(reason)) => Err(reason),
            Ok(done) => Ok(done),
        };
        let mut outputs = Vec::new();
        let state = match &result {
            Ok((warning, seconds)) => {
                let allowed = self.limits.time_for(*seconds);
                // The outputs are probed at once: one ffprobe start-up each is most of the cost.
                let probes = job.outputs.iter().map(|output| {
                    let path = self.bucket.join(output.key.as_str());
                    async move {
                        let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
                        let duration = probe_duration(&path, container_of(output.format), allowed);
                        (size, duration.await.ok())
                    }
                });
                let probed = futures::future::join_all(probes).await;
                for (i, (output, (size, duration))) in job.outputs.iter().zip(probed).enumerate() {
                    info!(
                        job_id,
                        key = %output.key.escaped(),
                        format = %output.format,
                        bytes = size,
                        seconds = duration.map(|d| format!("{d:.2}")),
                        "output written"
                    );
                    let status = if warning.is_some() {
                        "Warning"
                    } else {
                        "Complete"
                    };
                    outputs.push(json!({"id": (i + 1).to_string(), "key": output.key.as_str(), "status": status, "statusDetail": warning, "duration": duration}));
                }
                if warning.is_some() {
                    "WARNING"
                } else {
                    "COMPLETED"
                }
            }
            Err(reason) => {
                warn!(job_id, key = %job.source.escaped(), reason = %Escaped(reason), "job failed");
                for (i, output) in job.outputs.iter().enumerate() {
                    outputs.push(json!({"id": (i + 1).to_string(), "key": output.key.as_str(), "status": "Error", "statusDetail": reason}));
                }
                "ERROR"
            }
        };
        info!(job_id, key = %job.source.escaped(), state, seconds = format!("{:.2}", started.elapsed().as_secs_f64()), "job finished");
        let mut notification = json!({
            "state": state,
            "version": "2012-09-25",
            "jobId": job_id,
            "pipelineId": "local-ffmpeg",
            "input": {"key": job.source.as_str()},
            "inputCount": 1,
            "outputKeyPrefix": "",
            "outputs": outputs,
            "userMetadata": user_metadata(job),
        });
        match result {
            Err(reason) | Ok((Some(reason), _)) => notification["messageDetails"] = reason.into(),
            Ok((None, _)) => {}
        }
        Ended::Notification(notification)
    }

    /// Identifies, probes and transcodes the input. Returns what ffmpeg complained of while it
    /// still succeeded (a damaged frame, say), if anything, and the input's duration in seconds.
    async fn transcode(
        &self,
        job_id: &str,
        job: &TranscodeJob,
        input: &Path,
        progress: Option<ProgressSender>,
    ) -> Result<(Option<String>, f64), Failure> {
        let upload = Upload::of(input).await?;
        let format = identify(&self.bucket, job, upload.size).await?;
        let duration = probe_duration(input, format, self.limits.base_time).await?;
        let limit = self.limits.max_duration.as_secs_f64();
        if duration > limit {
            return Err(Failure::Reason(format!(
                "the file is too long: {} of audio; the limit is {}",
                span(duration),
                span(limit)
            )));
        }
        self.afford(job, duration).await?;
        // Outputs are written under names of this job's own and renamed when complete, so nobody
        // downloads half a file and two jobs for one key never write into the same file.
        let mut parts = Parts::default();
        let mut command = Command::new("ffmpeg");
        command
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-progress",
                "pipe:1",
                "-y",
                "-t",
            ])
            .arg(limit.to_string());
        read_as(&mut command, format, input)?;
        for output in &job.outputs {
            let path = self.bucket.join(output.key.as_str());
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    Failure::of_io(
                        format!("cannot create {}", Escaped(&dir.to_string_lossy())),
                        &e,
                    )
                })?;
            }
            let temporary = path.with_file_name(format!(
                ".{}.{job_id}.part",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let most_bytes = self.limits.output_bytes(output.format, duration);
            command
                .args(["-map", "0:a:0", "-map_metadata", "-1", "-vn"])
                .args(encoder_args(output.format))
                .arg("-fs")
                .arg(most_bytes.to_string())
                .arg(file_url(&temporary)?);
            parts.0.push(Part {
                temporary,
                path,
                most_bytes,
            });
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its process group is killed on every way out of this function (a timeout, an aborted
        // job, a shutdown), and by the kernel if the runner itself is killed.
        let mut child =
            transcoder_process::spawn(command).map_err(|e| format!("cannot run ffmpeg: {e}"))?;

        // Progress at every further tenth of the input: reported, and logged for long files.
        let stdout = child.stdout.take();
        let key = job.source.escaped().to_string();
        let job_id_owned = job_id.to_owned();
        let progress = tokio::spawn(async move {
            let Some(stdout) = stdout else { return };
            let mut lines = BufReader::new(stdout).lines();
            let mut reported = 0;
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(micros) = line
                    .strip_prefix("out_time_us=")
                    .and_then(|v| v.parse::<f64>().ok())
                else {
                    continue;
                };
                let tenth = ((micros / 1e6 / duration) * 10.0).floor() as i32;
                if tenth > reported && tenth < 10 {
                    reported = tenth;
                    let percent = (tenth * 10) as u8;
                    if let Some(progress) = &progress {
                        // The receiver is gone only when the job's reporting stopped: nobody asks.
                        let _ = progress.send(percent);
                    }
                    if duration >= 30.0 {
                        info!(job_id = job_id_owned, key, percent, "transcoding");
                    }
                }
            }
        });
        let allowed = self.limits.time_for(duration);
        let stderr = child.stderr.take();
        let finished = tokio::time::timeout(allowed, async {
            let stderr = tail(stderr).await;
            (child.wait().await, stderr)
        })
        .await;
        let Ok((status, stderr)) = finished else {
            let _ = child.kill().await;
            progress.abort();
            return Err(Failure::Reason(format!(
                "transcoding took longer than {}, the most allowed for {} of audio",
                span(allowed.as_secs_f64()),
                span(duration)
            )));
        };
        let status = status.map_err(|e| format!("ffmpeg did not finish: {e}"))?;
        let _ = progress.await;
        if !status.success() {
            if says_no_space(&stderr) {
                return Err(Failure::NoSpace(complaint(&stderr)));
            }
            return Err(Failure::Reason(readable(&stderr)));
        }
        parts.check(duration).await?;
        // A newer upload of the key has its own job: these outputs would overwrite its outputs
        // with the older audio if that job finished first.
        if Upload::of(input).await? != upload {
            return Err(Failure::Replaced);
        }
        parts.commit().await?;
        Ok((
            (!stderr.trim().is_empty()).then(|| readable(&stderr)),
            duration,
        ))
    }

    /// Refuses, before anything is encoded, a job whose outputs would pass the budget of one
    /// job, or take its owner's files past their quota.
    async fn afford(&self, job: &TranscodeJob, duration: f64) -> Result<(), Failure> {
        let formats = job.outputs.iter().map(|o| o.format);
        let outputs = self.limits.job_bytes(formats, duration);
        if outputs > self.budget.per_job {
            return Err(Failure::Reason(format!(
                "the outputs of its {} of audio would be {}, more than the {} limit per upload: shorten or split the file",
                span(duration),
                bytes(outputs),
                bytes(self.budget.per_job)
            )));
        }
        let replaced = job
            .outputs
            .iter()
            .map(|o| self.bucket.join(o.key.as_str()))
            .collect();
        let owner = job.owner.as_str();
        let used = self.budget.used_by(&self.bucket, owner, replaced).await;
        if used.saturating_add(outputs) > self.budget.per_user {
            return Err(Failure::Reason(format!(
                "your files take {} and the outputs of this one would be {} more, past your {} quota: remove some of your files and upload it again",
                bytes(used),
                bytes(outputs),
                bytes(self.budget.per_user)
            )));
        }
        Ok(())
    }
}

/// Why a job wrote no outputs.
enum Failure {
    /// Something a user can read: the job fails with it.
    Reason(String),
    /// A newer upload of the key replaced the input.
    Replaced,
    /// The disk is full (ffmpeg's complaint or our own write's error): not the user's fault.
    NoSpace(String),
}

impl Failure {
    /// `what` failed with `err`: a full disk, or a reason the job fails with.
    fn of_io(what: String, err: &std::io::Error) -> Self {
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

/// Which upload of a key a file is: a replacement changes its size or its modification time,
/// as it changes the watcher's sequencer.
#[derive(Debug, PartialEq, Eq)]
struct Upload {
    size: u64,
    modified: Option<std::time::SystemTime>,
}

impl Upload {
    async fn of(path: &Path) -> Result<Self, String> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("the file cannot be read: {e}"))?;
        Ok(Self {
            size: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// One output of a running job: the file ffmpeg writes, and where it goes when complete.
struct Part {
    temporary: PathBuf,
    path: PathBuf,
    /// The size ffmpeg stops writing at (`-fs`); an output that reaches it was cut off.
    most_bytes: u64,
}

/// A job's temporary outputs. Whatever has not been moved into place is removed when they are
/// dropped, so no way out of a job (a refusal, a timeout, a stopped runner) leaves one behind.
#[derive(Default)]
struct Parts(Vec<Part>);

impl Parts {
    /// Refuses outputs that ffmpeg cut off at their size limit: the audio decoded to more than
    /// its header said, so each would be silently shorter than the source.
    async fn check(&self, seconds: f64) -> Result<(), String> {
        for part in &self.0 {
            let size = tokio::fs::metadata(&part.temporary)
                .await
                .map_or(0, |m| m.len());
            if size >= part.most_bytes {
                return Err(format!(
                    "the audio is longer than the {} its header states, so its outputs were cut off",
                    span(seconds)
                ));
            }
        }
        Ok(())
    }

    /// Moves every output into place.
    async fn commit(mut self) -> Result<(), Failure> {
        while let Some(part) = self.0.pop() {
            if let Err(e) = tokio::fs::rename(&part.temporary, &part.path).await {
                let _ = tokio::fs::remove_file(&part.temporary).await;
                return Err(Failure::of_io(
                    format!(
                        "cannot move {} into place",
                        Escaped(&part.path.to_string_lossy())
                    ),
                    &e,
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        for part in &self.0 {
            let _ = std::fs::remove_file(&part.temporary);
        }
    }
}

/// Removes the temporary outputs that jobs of an earlier run left below `dir` (the output
/// prefix's folder) when that run was killed before it could remove them. Returns how many.
pub fn remove_leftover_parts(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += remove_leftover_parts(&path);
        } else if name.starts_with('.')
            && name.ends_with(".part")
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The container of the job's input, from its bytes, as the starter identified it (the same
/// [`transcoder_core::identify`], read again now): what ffmpeg is told to read it as.
async fn identify(bucket: &Path, job: &TranscodeJob, size: u64) -> Result<AudioFormat, String> {
    let upload = SourceObject {
        bucket: job.bucket.clone(),
        key: job.source.clone(),
        etag: None,
        size: Some(size),
    };
    match transcoder_core::identify(&BucketFolder::new(bucket), &upload).await {
        Ok(Ok(format)) => Ok(format),
        Ok(Err(not_audio)) => Err(not_audio.to_string()),
        Err(e) => Err(format!("the file cannot be read: {e}")),
    }
}

/// The demuxers ffmpeg may use at all: those of the accepted containers.
fn accepted_demuxers() -> String {
    AudioFormat::ALL.map(AudioFormat::demuxer).join(",")
}

/// Adds the input `path` to `command` (ffmpeg or ffprobe), to be read as `format` and nothing
/// else: its exact demuxer rather than a guess from the content, only the `file` protocol, and
/// only the accepted demuxers, so neither the input nor anything inside it can open a playlist
/// (HLS), a concat list, an image sequence or a URL.
fn read_as(command: &mut Command, format: AudioFormat, path: &Path) -> Result<(), String> {
    command
        .args(["-f", format.demuxer(), "-protocol_whitelist", "file"])
        .arg("-format_whitelist")
        .arg(accepted_demuxers())
        .arg("-i")
        .arg(file_url(path)?);
    Ok(())
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

/// The duration of a media file read as `format`, in seconds, or why it cannot be read as audio.
/// ffprobe is killed if it takes longer than `allowed`.
pub async fn probe_duration(
    path: &Path,
    format: AudioFormat,
    allowed: Duration,
) -> Result<f64, String> {
    let mut command = Command::new("ffprobe");
    command.args([
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
    ]);
    read_as(&mut command, format, path)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = transcoder_process::spawn(command)
        .map_err(|e| format!("cannot run ffprobe: {e}"))?
        .output();
    let output = tokio::time::timeout(allowed, run)
        .await
        .map_err(|_| {
            format!(
                "reading the file took longer than {}",
                span(allowed.as_secs_f64())
            )
        })?
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse::<f64>() {
        Ok(duration) if output.status.success() && duration > 0.0 && duration.is_finite() => {
            Ok(duration)
        }
        _ => Err(format!(
            "it is not audio that could be read ({})",
            complaint(&String::from_utf8_lossy(&output.stderr))
        )),
    }
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

/// A length of time as a person reads it: "2.5 s", "12 min 5 s", "4 h 0 min".
fn span(seconds: f64) -> String {
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

/// ffmpeg's complaint, as a reason a person can read.
fn readable(stderr: &str) -> String {
    format!(
        "the audio could not be decoded cleanly ({})",
        complaint(stderr)
    )
}

/// The last thing ffmpeg or ffprobe complained of, without the file path it starts with.
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
    use system_tests::local::{ffmpeg, files_under, hls_playlist, probe, scratch, tone};
    use transcoder_core::{ObjectKey, Owner};

    /// A new bucket folder with an input folder for alice and one for bob.
    fn bucket() -> PathBuf {
        let dir = scratch();
        std::fs::create_dir_all(dir.join("media/alice")).unwrap();
        std::fs::create_dir_all(dir.join("media/bob")).unwrap();
        dir
    }

    fn job(source: &str, owner: &str) -> TranscodeJob {
        let path = source.rsplit('/').next().unwrap();
        TranscodeJob::plan(
            "local-bucket",
            ObjectKey::new(source).unwrap(),
            "1",
            Owner::new(owner).unwrap(),
            path,
            "transcoded/",
            &OutputFormat::DEFAULT,
        )
    }

    /// Runs one job to its end and returns its notification.
    async fn transcode(bucket: &Path, limits: Limits, job: &TranscodeJob) -> Value {
        let id = JobId("local-test".into());
        match Ffmpeg::new(bucket, limits).run(&id, job, None).await {
            Ended::Notification(notification) => notification,
            other => panic!("neither replaced nor out of space: {other:?}"),
        }
    }

    /// What plain ffprobe, with none of our flags, makes of `path`: format name and duration.
    async fn plain_probe(path: &Path) -> Option<(String, f64)> {
        let output = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=format_name,duration",
            ])
            .args(["-of", "csv=p=0"])
            .arg(path)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let (name, duration) = text.trim().split_once(',')?;
        Some((name.to_owned(), duration.parse().unwrap_or(0.0)))
    }

    fn four_hours() -> Limits {
        Limits::new(Duration::from_secs(4 * 3600))
    }

    #[tokio::test]
    async fn the_flags_refuse_playlists_and_concat_lists_that_plain_ffprobe_follows() {
        let bucket = bucket();
        let song = bucket.join("media/alice/song.mp3");
        tone(&song, 2.0).await;
        std::fs::copy(&song, bucket.join("media/bob/mine.mp3")).unwrap();
        let absolute = std::path::absolute(&song).unwrap();
        let cases = [
            (
                "absolute.mp3",
                hls_playlist(absolute.to_str().unwrap(), 1),
                "hls",
            ),
            ("relative.mp3", hls_playlist("../alice/song.mp3", 1), "hls"),
            (
                "repeated.mp3",
                hls_playlist("../alice/song.mp3", 500),
                "hls",
            ),
            // The concat demuxer's own `safe` mode allows a plain name beside the list.
            (
                "list.mp3",
                "ffconcat version 1.0\nfile mine.mp3\n".into(),
                "concat",
            ),
        ];
        for (name, text, demuxer) in cases {
            let path = bucket.join("media/bob").join(name);
            std::fs::write(&path, text).unwrap();
            // Without the flags, ffprobe follows the list into the audio it names...
            let (found, seconds) = plain_probe(&path).await.unwrap_or_default();
            assert_eq!(found, demuxer, "{name}");
            assert!(seconds > 0.0 || demuxer == "concat", "{name}: {seconds}");
            // ...with them, read as the MP3 its name claims, it finds nothing to play.
            let refused = probe_duration(&path, AudioFormat::Mp3, Duration::from_secs(60)).await;
            assert!(refused.is_err(), "{name}: {refused:?}");
            // The whitelist alone refuses the demuxer, even when it is asked for by name.
            let forced = Command::new("ffprobe")
                .args(["-v", "error", "-f", demuxer, "-protocol_whitelist", "file"])
                .arg("-format_whitelist")
                .arg(accepted_demuxers())
                .arg("-i")
                .arg(file_url(&path).unwrap())
                .output()
                .await
                .unwrap();
            assert!(!forced.status.success(), "{name}");
            assert!(
                String::from_utf8_lossy(&forced.stderr).contains("not on whitelist"),
                "{name}: {}",
                String::from_utf8_lossy(&forced.stderr)
            );
        }
        let repeated = plain_probe(&bucket.join("media/bob/repeated.mp3")).await;
        assert_eq!(repeated.map(|(_, s)| s.round()), Some(1000.0));
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn playlists_lists_and_pages_named_mp3_fail_with_no_outputs() {
        let bucket = bucket();
        let song = bucket.join("media/alice/song.mp3");
        tone(&song, 2.0).await;
        let absolute = std::path::absolute(&song).unwrap();
        let cases = [
            ("absolute.mp3", hls_playlist(absolute.to_str().unwrap(), 1)),
            ("relative.mp3", hls_playlist("../alice/song.mp3", 1)),
            ("repeated.mp3", hls_playlist("../alice/song.mp3", 500)),
            (
                "list.mp3",
                "ffconcat version 1.0\nfile ../alice/song.mp3\n".into(),
            ),
            (
                "page.mp3",
                "<!DOCTYPE html><html><body>song</body></html>\n".into(),
            ),
        ];
        for (name, text) in cases {
            std::fs::write(bucket.join("media/bob").join(name), text).unwrap();
            let job = job(&format!("media/bob/{name}"), "bob");
            let notification = transcode(&bucket, four_hours(), &job).await;
            assert_eq!(notification["state"], "ERROR", "{name}: {notification}");
            assert_eq!(
                notification["messageDetails"],
                "not an audio file: it is text (a playlist, a web page or a document)",
                "{name}"
            );
            assert_eq!(notification["outputs"][0]["status"], "Error", "{name}");
        }
        assert_eq!(
            files_under(&bucket.join("transcoded")),
            Vec::<PathBuf>::new()
        );
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn every_accepted_container_is_identified_and_read_with_the_flags() {
        let bucket = bucket();
        let cases = [
            ("a.mp3", AudioFormat::Mp3),
            ("a.aac", AudioFormat::Aac),
            ("a.wav", AudioFormat::Wav),
            ("a.flac", AudioFormat::Flac),
            ("a.ogg", AudioFormat::Ogg),
            ("a.m4a", AudioFormat::Mp4),
        ];
        for (name, format) in cases {
            let path = bucket.join("media/alice").join(name);
            tone(&path, 1.5).await;
            let size = std::fs::metadata(&path).unwrap().len();
            let job = job(&format!("media/alice/{name}"), "alice");
            assert_eq!(identify(&bucket, &job, size).await, Ok(format), "{name}");
            let seconds = probe_duration(&path, format, Duration::from_secs(60))
                .await
                .unwrap();
            assert!((seconds - 1.5).abs() < 0.1, "{name}: {seconds}");
        }
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn a_file_named_mp3_is_read_as_what_its_bytes_say() {
        let bucket = bucket();
        tone(&bucket.join("media/alice/real.wav"), 1.5).await;
        std::fs::rename(
            bucket.join("media/alice/real.wav"),
            bucket.join("media/alice/named.mp3"),
        )
        .unwrap();
        let notification = transcode(
            &bucket,
            four_hours(),
            &job("media/alice/named.mp3", "alice"),
        )
        .await;
        assert_eq!(notification["state"], "COMPLETED", "{notification}");
        for output in notification["outputs"].as_array().unwrap() {
            let seconds = output["duration"].as_f64().unwrap();
            assert!((seconds - 1.5).abs() < 0.1, "{output}");
        }
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn surround_audio_is_mixed_down_to_stereo_within_the_size_bound() {
        let bucket = bucket();
        let source = bucket.join("media/alice/surround.wav");
        // Six channels of PCM: three times the bytes a second that the WAV bound allows.
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=5",
            "-ac",
            "6",
            source.to_str().unwrap(),
        ])
        .await;
        let job = job("media/alice/surround.wav", "alice");
        let notification = transcode(&bucket, four_hours(), &job).await;
        assert_eq!(notification["state"], "COMPLETED", "{notification}");
        for output in &job.outputs {
            let (_, _, channels, seconds) = probe(&bucket.join(output.key.as_str())).await;
            assert_eq!(channels, 2, "{}", output.key);
            assert!((seconds - 5.0).abs() < 0.1, "{}: {seconds}", output.key);
        }
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn a_run_reports_its_progress_in_rising_tenths_as_a_status_update() {
        let bucket = bucket();
        tone(&bucket.join("media/alice/long.wav"), 120.0).await;
        let job = job("media/alice/long.wav", "alice");
        let (sender, mut percents) = tokio::sync::mpsc::unbounded_channel();
        let id = JobId("local-progress".into());
        let ended = Ffmpeg::new(&bucket, four_hours())
            .run(&id, &job, Some(sender))
            .await;
        assert!(
            matches!(&ended, Ended::Notification(n) if n["state"] == "COMPLETED"),
            "{ended:?}"
        );
        let mut reported = Vec::new();
        while let Ok(percent) = percents.try_recv() {
            reported.push(percent);
        }
        assert!(!reported.is_empty(), "no progress for two minutes of audio");
        assert!(reported.windows(2).all(|w| w[0] < w[1]), "{reported:?}");
        assert!(
            reported
                .iter()
                .all(|p| p % 10 == 0 && (10..=90).contains(p)),
            "{reported:?}"
        );
        let _ = std::fs::remove_dir_all(&bucket);

        // Each becomes the notification record_completion reads as progress of this upload.
        let message = progress_notification(&id, &job, 40).to_string();
        match transcoder_core::Notification::parse(&message) {
            Ok(transcoder_core::Notification::Progress(p)) => {
                assert_eq!((p.job_id.as_str(), p.percent), ("local-progress", Some(40)));
                assert_eq!(p.upload, Some(job.upload_ref()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_file_longer_than_the_limit_fails_saying_so() {
        let bucket = bucket();
        tone(&bucket.join("media/alice/long.wav"), 3.0).await;
        let limits = Limits::new(Duration::from_secs(2));
        let notification = transcode(&bucket, limits, &job("media/alice/long.wav", "alice")).await;
        assert_eq!(notification["state"], "ERROR");
        assert_eq!(
            notification["messageDetails"],
            "the file is too long: 3.0 s of audio; the limit is 2.0 s"
        );
        assert_eq!(
            files_under(&bucket.join("transcoded")),
            Vec::<PathBuf>::new()
        );
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn an_mp3_longer_than_its_header_says_fails_rather_than_being_cut_off() {
        let bucket = bucket();
        // 2 s at 320 kb/s, then 60 s at 32 kb/s, without a Xing header: ffprobe estimates the
        // duration from the first frame's bitrate, 8 s, and ffmpeg decodes 62 s.
        let (head, rest) = (bucket.join("head.mp3"), bucket.join("rest.mp3"));
        for (path, seconds, bitrate) in [(&head, 2, "320k"), (&rest, 60, "32k")] {
            ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                &format!("sine=frequency=440:duration={seconds}"),
                "-ac",
                "2",
                "-ar",
                "44100",
                "-c:a",
                "libmp3lame",
                "-b:a",
                bitrate,
                "-write_xing",
                "0",
                "-id3v2_version",
                "0",
                path.to_str().unwrap(),
            ])
            .await;
        }
        let liar = [std::fs::read(&head).unwrap(), std::fs::read(&rest).unwrap()].concat();
        let source = bucket.join("media/alice/liar.mp3");
        std::fs::write(&source, liar).unwrap();
        let probed = probe_duration(&source, AudioFormat::Mp3, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(probed < 10.0, "{probed}");

        let notification =
            transcode(&bucket, four_hours(), &job("media/alice/liar.mp3", "alice")).await;
        assert_eq!(notification["state"], "ERROR", "{notification}");
        assert_eq!(
            notification["messageDetails"],
            "the audio is longer than the 8.0 s its header states, so its outputs were cut off"
        );
        assert_eq!(
            files_under(&bucket.join("transcoded")),
            Vec::<PathBuf>::new()
        );
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[tokio::test]
    async fn a_run_past_its_time_is_killed_and_leaves_no_temporary_file() {
        let bucket = bucket();
        // Twenty minutes of audio, allowed 2 s in all: ffprobe reads the header in time,
        // ffmpeg cannot write three outputs of it.
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=22050:cl=mono",
            "-t",
            "1200",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "32k",
            bucket.join("media/alice/long.mp3").to_str().unwrap(),
        ])
        .await;
        let limits = Limits {
            max_duration: Duration::from_secs(4 * 3600),
            base_time: Duration::from_secs(2),
            time_per_audio_second: Duration::ZERO,
        };
        let notification = transcode(&bucket, limits, &job("media/alice/long.mp3", "alice")).await;
        assert_eq!(notification["state"], "ERROR", "{notification}");
        assert_eq!(
            notification["messageDetails"],
            "transcoding took longer than 2.0 s, the most allowed for 20 min 0 s of audio"
        );
        assert_eq!(
            files_under(&bucket.join("transcoded")),
            Vec::<PathBuf>::new()
        );
        let _ = std::fs::remove_dir_all(&bucket);
    }

    #[test]
    fn parts_left_by_a_killed_run_are_removed_and_nothing_else() {
        let dir = scratch().join("transcoded");
        std::fs::create_dir_all(dir.join("alice/live")).unwrap();
        let left = [
            ".song.mp3.wav.local-1-0.part",
            "live/.set.flac.flac.local-1-1.part",
        ];
        let kept = ["song.mp3.wav", "live/set.flac.flac", "part.mp3.wav"];
        for name in left.iter().chain(&kept) {
            std::fs::write(dir.join("alice").join(name), b"x").unwrap();
        }
        assert_eq!(remove_leftover_parts(&dir), 2);
        let mut found: Vec<PathBuf> = files_under(&dir);
        found.sort();
        let mut expected: Vec<PathBuf> = kept.iter().map(|k| dir.join("alice").join(k)).collect();
        expected.sort();
        assert_eq!(found, expected);
        assert_eq!(remove_leftover_parts(&dir.join("missing")), 0);
    }

    #[test]
    fn outputs_are_bounded_by_their_bitrate_and_the_duration() {
        let limits = Limits::new(Duration::from_secs(100));
        // 10 s of WAV is 1,764,000 bytes; the bound leaves a quarter and 1 MiB above it.
        assert_eq!(
            limits.output_bytes(OutputFormat::Wav, 10.0),
            2_205_000 + 1_048_576
        );
        // A duration above the limit counts as the limit.
        assert_eq!(
            limits.output_bytes(OutputFormat::Mp3, 1000.0),
            limits.output_bytes(OutputFormat::Mp3, 100.0)
        );
        assert_eq!(limits.time_for(30.0), Duration::from_secs(90));
        assert_eq!(limits.time_for(f64::INFINITY), Duration::from_secs(160));
    }

    #[test]
    fn spans_read_as_a_person_would_say_them() {
        assert_eq!(span(2.46), "2.5 s");
        assert_eq!(span(725.0), "12 min 5 s");
        assert_eq!(span(14_400.0), "4 h 0 min");
    }
}
