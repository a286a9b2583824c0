//! What the tests of every crate share, so that no crate compiles a stand-in into its own code:
//!
//! - [`contract`]: the checks every store must pass, and the fixtures they are written with;
//! - [`MemoryStore`], [`MemorySource`], [`UnsignedLinks`] and [`FakeTranscoder`]: in-memory
//!   stand-ins for the store, the bucket, the link signer and the transcoder;
//! - [`RecordingSource`]: a reader that records the reads asked of it;
//! - [`scratch`]: a folder that is removed when the test ends, even when it panics;
//! - [`audio`]: real audio made, and outputs measured, by ffmpeg;
//! - [`dynamodb_local`] (feature `aws`): a real DynamoDB, in memory, on loopback, with the table
//!   `template.yaml` defines; [`local_sdk_config`] points the SDK at such a server.

pub mod audio;
pub mod contract;
#[cfg(feature = "aws")]
pub mod dynamodb_local;
mod links;
mod loopback;
mod memory;
mod scratch;
mod source;
mod transcoder;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use links::UnsignedLinks;
#[cfg(feature = "aws")]
pub use loopback::local_sdk_config;
pub use loopback::{collect_lines, free_port};
pub use memory::MemoryStore;
pub use scratch::{Scratch, scratch};
pub use source::{MemorySource, RecordingSource, mp3_frames};
pub use transcoder::FakeTranscoder;

/// The ids of a page of messages as the API answers it (`{"messages": [{"id": ...}]}`), in order.
pub fn message_ids(page: &Value) -> Vec<&str> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

/// The repository's root: `template.yaml` and `node_modules/` are there.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the test kit is crates/testkit in the workspace")
        .to_owned()
}
