//! Choosing: each advertiser's health from the node's word on when it
//! was last heard, the advertiser per prefix (stay while it lives; the
//! fastest live one otherwise; a move only for a clear and stable gain),
//! and the overlaps that are refused.

use super::*;

impl Routes {
    /// Probes the advertisers we use or might use, and judges each by
    /// when it was last heard.
    pub(super) fn probe(&mut self, now: Instant, live: &impl Liveness) {
        let mut probed = 0;
        for i in 0..self.advertisers.len() {
            if !self.candidate(&self.advertisers[i]) {
                self.advertisers[i].health = Health::default();
                continue;
            }
            let a = &mut self.advertisers[i];
            let (heard, rtt) = live.heard(&a.key);
            let h = &mut a.health;
            h.heard = heard;
            h.sample(rtt);
            let since = *h.probing_since.get_or_insert(now);
            // Heard since we began probing, and recently: alive.
            let alive = heard.is_some_and(|t| t >= since && now.saturating_since(t) < DEAD_AFTER);
            match (alive, h.up_since) {
                (true, None) => h.up_since = Some(now),
                (false, Some(_)) => {
                    log::warn!("routes: {} stopped answering", a.name);
                    h.up_since = None;
                }
                _ => {}
            }
            if probed < MAX_PROBED {
                probed += 1;
                self.actions.push(Action::Probe(a.key));
            }
        }
    }

    /// Whether we might send through `a`: it offers an exit we would
    /// take, or a subnet route we accept.
    fn candidate(&self, a: &Advertiser) -> bool {
        a.prefixes.iter().any(|p| self.usable(a, p))
    }

    pub(super) fn usable(&self, a: &Advertiser, p: &Prefix) -> bool {
        if p.is_default() {
            match &self.cfg.exit {
                Exit::Off => false,
                Exit::Auto => true,
                Exit::Named(n) => *n == a.name || a.ip.is_some_and(|ip| n.parse() == Ok(ip)),
            }
        } else {
            self.cfg.accept
                && !self.cfg.advertise.contains(p)
                && !self.overlaps.iter().any(|o| o.prefix == *p)
        }
    }

    /// Different prefixes that overlap (from different advertisers, or
    /// one inside the VPN's own range) are refused, both of them.
    pub(super) fn find_overlaps(&mut self) {
        let mut found = Vec::new();
        for a in &self.advertisers {
            for p in a.prefixes.iter().filter(|p| !p.is_default()) {
                if let Some(v) = self.cfg.vpn.iter().find(|v| v.overlaps(p)) {
                    found.push(Overlap {
                        prefix: *p,
                        advertiser: a.name.clone(),
                        other: *v,
                        other_advertiser: "the VPN itself".into(),
                    });
                    continue;
                }
                let clash = self.advertisers.iter().find_map(|b| {
                    let q = b
                        .prefixes
                        .iter()
                        .find(|q| !q.is_default() && *q != p && q.overlaps(p) && b.key != a.key)?;
                    Some((b, *q))
                });
                let mine = self
                    .cfg
                    .advertise
                    .iter()
                    .find(|q| !q.is_default() && **q != *p && q.overlaps(p));
                if let Some((b, q)) = clash {
                    found.push(Overlap {
                        prefix: *p,
                        advertiser: a.name.clone(),
                        other: q,
                        other_advertiser: b.name.clone(),
                    });
                } else if let Some(q) = mine {
                    found.push(Overlap {
                        prefix: *p,
                        advertiser: a.name.clone(),
                        other: *q,
                        other_advertiser: "this member".into(),
                    });
                }
            }
        }
        for o in &found {
            if !self.overlaps.contains(o) {
                self.stats.overlaps_refused += 1;
                log::error!(
                    "routes: {} from {} overlaps {} from {}: both refused",
                    o.prefix,
                    o.advertiser,
                    o.other,
                    o.other_advertiser
                );
            }
        }
        self.overlaps = found;
    }

    // ----- choosing -----

    /// Picks an advertiser for every usable prefix, rebuilds the data
    /// path's table, and tells the shell which subnet routes changed.
    pub(super) fn choose(&mut self, now: Instant) {
        let mut prefixes: Vec<Prefix> = Vec::new();
        for a in &self.advertisers {
            for p in &a.prefixes {
                if self.usable(a, p) && !prefixes.contains(p) {
                    prefixes.push(*p);
                }
            }
        }
        let mut table: SmallVec<[InUse; 8]> = SmallVec::new();
        for p in &prefixes {
            let current = self.table.iter().find(|u| u.prefix == *p).map(|u| u.via);
            if let Some(via) = self.pick(now, p, current) {
                if current.is_some_and(|c| c != via) {
                    self.stats.switches += 1;
                    log::warn!("routes: {p} now through {}", self.name_of(&via));
                } else if current.is_none() {
                    log::info!("routes: {p} through {}", self.name_of(&via));
                }
                table.push(InUse { prefix: *p, via });
            }
        }
        self.exit_why = match (&self.cfg.exit, table.iter().any(|u| u.prefix.is_default())) {
            (Exit::Off, _) => "off",
            (Exit::Auto, true) => "the live gateway with the lowest RTT (stays while it answers)",
            (Exit::Named(_), true) => "the configured gateway",
            (_, false) if prefixes.iter().any(|p| p.is_default()) => {
                "no gateway answers: internet traffic is dropped"
            }
            (_, false) => "no gateway advertises 0.0.0.0/0 yet: internet traffic is dropped",
        };
        self.table = table;
        // Subnet routes for the shell: installed while anyone offers them.
        for p in prefixes.iter().filter(|p| !p.is_default()) {
            if !self.installed.contains(p) {
                self.installed.push(*p);
                self.actions.push(Action::Install(*p));
            }
        }
        let gone: Vec<Prefix> = self
            .installed
            .iter()
            .filter(|p| !prefixes.contains(p))
            .copied()
            .collect();
        for p in gone {
            self.installed.retain(|q| *q != p);
            self.actions.push(Action::Remove(p));
        }
    }

    /// The advertiser for `p`: the current one while it lives; otherwise
    /// (or when another is clearly faster and stable) the live one with
    /// the lowest RTT.
    fn pick(&self, now: Instant, p: &Prefix, current: Option<NodeKey>) -> Option<NodeKey> {
        let offers = |a: &&Advertiser| a.prefixes.contains(p) && self.usable(a, p);
        let live = self
            .advertisers
            .iter()
            .filter(offers)
            .filter(|a| a.health.alive());
        let rtt = |a: &Advertiser| a.health.floor_rtt().unwrap_or(Duration::from_secs(1));
        let best = live.min_by_key(|a| (rtt(a), a.key.0))?;
        let Some(cur) = current.and_then(|c| {
            self.advertisers
                .iter()
                .find(|a| a.key == c && offers(a) && a.health.alive())
        }) else {
            return Some(best.key);
        };
        let stable = best
            .health
            .up_since
            .is_some_and(|t| now.saturating_since(t) >= STABLE_FOR);
        let faster = rtt(best) + rtt(best) / 2 + WORTH_MOVING < rtt(cur);
        Some(if stable && faster { best.key } else { cur.key })
    }
}
