//! Answers to the reads dashboards repeat (the runs page every few seconds, from every
//! client), kept as the bytes sent and reused while nothing has been written since: the key
//! is the request, and an entry is good only for the store generation it was read at. A
//! write makes every entry stale at once; the table is bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// Distinct requests kept, and the bytes they may hold in all; past either the table starts
/// again (a thousand-row page is large, and a client can ask for many different ones).
const MAX_ENTRIES: usize = 256;
const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct PageCache {
    entries: Mutex<HashMap<String, (u64, Bytes)>>,
}

impl PageCache {
    /// The bytes answered for `key` at store generation `generation`, if kept.
    pub fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        let entries = crate::sync::lock(&self.entries);
        entries
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, b)| b.clone())
    }

    /// Keeps `bytes` as the answer for `key`, read at `generation` (the generation seen
    /// before reading: a write during the read only makes the entry fresher than its key).
    pub fn put(&self, key: String, generation: u64, bytes: Bytes) {
        if bytes.len() > MAX_BYTES / 4 {
            return;
        }
        let mut entries = crate::sync::lock(&self.entries);
        let held: usize = entries.values().map(|(_, b)| b.len()).sum();
        if (entries.len() >= MAX_ENTRIES && !entries.contains_key(&key))
            || held + bytes.len() > MAX_BYTES
        {
            entries.retain(|_, (g, _)| *g == generation);
            let held: usize = entries.values().map(|(_, b)| b.len()).sum();
            if entries.len() >= MAX_ENTRIES || held + bytes.len() > MAX_BYTES {
                entries.clear();
            }
        }
        entries.insert(key, (generation, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_only_its_generation_and_the_table_is_bounded() {
        let c = PageCache::default();
        c.put("runs?limit=50".into(), 7, Bytes::from_static(b"a"));
        assert_eq!(c.get("runs?limit=50", 7), Some(Bytes::from_static(b"a")));
        assert_eq!(c.get("runs?limit=50", 8), None, "a write happened since");
        assert_eq!(c.get("runs?limit=10", 7), None);
        for i in 0..MAX_ENTRIES * 2 {
            c.put(format!("k{i}"), 9, Bytes::from_static(b"x"));
        }
        assert!(crate::sync::lock(&c.entries).len() <= MAX_ENTRIES);
        // However large the pages, the table holds at most its byte budget.
        let big = Bytes::from(vec![b'x'; MAX_BYTES / 8]);
        for i in 0..20 {
            c.put(format!("big{i}"), 9, big.clone());
        }
        let held: usize = crate::sync::lock(&c.entries)
            .values()
            .map(|(_, b)| b.len())
            .sum();
        assert!(held <= MAX_BYTES, "{held}");
    }
}

/// Events as the frames an event stream sends (`id`, `event` and `data` lines), made once for
/// every client that follows (a hundred dashboards would otherwise serialize each event a
/// hundred times). Bounded: the oldest go first.
#[derive(Debug, Default)]
pub struct EventFrames {
    inner: Mutex<Frames>,
}

/// Frames by sequence number, and their order of arrival (for eviction).
#[derive(Debug, Default)]
struct Frames {
    by_seq: HashMap<u64, Bytes>,
    order: std::collections::VecDeque<u64>,
}

impl EventFrames {
    /// Events kept as frames.
    const MAX: usize = 16_384;

    pub fn of(&self, e: &crate::model::Event) -> Bytes {
        if let Some(b) = crate::sync::lock(&self.inner).by_seq.get(&e.seq) {
            return b.clone();
        }
        // JSON escapes every newline, so the data is one line, as a frame needs.
        let json = serde_json::to_string(e).unwrap_or_default();
        let frame = Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {json}\n\n",
            e.seq,
            e.kind.as_str()
        ));
        let mut inner = crate::sync::lock(&self.inner);
        let Frames { by_seq, order } = &mut *inner;
        if by_seq.insert(e.seq, frame.clone()).is_none() {
            order.push_back(e.seq);
            while order.len() > Self::MAX {
                if let Some(old) = order.pop_front() {
                    by_seq.remove(&old);
                }
            }
        }
        frame
    }
}
