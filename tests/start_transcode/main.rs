//! `start-transcode` as Lambda runs it, the built binary through the Runtime API harness: with
//! Elastic Transcoder's and MediaConvert's stubs, on its intake queue, and against moto's S3.

mod elastic_transcoder;
mod intake;
mod mediaconvert;
mod moto;
mod starter;
