//! Each stage's attempts as bars on one time axis, from the run's start to its end (or now):
//! where the time went, what ran in parallel, which attempts failed.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{attempt_status, fit};
use crate::model::{Run, duration};
use crate::tui::theme::Theme;

pub struct Timeline<'a> {
    pub run: &'a Run,
    pub theme: &'a Theme,
    pub now: DateTime<Utc>,
    /// The first stage row to show (rows scroll with the stage table).
    pub first: usize,
}

impl Widget for Timeline<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.height < 2 || area.width < 20 {
            return;
        }
        let now_ms = self.now.timestamp_millis();
        let start = self
            .run
            .stages
            .iter()
            .flat_map(|s| s.attempts.iter())
            .map(|a| a.started_at.millis())
            .min();
        let Some(start) =
            start.or_else(|| self.run.started_at.map(crate::model::Timestamp::millis))
        else {
            return;
        };
        let end = self
            .run
            .stages
            .iter()
            .flat_map(|s| s.attempts.iter())
            .map(|a| {
                a.finished_at
                    .map_or(now_ms, crate::model::Timestamp::millis)
            })
            .max()
            .unwrap_or(start)
            .max(start + 1);
        let label_w = self
            .run
            .stages
            .iter()
            .map(|s| s.id.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 18);
        let bar_x = area.x + label_w as u16 + 1;
        let bar_w = area.width.saturating_sub(label_w as u16 + 1).max(1);
        let span = (end - start) as f64;
        let col = |t: i64| -> u16 {
            (((t - start) as f64 / span) * f64::from(bar_w))
                .floor()
                .clamp(0.0, f64::from(bar_w - 1)) as u16
        };
        let rows = usize::from(area.height - 1);
        for (row, stage) in self
            .run
            .stages
            .iter()
            .skip(self.first)
            .take(rows)
            .enumerate()
        {
            let y = area.y + row as u16;
            buf.set_string(
                area.x,
                y,
                fit(&stage.id, label_w),
                self.theme.style("ui.dim"),
            );
            for a in &stage.attempts {
                let from = col(a.started_at.millis());
                let to = col(a
                    .finished_at
                    .map_or(now_ms, crate::model::Timestamp::millis))
                .max(from);
                let (_, slot) = attempt_status(a.status);
                let style = self.theme.style(slot);
                for x in from..=to {
                    buf.set_string(bar_x + x, y, "█", style);
                }
            }
        }
        // The axis: the run's start and the span it covers.
        let total = duration::format(std::time::Duration::from_millis((end - start) as u64));
        let axis = Line::from(vec![
            Span::styled(
                format!("{:>w$} 0s", "", w = label_w),
                self.theme.style("ui.dim"),
            ),
            Span::styled(
                format!("{:>w$}", total, w = usize::from(bar_w).saturating_sub(2)),
                self.theme.style("ui.dim"),
            ),
        ]);
        buf.set_line(area.x, area.y + area.height - 1, &axis, area.width);
    }
}
