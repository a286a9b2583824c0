//! `transcode-audio`: the `lambda` backend's worker. Each message of the jobs queue is one
//! transcode job, which it runs with ffmpeg and announces on the completion topic.

pub mod config;
pub mod worker;

pub use config::WorkerConfig;
pub use worker::{RawSqsEvent, Worker};
