//! The event stream's body: Server-Sent Events written by hand so that a hundred clients cost
//! little more than one. Each event's frame is made once for all of them (`EventFrames`), and
//! the events a stream has ready are written as one chunk instead of one write each. A comment
//! line every 15 s keeps proxies and clients from taking a quiet stream for a dead one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::cache::EventFrames;
use crate::client::{EventStream, StreamItem};

pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Frames written in one chunk at most.
const BATCH: usize = 256;

/// What a stream needs while it runs; `_keep` is dropped when it ends (the client count).
pub struct Stream<K> {
    pub items: EventStream,
    pub frames: Arc<EventFrames>,
    pub stop: CancellationToken,
    pub _keep: K,
}

fn frame_of(item: &StreamItem, frames: &EventFrames, out: &mut Vec<u8>) {
    match item {
        StreamItem::Event(e) => out.extend_from_slice(&frames.of(e)),
        StreamItem::Reset { last_seq } => out.extend_from_slice(
            format!("id: {last_seq}\nevent: reset\ndata: {{\"last_seq\":{last_seq}}}\n\n")
                .as_bytes(),
        ),
        StreamItem::Connected(_) => {}
    }
}

/// The response: `text/event-stream`, ending when the events end or the server stops.
pub fn response<K: Send + 'static>(s: Stream<K>) -> Response {
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (what the stream runs on, its heartbeat, whether the events have ended)
    let state = (s, heartbeat, false);
    let body = futures::stream::unfold(state, |(mut s, mut heartbeat, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let first = tokio::select! {
                () = s.stop.cancelled() => return None,
                item = s.items.next() => item?,
                _ = heartbeat.tick() => {
                    let beat = Bytes::from_static(b":heartbeat\n\n");
                    return Some((Ok::<_, std::convert::Infallible>(beat), (s, heartbeat, false)));
                }
            };
            let mut out = Vec::new();
            frame_of(&first, &s.frames, &mut out);
            // Whatever else is ready goes in the same chunk; an ended stream is not asked again.
            let mut ended = false;
            for _ in 1..BATCH {
                match s.items.next().now_or_never() {
                    Some(Some(item)) => frame_of(&item, &s.frames, &mut out),
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            if !out.is_empty() {
                heartbeat.reset();
                return Some((Ok(Bytes::from(out)), (s, heartbeat, ended)));
            }
            if ended {
                return None;
            }
        }
    });
    let mut r = Response::new(Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
