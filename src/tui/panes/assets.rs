//! The Assets pane: every asset with its pinned version and the stages that use it; the
//! selected asset's versions (who, when, why) and pins; one version's text, or its diff
//! against the pinned one. `e` writes a new version, `t` tests a stage with the selected
//! version beside its last production output, `p` pins it, `u` rolls back.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::{Cmd, Cursor, Cx, Effect, HELP, MOVE, Motion, Pane, QUIT, cmd, more, spare};
use crate::model::Command;
use crate::model::asset::{AssetDetail, AssetSummary, AssetUse};
use crate::model::diff::{DiffLine, LineTag, diff};
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::popup::{self, Popup};
use crate::tui::request::Request;
use crate::tui::view::Ctx;
use crate::tui::widgets::{clock_time, column_widths, fit, fitted_row};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetsPane {
    pub list: Vec<AssetSummary>,
    pub loaded: bool,
    pub cursor: Cursor,
    /// The selected asset, with the version shown.
    pub detail: Option<AssetDetail>,
    /// The pinned version's text, when a diff against it is shown.
    pub pinned_text: Option<String>,
    pub versions: Cursor,
    /// Keys move in the versions list (else in the assets list).
    pub on_versions: bool,
    /// Show the selected version as a diff against the pinned one.
    pub diff: bool,
}

const COMMANDS: &[Cmd] = &[
    MOVE,
    cmd(&[Action::SwitchList], "assets/versions"),
    cmd(&[Action::EditAsset], "edit"),
    cmd(&[Action::TestStage], "test"),
    cmd(&[Action::PinVersion], "pin"),
    cmd(&[Action::RollbackAsset], "rollback"),
    spare(&[Action::Diff], "diff"),
    HELP,
    QUIT,
    more(&[Action::Open]),
];

impl AssetsPane {
    pub fn selected(&self) -> Option<&AssetSummary> {
        self.list.get(self.cursor.selected)
    }

    /// The version under the versions cursor (the shown one until the list is loaded).
    fn chosen_version(&self) -> Option<u32> {
        let d = self.detail.as_ref()?;
        d.versions
            .get(self.versions.selected)
            .map(|v| v.version)
            .or(Some(d.shown.version))
    }

    /// The fetch of the selected asset at `version` (the pinned one when `None`), with the
    /// pinned text when a diff is shown.
    fn detail_request(&self, version: Option<u32>) -> Option<Request> {
        let a = self.selected()?;
        Some(Request::Asset {
            name: a.name.clone(),
            version,
            against: if self.diff { a.pinned } else { None },
        })
    }

    /// Selects asset `name`; the fetch of its detail, or a sentence naming the assets there are.
    pub fn select(&mut self, name: &str) -> Result<Request, String> {
        let i = self
            .list
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.list.iter().map(|a| a.name.as_str()).collect();
                format!("there is no asset `{name}`; assets: {}", names.join(", "))
            })?;
        self.cursor.selected = i;
        self.versions = Cursor::default();
        self.detail_request(None)
            .ok_or_else(|| format!("there is no asset `{name}`"))
    }

    /// Takes the asset list, keeping the selection on the same asset.
    pub fn apply_list(&mut self, list: Vec<AssetSummary>, view: usize) -> Option<Request> {
        let keep = self.selected().map(|a| a.name.clone());
        self.list = list;
        self.loaded = true;
        if let Some(i) = keep.and_then(|n| self.list.iter().position(|a| a.name == n)) {
            self.cursor.selected = i;
        }
        self.cursor.keep_visible(self.list.len(), view);
        let version = self
            .detail
            .as_ref()
            .filter(|d| self.selected().is_some_and(|a| a.name == d.name))
            .map(|d| d.shown.version);
        self.detail_request(version)
    }

    /// Takes an asset's detail (and the pinned text for a diff) if it is still the one
    /// selected.
    pub fn apply_detail(&mut self, d: AssetDetail, pinned_text: Option<String>) {
        if self.selected().is_none_or(|a| a.name != d.name) {
            return;
        }
        let same = self.detail.as_ref().is_some_and(|old| old.name == d.name);
        if let Some(i) = d.versions.iter().position(|v| v.version == d.shown.version) {
            self.versions.selected = i;
        } else if !same {
            self.versions = Cursor::default();
        }
        self.versions.keep_visible(d.versions.len(), VERSION_ROWS);
        self.detail = Some(d);
        self.pinned_text = pinned_text;
    }

    /// The fetches that bring the pane up to date (after a change or on first show).
    pub fn refetch(&self) -> Vec<Request> {
        let mut out = vec![Request::Assets];
        out.extend(self.detail_request(self.detail.as_ref().map(|d| d.shown.version)));
        out
    }

    /// The diff of the shown version against the pinned one, when both are loaded.
    pub fn diff_lines(&self) -> Option<Vec<DiffLine>> {
        let d = self.detail.as_ref()?;
        let pinned = self.pinned_text.as_ref()?;
        let shown = d.shown.content.clone().unwrap_or_default();
        Some(
            diff(
                &serde_json::Value::String(pinned.clone()),
                &serde_json::Value::String(shown),
            )
            .lines,
        )
    }

    fn stage_choices(&self) -> Vec<AssetUse> {
        self.detail
            .as_ref()
            .map(|d| d.used_by.clone())
            .unwrap_or_default()
    }
}

/// Versions listed under the assets (the rest of the pane shows the text).
const VERSION_ROWS: usize = 6;

fn list_rows(size: Rect) -> usize {
    super::table_rows(size)
}

impl Pane for AssetsPane {
    fn title(&self) -> &'static str {
        "Assets"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Assets, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        if let Some(m) = Motion::from_action(a) {
            if self.on_versions {
                let len = self.detail.as_ref().map_or(0, |d| d.versions.len());
                self.versions.apply(m, len, VERSION_ROWS);
                return self
                    .detail_request(self.chosen_version())
                    .map_or(Effect::None, Effect::fetch);
            }
            let before = self.cursor.selected;
            self.cursor.apply(m, self.list.len(), list_rows(cx.size));
            if self.cursor.selected == before {
                return Effect::None;
            }
            self.versions = Cursor::default();
            return self
                .detail_request(None)
                .map_or(Effect::None, Effect::fetch);
        }
        let Some(d) = self.detail.as_ref() else {
            return Effect::None;
        };
        let name = d.name.clone();
        let version = self.chosen_version().unwrap_or(d.shown.version);
        match a {
            Action::SwitchList => {
                self.on_versions = !self.on_versions;
                Effect::None
            }
            Action::Diff => {
                self.diff = !self.diff;
                self.detail_request(Some(version))
                    .map_or(Effect::None, Effect::fetch)
            }
            Action::EditAsset => Effect::Popup(Box::new(popup::editor(
                &name,
                version,
                d.shown.content.as_deref().unwrap_or_default(),
            ))),
            Action::TestStage => {
                let stages = self.stage_choices();
                if stages.is_empty() {
                    return Effect::Refuse(format!(
                        "no stage of this host's pipelines uses asset `{name}`; name it with `asset = \"{name}\"` in a stage"
                    ));
                }
                Effect::Popup(Box::new(Popup::PickStage {
                    asset: name,
                    version,
                    picker: popup::Picker::new(stages),
                }))
            }
            Action::PinVersion => Effect::Popup(Box::new(popup::confirm(
                format!("Pin version {version} of {name}?"),
                vec![
                    format!("Runs started from now use version {version} of asset `{name}`."),
                    "Rolling back (u) returns to the version pinned now.".into(),
                ],
                Command::PinAsset { name, version },
            ))),
            Action::RollbackAsset => {
                let before = d
                    .pins
                    .iter()
                    .filter(|p| !p.undone)
                    .nth(1)
                    .map(|p| p.version);
                let Some(before) = before else {
                    return Effect::Refuse(format!(
                        "asset `{name}` has no earlier pin to roll back to"
                    ));
                };
                Effect::Popup(Box::new(popup::confirm(
                    format!("Roll back {name}?"),
                    vec![format!(
                        "Runs started from now use version {before} again (pinned before {}).",
                        d.pinned.map_or_else(|| "-".into(), |p| p.to_string())
                    )],
                    Command::RollbackAsset { name },
                )))
            }
            _ => Effect::None,
        }
    }

    fn unavailable(&self, a: Action) -> Option<String> {
        let d = self.detail.as_ref()?;
        match a {
            Action::PinVersion if self.chosen_version() == d.pinned => Some(format!(
                "version {} is the pinned one already",
                self.chosen_version().unwrap_or_default()
            )),
            Action::RollbackAsset if d.pins.iter().filter(|p| !p.undone).count() < 2 => Some(
                format!("asset `{}` has no earlier pin to roll back to", d.name),
            ),
            _ => None,
        }
    }

    fn click(&mut self, row: usize) {
        let target = self.cursor.offset + row;
        if target < self.list.len() {
            self.cursor.selected = target;
        }
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

fn uses(u: &[AssetUse]) -> String {
    if u.is_empty() {
        return "no stage uses it".into();
    }
    u.iter()
        .map(|u| format!("{}/{}", u.pipeline, u.stage))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn render(f: &mut Frame, area: Rect, p: &AssetsPane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" Assets ", t.style("ui.title")),
            Span::styled(format!("· {} ", p.list.len()), t.style("ui.dim")),
        ]))
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if p.list.is_empty() {
        let text = if p.loaded {
            "No assets yet: put files in the workspace's assets/ directory, or `opsdeck assets put NAME FILE`."
        } else {
            "loading…"
        };
        f.render_widget(Paragraph::new(Span::styled(text, t.style("ui.dim"))), inner);
        return;
    }
    let list_w = p
        .list
        .iter()
        .map(|a| a.name.chars().count() + 8)
        .max()
        .unwrap_or(16)
        .clamp(16, usize::from(inner.width / 3).max(16));
    let [left, right] = Layout::horizontal([
        Constraint::Length(u16::try_from(list_w).unwrap_or(20)),
        Constraint::Min(1),
    ])
    .areas(inner);
    let sel = |on: bool| {
        if on {
            t.style("ui.selection")
        } else {
            t.style("ui.dim")
        }
    };
    let rows: Vec<Row> = p
        .list
        .iter()
        .map(|a| {
            Row::new(vec![
                Line::raw(fit(&a.name, list_w.saturating_sub(7))),
                Line::styled(
                    a.pinned
                        .map_or_else(|| "-".into(), |v| format!("v{v}/{}", a.latest)),
                    t.style("ui.dim"),
                ),
            ])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Fill(1), Constraint::Length(6)])
        .header(Row::new(vec!["ASSET", "PIN"]).style(t.style("ui.dim")))
        .row_highlight_style(sel(!p.on_versions));
    let mut state = TableState::default()
        .with_offset(p.cursor.offset)
        .with_selected(Some(p.cursor.selected));
    f.render_stateful_widget(table, left, &mut state);
    if let Some(d) = &p.detail {
        render_detail(f, right, p, d, ctx);
    }
}

fn render_detail(f: &mut Frame, area: Rect, p: &AssetsPane, d: &AssetDetail, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let rows = u16::try_from(d.versions.len().min(VERSION_ROWS)).unwrap_or(1) + 1;
    let [head, versions, text] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rows),
        Constraint::Min(1),
    ])
    .areas(Rect {
        x: area.x + 1,
        width: area.width.saturating_sub(1),
        ..area
    });
    let width = usize::from(head.width);
    let pinned = d
        .pinned
        .map_or_else(|| "nothing pinned".into(), |v| format!("v{v} pinned"));
    f.render_widget(
        Paragraph::new(Line::styled(
            fit(
                &format!("{} · {pinned} · used by {}", d.name, uses(&d.used_by)),
                width,
            ),
            t.style("ui.key"),
        )),
        head,
    );
    let widths = [
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Length(12),
        Constraint::Fill(1),
    ];
    let cols = column_widths(versions.width, &widths);
    let vrows: Vec<Row> = d
        .versions
        .iter()
        .map(|v| {
            let mark = if Some(v.version) == d.pinned {
                "*"
            } else {
                " "
            };
            fitted_row(
                vec![
                    Line::raw(format!("{mark}v{}", v.version)),
                    Line::raw(clock_time(v.created_at, ctx.now)),
                    Line::raw(v.actor.clone()),
                    Line::styled(v.reason.clone(), t.style("ui.dim")),
                ],
                &cols,
            )
        })
        .collect();
    let table = Table::new(vrows, widths)
        .header(Row::new(vec!["VER", "CREATED", "BY", "REASON"]).style(t.style("ui.dim")))
        .row_highlight_style(if p.on_versions {
            t.style("ui.selection")
        } else {
            t.style("ui.dim")
        });
    let mut state = TableState::default()
        .with_offset(p.versions.offset)
        .with_selected(Some(p.versions.selected));
    f.render_stateful_widget(table, versions, &mut state);
    f.render_widget(Paragraph::new(text_lines(p, d, width, t)), text);
}

/// The shown version's text, or its diff against the pinned one.
fn text_lines(
    p: &AssetsPane,
    d: &AssetDetail,
    width: usize,
    t: &crate::tui::theme::Theme,
) -> Vec<Line<'static>> {
    match (p.diff, p.diff_lines()) {
        (true, Some(lines)) => {
            let mut out = vec![Line::styled(
                fit(
                    &format!(
                        "── v{} against the pinned v{} ",
                        d.shown.version,
                        d.pinned.unwrap_or_default()
                    ),
                    width,
                ),
                t.style("ui.border"),
            )];
            out.extend(lines.iter().map(|l| {
                let (sign, style) = match l.tag {
                    LineTag::Same => (' ', t.style("ui.dim")),
                    LineTag::Added => ('+', t.style("diff.added")),
                    LineTag::Removed => ('-', t.style("diff.removed")),
                };
                Line::styled(fit(&format!("{sign} {}", l.text), width), style)
            }));
            out
        }
        _ => {
            let mut out = vec![Line::styled(
                fit(&format!("── v{} ", d.shown.version), width),
                t.style("ui.border"),
            )];
            out.extend(
                d.shown
                    .content
                    .as_deref()
                    .unwrap_or_default()
                    .lines()
                    .map(|l| Line::raw(fit(&l.replace('\t', "    "), width))),
            );
            out
        }
    }
}
