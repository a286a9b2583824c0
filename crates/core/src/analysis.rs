//! What a job measured of its source: its length, its loudness (ITU-R BS.1770 / EBU R128) and
//! where its waveform's peaks are. The `lambda` and local backends measure it in the same job as
//! the outputs; MediaConvert and Elastic Transcoder measure nothing, and their uploads have none.

use serde::{Deserialize, Serialize};

use crate::key::ObjectKey;

/// One upload's measurements, as its record keeps them and `GET /uploads/{id}` shows them. A
/// value that cannot be measured is `None`: the loudness of silence (below the absolute gate of
/// -70 LUFS), the peak of a file of zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Seconds of audio decoded.
    pub duration_s: f64,
    /// Integrated loudness, in LUFS.
    pub integrated_lufs: Option<f64>,
    /// The highest true peak of any channel, in dBTP.
    pub true_peak_dbtp: Option<f64>,
    /// Loudness range, in LU.
    pub loudness_range_lu: Option<f64>,
    /// The waveform's peaks (BBC audiowaveform's JSON, version 2), stored beside the outputs.
    #[serde(default)]
    pub peaks: Option<ObjectKey>,
}

impl Analysis {
    /// The analysis with every value a measurement can give, and none it cannot: a duration
    /// that is not a finite, non-negative number makes the whole of it unusable; a loudness or
    /// a peak outside what any audio measures (-200..=+30) is left out. Applied to what a
    /// notification carries, so a damaged or forged one cannot put `NaN` in a record.
    pub fn checked(self) -> Option<Self> {
        let plausible = |v: Option<f64>| v.filter(|v| v.is_finite() && (-200.0..=30.0).contains(v));
        (self.duration_s.is_finite() && self.duration_s >= 0.0).then(|| Self {
            duration_s: self.duration_s,
            integrated_lufs: plausible(self.integrated_lufs),
            true_peak_dbtp: plausible(self.true_peak_dbtp),
            loudness_range_lu: self
                .loudness_range_lu
                .filter(|v| v.is_finite() && (0.0..=200.0).contains(v)),
            peaks: self.peaks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Analysis {
        Analysis {
            duration_s: 12.5,
            integrated_lufs: Some(-16.1),
            true_peak_dbtp: Some(-1.2),
            loudness_range_lu: Some(3.4),
            peaks: Some(ObjectKey::new("transcoded/alice/a.mp3.peaks.json").unwrap()),
        }
    }

    #[test]
    fn a_measurement_passes_the_check_unchanged() {
        assert_eq!(measured().checked(), Some(measured()));
    }

    #[test]
    fn values_no_audio_measures_are_left_out_and_a_bad_duration_drops_it_all() {
        let odd = Analysis {
            integrated_lufs: Some(f64::NAN),
            true_peak_dbtp: Some(1e9),
            loudness_range_lu: Some(-1.0),
            ..measured()
        };
        let checked = odd.checked().unwrap();
        assert_eq!(
            (
                checked.integrated_lufs,
                checked.true_peak_dbtp,
                checked.loudness_range_lu
            ),
            (None, None, None)
        );
        for duration_s in [f64::INFINITY, -1.0, f64::NAN] {
            let bad = Analysis {
                duration_s,
                ..measured()
            };
            assert_eq!(bad.checked(), None, "{duration_s}");
        }
    }

    #[test]
    fn it_reads_back_what_it_writes_and_peaks_may_be_absent() {
        let json = serde_json::to_string(&measured()).unwrap();
        assert_eq!(serde_json::from_str::<Analysis>(&json).unwrap(), measured());
        let none: Analysis = serde_json::from_str(
            r#"{"duration_s": 1.0, "integrated_lufs": null, "true_peak_dbtp": null, "loudness_range_lu": null}"#,
        )
        .unwrap();
        assert_eq!(none.peaks, None);
    }
}
