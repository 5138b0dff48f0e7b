//! JSON-aware differences between two values: the paths that changed, then a line diff of the
//! pretty-printed documents. Pure, so the dashboard and run comparison share it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

/// How one path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathChange {
    /// A JSON path like `$.rows` or `$.items[3].price`.
    pub path: String,
    pub kind: ChangeKind,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One line of a line diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineTag {
    Same,
    Added,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    pub tag: LineTag,
    /// 1-based line numbers in the old and new text, where the line exists there.
    pub old: Option<usize>,
    pub new: Option<usize>,
    pub text: String,
}

/// The whole comparison of two values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonDiff {
    pub changes: Vec<PathChange>,
    pub lines: Vec<DiffLine>,
}

impl JsonDiff {
    pub fn is_same(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Most path changes listed; a diff of two large unrelated documents stays readable.
const MAX_CHANGES: usize = 500;

fn key_path(parent: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if simple {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", Value::String(key.to_string()))
    }
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<PathChange>) {
    if out.len() >= MAX_CHANGES {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => walk(&key_path(path, k), va, vb, out),
                    None => out.push(PathChange {
                        path: key_path(path, k),
                        kind: ChangeKind::Removed,
                        before: Some(va.clone()),
                        after: None,
                    }),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(PathChange {
                        path: key_path(path, k),
                        kind: ChangeKind::Added,
                        before: None,
                        after: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(&p, va, vb, out),
                    (Some(va), None) => {
                        out.push(PathChange {
                            path: p,
                            kind: ChangeKind::Removed,
                            before: Some(va.clone()),
                            after: None,
                        });
                    }
                    (None, Some(vb)) => {
                        out.push(PathChange {
                            path: p,
                            kind: ChangeKind::Added,
                            before: None,
                            after: Some(vb.clone()),
                        });
                    }
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(PathChange {
            path: path.to_string(),
            kind: ChangeKind::Changed,
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
        _ => {}
    }
}

/// Pretty JSON text for display and line diffs; strings that are not JSON stay as they are.
pub fn pretty(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// The same value with object keys in sorted order, so two documents that differ only in key
/// order print the same.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Compares `before` (the baseline) with `after`: changed paths, then a line diff of both
/// documents printed with sorted keys (key order is not a difference).
pub fn diff(before: &Value, after: &Value) -> JsonDiff {
    let mut changes = Vec::new();
    walk("$", before, after, &mut changes);
    let (a, b) = (pretty(&canonical(before)), pretty(&canonical(after)));
    let text = TextDiff::from_lines(&a, &b);
    let lines = text
        .iter_all_changes()
        .map(|c| DiffLine {
            tag: match c.tag() {
                ChangeTag::Equal => LineTag::Same,
                ChangeTag::Insert => LineTag::Added,
                ChangeTag::Delete => LineTag::Removed,
            },
            old: c.old_index().map(|i| i + 1),
            new: c.new_index().map(|i| i + 1),
            text: c.value().trim_end_matches('\n').to_string(),
        })
        .collect();
    JsonDiff { changes, lines }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_changed_paths_then_lines() {
        let a = json!({"rows": 10, "tags": ["a", "b"], "meta": {"source": "db", "old": true}});
        let b = json!({"rows": 12, "tags": ["a"], "meta": {"source": "db", "new key": 1}});
        let d = diff(&a, &b);
        let paths: Vec<(&str, ChangeKind)> = d
            .changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind))
            .collect();
        assert_eq!(
            paths,
            [
                ("$.rows", ChangeKind::Changed),
                ("$.tags[1]", ChangeKind::Removed),
                ("$.meta.old", ChangeKind::Removed),
                ("$.meta[\"new key\"]", ChangeKind::Added),
            ]
        );
        assert!(
            d.lines
                .iter()
                .any(|l| l.tag == LineTag::Removed && l.text.contains("\"rows\": 10"))
        );
        assert!(
            d.lines
                .iter()
                .any(|l| l.tag == LineTag::Added && l.text.contains("\"rows\": 12"))
        );
        assert!(diff(&a, &a).is_same());
        // Key order is not a difference, in paths or lines.
        let reordered =
            json!({"meta": {"old": true, "source": "db"}, "tags": ["a", "b"], "rows": 10});
        let same = diff(&a, &reordered);
        assert!(same.is_same() && same.lines.iter().all(|l| l.tag == LineTag::Same));
    }
}
