//! Shell conventions through the binary: `--color` with NO_COLOR / CLICOLOR_FORCE,
//! `completions SHELL`, `man`.

use std::time::Duration;

const ESC: char = '\x1b';

fn run(args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> test_support::Run {
    let mut cmd = test_support::command();
    cmd.args(args);
    for k in unset {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    test_support::Run(
        assert_cmd::Command::from_std(cmd)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("run"),
    )
}

#[test]
fn color_follows_the_flag_then_no_color_then_clicolor_force() {
    let bad = ["validate", "does-not-exist.toml"];
    // Not a terminal, NO_COLOR set (the test environment): plain.
    let plain = run(&bad, &[], &[]);
    assert_eq!(plain.code(), 2);
    assert!(!plain.stderr().contains(ESC), "{:?}", plain.stderr());
    // --color always wins over NO_COLOR.
    let forced = run(&["--color", "always", bad[0], bad[1]], &[], &[]);
    assert_eq!(forced.code(), 2);
    assert!(
        forced.stderr().contains("\x1b[1;31merror\x1b[0m:"),
        "{:?}",
        forced.stderr()
    );
    // CLICOLOR_FORCE colors a pipe when NO_COLOR is not set ...
    let clicolor = run(&bad, &[("CLICOLOR_FORCE", "1")], &["NO_COLOR"]);
    assert!(clicolor.stderr().contains(ESC));
    // ... but NO_COLOR beats it, and --color never beats both.
    let both = run(&bad, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]);
    assert!(!both.stderr().contains(ESC));
    let never = run(
        &["--color=never", bad[0], bad[1]],
        &[("CLICOLOR_FORCE", "1")],
        &["NO_COLOR"],
    );
    assert!(!never.stderr().contains(ESC));
    // clap's own usage errors follow the flag too.
    let usage = run(&["--color", "always", "validate", "--bogus"], &[], &[]);
    assert_eq!(usage.code(), 2);
    assert!(usage.stderr().contains(ESC));
    // Data on stdout is never colored.
    let repo = test_support::repo();
    let spec = repo.join("matrix.example.toml");
    let plan = run(
        &[
            "--color",
            "always",
            "build",
            spec.to_str().unwrap(),
            "--dry-run",
            "--format",
            "csv",
        ],
        &[],
        &[],
    );
    assert_eq!(plan.code(), 0, "{}", plan.stderr());
    assert!(!plan.stdout().contains(ESC));
    // A bad value is a usage error naming the choices.
    run(&["--color", "sometimes", "man"], &[], &[]).fails_with(2, &["always", "never"]);
}

#[test]
fn completions_and_man_page_on_stdout() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(&["completions", shell], &[], &[]);
        let script = out.succeeds();
        assert!(script.contains("nimriz-matrix"), "{shell}");
        assert!(script.contains("shorten"), "{shell}: subcommands completed");
    }
    let bash = run(&["completions", "bash"], &[], &[]).succeeds();
    assert!(
        bash.contains("complete -F"),
        "a bash completion function is registered"
    );
    run(&["completions", "tcsh"], &[], &[]).fails_with(2, &["bash", "zsh"]);
    let page = run(&["man"], &[], &[]).succeeds();
    assert!(page.contains(".TH nimriz-matrix 1"));
    assert!(page.contains("\\-\\-color"), "global flags are documented");
}
