//! The peer cache: where our links reached their peers, kept in a file
//! (`state-dir`, one endpoint a line, at most eight) so that a restarted
//! member whose configured bootstraps are gone can still find the ring.
//! Read at start — each endpoint a bootstrap tried when the node is cut
//! off, as one learned from a link — and written (to a temporary file,
//! then renamed over the old one, so a crash never leaves half a file)
//! whenever the set of linked endpoints changed, looked at every 5 s.

use crate::node::Node;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use std::path::PathBuf;
use std::time::Duration;

/// How often the linked endpoints are compared with the file's.
pub(super) const EVERY: Duration = Duration::from_secs(5);

pub(super) struct PeerCache {
    path: PathBuf,
    written: Vec<Endpoint>,
    next: std::time::Instant,
    /// Writing failed once (a read-only file system, say): said, and
    /// not tried again.
    broken: bool,
}

impl PeerCache {
    /// Reads the cache at `path` (if there is one) into the node.
    pub(super) fn load(path: PathBuf, node: &mut Node, now: Instant) -> PeerCache {
        let mut written = Vec::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().map(str::trim) {
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    match line.parse::<Endpoint>() {
                        Ok(ep) if written.len() < crate::node::LEARNED_BOOTS => {
                            node.remember_bootstrap(now, ep);
                            written.push(ep);
                        }
                        Ok(_) => {}
                        Err(_) => log::warn!("{}: not an endpoint: {line:?}", path.display()),
                    }
                }
                if !written.is_empty() {
                    log::info!(
                        "{}: {} past peers as extra bootstraps",
                        path.display(),
                        written.len()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}: cannot read the peer cache: {e}", path.display()),
        }
        written.sort();
        PeerCache {
            path,
            written,
            next: std::time::Instant::now() + EVERY,
            broken: false,
        }
    }

    /// Writes the linked endpoints when they changed.
    pub(super) fn check(&mut self, node: &Node) {
        let wall = std::time::Instant::now();
        if self.broken || wall < self.next {
            return;
        }
        self.next = wall + EVERY;
        let eps = node.cache_endpoints();
        if eps.is_empty() || eps == self.written {
            return;
        }
        match self.write(&eps) {
            Ok(()) => self.written = eps,
            Err(e) => {
                log::warn!(
                    "{}: cannot write the peer cache ({e}); set `state-dir` to a writable directory",
                    self.path.display()
                );
                self.broken = true;
            }
        }
    }

    fn write(&self, eps: &[Endpoint]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let tmp = self.path.with_extension("peers.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(
            f,
            "# ringvpn peer cache: endpoints of recent links, tried when the bootstraps fail"
        )?;
        for ep in eps {
            writeln!(f, "{ep}")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}
