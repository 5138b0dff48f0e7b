//! A drawn screen (a ratatui [`Buffer`]) as a file for a report: SVG, PNG, HTML, ANSI or plain
//! text. Every format comes from the same cells, so they show the same thing; SVG and PNG put
//! each cell on an exact grid and draw box-drawing lines, block elements and braille dots as
//! shapes, so borders join and charts read the same whatever font the reader has.

use std::fmt::Write as _;

use ratatui::buffer::{Buffer, Cell};
use ratatui::style::{Color, Modifier};

use super::theme::Theme;

/// The output formats, as `--format` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
    Html,
    Ansi,
    Txt,
}

impl Format {
    pub const NAMES: &'static str = "svg, png, html, ansi, txt";

    /// A format by name, or a sentence with the valid ones.
    pub fn parse(s: &str) -> Result<Format, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "svg" => Format::Svg,
            "png" => Format::Png,
            "html" => Format::Html,
            "ansi" => Format::Ansi,
            "txt" | "text" => Format::Txt,
            other => {
                return Err(format!(
                    "unknown format `{other}`; valid formats: {}",
                    Format::NAMES
                ));
            }
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Png => "png",
            Format::Html => "html",
            Format::Ansi => "ans",
            Format::Txt => "txt",
        }
    }
}

/// The cell grid in SVG user units (and PNG pixels at scale 1): DejaVu Sans Mono's advance at
/// 14 px, and a row tall enough for its ascent and descent.
pub const CELL_W: f64 = 8.43;
pub const CELL_H: f64 = 17.0;
const FONT_SIZE: f64 = 14.0;
/// Where a row's text sits: its baseline, down from the row's top.
pub const BASELINE_Y: f64 = 13.0;
const FAMILY: &str = "DejaVu Sans Mono, DejaVu Sans, monospace";

/// A screen to write: its cells, the theme they were drawn in (for the page colours), and a
/// title naming the pane and the time.
pub struct Page<'a> {
    pub buffer: &'a Buffer,
    pub theme: &'a Theme,
    pub title: String,
}

type Rgb = (u8, u8, u8);

/// The page's own colours where a cell leaves them to the terminal (`Reset`): the theme's
/// background when it has one, else light themes on white and the rest on a dark page.
fn page_colours(theme: &Theme) -> (Rgb, Rgb) {
    let bg = theme.style("ui.background");
    let light = theme.name == "light" || theme.name == "mono";
    let (dfg, dbg) = if light {
        ((0x1f, 0x23, 0x28), (0xff, 0xff, 0xff))
    } else {
        ((0xe6, 0xed, 0xf3), (0x0d, 0x11, 0x17))
    };
    (
        bg.fg.map_or(dfg, |c| rgb(c, dfg)),
        bg.bg.map_or(dbg, |c| rgb(c, dbg)),
    )
}

/// A colour as RGB: 16 colours as xterm draws them, the 256-colour cube and greys.
fn rgb(c: Color, default: Rgb) -> Rgb {
    const BASE: [Rgb; 16] = [
        (0, 0, 0),
        (205, 49, 49),
        (13, 188, 121),
        (229, 229, 16),
        (36, 114, 200),
        (188, 63, 188),
        (17, 168, 205),
        (229, 229, 229),
        (102, 102, 102),
        (241, 76, 76),
        (35, 209, 139),
        (245, 245, 67),
        (59, 142, 234),
        (214, 112, 214),
        (41, 184, 219),
        (255, 255, 255),
    ];
    let indexed = |i: u8| -> Rgb {
        match i {
            0..=15 => BASE[usize::from(i)],
            16..=231 => {
                let i = i - 16;
                let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
                (level(i / 36), level((i / 6) % 6), level(i % 6))
            }
            _ => {
                let g = 8 + (i - 232) * 10;
                (g, g, g)
            }
        }
    };
    match c {
        Color::Reset => default,
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Indexed(i) => indexed(i),
        Color::Black => BASE[0],
        Color::Red => BASE[1],
        Color::Green => BASE[2],
        Color::Yellow => BASE[3],
        Color::Blue => BASE[4],
        Color::Magenta => BASE[5],
        Color::Cyan => BASE[6],
        Color::Gray => BASE[7],
        Color::DarkGray => BASE[8],
        Color::LightRed => BASE[9],
        Color::LightGreen => BASE[10],
        Color::LightYellow => BASE[11],
        Color::LightBlue => BASE[12],
        Color::LightMagenta => BASE[13],
        Color::LightCyan => BASE[14],
        Color::White => BASE[15],
    }
}

fn hex((r, g, b): Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// What a cell looks like: resolved colours (reversed already swapped) and modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Look {
    fg: Rgb,
    bg: Rgb,
    bold: bool,
    italic: bool,
    underline: bool,
}

fn look(cell: &Cell, (dfg, dbg): (Rgb, Rgb)) -> Look {
    let (mut fg, mut bg) = (rgb(cell.fg, dfg), rgb(cell.bg, dbg));
    if cell.modifier.contains(Modifier::REVERSED) {
        std::mem::swap(&mut fg, &mut bg);
    }
    Look {
        fg,
        bg,
        bold: cell.modifier.contains(Modifier::BOLD),
        italic: cell.modifier.contains(Modifier::ITALIC),
        underline: cell.modifier.contains(Modifier::UNDERLINED),
    }
}

/// The rows of the buffer as (column, symbol, look), wide characters once (the cells they
/// cover after the first are left out).
fn rows<'a>(page: &Page<'a>) -> Vec<Vec<(u16, &'a str, Look)>> {
    let colours = page_colours(page.theme);
    cells(page)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(x, sym, cell)| (x, sym, look(cell, colours)))
                .collect()
        })
        .collect()
}

/// The rows of the buffer as (column, symbol, cell), each wide character once (the cells it
/// covers after the first are left out), a blank symbol as a space.
fn cells<'a>(page: &Page<'a>) -> Vec<Vec<(u16, &'a str, &'a Cell)>> {
    let area = page.buffer.area;
    (0..area.height)
        .map(|y| {
            let mut out = Vec::with_capacity(usize::from(area.width));
            let mut skip = 0usize;
            for x in 0..area.width {
                let cell = &page.buffer[(area.x + x, area.y + y)];
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let sym = if cell.symbol().is_empty() {
                    " "
                } else {
                    cell.symbol()
                };
                skip = unicode_cells(sym).saturating_sub(1);
                out.push((x, sym, cell));
            }
            out
        })
        .collect()
}

/// How many cells a symbol takes (ratatui leaves the cells after a wide one blank).
fn unicode_cells(s: &str) -> usize {
    use ratatui::text::Span;
    Span::raw(s).width().max(1)
}

/// Writes `page` in `format`; `scale` multiplies PNG pixels (for high-DPI screens).
pub fn render(format: Format, page: &Page<'_>, scale: f32) -> Result<Vec<u8>, String> {
    Ok(match format {
        Format::Txt => txt(page).into_bytes(),
        Format::Ansi => ansi(page).into_bytes(),
        Format::Html => html(page).into_bytes(),
        Format::Svg => svg(page).into_bytes(),
        Format::Png => png(page, scale)?,
    })
}

/// Plain text: one line per row, trailing spaces trimmed.
pub fn txt(page: &Page<'_>) -> String {
    let mut out = String::new();
    for row in rows(page) {
        let line: String = row.iter().map(|(_, s, _)| *s).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A colour as an SGR parameter: the 16 colours and 256-colour indices as themselves (so the
/// `terminal` theme stays in the reader's palette), others as 24-bit; `None` leaves the
/// terminal's own colour.
fn sgr(c: Color, fg: bool) -> Option<String> {
    let (base, bright, ext) = if fg { (30, 90, 38) } else { (40, 100, 48) };
    Some(match c {
        Color::Reset => return None,
        Color::Black => format!("{base}"),
        Color::Red => format!("{}", base + 1),
        Color::Green => format!("{}", base + 2),
        Color::Yellow => format!("{}", base + 3),
        Color::Blue => format!("{}", base + 4),
        Color::Magenta => format!("{}", base + 5),
        Color::Cyan => format!("{}", base + 6),
        Color::Gray => format!("{}", base + 7),
        Color::DarkGray => format!("{bright}"),
        Color::LightRed => format!("{}", bright + 1),
        Color::LightGreen => format!("{}", bright + 2),
        Color::LightYellow => format!("{}", bright + 3),
        Color::LightBlue => format!("{}", bright + 4),
        Color::LightMagenta => format!("{}", bright + 5),
        Color::LightCyan => format!("{}", bright + 6),
        Color::White => format!("{}", bright + 7),
        Color::Indexed(i) => format!("{ext};5;{i}"),
        Color::Rgb(r, g, b) => format!("{ext};2;{r};{g};{b}"),
    })
}

/// Escape codes for the cells' own colours and styles, one reset at the end of each line, for
/// `cat` in another terminal.
pub fn ansi(page: &Page<'_>) -> String {
    let mut out = String::new();
    for row in cells(page) {
        let mut last = None;
        for (_, sym, cell) in row {
            let key = (cell.fg, cell.bg, cell.modifier);
            if last != Some(key) {
                out.push_str("\x1b[0");
                for code in [sgr(cell.fg, true), sgr(cell.bg, false)]
                    .into_iter()
                    .flatten()
                {
                    out.push(';');
                    out.push_str(&code);
                }
                for (m, code) in [
                    (Modifier::BOLD, ";1"),
                    (Modifier::DIM, ";2"),
                    (Modifier::ITALIC, ";3"),
                    (Modifier::UNDERLINED, ";4"),
                    (Modifier::REVERSED, ";7"),
                ] {
                    if cell.modifier.contains(m) {
                        out.push_str(code);
                    }
                }
                out.push('m');
                last = Some(key);
            }
            out.push_str(sym);
        }
        out.push_str("\x1b[0m\n");
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn css(l: &Look, with_bg: bool) -> String {
    let mut s = format!("color:{}", hex(l.fg));
    if with_bg {
        let _ = write!(s, ";background:{}", hex(l.bg));
    }
    if l.bold {
        s.push_str(";font-weight:bold");
    }
    if l.italic {
        s.push_str(";font-style:italic");
    }
    if l.underline {
        s.push_str(";text-decoration:underline");
    }
    s
}

/// A standalone page: inline styles only, no scripts, nothing fetched from elsewhere.
pub fn html(page: &Page<'_>) -> String {
    let (fg, bg) = page_colours(page.theme);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n<body style=\"margin:0;background:{}\">\n<pre style=\"margin:0;padding:8px;font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:14px;line-height:{CELL_H}px;color:{};background:{}\">",
        xml_escape(&page.title),
        hex(bg),
        hex(fg),
        hex(bg)
    );
    for row in rows(page) {
        let mut i = 0;
        while i < row.len() {
            let l = row[i].2;
            let mut text = String::new();
            while i < row.len() && row[i].2 == l {
                text.push_str(row[i].1);
                i += 1;
            }
            let _ = write!(
                out,
                "<span style=\"{}\">{}</span>",
                css(&l, l.bg != bg),
                xml_escape(&text)
            );
        }
        out.push('\n');
    }
    out.push_str("</pre>\n</body>\n</html>\n");
    out
}

/// Lines leaving a box-drawing character's cell: (up, down, left, right), 0 none, 1 light,
/// 2 heavy, 3 double.
fn box_lines(c: char) -> Option<[u8; 4]> {
    Some(match c {
        '─' | '╌' | '┄' | '┈' => [0, 0, 1, 1],
        '│' | '╎' | '┆' | '┊' => [1, 1, 0, 0],
        '━' => [0, 0, 2, 2],
        '┃' => [2, 2, 0, 0],
        '┌' | '╭' => [0, 1, 0, 1],
        '┐' | '╮' => [0, 1, 1, 0],
        '└' | '╰' => [1, 0, 0, 1],
        '┘' | '╯' => [1, 0, 1, 0],
        '├' => [1, 1, 0, 1],
        '┤' => [1, 1, 1, 0],
        '┬' => [0, 1, 1, 1],
        '┴' => [1, 0, 1, 1],
        '┼' => [1, 1, 1, 1],
        '┏' => [0, 2, 0, 2],
        '┓' => [0, 2, 2, 0],
        '┗' => [2, 0, 0, 2],
        '┛' => [2, 0, 2, 0],
        '═' => [0, 0, 3, 3],
        '║' => [3, 3, 0, 0],
        '╔' => [0, 3, 0, 3],
        '╗' => [0, 3, 3, 0],
        '╚' => [3, 0, 0, 3],
        '╝' => [3, 0, 3, 0],
        '╴' => [0, 0, 1, 0],
        '╶' => [0, 0, 0, 1],
        '╵' => [1, 0, 0, 0],
        '╷' => [0, 1, 0, 0],
        _ => return None,
    })
}

/// Rectangles in cell fractions: x, y, width, height.
type Rects = Vec<(f64, f64, f64, f64)>;

/// A block element as rectangles and an opacity.
fn block_rects(c: char) -> Option<(Rects, f64)> {
    let n = u32::from(c);
    Some(match c {
        '█' => (vec![(0.0, 0.0, 1.0, 1.0)], 1.0),
        '▀' => (vec![(0.0, 0.0, 1.0, 0.5)], 1.0),
        '▔' => (vec![(0.0, 0.0, 1.0, 0.125)], 1.0),
        '▐' => (vec![(0.5, 0.0, 0.5, 1.0)], 1.0),
        '▕' => (vec![(0.875, 0.0, 0.125, 1.0)], 1.0),
        '░' => (vec![(0.0, 0.0, 1.0, 1.0)], 0.25),
        '▒' => (vec![(0.0, 0.0, 1.0, 1.0)], 0.5),
        '▓' => (vec![(0.0, 0.0, 1.0, 1.0)], 0.75),
        // ▁ .. ▇: lower eighths.
        _ if (0x2581..=0x2587).contains(&n) => {
            let h = f64::from(n - 0x2580) / 8.0;
            (vec![(0.0, 1.0 - h, 1.0, h)], 1.0)
        }
        // ▉ .. ▏: left eighths, widest first.
        _ if (0x2589..=0x258F).contains(&n) => {
            let w = f64::from(8 - (n - 0x2588)) / 8.0;
            (vec![(0.0, 0.0, w, 1.0)], 1.0)
        }
        '▄' => (vec![(0.0, 0.5, 1.0, 0.5)], 1.0),
        '▌' => (vec![(0.0, 0.0, 0.5, 1.0)], 1.0),
        _ => return None,
    })
}

/// Braille dots by bit: 1-3 and 7 down the left column, 4-6 and 8 down the right.
const DOTS: [(f64, f64); 8] = [
    (0.0, 0.0),
    (0.0, 1.0),
    (0.0, 2.0),
    (1.0, 0.0),
    (1.0, 1.0),
    (1.0, 2.0),
    (0.0, 3.0),
    (1.0, 3.0),
];

/// A shape of a cell in user units: a rectangle (with an opacity) or a dot.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prim {
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        opacity: f64,
    },
    Dot {
        cx: f64,
        cy: f64,
        r: f64,
    },
}

/// A line from `from` to `to` (one of them the cell's centre) as a rectangle `t` thick that
/// covers the centre but stops at the cell's edge.
fn bar(from: (f64, f64), to: (f64, f64), t: f64) -> Prim {
    let horizontal = (from.1 - to.1).abs() < f64::EPSILON;
    let (x, y, w, h) = if horizontal {
        let (l, r) = (from.0.min(to.0), from.0.max(to.0));
        let (l, r) = if from.0 < to.0 {
            (l - t / 2.0, r)
        } else {
            (l, r + t / 2.0)
        };
        (l, from.1 - t / 2.0, r - l, t)
    } else {
        let (top, bot) = (from.1.min(to.1), from.1.max(to.1));
        let (top, bot) = if from.1 < to.1 {
            (top - t / 2.0, bot)
        } else {
            (top, bot + t / 2.0)
        };
        (from.0 - t / 2.0, top, t, bot - top)
    };
    Prim::Rect {
        x,
        y,
        w,
        h,
        opacity: 1.0,
    }
}

/// Whether the drawing makes `c` of shapes instead of a glyph.
pub fn drawn_as_shape(c: char) -> bool {
    box_lines(c).is_some() || block_rects(c).is_some() || (0x2800..=0x28FF).contains(&u32::from(c))
}

/// The shapes of a cell at (x, y), or none for a glyph. Box-drawing lines are rectangles from
/// the centre to the edge, so neighbouring cells meet without seams or overlapping caps.
fn prims(c: char, (x, y): (f64, f64)) -> Vec<Prim> {
    let mut out = Vec::new();
    if let Some(lines) = box_lines(c) {
        let (cx, cy) = (x + CELL_W / 2.0, y + CELL_H / 2.0);
        let ends = [(cx, y), (cx, y + CELL_H), (x, cy), (x + CELL_W, cy)];
        for (i, kind) in lines.iter().enumerate() {
            let (ex, ey) = ends[i];
            match kind {
                0 => {}
                3 => {
                    // Double: two thin lines either side of the centre.
                    let (dx, dy) = if i < 2 { (1.5, 0.0) } else { (0.0, 1.5) };
                    for sgn in [-1.0, 1.0] {
                        out.push(bar(
                            (cx + sgn * dx, cy + sgn * dy),
                            (ex + sgn * dx, ey + sgn * dy),
                            1.0,
                        ));
                    }
                }
                k => out.push(bar((cx, cy), (ex, ey), if *k == 2 { 2.4 } else { 1.2 })),
            }
        }
    } else if let Some((rects, opacity)) = block_rects(c) {
        for (rx, ry, rw, rh) in rects {
            out.push(Prim::Rect {
                x: x + rx * CELL_W,
                y: y + ry * CELL_H,
                w: rw * CELL_W,
                h: rh * CELL_H,
                opacity,
            });
        }
    } else if (0x2800..=0x28FF).contains(&u32::from(c)) {
        let bits = u32::from(c) - 0x2800;
        for (i, (dx, dy)) in DOTS.iter().enumerate() {
            if bits & (1 << i) != 0 {
                out.push(Prim::Dot {
                    cx: x + (dx + 0.5) * CELL_W / 2.0,
                    cy: y + (dy + 0.5) * CELL_H / 4.0,
                    r: 1.2,
                });
            }
        }
    }
    out
}

/// `v` with two decimals, written without the float formatter (a screen has thousands).
fn num(out: &mut String, v: f64) {
    let hundredths = (v * 100.0).round() as i64;
    let (sign, abs) = if hundredths < 0 {
        ("-", -hundredths)
    } else {
        ("", hundredths)
    };
    let _ = write!(out, "{sign}{}.{:02}", abs / 100, abs % 100);
}

/// A cell's shapes as SVG, tagged with the cell and its character.
fn shape(out: &mut String, c: char, at: (f64, f64), colour: &str, cell: (u16, u16)) {
    let dots = (0x2800..=0x28FF).contains(&u32::from(c));
    let _ = write!(
        out,
        "<g data-cell=\"{},{}\" data-ch=\"{}\" fill=\"{colour}\"{}>",
        cell.0,
        cell.1,
        xml_escape(&c.to_string()),
        if dots {
            " shape-rendering=\"geometricPrecision\""
        } else {
            ""
        }
    );
    for p in prims(c, at) {
        match p {
            Prim::Rect {
                x,
                y,
                w,
                h,
                opacity,
            } => {
                out.push_str("<rect x=\"");
                num(out, x);
                out.push_str("\" y=\"");
                num(out, y);
                out.push_str("\" width=\"");
                num(out, w);
                out.push_str("\" height=\"");
                num(out, h);
                if opacity < 1.0 {
                    out.push_str("\" fill-opacity=\"");
                    num(out, opacity);
                }
                out.push_str("\"/>");
            }
            Prim::Dot { cx, cy, r } => {
                out.push_str("<circle cx=\"");
                num(out, cx);
                out.push_str("\" cy=\"");
                num(out, cy);
                out.push_str("\" r=\"");
                num(out, r);
                out.push_str("\"/>");
            }
        }
    }
    out.push_str("</g>");
}

/// The cells on an exact grid: background rectangles for runs of one colour, a `<text>` for
/// each run of one style, and shapes for lines, blocks and braille.
pub fn svg(page: &Page<'_>) -> String {
    let area = page.buffer.area;
    let (w, h) = (
        f64::from(area.width) * CELL_W,
        f64::from(area.height) * CELL_H,
    );
    let (_, page_bg) = page_colours(page.theme);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.2}\" height=\"{h:.2}\" viewBox=\"0 0 {w:.2} {h:.2}\" font-family=\"{FAMILY}\" font-size=\"{FONT_SIZE}\" shape-rendering=\"crispEdges\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"{}\"/>\n",
        xml_escape(&page.title),
        hex(page_bg)
    );
    let rows = rows(page);
    for (y, row) in rows.iter().enumerate() {
        let top = y as f64 * CELL_H;
        let mut i = 0;
        while i < row.len() {
            let bg = row[i].2.bg;
            let start = row[i].0;
            while i < row.len() && row[i].2.bg == bg {
                i += 1;
            }
            let end = row.get(i).map_or(area.width, |c| c.0);
            if bg != page_bg {
                let _ = writeln!(
                    out,
                    "<rect x=\"{:.2}\" y=\"{top:.2}\" width=\"{:.2}\" height=\"{CELL_H}\" fill=\"{}\"/>",
                    f64::from(start) * CELL_W,
                    f64::from(end - start) * CELL_W,
                    hex(bg)
                );
            }
        }
    }
    for (y, row) in rows.iter().enumerate() {
        let top = y as f64 * CELL_H;
        let mut i = 0;
        while i < row.len() {
            let l = row[i].2;
            let start = row[i].0;
            let mut text = String::new();
            let mut cells = 0u16;
            while i < row.len() && row[i].2 == l {
                let (x, sym, _) = &row[i];
                let c = sym.chars().next().unwrap_or(' ');
                if sym.chars().count() == 1 && drawn_as_shape(c) {
                    shape(
                        &mut out,
                        c,
                        (f64::from(*x) * CELL_W, top),
                        &hex(l.fg),
                        (*x, y as u16),
                    );
                    text.push(' ');
                } else {
                    text.push_str(sym);
                }
                cells = cells.saturating_add(u16::try_from(unicode_cells(sym)).unwrap_or(1));
                i += 1;
            }
            if text.trim().is_empty() {
                continue;
            }
            let mut attrs = format!("fill=\"{}\"", hex(l.fg));
            if l.bold {
                attrs.push_str(" font-weight=\"bold\"");
            }
            if l.italic {
                attrs.push_str(" font-style=\"italic\"");
            }
            if l.underline {
                attrs.push_str(" text-decoration=\"underline\"");
            }
            let _ = writeln!(
                out,
                "<text x=\"{:.2}\" y=\"{:.2}\" textLength=\"{:.2}\" lengthAdjust=\"spacingAndGlyphs\" xml:space=\"preserve\" {attrs}>{}</text>",
                f64::from(start) * CELL_W,
                top + BASELINE_Y,
                f64::from(cells) * CELL_W,
                xml_escape(&text)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The bundled fonts: DejaVu Sans Mono for the grid, DejaVu Sans for what it lacks.
const MONO: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
const SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// A glyph outline as a tiny-skia path, y down, with its origin at the baseline.
struct Pen(resvg::tiny_skia::PathBuilder);

impl skrifa::outline::OutlinePen for Pen {
    fn move_to(&mut self, x: f32, y: f32) {
        self.0.move_to(x, -y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.0.line_to(x, -y);
    }
    fn quad_to(&mut self, cx0: f32, cy0: f32, x: f32, y: f32) {
        self.0.quad_to(cx0, -cy0, x, -y);
    }
    fn curve_to(&mut self, cx0: f32, cy0: f32, cx1: f32, cy1: f32, x: f32, y: f32) {
        self.0.cubic_to(cx0, -cy0, cx1, -cy1, x, -y);
    }
    fn close(&mut self) {
        self.0.close();
    }
}

/// The outline of `c` at `px` pixels from the first bundled font that has it.
fn outline(c: char, px: f32) -> Option<resvg::tiny_skia::Path> {
    use skrifa::MetadataProvider as _;
    use skrifa::instance::{LocationRef, Size};
    use skrifa::outline::DrawSettings;
    for data in [MONO, SANS] {
        let Ok(font) = skrifa::FontRef::new(data) else {
            continue;
        };
        let Some(gid) = font.charmap().map(c) else {
            continue;
        };
        let glyph = font.outline_glyphs().get(gid)?;
        let mut pen = Pen(resvg::tiny_skia::PathBuilder::new());
        glyph
            .draw(
                DrawSettings::unhinted(Size::new(px), LocationRef::default()),
                &mut pen,
            )
            .ok()?;
        return pen.0.finish();
    }
    None
}

fn paint(rgb: Rgb, opacity: f64) -> resvg::tiny_skia::Paint<'static> {
    let mut p = resvg::tiny_skia::Paint::default();
    let alpha = (opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
    p.set_color_rgba8(rgb.0, rgb.1, rgb.2, alpha);
    p.anti_alias = true;
    p
}

/// One glyph in `fg` on a transparent cell-sized pixmap, its baseline where the grid's is.
fn glyph_pixmap(
    c: char,
    fg: Rgb,
    bold: bool,
    s: f64,
    (gw, gh): (u32, u32),
) -> Option<resvg::tiny_skia::Pixmap> {
    use resvg::tiny_skia::{FillRule, Pixmap, Stroke, Transform};
    let path = outline(c, (FONT_SIZE * s) as f32)?;
    let mut g = Pixmap::new(gw, gh)?;
    let at = Transform::from_translate(0.0, (BASELINE_Y * s) as f32);
    g.fill_path(&path, &paint(fg, 1.0), FillRule::Winding, at, None);
    if bold {
        // The bundled face has no bold: a thin stroke thickens the glyph.
        let stroke = Stroke {
            width: (0.6 * s) as f32,
            ..Stroke::default()
        };
        g.stroke_path(&path, &paint(fg, 1.0), &stroke, at, None);
    }
    Some(g)
}

/// A cell's shapes, painted as the SVG draws them.
fn paint_prims(pm: &mut resvg::tiny_skia::Pixmap, prims: &[Prim], fg: Rgb, s: f64) {
    use resvg::tiny_skia::{FillRule, PathBuilder, Rect, Transform};
    for prim in prims {
        match *prim {
            Prim::Rect {
                x,
                y,
                w,
                h,
                opacity,
            } => {
                let mut p = paint(fg, opacity);
                p.anti_alias = false;
                if let Some(r) = Rect::from_xywh(
                    (x * s) as f32,
                    (y * s) as f32,
                    (w * s) as f32,
                    (h * s) as f32,
                ) {
                    pm.fill_rect(r, &p, Transform::identity(), None);
                }
            }
            Prim::Dot { cx, cy, r } => {
                if let Some(path) =
                    PathBuilder::from_circle((cx * s) as f32, (cy * s) as f32, (r * s) as f32)
                {
                    pm.fill_path(
                        &path,
                        &paint(fg, 1.0),
                        FillRule::Winding,
                        Transform::identity(),
                        None,
                    );
                }
            }
        }
    }
}

/// The cells painted straight from the same grid and shapes as the SVG, each distinct glyph
/// rasterised once with the bundled fonts and copied into its cells, never the machine's fonts.
pub fn png(page: &Page<'_>, scale: f32) -> Result<Vec<u8>, String> {
    use resvg::tiny_skia::{Pixmap, PixmapPaint, Rect, Transform};
    use std::collections::HashMap;
    let area = page.buffer.area;
    let s = f64::from(scale);
    let (w, h) = (
        (f64::from(area.width) * CELL_W * s).round(),
        (f64::from(area.height) * CELL_H * s).round(),
    );
    let mut pm = Pixmap::new(w as u32, h as u32).ok_or_else(|| {
        format!("--scale {scale} gives an image of no size; give a number from 0.25 to 4")
    })?;
    let (_, page_bg) = page_colours(page.theme);
    pm.fill(resvg::tiny_skia::Color::from_rgba8(
        page_bg.0, page_bg.1, page_bg.2, 255,
    ));
    let fill =
        |pm: &mut Pixmap, (x, y, rw, rh): (f64, f64, f64, f64), p: &resvg::tiny_skia::Paint<'_>| {
            if let Some(r) = Rect::from_xywh(
                (x * s) as f32,
                (y * s) as f32,
                (rw * s) as f32,
                (rh * s) as f32,
            ) {
                pm.fill_rect(r, p, Transform::identity(), None);
            }
        };
    let rows = rows(page);
    let mut glyphs: HashMap<(&str, Rgb, bool), Option<Pixmap>> = HashMap::new();
    let (gw, gh) = ((CELL_W * s * 2.0).ceil() as u32, (CELL_H * s).ceil() as u32);
    for (y, row) in rows.iter().enumerate() {
        let top = y as f64 * CELL_H;
        for (x, sym, l) in row {
            let left = f64::from(*x) * CELL_W;
            let cells = unicode_cells(sym) as f64;
            if l.bg != page_bg {
                let mut bgp = paint(l.bg, 1.0);
                bgp.anti_alias = false;
                fill(&mut pm, (left, top, CELL_W * cells, CELL_H), &bgp);
            }
            let c = sym.chars().next().unwrap_or(' ');
            if sym.chars().count() == 1 && drawn_as_shape(c) {
                paint_prims(&mut pm, &prims(c, (left, top)), l.fg, s);
            } else if !sym.trim().is_empty() {
                let key = (*sym, l.fg, l.bold);
                let glyph = glyphs
                    .entry(key)
                    .or_insert_with(|| glyph_pixmap(c, l.fg, l.bold, s, (gw, gh)));
                if let Some(g) = glyph {
                    pm.draw_pixmap(
                        (left * s).round() as i32,
                        (top * s).round() as i32,
                        g.as_ref(),
                        &PixmapPaint::default(),
                        Transform::identity(),
                        None,
                    );
                }
            }
            if l.underline {
                fill(
                    &mut pm,
                    (left, top + BASELINE_Y + 1.5, CELL_W * cells, 1.0),
                    &paint(l.fg, 1.0),
                );
            }
        }
    }
    pm.encode_png()
        .map_err(|e| format!("cannot encode the PNG: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every symbol the dashboard draws has a glyph in a bundled font, or is drawn as shapes.
    #[test]
    fn every_symbol_the_dashboard_draws_renders() {
        let symbols = "✓✗●○↻⊘↷◆↳⚠▶·…→←↑↓─│┌┐└┘├┤┬┴┼━┃╭╮╯╰═║▀▄█▌▐▁▂▃▄▅▆▇░▒▓⣿⡀⠁▏ABCxyz09%";
        for c in symbols.chars() {
            assert!(
                drawn_as_shape(c) || outline(c, 14.0).is_some(),
                "{c:?} has no glyph in either bundled font"
            );
        }
        // The monospace face lacks braille: those are shapes, never a missing glyph.
        assert!(drawn_as_shape('⣿'));
    }

    #[test]
    fn numbers_are_written_with_two_decimals() {
        let mut s = String::new();
        for v in [0.0, 8.43, -1.5, 1011.6, 0.005] {
            num(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0.00 8.43 -1.50 1011.60 0.01 ");
    }
}
