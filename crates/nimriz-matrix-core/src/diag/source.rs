//! A loaded input file with its text, so byte offsets can become `file:line:col` + snippet.

use super::Problem;
use std::ops::Range;

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user (as given, or joined to the spec's folder).
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

/// A place in an input file, resolved eagerly so it stays valid after the text is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub snippet: Option<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line_idx];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line_idx + 1, col + 1)
    }

    pub fn line_text(&self, line: usize) -> Option<&str> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |e| e.saturating_sub(1));
        self.text
            .get(start..end.max(start))
            .map(|s| s.trim_end_matches('\r'))
    }

    pub fn locate(&self, span: &Range<usize>) -> Location {
        let (line, column) = self.line_col(span.start);
        Location {
            file: self.name.clone(),
            line,
            column,
            snippet: self.line_text(line).map(str::to_string),
        }
    }

    /// A location for a whole line (CSV rows).
    pub fn locate_line(&self, line: usize) -> Location {
        Location {
            file: self.name.clone(),
            line,
            column: 1,
            snippet: self.line_text(line).map(str::to_string),
        }
    }

    pub fn whole(&self) -> Location {
        Location {
            file: self.name.clone(),
            ..Location::default()
        }
    }
}

impl Location {
    pub fn problem(&self, message: impl Into<String>, help: Option<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
            help,
            snippet: self.snippet.clone(),
        }
    }
}
