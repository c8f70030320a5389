//! Shell conventions: `completions SHELL` (clap_complete) and `man` (clap_mangen), both
//! written to stdout from the same clap definition the parser uses, so they cannot go stale.
//!
//! ```sh
//! nimriz-matrix completions bash > ~/.local/share/bash-completion/completions/nimriz-matrix
//! nimriz-matrix completions zsh  > ~/.zfunc/_nimriz-matrix
//! nimriz-matrix man > ~/.local/share/man/man1/nimriz-matrix.1
//! ```

use crate::cli::Cli;
use clap::CommandFactory;
use nimriz_matrix_core::{Error, Result, exit};
use std::io::Write;

/// Write the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<u8> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    write_all(out, &buf)
}

/// Write the man page (roff, section 1) to `out`.
pub fn man(out: &mut dyn Write) -> Result<u8> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Error::io("render", "the man page", e))?;
    write_all(out, &buf)
}

fn write_all(out: &mut dyn Write, bytes: &[u8]) -> Result<u8> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(exit::OK),
        // `nimriz-matrix man | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(Error::io("write", "stdout", e)),
    }
}

/// Ask a yes/no question on the terminal (`retire`). `None` when stdin or stderr is not a
/// terminal: a script or a CI job cannot answer, so it must pass `--yes`.
pub fn confirm(question: &str) -> Option<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} Type yes to continue: ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return Some(false);
    }
    Some(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "yes" | "y"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and positional argument of every command says what it does in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "nimriz-matrix", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    /// Dates shown as examples in `--help` are in the future, so copying one works.
    #[test]
    fn help_examples_with_dates_are_in_the_future() {
        fn walk(cmd: &clap::Command, dates: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                for word in help.split([' ', ',', ';', '(', ')', '`']) {
                    let word = word.trim_end_matches('.');
                    if chrono::DateTime::parse_from_rfc3339(word).is_ok() {
                        dates.push(word.to_string());
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, dates);
            }
        }
        let mut dates = Vec::new();
        walk(&Cli::command(), &mut dates);
        assert!(!dates.is_empty(), "the --expires-at example is found");
        // Ten years of margin: an example that expires soon is a trap for the next release.
        let horizon = chrono::Utc::now() + chrono::Duration::days(3650);
        for d in dates {
            let t = chrono::DateTime::parse_from_rfc3339(&d).unwrap();
            assert!(t > horizon, "help example {d} is (nearly) in the past");
        }
    }

    #[test]
    fn completions_and_man_page_render() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
            clap_complete::Shell::Elvish,
        ] {
            let mut out = Vec::new();
            assert_eq!(completions(shell, &mut out).unwrap(), exit::OK);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("nimriz-matrix"), "{shell}");
            assert!(
                text.contains("--dry-run"),
                "{shell}: subcommand flags completed"
            );
        }
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.contains(".TH nimriz-matrix 1"),
            "{}",
            &page[..200.min(page.len())]
        );
        assert!(page.contains("validate"));
    }
}
