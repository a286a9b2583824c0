//! At-least-once delivery, faults and misbehaving dependencies, through the handlers and the built
//! binaries on DynamoDB Local.

mod api;
mod duplicates;
mod faults;
