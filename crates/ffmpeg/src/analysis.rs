//! What a job measures of its source, in a decoding run of its own: the loudness (ITU-R BS.1770
//! and EBU R128, by the `ebur128` crate) and the waveform's peaks (BBC audiowaveform's JSON
//! format, version 2, as peaks.js and wavesurfer read it). ffmpeg decodes the input, with the same
//! guarded flags as every run, to 32-bit float WAV on a pipe; the samples are measured as they
//! come, on a blocking thread, so no more than a few chunks of them are ever held.
//!
//! A mono source is measured as mono, and anything with more than two channels as the stereo
//! mix ffmpeg makes of it: what every output carries, since every output is stereo.

use std::path::Path;
use std::process::Stdio;

use ebur128::{EbuR128, Mode};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use transcoder_core::{Analysis, Loudness};

use crate::{
    Failure, Inspected, Limits, cannot_run, ffmpeg, file_url, read_as, readable, says_no_space,
    span, tail,
};

/// About how many points (min and max pairs) a waveform has across the whole file: enough for
/// any screen's width, and a few tens of kilobytes of JSON.
pub const WAVEFORM_POINTS: usize = 3000;

/// How far under the ceiling a normalized output's true peak is limited, for what the lossy
/// encoders add to it (an MP3 or Opus file's true peak is often a few tenths above its source's).
const PEAK_MARGIN_DB: f64 = 1.0;

/// The most of a WAV header read before its samples: ffmpeg writes well under 100 bytes.
const MOST_HEADER_BYTES: usize = 1 << 16;

/// A waveform in audiowaveform's JSON format, version 2: one channel (the channels' mean), 8-bit
/// values, and each point the lowest and highest sample of `samples_per_pixel` samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peaks {
    pub version: u32,
    pub channels: u32,
    pub sample_rate: u32,
    pub samples_per_pixel: u64,
    pub bits: u32,
    /// The number of points: half the length of `data`.
    pub length: usize,
    /// `min, max` of each point in turn, from -128 to 127.
    pub data: Vec<i8>,
}

impl Peaks {
    /// The file as it is stored beside the outputs.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The peaks of a waveform as its samples come: each point is the lowest and highest of
/// `per_point` mono samples, and when the points pass twice the aim (the audio is longer than
/// its header said), each two become one, so that however long the audio, its peaks stay small.
struct Waveform {
    sample_rate: u32,
    per_point: u64,
    points: Vec<(i8, i8)>,
    current: Option<(i8, i8)>,
    in_current: u64,
}

impl Waveform {
    fn new(sample_rate: u32, expected_seconds: f64) -> Self {
        let expected = (expected_seconds.max(0.0) * f64::from(sample_rate)).ceil() as u64;
        Self {
            sample_rate,
            per_point: expected.div_ceil(WAVEFORM_POINTS as u64).max(1),
            points: Vec::with_capacity(WAVEFORM_POINTS + 1),
            current: None,
            in_current: 0,
        }
    }

    /// One mono sample, from -1.0 to 1.0 (or past it, clipped): as audiowaveform reads a
    /// 16-bit sample and keeps its top 8 bits.
    fn add(&mut self, sample: f32) {
        let wide = (f64::from(sample) * 32768.0)
            .round()
            .clamp(-32768.0, 32767.0) as i32;
        let value = (wide / 256) as i8;
        self.current = Some(match self.current {
            Some((low, high)) => (low.min(value), high.max(value)),
            None => (value, value),
        });
        self.in_current += 1;
        if self.in_current == self.per_point {
            self.end_point();
        }
    }

    fn end_point(&mut self) {
        if let Some(point) = self.current.take() {
            self.points.push(point);
        }
        self.in_current = 0;
        if self.points.len() >= 2 * WAVEFORM_POINTS {
            self.points = self
                .points
                .chunks(2)
                .map(|two| {
                    let low = two.iter().map(|p| p.0).min().unwrap_or(0);
                    let high = two.iter().map(|p| p.1).max().unwrap_or(0);
                    (low, high)
                })
                .collect();
            self.per_point *= 2;
        }
    }

    fn finish(mut self) -> Peaks {
        self.end_point();
        Peaks {
            version: 2,
            channels: 1,
            sample_rate: self.sample_rate,
            samples_per_pixel: self.per_point,
            bits: 8,
            length: self.points.len(),
            data: self
                .points
                .iter()
                .flat_map(|&(low, high)| [low, high])
                .collect(),
        }
    }
}

/// What a stream of samples measures: loudness and true peak by `ebur128`, the waveform, and the
/// length.
struct Meter {
    channels: usize,
    sample_rate: u32,
    loudness: EbuR128,
    waveform: Waveform,
    frames: u64,
}

impl Meter {
    fn new(channels: u32, sample_rate: u32, expected_seconds: f64) -> Result<Self, Failure> {
        let mode = Mode::I | Mode::LRA | Mode::TRUE_PEAK | Mode::HISTOGRAM;
        let loudness = EbuR128::new(channels, sample_rate, mode).map_err(|e| {
            Failure::Reason(format!(
                "the audio cannot be measured ({channels} channels at {sample_rate} Hz): {e}"
            ))
        })?;
        Ok(Self {
            channels: channels as usize,
            sample_rate,
            loudness,
            waveform: Waveform::new(sample_rate, expected_seconds),
            frames: 0,
        })
    }

    /// Interleaved frames, whole ones only.
    fn add(&mut self, samples: &[f32]) -> Result<(), Failure> {
        self.loudness
            .add_frames_f32(samples)
            .map_err(|e| Failure::Reason(format!("the audio cannot be measured: {e}")))?;
        for frame in samples.chunks_exact(self.channels) {
            self.waveform
                .add(frame.iter().sum::<f32>() / self.channels as f32);
        }
        self.frames += (samples.len() / self.channels) as u64;
        Ok(())
    }

    fn finish(self) -> (Analysis, Peaks) {
        // Silence, and a file too short to measure, give -inf or an error: no value.
        let finite = |v: Result<f64, ebur128::Error>| v.ok().filter(|v| v.is_finite());
        let true_peak = (0..self.channels as u32)
            .filter_map(|ch| self.loudness.true_peak(ch).ok())
            .fold(0.0_f64, f64::max);
        let analysis = Analysis {
            duration_s: self.frames as f64 / f64::from(self.sample_rate),
            integrated_lufs: finite(self.loudness.loudness_global()),
            true_peak_dbtp: Some(20.0 * true_peak.log10()).filter(|v| v.is_finite()),
            loudness_range_lu: finite(self.loudness.loudness_range()),
            peaks: None,
        };
        (analysis, self.waveform.finish())
    }
}

/// The samples of a float WAV stream as they come: its header first (ffmpeg's, on a pipe, so
/// with no sizes to trust), then whole frames.
enum Stream {
    Header(Vec<u8>),
    Samples { meter: Box<Meter>, rest: Vec<u8> },
}

impl Stream {
    fn feed(&mut self, bytes: &[u8], expected_seconds: f64) -> Result<(), Failure> {
        match self {
            Self::Header(header) => {
                header.extend_from_slice(bytes);
                if let Some((channels, rate, start)) = wav_header(header)? {
                    let meter = Box::new(Meter::new(channels, rate, expected_seconds)?);
                    let rest = header.split_off(start);
                    *self = Self::Samples {
                        meter,
                        rest: Vec::new(),
                    };
                    return self.feed(&rest, expected_seconds);
                }
                if header.len() > MOST_HEADER_BYTES {
                    return Err(Failure::Reason(
                        "ffmpeg's decoded audio has no samples where expected".into(),
                    ));
                }
                Ok(())
            }
            Self::Samples { meter, rest } => {
                rest.extend_from_slice(bytes);
                let frame = 4 * meter.channels;
                let whole = rest.len() / frame * frame;
                let samples: Vec<f32> = rest[..whole]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                rest.drain(..whole);
                meter.add(&samples)
            }
        }
    }

    fn finish(self) -> Result<(Analysis, Peaks), Failure> {
        match self {
            Self::Samples { meter, .. } => Ok(meter.finish()),
            Self::Header(_) => Err(Failure::Reason(
                "the audio could not be decoded cleanly (no audio came out of it)".into(),
            )),
        }
    }
}

/// The channels, the sample rate and where the samples start in a 32-bit float WAV header, once
/// `header` holds all of it; `None` while it may still be coming.
fn wav_header(header: &[u8]) -> Result<Option<(u32, u32, usize)>, Failure> {
    let bad = |what: &str| Failure::Reason(format!("ffmpeg's decoded audio is not {what}"));
    if header.len() < 12 {
        return Ok(None);
    }
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return Err(bad("a WAV stream"));
    }
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let mut at = 12;
    let mut format = None;
    while header.len() >= at + 8 {
        let id = &header[at..at + 4];
        let size = u32_at(at + 4) as usize;
        let body = at + 8;
        if id == b"data" {
            let (channels, rate) = format.ok_or_else(|| bad("described before its samples"))?;
            return Ok(Some((channels, rate, body)));
        }
        if header.len() < body + size {
            return Ok(None);
        }
        if id == b"fmt " {
            if size < 16 {
                return Err(bad("described in full"));
            }
            let tag = u16_at(body);
            let float = tag == 3 || (tag == 0xFFFE && size >= 26 && u16_at(body + 24) == 3);
            let (channels, rate, bits) = (u16_at(body + 2), u32_at(body + 4), u16_at(body + 14));
            if !float || bits != 32 || channels == 0 || rate == 0 {
                return Err(bad("32-bit float"));
            }
            format = Some((u32::from(channels), rate));
        }
        at = body + size + size % 2;
    }
    Ok(None)
}

/// Decodes `input`, as `inspected`, and measures it: no more than `limits.max_duration` of
/// audio, the run killed past `limits.time_for` its duration. The analysis's `peaks` is left for
/// the caller to name, once it has stored them.
pub async fn analyze(
    input: &Path,
    inspected: &Inspected,
    limits: &Limits,
) -> Result<(Analysis, Peaks), Failure> {
    let mut command = ffmpeg();
    command
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-t"])
        .arg(limits.max_duration.as_secs_f64().to_string());
    read_as(&mut command, inspected.format, &file_url(input)?);
    command
        .args(["-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1"])
        .args(["-af", "aformat=sample_fmts=flt:channel_layouts=mono|stereo"])
        .args([
            "-c:a",
            "pcm_f32le",
            "-fflags",
            "+bitexact",
            "-f",
            "wav",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = transcoder_process::spawn(command).map_err(cannot_run)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let expected = inspected.duration;

    // The samples are measured on a blocking thread, a few chunks behind the pipe at most.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let measure = tokio::task::spawn_blocking(move || {
        let mut stream = Stream::Header(Vec::new());
        while let Some(chunk) = received.blocking_recv() {
            stream.feed(&chunk, expected)?;
        }
        stream.finish()
    });
    let read = async move {
        let Some(mut stdout) = stdout else { return };
        loop {
            let mut chunk = vec![0; 1 << 16];
            match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    // The measuring stopped on an error: it says which.
                    if chunks.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let allowed = limits.time_for(expected);
    let finished = tokio::time::timeout(allowed, async {
        let ((), stderr) = tokio::join!(read, tail(stderr));
        (child.wait().await, stderr)
    })
    .await;
    let Ok((status, stderr)) = finished else {
        let _ = child.kill().await;
        return Err(Failure::Reason(format!(
            "measuring took longer than {}, the most allowed for {} of audio",
            span(allowed.as_secs_f64()),
            span(expected)
        )));
    };
    let status = status.map_err(|e| format!("ffmpeg did not finish: {e}"))?;
    let measured = measure
        .await
        .map_err(|e| Failure::Reason(format!("the audio could not be measured: {e}")))?;
    if !status.success() {
        if says_no_space(&stderr) {
            return Err(Failure::NoSpace(crate::complaint(&stderr)));
        }
        return Err(Failure::Reason(readable(&stderr)));
    }
    measured
}

/// The filter that brings audio measured as `measured` to `target`: one gain, from the measured
/// integrated loudness to the target's, and where that gain would take the true peak past the
/// ceiling (less a margin for the lossy encoders), a lookahead limiter over 4× oversampled audio
/// (so that it limits true peaks, not only samples). The audio is made stereo first, as every
/// output is, so that what is limited is what is encoded. `None` for audio with no integrated
/// loudness (silence): there is nothing to bring anywhere.
///
/// `correction_db` is added to the gain: what an output made with the plain gain still missed
/// the target by (a lossy encoder drops what it finds masked, and with it a few tenths of a LU).
pub fn loudness_filter(
    target: Loudness,
    measured: &Analysis,
    correction_db: f64,
) -> Option<String> {
    let integrated = measured.integrated_lufs?;
    let gain = target.integrated_lufs() - integrated + correction_db;
    let ceiling = target.true_peak_dbtp() - PEAK_MARGIN_DB;
    let mut filter = format!("aformat=channel_layouts=stereo,volume={gain:.2}dB");
    let peak_after = measured.true_peak_dbtp.map_or(f64::INFINITY, |p| p + gain);
    if peak_after > ceiling {
        let limit = 10f64.powf(ceiling / 20.0);
        filter.push_str(&format!(
            ",aresample=192000,alimiter=limit={limit:.4}:attack=5:release=50:level=0:latency=1"
        ));
    }
    Some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u16, channels: u16, rate: u32, bits: u16, extra: &[u8]) -> Vec<u8> {
        let mut h = b"RIFF\xff\xff\xff\xffWAVE".to_vec();
        h.extend_from_slice(b"LIST\x04\x00\x00\x00INFO");
        let size = 16 + extra.len() as u32;
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&size.to_le_bytes());
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * 4 * u32::from(channels)).to_le_bytes());
        h.extend_from_slice(&(4 * channels).to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(extra);
        h.extend_from_slice(b"data\xff\xff\xff\xff");
        h
    }

    #[test]
    fn a_float_wav_header_is_read_whole_and_nothing_else_passes() {
        let h = header(3, 2, 48_000, 32, &[]);
        assert_eq!(wav_header(&h), Ok(Some((2, 48_000, h.len()))));
        // Still coming: not an answer yet.
        assert_eq!(wav_header(&h[..h.len() - 9]), Ok(None));
        assert_eq!(wav_header(&h[..20]), Ok(None));
        // WAVE_FORMAT_EXTENSIBLE, float.
        let mut extra = vec![22, 0, 32, 0, 3, 0, 0, 0, 3, 0];
        extra.extend_from_slice(&[0; 14]);
        let h = header(0xFFFE, 1, 8_000, 32, &extra);
        assert_eq!(wav_header(&h), Ok(Some((1, 8_000, h.len()))));
        for bad in [
            header(1, 2, 48_000, 16, &[]),
            header(3, 0, 48_000, 32, &[]),
            b"RIFF\0\0\0\0AVI LIST".to_vec(),
        ] {
            assert!(wav_header(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_stream_measures_the_same_however_it_is_cut() {
        let mut bytes = header(3, 2, 8_000, 32, &[]);
        for i in 0..8_000 * 3 {
            let v = if i % 40 < 20 { 0.5f32 } else { -0.5 };
            bytes.extend_from_slice(&v.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let measure = |cut: usize| {
            let mut stream = Stream::Header(Vec::new());
            for chunk in bytes.chunks(cut) {
                stream.feed(chunk, 3.0).unwrap();
            }
            stream.finish().unwrap()
        };
        let whole = measure(bytes.len());
        assert_eq!(whole.0.duration_s, 3.0);
        assert_eq!(whole.1.length, WAVEFORM_POINTS);
        assert_eq!((whole.1.data[0], whole.1.data[1]), (64, 64));
        assert_eq!((whole.1.data[6], whole.1.data[7]), (-64, -64));
        for cut in [1, 7, 13, 4096] {
            assert_eq!(measure(cut), whole, "cut every {cut} bytes");
        }
        // No samples at all.
        assert!(Stream::Header(Vec::new()).finish().is_err());
    }

    #[test]
    fn a_waveform_longer_than_expected_halves_its_resolution_and_stays_small() {
        let mut waveform = Waveform::new(1_000, 1.0);
        for i in 0..1_000 * 100 {
            waveform.add(if i < 50_000 { 1.0 } else { 0.0 });
        }
        let peaks = waveform.finish();
        assert!(
            (WAVEFORM_POINTS..2 * WAVEFORM_POINTS).contains(&peaks.length),
            "{}",
            peaks.length
        );
        assert_eq!(peaks.data.len(), 2 * peaks.length);
        let covered = peaks.length as u64 * peaks.samples_per_pixel;
        assert!(covered >= 100_000 && covered < 100_000 + 2 * peaks.samples_per_pixel);
        // The first half at full scale, the second silent.
        assert_eq!((peaks.data[0], peaks.data[1]), (127, 127));
        let last = peaks.data.len() - 2;
        assert_eq!((peaks.data[last], peaks.data[last + 1]), (0, 0));
    }

    #[test]
    fn the_gain_is_the_distance_to_the_target_and_the_limiter_comes_only_when_needed() {
        let measured = |integrated: f64, peak: f64| Analysis {
            duration_s: 10.0,
            integrated_lufs: Some(integrated),
            true_peak_dbtp: Some(peak),
            loudness_range_lu: Some(2.0),
            peaks: None,
        };
        assert_eq!(
            loudness_filter(Loudness::Podcast, &measured(-26.0, -14.0), 0.0).as_deref(),
            Some("aformat=channel_layouts=stereo,volume=10.00dB")
        );
        let limited = loudness_filter(Loudness::Podcast, &measured(-38.4, -19.7), 0.0).unwrap();
        assert!(
            limited.starts_with("aformat=channel_layouts=stereo,volume=22.40dB,aresample=192000,alimiter=limit=0.7943:"),
            "{limited}"
        );
        assert_eq!(
            loudness_filter(Loudness::Broadcast, &measured(-13.0, -0.5), 0.0).as_deref(),
            Some("aformat=channel_layouts=stereo,volume=-10.00dB")
        );
        // A correction adds to the gain.
        assert_eq!(
            loudness_filter(Loudness::Podcast, &measured(-26.0, -14.0), 0.4).as_deref(),
            Some("aformat=channel_layouts=stereo,volume=10.40dB")
        );
        let silent = Analysis {
            integrated_lufs: None,
            ..measured(0.0, 0.0)
        };
        assert_eq!(loudness_filter(Loudness::Podcast, &silent, 0.0), None);
    }
}
