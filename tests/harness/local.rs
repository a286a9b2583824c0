//! The local runner (`transcoder-local`, what `make run` starts) as a child process, and the
//! ffmpeg and ffprobe helpers its tests share.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use transcoder_process::Group;

pub use transcoder_testkit::audio::{
    ffmpeg, ffmpeg_ebur128, files_under, hls_playlist, lavfi, probe, quiet_speech, silence_bomb,
    tone,
};
pub use transcoder_testkit::scratch;

use crate::binary;

/// Copies `file` into the bucket folder `bucket` at `key`, as a user dropping it there would.
pub fn drop_in(bucket: &Path, key: &str, file: &Path) {
    let target = bucket.join(key);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(file, &target).unwrap();
}

/// The runner as a child process, with its log lines collected.
pub struct Runner {
    child: Group,
    pub address: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Runner {
    /// Starts the runner on `dir/bucket` and `dir/store`, with a free loopback port.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[]).await
    }

    /// [`Runner::start`] with more environment variables (`MAX_DURATION_SECONDS`, say).
    pub async fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(Command::new(binary("transcoder-local")), dir, env).await
    }

    /// Starts the runner as [`Runner::start_with`] does, expecting it to refuse to start: returns
    /// its exit status and log lines. A runner still running after 20 s fails the test.
    pub async fn start_refused(dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, Vec<String>) {
        Self::spawn(Command::new(binary("transcoder-local")), dir, env)
            .exit("refuse to start")
            .await
    }

    /// [`Runner::start_with`] on a disk of its own: a tmpfs of `size` (`20m`) mounted on `dir`
    /// in a mount namespace of the runner's, gone when it exits. The test reaches the files
    /// through [`Runner::inside`]. `None`, with the reason printed, where this machine does not
    /// allow it (not root, or no `unshare`).
    pub async fn start_on_tmpfs(dir: &Path, size: &str, env: &[(&str, &str)]) -> Option<Self> {
        const MOUNT: &str = r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && exec "$0""#;
        let probe = Command::new("unshare")
            .args(["-m", "sh", "-c", MOUNT, "true", size])
            .arg(dir)
            .output()
            .await;
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs in a mount namespace here ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("skipped: cannot run unshare here ({e})");
                return None;
            }
        }
        let mut command = Command::new("unshare");
        command
            .args(["-m", "sh", "-c", MOUNT])
            .arg(binary("transcoder-local"))
            .arg(size)
            .arg(dir);
        Some(Self::launch(command, dir, env).await)
    }

    /// Where the runner sees `path`: through its own root, so inside its mounts too.
    pub fn inside(&self, path: &Path) -> PathBuf {
        let pid = self.child.id().expect("the runner is running");
        let absolute = std::path::absolute(path).unwrap();
        Path::new(&format!("/proc/{pid}/root")).join(absolute.strip_prefix("/").unwrap())
    }

    /// Spawns `command` (the runner, or what execs it) and waits until the runner is up.
    async fn launch(command: Command, dir: &Path, env: &[(&str, &str)]) -> Self {
        let runner = Self::spawn(command, dir, env);
        runner
            .wait_for(
                |r| r.count(&["local pipeline running"]) == 1,
                "the runner to start",
            )
            .await;
        runner
    }

    fn spawn(mut command: Command, dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        command
            .env("BUCKET_DIR", dir.join("bucket"))
            .env("STORE_PATH", dir.join("store/messages.sqlite3"))
            .env("LISTEN_ADDR", &address)
            .env("SETTLE_MS", "400")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Bound to the test process, but in its group: the tests that kill the runner alone
        // look at what it leaves (`Runner::crash`).
        let mut child =
            transcoder_process::spawn_in_our_group(command).expect("start transcoder-local");
        let address = env
            .iter()
            .find(|(k, _)| *k == "LISTEN_ADDR")
            .map_or(address, |(_, v)| (*v).to_owned());
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            address,
            logs,
        }
    }

    /// The runner's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the runner is running")
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn count(&self, parts: &[&str]) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    pub async fn wait_for(&self, done: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the runner has written `count` messages in all (its `message written` lines).
    pub async fn wait_for_messages(&self, count: usize) {
        let what = format!("{count} messages written");
        self.wait_for(|r| r.count(&["message written"]) == count, &what)
            .await;
    }

    /// One HTTP/1.1 request; returns the status and the body parsed as JSON (Null if empty).
    pub async fn http(&self, method: &str, path: &str, user: &str, body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.address).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-User: {user}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        answer(&response)
    }

    /// PUTs `body` to `path` (an upload link's path and query) as `content_type`; returns the
    /// status and the body parsed as JSON (Null if empty).
    pub async fn put(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.address).await.unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // A refusal may come, and the connection close, before the whole body is sent.
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        answer(&response)
    }

    pub async fn messages(&self, user: &str) -> Vec<Value> {
        let (status, body) = self.http("GET", "/messages", user, "").await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().unwrap().clone()
    }

    /// The files `user`'s unread messages are about, newest first.
    pub async fn files(&self, user: &str) -> Vec<String> {
        let messages = self.messages(user).await;
        let files = messages
            .iter()
            .map(|m| m["file"].as_str().unwrap_or_default());
        files.map(str::to_owned).collect()
    }

    /// Stops the runner as a service manager would, and waits for it to exit.
    pub async fn stop(self) -> Vec<String> {
        let (status, logs) = self.signal("TERM").await;
        assert!(status.success(), "{status}; logs:\n{}", logs.join("\n"));
        logs
    }

    /// `kill -9` of the runner alone, and waits for it to exit. Unlike [`Runner::signal`], the
    /// runner is kept (its process group not yet killed), so a test can look at what it left.
    pub async fn crash(&mut self) -> ExitStatus {
        self.send("KILL").await;
        self.wait_exit("exit within 20 s of SIGKILL").await
    }

    /// Sends `signal` (`INT` for Ctrl-C, `KILL` for a crash) and waits for the runner to exit; a
    /// runner still there after 20 seconds fails the test.
    pub async fn signal(self, signal: &str) -> (ExitStatus, Vec<String>) {
        self.send(signal).await;
        self.exit(&format!("exit within 20 s of SIG{signal}")).await
    }

    async fn send(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .await;
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal}");
    }

    /// Waits for the runner to exit, as it should `what`; returns its status and every log line.
    async fn exit(mut self, what: &str) -> (ExitStatus, Vec<String>) {
        let status = self.wait_exit(what).await;
        // The last log lines may still be in the pipe.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, self.logs())
    }

    /// Waits up to 20 s for the runner to exit, as it should `what`.
    async fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let exited = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        match exited {
            Ok(status) => status.expect("the runner's status"),
            Err(_) => panic!(
                "the runner did not {what}; logs:\n{}",
                self.logs().join("\n")
            ),
        }
    }
}

/// An HTTP/1.1 response's status (0 if there is none) and its body parsed as JSON (Null if
/// empty or not JSON).
fn answer(response: &[u8]) -> (u16, Value) {
    let response = String::from_utf8_lossy(response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
