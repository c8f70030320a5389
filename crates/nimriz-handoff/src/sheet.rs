//! Print sheets: A4 SVG pages with a grid of codes, each captioned with its cell and its
//! short URL, one set of pages per value of a dimension (per brand by default).
//!
//! Vector all the way (the codes are paths, not images), so the print shop can scale a page
//! without blurring; text is plain SVG `<text>` in a generic sans-serif font.

use crate::qr::{Code, QrStyle, svg_modules};
use std::fmt::Write as _;

/// One tile: a code and its two caption lines.
#[derive(Debug, Clone)]
pub struct Tile {
    pub code: Code,
    pub caption: String,
    pub url: String,
}

/// A4 portrait, in millimetres.
pub const PAGE_W: f64 = 210.0;
pub const PAGE_H: f64 = 297.0;
pub const COLUMNS: usize = 3;
pub const ROWS: usize = 4;
pub const PER_PAGE: usize = COLUMNS * ROWS;
const MARGIN: f64 = 12.0;
const HEADER: f64 = 14.0;
/// Side of one code including its quiet zone.
const CODE_MM: f64 = 50.0;

/// Where the `index`-th tile's code sits on its page: (x, y, side) in mm.
pub fn code_box(index: usize) -> (f64, f64, f64) {
    let cell_w = (PAGE_W - 2.0 * MARGIN) / COLUMNS as f64;
    let cell_h = (PAGE_H - 2.0 * MARGIN - HEADER) / ROWS as f64;
    let (col, row) = (index % COLUMNS, (index / COLUMNS) % ROWS);
    let x = MARGIN + col as f64 * cell_w + (cell_w - CODE_MM) / 2.0;
    let y = MARGIN + HEADER + row as f64 * cell_h;
    (x, y, CODE_MM)
}

/// One page as an SVG document.
pub fn page(title: &str, page_no: usize, pages: usize, tiles: &[Tile], style: &QrStyle) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{PAGE_W}mm\" \
         height=\"{PAGE_H}mm\" viewBox=\"0 0 {PAGE_W} {PAGE_H}\">\n\
         <rect width=\"{PAGE_W}\" height=\"{PAGE_H}\" fill=\"#ffffff\"/>\n\
         <text x=\"{MARGIN}\" y=\"{y}\" font-family=\"sans-serif\" font-size=\"6\">{t}</text>\n\
         <text x=\"{r}\" y=\"{y}\" font-family=\"sans-serif\" font-size=\"4\" \
         text-anchor=\"end\">page {page_no} of {pages}</text>\n",
        y = MARGIN + 6.0,
        r = PAGE_W - MARGIN,
        t = xml_escape(title),
    );
    for (i, tile) in tiles.iter().enumerate().take(PER_PAGE) {
        let (x, y, side) = code_box(i);
        let modules = tile.code.side(style.quiet_zone) as f64;
        let scale = side / modules;
        let _ = write!(
            svg,
            "<g transform=\"translate({x:.3} {y:.3}) scale({scale:.5})\" \
             shape-rendering=\"crispEdges\">\
             <rect width=\"{modules}\" height=\"{modules}\" fill=\"{light}\"/>\
             <path fill=\"{dark}\" d=\"{d}\"/></g>\n\
             <text x=\"{cx:.3}\" y=\"{t1:.3}\" font-family=\"sans-serif\" font-size=\"3.2\" \
             text-anchor=\"middle\">{caption}</text>\n\
             <text x=\"{cx:.3}\" y=\"{t2:.3}\" font-family=\"monospace\" font-size=\"2.8\" \
             text-anchor=\"middle\">{url}</text>\n",
            light = style.light.hex(),
            dark = style.dark.hex(),
            d = svg_modules(&tile.code, style.quiet_zone),
            cx = x + side / 2.0,
            t1 = y + side + 4.0,
            t2 = y + side + 8.0,
            caption = xml_escape(&tile.caption),
            url = xml_escape(&tile.url),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Escape text for SVG content and attributes; control characters (which XML 1.0 forbids)
/// become U+FFFD so a hostile cell cannot break the document.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Pixels per millimetre used to check a page (≈ 200 dpi: 4+ pixels per module).
pub const CHECK_PX_PER_MM: f64 = 8.0;

/// Render a page and decode every tile's code from its own area of the image; returns the
/// decoded text per tile (in tile order).
pub fn decode_page(svg: &str, tiles: usize) -> Result<Vec<Result<String, String>>, String> {
    let w = (PAGE_W * CHECK_PX_PER_MM).round() as u32;
    let h = (PAGE_H * CHECK_PX_PER_MM).round() as u32;
    let pixmap = crate::qr::rasterise(svg, w, h)?;
    let mut out = Vec::with_capacity(tiles);
    for i in 0..tiles.min(PER_PAGE) {
        let (x, y, side) = code_box(i);
        // Crop the code with a little paper around it, so each decode sees one code.
        let pad = 2.0;
        let px = |mm: f64| (mm * CHECK_PX_PER_MM).round().max(0.0) as u32;
        let rect = resvg::tiny_skia::IntRect::from_xywh(
            px(x - pad) as i32,
            px(y - pad) as i32,
            px(side + 2.0 * pad),
            px(side + 2.0 * pad),
        )
        .ok_or("tile outside the page")?;
        let tile = pixmap.clone_rect(rect).ok_or("tile outside the page")?;
        let found = crate::qr::decode_pixmap(&tile);
        out.push(match found.into_iter().next() {
            Some(r) => r,
            None => Err("no code found in the tile".into()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qr::Correction;

    #[test]
    fn every_tile_on_a_page_decodes_to_its_url() {
        let style = QrStyle::default();
        let urls: Vec<String> = (0..5)
            .map(|i| format!("https://go.acme.example/acme-email-v{i}?nr=qr"))
            .collect();
        let tiles: Vec<Tile> = urls
            .iter()
            .map(|u| Tile {
                code: Code::encode(u, Correction::M).unwrap(),
                caption: "brand=acme <&> \u{7}".into(),
                url: u.clone(),
            })
            .collect();
        let svg = page("brand: acme", 1, 1, &tiles, &style);
        assert!(svg.contains("&lt;&amp;&gt;") && !svg.contains('\u{7}'));
        let decoded = decode_page(&svg, tiles.len()).unwrap();
        let decoded: Vec<String> = decoded.into_iter().map(Result::unwrap).collect();
        assert_eq!(decoded, urls);
    }
}
