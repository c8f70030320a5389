//! `--color auto|always|never`, honouring the conventions other CLIs follow
//! (<https://no-color.org>, <https://bixense.com/clicolors/>):
//! - `--color always` / `--color never` win;
//! - with `auto` (the default): `NO_COLOR` set and non-empty → no color; else
//!   `CLICOLOR_FORCE` set and not `0` → color; else color only when stderr is a terminal.
//!
//! Color is only ever on stderr (messages for people): the `error` / `warning` words and
//! `help:` lines. Data on stdout (plans, exports, JSON) is never colored.

use std::ffi::OsString;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Color when stderr is a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    #[default]
    Auto,
    Always,
    Never,
}

/// Whether to color, from the flag, the environment and whether stderr is a terminal.
pub fn enabled(
    choice: ColorChoice,
    env: impl Fn(&str) -> Option<OsString>,
    stderr_is_tty: bool,
) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set("NO_COLOR") => false,
        ColorChoice::Auto if set("CLICOLOR_FORCE") && env("CLICOLOR_FORCE") != Some("0".into()) => {
            true
        }
        ColorChoice::Auto => stderr_is_tty,
    }
}

/// The `--color` value from the raw arguments, before clap parses them (clap's own help and
/// usage errors must follow it too). Anything unreadable is `auto`; clap then reports it.
pub fn prescan(args: &[OsString]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        let value = if a == "--color" {
            it.next().map(|v| v.to_string_lossy().into_owned())
        } else {
            a.strip_prefix("--color=").map(str::to_string)
        };
        if let Some(v) = value {
            choice = match v.as_str() {
                "always" => ColorChoice::Always,
                "never" => ColorChoice::Never,
                _ => ColorChoice::Auto,
            };
        }
    }
    choice
}

/// clap's setting for the same decision (help, usage errors).
pub fn for_clap(on: bool) -> clap::ColorChoice {
    if on {
        clap::ColorChoice::Always
    } else {
        clap::ColorChoice::Never
    }
}

const RED_BOLD: &str = "\x1b[1;31m";
const YELLOW_BOLD: &str = "\x1b[1;33m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Color the leading `error` / `warning` word and `help:` markers of a message.
pub fn paint(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len() + 32);
    for (i, line) in msg.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if let Some(rest) = line.strip_prefix("error:") {
            out.push_str(&format!("{RED_BOLD}error{RESET}:{rest}"));
        } else if let Some(rest) = line.strip_prefix("warning:") {
            out.push_str(&format!("{YELLOW_BOLD}warning{RESET}:{rest}"));
        } else if let Some(rest) = line.strip_prefix("   = help:") {
            out.push_str(&format!("   = {CYAN}help{RESET}:{rest}"));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(*v))
        }
    }

    #[test]
    fn flag_then_no_color_then_clicolor_force_then_tty() {
        use ColorChoice::*;
        assert!(enabled(Always, env(&[("NO_COLOR", "1")]), false));
        assert!(!enabled(Never, env(&[("CLICOLOR_FORCE", "1")]), true));
        assert!(!enabled(Auto, env(&[("NO_COLOR", "1")]), true));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(enabled(Auto, env(&[("NO_COLOR", "")]), true));
        assert!(!enabled(
            Auto,
            env(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]),
            true
        ));
        assert!(enabled(Auto, env(&[("CLICOLOR_FORCE", "1")]), false));
        assert!(!enabled(Auto, env(&[("CLICOLOR_FORCE", "0")]), false));
        assert!(enabled(Auto, env(&[]), true));
        assert!(!enabled(Auto, env(&[]), false));
    }

    #[test]
    fn prescan_reads_both_spellings_and_stops_at_double_dash() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            prescan(&args(&["x", "--color", "always", "validate"])),
            ColorChoice::Always
        );
        assert_eq!(
            prescan(&args(&["x", "build", "--color=never"])),
            ColorChoice::Never
        );
        assert_eq!(
            prescan(&args(&["x", "--", "--color=never"])),
            ColorChoice::Auto
        );
        assert_eq!(prescan(&args(&["x", "--color"])), ColorChoice::Auto);
    }

    #[test]
    fn paint_colors_only_the_markers() {
        let p = paint("error: bad\n  --> a.toml:1:2\n   = help: fix it\nwarning: w");
        assert!(p.starts_with("\x1b[1;31merror\x1b[0m: bad\n  --> a.toml:1:2\n"));
        assert!(p.contains("   = \x1b[36mhelp\x1b[0m: fix it"));
        assert!(p.ends_with("\x1b[1;33mwarning\x1b[0m: w"));
        assert_eq!(paint("plain"), "plain");
    }
}
