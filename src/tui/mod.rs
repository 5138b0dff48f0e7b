//! The dashboard. It talks only to a [`Backend`]; it never reaches into the runtime.
//!
//! Terminal and backend events become state changes in [`app::App`]; [`view::render`] draws
//! that state. The screen is redrawn only when something changed, at most about 30 times a
//! second, through a buffered writer, so an idle dashboard over SSH sends almost nothing.

pub mod action;
pub mod app;
mod feed;
pub mod filter;
pub mod headless;
pub mod help;
pub mod keymap;
mod layered;
pub mod palette;
pub mod panes;
pub mod popup;
pub mod prepare;
pub mod report;
pub mod request;
pub mod snapshot;
pub mod theme;
pub mod view;
pub mod widgets;

use std::io::{BufWriter, Stdout, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, KeyEventKind,
};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::layout::Rect;
use tokio::sync::mpsc;

use crate::client::Backend;
use app::{App, Config};
use request::Worker;

/// The shortest time between two frames (about 30 frames a second during bursts).
pub const FRAME: Duration = Duration::from_millis(33);
/// How often changed data is fetched again while events stream in.
pub const REFRESH: Duration = Duration::from_millis(250);

type Term = Terminal<CrosstermBackend<BufWriter<Stdout>>>;

fn enter(mouse: bool) -> std::io::Result<Term> {
    enable_raw_mode()?;
    let mut out = std::io::stdout();
    execute!(out, EnterAlternateScreen, cursor::Hide)?;
    if mouse {
        execute!(out, EnableMouseCapture)?;
    }
    Terminal::new(CrosstermBackend::new(BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    )))
}

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let mut out = std::io::stdout();
    let _ = execute!(out, DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

/// Runs the dashboard until the user quits. The terminal is restored on quit, on error and on
/// panic.
/// How the dashboard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `q`, the palette's `quit`, or the terminal went away.
    Quit,
    /// Ctrl-C: the process exits 130.
    Interrupted,
}

pub async fn run(backend: Arc<dyn Backend>, config: Config) -> std::io::Result<Ended> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let mouse = config.mouse;
    let result = match enter(mouse) {
        Ok(mut term) => event_loop(&mut term, backend, config).await,
        Err(e) => Err(e),
    };
    restore();
    let _ = std::panic::take_hook();
    result
}

async fn event_loop(
    term: &mut Term,
    backend: Arc<dyn Backend>,
    config: Config,
) -> std::io::Result<Ended> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = Worker::new(
        backend,
        crate::client::local_actor(crate::model::Via::Dashboard),
        tx,
    );
    let size = term.size()?;
    let mut app = App::new(
        config,
        Rect::new(0, 0, size.width, size.height),
        chrono::Utc::now(),
    );
    let mut input = ratatui::crossterm::event::EventStream::new();
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_draw = Instant::now()
        .checked_sub(FRAME)
        .unwrap_or_else(Instant::now);
    loop {
        for req in app.take_requests() {
            worker.exec(req);
        }
        if app.quit {
            return Ok(if app.interrupted() {
                Ended::Interrupted
            } else {
                Ended::Quit
            });
        }
        if dirty && last_draw.elapsed() >= FRAME {
            term.draw(|f| view::render(f, &app))?;
            dirty = false;
            last_draw = Instant::now();
        }
        let next_frame = tokio::time::sleep_until((last_draw + FRAME).into());
        tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => { app.on_key(k); dirty = true; }
                Some(Ok(TermEvent::Mouse(m))) => { app.on_mouse(m); dirty = true; }
                Some(Ok(TermEvent::Resize(w, h))) => { app.on_resize(w, h); dirty = true; }
                Some(Ok(_)) => {}
                // The terminal is gone (SSH dropped): leave quietly.
                Some(Err(_)) | None => return Ok(Ended::Quit),
            },
            Some(msg) = rx.recv() => {
                app.apply(msg);
                // Take everything that is already waiting before drawing once.
                while let Ok(more) = rx.try_recv() {
                    app.apply(more);
                }
                dirty = true;
            }
            _ = clock.tick() => {
                if app.tick(chrono::Utc::now()) {
                    dirty = true;
                }
            }
            _ = refresh.tick() => app.refresh(),
            () = next_frame, if dirty => {}
        }
    }
}
