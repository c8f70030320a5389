//! The README, in order, as a newcomer runs it: every `sh` block's command lines (except
//! `cargo …` and blocks marked `<!-- readme-test: skip … -->`) run one after the other in
//! one bash session, in a scratch copy of the files they use, against the built binary.
//! So a section that leaves a server running, reuses another section's port or manifest, or
//! prints something else than the README says, fails here.
//!
//! What the test changes, and only that: the binary path (`nimriz-matrix`,
//! `./target/release/nimriz-matrix` → the one cargo built), the fixed ports (8787, 8788,
//! 9999 → free ones, also inside the copied example files; the sandbox gets `--addr`), a
//! bounded wait for each server started with `&` to accept connections, and a bounded wait
//! before each `kill` line until the outputs the section promises (`#   …` comments) have
//! appeared. Every expected output must appear in the session's output. The whole session
//! is killed after 120 s.
#![cfg(unix)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// Generous: the whole README takes ~15 s on an idle machine, but CI machines are shared.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

/// One command line of the README (continuations joined) or an expected output.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Command(String),
    /// `#   text`: what the line above prints (the part before ` — `, which is timing).
    Expect(String),
}

/// The runnable lines of every `sh` block, in order.
fn readme_lines(readme: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut skip = false;
    let mut pending = String::new();
    for raw in readme.lines() {
        let t = raw.trim();
        if !in_block {
            if t.starts_with("<!-- readme-test: skip") {
                skip = true;
            } else if t == "```sh" {
                in_block = true;
            } else if t.starts_with("```") {
                skip = false;
            }
            continue;
        }
        if t == "```" {
            in_block = false;
            skip = false;
            continue;
        }
        if skip {
            continue;
        }
        if let Some(exp) = t.strip_prefix("#   ") {
            let exp = exp.strip_prefix("stand-in: ").unwrap_or(exp);
            let exp = exp.split(" — ").next().unwrap_or(exp).trim();
            out.push(Line::Expect(exp.to_string()));
            continue;
        }
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(cont) = raw.trim_end().strip_suffix('\\') {
            pending.push_str(cont.trim());
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let line = std::mem::take(&mut pending);
        if line.starts_with("cargo ") {
            continue;
        }
        out.push(Line::Command(line));
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct Ports {
    sandbox: u16,
    listen: u16,
    standin: u16,
}

impl Ports {
    fn rewrite(&self, text: &str) -> String {
        text.replace("127.0.0.1:8787", &format!("127.0.0.1:{}", self.sandbox))
            .replace("127.0.0.1:8788", &format!("127.0.0.1:{}", self.listen))
            .replace("127.0.0.1:9999", &format!("127.0.0.1:{}", self.standin))
            .replace(
                "(\"127.0.0.1\", 9999)",
                &format!("(\"127.0.0.1\", {})", self.standin),
            )
    }
}

/// Copy what the README's commands read into `dir`, with the ports rewritten.
fn stage(repo: &Path, dir: &Path, ports: &Ports) {
    for f in [
        "matrix.example.toml",
        "brands.csv",
        "examples/listen.example.toml",
        "docs/standin.py",
    ] {
        let text = std::fs::read_to_string(repo.join(f)).expect("read a README input");
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, ports.rewrite(&text)).unwrap();
    }
}

/// A bounded wait (10 s) until 127.0.0.1:PORT accepts connections.
fn wait_port(port: u16) -> String {
    format!(
        "for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; \
         sleep 0.1; done"
    )
}

/// The bash session for the README's lines.
fn script(lines: &[Line], bin: &str, ports: &Ports) -> String {
    let mut s = String::from(
        "set -euo pipefail\n\
         exec 2>&1\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    );
    let mut expected_since_kill: Vec<String> = Vec::new();
    for line in lines {
        match line {
            Line::Expect(e) => expected_since_kill.push(e.clone()),
            Line::Command(c) => {
                let mut cmd = c
                    .replace("./target/release/nimriz-matrix", "nimriz-matrix")
                    .replace(
                        "nimriz-matrix sandbox",
                        "nimriz-matrix sandbox --addr 127.0.0.1:8787",
                    );
                cmd = ports.rewrite(&cmd).replace("nimriz-matrix", bin);
                if cmd.starts_with("kill ") {
                    // Servers answer asynchronously (the stand-in prints after the worker
                    // delivers): wait for what the section promised before stopping them.
                    for e in expected_since_kill.drain(..) {
                        s.push_str(&format!(
                            "for _ in $(seq 100); do grep -qF -- {} \"$README_OUT\" && break; \
                             sleep 0.1; done\n",
                            shell_quote(&e)
                        ));
                    }
                }
                s.push_str(&format!("echo '+ {}'\n", c.replace('\'', "'\\''")));
                s.push_str(&cmd);
                s.push('\n');
                if c.trim_end().ends_with('&') || c.contains("& ") && c.contains('#') {
                    let port = if c.contains("standin.py") {
                        ports.standin
                    } else if c.contains(" listen ") {
                        ports.listen
                    } else {
                        ports.sandbox
                    };
                    s.push_str(&wait_port(port));
                    s.push('\n');
                }
            }
        }
    }
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn readme_lines_parse_as_expected() {
    let lines = readme_lines(
        "x\n```sh\ncargo test\nfoo a \\\n  b &   # c\n#   done: 1 — 2s\n```\n\
         <!-- readme-test: skip (key) -->\n```sh\nsecret\n```\n```toml\nno\n```\n",
    );
    assert_eq!(
        lines,
        vec![
            Line::Command("foo a b &   # c".into()),
            Line::Expect("done: 1".into())
        ]
    );
}

#[test]
fn readme_runs_in_order() {
    let repo = test_support::repo();
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let lines = readme_lines(&readme);
    let expected: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Expect(e) => Some(e.clone()),
            Line::Command(_) => None,
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| matches!(l, Line::Command(c) if c.contains("listen log"))),
        "the README's listen demo is found"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports {
        sandbox: free_port(),
        listen: free_port(),
        standin: free_port(),
    };
    stage(&repo, dir.path(), &ports);
    let bin = assert_cmd::cargo::cargo_bin("nimriz-matrix");
    let script = script(&lines, &bin.display().to_string(), &ports);
    let out_path = dir.path().join("readme-session.log");
    let out_file = std::fs::File::create(&out_path).unwrap();

    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("README_OUT", &out_path)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::null())
        // Its own process group, so everything it started can be killed at once.
        .process_group(0);
    for var in [
        "NIMRIZ_API_BASE",
        "NIMRIZ_API_KEY",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    let mut child = cmd.spawn().expect("bash runs");
    let pgid = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SESSION_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever happened, nothing the session started survives it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let mut output = String::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the README session ran longer than {SESSION_LIMIT:?}:\n{output}\n--- script:\n{script}"
        )
    });
    assert!(
        status.success(),
        "a README command failed ({status}):\n{output}\n--- script:\n{script}"
    );
    for e in &expected {
        assert!(
            output.contains(e.as_str()),
            "the README promises {e:?}; the session printed:\n{output}"
        );
    }
}

/// A newcomer meets `cargo install` before the first command that needs `nimriz-matrix` on
/// the PATH (the sections before use `cargo run` or `./target/release/nimriz-matrix`).
#[test]
fn install_comes_before_the_first_bare_command() {
    let readme = std::fs::read_to_string(test_support::repo().join("README.md")).unwrap();
    let mut in_block = false;
    let mut installed = false;
    for (n, line) in readme.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("```") {
            in_block = t == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        if t.starts_with("cargo install --locked") {
            installed = true;
        }
        let bare = t.split_whitespace().any(|w| w == "nimriz-matrix");
        assert!(
            !bare || installed,
            "README.md:{}: `nimriz-matrix` used before the install command: {t}",
            n + 1
        );
    }
    assert!(installed, "the README shows how to install");
}
