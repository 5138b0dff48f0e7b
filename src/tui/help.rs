//! The footer's key hints, the `?` help and the README's key tables, all generated from the
//! panes' declared commands ([`Pane::commands`]) and the active keymap, so none of them can
//! name a key that does nothing or miss one that does something.

use std::fmt::Write as _;

use super::action::Action;
use super::keymap::{Context, Keymap};
use super::panes::Pane;
use super::panes::canary::CanaryPane;
use super::panes::dlq::DlqPane;
use super::panes::events::EventsPane;
use super::panes::run_detail::RunDetail;
use super::panes::runs::RunsPane;
use super::panes::stage::StagePane;
use crate::model::RunId;

/// One hint in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub keys: String,
    pub label: &'static str,
    /// False when what is selected does not allow it (drawn dimmed).
    pub available: bool,
    /// Dropped first when the footer has no room for every hint.
    pub spare: bool,
    /// Help, back and quit: kept when others have to go.
    pub essential: bool,
}

impl Hint {
    /// Columns it takes in the footer.
    pub fn width(&self) -> usize {
        self.keys.chars().count() + self.label.chars().count() + 3
    }
}

/// The hints that fit in `width` columns: spare ones leave first, then the others from the
/// end, and help, back and quit last.
pub fn fitting(mut hints: Vec<Hint>, width: usize) -> Vec<Hint> {
    let total = |h: &[Hint]| h.iter().map(Hint::width).sum::<usize>();
    while total(&hints) > width {
        let drop = hints
            .iter()
            .rposition(|h| h.spare)
            .or_else(|| hints.iter().rposition(|h| !h.essential));
        match drop {
            Some(i) => {
                hints.remove(i);
            }
            None => break,
        }
    }
    let mut used = 0;
    hints
        .into_iter()
        .take_while(|h| {
            used += h.width();
            used <= width
        })
        .collect()
}

/// The footer's hints for `pane`, in declaration order. Control actions are left out when
/// the dashboard is read-only; an action with no key in the keymap is left out.
pub fn hints(pane: &dyn Pane, km: &Keymap, read_only: bool) -> Vec<Hint> {
    let contexts = pane.contexts();
    pane.commands()
        .iter()
        .filter(|c| c.footer)
        .filter(|c| !(read_only && c.actions.iter().any(|a| a.is_control())))
        .filter_map(|c| {
            let label = pane.hint(c)?;
            let keys: Vec<String> = c
                .actions
                .iter()
                .filter_map(|a| km.keys_for(contexts, *a).into_iter().next())
                .collect();
            (!keys.is_empty()).then(|| Hint {
                keys: keys.join("/"),
                label,
                available: c.actions.iter().all(|a| pane.unavailable(*a).is_none()),
                spare: c.spare,
                essential: c
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Help | Action::Back | Action::Quit)),
            })
        })
        .collect()
}

/// The pane's own actions (not the global ones, not moving), in declaration order: what the
/// help lists under the pane and the palette accepts by name.
pub fn pane_actions(pane: &dyn Pane) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::new();
    for c in pane.commands() {
        for a in c.actions {
            if !Action::GLOBAL.contains(a) && !Action::MOTIONS.contains(a) && !out.contains(a) {
                out.push(*a);
            }
        }
    }
    out
}

/// Rows of (keys, what) in `contexts` for `actions`; unbound actions are left out.
fn rows(km: &Keymap, contexts: &[Context], actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| {
            let keys = km.keys_for(contexts, *a);
            (!keys.is_empty()).then(|| (keys.join(", "), a.doc().to_string()))
        })
        .collect()
}

/// A section: a header row (empty doc) then its rows; nothing when it has no rows.
fn section(out: &mut Vec<(String, String)>, title: &str, rows: Vec<(String, String)>) {
    if rows.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push((String::new(), String::new()));
    }
    out.push((title.to_string(), String::new()));
    out.extend(rows);
}

/// The help for `pane`: its commands, moving, what works everywhere, and dialogs.
pub fn lines(pane: &dyn Pane, km: &Keymap) -> Vec<(String, String)> {
    let contexts = pane.contexts();
    let mut out = Vec::new();
    section(
        &mut out,
        &format!("{} pane", pane.title()),
        rows(km, contexts, &pane_actions(pane)),
    );
    if contexts.contains(&Context::List) {
        section(&mut out, "Moving", rows(km, contexts, Action::MOTIONS));
    }
    section(
        &mut out,
        "Everywhere",
        rows(km, &[Context::Global], Action::GLOBAL),
    );
    section(
        &mut out,
        "In dialogs",
        rows(
            km,
            Context::DIALOG,
            &[Action::Confirm, Action::Back, Action::Complete],
        ),
    );
    section(
        &mut out,
        "Symbols",
        super::widgets::LEGEND
            .iter()
            .map(|(g, meaning)| ((*g).to_string(), (*meaning).to_string()))
            .collect(),
    );
    out
}

/// The README's key tables for `panes` (each with the heading it is documented under): one
/// table per pane, then moving, everywhere and dialogs. A test keeps the README equal to this.
pub fn markdown(panes: &[(&str, &dyn Pane)], km: &Keymap) -> String {
    let mut out = String::new();
    let table = |out: &mut String, heading: &str, rows: Vec<(String, String)>, names: &[Action]| {
        let _ = writeln!(
            out,
            "{heading}:\n\n| Key | Does | Name |\n| --- | --- | --- |"
        );
        for ((keys, doc), a) in rows.into_iter().zip(names) {
            let keys: Vec<String> = keys.split(", ").map(|k| format!("`{k}`")).collect();
            let _ = writeln!(out, "| {} | {doc} | `{}` |", keys.join(" "), a.name());
        }
        out.push('\n');
    };
    let bound = |contexts: &[Context], actions: &[Action]| -> Vec<Action> {
        actions
            .iter()
            .copied()
            .filter(|a| !km.keys_for(contexts, *a).is_empty())
            .collect()
    };
    for (heading, pane) in panes {
        let names = bound(pane.contexts(), &pane_actions(*pane));
        table(&mut out, heading, rows(km, pane.contexts(), &names), &names);
    }
    let lists = [Context::List, Context::Global];
    let names = bound(&lists, Action::MOTIONS);
    table(
        &mut out,
        "Moving, in every list and text",
        rows(km, &lists, &names),
        &names,
    );
    let names = bound(&[Context::Global], Action::GLOBAL);
    table(
        &mut out,
        "Everywhere",
        rows(km, &[Context::Global], &names),
        &names,
    );
    let names = bound(
        Context::DIALOG,
        &[Action::Confirm, Action::Back, Action::Complete],
    );
    table(
        &mut out,
        "In dialogs",
        rows(km, Context::DIALOG, &names),
        &names,
    );
    out.trim_end().to_string()
}

/// The README's "Keys" tables for keymap `km`: every pane as it documents them.
pub fn readme_tables(km: &Keymap) -> String {
    let list = RunsPane::default();
    let run = RunsPane {
        detail: Some(RunDetail::new(RunId(1))),
        ..RunsPane::default()
    };
    let (stage, canary) = (StagePane::default(), CanaryPane::default());
    let (dlq, events) = (DlqPane::default(), EventsPane::default());
    let compare = crate::tui::panes::compare::ComparePane::default();
    let assets = crate::tui::panes::assets::AssetsPane::default();
    let pipelines = crate::tui::panes::pipelines::PipelinesPane::default();
    markdown(
        &[
            ("Runs (`1`)", &list),
            ("A run (`enter` on a run)", &run),
            ("Stage (`2`)", &stage),
            ("Canary (`3`)", &canary),
            ("Compare (`4`)", &compare),
            ("DLQ (`5`)", &dlq),
            ("Assets (`6`)", &assets),
            ("Events (`7`)", &events),
            ("Pipelines (`8`)", &pipelines),
        ],
        km,
    )
}
