//! Servers on loopback: a port of their own, the SDK pointed at them, and their output.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// A loopback port no other caller in this test process has had. The port is free again
/// once the listener is dropped, and a server (Java, Python) takes it a moment later; the kernel may hand the same
/// port to the next caller meanwhile, or hand out the port of an instance stopped for a restart,
/// and two tests would then share one server without knowing it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind a loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Gathers the lines `stream` prints into `into`, as they come: a child process's output, kept for
/// the test to read or to show when it fails.
pub fn collect_lines(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    into: Arc<Mutex<Vec<String>>>,
) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}

#[cfg(feature = "aws")]
/// An SDK configuration for a service emulated on loopback at `endpoint`: region eu-west-1 and
/// the tests' fake static credentials (requests must be signed, with anything).
pub fn local_sdk_config(endpoint: &str, provider: &'static str) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDLOCALTEST",
            "local-test-secret",
            None,
            None,
            provider,
        )))
        .endpoint_url(endpoint)
        .build()
}
