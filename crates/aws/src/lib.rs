//! Adapters that implement the transcoder-core traits with the AWS SDK, and the choice between
//! them. Each module is one outside service; none of them decides anything about the domain.

pub mod backend;
pub mod dynamodb;
pub mod elastic_transcoder;
pub mod jobs_queue;
pub mod mediaconvert;
pub mod s3;
pub mod source;

pub use backend::{CloudTranscoder, SetupError};
pub use dynamodb::DynamoStore;
pub use elastic_transcoder::ElasticTranscoder;
pub use jobs_queue::{JOB_ID_PREFIX, JobsQueue};
pub use mediaconvert::MediaConvert;
pub use s3::S3Links;
pub use source::S3Source;
