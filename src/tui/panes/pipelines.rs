//! The pipeline lens: a pipeline's DAG drawn as boxes and edges, each stage with its last
//! status, p50/p95 duration and success rate over the recent runs, the assets it reads and
//! its breaker. The drawing is laid out once when the data arrives ([`Lens`]); a frame only
//! copies the visible window, so a 200-stage DAG draws as fast as a small one.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{Cmd, Cx, Effect, HELP, QUIT, cmd};
use crate::model::lens::{PipelineStats, StageInfo, StageStats};
use crate::model::{BreakerInfo, PipelineInfo, StageStatus};
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::popup::{Popup, Record};
use crate::tui::request::Request;
use crate::tui::theme::Theme;
use crate::tui::view::Ctx;
use crate::tui::widgets::fit;

/// A stage box: its width and height in cells, and the gap between columns (the edges).
const BOX_W: usize = 22;
const BOX_H: usize = 5;
const GAP: usize = 4;

/// What a cell of the drawing holds: a character and the theme slot it is drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    ch: char,
    slot: &'static str,
}

/// Lines leaving a cell, for joining edges: up, down, left, right.
const UP: u8 = 1;
const DOWN: u8 = 2;
const LEFT: u8 = 4;
const RIGHT: u8 = 8;

fn joint(bits: u8) -> char {
    match bits {
        b if b == LEFT | RIGHT || b == LEFT || b == RIGHT => '─',
        b if b == UP | DOWN || b == UP || b == DOWN => '│',
        b if b == DOWN | RIGHT => '┌',
        b if b == DOWN | LEFT => '┐',
        b if b == UP | RIGHT => '└',
        b if b == UP | LEFT => '┘',
        b if b == UP | DOWN | RIGHT => '├',
        b if b == UP | DOWN | LEFT => '┤',
        b if b == LEFT | RIGHT | DOWN => '┬',
        b if b == LEFT | RIGHT | UP => '┴',
        0 => ' ',
        _ => '┼',
    }
}

/// A pipeline laid out: where each stage's box is, and the drawing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lens {
    pub pipeline: String,
    /// Box positions (column, row of the top-left corner), by stage index of `stages`.
    pub boxes: Vec<(usize, usize)>,
    /// Stage indices in reading order: column by column, top to bottom.
    pub order: Vec<usize>,
    pub stages: Vec<StageInfo>,
    pub stats: Option<PipelineStats>,
    width: usize,
    height: usize,
    cells: Vec<Cell>,
}

impl Lens {
    /// Lays out `graph`: a stage's column is one past the furthest column of what it needs.
    pub fn new(
        pipeline: &str,
        graph: &[StageInfo],
        stats: Option<PipelineStats>,
        breakers: &[BreakerInfo],
    ) -> Lens {
        let index = |id: &str| graph.iter().position(|s| s.id == id);
        let mut layer = vec![0usize; graph.len()];
        // Stages are validated as a DAG: passes over them settle in at most len rounds.
        for _ in 0..graph.len() {
            let mut moved = false;
            for (i, s) in graph.iter().enumerate() {
                let want = s
                    .needs
                    .iter()
                    .filter_map(|n| index(n))
                    .map(|n| layer[n] + 1)
                    .max()
                    .unwrap_or(0);
                if want > layer[i] {
                    layer[i] = want;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        let columns = layer.iter().max().map_or(0, |m| m + 1);
        let mut boxes = vec![(0, 0); graph.len()];
        let mut order = Vec::with_capacity(graph.len());
        let mut rows_used = 0;
        for col in 0..columns {
            let mut row = 0;
            for (i, _) in graph.iter().enumerate().filter(|(i, _)| layer[*i] == col) {
                boxes[i] = (col * (BOX_W + GAP), row * (BOX_H + 1));
                order.push(i);
                row += 1;
            }
            rows_used = rows_used.max(row);
        }
        let width = (columns * (BOX_W + GAP)).saturating_sub(GAP).max(1);
        let height = (rows_used * (BOX_H + 1)).saturating_sub(1).max(1);
        let mut lens = Lens {
            pipeline: pipeline.to_string(),
            boxes,
            order,
            stages: graph.to_vec(),
            stats,
            width,
            height,
            cells: vec![
                Cell {
                    ch: ' ',
                    slot: "ui.dim",
                };
                width * height
            ],
        };
        lens.draw(breakers);
        lens
    }

    fn put(&mut self, x: usize, y: usize, ch: char, slot: &'static str) {
        if x < self.width && y < self.height {
            self.cells[y * self.width + x] = Cell { ch, slot };
        }
    }

    fn text(&mut self, x: usize, y: usize, text: &str, max: usize, slot: &'static str) {
        for (i, ch) in fit(text, max).chars().enumerate() {
            self.put(x + i, y, ch, slot);
        }
    }

    fn stats_of(&self, id: &str) -> Option<&StageStats> {
        self.stats.as_ref()?.stages.iter().find(|s| s.id == id)
    }

    fn draw(&mut self, breakers: &[BreakerInfo]) {
        // Edges first, joined where they meet, then the boxes over them.
        let mut bits = vec![0u8; self.width * self.height];
        let mut mark = |x: usize, y: usize, b: u8, w: usize| {
            if let Some(c) = bits.get_mut(y * w + x) {
                *c |= b;
            }
        };
        let w = self.width;
        for (i, s) in self.stages.iter().enumerate() {
            let (tx, ty) = self.boxes[i];
            let ty = ty + BOX_H / 2;
            for n in &s.needs {
                let Some(j) = self.stages.iter().position(|o| &o.id == n) else {
                    continue;
                };
                let (sx, sy) = self.boxes[j];
                let (sx, sy) = (sx + BOX_W, sy + BOX_H / 2);
                // Out of the source, along to the column just before the target, down or up
                // to the target's row, then into it.
                let turn = tx.saturating_sub(2);
                for x in sx..turn {
                    mark(x, sy, LEFT | RIGHT, w);
                }
                let (lo, hi) = (sy.min(ty), sy.max(ty));
                if lo == hi {
                    mark(turn, sy, LEFT | RIGHT, w);
                } else {
                    mark(turn, sy, LEFT | if sy < ty { DOWN } else { UP }, w);
                    for y in lo + 1..hi {
                        mark(turn, y, UP | DOWN, w);
                    }
                    mark(turn, ty, RIGHT | if sy < ty { UP } else { DOWN }, w);
                }
                mark(turn + 1, ty, LEFT | RIGHT, w);
            }
        }
        for (k, b) in bits.iter().enumerate() {
            if *b != 0 {
                self.cells[k] = Cell {
                    ch: joint(*b),
                    slot: "ui.border",
                };
            }
        }
        for (i, (x, y)) in self.boxes.clone().into_iter().enumerate() {
            // The arrowhead into each stage that needs another.
            if !self.stages[i].needs.is_empty() && x > 0 {
                self.put(x - 1, y + BOX_H / 2, '▶', "ui.border");
            }
            self.draw_box(i, x, y, breakers);
        }
    }

    fn draw_box(&mut self, i: usize, x: usize, y: usize, breakers: &[BreakerInfo]) {
        let s = self.stages[i].clone();
        let st = self.stats_of(&s.id).cloned();
        let (symbol, slot) = match st.as_ref().and_then(|st| st.last) {
            Some(StageStatus::Succeeded) => ('✓', "status.ok"),
            Some(StageStatus::Failed) => ('✗', "status.failed"),
            Some(StageStatus::Running) => ('●', "status.running"),
            Some(StageStatus::Retrying) => ('↻', "status.retrying"),
            Some(StageStatus::Skipped) => ('⊘', "status.skipped"),
            Some(_) => ('○', "status.pending"),
            None => ('·', "ui.dim"),
        };
        let inner = BOX_W - 2;
        for dx in 1..BOX_W - 1 {
            self.put(x + dx, y, '─', "ui.border");
            self.put(x + dx, y + BOX_H - 1, '─', "ui.border");
        }
        for dy in 1..BOX_H - 1 {
            self.put(x, y + dy, '│', "ui.border");
            self.put(x + BOX_W - 1, y + dy, '│', "ui.border");
            for dx in 1..BOX_W - 1 {
                self.put(x + dx, y + dy, ' ', "ui.dim");
            }
        }
        self.put(x, y, '┌', "ui.border");
        self.put(x + BOX_W - 1, y, '┐', "ui.border");
        self.put(x, y + BOX_H - 1, '└', "ui.border");
        self.put(x + BOX_W - 1, y + BOX_H - 1, '┘', "ui.border");
        self.put(x + 1, y + 1, symbol, slot);
        self.text(x + 3, y + 1, &s.id, inner - 2, "ui.text");
        let secs = |ms: Option<i64>| {
            ms.map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
        };
        let timing = match &st {
            Some(st) if st.finished > 0 => format!("{} p95 {}", secs(st.p50_ms), secs(st.p95_ms)),
            _ => "no runs yet".into(),
        };
        self.text(x + 1, y + 2, &timing, inner, "ui.dim");
        let rate = st
            .as_ref()
            .and_then(|st| st.success_rate)
            .map_or_else(String::new, |r| format!("{:.0}% ", r * 100.0));
        let open = s.breaker.as_ref().and_then(|t| {
            breakers
                .iter()
                .find(|b| &b.target == t)
                .map(|b| b.state.clone())
        });
        let breaker = open
            .as_ref()
            .map_or_else(String::new, |state| format!("⚠{state} "));
        let asset = s
            .assets
            .first()
            .map_or_else(String::new, |a| format!("◆{a}"));
        let third = format!("{rate}{breaker}{asset}");
        let slot3 = if open.is_some() { "alert" } else { "ui.key" };
        self.text(x + 1, y + 3, &third, inner, slot3);
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelinesPane {
    /// Which pipeline of the overview is shown.
    pub index: usize,
    pub lens: Option<Lens>,
    /// The selected stage: a position in the lens's reading order.
    pub selected: usize,
    /// The top-left cell of the drawing in view.
    pub scroll: (usize, usize),
    /// The pipeline switched to whose layout is still loading, and how many there are: the
    /// title names it meanwhile.
    pub loading: Option<(String, usize)>,
}

const COMMANDS: &[Cmd] = &[
    cmd(&[Action::Down, Action::Up], "stage"),
    cmd(&[Action::SwitchList], "next pipeline"),
    cmd(&[Action::Open], "attempts"),
    HELP,
    QUIT,
];

impl PipelinesPane {
    fn pipeline<'a>(&self, cx: &Cx<'a>) -> Option<&'a PipelineInfo> {
        let list = &cx.overview?.pipelines;
        list.get(self.index.min(list.len().saturating_sub(1)))
    }

    /// The fetch of the shown pipeline's stats.
    pub fn request(&self, pipelines: &[PipelineInfo]) -> Option<Request> {
        let p = pipelines.get(self.index.min(pipelines.len().saturating_sub(1)))?;
        Some(Request::PipelineStats {
            pipeline: p.name.clone(),
        })
    }

    /// Takes stats for a pipeline and lays it out (if it is still the one shown).
    pub fn apply(
        &mut self,
        stats: PipelineStats,
        pipelines: &[PipelineInfo],
        breakers: &[BreakerInfo],
    ) {
        let Some(p) = pipelines.get(self.index.min(pipelines.len().saturating_sub(1))) else {
            return;
        };
        if p.name != stats.pipeline {
            return;
        }
        let same = self.lens.as_ref().is_some_and(|l| l.pipeline == p.name);
        self.lens = Some(Lens::new(&p.name, &p.graph, Some(stats), breakers));
        if !same {
            self.selected = 0;
            self.scroll = (0, 0);
        }
    }

    fn selected_stage(&self) -> Option<(&Lens, usize)> {
        let l = self.lens.as_ref()?;
        l.order.get(self.selected).map(|&i| (l, i))
    }

    /// Scrolls as little as possible to show the selected box in a view of `w` by `h`.
    fn keep_visible(&mut self, w: usize, h: usize) {
        let Some((l, i)) = self.selected_stage() else {
            return;
        };
        let (x, y) = l.boxes[i];
        let (sx, sy) = &mut self.scroll;
        if x < *sx {
            *sx = x;
        } else if x + BOX_W > *sx + w {
            *sx = (x + BOX_W).saturating_sub(w);
        }
        if y < *sy {
            *sy = y;
        } else if y + BOX_H > *sy + h {
            *sy = (y + BOX_H).saturating_sub(h);
        }
    }
}

/// The drawing's view inside the pane: the body less its border and the line of text.
fn view(size: Rect) -> (usize, usize) {
    let body = super::inner(super::areas(size).body);
    (
        usize::from(body.width),
        usize::from(body.height.saturating_sub(1)),
    )
}

impl super::Pane for PipelinesPane {
    fn title(&self) -> &'static str {
        "Pipelines"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Pipelines, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        let len = self.lens.as_ref().map_or(0, |l| l.order.len());
        let (w, h) = view(cx.size);
        match a {
            Action::Down | Action::PageDown | Action::Bottom => {
                self.selected = if a == Action::Bottom {
                    len.saturating_sub(1)
                } else {
                    (self.selected + 1).min(len.saturating_sub(1))
                };
                self.keep_visible(w, h);
                Effect::None
            }
            Action::Up | Action::PageUp | Action::Top => {
                self.selected = if a == Action::Top {
                    0
                } else {
                    self.selected.saturating_sub(1)
                };
                self.keep_visible(w, h);
                Effect::None
            }
            Action::SwitchList => {
                let n = cx.overview.map_or(0, |o| o.pipelines.len());
                if n == 0 {
                    return Effect::None;
                }
                self.index = (self.index + 1) % n;
                self.loading = cx
                    .overview
                    .and_then(|o| o.pipelines.get(self.index))
                    .map(|p| (p.name.clone(), n));
                self.lens = None;
                self.selected = 0;
                self.scroll = (0, 0);
                cx.overview
                    .and_then(|o| self.request(&o.pipelines))
                    .map_or(Effect::None, Effect::fetch)
            }
            Action::Open => {
                let (Some((l, i)), Some(p)) = (self.selected_stage(), self.pipeline(cx)) else {
                    return Effect::None;
                };
                let id = l.stages[i].id.clone();
                let lines = l.stats_of(&id).map_or_else(Vec::new, |st| {
                    st.recent
                        .iter()
                        .map(|a| {
                            format!(
                                "run {:<7} attempt {}  {:<10} {:>8}  {}",
                                a.run,
                                a.n,
                                a.status.as_str(),
                                a.duration_ms
                                    .map_or_else(|| "-".into(), |d| format!("{d} ms")),
                                a.error.clone().unwrap_or_default()
                            )
                        })
                        .collect()
                });
                let lines = if lines.is_empty() {
                    vec!["No attempts in the recent runs.".to_string()]
                } else {
                    lines
                };
                Effect::Popup(Box::new(Popup::Record(Record {
                    title: format!("{} / {id} · recent attempts, newest first", p.name),
                    lines,
                    run: None,
                    scroll: 0,
                })))
            }
            _ => Effect::None,
        }
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

pub fn render(f: &mut Frame, area: Rect, p: &PipelinesPane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let about = match (&p.lens, &p.loading) {
        (Some(l), _) => format!(
            "· {} · last {} runs ",
            l.pipeline,
            l.stats.as_ref().map_or(0, |s| s.runs.len())
        ),
        (None, Some((name, n))) => format!("· {name} ({} of {n}) ", p.index + 1),
        (None, None) => String::new(),
    };
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" Pipelines ", t.style("ui.title")),
            Span::styled(about, t.style("ui.dim")),
        ]))
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(l) = &p.lens else {
        f.render_widget(
            Paragraph::new(Span::styled("loading…", t.style("ui.dim"))),
            inner,
        );
        return;
    };
    let mut lines = vec![legend(p, l, usize::from(inner.width), t)];
    lines.extend(draw(l, p, inner, t));
    f.render_widget(Paragraph::new(lines), inner);
}

fn legend(p: &PipelinesPane, l: &Lens, width: usize, t: &Theme) -> Line<'static> {
    let sel = p
        .selected_stage()
        .map(|(_, i)| l.stages[i].id.clone())
        .unwrap_or_default();
    Line::styled(
        fit(
            &format!(
                "{sel} · p50 p95 over the last runs · ✓ last status · % succeeded · ◆ asset · ⚠ breaker"
            ),
            width,
        ),
        t.style("ui.dim"),
    )
}

/// The visible window of the drawing, the selected box highlighted.
fn draw(l: &Lens, p: &PipelinesPane, area: Rect, t: &Theme) -> Vec<Line<'static>> {
    let (w, h) = (
        usize::from(area.width),
        usize::from(area.height.saturating_sub(1)),
    );
    let (sx, sy) = p.scroll;
    let sel = p.selected_stage().map(|(_, i)| l.boxes[i]);
    let in_sel = |x: usize, y: usize| {
        sel.is_some_and(|(bx, by)| x >= bx && x < bx + BOX_W && y >= by && y < by + BOX_H)
    };
    (sy..(sy + h).min(l.height))
        .map(|y| {
            let mut spans: Vec<Span<'static>> = Vec::new();
            let mut run = String::new();
            let mut style: Option<Style> = None;
            for x in sx..(sx + w).min(l.width) {
                let c = l.cells[y * l.width + x];
                let mut st = t.style(c.slot);
                if in_sel(x, y) {
                    st = st.patch(t.style("ui.selection"));
                }
                if style.is_some_and(|s| s != st) {
                    spans.push(Span::styled(
                        std::mem::take(&mut run),
                        style.unwrap_or_default(),
                    ));
                }
                style = Some(st);
                run.push(c.ch);
            }
            if !run.is_empty() {
                spans.push(Span::styled(run, style.unwrap_or_default()));
            }
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(id: &str, needs: &[&str]) -> StageInfo {
        StageInfo {
            id: id.into(),
            kind: "simulate".into(),
            needs: needs.iter().map(ToString::to_string).collect(),
            assets: vec![],
            breaker: None,
        }
    }

    #[test]
    fn a_diamond_lays_out_in_columns_with_joined_edges() {
        let g = [
            stage("a", &[]),
            stage("b", &["a"]),
            stage("c", &["a"]),
            stage("d", &["b", "c"]),
        ];
        let l = Lens::new("p", &g, None, &[]);
        assert_eq!(l.boxes[0], (0, 0));
        assert_eq!(l.boxes[1], (BOX_W + GAP, 0));
        assert_eq!(l.boxes[2], (BOX_W + GAP, BOX_H + 1));
        assert_eq!(l.boxes[3].0, 2 * (BOX_W + GAP));
        assert_eq!(l.order, [0, 1, 2, 3]);
        let row =
            |y: usize| -> String { (0..l.width).map(|x| l.cells[y * l.width + x].ch).collect() };
        let mid = row(BOX_H / 2);
        assert_eq!(
            mid.matches("│──┬▶│").count(),
            2,
            "a splits to b and c: {mid}"
        );
        let lower = row(BOX_H + 1 + BOX_H / 2);
        assert_eq!(lower.matches("└▶│").count(), 1, "into c: {lower}");
        assert_eq!(
            lower.matches("──┘").count(),
            1,
            "c joins d from below: {lower}"
        );
    }
}
