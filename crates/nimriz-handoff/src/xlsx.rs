//! The spreadsheet for the media team: a flat `links` sheet plus one sheet per value of a
//! dimension (per brand by default), with clickable short links, the cell's dimensions, every
//! UTM value, tags and status as columns, a frozen header, filters and status colours.
//!
//! Every value is written as a *string* cell — never a formula — so a destination such as
//! `=HYPERLINK(…)` from a hostile spec stays text, and nothing is lost by CSV-style quoting.

use nimriz_matrix_core::manifest::{
    LinkRecord, LinkStatus, Manifest, dimension_names, utm_columns,
};
use rust_xlsxwriter::{Color, Format, FormatBorder, Url, Workbook, Worksheet, XlsxError};

/// Excel refuses more hyperlinks than this on one sheet; further short URLs are plain text.
pub const MAX_LINKS_PER_SHEET: usize = 65_530;
/// Excel's limit for a hyperlink's target.
const MAX_URL_CHARS: usize = 2_079;
/// Excel's limit for a cell's text.
const MAX_CELL_CHARS: usize = 32_767;

/// Build the workbook in memory.
pub fn workbook(manifest: &Manifest, sheet_by: Option<&str>) -> Result<Vec<u8>, String> {
    let dims = dimension_names(manifest);
    let utms = utm_columns(manifest);
    let mut header: Vec<String> = dims.clone();
    header.extend(["slug", "short_url", "destination"].map(String::from));
    header.extend(utms.iter().cloned());
    header.extend(
        [
            "tags",
            "status",
            "url_id",
            "domain",
            "error_message",
            "updated_at",
        ]
        .map(String::from),
    );
    let mut book = Workbook::new();
    let formats = Formats::new();

    let flat: Vec<&LinkRecord> = manifest.links.iter().collect();
    write_sheet(
        book.add_worksheet(),
        "links",
        &header,
        &dims,
        &utms,
        &flat,
        &formats,
    )
    .map_err(xlsx_err)?;

    if let Some(by) = sheet_by {
        // Values in order of first appearance, one sheet each.
        let mut groups: Vec<(String, Vec<&LinkRecord>)> = Vec::new();
        for link in &manifest.links {
            let value = link.cell.get(by).unwrap_or("(none)").to_string();
            match groups.iter_mut().find(|(v, _)| *v == value) {
                Some((_, links)) => links.push(link),
                None => groups.push((value, vec![link])),
            }
        }
        let mut used = vec!["links".to_string()];
        for (value, links) in groups {
            let name = sheet_name(&value, &mut used);
            write_sheet(
                book.add_worksheet(),
                &name,
                &header,
                &dims,
                &utms,
                &links,
                &formats,
            )
            .map_err(xlsx_err)?;
        }
    }
    book.save_to_buffer().map_err(xlsx_err)
}

struct Formats {
    header: Format,
    link: Format,
    status: [(LinkStatus, Format); 6],
}

impl Formats {
    fn new() -> Formats {
        let fill = |rgb: u32| Format::new().set_background_color(Color::RGB(rgb));
        Formats {
            header: Format::new()
                .set_bold()
                .set_background_color(Color::RGB(0xDDE3EA))
                .set_border_bottom(FormatBorder::Thin),
            link: Format::new()
                .set_font_color(Color::RGB(0x0563C1))
                .set_underline(rust_xlsxwriter::FormatUnderline::Single),
            status: [
                (LinkStatus::Created, fill(0xC6EFCE)),
                (LinkStatus::Exists, fill(0xC6EFCE)),
                (LinkStatus::Drift, fill(0xFFEB9C)),
                (LinkStatus::Failed, fill(0xFFC7CE)),
                (LinkStatus::Pending, fill(0xEDEDED)),
                (LinkStatus::Deleted, fill(0xD9D9D9)),
            ],
        }
    }

    fn status(&self, s: LinkStatus) -> &Format {
        // Every status has a colour; a new one falls back to pending's grey, never a panic.
        self.status
            .iter()
            .find(|(k, _)| *k == s)
            .map_or(&self.status[4].1, |entry| &entry.1)
    }
}

fn write_sheet(
    sheet: &mut Worksheet,
    name: &str,
    header: &[String],
    dims: &[String],
    utms: &[String],
    links: &[&LinkRecord],
    f: &Formats,
) -> Result<(), XlsxError> {
    sheet.set_name(name)?;
    for (c, h) in header.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h, &f.header)?;
    }
    let mut hyperlinks = 0usize;
    for (i, link) in links.iter().enumerate() {
        let row = i as u32 + 1;
        let mut col = 0u16;
        let text = |sheet: &mut Worksheet, col: &mut u16, value: &str| {
            let r = sheet.write_string(row, *col, clip(value));
            *col += 1;
            r.map(|_| ())
        };
        for d in dims {
            text(sheet, &mut col, link.cell.get(d).unwrap_or(""))?;
        }
        text(sheet, &mut col, &link.slug)?;
        match link.short_url.as_deref() {
            Some(url)
                if hyperlinks < MAX_LINKS_PER_SHEET && url.chars().count() <= MAX_URL_CHARS =>
            {
                sheet.write_url_with_format(row, col, Url::new(url).set_text(url), &f.link)?;
                hyperlinks += 1;
                col += 1;
            }
            other => text(sheet, &mut col, other.unwrap_or(""))?,
        }
        let dest = &link.destination;
        if hyperlinks < MAX_LINKS_PER_SHEET
            && dest.chars().count() <= MAX_URL_CHARS
            && (dest.starts_with("https://") || dest.starts_with("http://"))
        {
            sheet.write_url_with_format(
                row,
                col,
                Url::new(dest.as_str()).set_text(dest.as_str()),
                &f.link,
            )?;
            hyperlinks += 1;
            col += 1;
        } else {
            text(sheet, &mut col, dest)?;
        }
        for u in utms {
            text(sheet, &mut col, link.utm.get(u).map_or("", String::as_str))?;
        }
        text(sheet, &mut col, &link.tags.join(";"))?;
        sheet.write_string_with_format(row, col, link.status.as_str(), f.status(link.status))?;
        col += 1;
        text(sheet, &mut col, link.url_id.as_deref().unwrap_or(""))?;
        text(
            sheet,
            &mut col,
            link.domain
                .host
                .as_deref()
                .or(link.domain.id.as_deref())
                .unwrap_or(""),
        )?;
        text(
            sheet,
            &mut col,
            link.error.as_ref().map_or("", |e| e.message.as_str()),
        )?;
        text(sheet, &mut col, &link.updated_at)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    let last_col = header.len().saturating_sub(1) as u16;
    sheet.autofilter(0, 0, links.len() as u32, last_col)?;
    for (c, h) in header.iter().enumerate() {
        let width = match h.as_str() {
            "short_url" => 34.0,
            "destination" => 60.0,
            "error_message" => 40.0,
            "updated_at" => 21.0,
            _ => (h.len() as f64 + 4.0).max(12.0),
        };
        sheet.set_column_width(c as u16, width)?;
    }
    Ok(())
}

/// Excel's limit; the manifest keeps the whole text.
fn clip(value: &str) -> &str {
    match value.char_indices().nth(MAX_CELL_CHARS) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

/// A valid, unique sheet name for a dimension value: at most 31 characters, none of
/// `[]:*?/\`, not starting or ending with `'`, not `History`.
pub fn sheet_name(value: &str, used: &mut Vec<String>) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if "[]:*?/\\".contains(c) || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let mut base: String = cleaned.trim_matches('\'').chars().take(31).collect();
    if base.trim().is_empty() || base.eq_ignore_ascii_case("history") {
        base = format!("_{}", base.trim()).chars().take(31).collect();
    }
    let mut name = base.clone();
    let mut n = 2;
    while used.iter().any(|u| u.eq_ignore_ascii_case(&name)) {
        let suffix = format!(" ({n})");
        let keep = 31 - suffix.chars().count();
        name = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
        n += 1;
    }
    used.push(name.clone());
    name
}

fn xlsx_err(e: XlsxError) -> String {
    format!("cannot write the spreadsheet: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let mut used = vec!["links".to_string()];
        assert_eq!(sheet_name("acme", &mut used), "acme");
        assert_eq!(sheet_name("ACME", &mut used), "ACME (2)");
        assert_eq!(sheet_name("a/b:c", &mut used), "a-b-c");
        assert_eq!(sheet_name("links", &mut used), "links (2)");
        assert_eq!(sheet_name("History", &mut used), "_History");
        assert_eq!(sheet_name("", &mut used), "_");
        let long = sheet_name(&"x".repeat(40), &mut used);
        assert_eq!(long.chars().count(), 31);
        let long2 = sheet_name(&"x".repeat(40), &mut used);
        assert!(long2.ends_with(" (2)") && long2.chars().count() == 31);
    }
}
