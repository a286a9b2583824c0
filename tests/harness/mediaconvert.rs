//! MediaConvert as far as the starter uses it: CreateJob (`POST /2017-08-29/jobs`, the SDK's HTTP
//! binding), answered 201 with job ids `1763885000000-mc{n}` (`mc0001`, `mc0002`, … in the order
//! the jobs arrive); a source key containing `refuse` gets a 503 every time. Anything else is 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::{Recorded, Stub};

/// The stub on a free loopback port.
pub async fn create_job() -> Stub {
    create_job_at("127.0.0.1:0").await
}

/// The stub on `address` (`host:port`).
pub async fn create_job_at(address: &str) -> Stub {
    let jobs = Arc::new(AtomicUsize::new(0));
    Stub::start_at(address, Duration::ZERO, move |req: &Recorded| {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/2017-08-29/jobs") => {
                let input = req.body["settings"]["inputs"][0]["fileInput"]
                    .as_str()
                    .unwrap_or_default();
                if input.contains("refuse") {
                    return (503, json!({"message": "Service Unavailable"}));
                }
                let n = jobs.fetch_add(1, Ordering::SeqCst) + 1;
                let job = json!({
                    "id": format!("1763885000000-mc{n:04}"),
                    "arn": format!("arn:aws:mediaconvert:eu-west-1:123456789012:jobs/1763885000000-mc{n:04}"),
                    "role": req.body["role"],
                    "settings": req.body["settings"],
                    "userMetadata": req.body["userMetadata"],
                    "status": "SUBMITTED"
                });
                (201, json!({ "job": job }))
            }
            _ => (404, json!({"message": "not stubbed"})),
        }
    })
    .await
}

/// The CreateJob requests the stub received, in order.
pub fn create_jobs(stub: &Stub) -> Vec<Recorded> {
    stub.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/2017-08-29/jobs")
        .collect()
}
