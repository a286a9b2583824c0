//! One ffmpeg run per job: it decodes the input once and encodes every output from it, each
//! bounded in size, the whole run bounded in time, its progress read from `-progress`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::info;
use transcoder_core::{Escaped, OutputFormat, TranscodeJob};

use transcoder_core::{Analysis, Loudness};

use crate::{
    Failure, Inspected, Limits, Peaks, analyze, cannot_run, container_of, encoder_args, ffmpeg,
    file_url, loudness_filter, read_as, readable, says_no_space, span, tail,
};

/// Where a running job's progress goes: whole percentages, each higher than the last.
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<u8>;

/// One output of a run: its format and the (temporary) path ffmpeg writes it to. The caller
/// picks the path, moves or uploads the file when the run succeeded, and removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub format: OutputFormat,
    /// The bitrate of a lossy format, in kb/s; its default when `None`.
    pub bitrate_kbps: Option<u32>,
    pub path: PathBuf,
}

impl Output {
    /// The job's `output`, written to `path`.
    pub fn of(output: &transcoder_core::JobOutput, path: PathBuf) -> Self {
        Self {
            format: output.format,
            bitrate_kbps: output.bitrate(),
            path,
        }
    }
}

/// Encodes `input`, as `inspected`, into every one of `outputs` with one ffmpeg: the input's
/// exact demuxer, the `file` protocol only, no more than `limits.max_duration` of audio, each
/// output bounded in size (`-fs`), and the run killed (its whole process group) past
/// `limits.time_for` its duration. Progress goes to `progress` at each further tenth. The
/// outputs' folders are created. Returns what ffmpeg complained of while it still succeeded (a
/// damaged frame, say), if anything. An output cut off at its size bound fails the run: the audio
/// decoded to more than its header said, so it would be silently shorter than the source.
/// `filter`, if any (the loudness gain, [`crate::loudness_filter`]), is applied once and every
/// output made from what it gives.
#[allow(clippy::too_many_arguments)]
pub async fn encode(
    job_id: &str,
    job: &TranscodeJob,
    input: &Path,
    inspected: &Inspected,
    outputs: &[Output],
    filter: Option<&str>,
    limits: &Limits,
    progress: Option<ProgressSender>,
) -> Result<Option<String>, Failure> {
    let duration = inspected.duration;
    let mut command = ffmpeg();
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
        .arg(limits.max_duration.as_secs_f64().to_string());
    read_as(&mut command, inspected.format, &file_url(input)?);
    if let Some(filter) = filter {
        let labels: String = (0..outputs.len()).map(|i| format!("[a{i}]")).collect();
        command
            .arg("-filter_complex")
            .arg(format!("[0:a:0]{filter},asplit={}{labels}", outputs.len()));
    }
    let mut bounds = Vec::with_capacity(outputs.len());
    for (i, output) in outputs.iter().enumerate() {
        if let Some(dir) = output.path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                Failure::of_io(
                    format!("cannot create {}", Escaped(&dir.to_string_lossy())),
                    &e,
                )
            })?;
        }
        let most_bytes = limits.output_bytes(output.format, output.bitrate_kbps, duration);
        let stream = match filter {
            Some(_) => format!("[a{i}]"),
            None => "0:a:0".to_owned(),
        };
        command
            .arg("-map")
            .arg(stream)
            .args(["-map_metadata", "-1", "-vn"])
            .args(encoder_args(output.format, output.bitrate_kbps))
            .arg("-fs")
            .arg(most_bytes.to_string())
            .arg(file_url(&output.path)?);
        bounds.push(most_bytes);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its process group is killed on every way out of this function (a timeout, an aborted
    // job, a shutdown), and by the kernel if this process itself is killed.
    let mut child = transcoder_process::spawn(command).map_err(cannot_run)?;

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
    let allowed = limits.time_for(duration);
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
            return Err(Failure::NoSpace(crate::complaint(&stderr)));
        }
        return Err(Failure::Reason(readable(&stderr)));
    }
    for (output, most_bytes) in outputs.iter().zip(bounds) {
        let size = tokio::fs::metadata(&output.path)
            .await
            .map_or(0, |m| m.len());
        if size >= most_bytes {
            return Err(Failure::Reason(format!(
                "the audio is longer than the {} its header states, so its outputs were cut off",
                span(duration)
            )));
        }
    }
    Ok((!stderr.trim().is_empty()).then(|| readable(&stderr)))
}

/// What a job's runs give: ffmpeg's complaint if it still succeeded, and what was measured of
/// the source, with its waveform's peaks for the caller to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub warning: Option<String>,
    pub analysis: Analysis,
    pub peaks: Peaks,
}

/// Measures `input` and encodes it into `outputs` ([`analyze`], [`encode`]). With a loudness
/// asked for, the measurement comes first, since the gain the outputs are made through is
/// worked out from it; without one, both run at once.
pub async fn measure_and_encode(
    job_id: &str,
    job: &TranscodeJob,
    input: &Path,
    inspected: &Inspected,
    outputs: &[Output],
    limits: &Limits,
    progress: Option<ProgressSender>,
) -> Result<Encoded, Failure> {
    let (warning, (analysis, peaks)) = match job.loudness {
        Some(target) => {
            let measured = analyze(input, inspected, limits).await?;
            let filter = loudness_filter(target, &measured.0, 0.0);
            let encoded = encode(
                job_id,
                job,
                input,
                inspected,
                outputs,
                filter.as_deref(),
                limits,
                progress,
            )
            .await?;
            if filter.is_some() {
                correct_loudness(
                    job_id,
                    job,
                    input,
                    inspected,
                    outputs,
                    target,
                    &measured.0,
                    limits,
                )
                .await?;
            }
            (encoded, measured)
        }
        None => {
            let encoded = encode(
                job_id, job, input, inspected, outputs, None, limits, progress,
            );
            let (encoded, measured) = tokio::join!(encoded, analyze(input, inspected, limits));
            (encoded?, measured?)
        }
    };
    Ok(Encoded {
        warning,
        analysis,
        peaks,
    })
}

/// How far from the target an output's integrated loudness may be before it is made again.
const LOUDNESS_TOLERANCE_LU: f64 = 0.2;

/// Measures each normalized output, and makes again, with the gain corrected by what it
/// missed, each one further from `target` than [`LOUDNESS_TOLERANCE_LU`]: a lossy encoder at a
/// low bitrate drops a few tenths of a LU with what it finds masked. One correction is enough,
/// since what an encoder drops hardly depends on the level.
#[allow(clippy::too_many_arguments)]
async fn correct_loudness(
    job_id: &str,
    job: &TranscodeJob,
    input: &Path,
    inspected: &Inspected,
    outputs: &[Output],
    target: Loudness,
    measured: &Analysis,
    limits: &Limits,
) -> Result<(), Failure> {
    for output in outputs {
        let written = Inspected {
            format: container_of(output.format),
            duration: inspected.duration,
        };
        let (made, _) = analyze(&output.path, &written, limits).await?;
        let Some(missed) = made
            .integrated_lufs
            .map(|lufs| target.integrated_lufs() - lufs)
            .filter(|missed| missed.abs() > LOUDNESS_TOLERANCE_LU)
        else {
            continue;
        };
        info!(job_id, format = %output.format, missed_lu = format!("{missed:.2}"), "output made again at the corrected gain");
        let filter = loudness_filter(target, measured, missed);
        let again = std::slice::from_ref(output);
        encode(
            job_id,
            job,
            input,
            inspected,
            again,
            filter.as_deref(),
            limits,
            None,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use transcoder_core::{AudioFormat, ObjectKey, Owner, SourceObject};
    use transcoder_testkit::audio::{probe, tone};
    use transcoder_testkit::scratch;

    use crate::{inspect, probe_outputs};

    fn job(source: &str) -> TranscodeJob {
        TranscodeJob::plan(
            "test-bucket",
            ObjectKey::new(source).unwrap(),
            "1",
            Owner::new("alice").unwrap(),
            source.rsplit('/').next().unwrap(),
            "transcoded/",
            &OutputFormat::DEFAULT,
        )
    }

    /// A tone of `seconds` at `dir/name`, inspected as a host would, and its job.
    async fn input(dir: &Path, name: &str, seconds: f64) -> (PathBuf, Inspected, TranscodeJob) {
        let path = dir.join(name);
        tone(&path, seconds).await;
        let job = job(&format!("media/alice/{name}"));
        let upload = SourceObject {
            bucket: job.bucket.clone(),
            key: job.source.clone(),
            etag: None,
            size: None,
        };
        let limits = Limits::new(Duration::from_secs(4 * 3600));
        let inspected = inspect(&path, &upload, &limits).await.unwrap();
        (path, inspected, job)
    }

    /// Every output format, written below `dir/out/` (a folder `encode` creates).
    fn outputs(dir: &Path) -> Vec<Output> {
        OutputFormat::ALL
            .iter()
            .map(|&format| Output {
                format,
                bitrate_kbps: None,
                path: dir.join(format!("out/x.{format}.part")),
            })
            .collect()
    }

    #[tokio::test]
    async fn every_output_is_written_and_probed_back_as_ffprobe_reads_it() {
        let dir = scratch();
        let (path, inspected, job) = input(&dir, "a.mp3", 2.5).await;
        let outputs = outputs(&dir);
        let limits = Limits::new(Duration::from_secs(4 * 3600));
        let warning = encode(
            "t-1", &job, &path, &inspected, &outputs, None, &limits, None,
        )
        .await;
        assert_eq!(warning, Ok(None));
        let probed = probe_outputs(&outputs, Duration::from_secs(60)).await;
        for (output, (size, seconds)) in outputs.iter().zip(probed) {
            let on_disk = std::fs::metadata(&output.path).unwrap().len();
            assert_eq!(size, on_disk, "{output:?}");
            let (_, rate, channels, theirs) = probe(&output.path).await;
            // Opus runs at 48 kHz only.
            let expected = if output.format == OutputFormat::Opus {
                48_000
            } else {
                44_100
            };
            assert_eq!((rate, channels), (expected, 2), "{output:?}");
            let ours = seconds.unwrap_or_else(|| panic!("{output:?} not probed"));
            assert!(
                (ours - theirs).abs() < 0.05,
                "{output:?}: {ours} vs {theirs}"
            );
        }
    }

    #[tokio::test]
    async fn a_run_reports_its_progress_in_rising_tenths() {
        let dir = scratch();
        let (path, inspected, job) = input(&dir, "long.wav", 120.0).await;
        let limits = Limits::new(Duration::from_secs(4 * 3600));
        let (sender, mut percents) = tokio::sync::mpsc::unbounded_channel();
        let outputs = outputs(&dir);
        let ended = encode(
            "t-2",
            &job,
            &path,
            &inspected,
            &outputs,
            None,
            &limits,
            Some(sender),
        )
        .await;
        assert_eq!(ended, Ok(None));
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
    }

    #[tokio::test]
    async fn audio_longer_than_its_stated_duration_is_cut_off_and_refused() {
        let dir = scratch();
        let (path, inspected, job) = input(&dir, "a.wav", 30.0).await;
        // As a header that states one second would have it: each output is bounded to 1 s.
        let liar = Inspected {
            format: AudioFormat::Wav,
            duration: 1.0,
        };
        assert_eq!(inspected.format, liar.format);
        let limits = Limits::new(Duration::from_secs(4 * 3600));
        let ended = encode(
            "t-3",
            &job,
            &path,
            &liar,
            &outputs(&dir),
            None,
            &limits,
            None,
        )
        .await;
        assert_eq!(
            ended,
            Err(Failure::Reason(
                "the audio is longer than the 1.0 s its header states, so its outputs were cut off"
                    .into()
            ))
        );
    }

    #[tokio::test]
    async fn a_run_past_its_time_is_killed() {
        let dir = scratch();
        let (path, inspected, job) = input(&dir, "a.wav", 1.5).await;
        let limits = Limits {
            max_duration: Duration::from_secs(4 * 3600),
            base_time: Duration::from_millis(1),
            time_per_audio_second: Duration::ZERO,
        };
        let ended = encode(
            "t-4",
            &job,
            &path,
            &inspected,
            &outputs(&dir),
            None,
            &limits,
            None,
        )
        .await;
        assert_eq!(
            ended,
            Err(Failure::Reason(
                "transcoding took longer than 0.0 s, the most allowed for 1.5 s of audio".into()
            ))
        );
    }
}
