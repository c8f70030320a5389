//! A throwaway PostgreSQL cluster for the tests: `initdb` into a temp folder, a server on a
//! Unix socket in that folder (no TCP port), stopped when the value is dropped (also when a
//! test panics). As root (CI) the cluster belongs to the `postgres` user, since PostgreSQL
//! refuses to run as root.
//!
//! Found through `NIMRIZ_TEST_PG_BIN` (the folder holding `initdb`, set by .ci/run), `PATH`,
//! or `/usr/lib/postgresql/*/bin`. Without one a test prints that it was skipped and why;
//! under CI (env `CI` set) it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    running: bool,
    created: std::cell::Cell<usize>,
}

/// The folder with `initdb`, `pg_ctl` and `postgres`, if PostgreSQL is installed.
pub fn find_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    // A symlink on PATH (/usr/local/bin/initdb): the real folder has pg_isready beside it.
    let real = |d: PathBuf| {
        std::fs::canonicalize(d.join("initdb"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|r| has(r))
            .unwrap_or(d)
    };
    if let Some(d) = std::env::var_os("NIMRIZ_TEST_PG_BIN").map(PathBuf::from) {
        return has(&d).then(|| real(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Some(real(d));
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgCluster {
    /// A running cluster, or `None` after saying why the calling test is skipped (a panic
    /// under CI, where skipping is a failure).
    pub fn start_or_skip(test: &str) -> Option<PgCluster> {
        match Self::start() {
            Ok(c) => Some(c),
            Err(why) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped {test}: {why}");
                None
            }
            Err(why) => panic!("CI is set but {test} has no PostgreSQL: {why}"),
        }
    }

    pub fn start() -> Result<PgCluster, String> {
        let bin = find_bin().ok_or(
            "no PostgreSQL found (initdb not on PATH, not in /usr/lib/postgresql/*/bin, \
             NIMRIZ_TEST_PG_BIN not set); install Debian's `postgresql` package",
        )?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("nmx-pg")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut c = PgCluster {
            bin,
            dir,
            as_postgres,
            running: false,
            created: std::cell::Cell::new(0),
        };
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(c.dir.path())
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !chown.status.success() {
                return Err(format!(
                    "running as root and cannot hand the cluster to the `postgres` user: {}",
                    String::from_utf8_lossy(&chown.stderr).trim()
                ));
            }
        }
        let data = c.data();
        let init = c.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            ));
        }
        c.start_server()?;
        Ok(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket folder (also the cluster's temp dir).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq connection string for the `postgres` database, over the Unix socket.
    pub fn url(&self) -> String {
        format!(
            "host={} user=postgres dbname=postgres",
            self.socket_dir().display()
        )
    }

    /// A new, empty database in the cluster; its connection string.
    pub fn create_database(&self) -> Result<String, String> {
        self.created.set(self.created.get() + 1);
        let name = format!("db{}", self.created.get());
        let host = self.socket_dir().display().to_string();
        let out = self.run("createdb", &["-h", &host, "-U", "postgres", &name])?;
        if !out.status.success() {
            return Err(format!(
                "createdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(format!("host={host} user=postgres dbname={name}"))
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run {}: {e}", exe.display()))
    }

    /// Start the server (after [`PgCluster::stop`]: the database restarts with its data).
    pub fn start_server(&mut self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.path().join("log");
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=on -c max_connections=200",
            self.socket_dir().display()
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap_or_default(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.trim()
            ));
        }
        self.running = true;
        Ok(())
    }

    /// Stop the server (`-m fast`: sessions are disconnected, as in a real restart).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
        self.running = false;
    }

    /// Wait (bounded) until the server accepts connections on its socket again.
    pub fn wait_ready(&self, limit: Duration) -> bool {
        let start = Instant::now();
        let ready = self.bin.join("pg_isready");
        while start.elapsed() < limit {
            let ok = Command::new(&ready)
                .args(["-q", "-h"])
                .arg(self.socket_dir())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
