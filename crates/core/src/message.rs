//! Messages: what a file's owner is told when its job ends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Owner};
use crate::outcome::{MessageOutput, Outcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub owner: Owner,
    pub state: Outcome,
    pub text: String,
    /// The source file's name, as the user named it.
    pub file: String,
    pub source_key: String,
    pub outputs: Vec<MessageOutput>,
    pub created_at: DateTime<Utc>,
}
