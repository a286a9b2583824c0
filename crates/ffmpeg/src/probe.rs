//! What an input is before ffmpeg encodes it: its container, from its bytes, and its duration,
//! from the header ffmpeg prints when it opens the file with the guarded flags. ffmpeg alone
//! does both (the Lambda layer has no ffprobe): opened with no output, it prints the input's
//! header and exits saying an output is missing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use transcoder_core::{AudioFormat, SourceError, SourceObject, SourceReader};

use crate::{
    Failure, Limits, Output, cannot_run, complaint, container_of, ffmpeg, file_url, read_as, span,
};

/// The most of ffmpeg's header kept when probing: far more than any real file's tags print, so
/// a file whose tags print more is refused rather than held in memory.
const HEADER_BYTES: u64 = 1 << 20;

/// One local file as core's [`SourceReader`], for [`transcoder_core::identify`]. A link is not
/// followed (in a shared folder it could point at any file on the machine), and nothing but a
/// regular file is read. Errors name the upload's key, as the other readers do.
#[derive(Debug, Clone, Copy)]
pub struct FileSource<'a>(pub &'a Path);

impl SourceReader for FileSource<'_> {
    async fn read_range(
        &self,
        upload: &SourceObject,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SourceError> {
        let key = upload.key.escaped();
        let gone = |why: &str| SourceError::gone(format!("'{key}': {why}"));
        match tokio::fs::symlink_metadata(self.0).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(gone("not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone("no such file")),
            Err(e) => return Err(SourceError::unavailable(format!("'{key}'")).caused_by(e)),
        }
        let unavailable =
            |e: std::io::Error| SourceError::unavailable(format!("'{key}'")).caused_by(e);
        let mut file = tokio::fs::File::open(self.0).await.map_err(unavailable)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(unavailable)?;
        let mut bytes = Vec::with_capacity(len);
        file.take(len as u64)
            .read_to_end(&mut bytes)
            .await
            .map_err(unavailable)?;
        Ok(bytes)
    }
}

/// The container of the local file at `path`, holding `upload`, from its bytes: the same
/// [`transcoder_core::identify`] the starter ran, read again now. What ffmpeg is told to read it as.
pub async fn identify_file(path: &Path, upload: &SourceObject) -> Result<AudioFormat, Failure> {
    match transcoder_core::identify(&FileSource(path), upload).await {
        Ok(Ok(format)) => Ok(format),
        Ok(Err(not_audio)) => Err(Failure::Reason(not_audio.to_string())),
        Err(e) => Err(Failure::Reason(format!("the file cannot be read: {e}"))),
    }
}

/// An input ready to encode: its container and its duration in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inspected {
    pub format: AudioFormat,
    pub duration: f64,
}

/// Identifies `input` (holding `upload`) by its bytes and probes its duration, refusing audio
/// longer than `limits.max_duration`.
pub async fn inspect(
    input: &Path,
    upload: &SourceObject,
    limits: &Limits,
) -> Result<Inspected, Failure> {
    let format = identify_file(input, upload).await?;
    let duration = probe_duration(input, format, limits.base_time).await?;
    let limit = limits.max_duration.as_secs_f64();
    if duration > limit {
        return Err(Failure::Reason(format!(
            "the file is too long: {} of audio; the limit is {}",
            span(duration),
            span(limit)
        )));
    }
    Ok(Inspected { format, duration })
}

/// The duration of a media file read as `format`, in seconds, or why it cannot be read as audio.
/// ffmpeg opens it with the guarded flags and no output, and is killed if it takes longer than
/// `allowed`; the duration is the one its header states, and the file must have an audio stream.
pub async fn probe_duration(
    path: &Path,
    format: AudioFormat,
    allowed: Duration,
) -> Result<f64, String> {
    let url = file_url(path)?;
    let mut command = ffmpeg();
    command.args(["-hide_banner", "-nostdin", "-loglevel", "info"]);
    read_as(&mut command, format, &url);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = transcoder_process::spawn(command).map_err(cannot_run)?;
    let stderr = child.stderr.take();
    let run = async {
        let header = head(stderr).await;
        (child.wait().await, header)
    };
    let (status, header) = tokio::time::timeout(allowed, run).await.map_err(|_| {
        format!(
            "reading the file took longer than {}",
            span(allowed.as_secs_f64())
        )
    })?;
    // It always exits with an error here (no output was named): the header says what it read.
    status.map_err(|e| format!("ffmpeg did not finish: {e}"))?;
    stated_duration(&header, &url.to_string_lossy())
        .map_err(|complaint| format!("it is not audio that could be read ({complaint})"))
}

/// The first [`HEADER_BYTES`] of ffmpeg's stderr; the rest is read and dropped so that ffmpeg
/// never blocks on the pipe.
async fn head(pipe: Option<tokio::process::ChildStderr>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let _ = (&mut pipe).take(HEADER_BYTES).read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).into_owned()
}

/// The duration, in seconds, that ffmpeg's header of the input `url` states, if it has an audio
/// stream; otherwise what ffmpeg complained of. Only the lines of that header count, and only at
/// the header's own indent: tags print deeper, so no tag or file name can pass for them.
fn stated_duration(stderr: &str, url: &str) -> Result<f64, String> {
    let Some((_, header)) = stderr.split_once(&format!(", from '{url}':")) else {
        return Err(complaint(stderr));
    };
    let mut duration = None;
    let mut audio = false;
    for line in header.lines() {
        if let Some(rest) = line.strip_prefix("  Duration: ") {
            duration = duration.or_else(|| Some(clock(rest.split(',').next().unwrap_or_default())));
        } else if line.starts_with("  Stream #0:") && line.contains(": Audio: ") {
            audio = true;
        }
    }
    match duration {
        None => Err(complaint(stderr)),
        Some(None) => Err("it states no duration".to_owned()),
        Some(Some(_)) if !audio => Err("it has no audio stream".to_owned()),
        Some(Some(seconds)) => Ok(seconds),
    }
}

/// `HH:MM:SS.cc` in seconds, if it is a duration longer than zero (not `N/A`).
fn clock(text: &str) -> Option<f64> {
    let mut parts = text.trim().splitn(3, ':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    let total = (hours * 3600 + minutes * 60) as f64 + seconds;
    (total > 0.0 && total.is_finite()).then_some(total)
}

/// Each output's size in bytes and duration in seconds (`None` where it cannot be read), probed
/// at once: one ffmpeg start-up each is most of the cost. Each probe may take `allowed`.
pub async fn probe_outputs(outputs: &[Output], allowed: Duration) -> Vec<(u64, Option<f64>)> {
    let probes = outputs.iter().map(|output| async move {
        let size = tokio::fs::metadata(&output.path)
            .await
            .map_or(0, |m| m.len());
        let duration = probe_duration(&output.path, container_of(output.format), allowed);
        (size, duration.await.ok())
    });
    futures::future::join_all(probes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted_demuxers;
    use std::path::PathBuf;
    use tokio::process::Command;
    use transcoder_core::ObjectKey;
    use transcoder_testkit::audio::{ffmpeg, hls_playlist, tone};
    use transcoder_testkit::{Scratch, scratch};

    /// The upload `path` holds, as a host names it.
    fn upload(path: &Path) -> SourceObject {
        let name = path.file_name().unwrap().to_string_lossy();
        SourceObject {
            bucket: "test-bucket".into(),
            key: ObjectKey::new(format!("media/alice/{name}")).unwrap(),
            etag: None,
            size: std::fs::metadata(path).ok().map(|m| m.len()),
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
        // The name may be a list itself (`mov,mp4,m4a,…`): the duration is the last field.
        let (name, duration) = text.trim().rsplit_once(',')?;
        Some((name.to_owned(), duration.parse().unwrap_or(0.0)))
    }

    /// A folder with one tone in each accepted container, and its format.
    async fn tones(seconds: f64) -> (Scratch, Vec<(PathBuf, AudioFormat)>) {
        let dir = scratch();
        let mut made = Vec::new();
        for (name, format) in [
            ("a.mp3", AudioFormat::Mp3),
            ("a.aac", AudioFormat::Aac),
            ("a.wav", AudioFormat::Wav),
            ("a.flac", AudioFormat::Flac),
            ("a.ogg", AudioFormat::Ogg),
            ("a.m4a", AudioFormat::Mp4),
        ] {
            let path = dir.join(name);
            tone(&path, seconds).await;
            made.push((path, format));
        }
        (dir, made)
    }

    #[tokio::test]
    async fn the_flags_refuse_playlists_and_concat_lists_that_plain_ffprobe_follows() {
        let dir = scratch();
        let (alice, bob) = (dir.join("alice"), dir.join("bob"));
        let song = alice.join("song.mp3");
        tone(&song, 2.0).await;
        std::fs::create_dir_all(&bob).unwrap();
        std::fs::copy(&song, bob.join("mine.mp3")).unwrap();
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
            let path = bob.join(name);
            std::fs::write(&path, text).unwrap();
            // Without the flags, ffprobe follows the list into the audio it names...
            let (found, seconds) = plain_probe(&path).await.unwrap_or_default();
            assert_eq!(found, demuxer, "{name}");
            assert!(seconds > 0.0 || demuxer == "concat", "{name}: {seconds}");
            // ...with them, read as the MP3 its name claims, it finds nothing to play.
            let refused = probe_duration(&path, AudioFormat::Mp3, Duration::from_secs(60)).await;
            let reason = refused.expect_err(name);
            assert!(
                reason.starts_with("it is not audio that could be read ("),
                "{name}: {reason}"
            );
            // The whitelist alone refuses the demuxer, even when it is asked for by name.
            let mut forced = ffmpeg_command();
            forced.args(["-v", "error", "-f", demuxer, "-protocol_whitelist", "file"]);
            forced
                .arg("-format_whitelist")
                .arg(accepted_demuxers())
                .arg("-i")
                .arg(file_url(&path).unwrap());
            let forced = forced.output().await.unwrap();
            assert!(!forced.status.success(), "{name}");
            assert!(
                String::from_utf8_lossy(&forced.stderr).contains("not on whitelist"),
                "{name}: {}",
                String::from_utf8_lossy(&forced.stderr)
            );
        }
        let repeated = plain_probe(&bob.join("repeated.mp3")).await;
        assert_eq!(repeated.map(|(_, s)| s.round()), Some(1000.0));
    }

    /// The program the crate runs, as a plain command.
    fn ffmpeg_command() -> Command {
        Command::new(crate::program())
    }

    #[tokio::test]
    async fn every_accepted_container_is_identified_and_read_with_the_flags() {
        let (_dir, made) = tones(1.5).await;
        for (path, format) in made {
            let name = path.display();
            assert_eq!(
                identify_file(&path, &upload(&path)).await,
                Ok(format),
                "{name}"
            );
            let limits = Limits::new(Duration::from_secs(60));
            let inspected = inspect(&path, &upload(&path), &limits).await.unwrap();
            assert_eq!(inspected.format, format, "{name}");
            assert!(
                (inspected.duration - 1.5).abs() < 0.1,
                "{name}: {inspected:?}"
            );
        }
    }

    #[tokio::test]
    async fn probe_duration_agrees_with_ffprobe_for_every_accepted_container() {
        let (_dir, made) = tones(2.7).await;
        for (path, format) in made {
            let ours = probe_duration(&path, format, Duration::from_secs(60))
                .await
                .unwrap();
            let (_, theirs) = plain_probe(&path).await.unwrap();
            assert!(
                (ours - theirs).abs() < 0.05,
                "{}: {ours} vs {theirs}",
                path.display()
            );
        }
    }

    #[tokio::test]
    async fn a_file_with_no_audio_stream_is_refused() {
        let dir = scratch();
        let video = dir.join("video.m4a");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=32x32",
            "-t",
            "1",
            "-f",
            "mp4",
            video.to_str().unwrap(),
        ])
        .await;
        // Its bytes are an MP4 with a general-purpose brand, as an audio-only M4A's may be.
        assert_eq!(
            identify_file(&video, &upload(&video)).await,
            Ok(AudioFormat::Mp4)
        );
        let refused = probe_duration(&video, AudioFormat::Mp4, Duration::from_secs(60)).await;
        assert_eq!(
            refused,
            Err("it is not audio that could be read (it has no audio stream)".to_owned())
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_there_or_a_link_is_not_read() {
        let dir = scratch();
        let song = dir.join("song.mp3");
        tone(&song, 1.0).await;
        let link = dir.join("link.mp3");
        std::os::unix::fs::symlink(&song, &link).unwrap();
        let reason = identify_file(&link, &upload(&song)).await.unwrap_err();
        assert_eq!(
            reason.to_string(),
            "the file cannot be read: the upload is gone or was replaced by a newer one: \
             'media/alice/song.mp3': not a regular file"
        );
        let missing = dir.join("missing.mp3");
        let refused = probe_duration(&missing, AudioFormat::Mp3, Duration::from_secs(60)).await;
        let reason = refused.unwrap_err();
        assert!(
            reason.starts_with("it is not audio that could be read (")
                && reason.contains("No such file"),
            "{reason}"
        );
    }

    #[test]
    fn only_the_header_of_the_input_states_its_duration() {
        let url = "file:/tmp/x.mp3";
        let header = |body: &str| {
            format!(
                "Input #0, mp3, from '{url}':\n{body}At least one output file must be specified\n"
            )
        };
        let real = header(
            "  Duration: 00:01:02.50, start: 0.0, bitrate: 64 kb/s\n  Stream #0:0: Audio: mp3, 44100 Hz\n",
        );
        assert_eq!(stated_duration(&real, url), Ok(62.5));
        // A tag's value or key printed in the header is indented deeper than the header's lines.
        let tagged = header(
            "  Metadata:\n    title           : x\n  Duration: 00:00:01.00, start: 0.0\n    Stream #0:0: Audio: : 1\n  Stream #0:0: Video: h264\n",
        );
        assert_eq!(
            stated_duration(&tagged, url),
            Err("it has no audio stream".to_owned())
        );
        let unknown =
            header("  Duration: N/A, start: 0.0, bitrate: N/A\n  Stream #0:0: Audio: mp3\n");
        assert_eq!(
            stated_duration(&unknown, url),
            Err("it states no duration".to_owned())
        );
        // Another file's header (a name that only starts like ours) is not this one's.
        let other = "Input #0, mp3, from 'file:/tmp/x.mp3.old':\n  Duration: 00:00:09.00\n  Stream #0:0: Audio: mp3\nfile:/tmp/x.mp3: Invalid data found when processing input\n";
        assert_eq!(
            stated_duration(other, url),
            Err("Invalid data found when processing input".to_owned())
        );
    }
}
