//! A loaded input file with its text, so byte offsets can become `file:line:col` + snippet.

use super::Problem;
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user (as given, or joined to the spec's folder).
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

/// A place in an input file, resolved eagerly so it stays valid after the text is dropped.
/// Shared strings: a CSV row's location is cloned into each of its fields (a 950k-row CSV
/// would otherwise hold its text ten times over).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
    pub snippet: Option<Arc<str>>,
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
            file: self.name.as_str().into(),
            line,
            column,
            snippet: self.line_text(line).map(Arc::from),
        }
    }

    /// A location for a whole line (CSV rows).
    pub fn locate_line(&self, line: usize) -> Location {
        Location {
            file: self.name.as_str().into(),
            line,
            column: 1,
            snippet: self.line_text(line).map(Arc::from),
        }
    }

    pub fn whole(&self) -> Location {
        Location {
            file: self.name.as_str().into(),
            ..Location::default()
        }
    }
}

impl Location {
    pub fn problem(&self, message: impl Into<String>, help: Option<String>) -> Problem {
        Problem {
            file: self.file.to_string(),
            line: self.line,
            column: self.column,
            message: message.into(),
            help,
            snippet: self.snippet.as_deref().map(str::to_string),
        }
    }
}
