//! What arrives from the backend: answers go to the pane that asked, live events mark what they
//! make stale, a command's typed outcome marks what it changed, and [`App::refresh`] fetches
//! what is stale and on screen (what is off screen is fetched when it is shown).

use std::sync::Arc;

use super::app::App;
use super::panes::PaneId;
use super::popup::{Picker, Popup};
use super::request::{Msg, Request};
use crate::client::StreamItem;
use crate::model::{Event, EventKind, Outcome, RunId};

/// Data that changed since it was last fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stale {
    Overview,
    Runs,
    Detail,
    Stage,
    Dlq,
    Canaries,
    Assets,
    Pipelines,
}

const ALL: [Stale; 8] = [
    Stale::Overview,
    Stale::Runs,
    Stale::Detail,
    Stale::Stage,
    Stale::Dlq,
    Stale::Canaries,
    Stale::Assets,
    Stale::Pipelines,
];

impl App {
    /// Applies a backend answer.
    pub fn apply(&mut self, msg: Msg) {
        let view = super::panes::events::view_rows(self.size);
        match msg {
            Msg::Overview(o) => {
                // A viewer token (or a read-only server) can change nothing: hide the controls.
                if o.role.as_deref() == Some("viewer") && !self.config.read_only {
                    self.config.read_only = true;
                    self.viewer = true;
                }
                if !self.subscribed {
                    self.subscribed = true;
                    self.outbox.push(Request::RecentEvents { limit: 500 });
                    self.outbox.push(Request::Subscribe { since: o.last_seq });
                }
                self.overview = Some(o);
            }
            Msg::RecentEvents(events) => self.panes.events.push(events, view),
            Msg::OlderEvents(events) => self.panes.events.prepend(events, view),
            Msg::Stream(StreamItem::Event(e)) => {
                self.on_event(&e);
                self.panes.events.push([Arc::unwrap_or_clone(e)], view);
            }
            Msg::Stream(StreamItem::Connected(up)) => self.connected(up),
            Msg::Stream(StreamItem::Reset { .. }) => {
                // The server would not replay that far back: start the views afresh.
                self.panes.events.reset();
                self.outbox.push(Request::RecentEvents { limit: 500 });
                self.stale.extend(ALL);
                self.refresh();
            }
            Msg::Runs { tag, offset, page } => {
                let rows = super::panes::table_rows(self.size);
                self.panes.runs.list.apply_page(tag, offset, page, rows);
            }
            Msg::Run(run) => self.panes.runs.apply_run(*run, self.size),
            Msg::StageIo(io) => {
                let same = self
                    .panes
                    .stage
                    .target
                    .as_ref()
                    .is_some_and(|t| t.run == io.run_id && t.stage == io.stage);
                if same {
                    self.panes.stage.apply_io(*io);
                    let ready =
                        self.panes.stage.io.as_ref().is_some_and(|io| {
                            io.attempts.last().is_some_and(|a| a.output.is_some())
                        });
                    if ready && let Some(base) = self.panes.stage.diff_when_loaded.take() {
                        self.outbox
                            .extend(self.panes.stage.request_diff(Some(base)));
                    }
                    if ready && std::mem::take(&mut self.panes.stage.diff_previous) {
                        self.outbox.extend(self.panes.stage.request_diff(None));
                    }
                }
            }
            Msg::Compare(_)
            | Msg::CompareFailed(_)
            | Msg::Saved(_)
            | Msg::PipelineStats(_)
            | Msg::Assets(_)
            | Msg::Asset { .. } => self.apply_regression(msg),
            Msg::Diff(v) => {
                if let Some(d) = &mut self.panes.stage.diff {
                    d.view = Some(*v);
                    d.message = None;
                }
            }
            Msg::DiffUnavailable(m) => {
                if let Some(d) = &mut self.panes.stage.diff {
                    d.message = Some(m);
                }
            }
            Msg::BaselineCandidates { stage, runs } => self.popups.push(Popup::PickBaseline {
                stage,
                picker: Picker::new(runs),
            }),
            Msg::Canaries(list) => self.canaries(list),
            Msg::CanarySeries {
                name,
                step_s,
                points,
            } => self.panes.canary.series = Some((name, step_s, points)),
            Msg::Dlq(page) => {
                let rows = super::panes::dlq::table_rows(self.size);
                self.panes.dlq.apply(page, rows);
            }
            Msg::Done(outcome) => self.done(&outcome),
            Msg::Failed(text) => self.flash(text, true),
        }
    }

    fn connected(&mut self, up: bool) {
        // Back after a disconnect: what is on screen may be stale; fetch it again.
        if up && !self.connected && self.ever_connected {
            self.stale.extend(ALL);
            self.refresh();
        }
        self.connected = up;
        self.ever_connected |= up;
    }

    fn canaries(&mut self, list: Vec<crate::model::CanaryStatus>) {
        let before = self.panes.canary.selected().map(|c| c.name.clone());
        self.panes.canary.apply(list);
        let shown = self
            .panes
            .canary
            .series
            .as_ref()
            .map(|(n, s, _)| (n.clone(), *s));
        let want = self
            .panes
            .canary
            .selected()
            .map(|c| (c.name.clone(), self.panes.canary.step_s()));
        if self.focus == PaneId::Canary && (before.is_none() || shown != want) {
            self.outbox.extend(self.panes.canary.series_request());
        }
    }

    /// A command went through: say so, and refresh only what it changed.
    fn done(&mut self, outcome: &Outcome) {
        self.flash(outcome.message(), false);
        let detail_of =
            |app: &App, run: RunId| app.panes.runs.detail.as_ref().is_some_and(|d| d.id == run);
        match outcome {
            Outcome::RunStarted { run } => {
                if let Some((pipeline, stage)) = self.pending_test.take() {
                    // Back returns to the asset whose version was tested.
                    self.open_stage(
                        super::panes::stage::Target {
                            run: *run,
                            pipeline,
                            stage,
                        },
                        PaneId::Assets,
                    );
                    // Beside the last production output (the previous successful run).
                    self.panes.stage.diff_previous = true;
                } else {
                    self.open_run(*run, PaneId::Runs);
                }
                self.stale.extend([Stale::Runs, Stale::Overview]);
            }
            Outcome::RunCancelled { run }
            | Outcome::RunRetried { run }
            | Outcome::RunResumed { run } => {
                self.stale.extend([Stale::Runs, Stale::Overview]);
                if detail_of(self, *run) {
                    self.stale.insert(Stale::Detail);
                }
            }
            Outcome::Requeued { run, .. } | Outcome::Discarded { run, .. } => {
                self.stale
                    .extend([Stale::Dlq, Stale::Overview, Stale::Runs]);
                if detail_of(self, *run) {
                    self.stale.insert(Stale::Detail);
                }
            }
            Outcome::Canary { .. } | Outcome::Fault { .. } => {
                self.stale.insert(Stale::Canaries);
            }
            Outcome::Asset { .. } => {
                self.stale.insert(Stale::Assets);
            }
        }
        self.refresh();
    }

    /// Fetches what changed and is on screen; what is off screen is fetched when shown.
    pub fn refresh(&mut self) {
        let stale = std::mem::take(&mut self.stale);
        let run_open = self.panes.runs.detail.is_some();
        for s in stale {
            let visible = match s {
                Stale::Overview => true,
                Stale::Runs => self.focus == PaneId::Runs && !run_open,
                Stale::Detail => self.focus == PaneId::Runs && run_open,
                Stale::Stage => self.focus == PaneId::Stage,
                Stale::Dlq => self.focus == PaneId::Dlq,
                Stale::Canaries => self.focus == PaneId::Canary,
                Stale::Assets => self.focus == PaneId::Assets,
                Stale::Pipelines => self.focus == PaneId::Pipelines,
            };
            if !visible {
                self.stale.insert(s);
                continue;
            }
            match s {
                Stale::Overview => self.outbox.push(Request::Overview),
                Stale::Runs => {
                    let req = self.panes.runs.refetch(self.size);
                    self.outbox.push(req);
                }
                Stale::Detail => {
                    if let Some(d) = &self.panes.runs.detail {
                        self.outbox.push(Request::Run { id: d.id });
                    }
                }
                Stale::Stage => self.outbox.extend(self.panes.stage.refetch()),
                Stale::Dlq => self.outbox.push(Request::Dlq),
                Stale::Assets => self.outbox.extend(self.panes.assets.refetch()),
                Stale::Pipelines => {
                    let req = self
                        .overview
                        .as_ref()
                        .and_then(|o| self.panes.pipelines.request(&o.pipelines));
                    self.outbox.extend(req);
                }
                Stale::Canaries => {
                    self.outbox.push(Request::Canaries);
                    self.outbox.extend(self.panes.canary.series_request());
                }
            }
        }
    }

    /// Answers for the Compare, Assets and Pipelines panes, and a saved screen.
    fn apply_regression(&mut self, msg: Msg) {
        match msg {
            Msg::Compare(v) => self.panes.compare.apply(*v),
            Msg::Saved(paths) => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.flash(format!("saved the screen: {}", names.join(", ")), false);
            }
            Msg::PipelineStats(stats) => {
                if let Some(o) = &self.overview {
                    self.panes
                        .pipelines
                        .apply(*stats, &o.pipelines, &o.breakers);
                }
            }
            Msg::Assets(list) => {
                let rows = super::panes::table_rows(self.size);
                let more = self.panes.assets.apply_list(list, rows);
                self.outbox.extend(more);
            }
            Msg::Asset { detail, pinned } => self.panes.assets.apply_detail(*detail, pinned),
            Msg::CompareFailed(why) => {
                self.panes.compare.failed(why.clone());
                self.flash(why, true);
            }
            _ => {}
        }
    }

    fn on_event(&mut self, e: &Event) {
        if let Some(run) = e.run_id {
            self.stale.insert(Stale::Runs);
            if self.panes.runs.detail.as_ref().is_some_and(|d| d.id == run) {
                self.stale.insert(Stale::Detail);
            }
            let stage = &self.panes.stage.target;
            if stage
                .as_ref()
                .is_some_and(|t| t.run == run && e.stage.as_deref() == Some(t.stage.as_str()))
            {
                self.stale.insert(Stale::Stage);
            }
        }
        match e.kind {
            EventKind::DlqAdded | EventKind::DlqRequeued | EventKind::DlqDiscarded => {
                self.stale.extend([Stale::Dlq, Stale::Overview]);
            }
            // The header's alerts and the count of runs in flight (quitting asks while any are).
            EventKind::BreakerChanged
            | EventKind::RunStarted
            | EventKind::RunFinished
            | EventKind::RunInterrupted => {
                self.stale.extend([Stale::Overview, Stale::Pipelines]);
            }
            EventKind::CanaryStarted | EventKind::CanaryAction | EventKind::CanaryAnalysis => {
                self.stale.insert(Stale::Canaries);
            }
            EventKind::AssetChanged => {
                self.stale.insert(Stale::Assets);
            }
            _ => {}
        }
        // The banner is for rollbacks nobody here is looking at.
        if e.kind == EventKind::CanaryAction
            && e.data["state_after"] == "rolled_back"
            && self.focus != PaneId::Canary
        {
            let name = e.data["canary"].as_str().unwrap_or("?");
            let actor = e.data["actor"].as_str().unwrap_or("?");
            let reason = e.data["reason"].as_str().unwrap_or("");
            let at = e.at.datetime().format("%H:%M:%S");
            self.alert = Some(format!(
                "ROLLBACK: canary {name} rolled back by {actor} at {at} UTC: {reason}"
            ));
        }
    }
}
