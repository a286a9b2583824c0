//! `transcoder-local`: what `make run` starts.

use transcoder_core::ProcessEnv;
use transcoder_local::{LocalConfig, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Logs go to stderr, in colour only when a person is watching.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match LocalConfig::from_env(&ProcessEnv) {
        Ok(config) => run(config).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the local runner stopped: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
