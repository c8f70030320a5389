//! Shared test helpers: run the real binary in a scratch folder, isolated from the
//! user's environment (no API key, no API base, no colour).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

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
    let out = assert_cmd::Command::cargo_bin("nimriz-matrix")
        .expect("binary")
        .current_dir(dir)
        .env_remove("NIMRIZ_API_KEY")
        .env_remove("NIMRIZ_API_BASE")
        .env("NO_COLOR", "1")
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

/// The repository root (for the shipped example).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
