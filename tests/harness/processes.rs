//! The processes on this machine, read from `/proc`: for the tests that check that nothing the
//! suite started (ffmpeg, DynamoDB Local, a runner) outlives what started it.

use std::path::Path;
use std::time::{Duration, Instant};

/// The variable `make test` sets to one value per run, so that `tests/leftover-processes.sh` finds
/// the processes this run started (it reads `/proc/*/environ`) and no one else's.
pub const RUN_ID: &str = "SYSTEM_TESTS_RUN_ID";

/// One live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub parent: u32,
    /// The command line, its arguments joined by spaces.
    pub command: String,
}

/// Every live process this user may see (zombies, which have exited, are left out).
pub fn all() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .collect()
}

/// The live processes whose command line contains every one of `parts`.
pub fn matching(parts: &[&str]) -> Vec<Process> {
    all()
        .into_iter()
        .filter(|p| parts.iter().all(|part| p.command.contains(part)))
        .collect()
}

/// The ffmpeg processes working on files below `dir` (their command lines name them).
pub fn ffmpeg_in(dir: &Path) -> Vec<Process> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    matching(&[&dir.display().to_string()])
        .into_iter()
        .filter(|p| {
            p.command
                .split(' ')
                .next()
                .is_some_and(|c| c.ends_with("ffmpeg"))
        })
        .collect()
}

/// The ffmpeg processes below `dir` that transcode an upload (their input is under a `media/`
/// folder and they report `-progress`), not those that probe the upload's duration first or its
/// finished outputs after.
pub fn transcodes_in(dir: &Path) -> Vec<Process> {
    ffmpeg_in(dir)
        .into_iter()
        .filter(|p| p.command.contains("/media/") && p.command.contains(" -progress "))
        .collect()
}

/// Whether `pid` is a live process.
pub fn alive(pid: u32) -> bool {
    read(pid).is_some()
}

/// Waits up to 20 s for `gone()` to hold, as the kernel delivers a death signal and the process
/// dies; returns whether it did.
pub async fn wait_until(gone: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gone() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn read(pid: u32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) state ppid …`; the name may hold spaces and parentheses.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let parent = fields.next()?.parse().ok()?;
    let command = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let command = String::from_utf8_lossy(&command)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Some(Process {
        pid,
        parent,
        command,
    })
}
