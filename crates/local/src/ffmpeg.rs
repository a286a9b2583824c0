//! ffmpeg on this machine as the transcoder: what runs a job of the third `Transcoder`, the local
//! queue (`crate::jobs`). How ffmpeg is run over an untrusted upload (exact demuxer, `file`
//! protocol only, time and size bounds, progress, the notifications) is `transcoder_ffmpeg`'s,
//! shared with the `transcode-audio` Lambda; this module adds what only the bucket folder has: a
//! budget per job and a quota per owner on its disk, outputs written under temporary names of the
//! job's own and renamed into place, and a newer upload of the key replacing the input mid-job.
//!
//! When a job ends, it is reported in Elastic Transcoder's notification shape, so the completion
//! goes through the same parser and the same `record_completion` handler as in the cloud; while
//! it runs, its progress at each further tenth, in MediaConvert's `STATUS_UPDATE` shape.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use tracing::{info, warn};
use transcoder_core::{Escaped, JobId, ObjectKey, SourceObject, TranscodeJob};
use transcoder_ffmpeg::{
    Done, Failure, Output, ProgressSender, final_notification, inspect, measure_and_encode,
    probe_outputs, span,
};

use crate::space::{DEFAULT_JOB_OUTPUT_BYTES, DEFAULT_USER_QUOTA_BYTES, bytes, bytes_under};

/// The limits this runner's jobs run under, and the arguments its outputs are encoded with: the
/// shared crate's, named here for the runner's callers (the benchmark, the layer's tests).
pub use transcoder_ffmpeg::{Limits, encoder_args, loudness_filter};

/// The `pipelineId` of this runner's final notifications.
pub const PIPELINE: &str = "local-ffmpeg";
/// The `source` of this runner's progress notifications.
pub const PROGRESS_SOURCE: &str = "local.ffmpeg";

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
    /// Every line it logs carries the job's id and key.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = %job_id, key = %job.source.escaped()))]
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
            Err(Stop::Replaced) => {
                info!("a newer upload replaced the file: outputs dropped");
                return Ended::Replaced;
            }
            Err(Stop::Failed(Failure::NoSpace(complaint))) => {
                warn!(complaint = %Escaped(&complaint), "the disk is full: outputs dropped; the job runs again once more space is free");
                return Ended::NoSpace;
            }
            Err(Stop::Failed(Failure::Reason(reason))) => Err(reason),
            Ok(done) => Ok(done),
        };
        let state = match &result {
            Ok(done) => {
                for (output, (size, duration)) in job.outputs.iter().zip(&done.outputs) {
                    info!(
                        output = %output.key.escaped(),
                        format = %output.format,
                        bytes = size,
                        seconds = duration.map(|d| format!("{d:.2}")),
                        "output written"
                    );
                }
                if done.warning.is_some() {
                    "WARNING"
                } else {
                    "COMPLETED"
                }
            }
            Err(reason) => {
                warn!(reason = %Escaped(reason), "job failed");
                "ERROR"
            }
        };
        info!(
            state,
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            "job finished"
        );
        Ended::Notification(final_notification(PIPELINE, job_id, job, &result))
    }

    /// Inspects, budgets and transcodes the input, and moves the outputs into place. Returns
    /// what ffmpeg complained of while it still succeeded (a damaged frame, say), if anything,
    /// and each output's size and duration.
    async fn transcode(
        &self,
        job_id: &str,
        job: &TranscodeJob,
        input: &Path,
        progress: Option<ProgressSender>,
    ) -> Result<Done, Stop> {
        let upload = Upload::of(input).await?;
        let source = SourceObject {
            bucket: job.bucket.clone(),
            key: job.source.clone(),
            etag: None,
            size: Some(upload.size),
        };
        let inspected = inspect(input, &source, &self.limits).await?;
        self.afford(job, inspected.duration).await?;
        // Outputs are written under names of this job's own and renamed when complete, so nobody
        // downloads half a file and two jobs for one key never write into the same file.
        let parts = Parts::of(&self.bucket, job_id, job);
        let outputs = parts.outputs();
        let limits = &self.limits;
        let encoded =
            measure_and_encode(job_id, job, input, &inspected, outputs, limits, progress).await?;
        let probed = probe_outputs(outputs, limits.time_for(inspected.duration)).await;
        let mut analysis = encoded.analysis;
        if let (Some(path), Some(key)) = (parts.peaks(), &job.peaks) {
            tokio::fs::write(path, encoded.peaks.to_json())
                .await
                .map_err(|e| Failure::of_io("cannot write the peaks".into(), &e))?;
            analysis.peaks = Some(key.clone());
        }
        // A newer upload of the key has its own job: these outputs would overwrite its outputs
        // with the older audio if that job finished first.
        if Upload::of(input).await? != upload {
            return Err(Stop::Replaced);
        }
        parts.commit().await?;
        Ok(Done {
            warning: encoded.warning,
            outputs: probed,
            analysis: Some(analysis),
        })
    }

    /// Refuses, before anything is encoded, a job whose outputs would pass the budget of one
    /// job, or take its owner's files past their quota.
    async fn afford(&self, job: &TranscodeJob, duration: f64) -> Result<(), Failure> {
        let outputs = self.limits.job_bytes(&job.outputs, duration);
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

/// Why a job of this runner wrote no outputs: ffmpeg's reasons, or a newer upload.
enum Stop {
    /// The job failed, or the disk is full.
    Failed(Failure),
    /// A newer upload of the key replaced the input.
    Replaced,
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

impl From<String> for Stop {
    fn from(reason: String) -> Self {
        Self::Failed(Failure::Reason(reason))
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

/// One file of a running job: the temporary file written, and where it goes when complete.
struct Part {
    temporary: PathBuf,
    path: PathBuf,
}

/// A job's temporary files: its outputs, then its waveform's peaks, if it draws them. Whatever
/// has not been moved into place is removed when they are dropped, so no way out of a job (a
/// refusal, a timeout, a stopped runner) leaves one behind.
struct Parts {
    files: Vec<Part>,
    outputs: Vec<Output>,
}

impl Parts {
    /// Each file of `job` below `bucket`, under a temporary name of the job's own beside it.
    fn of(bucket: &Path, job_id: &str, job: &TranscodeJob) -> Self {
        let part = |key: &ObjectKey| {
            let path = bucket.join(key.as_str());
            let temporary = path.with_file_name(format!(
                ".{}.{job_id}.part",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            Part { temporary, path }
        };
        let files: Vec<Part> = job
            .outputs
            .iter()
            .map(|o| &o.key)
            .chain(&job.peaks)
            .map(part)
            .collect();
        let outputs = job
            .outputs
            .iter()
            .zip(&files)
            .map(|(output, part)| Output::of(output, part.temporary.clone()))
            .collect();
        Self { files, outputs }
    }

    /// What ffmpeg writes: the outputs' temporary files.
    fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The peaks' temporary file, if the job draws them.
    fn peaks(&self) -> Option<&Path> {
        self.files
            .get(self.outputs.len())
            .map(|part| part.temporary.as_path())
    }

    /// Moves every file into place.
    async fn commit(mut self) -> Result<(), Failure> {
        while let Some(part) = self.files.pop() {
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
        for part in &self.files {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use transcoder_core::{AudioFormat, ObjectKey, OutputFormat, Owner};
    use transcoder_ffmpeg::probe_duration;
    use transcoder_testkit::audio::{ffmpeg, files_under, hls_playlist, probe, tone};
    use transcoder_testkit::{Scratch, scratch};

    /// A new bucket folder with an input folder for alice and one for bob.
    fn bucket() -> Scratch {
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

    fn four_hours() -> Limits {
        Limits::new(Duration::from_secs(4 * 3600))
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
    }

    #[test]
    fn parts_left_by_a_killed_run_are_removed_and_nothing_else() {
        let scratch = scratch();
        let dir = scratch.join("transcoded");
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
}
