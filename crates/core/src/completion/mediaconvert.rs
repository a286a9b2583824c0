//! MediaConvert's "MediaConvert Job State Change" EventBridge event, which a rule forwards to the
//! completion topic.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    CompletedOutput, Completion, Notification, NotificationError, identify, progress, upload_id,
    with_code,
};
use crate::key::ObjectKey;
use crate::outcome::Outcome;

/// The EventBridge event MediaConvert emits on a job's state change.
#[derive(Deserialize)]
pub(super) struct MediaConvertEvent {
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    detail: MediaConvertDetail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaConvertDetail {
    job_id: String,
    status: String,
    #[serde(default)]
    user_metadata: HashMap<String, String>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    output_group_details: Vec<McOutputGroup>,
    /// `STATUS_UPDATE` only.
    #[serde(default)]
    job_progress: Option<McJobProgress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct McJobProgress {
    #[serde(default)]
    job_percent_complete: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct McOutputGroup {
    #[serde(default)]
    output_details: Vec<McOutputDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct McOutputDetail {
    #[serde(default)]
    output_file_paths: Vec<String>,
    #[serde(default)]
    duration_in_ms: Option<u64>,
}

impl MediaConvertEvent {
    pub(super) fn into_notification(self) -> Result<Notification, NotificationError> {
        if let Some(kind) = self.detail_type.as_deref()
            && kind != "MediaConvert Job State Change"
        {
            return Err(NotificationError::Unrecognised(format!(
                "an EventBridge '{kind}' event"
            )));
        }
        let d = self.detail;
        let (outcome, default_detail) = match d.status.to_ascii_uppercase().as_str() {
            "COMPLETE" => (Outcome::Completed, None),
            "ERROR" => (Outcome::Failed, None),
            "CANCELED" => (Outcome::Failed, Some("the job was canceled")),
            "PROGRESSING" | "INPUT_INFORMATION" | "STATUS_UPDATE" | "SUBMITTED" => {
                let percent = d
                    .job_progress
                    .and_then(|p| p.job_percent_complete)
                    .map(|p| u8::try_from(p.min(100)).unwrap_or(100));
                return Ok(Notification::Progress(progress(
                    d.job_id,
                    d.status,
                    percent,
                    &d.user_metadata,
                    None,
                )));
            }
            _ => {
                return Err(NotificationError::UnknownState {
                    job_id: d.job_id,
                    state: d.status,
                });
            }
        };
        let (owner, source) = identify(&d.job_id, &d.user_metadata, None)?;
        let outputs = if outcome == Outcome::Completed {
            d.output_group_details
                .iter()
                .flat_map(|g| &g.output_details)
                .flat_map(|o| {
                    o.output_file_paths
                        .iter()
                        .map(move |p| (p, o.duration_in_ms))
                })
                .filter_map(|(path, duration_ms)| {
                    let key = s3_key(path)?;
                    Some(CompletedOutput { key, duration_ms })
                })
                .collect()
        } else {
            Vec::new()
        };
        let detail = d
            .error_message
            .filter(|m| !m.trim().is_empty())
            .map(|m| with_code(&m, d.error_code))
            .or_else(|| default_detail.map(str::to_owned));
        Ok(Notification::Final(Completion {
            analysis: None,
            upload: upload_id(&d.user_metadata),
            rejected: false,
            job_id: d.job_id,
            owner,
            source,
            outcome,
            outputs,
            detail,
        }))
    }
}

/// The key of an `s3://bucket/key` URL.
fn s3_key(url: &str) -> Option<ObjectKey> {
    let (_bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    ObjectKey::new(key).ok()
}
