//! A job's progress and end as the notifications the cloud transcoders publish, so that they go
//! through the same parser (`transcoder_core::Notification::parse`) and the same
//! `record_completion` handler whichever host ran ffmpeg. The end is in Elastic Transcoder's
//! shape; progress in MediaConvert's `STATUS_UPDATE`, the one with a percentage.

use serde_json::{Value, json};
use transcoder_core::{Analysis, JobId, TranscodeJob, metadata};

/// How a job that wrote its outputs ended: ffmpeg's complaint if it still succeeded, and each
/// output's size in bytes and duration in seconds (as [`crate::probe_outputs`] gives them), in
/// the order of the job's outputs, and what was measured of the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub warning: Option<String>,
    pub outputs: Vec<(u64, Option<f64>)>,
    pub analysis: Option<Analysis>,
}

/// The user metadata every notification of `job` carries, as the transcoders in the cloud do.
fn user_metadata(job: &TranscodeJob) -> serde_json::Map<String, Value> {
    metadata::for_job(job)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect()
}

/// A running job's progress: MediaConvert's `STATUS_UPDATE` (Elastic Transcoder's `PROGRESSING`
/// has no percentage), from `source` (`local.ffmpeg`, `lambda.ffmpeg`).
pub fn progress_notification(
    source: &str,
    job_id: &JobId,
    job: &TranscodeJob,
    percent: u8,
) -> Value {
    json!({
        "detail-type": "MediaConvert Job State Change",
        "source": source,
        "detail": {
            "jobId": job_id.0,
            "status": "STATUS_UPDATE",
            "userMetadata": user_metadata(job),
            "jobProgress": {"jobPercentComplete": percent},
        },
    })
}

/// A job's end in Elastic Transcoder's shape, from `pipeline` (`local-ffmpeg`, `lambda-ffmpeg`):
/// `COMPLETED`, `WARNING` (ffmpeg complained but wrote every output) or `ERROR` with the reason,
/// which also goes in `messageDetails`.
pub fn final_notification(
    pipeline: &str,
    job_id: &str,
    job: &TranscodeJob,
    result: &Result<Done, String>,
) -> Value {
    let (state, outputs): (&str, Vec<Value>) = match result {
        Ok(done) => {
            let (state, status) = match done.warning {
                Some(_) => ("WARNING", "Warning"),
                None => ("COMPLETED", "Complete"),
            };
            let outputs = job.outputs.iter().enumerate().map(|(i, output)| {
                let duration = done.outputs.get(i).and_then(|(_, d)| *d);
                json!({"id": (i + 1).to_string(), "key": output.key.as_str(), "status": status, "statusDetail": done.warning, "duration": duration})
            });
            (state, outputs.collect())
        }
        Err(reason) => {
            let outputs = job.outputs.iter().enumerate().map(|(i, output)| {
                json!({"id": (i + 1).to_string(), "key": output.key.as_str(), "status": "Error", "statusDetail": reason})
            });
            ("ERROR", outputs.collect())
        }
    };
    let mut notification = json!({
        "state": state,
        "version": "2012-09-25",
        "jobId": job_id,
        "pipelineId": pipeline,
        "input": {"key": job.source.as_str()},
        "inputCount": 1,
        "outputKeyPrefix": "",
        "outputs": outputs,
        "userMetadata": user_metadata(job),
    });
    if let Ok(Done {
        analysis: Some(analysis),
        ..
    }) = result
    {
        notification["analysis"] = json!(analysis);
    }
    match result {
        Err(reason)
        | Ok(Done {
            warning: Some(reason),
            ..
        }) => notification["messageDetails"] = reason.as_str().into(),
        Ok(_) => {}
    }
    notification
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcoder_core::{Notification, ObjectKey, Outcome, OutputFormat, Owner};

    fn job() -> TranscodeJob {
        TranscodeJob::plan(
            "test-bucket",
            ObjectKey::new("media/alice/song.mp3").unwrap(),
            "1",
            Owner::new("alice").unwrap(),
            "song.mp3",
            "transcoded/",
            &OutputFormat::DEFAULT,
        )
    }

    #[test]
    fn progress_parses_as_progress_of_the_jobs_upload() {
        let job = job();
        let id = JobId("lambda-progress".into());
        let message = progress_notification("lambda.ffmpeg", &id, &job, 40).to_string();
        match Notification::parse(&message) {
            Ok(Notification::Progress(p)) => {
                assert_eq!(
                    (p.job_id.as_str(), p.percent),
                    ("lambda-progress", Some(40))
                );
                assert_eq!(p.upload, Some(job.upload_ref()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_was_measured_reaches_the_completion() {
        let job = job();
        let analysis = Analysis {
            duration_s: 2.5,
            integrated_lufs: Some(-16.1),
            true_peak_dbtp: Some(-1.2),
            loudness_range_lu: None,
            peaks: job.peaks.clone(),
        };
        let done = Done {
            warning: None,
            outputs: vec![(10, Some(2.5)); job.outputs.len()],
            analysis: Some(analysis.clone()),
        };
        let value = final_notification("lambda-ffmpeg", "job-1", &job, &Ok(done));
        let Ok(Notification::Final(completion)) = Notification::parse(&value.to_string()) else {
            panic!("{value}");
        };
        assert_eq!(completion.analysis, Some(analysis));
    }

    #[test]
    fn each_end_parses_with_its_state_outputs_and_reason() {
        let job = job();
        let done = |warning: Option<&str>| Done {
            analysis: None,
            warning: warning.map(str::to_owned),
            outputs: vec![(10, Some(2.5)); job.outputs.len()],
        };
        let cases = [
            (Ok(done(None)), "COMPLETED", Outcome::Completed),
            (
                Ok(done(Some("a damaged frame"))),
                "WARNING",
                Outcome::CompletedWithWarnings,
            ),
            (
                Err("the file is too long".to_owned()),
                "ERROR",
                Outcome::Failed,
            ),
        ];
        for (result, state, outcome) in cases {
            let value = final_notification("lambda-ffmpeg", "job-1", &job, &result);
            assert_eq!(
                (&value["state"], &value["pipelineId"]),
                (&state.into(), &"lambda-ffmpeg".into())
            );
            let parsed = Notification::parse(&value.to_string());
            let Ok(Notification::Final(completion)) = parsed else {
                panic!("{state}: {parsed:?}");
            };
            assert_eq!(
                (completion.job_id.as_str(), completion.outcome),
                ("job-1", outcome)
            );
            assert_eq!(completion.upload_ref(), Some(job.upload_ref()), "{state}");
            let reason = match &result {
                Ok(done) => done.warning.clone(),
                Err(reason) => Some(reason.clone()),
            };
            assert_eq!(completion.detail, reason, "{state}");
            if outcome != Outcome::Failed {
                let keys: Vec<_> = completion.outputs.iter().map(|o| o.key.clone()).collect();
                let planned: Vec<_> = job.outputs.iter().map(|o| o.key.clone()).collect();
                assert_eq!(keys, planned, "{state}");
                assert!(
                    completion
                        .outputs
                        .iter()
                        .all(|o| o.duration_ms == Some(2500)),
                    "{completion:?}"
                );
            }
        }
    }
}
