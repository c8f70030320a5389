//! Diagnostics: every problem found, each naming file, line, column and the fix.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// The offending source line, when known.
    pub snippet: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Problems found but not listed (the list is capped).
    pub unlisted: usize,
    /// What the problems stopped; default "nothing was sent".
    pub consequence: Option<&'static str>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            out.push_str(&format!("error: {}\n", p.message));
            if p.line > 0 {
                out.push_str(&format!("  --> {}:{}:{}\n", p.file, p.line, p.column));
            } else {
                out.push_str(&format!("  --> {}\n", p.file));
            }
            if let Some(s) = &p.snippet {
                out.push_str(&format!("   |\n{:>3}| {}\n", p.line, s));
                out.push_str(&format!(
                    "   | {}^\n",
                    " ".repeat(p.column.saturating_sub(1))
                ));
            }
            if let Some(h) = &p.help {
                out.push_str(&format!("   = help: {h}\n"));
            }
        }
        if self.unlisted > 0 {
            out.push_str(&format!(
                "… and {} more problem(s) not listed: fix the ones above and run \
                 `nimriz-matrix validate` again\n",
                self.unlisted
            ));
        }
        let n = self.problems.len() + self.unlisted;
        out.push_str(&format!(
            "{n} problem{} found; {}.",
            if n == 1 { "" } else { "s" },
            self.consequence.unwrap_or("nothing was sent")
        ));
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Report {}
