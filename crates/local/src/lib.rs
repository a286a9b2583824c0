//! The whole pipeline on one machine, with no AWS account: a folder as the bucket, ffmpeg as the
//! transcoder, SQLite as the store, and the messages API on localhost. It hosts the very handlers
//! the Lambda functions run — `start_transcode`, `record_completion` and the API router — and only
//! swaps the adapters.

pub mod bucket;
pub mod connections;
pub mod ffmpeg;
pub mod jobs;
pub mod owner;
pub mod runner;
pub mod server;
pub mod space;

pub use runner::{LocalConfig, run};
