//! Bootstraps given by name (`bootstrap = vpn.example.org:5140`),
//! resolved here — the core never does I/O — at start, and again every
//! 30 s while the node has no link: a bootstrap that moved, or DNS that
//! was not up yet when the daemon started. Resolving blocks (the
//! system's resolver), so it runs only while there is no link to keep
//! going; each name gives at most four addresses.

use crate::node::Node;
use crate::time::Instant;
use std::net::ToSocketAddrs;
use std::time::Duration;

/// Between resolutions while the node has no link.
const RETRY: Duration = Duration::from_secs(30);
const PER_NAME: usize = 4;

pub(super) struct BootNames {
    names: Vec<String>,
    next: Option<std::time::Instant>,
}

impl BootNames {
    pub(super) fn new(names: Vec<String>) -> BootNames {
        BootNames { names, next: None }
    }

    /// Resolves the names when due, handing what they name to the node.
    pub(super) fn check(&mut self, node: &mut Node, now: Instant) {
        let wall = std::time::Instant::now();
        if self.names.is_empty() || self.next.is_some_and(|n| wall < n) {
            return;
        }
        let first = self.next.is_none();
        self.next = Some(wall + RETRY);
        if !first && node.has_links() {
            return;
        }
        for name in &self.names {
            match name.to_socket_addrs() {
                Ok(addrs) => {
                    let addrs: Vec<_> = addrs.take(PER_NAME).collect();
                    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    log::info!("bootstrap {name}: {}", list.join(", "));
                    for a in addrs {
                        node.add_bootstrap(now, a);
                    }
                }
                Err(e) => log::warn!("bootstrap {name}: cannot resolve: {e}"),
            }
        }
    }
}
