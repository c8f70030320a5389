//! One QR code: the URL it encodes (with Nimriz's scan marker), its modules, its SVG and PNG,
//! and reading it back.
//!
//! The SVG is written by hand from the module matrix (one `<path>`, crisp edges) because the
//! `qrcode` crate's renderer cannot draw a code inside a larger page (the print sheets reuse
//! [`svg_modules`]); the PNG is that SVG rasterised by `resvg`, so both files show the same
//! modules. Every PNG is decoded back with `rqrr` before it is written.

use std::fmt::Write as _;

/// Nimriz counts a visit as a scan, not a click, when the short URL carries this query
/// parameter (`docs/nimriz-api.md`, "QR codes").
pub const SCAN_MARKER: (&str, &str) = ("nr", "qr");

/// The URL a printed code encodes: the short URL with `?nr=qr` added (kept if present).
pub fn scan_url(short_url: &str) -> Result<String, String> {
    let mut url = url::Url::parse(short_url)
        .map_err(|e| format!("short URL {short_url:?} is not a URL: {e}"))?;
    if !url
        .query_pairs()
        .any(|(k, v)| k == SCAN_MARKER.0 && v == SCAN_MARKER.1)
    {
        url.query_pairs_mut()
            .append_pair(SCAN_MARKER.0, SCAN_MARKER.1);
    }
    Ok(url.into())
}

/// Error-correction level: how much of a code may be damaged or covered and still scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// ~7 %.
    L,
    /// ~15 % (the default: survives print defects and a logo-free layout).
    M,
    /// ~25 %.
    Q,
    /// ~30 %.
    H,
}

impl Correction {
    fn level(self) -> qrcode::EcLevel {
        match self {
            Correction::L => qrcode::EcLevel::L,
            Correction::M => qrcode::EcLevel::M,
            Correction::Q => qrcode::EcLevel::Q,
            Correction::H => qrcode::EcLevel::H,
        }
    }
}

/// An sRGB colour, parsed from `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    pub const WHITE: Rgb = Rgb(255, 255, 255);

    pub fn parse(text: &str) -> Result<Rgb, String> {
        let hex = text.strip_prefix('#').unwrap_or(text);
        let ok = hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(format!(
                "colour {text:?} is not #rrggbb (e.g. #000000 for black)"
            ));
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
        Ok(Rgb(byte(0), byte(2), byte(4)))
    }

    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG relative luminance, 0 (black) to 1 (white).
    fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }
}

/// How the codes look. Defaults: 1024 px, level M, the standard 4-module quiet zone, black on
/// white.
#[derive(Debug, Clone, PartialEq)]
pub struct QrStyle {
    pub size_px: u32,
    pub correction: Correction,
    pub quiet_zone: u32,
    pub dark: Rgb,
    pub light: Rgb,
}

impl Default for QrStyle {
    fn default() -> Self {
        QrStyle {
            size_px: 1024,
            correction: Correction::M,
            quiet_zone: 4,
            dark: Rgb::BLACK,
            light: Rgb::WHITE,
        }
    }
}

/// Below this contrast ratio many phone cameras fail; inverted codes (light on dark) are
/// not read by every scanner either.
pub const MIN_CONTRAST: f64 = 4.5;

impl QrStyle {
    /// Refuse styles that would print codes phones cannot read.
    pub fn check(&self) -> Result<(), String> {
        let (d, l) = (self.dark.luminance(), self.light.luminance());
        if d >= l {
            return Err(format!(
                "--qr-dark {} is not darker than --qr-light {}: many scanners cannot read \
                 inverted codes; use a dark foreground on a light background",
                self.dark.hex(),
                self.light.hex()
            ));
        }
        let ratio = (l + 0.05) / (d + 0.05);
        if ratio < MIN_CONTRAST {
            return Err(format!(
                "--qr-dark {} on --qr-light {} has a contrast ratio of {ratio:.1}:1; codes \
                 need at least {MIN_CONTRAST}:1 to scan reliably — pick a darker foreground \
                 or a lighter background",
                self.dark.hex(),
                self.light.hex()
            ));
        }
        if self.quiet_zone < 2 {
            return Err(format!(
                "--qr-quiet-zone {} is too small: scanners need a margin of at least 2 \
                 modules (the standard is 4)",
                self.quiet_zone
            ));
        }
        Ok(())
    }
}

/// A code's module matrix (true = dark), row-major, without the quiet zone.
#[derive(Debug, Clone)]
pub struct Code {
    pub width: usize,
    pub modules: Vec<bool>,
}

impl Code {
    pub fn encode(text: &str, correction: Correction) -> Result<Code, String> {
        let code = qrcode::QrCode::with_error_correction_level(text, correction.level())
            .map_err(|e| format!("cannot encode {text:?} as a QR code: {e}"))?;
        let width = code.width();
        let modules = code
            .to_colors()
            .into_iter()
            .map(|c| c == qrcode::Color::Dark)
            .collect();
        Ok(Code { width, modules })
    }

    /// Modules per side including the quiet zone.
    pub fn side(&self, quiet_zone: u32) -> u32 {
        self.width as u32 + 2 * quiet_zone
    }
}

/// The dark modules as one SVG path in module units, offset by the quiet zone.
pub fn svg_modules(code: &Code, quiet_zone: u32) -> String {
    let mut d = String::with_capacity(code.modules.len() * 4);
    for y in 0..code.width {
        let mut x = 0;
        while x < code.width {
            if code.modules[y * code.width + x] {
                // One horizontal run per path segment keeps the file small.
                let start = x;
                while x < code.width && code.modules[y * code.width + x] {
                    x += 1;
                }
                let _ = write!(
                    d,
                    "M{} {}h{}v1h-{}z",
                    start as u32 + quiet_zone,
                    y as u32 + quiet_zone,
                    x - start,
                    x - start
                );
            } else {
                x += 1;
            }
        }
    }
    d
}

/// A stand-alone SVG of one code, `size_px` wide.
pub fn svg(code: &Code, style: &QrStyle) -> String {
    let side = code.side(style.quiet_zone);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{px}\" \
         height=\"{px}\" viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\n\
         <rect width=\"{side}\" height=\"{side}\" fill=\"{light}\"/>\n\
         <path fill=\"{dark}\" d=\"{d}\"/>\n</svg>\n",
        px = style.size_px,
        light = style.light.hex(),
        dark = style.dark.hex(),
        d = svg_modules(code, style.quiet_zone),
    )
}

/// Smallest PNG that still gives every module two pixels.
pub fn min_size_px(code: &Code, style: &QrStyle) -> u32 {
    code.side(style.quiet_zone) * 2
}

/// Rasterise an SVG document to RGBA pixels of `width` × `height`.
pub fn rasterise(svg: &str, width: u32, height: u32) -> Result<resvg::tiny_skia::Pixmap, String> {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .map_err(|e| format!("cannot read the generated SVG: {e}"))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(width, height)
        .ok_or_else(|| format!("cannot allocate a {width}×{height} image"))?;
    let size = tree.size();
    let transform = resvg::tiny_skia::Transform::from_scale(
        width as f32 / size.width(),
        height as f32 / size.height(),
    );
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    Ok(pixmap)
}

/// The code's PNG, `size_px` square.
pub fn png(code: &Code, style: &QrStyle) -> Result<Vec<u8>, String> {
    let min = min_size_px(code, style);
    if style.size_px < min {
        return Err(format!(
            "--qr-size {} px is too small for a code of {} modules (with its quiet zone); \
             use at least {min}",
            style.size_px,
            code.side(style.quiet_zone)
        ));
    }
    let pixmap = rasterise(&svg(code, style), style.size_px, style.size_px)?;
    pixmap
        .encode_png()
        .map_err(|e| format!("cannot encode the PNG: {e}"))
}

/// Every QR code found in a PNG, decoded (an unreadable grid is an `Err` entry).
pub fn decode_png(png: &[u8]) -> Result<Vec<Result<String, String>>, String> {
    let pixmap = resvg::tiny_skia::Pixmap::decode_png(png)
        .map_err(|e| format!("cannot read the PNG back: {e}"))?;
    Ok(decode_pixmap(&pixmap))
}

/// Every QR code in a rendered image. Transparent pixels count as white (paper).
pub fn decode_pixmap(pixmap: &resvg::tiny_skia::Pixmap) -> Vec<Result<String, String>> {
    let (w, h) = (pixmap.width() as usize, pixmap.height() as usize);
    let data = pixmap.data();
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let i = (y * w + x) * 4;
        // Premultiplied RGBA over white.
        let (r, g, b, a) = (data[i], data[i + 1], data[i + 2], data[i + 3]);
        let white = 255 - u32::from(a);
        let lum = (299 * (u32::from(r) + white)
            + 587 * (u32::from(g) + white)
            + 114 * (u32::from(b) + white))
            / 1000;
        lum.min(255) as u8
    });
    img.detect_grids()
        .into_iter()
        .map(|grid| {
            grid.decode()
                .map(|(_, text)| text)
                .map_err(|e| format!("{e:?}"))
        })
        .collect()
}

/// Check that a PNG holds exactly one code and that it reads back as `expected`.
pub fn verify_png(png: &[u8], expected: &str) -> Result<(), String> {
    let found = decode_png(png)?;
    match found.as_slice() {
        [Ok(text)] if text == expected => Ok(()),
        [Ok(text)] => Err(format!("the code reads back as {text:?}, not {expected:?}")),
        [Err(e)] => Err(format!("the code cannot be read back: {e}")),
        [] => Err("no code could be found in the rendered image".into()),
        more => Err(format!("{} codes found in one image", more.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_url_adds_the_marker_once() {
        assert_eq!(
            scan_url("https://go.acme.example/spring").unwrap(),
            "https://go.acme.example/spring?nr=qr"
        );
        assert_eq!(
            scan_url("https://go.acme.example/spring?nr=qr").unwrap(),
            "https://go.acme.example/spring?nr=qr"
        );
        assert_eq!(
            scan_url("https://go.acme.example/s?a=1").unwrap(),
            "https://go.acme.example/s?a=1&nr=qr"
        );
        assert!(scan_url("not a url").is_err());
    }

    #[test]
    fn png_decodes_back_to_its_url() {
        let url = "https://go.acme.example/acme-email-v1?nr=qr";
        for correction in [Correction::L, Correction::M, Correction::H] {
            let style = QrStyle {
                size_px: 300,
                correction,
                ..QrStyle::default()
            };
            let code = Code::encode(url, correction).unwrap();
            let png = png(&code, &style).unwrap();
            verify_png(&png, url).unwrap();
            assert!(verify_png(&png, "https://other.example/").is_err());
        }
    }

    #[test]
    fn low_contrast_inverted_and_tiny_codes_are_refused() {
        let grey = QrStyle {
            dark: Rgb::parse("#999999").unwrap(),
            ..QrStyle::default()
        };
        assert!(grey.check().unwrap_err().contains("contrast"));
        let inverted = QrStyle {
            dark: Rgb::WHITE,
            light: Rgb::BLACK,
            ..QrStyle::default()
        };
        assert!(inverted.check().unwrap_err().contains("inverted"));
        assert!(Rgb::parse("red").is_err());
        let code = Code::encode("https://go.example/x?nr=qr", Correction::M).unwrap();
        let tiny = QrStyle {
            size_px: 20,
            ..QrStyle::default()
        };
        assert!(png(&code, &tiny).unwrap_err().contains("too small"));
    }
}
