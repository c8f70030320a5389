//! Every key problem of a listen config in one run, as docs/listen.md promises.
//!
//! The typed reader (serde + `deny_unknown_fields`) stops at its first problem. So: report
//! it, set the offending lines aside (blanked with spaces, so every byte offset and line
//! number stays the same), and read again — until the file reads, or the next problem is a
//! consequence of what was set aside (a required key now missing, a syntax error left by a
//! multi-line value), which is not reported. Bounded: at most [`MAX_PROBLEMS`] rounds.

use super::RawConfig;
use nimriz_matrix_core::diag::{Problem, SourceFile};
use std::ops::Range;

/// More than this in one file is a wrong file, not a list to read through.
const MAX_PROBLEMS: usize = 25;

const HELP: &str = "see examples/listen.example.toml for every key";

/// Read `source`: the config (when what is left after setting problems aside reads), the
/// problems found, and the key names set aside (their absence causes no further problem).
pub(super) fn read_all(source: &SourceFile) -> (Option<RawConfig>, Vec<Problem>, Vec<String>) {
    let mut work = source.text.clone().into_bytes();
    let mut problems: Vec<Problem> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let mut seen_spans: Vec<Range<usize>> = Vec::new();
    loop {
        // Blanking replaces bytes with ASCII spaces and newlines stay: still UTF-8.
        let text = String::from_utf8_lossy(&work);
        let err = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => return (Some(raw), problems, removed),
            Err(e) => e,
        };
        let message = err.message().trim().to_string();
        let Some(span) = err.span() else {
            if problems.is_empty() {
                problems.push(source.whole().problem(message, Some(HELP.into())));
            }
            return (None, problems, removed);
        };
        let follow_on = !problems.is_empty()
            && (seen_spans.iter().any(|s| s.start == span.start)
                || removed
                    .iter()
                    .any(|k| message.contains(&format!("missing field `{k}`")))
                || is_syntax(&message));
        if follow_on || problems.len() >= MAX_PROBLEMS {
            return (None, problems, removed);
        }
        problems.push(source.locate(&span).problem(message, Some(HELP.into())));
        seen_spans.push(span.clone());
        match set_aside(&mut work, &span) {
            Some(keys) => removed.extend(keys),
            None => return (None, problems, removed),
        }
    }
}

/// A problem caused by a key set aside: it names the key (in backticks, as every problem
/// message of the resolver does).
pub(super) fn follows_from(problem: &Problem, removed: &[String]) -> bool {
    removed
        .iter()
        .any(|k| problem.message.contains(&format!("`{k}`")))
}

/// Syntax errors leave nothing sensible to read on; only the first is worth reporting.
fn is_syntax(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    // serde's data errors ("invalid type: …", "invalid value: …") are not syntax.
    let data = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|d| m.starts_with(d));
    !data && (m.starts_with("invalid") || m.starts_with("expected") || m.starts_with("unclosed"))
}

/// Blank the lines the problem is on. A table header blanks its whole table (its keys would
/// otherwise land in the table above); a value opening a multi-line array or string blanks
/// through its end. Returns the key names set aside, or `None` when nothing could be.
fn set_aside(work: &mut [u8], span: &Range<usize>) -> Option<Vec<String>> {
    let start = line_start(work, span.start.min(work.len()));
    let first_line = line_text(work, start);
    let trimmed = first_line.trim_start();
    let last = span.end.saturating_sub(1).max(span.start);
    let mut end = line_end(work, last.min(work.len()));
    let mut keys = Vec::new();
    if trimmed.starts_with('[') {
        // The whole table, up to the next header.
        let name = trimmed
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or("")
            .trim()
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_string();
        keys.push(name);
        let mut next = line_end(work, start);
        while next < work.len() {
            let line_begin = next + 1;
            let l = line_text(work, line_begin);
            if l.trim_start().starts_with('[') {
                break;
            }
            next = line_end(work, line_begin);
        }
        end = next;
    } else {
        let key = trimmed
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_string();
        if key.is_empty() {
            return None;
        }
        keys.push(key);
        // A value left open on its line continues on the next ones.
        let value = trimmed.split_once('=').map_or("", |(_, v)| v);
        let closer = if value.contains("\"\"\"") && value.matches("\"\"\"").count() == 1 {
            Some("\"\"\"")
        } else if value.contains("'''") && value.matches("'''").count() == 1 {
            Some("'''")
        } else if value.matches('[').count() > value.matches(']').count() {
            Some("]")
        } else {
            None
        };
        if let Some(closer) = closer {
            let mut next = line_end(work, start);
            while next < work.len() {
                let line_begin = next + 1;
                next = line_end(work, line_begin);
                if line_text(work, line_begin).contains(closer) {
                    break;
                }
            }
            end = end.max(next);
        }
    }
    for b in &mut work[start..end] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    Some(keys)
}

fn line_start(work: &[u8], at: usize) -> usize {
    work[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Index of the newline ending the line that contains `at` (or the end of the text).
fn line_end(work: &[u8], at: usize) -> usize {
    let at = at.min(work.len());
    work[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(work.len(), |i| at + i)
}

fn line_text(work: &[u8], start: usize) -> String {
    let start = start.min(work.len());
    String::from_utf8_lossy(&work[start..line_end(work, start)]).into_owned()
}
