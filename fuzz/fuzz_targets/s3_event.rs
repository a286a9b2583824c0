//! `start_transcode` on any bytes taken for an S3 event (seeded with `events/s3-*.json`): it never
//! panics, accounts for every record exactly once, and starts jobs only for audio under the input
//! prefix, each with its outputs in the owner's folder under the output prefix.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use transcoder_core::{JobId, MemorySource, RawS3Event, StartConfig, TranscodeJob, Transcoder, TranscoderError, memory::MemoryStore, start_transcode};

#[derive(Default)]
struct KeepingTranscoder {
    jobs: Mutex<Vec<TranscodeJob>>,
}

impl Transcoder for KeepingTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.push(job.clone());
        Ok(JobId(format!("job-{}", jobs.len())))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<RawS3Event>(data) else {
        return;
    };
    let count = event.records.len();
    let config = StartConfig::from_env(&[]).unwrap();
    let transcoder = KeepingTranscoder::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let report = runtime
        .block_on(start_transcode(
            event,
            &config,
            &MemorySource::audio(),
            &transcoder,
            &MemoryStore::default(),
        ))
        .expect("an accepting transcoder, audio uploads and in-memory claims never fail");
    let mut seen: Vec<usize> = report
        .started
        .iter()
        .chain(&report.duplicates)
        .map(|s| s.record)
        .chain(report.skipped.iter().map(|s| s.record))
        .chain(report.rejected.iter().map(|s| s.record))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..count).collect::<Vec<_>>());
    for job in transcoder.jobs.lock().unwrap().iter() {
        assert!(job.source.as_str().starts_with("media/"));
        let folder = format!("transcoded/{}/", job.owner);
        assert!(
            job.outputs
                .iter()
                .all(|o| o.key.as_str().starts_with(&folder))
        );
    }
});
