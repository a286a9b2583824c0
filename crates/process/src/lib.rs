//! Child processes that cannot outlive the process that started them: every ffmpeg run of the
//! local runner and of `transcode-audio`, and the servers the test harness starts (DynamoDB
//! Local, the runner itself).
//!
//! [`spawn`] puts the child in a process group of its own, which [`Group`] kills whole when it is
//! dropped or told to ([`Group::kill`]): a timeout, an aborted job, a shutdown. A `kill -9` of this
//! process runs no drop, so on Linux the child also asks the kernel for `SIGKILL` when its parent
//! dies (`PR_SET_PDEATHSIG`). The kernel sends that signal when the *thread* that forked the child
//! exits, not the process, and tokio's worker and blocking threads come and go: every child is
//! therefore forked by one thread of this module's that lives as long as the process.
//!
//! It must not be used for a child meant to outlive its parent (none is).

use std::io;
use std::process::{ExitStatus, Output};
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;

/// A child, in its own process group unless started by [`spawn_in_our_group`]; the group (or
/// the child) is killed when this is dropped.
#[derive(Debug)]
pub struct Group {
    child: Child,
    /// Whether the child leads a group of its own, which is then killed whole.
    leader: bool,
}

/// Starts `command` in a process group of its own, bound to this process's life (see the module
/// docs). Must be called within a tokio runtime, as `Command::spawn` must.
pub fn spawn(mut command: Command) -> io::Result<Group> {
    #[cfg(unix)]
    command.process_group(0);
    fork(command, true)
}

/// [`spawn`], but the child stays in this process's group: bound to this process's life, and
/// killed alone. For a test that kills the child and looks at what it left: the kernel sends
/// `SIGHUP` to the stopped members of a group its death orphans, which would hide them.
pub fn spawn_in_our_group(command: Command) -> io::Result<Group> {
    fork(command, false)
}

fn fork(mut command: Command, leader: bool) -> io::Result<Group> {
    bind_to_parent(&mut command);
    let handle = Handle::try_current().map_err(io::Error::other)?;
    let (reply, answer) = mpsc::sync_channel(1);
    forker()?
        .send(Fork {
            command,
            handle,
            reply,
        })
        .map_err(|_| io::Error::other("the thread that starts child processes is gone"))?;
    // Blocks the caller as long as a fork and exec take, as `Command::spawn` itself would.
    let child = answer
        .recv()
        .map_err(|_| io::Error::other("the thread that starts child processes is gone"))??;
    Ok(Group { child, leader })
}

impl Group {
    /// Kills the whole group and waits for the child to exit.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.kill_group();
        self.child.kill().await
    }

    /// Waits for the child to exit, collecting its stdout and stderr (if piped), as
    /// `Child::wait_with_output` does; the group is killed if this future is dropped first.
    pub async fn output(mut self) -> io::Result<Output> {
        async fn read_all(pipe: Option<impl AsyncReadExt + Unpin>) -> io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes).await?;
            }
            Ok(bytes)
        }
        let (stdout, stderr) = (self.child.stdout.take(), self.child.stderr.take());
        let (status, stdout, stderr) =
            tokio::try_join!(self.child.wait(), read_all(stdout), read_all(stderr))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// `SIGKILL` to every process of the group, while its leader has not been reaped (once it
    /// has, the group's number may belong to someone else).
    fn kill_group(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok())
            && self.leader
        {
            // SAFETY: kill(2) has no memory effects; a group already gone is ESRCH, ignored.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl std::ops::Deref for Group {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Group {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_group();
        // Reaped by tokio in the background, as with `kill_on_drop`.
        let _ = self.child.start_kill();
    }
}

/// A command for the forking thread, the runtime its child's pipes belong to, and where the
/// child goes.
struct Fork {
    command: Command,
    handle: Handle,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

/// The thread that forks every child: it lives as long as the process, because the sender that
/// feeds it is held in a `static`, so a child's death signal fires only when the process dies.
fn forker() -> io::Result<&'static mpsc::Sender<Fork>> {
    static FORKER: OnceLock<mpsc::Sender<Fork>> = OnceLock::new();
    if let Some(sender) = FORKER.get() {
        return Ok(sender);
    }
    let (sender, forks) = mpsc::channel::<Fork>();
    let started = std::thread::Builder::new()
        .name("child-forker".into())
        .spawn(move || {
            for mut fork in forks {
                let _runtime = fork.handle.enter();
                let _ = fork.reply.send(fork.command.spawn());
            }
        });
    match started {
        Ok(_) => Ok(FORKER.get_or_init(|| sender)),
        // Two callers raced: the loser's thread ends with its sender, never having forked.
        Err(e) => FORKER.get().ok_or(e),
    }
}

/// The child's death signal, on Linux; and the kill on drop that tokio already knows, for a
/// child that escapes [`Group`] by some path.
fn bind_to_parent(command: &mut Command) {
    command.kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (prctl, getppid), allocating nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent died between the fork and the prctl: no signal will come.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn alive(pid: u32) -> bool {
        // Zombies (exited, not yet reaped) count as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.starts_with(" Z"))
        })
    }

    #[tokio::test]
    async fn dropping_a_group_kills_its_grandchildren_too() {
        let mut command = Command::new("sh");
        // The shell's own child, in the same group, prints its pid and outlives the shell.
        command
            .args(["-c", "sleep 60 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        let mut group = spawn(command).unwrap();
        let mut stdout = group.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        while stdout.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let sleeper: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
        assert!(alive(sleeper));
        drop(group);
        let mut waited = 0;
        while alive(sleeper) && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert!(!alive(sleeper), "the group's sleep {sleeper} outlived it");
    }

    /// Set in the copy of this test binary that plays the parent killed by `kill -9`.
    const PARENT: &str = "TRANSCODER_PROCESS_TEST_PARENT";

    /// The parent's part (it does nothing in a normal run): starts a child bound to it, in a
    /// group of its own, says its pid, and waits to be killed.
    #[tokio::test]
    async fn parent_killed_by_the_test_below() {
        if std::env::var_os(PARENT).is_none() {
            return;
        }
        let mut command = Command::new("sleep");
        command.arg("120");
        let group = spawn(command).unwrap();
        println!("child {}", group.id().unwrap());
        tokio::time::sleep(Duration::from_secs(120)).await;
    }

    #[tokio::test]
    async fn a_child_dies_with_its_parent_killed_by_kill_9() {
        let mut parent = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::parent_killed_by_the_test_below",
                "--nocapture",
            ])
            .env(PARENT, "1")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(parent.stdout.take().unwrap());
        let mut child = None;
        let mut line = String::new();
        while child.is_none() {
            line.clear();
            use tokio::io::AsyncBufReadExt;
            assert!(stdout.read_line(&mut line).await.unwrap() > 0, "no child");
            child = line
                .strip_prefix("child ")
                .map(|p| p.trim().parse::<u32>().unwrap());
        }
        let child = child.unwrap();
        assert!(alive(child));
        // Only the parent: the child's group is its own, and nothing runs its drop.
        parent.kill().await.unwrap();
        let mut waited = 0;
        while alive(child) && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert!(!alive(child), "sleep {child} outlived its parent");
    }

    #[tokio::test]
    async fn a_child_started_from_a_thread_that_ends_outlives_that_thread() {
        let handle = Handle::current();
        let group = std::thread::spawn(move || {
            let _runtime = handle.enter();
            let mut command = Command::new("sleep");
            command.arg("60");
            spawn(command).unwrap()
        })
        .join()
        .unwrap();
        let pid = group.id().unwrap();
        // Long enough for a death signal from the thread's exit to have landed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            alive(pid),
            "the child died with the thread that asked for it"
        );
        drop(group);
    }
}
