//! What a job measures, checked by the standard's own test signals and by a second tool: each
//! loudness the `ebur128` crate gives (through [`analyze`]) is measured again by ffmpeg's own
//! `ebur128` filter, which the code under test does not use. The peaks file is checked against
//! audiowaveform's format, and a normalized output against the target it was asked for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use transcoder_core::{
    Analysis, Loudness, ObjectKey, OutputFormat, Outputs, Owner, SourceObject, TranscodeJob,
};
use transcoder_ffmpeg::{Inspected, Limits, Output, Peaks, analyze, inspect, measure_and_encode};
use transcoder_testkit::audio::{ffmpeg_ebur128, lavfi, probe, quiet_speech};
use transcoder_testkit::scratch;

fn limits() -> Limits {
    Limits::new(Duration::from_secs(4 * 3600))
}

async fn inspected(path: &Path) -> Inspected {
    let upload = SourceObject {
        bucket: "b".into(),
        key: ObjectKey::new("media/alice/x.wav").unwrap(),
        etag: None,
        size: None,
    };
    inspect(path, &upload, &limits()).await.unwrap()
}

async fn measured(path: &Path) -> (Analysis, Peaks) {
    analyze(path, &inspected(path).await, &limits())
        .await
        .unwrap()
}

/// `seconds` of a 1 kHz sine at `dbfs` in both channels, 48 kHz: EBU Tech 3341's test signals 1
/// and 2 (-23 and -33 dBFS), which measure -23.0 and -33.0 LUFS.
async fn sine(dir: &Path, dbfs: f64, seconds: u32) -> PathBuf {
    let path = dir.join(format!("sine{dbfs}.wav"));
    let amplitude = 10f64.powf(dbfs / 20.0);
    let sine = format!(
        "aevalsrc={amplitude}*sin(2*PI*1000*t)|{amplitude}*sin(2*PI*1000*t):s=48000:d={seconds}"
    );
    lavfi(&path, &sine, &["-c:a", "pcm_f32le"]).await;
    path
}

#[tokio::test]
async fn tech_3341_sines_measure_their_level_by_both_tools() {
    let dir = scratch();
    for dbfs in [-23.0, -33.0] {
        let path = sine(&dir, dbfs, 20).await;
        let (analysis, _) = measured(&path).await;
        let ours = analysis.integrated_lufs.unwrap();
        assert!(
            (ours - dbfs).abs() <= 0.1,
            "{dbfs} dBFS measured {ours} LUFS"
        );
        let (theirs, _) = ffmpeg_ebur128(&path).await;
        assert!(
            (theirs - dbfs).abs() <= 0.1,
            "ffmpeg: {dbfs} dBFS measured {theirs} LUFS"
        );
        assert!((ours - theirs).abs() <= 0.1, "{ours} vs {theirs}");
        // A sine's true peak is its amplitude.
        let peak = analysis.true_peak_dbtp.unwrap();
        assert!((peak - dbfs).abs() <= 0.1, "{dbfs} dBFS peaks at {peak}");
        assert!((analysis.duration_s - 20.0).abs() < 0.01, "{analysis:?}");
        // A steady tone has no loudness range.
        assert!(analysis.loudness_range_lu.unwrap() < 0.5, "{analysis:?}");
    }
}

/// Checks `peaks` against audiowaveform's JSON format, version 2, as its stored file.
fn valid(peaks: &Peaks) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_slice(&peaks.to_json()).unwrap();
    assert_eq!(json["version"], 2);
    assert_eq!(json["channels"], 1);
    assert_eq!(json["bits"], 8);
    assert!(json["sample_rate"].as_u64().unwrap() > 0);
    assert!(json["samples_per_pixel"].as_u64().unwrap() > 0);
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len() as u64, 2 * json["length"].as_u64().unwrap());
    for pair in data.chunks(2) {
        let (min, max) = (pair[0].as_i64().unwrap(), pair[1].as_i64().unwrap());
        assert!((-128..=127).contains(&min) && (-128..=127).contains(&max));
        assert!(min <= max, "{pair:?}");
    }
    json
}

#[tokio::test]
async fn peaks_show_full_scale_silence_and_where_the_silence_starts() {
    let dir = scratch();
    let square = dir.join("square.wav");
    lavfi(
        &square,
        "aevalsrc=if(lt(mod(t*441\\,1)\\,0.5)\\,1\\,-1)|if(lt(mod(t*441\\,1)\\,0.5)\\,1\\,-1):s=44100:d=4",
        &["-c:a", "pcm_s16le"],
    )
    .await;
    let (_, peaks) = measured(&square).await;
    let json = valid(&peaks);
    assert!((2000..=6000).contains(&peaks.length), "{}", peaks.length);
    assert_eq!(json["sample_rate"], 44100);
    assert_eq!(peaks.data.iter().max(), Some(&127));
    assert_eq!(peaks.data.iter().min(), Some(&-128));

    let silence = dir.join("silence.wav");
    lavfi(&silence, "anullsrc=r=22050:cl=mono", &["-t", "3"]).await;
    let (analysis, peaks) = measured(&silence).await;
    valid(&peaks);
    assert!(
        peaks.data.iter().all(|&v| v == 0),
        "{:?}",
        &peaks.data[..10]
    );
    assert_eq!(
        (analysis.integrated_lufs, analysis.true_peak_dbtp),
        (None, None)
    );

    // 5 s of tone, then 5 s of silence.
    let half = dir.join("half.wav");
    lavfi(
        &half,
        "aevalsrc=if(lt(t\\,5)\\,0.8*sin(2*PI*440*t)\\,0):s=44100:d=10",
        &["-c:a", "pcm_s16le"],
    )
    .await;
    let (analysis, peaks) = measured(&half).await;
    valid(&peaks);
    let points: Vec<(i8, i8)> = peaks.data.chunks(2).map(|p| (p[0], p[1])).collect();
    let (first, second) = points.split_at(points.len() / 2);
    let loud = |p: &&(i8, i8)| p.1 > 90 && p.0 < -90;
    assert!(
        first[1..first.len() - 1].iter().all(|p| loud(&p)),
        "the tone"
    );
    assert!(second[1..].iter().all(|&p| p == (0, 0)), "the silence");
    assert!((analysis.duration_s - 10.0).abs() < 0.01);
}

/// Each output of `job`, written to `dir/out.{ext}`.
fn outputs_in(dir: &Path, job: &TranscodeJob) -> Vec<Output> {
    job.outputs
        .iter()
        .map(|o| Output::of(o, dir.join(format!("out.{}", o.format.extension()))))
        .collect()
}

fn job(outputs: &str, loudness: Option<Loudness>) -> TranscodeJob {
    let outputs: Outputs = outputs.parse().unwrap();
    let formats: Vec<OutputFormat> = outputs.formats().collect();
    let mut job = TranscodeJob::plan(
        "b",
        ObjectKey::new("media/alice/quiet.wav").unwrap(),
        "1",
        Owner::new("alice").unwrap(),
        "quiet.wav",
        "transcoded/",
        &formats,
    )
    .at_bitrates(&outputs);
    job.loudness = loudness;
    job
}

#[tokio::test]
async fn a_podcast_output_of_quiet_speech_is_at_minus_16_lufs_under_minus_1_dbtp() {
    let dir = scratch();
    let input = quiet_speech(&dir).await;
    let (source, _) = measured(&input).await;
    let before = source.integrated_lufs.unwrap();
    assert!(before < -30.0, "the speech is quiet: {before}");
    // At each format's default bitrate: an MP3 at 128 kb/s or less measures a few tenths lower
    // than its source, since the encoder drops what it finds masked (docs/pipeline.md).
    let job = job("wav,flac,aac,mp3,opus", Some(Loudness::Podcast));
    let outputs = outputs_in(&dir, &job);
    let inspected = inspected(&input).await;
    let encoded = measure_and_encode("t", &job, &input, &inspected, &outputs, &limits(), None)
        .await
        .unwrap();
    // What is recorded is the source's loudness, not the outputs'.
    assert_eq!(encoded.analysis.integrated_lufs, Some(before));
    for output in &outputs {
        let (integrated, peak) = ffmpeg_ebur128(&output.path).await;
        eprintln!("{:?}: {integrated} LUFS, {peak} dBTP", output.format);
        assert!(
            (integrated + 16.0).abs() <= 0.5,
            "{:?}: {integrated} LUFS",
            output.format
        );
        assert!(peak <= -1.0, "{:?}: peaks at {peak} dBTP", output.format);
    }
}

#[tokio::test]
async fn each_output_gets_its_bitrate_and_without_loudness_a_lossless_one_keeps_its_level() {
    let dir = scratch();
    // Music-like noise, so that no encoder spends less than its bitrate on it.
    let input = dir.join("noise.wav");
    lavfi(&input, "anoisesrc=c=pink:a=0.1:r=44100:d=20", &["-ac", "2"]).await;
    let (level, _) = ffmpeg_ebur128(&input).await;
    let job = job("mp3:96,opus:48,aac:64,flac", None);
    let outputs = outputs_in(&dir, &job);
    let inspected = inspected(&input).await;
    measure_and_encode("t", &job, &input, &inspected, &outputs, &limits(), None)
        .await
        .unwrap();
    for (output, (codec, kbps)) in
        outputs
            .iter()
            .zip([("mp3", 96), ("opus", 48), ("aac", 64), ("flac", 0)])
    {
        let (found, _, channels, seconds) = probe(&output.path).await;
        assert_eq!((found.as_str(), channels), (codec, 2), "{output:?}");
        let size = std::fs::metadata(&output.path).unwrap().len() as f64;
        if kbps > 0 {
            let rate = size * 8.0 / seconds / 1000.0;
            assert!(
                (rate - f64::from(kbps)).abs() / f64::from(kbps) < 0.25,
                "{output:?}: {rate:.1} kb/s"
            );
        }
        if kbps == 0 {
            // Lossless and not normalized: the level is the source's. (A lossy encoder's low-pass
            // takes some of the noise's top octave, so its level is not compared.)
            let (integrated, _) = ffmpeg_ebur128(&output.path).await;
            assert!(
                (integrated - level).abs() <= 0.1,
                "{output:?}: {integrated} vs {level}"
            );
        }
    }
}
