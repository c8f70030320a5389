//! `--message-format json|github|sarif`: the run's spec problems and warnings as one
//! machine-readable document (or, for GitHub, one workflow command per line), printed once
//! at the end whether the command succeeded or failed. The formats live in the core
//! (`diag::format`); this decides where they go.

use nimriz_matrix_core::Error;
use nimriz_matrix_core::diag::Problem;
use nimriz_matrix_core::diag::format::{github_lines, json_document, sarif_document};
use std::io::Write;

/// The `--message-format` values (defined here, not in `cli`, so output never imports cli).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
    Github,
    Sarif,
}

/// Where the document goes: stdout for `validate` (which prints no data), else stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Print the document for a finished command. `Err` other than spec problems becomes one
/// `run` problem, so a CI job always sees why it failed.
pub fn emit(
    format: MessageFormat,
    stream: Stream,
    outcome: Result<(), &Error>,
    warnings: &[String],
) {
    let (problems, unlisted) = match outcome {
        Ok(()) => (Vec::new(), 0),
        Err(Error::Spec(report)) => (report.problems.clone(), report.unlisted),
        Err(other) => (
            vec![Problem {
                file: String::new(),
                line: 0,
                column: 0,
                message: other.to_string(),
                help: None,
                snippet: None,
            }],
            0,
        ),
    };
    let text = match format {
        MessageFormat::Human => return,
        MessageFormat::Github => github_lines(&problems, unlisted, warnings),
        MessageFormat::Json => {
            let doc = json_document(&problems, unlisted, warnings);
            format!("{}\n", serde_json::to_string(&doc).unwrap_or_default())
        }
        MessageFormat::Sarif => {
            let doc = sarif_document(&problems, unlisted, warnings);
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
    };
    // A closed stream must not turn into a panic.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}
