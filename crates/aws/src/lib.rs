//! Adapters that implement the transcoder-core traits with the AWS SDK, and the choice between
//! them. Each module is one outside service; none of them decides anything about the domain.

mod backend;
#[cfg(test)]
#[macro_use]
mod recording;
mod dynamodb;
mod elastic_transcoder;
mod errors;
mod jobs_queue;
mod mediaconvert;
mod s3;
mod source;

pub use backend::CloudTranscoder;
pub use dynamodb::{DynamoStore, UNREAD_INDEX, UPLOADS_INDEX};
pub use elastic_transcoder::ElasticTranscoder;
pub use errors::SetupError;
pub use jobs_queue::{JOB_ID_PREFIX, JobsQueue};
pub use mediaconvert::{JOB_TAG_KEY, MediaConvert};
pub use s3::S3Links;
pub use source::S3Source;
