//! Requests without a valid token, kept from flooding the audit log: the first denial from a
//! client address in a minute is written at once; the rest of that minute are counted and
//! written as one record with the count when the minute ends. The table is bounded: past
//! [`MAX_PEERS`] addresses, further ones share one row.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use crate::model::{AuditRecord, MAX_TARGET_BYTES, Timestamp, Via, bounded};

/// Client addresses tracked at once.
pub const MAX_PEERS: usize = 4_096;
/// The row addresses beyond [`MAX_PEERS`] share.
const OTHERS: &str = "other addresses";

/// Denials from one client (an address, or a token) of one action since its first record
/// this minute.
#[derive(Debug, Clone)]
struct Folded {
    /// The record written for the first one; the later ones repeat it with a count.
    first: AuditRecord,
    /// Denials after the first, not written yet.
    more: u64,
    last_at: Timestamp,
    /// Whether the later ones named other targets than the first.
    varied: bool,
}

#[derive(Debug, Default)]
pub struct DenialFold {
    rows: Mutex<HashMap<(String, String, String), Folded>>,
}

impl DenialFold {
    /// Notes a denial from `peer`; returns the record to write now (the first this minute),
    /// or `None` when it was only counted.
    pub fn note(&self, peer: &str, mut rec: AuditRecord) -> Option<AuditRecord> {
        let mut rows = crate::sync::lock(&self.rows);
        let peer = if rows.len() >= MAX_PEERS && !rows.keys().any(|(p, _, _)| p == peer) {
            OTHERS
        } else {
            peer
        };
        let key = (peer.to_string(), rec.actor.clone(), rec.action.clone());
        if let Some(f) = rows.get_mut(&key) {
            f.more = f.more.saturating_add(1);
            f.last_at = rec.at;
            f.varied |=
                bounded(&crate::model::printable(&rec.target), MAX_TARGET_BYTES) != f.first.target;
            return None;
        }
        rec.target = bounded(&crate::model::printable(&rec.target), MAX_TARGET_BYTES);
        if let serde_json::Value::Object(m) = &mut rec.details {
            m.insert("peer".into(), json!(peer));
            m.insert("count".into(), json!(1));
        }
        rows.insert(
            key,
            Folded {
                first: rec.clone(),
                more: 0,
                last_at: rec.at,
                varied: false,
            },
        );
        Some(rec)
    }

    /// Ends the minute: one record per address that was denied again after its first, with
    /// how many times; the table starts empty.
    /// `now` is when the folded lines are written: they are stamped with it (so the log stays
    /// in time order) and say when the denials they stand for began and ended.
    pub fn flush(&self, now: Timestamp) -> Vec<AuditRecord> {
        let rows = std::mem::take(&mut *crate::sync::lock(&self.rows));
        let mut out: Vec<AuditRecord> = rows
            .into_values()
            .filter(|f| f.more > 0)
            .map(|f| {
                let mut rec = f.first;
                let first_at = rec.at;
                rec.at = now;
                rec.via = Some(Via::Api);
                if f.varied {
                    rec.target = format!("several, first {}", rec.target);
                }
                if let serde_json::Value::Object(m) = &mut rec.details {
                    m.insert("count".into(), json!(f.more));
                    m.insert("first_at".into(), json!(first_at));
                    m.insert("last_at".into(), json!(f.last_at));
                    m.insert(
                        "folded".into(),
                        json!("the same denial, repeated after the first record this minute"),
                    );
                }
                rec
            })
            .collect();
        out.sort_by(|a, b| a.actor.cmp(&b.actor).then(a.action.cmp(&b.action)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(actor: &str, target: &str) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_millis(1),
            actor: actor.into(),
            role: None,
            via: Some(Via::Api),
            action: "authenticate".into(),
            target: target.into(),
            reason: String::new(),
            outcome: "denied: unauthenticated".into(),
            details: json!({"message": "no token"}),
        }
    }

    #[test]
    fn repeats_from_one_address_are_one_record_a_minute_with_a_count() {
        let fold = DenialFold::default();
        let long = "/v1/".to_string() + &"x".repeat(30_000);
        let first = fold.note("10.0.0.1", denial("anonymous", &long)).unwrap();
        assert!(
            first.target.len() <= MAX_TARGET_BYTES,
            "{}",
            first.target.len()
        );
        assert_eq!(first.details["count"], 1);
        for _ in 0..299 {
            assert!(fold.note("10.0.0.1", denial("anonymous", &long)).is_none());
        }
        assert!(
            fold.note("10.0.0.2", denial("anonymous", "/v1/runs"))
                .is_some()
        );
        let flushed = fold.flush(Timestamp::from_millis(9));
        assert_eq!(flushed.len(), 1, "only the address that repeated");
        assert_eq!(flushed[0].details["count"], 299);
        assert_eq!(flushed[0].details["peer"], "10.0.0.1");
        assert!(fold.flush(Timestamp::from_millis(9)).is_empty());
        assert!(
            fold.note("10.0.0.1", denial("anonymous", "/")).is_some(),
            "a new minute"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let fold = DenialFold::default();
        for i in 0..MAX_PEERS + 100 {
            fold.note(&format!("peer-{i}"), denial("anonymous", "/"));
        }
        assert!(crate::sync::lock(&fold.rows).len() <= MAX_PEERS + 1);
    }
}
