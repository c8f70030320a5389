//! Run the real binary, isolated from the user's environment: no API key, no API base, no
//! proxy, no colour. Only tests of the binary crate can use these (cargo tells them where
//! the binary is).

use std::path::{Path, PathBuf};
use std::process::{Child, Output};

/// Variables a developer's shell may hold that would change what the binary does.
const SCRUBBED: [&str; 12] = [
    "NIMRIZ_API_KEY",
    "NIMRIZ_API_BASE",
    "NIMRIZ_MATRIX_RETRY_BASE_MS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "CLICOLOR_FORCE",
];

/// `nimriz-matrix` as a `std::process::Command` with the clean environment.
pub fn command() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("nimriz-matrix"));
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// server behind.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `nimriz-matrix sandbox ARGS` in `dir` (stdout piped, stderr dropped); returns the
/// guard and its base URL, read from the banner's first line with a bounded wait (20 s).
pub fn sandbox(dir: &Path, args: &[&str]) -> (ChildGuard, String) {
    use std::io::{BufRead, BufReader};
    let mut child = ChildGuard(
        command()
            .current_dir(dir)
            .arg("sandbox")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sandbox starts"),
    );
    let stdout = child.0.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a banner line within 20 s");
    let base = first
        .strip_prefix("nimriz sandbox listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {first:?}"))
        .to_string();
    (child, base)
}

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write fixture");
        p
    }

    /// Run `nimriz-matrix ARGS` with the scratch folder as working directory.
    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.dir.path(), args)
    }
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out = assert_cmd::Command::from_std(command())
        .current_dir(dir)
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run binary");
    Run(out)
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Assert the exit code and that stderr contains every needle; returns stderr.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needles: &[&str]) -> String {
        let err = self.stderr();
        assert_eq!(
            self.code(),
            code,
            "exit code; stderr:\n{err}\nstdout:\n{}",
            self.stdout()
        );
        for n in needles {
            assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
        }
        assert!(!err.contains("panicked"), "panic on user input:\n{err}");
        assert!(
            !err.contains("RUST_BACKTRACE"),
            "backtrace on user input:\n{err}"
        );
        err
    }
    #[track_caller]
    pub fn succeeds(&self) -> String {
        assert_eq!(self.code(), 0, "stderr:\n{}", self.stderr());
        self.stdout()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// The repository root (for the shipped example).
pub fn repo() -> PathBuf {
    // This crate lives in crates/test-support.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("repository root")
        .to_path_buf()
}
