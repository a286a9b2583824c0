//! How a job ended, and the files it offers: what a message and an upload record both say. A leaf.

use serde::{Deserialize, Serialize};

/// How a job ended: what its message says, in the API as `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    CompletedWithWarnings,
    Failed,
}

/// One file the message offers for download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOutput {
    /// `wav`, `flac`, `aac`, `mp3`, or the file's extension when it is none of those.
    pub format: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_as_the_api_names_them() {
        let names: Vec<_> = [
            Outcome::Completed,
            Outcome::CompletedWithWarnings,
            Outcome::Failed,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                r#""completed""#,
                r#""completed_with_warnings""#,
                r#""failed""#
            ]
        );
    }
}
