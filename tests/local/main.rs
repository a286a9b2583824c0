//! `make run`'s pipeline: the built `transcoder-local` with a folder as the bucket, real ffmpeg and
//! the API on loopback. Each test starts runners of its own on folders of its own (`scratch`), and
//! looks for its ffmpeg processes by those folders, so tests may run side by side.

mod files;
mod owner;
mod pipeline;
mod recovery;
mod space;
mod start;
mod superseded;
mod untrusted;
