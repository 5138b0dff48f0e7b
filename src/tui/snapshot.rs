//! A drawn screen (a ratatui [`Buffer`]) as a file for a report: SVG, PNG, HTML, ANSI or plain
//! text. Every format comes from the same cells, so they show the same thing; SVG and PNG put
//! each cell on an exact grid and draw box-drawing lines, block elements and braille dots as
//! shapes, so borders join and charts read the same whatever font the reader has.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

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
const BASELINE: f64 = 13.0;
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
fn rows(page: &Page<'_>) -> Vec<Vec<(u16, String, Look)>> {
    let colours = page_colours(page.theme);
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
                    " ".to_string()
                } else {
                    cell.symbol().to_string()
                };
                let width = unicode_cells(&sym);
                skip = width.saturating_sub(1);
                out.push((x, sym, look(cell, colours)));
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
        let line: String = row.iter().map(|(_, s, _)| s.as_str()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Escape codes for colours and styles, one reset at the end of each line, for `cat`.
pub fn ansi(page: &Page<'_>) -> String {
    let mut out = String::new();
    for row in rows(page) {
        let mut last: Option<Look> = None;
        for (_, sym, l) in &row {
            if last != Some(*l) {
                let (f, b) = (l.fg, l.bg);
                let _ = write!(
                    out,
                    "\x1b[0;38;2;{};{};{};48;2;{};{};{}",
                    f.0, f.1, f.2, b.0, b.1, b.2
                );
                for (on, code) in [(l.bold, 1), (l.italic, 3), (l.underline, 4)] {
                    if on {
                        let _ = write!(out, ";{code}");
                    }
                }
                out.push('m');
                last = Some(*l);
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
                text.push_str(&row[i].1);
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

/// Whether the SVG draws `c` as a shape instead of a glyph.
pub fn drawn_as_shape(c: char) -> bool {
    box_lines(c).is_some() || block_rects(c).is_some() || (0x2800..=0x28FF).contains(&u32::from(c))
}

/// The shapes for one cell at (x, y) in user units, or nothing for a glyph.
fn shape(out: &mut String, c: char, (x, y): (f64, f64), colour: &str, cell: (u16, u16)) {
    let tag = format!(
        "data-cell=\"{},{}\" data-ch=\"{}\"",
        cell.0,
        cell.1,
        xml_escape(&c.to_string())
    );
    if let Some(lines) = box_lines(c) {
        let (cx, cy) = (x + CELL_W / 2.0, y + CELL_H / 2.0);
        let ends = [(cx, y), (cx, y + CELL_H), (x, cy), (x + CELL_W, cy)];
        let _ = write!(
            out,
            "<g {tag} stroke=\"{colour}\" stroke-linecap=\"square\">"
        );
        for (i, kind) in lines.iter().enumerate() {
            let (ex, ey) = ends[i];
            match kind {
                0 => {}
                3 => {
                    // Double: two light lines either side of the centre.
                    let (dx, dy) = if i < 2 { (1.5, 0.0) } else { (0.0, 1.5) };
                    for s in [-1.0, 1.0] {
                        let _ = write!(
                            out,
                            "<line x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke-width=\"1\"/>",
                            cx + s * dx,
                            cy + s * dy,
                            ex + s * dx,
                            ey + s * dy
                        );
                    }
                }
                k => {
                    let _ = write!(
                        out,
                        "<line x1=\"{cx:.2}\" y1=\"{cy:.2}\" x2=\"{ex:.2}\" y2=\"{ey:.2}\" stroke-width=\"{}\"/>",
                        if *k == 2 { 2.5 } else { 1.2 }
                    );
                }
            }
        }
        out.push_str("</g>");
    } else if let Some((rects, opacity)) = block_rects(c) {
        let _ = write!(
            out,
            "<g {tag} fill=\"{colour}\" fill-opacity=\"{opacity}\">"
        );
        for (rx, ry, rw, rh) in rects {
            let _ = write!(
                out,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\"/>",
                x + rx * CELL_W,
                y + ry * CELL_H,
                rw * CELL_W,
                rh * CELL_H
            );
        }
        out.push_str("</g>");
    } else {
        let bits = u32::from(c) - 0x2800;
        let _ = write!(out, "<g {tag} fill=\"{colour}\">");
        for (i, (dx, dy)) in DOTS.iter().enumerate() {
            if bits & (1 << i) != 0 {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"1.2\"/>",
                    x + (dx + 0.5) * CELL_W / 2.0,
                    y + (dy + 0.5) * CELL_H / 4.0
                );
            }
        }
        out.push_str("</g>");
    }
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
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.2}\" height=\"{h:.2}\" viewBox=\"0 0 {w:.2} {h:.2}\" font-family=\"{FAMILY}\" font-size=\"{FONT_SIZE}\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"{}\"/>\n",
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
                top + BASELINE,
                f64::from(cells) * CELL_W,
                xml_escape(&text)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The bundled fonts, loaded once: DejaVu Sans Mono for the grid, DejaVu Sans for what it
/// lacks.
fn fonts() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(include_bytes!("../../assets/fonts/DejaVuSansMono.ttf").to_vec());
        db.load_font_data(include_bytes!("../../assets/fonts/DejaVuSans.ttf").to_vec());
        db.set_monospace_family("DejaVu Sans Mono");
        db.set_sans_serif_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// The SVG rasterised with the bundled fonts, never the machine's.
pub fn png(page: &Page<'_>, scale: f32) -> Result<Vec<u8>, String> {
    let svg = svg(page);
    let opt = resvg::usvg::Options {
        fontdb: fonts(),
        ..resvg::usvg::Options::default()
    };
    let tree = resvg::usvg::Tree::from_str(&svg, &opt)
        .map_err(|e| format!("cannot draw the snapshot: {e}"))?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or_else(|| {
        format!("--scale {scale} gives an image of no size; give a number from 0.25 to 4")
    })?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| "the snapshot is too large to draw".to_string())?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| format!("cannot encode the PNG: {e}"))
}
