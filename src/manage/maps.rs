//! The maps: each node's own part of a task, from what the node knows
//! ([`Local`]) and its connection table.

use super::Local;
use crate::overlay::Overlay;
use crate::wire::task::{Reduced, TaskKind};
use smallvec::SmallVec;

/// This node's part of a task.
pub(super) fn map(
    kind: TaskKind,
    args: &[u8],
    ov: &Overlay,
    local: &impl Local,
    out: &mut Reduced,
) {
    match kind {
        TaskKind::Stats => local.stats(out),
        // The description goes straight to the origin (`run`).
        TaskKind::Crawl => out.add("members", 1),
        TaskKind::Check => check(ov, out),
        TaskKind::Find => {
            out.add("members", 1);
            let query = std::str::from_utf8(args).unwrap_or("");
            if let Some(name) = local.find(query) {
                out.add("found", 1);
                out.item(&name);
            }
        }
    }
}

/// The notes' consistency map: is my left neighbour's right neighbour
/// me, and my second left's second right? What a neighbour's neighbours
/// are comes from its last connection list (address prefixes).
fn check(ov: &Overlay, out: &mut Reduced) {
    let me = ov.addr();
    out.add("members", 1);
    let mut left: SmallVec<[(u128, &crate::overlay::table::Conn); 4]> = ov
        .table()
        .iter()
        .map(|c| (c.addr.right_dist(me), c))
        .filter(|(d, _)| *d != 0)
        .collect();
    left.sort_by_key(|(d, _)| *d);
    let mine = (me.0 >> 64) as u64;
    let nth_right = |c: &crate::overlay::table::Conn, n: usize| {
        let from = (c.addr.0 >> 64) as u64;
        let mut r: SmallVec<[u64; 16]> = c.nbrs.iter().copied().filter(|&a| a != from).collect();
        r.sort_by_key(|&a| a.wrapping_sub(from));
        r.get(n).copied()
    };
    let mut misses = Vec::new();
    for (n, name) in [(0, "left1_hits"), (1, "left2_hits")] {
        let hit = left
            .get(n)
            .and_then(|(_, c)| nth_right(c, n))
            .is_some_and(|a| a == mine);
        if hit {
            out.add(name, 1);
        } else {
            misses.push(n + 1);
        }
    }
    if !misses.is_empty() {
        let which = if misses.len() == 2 {
            "left1,left2"
        } else if misses[0] == 1 {
            "left1"
        } else {
            "left2"
        };
        out.item(&format!("{} {which}", &me.to_hex()[..16]));
    }
}
