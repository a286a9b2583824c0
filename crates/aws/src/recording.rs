//! For the transcoders' tests: an SDK client whose CreateJob records each request.

/// `(client, requests)`: a `$sdk::Client` whose CreateJob records each request in `requests` and
/// answers with job ids `job-1`, `job-2`, ...; `$response` is the SDK's CreateJob output type.
macro_rules! recording_client {
    ($sdk:ident, $response:ty) => {{
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let requests: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let seen = requests.clone();
        let rule = mock!($sdk::Client::create_job).then_compute_output(move |input| {
            let mut seen = seen.lock().unwrap();
            seen.push(input.clone());
            <$response>::builder()
                .job(
                    $sdk::types::Job::builder()
                        .id(format!("job-{}", seen.len()))
                        .build(),
                )
                .build()
        });
        (mock_client!($sdk, RuleMode::MatchAny, [&rule]), requests)
    }};
}
