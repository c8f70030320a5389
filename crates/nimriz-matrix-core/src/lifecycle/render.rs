//! The plan for people (text), for programs (JSON, versioned) and for pull requests
//! (markdown with a stable marker a bot can find its own comment by).

use super::classify::{Action, Classified, Counts, Entry, FieldChange};
use super::saved::Hashes;
use serde::Serialize;
use std::fmt::Write as _;

/// The first line of every markdown plan: a bot finds (and patches) its own comment by it.
pub const MARKDOWN_MARKER: &str = "<!-- nimriz-matrix-plan -->";

/// The order sections are shown in.
const ORDER: [Action; 6] = [
    Action::Create,
    Action::Update,
    Action::Rename,
    Action::Orphan,
    Action::Drift,
    Action::CannotUpdate,
];

/// What a rendering needs.
#[derive(Debug, Clone)]
pub struct PlanView<'a> {
    pub spec: &'a str,
    /// `None` when there is no manifest yet.
    pub manifest: Option<&'a str>,
    pub classified: &'a Classified,
    pub hashes: &'a Hashes,
    /// Show unchanged links too.
    pub verbose: bool,
}

/// `1 to create, 1 to update, …` — the summary line every format starts with.
pub fn summary(c: &Counts) -> String {
    format!(
        "{} to create, {} to update, {} to rename, {} orphaned, {} drifted, {} cannot update, \
         {} unchanged",
        c.create, c.update, c.rename, c.orphan, c.drift, c.cannot_update, c.unchanged
    )
}

fn name(e: &Entry) -> String {
    let link = e.short_url.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            e.domain
                .host
                .as_deref()
                .or(e.domain.id.as_deref())
                .unwrap_or("?"),
            e.slug
        )
    });
    if e.cell.0.is_empty() {
        link
    } else {
        format!("{link} ({})", e.cell.label())
    }
}

fn show(v: Option<&str>) -> &str {
    match v {
        None | Some("") => "(none)",
        Some(s) => s,
    }
}

fn sigil(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update | Action::Rename => "~",
        Action::Orphan => "-",
        Action::Drift | Action::CannotUpdate => "!",
        Action::Unchanged => " ",
    }
}

/// Text for a terminal or a CI log.
pub fn render_human(v: &PlanView<'_>) -> String {
    let c = &v.classified.counts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for {} against {}:",
        v.spec,
        v.manifest.unwrap_or("no manifest yet")
    );
    let _ = writeln!(s, "  {}", summary(c));
    for e in &v.classified.entries {
        if e.action == Action::Unchanged && !v.verbose {
            continue;
        }
        let _ = writeln!(
            s,
            "{} {:<13} {}",
            sigil(e.action),
            e.action.as_str(),
            name(e)
        );
        for ch in &e.changes {
            let _ = writeln!(
                s,
                "      {}: {} → {}{}",
                ch.field,
                show(ch.old.as_deref()),
                show(ch.new.as_deref()),
                if ch.updatable {
                    ""
                } else {
                    "  (no update call)"
                }
            );
        }
        if let Some(n) = &e.note {
            let _ = writeln!(s, "      {n}");
        }
    }
    if !c.has_changes() {
        let _ = writeln!(
            s,
            "no changes: Nimriz matches the spec as far as the record knows"
        );
    } else {
        if c.create + c.update + c.rename > 0 {
            let _ = writeln!(
                s,
                "apply with: nimriz-matrix build {}{}",
                v.spec,
                if c.update + c.rename + c.cannot_update > 0 {
                    " --update"
                } else {
                    ""
                }
            );
        }
        if c.orphan > 0 {
            let _ = writeln!(
                s,
                "orphans stay live until retired: nimriz-matrix retire {} --orphans-only \
                 (--fallback URL | --expire-at TIME | --delete)",
                v.spec
            );
        }
    }
    s
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    /// Always `nimriz-matrix-plan`.
    format: &'static str,
    /// Bumped only for changes a reader of version 1 would misread.
    version: u32,
    tool_version: &'static str,
    spec: &'a str,
    manifest: Option<&'a str>,
    hashes: &'a Hashes,
    summary: JsonSummary,
    changes: Vec<&'a Entry>,
}

#[derive(Serialize)]
struct JsonSummary {
    #[serde(flatten)]
    counts: Counts,
    has_changes: bool,
}

/// The documented JSON (see README "Plan JSON"); also what `plan --out` saves.
pub fn render_json(v: &PlanView<'_>) -> String {
    let c = v.classified.counts;
    let doc = JsonPlan {
        format: "nimriz-matrix-plan",
        version: 1,
        tool_version: env!("CARGO_PKG_VERSION"),
        spec: v.spec,
        manifest: v.manifest,
        hashes: v.hashes,
        summary: JsonSummary {
            counts: c,
            has_changes: c.has_changes(),
        },
        changes: v
            .classified
            .entries
            .iter()
            .filter(|e| v.verbose || e.action != Action::Unchanged)
            .collect(),
    };
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

/// Markdown text that cannot break out of a table cell or inject HTML / mentions.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '`' => out.push_str("\\`"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("&#64;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn md_change(ch: &FieldChange) -> String {
    format!(
        "{}: {} → {}{}",
        md(&ch.field),
        md(show(ch.old.as_deref())),
        md(show(ch.new.as_deref())),
        if ch.updatable {
            ""
        } else {
            " (no update call)"
        }
    )
}

/// The pull-request comment body: marker, summary table, one collapsible section per kind.
pub fn render_markdown(v: &PlanView<'_>) -> String {
    let c = &v.classified.counts;
    let mut s = String::new();
    let _ = writeln!(s, "{MARKDOWN_MARKER}");
    let _ = writeln!(s, "### nimriz-matrix plan: `{}`", v.spec.replace('`', "'"));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| create | update | rename | orphan | drift | cannot update | unchanged |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} |",
        c.create, c.update, c.rename, c.orphan, c.drift, c.cannot_update, c.unchanged
    );
    let _ = writeln!(s);
    if !c.has_changes() {
        let _ = writeln!(
            s,
            "**No changes.** All {} links match the record.",
            c.unchanged
        );
        return s;
    }
    for action in ORDER {
        let entries: Vec<&Entry> = v
            .classified
            .entries
            .iter()
            .filter(|e| e.action == action)
            .collect();
        if entries.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<details><summary>{} {}</summary>\n",
            entries.len(),
            match action {
                Action::Create => "to create",
                Action::Update => "to update",
                Action::Rename => "to rename",
                Action::Orphan => "orphaned",
                Action::Drift => "drifted",
                Action::CannotUpdate => "cannot update",
                Action::Unchanged => "unchanged",
            }
        );
        let _ = writeln!(s, "| link | changes | note |");
        let _ = writeln!(s, "|---|---|---|");
        for e in entries {
            let changes: Vec<String> = e.changes.iter().map(md_change).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                md(&name(e)),
                changes.join("<br>"),
                md(e.note.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(s, "\n</details>\n");
    }
    s
}
