//! The Lambda functions as Lambda runs them: the built binaries (and the arm64 artifacts under
//! qemu) through the Runtime API harness, on DynamoDB Local, moto and recording stubs; the layer's
//! ffmpeg; the `cargo lambda watch` recipe; and the harness's own promise that nothing it starts
//! outlives it. Each test starts its own servers on free ports and finds the processes it checks by
//! their port or parent, so tests may run side by side.

mod arm64_artifacts;
mod cargo_lambda_recipe;
mod layer_ffmpeg;
mod leftover_processes;
mod messages_api;
mod pipeline;
mod record_completion;
mod uploads;
