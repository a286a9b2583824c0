//! The artifacts that deploy, run on this x86_64 machine: the arm64 `bootstrap`s `sam build`
//! leaves in `.aws-sam/build/{LogicalId}/` and the layer's static aarch64 ffmpeg, each under
//! `qemu-aarch64-static` (Debian's qemu-user-static; no binfmt needed).
//!
//! [`crate::Function::start_arm64`] starts a bootstrap through the Runtime API harness;
//! [`bootstrap_or_skip`] decides whether a test may run; [`ffmpeg_wrapper`] gives a bootstrap an
//! `FFMPEG` it can run; [`transcode_audio`] starts the worker with both, for its end-to-end test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Function;
use crate::local::scratch;
use transcoder_testkit::workspace_root;

/// The emulator, from Debian's qemu-user-static.
pub const QEMU: &str = "qemu-aarch64-static";
/// The arm64 loader and glibc a dynamically linked bootstrap needs, from Debian's
/// libc6-arm64-cross (`make system-packages` installs it).
pub const SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// Set by `make test`: a missing artifact fails the test instead of skipping it, so CI cannot
/// pass without running the arm64 artifacts.
pub const REQUIRE: &str = "REQUIRE_ARM64";

/// Where `sam build` leaves the template function `logical_id`'s bootstrap.
pub fn bootstrap(logical_id: &str) -> PathBuf {
    workspace_root()
        .join(".aws-sam/build")
        .join(logical_id)
        .join("bootstrap")
}

/// The bootstrap of `logical_id` if it has been built. If not, a test cannot run: with
/// `REQUIRE_ARM64` set that is a failure that says how to build it; without, the test is skipped
/// with the reason printed, and this returns `None`.
pub fn bootstrap_or_skip(logical_id: &str) -> Option<PathBuf> {
    let path = bootstrap(logical_id);
    if path.exists() {
        return Some(path);
    }
    let reason = format!(
        "{} is missing: build it with `make arm64-artifacts` (`make test` does)",
        path.display()
    );
    assert!(
        std::env::var_os(REQUIRE).is_none(),
        "{REQUIRE} is set: {reason}"
    );
    println!("skipped: {reason}");
    None
}

/// The layer's ffmpeg as `make layer` unpacks it, the file Lambda mounts as /opt/bin/ffmpeg.
pub fn layer_ffmpeg() -> PathBuf {
    let path = workspace_root().join("target/layer/ffmpeg/bin/ffmpeg");
    assert!(
        path.exists(),
        "{} is missing: build the layer first with `make layer` (`make test` does)",
        path.display()
    );
    path
}

/// A program to give a bootstrap under qemu as its `FFMPEG`: a shell script in `dir` that runs
/// the layer's ffmpeg under qemu with the same arguments. An emulated process cannot exec an
/// arm64 binary itself without binfmt; a script is run natively by the kernel.
pub fn ffmpeg_wrapper(dir: &Path) -> PathBuf {
    let script = dir.join("ffmpeg");
    let ffmpeg = layer_ffmpeg();
    let text = format!(
        "#!/bin/sh\nexec {QEMU} '{}' \"$@\"\n",
        ffmpeg.display().to_string().replace('\'', r"'\''")
    );
    std::fs::write(&script, text).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    script
}

/// `transcode-audio` as it deploys: `TranscodeAudioFunction`'s arm64 bootstrap under qemu, with
/// `env` and an `FFMPEG` that runs the layer's ffmpeg under qemu (in a scratch folder of its own).
/// `None`, after printing why, when the artifact is missing and `REQUIRE_ARM64` is unset.
pub async fn transcode_audio(env: &[(&str, &str)]) -> Option<Function> {
    bootstrap_or_skip("TranscodeAudioFunction")?;
    let folder = scratch();
    let ffmpeg = ffmpeg_wrapper(&folder);
    let ffmpeg = ffmpeg.display().to_string();
    let mut all = vec![("FFMPEG", ffmpeg.as_str())];
    all.extend_from_slice(env);
    Some(
        Function::start_arm64("TranscodeAudioFunction", &all)
            .await
            .holding(folder),
    )
}
