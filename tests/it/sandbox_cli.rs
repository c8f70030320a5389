//! `nimriz-matrix sandbox` as a real process: banner on stdout, serves, stops on a signal.

use nimriz_sandbox::domain_id_for_host;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use test_support::ChildGuard as Running;

fn sandbox_cmd() -> Command {
    let mut cmd = test_support::command();
    cmd.arg("sandbox");
    cmd
}

/// The banner lines up to the `try:` line. Read on a thread so a silent process cannot hang
/// the test.
fn read_banner(child: &mut Running) -> Vec<String> {
    let stdout = child.0.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let done = line.starts_with("try:");
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

#[test]
fn serves_and_prints_its_banner() {
    let child = sandbox_cmd()
        .args([
            "--addr",
            "127.0.0.1:0",
            "--domain",
            "go.acme.example,go.other.example",
            "--key",
            "k_cli_test",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut child = Running(child);
    let lines = read_banner(&mut child);
    let first = lines.first().expect("a banner line within 20 s");
    let base = first
        .strip_prefix("nimriz sandbox listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(lines[1], "api key: k_cli_test");
    let acme_line = format!(
        "domain: go.acme.example id={} kind=branded",
        domain_id_for_host("go.acme.example")
    );
    assert!(lines.contains(&acme_line), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("domain: go.other.example id="))
    );
    assert!(lines.iter().any(|l| l.starts_with("domain: nim.lu id=")));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let whoami = http
            .get(format!("{base}/api/v1/whoami"))
            .header("X-Nim-Api-Key", "k_cli_test")
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(whoami.status(), 200);
        let domains: serde_json::Value = http
            .get(format!("{base}/api/v1/domains"))
            .bearer_auth("k_cli_test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(domains["domains"].as_array().unwrap().len(), 4);
    });

    // SIGTERM (what CI runners and `kill` send) stops it cleanly with exit 0.
    #[cfg(unix)]
    {
        let pid = child.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0));
    }
}

#[test]
fn refuses_bad_flags_with_a_usage_error() {
    let remote = sandbox_cmd()
        .args(["--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(remote.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("--allow-remote"));

    let rate = sandbox_cmd()
        .args(["--addr", "127.0.0.1:0", "--fail-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(rate.status.code(), Some(2));

    let host = sandbox_cmd()
        .args([
            "--addr",
            "127.0.0.1:0",
            "--domain",
            "https://go.acme.example",
        ])
        .output()
        .unwrap();
    assert_eq!(host.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&host.stderr).contains("bare host"));

    let status = sandbox_cmd()
        .args(["--addr", "127.0.0.1:0", "--conflict-status", "400"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
}

#[test]
fn spec_flag_serves_every_short_host_the_spec_uses() {
    let example = env!("CARGO_MANIFEST_DIR").to_string() + "/matrix.example.toml";
    let child = sandbox_cmd()
        .args(["--addr", "127.0.0.1:0", "--spec", &example])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut child = Running(child);
    let lines = read_banner(&mut child);
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("nimriz sandbox listening on http://127.0.0.1:")),
        "{lines:#?}"
    );
    // The five brands' short hosts from brands.csv, with the same ids `--domain` gives.
    let branded: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("domain: ") && l.ends_with("kind=branded"))
        .collect();
    for host in [
        "go.acme-outdoor.example",
        "links.globex.example",
        "go.initech.example",
        "u.umbrella-health.example",
        "go.cafe-muench.example",
    ] {
        let line = format!(
            "domain: {host} id={} kind=branded",
            domain_id_for_host(host)
        );
        assert!(lines.contains(&line), "{line} missing from {lines:#?}");
    }
    // The default branded domain plus the five; nothing else.
    assert_eq!(branded.len(), 6, "{branded:#?}");
    // The hint builds the spec the sandbox was started for.
    let hint = lines.last().expect("banner");
    assert!(
        hint.starts_with("try: NIMRIZ_API_BASE=http://127.0.0.1:")
            && hint.ends_with(&format!("nimriz-matrix build {example}")),
        "{hint}"
    );
}

#[test]
fn spec_flag_refuses_a_bad_spec_with_its_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    // Parse error: located diagnostics.
    std::fs::write(dir.path().join("broken.toml"), "[link]\nslug = \n").unwrap();
    // Walk-level problem: two cells render the same slug on one domain.
    std::fs::write(
        dir.path().join("collide.toml"),
        r#"
[link]
domain = "go.acme.example"
destination = "https://acme.example/"
slug = "same"

[[dimension]]
name = "channel"
values = [{ key = "a" }, { key = "b" }]
"#,
    )
    .unwrap();
    for (file, needle) in [
        ("broken.toml", "broken.toml:2:"),
        (
            "collide.toml",
            "slug `same` on `go.acme.example` is produced by two cells",
        ),
        ("missing.toml", "cannot read spec file"),
    ] {
        let out = sandbox_cmd()
            .current_dir(dir.path())
            .args(["--addr", "127.0.0.1:0", "--spec", file])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(
            err.contains(needle),
            "{file}: stderr lacks {needle:?}:\n{err}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "{file}: the sandbox must not start"
        );
    }
}
