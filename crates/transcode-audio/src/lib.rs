//! `transcode-audio`: the `lambda` backend's worker. Each message of the jobs queue is one
//! transcode job, which it runs with ffmpeg and announces on the completion topic.

pub mod config;

pub use config::WorkerConfig;
