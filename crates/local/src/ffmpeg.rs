//! ffmpeg on this machine as the transcoder: the third implementation of `Transcoder`. One ffmpeg
//! run per job decodes the input once and encodes every output from it. When a job ends, the
//! backend reports it in Elastic Transcoder's notification shape, so the completion goes through
//! the same parser and the same `record_completion` handler as in the cloud.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{Semaphore, mpsc};
use tracing::{error, info, warn};
use transcoder_core::{JobId, OutputFormat, TranscodeJob, Transcoder, TranscoderError, metadata};

/// The encoder arguments of each output: the settings of Elastic Transcoder's system presets.
pub fn encoder_args(format: OutputFormat) -> &'static [&'static str] {
    match format {
        OutputFormat::Wav => &["-c:a", "pcm_s16le", "-ar", "44100", "-f", "wav"],
        OutputFormat::Flac => &[
            "-c:a",
            "flac",
            "-ar",
            "44100",
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
            "-f",
            "mp3",
        ],
    }
}

/// Runs jobs with ffmpeg, at most `slots` at once, and sends each job's final notification (a
/// JSON string in Elastic Transcoder's shape) to `notifications`.
#[derive(Clone)]
pub struct FfmpegTranscoder {
    bucket: PathBuf,
    slots: Arc<Semaphore>,
    notifications: mpsc::UnboundedSender<String>,
    next_job: Arc<AtomicU64>,
}

impl FfmpegTranscoder {
    pub fn new(
        bucket: impl Into<PathBuf>,
        slots: usize,
        notifications: mpsc::UnboundedSender<String>,
    ) -> Self {
        Self {
            bucket: bucket.into(),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            notifications,
            next_job: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Transcoder for FfmpegTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let input = self.bucket.join(job.source.as_str());
        if !input.is_file() {
            return Err(TranscoderError::new(format!(
                "{} is not a file",
                input.display()
            )));
        }
        let n = self.next_job.fetch_add(1, Ordering::SeqCst);
        let job_id = JobId(format!(
            "local-{}-{n}",
            chrono::Utc::now().timestamp_millis()
        ));
        let (this, job, id) = (self.clone(), job.clone(), job_id.0.clone());
        tokio::spawn(async move {
            let Ok(_slot) = this.slots.acquire().await else {
                return;
            };
            let notification = this.run(&id, &job).await;
            if this.notifications.send(notification.to_string()).is_err() {
                error!(
                    job_id = id,
                    "job finished after the runner stopped listening"
                );
            }
        });
        Ok(job_id)
    }
}

impl FfmpegTranscoder {
    /// Transcodes one job and returns its notification.
    async fn run(&self, job_id: &str, job: &TranscodeJob) -> Value {
        let started = Instant::now();
        let input = self.bucket.join(job.source.as_str());
        let result = match probe_duration(&input).await {
            Ok(duration) => self.transcode(job_id, job, &input, duration).await,
            Err(reason) => Err(reason),
        };
        let mut outputs = Vec::new();
        let state = match &result {
            Ok(warning) => {
                // The outputs are probed at once: one ffprobe start-up each is most of the cost.
                let probes = job.outputs.iter().map(|output| {
                    let path = self.bucket.join(output.key.as_str());
                    async move {
                        let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
                        (size, probe_duration(&path).await.ok())
                    }
                });
                let probed = futures::future::join_all(probes).await;
                for (i, (output, (size, duration))) in job.outputs.iter().zip(probed).enumerate() {
                    info!(
                        job_id,
                        key = %output.key,
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
                warn!(job_id, key = %job.source, reason, "job failed");
                for (i, output) in job.outputs.iter().enumerate() {
                    outputs.push(json!({"id": (i + 1).to_string(), "key": output.key.as_str(), "status": "Error", "statusDetail": reason}));
                }
                "ERROR"
            }
        };
        info!(job_id, key = %job.source, state, seconds = format!("{:.2}", started.elapsed().as_secs_f64()), "job finished");
        let user_metadata: serde_json::Map<String, Value> = metadata::for_job(job)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        let mut notification = json!({
            "state": state,
            "version": "2012-09-25",
            "jobId": job_id,
            "pipelineId": "local-ffmpeg",
            "input": {"key": job.source.as_str()},
            "inputCount": 1,
            "outputKeyPrefix": "",
            "outputs": outputs,
            "userMetadata": user_metadata,
        });
        match result {
            Err(reason) | Ok(Some(reason)) => notification["messageDetails"] = reason.into(),
            Ok(None) => {}
        }
        notification
    }

    /// Returns what ffmpeg complained of while it still succeeded (a damaged frame, say), if anything.
    async fn transcode(
        &self,
        job_id: &str,
        job: &TranscodeJob,
        input: &Path,
        duration: f64,
    ) -> Result<Option<String>, String> {
        // Outputs are written under temporary names and renamed when complete, so nobody ever
        // downloads half a file.
        let mut parts = Vec::new();
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
                "-i",
            ])
            .arg(input);
        for output in &job.outputs {
            let path = self.bucket.join(output.key.as_str());
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let part = path.with_file_name(format!(
                ".{}.part",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            command
                .args(["-map", "0:a:0", "-map_metadata", "-1", "-vn"])
                .args(encoder_args(output.format))
                .arg(&part);
            parts.push((part, path));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run ffmpeg: {e}"))?;

        // Progress, for long files: a line at every further tenth of the input.
        let stdout = child.stdout.take();
        let key = job.source.to_string();
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
                if duration >= 30.0 && tenth > reported && tenth < 10 {
                    reported = tenth;
                    info!(
                        job_id = job_id_owned,
                        key,
                        percent = tenth * 10,
                        "transcoding"
                    );
                }
            }
        });
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("ffmpeg did not finish: {e}"))?;
        let _ = progress.await;
        if !status.success() {
            for (part, _) in &parts {
                let _ = tokio::fs::remove_file(part).await;
            }
            return Err(readable(&stderr));
        }
        for (part, path) in parts {
            tokio::fs::rename(&part, &path)
                .await
                .map_err(|e| format!("cannot move {} into place: {e}", path.display()))?;
        }
        Ok((!stderr.trim().is_empty()).then(|| readable(&stderr)))
    }
}

/// The duration of a media file in seconds, or why it cannot be read as audio.
pub async fn probe_duration(path: &Path) -> Result<f64, String> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse::<f64>() {
        Ok(duration) if output.status.success() && duration > 0.0 => Ok(duration),
        _ => Err(format!(
            "it is not audio that could be read ({})",
            complaint(&String::from_utf8_lossy(&output.stderr))
        )),
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
