//! The stage graph: `needs` naming stages that exist, and no cycles (each one named).

use std::collections::HashMap;

use super::StageHead;
use crate::diag::{Checker, suggest};

/// Duplicate ids, `needs` that name no stage, and cycles.
pub(super) fn check_graph(c: &mut Checker<'_>, stages: &[StageHead]) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, s) in stages.iter().enumerate() {
        if s.id.is_empty() {
            continue;
        }
        if let Some(&j) = first.get(s.id.as_str()) {
            let (line, _) = c.source().locate(stages[j].id_span.start);
            c.error(
                &s.id_span,
                format!(
                    "duplicate stage id `{}` (first defined on line {line})",
                    s.id
                ),
            );
        } else {
            first.insert(&s.id, i);
        }
    }
    let mut ids: Vec<&str> = first.keys().copied().collect();
    ids.sort_by_key(|id| first[id]);
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); stages.len()];
    for (i, s) in stages.iter().enumerate() {
        let mut seen = Vec::new();
        for (k, need) in s.needs.iter().enumerate() {
            let span = &s.needs_spans[k];
            if seen.contains(&need) {
                c.error(
                    span,
                    format!("stage `{}` lists `{need}` in `needs` more than once", s.id),
                );
                continue;
            }
            seen.push(need);
            match first.get(need.as_str()) {
                Some(&j) => edges[i].push((j, k)),
                None => {
                    let hint = suggest(need, &ids)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    c.error(
                        span,
                        format!(
                            "stage `{}` needs `{need}`, which is not a stage in this pipeline{hint}; stages: {}",
                            s.id,
                            ids.join(", ")
                        ),
                    );
                }
            }
        }
    }
    for cycle in find_cycles(&edges) {
        let names: Vec<&str> = cycle.iter().map(|&i| stages[i].id.as_str()).collect();
        let (from, to) = (cycle[0], cycle[1 % cycle.len()]);
        let k = edges[from]
            .iter()
            .find(|(j, _)| *j == to)
            .map_or(0, |(_, k)| *k);
        let span = stages[from]
            .needs_spans
            .get(k)
            .cloned()
            .unwrap_or_else(|| stages[from].id_span.clone());
        c.error(
            &span,
            format!(
                "`needs` forms a cycle: {} -> {} (each stage needs the next)",
                names.join(" -> "),
                names[0]
            ),
        );
    }
}

/// Every distinct elementary cycle reachable by depth-first search, each rotated to start at its
/// smallest index so the same cycle is reported once.
fn find_cycles(edges: &[Vec<(usize, usize)>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut colour = vec![0u8; n];
    let mut found: Vec<Vec<usize>> = Vec::new();
    for root in 0..n {
        if colour[root] != 0 {
            continue;
        }
        // Iterative DFS: (node, next edge index); `path` mirrors the stack.
        let mut stack = vec![(root, 0usize)];
        let mut path = vec![root];
        colour[root] = 1;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            if let Some(&(to, _)) = edges[node].get(*next) {
                *next += 1;
                match colour[to] {
                    0 => {
                        colour[to] = 1;
                        stack.push((to, 0));
                        path.push(to);
                    }
                    1 => {
                        if let Some(pos) = path.iter().position(|&p| p == to) {
                            let mut cycle = path[pos..].to_vec();
                            let min_pos = cycle
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, v)| **v)
                                .map_or(0, |(i, _)| i);
                            cycle.rotate_left(min_pos);
                            if !found.contains(&cycle) {
                                found.push(cycle);
                            }
                        }
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                stack.pop();
                path.pop();
            }
        }
    }
    found
}
