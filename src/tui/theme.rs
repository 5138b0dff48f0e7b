//! Colour themes from `themes/*.toml` (slots at the top, then a `[palette]` table): semantic slots (`status.failed`, `diff.added`, ...) with
//! a palette, `inherits`, and scoped fallback (`status.ok` -> `status` -> `ui.text`), so a theme
//! only names what it changes. Colours degrade to what the terminal can show: 256 or 16 colours
//! need no truecolor support.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use toml::de::{DeTable, DeValue};

use super::layered::Kind;
use crate::diag::{Checker, Diagnostic, suggest};

/// Every slot a theme may set.
pub const SLOTS: &[&str] = &[
    "ui.background",
    "ui.text",
    "ui.dim",
    "ui.border",
    "ui.border.focused",
    "ui.title",
    "ui.header",
    "ui.tab.active",
    "ui.footer",
    "ui.key",
    "ui.selection",
    "ui.popup",
    "ui.error",
    "status",
    "status.ok",
    "status.failed",
    "status.running",
    "status.retrying",
    "status.pending",
    "status.skipped",
    "status.cancelled",
    "status.interrupted",
    "chart.legacy",
    "chart.canary",
    "diff.added",
    "diff.removed",
    "diff.header",
    "alert",
];

/// The themes shipped in the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
    ("terminal", include_str!("../../themes/terminal.toml")),
];

/// How many colours the terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorDepth {
    TrueColor,
    Ansi256,
    Ansi16,
}

impl ColorDepth {
    /// From `COLORTERM` and `TERM`, the way most terminal programs decide.
    pub fn detect() -> ColorDepth {
        let colorterm = std::env::var("COLORTERM").unwrap_or_default();
        if colorterm.eq_ignore_ascii_case("truecolor") || colorterm.eq_ignore_ascii_case("24bit") {
            return ColorDepth::TrueColor;
        }
        if std::env::var("TERM").is_ok_and(|t| t.contains("256")) {
            ColorDepth::Ansi256
        } else {
            ColorDepth::Ansi16
        }
    }
}

/// A loaded theme: a style per slot, already degraded for the terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: BTreeMap<String, Style>,
}

impl Theme {
    /// The style of a slot, falling back to its parent scope, then `ui.text`.
    pub fn style(&self, slot: &str) -> Style {
        let mut key = slot;
        loop {
            if let Some(s) = self.styles.get(key) {
                return *s;
            }
            match key.rfind('.') {
                Some(i) => key = &key[..i],
                None => return self.styles.get("ui.text").copied().unwrap_or_default(),
            }
        }
    }

    /// Loads a theme by name; a file in `user_dir` wins over the built-in one.
    pub fn load(
        name: &str,
        user_dir: Option<&Path>,
        depth: ColorDepth,
    ) -> Result<Theme, Vec<Diagnostic>> {
        let raw = KIND.load(name, user_dir, &apply_file)?;
        let styles = raw
            .into_iter()
            .map(|(k, s)| (k, degrade_style(s, depth)))
            .collect();
        Ok(Theme {
            name: name.to_string(),
            styles,
        })
    }

    /// The monochrome theme, used when `NO_COLOR` is set.
    pub fn mono() -> Theme {
        Theme::load("mono", None, ColorDepth::Ansi16).unwrap_or(Theme {
            name: "mono".into(),
            styles: BTreeMap::new(),
        })
    }

    pub fn names(user_dir: Option<&Path>) -> Vec<String> {
        KIND.names(user_dir)
    }
}

const MODIFIERS: &[(&str, Modifier)] = &[
    ("bold", Modifier::BOLD),
    ("dim", Modifier::DIM),
    ("italic", Modifier::ITALIC),
    ("underlined", Modifier::UNDERLINED),
    ("reversed", Modifier::REVERSED),
    ("crossed_out", Modifier::CROSSED_OUT),
];

const NAMED: &[(&str, Color)] = &[
    ("reset", Color::Reset),
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("dark-gray", Color::DarkGray),
    ("light-red", Color::LightRed),
    ("light-green", Color::LightGreen),
    ("light-yellow", Color::LightYellow),
    ("light-blue", Color::LightBlue),
    ("light-magenta", Color::LightMagenta),
    ("light-cyan", Color::LightCyan),
    ("white", Color::White),
];

/// Themes as layered files.
const KIND: Kind = Kind {
    what: "theme",
    folder: "themes",
    builtin: BUILTIN,
};

/// The slots one theme file sets, laid over what it inherits.
fn apply_file(c: &mut Checker<'_>, root: &DeTable<'_>, styles: &mut BTreeMap<String, Style>) {
    let palette = palette(c, root);
    for (key, value) in root {
        let slot = key.get_ref().as_ref();
        if slot == "inherits" || slot == "palette" {
            continue;
        }
        if !SLOTS.contains(&slot) {
            let hint = suggest(slot, SLOTS)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            c.error(
                &key.span(),
                format!(
                    "unknown slot `{slot}` in the theme{hint}; valid slots: inherits, palette, {}",
                    SLOTS.join(", ")
                ),
            );
            continue;
        }
        if let Some(style) = style_value(c, slot, value, &palette) {
            styles.insert(slot.to_string(), style);
        }
    }
}

fn palette(c: &mut Checker<'_>, root: &DeTable<'_>) -> BTreeMap<String, Color> {
    let mut out = BTreeMap::new();
    if let Some((table, _)) = c.table(root, "palette", "the theme") {
        for (k, v) in table {
            if let Some(color) =
                color_value(c, &format!("palette.{}", k.get_ref()), v, &BTreeMap::new())
            {
                out.insert(k.get_ref().to_string(), color);
            }
        }
    }
    out
}

fn color_value(
    c: &mut Checker<'_>,
    what: &str,
    v: &toml::Spanned<DeValue<'_>>,
    palette: &BTreeMap<String, Color>,
) -> Option<Color> {
    match v.get_ref() {
        DeValue::String(s) => {
            if let Some(c) = palette.get(s.as_ref()) {
                return Some(*c);
            }
            if let Some((_, color)) = NAMED.iter().find(|(n, _)| *n == s.as_ref()) {
                return Some(*color);
            }
            if let Some(hex) = s.strip_prefix('#')
                && hex.len() == 6
                && let Ok(n) = u32::from_str_radix(hex, 16)
            {
                return Some(Color::Rgb((n >> 16) as u8, (n >> 8) as u8, n as u8));
            }
            let mut choices: Vec<&str> = palette.keys().map(String::as_str).collect();
            choices.extend(NAMED.iter().map(|(n, _)| *n));
            c.error(
                &v.span(),
                format!(
                    "`{s}` for `{what}` is not a colour; use \"#rrggbb\", a number 0-255, a palette name or one of: {}",
                    choices.join(", ")
                ),
            );
            None
        }
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n @ 0..=255) => Some(Color::Indexed(n as u8)),
            _ => {
                c.error(
                    &v.span(),
                    format!("colour number {i} for `{what}` must be from 0 to 255"),
                );
                None
            }
        },
        other => {
            c.error(
                &v.span(),
                format!(
                    "the colour for `{what}` must be a string or a number, found {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

fn style_value(
    c: &mut Checker<'_>,
    slot: &str,
    v: &toml::Spanned<DeValue<'_>>,
    palette: &BTreeMap<String, Color>,
) -> Option<Style> {
    match v.get_ref() {
        DeValue::Table(t) => {
            c.known_keys(t, &["fg", "bg", "modifiers"], &format!("`{slot}`"));
            let mut style = Style::default();
            for (k, val) in t {
                match k.get_ref().as_ref() {
                    "fg" => style.fg = color_value(c, &format!("{slot}.fg"), val, palette),
                    "bg" => style.bg = color_value(c, &format!("{slot}.bg"), val, palette),
                    "modifiers" => {
                        let Some((mods, _)) = c.str_list(t, "modifiers", &format!("`{slot}`"))
                        else {
                            continue;
                        };
                        for (m, span) in mods {
                            match MODIFIERS.iter().find(|(n, _)| *n == m) {
                                Some((_, modifier)) => style = style.add_modifier(*modifier),
                                None => c.error(
                                    &span,
                                    format!(
                                        "`{m}` in `{slot}.modifiers` is not a modifier; valid modifiers: {}",
                                        MODIFIERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                                    ),
                                ),
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(style)
        }
        _ => color_value(c, slot, v, palette).map(|color| Style::default().fg(color)),
    }
}

/// The 6x6x6 cube levels of the xterm 256-colour palette.
const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

/// Approximate RGB of the 16 ANSI colours (xterm defaults).
const ANSI16: [(Color, (u8, u8, u8)); 16] = [
    (Color::Black, (0, 0, 0)),
    (Color::Red, (205, 0, 0)),
    (Color::Green, (0, 205, 0)),
    (Color::Yellow, (205, 205, 0)),
    (Color::Blue, (0, 0, 238)),
    (Color::Magenta, (205, 0, 205)),
    (Color::Cyan, (0, 205, 205)),
    (Color::Gray, (229, 229, 229)),
    (Color::DarkGray, (127, 127, 127)),
    (Color::LightRed, (255, 0, 0)),
    (Color::LightGreen, (0, 255, 0)),
    (Color::LightYellow, (255, 255, 0)),
    (Color::LightBlue, (92, 92, 255)),
    (Color::LightMagenta, (255, 0, 255)),
    (Color::LightCyan, (0, 255, 255)),
    (Color::White, (255, 255, 255)),
];

fn dist(a: (u8, u8, u8), b: (u8, u8, u8)) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs();
    d(a.0, b.0).pow(2) + d(a.1, b.1).pow(2) + d(a.2, b.2).pow(2)
}

fn indexed_rgb(i: u8) -> (u8, u8, u8) {
    match i {
        0..=15 => ANSI16[i as usize].1,
        16..=231 => {
            let n = i - 16;
            (
                CUBE[(n / 36) as usize],
                CUBE[((n / 6) % 6) as usize],
                CUBE[(n % 6) as usize],
            )
        }
        _ => {
            let v = 8 + (i - 232) * 10;
            (v, v, v)
        }
    }
}

fn nearest_256(rgb: (u8, u8, u8)) -> u8 {
    (16..=255u8)
        .min_by_key(|i| dist(indexed_rgb(*i), rgb))
        .unwrap_or(16)
}

fn nearest_16(rgb: (u8, u8, u8)) -> Color {
    ANSI16
        .iter()
        .min_by_key(|(_, c)| dist(*c, rgb))
        .map_or(Color::Reset, |(c, _)| *c)
}

/// A colour the terminal can show.
pub fn degrade(color: Color, depth: ColorDepth) -> Color {
    match (color, depth) {
        (Color::Rgb(r, g, b), ColorDepth::Ansi256) => Color::Indexed(nearest_256((r, g, b))),
        (Color::Rgb(r, g, b), ColorDepth::Ansi16) => nearest_16((r, g, b)),
        (Color::Indexed(i), ColorDepth::Ansi16) => nearest_16(indexed_rgb(i)),
        (c, _) => c,
    }
}

fn degrade_style(s: Style, depth: ColorDepth) -> Style {
    Style {
        fg: s.fg.map(|c| degrade(c, depth)),
        bg: s.bg.map(|c| degrade(c, depth)),
        ..s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_loads_at_every_depth() {
        for (name, _) in BUILTIN {
            for depth in [
                ColorDepth::TrueColor,
                ColorDepth::Ansi256,
                ColorDepth::Ansi16,
            ] {
                Theme::load(name, None, depth).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
        }
    }

    #[test]
    fn terminal_and_mono_use_no_fixed_colours() {
        let term = Theme::load("terminal", None, ColorDepth::TrueColor).unwrap();
        for slot in SLOTS {
            let s = term.style(slot);
            for c in [s.fg, s.bg].into_iter().flatten() {
                assert!(
                    !matches!(c, Color::Rgb(..) | Color::Indexed(_)),
                    "{slot}: {c:?}"
                );
            }
        }
        let mono = Theme::mono();
        for slot in SLOTS {
            let s = mono.style(slot);
            assert!(
                s.fg.is_none_or(|c| c == Color::Reset) && s.bg.is_none_or(|c| c == Color::Reset),
                "{slot}"
            );
        }
    }

    #[test]
    fn scoped_fallback_and_degrading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.toml"),
            "inherits = \"mono\"\n\"status\" = \"hot\"\n\"status.ok\" = { fg = \"green\", modifiers = [\"bold\"] }\n[palette]\nhot = \"#ff0000\"\n",
        )
        .unwrap();
        let t = Theme::load("t", Some(dir.path()), ColorDepth::TrueColor).unwrap();
        assert_eq!(
            t.style("status.ok"),
            Style::default()
                .fg(Color::Green)
                .add_modifier(Modifier::BOLD)
        );
        assert_eq!(
            t.style("status.retrying").fg,
            Some(Color::Rgb(255, 0, 0)),
            "falls back to `status`"
        );
        let t16 = Theme::load("t", Some(dir.path()), ColorDepth::Ansi16).unwrap();
        assert_eq!(t16.style("status.retrying").fg, Some(Color::LightRed));
        assert_eq!(
            degrade(Color::Rgb(0, 0, 0), ColorDepth::Ansi256),
            Color::Indexed(16)
        );
    }

    #[test]
    fn bad_files_name_the_line_and_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "\"status.okay\" = \"red\"\n\"ui.text\" = \"purple\"\n",
        )
        .unwrap();
        let errs: Vec<String> = Theme::load("bad", Some(dir.path()), ColorDepth::TrueColor)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].contains(":1:1: unknown slot `status.okay` in the theme (did you mean `status.ok`?); valid slots:"), "{}", errs[0]);
        assert!(
            errs[1].contains(":2:13: `purple` for `ui.text` is not a colour"),
            "{}",
            errs[1]
        );
        let missing = Theme::load("neon", None, ColorDepth::TrueColor).unwrap_err()[0].to_string();
        assert_eq!(
            missing,
            "theme: there is no theme `neon`; valid themes: dark, high-contrast, light, mono, terminal"
        );
    }
}
