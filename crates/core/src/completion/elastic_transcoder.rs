//! Elastic Transcoder's notification, which it publishes to SNS itself; our own ffmpeg backends
//! (`lambda`, local) announce their jobs in the same shape. Its traps are in docs/aws-shapes.md.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    CompletedOutput, Completion, Notification, NotificationError, identify, progress, upload_id,
    with_code,
};
use crate::analysis::Analysis;
use crate::key::ObjectKey;
use crate::outcome::Outcome;

/// Elastic Transcoder's notification; its shape and traps are in docs/aws-shapes.md.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ElasticTranscoderNotification {
    state: String,
    job_id: String,
    #[serde(default)]
    input: Option<EtInput>,
    #[serde(default)]
    output_key_prefix: Option<String>,
    #[serde(default)]
    outputs: Vec<EtOutput>,
    #[serde(default)]
    user_metadata: HashMap<String, String>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    message_details: Option<String>,
    /// Our own ffmpeg backends' measurements; read leniently, so that a damaged one loses only
    /// itself, never the job's end.
    #[serde(default)]
    analysis: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct EtInput {
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EtOutput {
    key: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_detail: Option<String>,
    /// Seconds.
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    error_code: Option<i64>,
}

impl ElasticTranscoderNotification {
    pub(super) fn into_notification(self) -> Result<Notification, NotificationError> {
        let outcome = match self.state.to_ascii_uppercase().as_str() {
            "COMPLETED" | "COMPLETE" => Outcome::Completed,
            "WARNING" => Outcome::CompletedWithWarnings,
            "ERROR" | "REJECTED" => Outcome::Failed,
            state @ ("PROGRESSING" | "SUBMITTED" | "SUPERSEDED") => {
                let superseded = state == "SUPERSEDED";
                let input_key = self.input.as_ref().and_then(|i| i.key.as_deref());
                let progress = progress(
                    self.job_id,
                    self.state,
                    None,
                    &self.user_metadata,
                    input_key,
                );
                return Ok(if superseded {
                    Notification::Superseded(progress)
                } else {
                    Notification::Progress(progress)
                });
            }
            _ => {
                return Err(NotificationError::UnknownState {
                    job_id: self.job_id,
                    state: self.state,
                });
            }
        };
        let input_key = self.input.as_ref().and_then(|i| i.key.as_deref());
        let (owner, source) = identify(&self.job_id, &self.user_metadata, input_key)?;
        let prefix = self.output_key_prefix.unwrap_or_default();
        // The job's own message when there is one; otherwise what its outputs say, each once.
        let mut details: Vec<String> = self
            .message_details
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .map(|d| with_code(d, self.error_code))
            .into_iter()
            .collect();
        let job_detail_given = !details.is_empty();
        let mut outputs = Vec::new();
        for output in self.outputs {
            let status = output.status.as_deref().unwrap_or_default();
            let failed = status.eq_ignore_ascii_case("error");
            if (failed || status.eq_ignore_ascii_case("warning"))
                && !job_detail_given
                && let Some(detail) = output
                    .status_detail
                    .as_deref()
                    .filter(|d| !d.trim().is_empty())
            {
                let detail = with_code(detail, output.error_code);
                if !details.contains(&detail) {
                    details.push(detail);
                }
            }
            if let Some(key) = output.key.filter(|_| !failed)
                && let Ok(key) = ObjectKey::new(format!("{prefix}{key}"))
            {
                outputs.push(CompletedOutput {
                    key,
                    duration_ms: output
                        .duration
                        .filter(|d| d.is_finite() && *d >= 0.0)
                        .map(|d| (d * 1000.0) as u64),
                });
            }
        }
        if outcome == Outcome::Failed {
            outputs.clear();
        }
        let analysis = self
            .analysis
            .filter(|_| outcome != Outcome::Failed)
            .and_then(|value| serde_json::from_value::<Analysis>(value).ok())
            .and_then(Analysis::checked);
        Ok(Notification::Final(Completion {
            analysis,
            upload: upload_id(&self.user_metadata),
            rejected: self.state.eq_ignore_ascii_case("REJECTED"),
            job_id: self.job_id,
            owner,
            source,
            outcome,
            outputs,
            detail: (!details.is_empty()).then(|| details.join("; ")),
        }))
    }
}
