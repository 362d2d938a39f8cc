//! Reloading on SIGHUP or `ringvpn reload`: the config file and the files
//! it names are read again and checked as at start; a mistake is refused
//! with its `FILE:LINE` and the daemon goes on as it was. What can change
//! under running links changes — the log level, the inbound firewall
//! rules (flows the host opened stay open), the revocation list (read
//! again at once), a renewed certificate or CA list (our records signed
//! again) — and what cannot (the key, the TAP, the listen address, the
//! network, peers and bootstraps, a certificate that names us otherwise,
//! routes, …)
//! is named as needing a restart, not half applied. Links are untouched.

use super::Daemon;
use crate::config::Config;

/// Names the fields that differ between two configs, by name.
macro_rules! differing {
    ($a:expr, $b:expr, $($field:ident),* $(,)?) => {{
        let mut out: Vec<&'static str> = Vec::new();
        $(
            if format!("{:?}", $a.$field) != format!("{:?}", $b.$field) {
                out.push(stringify!($field));
            }
        )*
        out
    }};
}

impl Daemon {
    /// Reloads from the file the running config came from. Returns what
    /// was done, or why nothing was.
    pub(super) fn reload(&mut self) -> Result<String, String> {
        let path = self.cfg.source.clone();
        let mut new = crate::config::load(&path).map_err(|e| e.to_string())?;
        super::super::check_files(&new)?;
        // What the certificate fills in (network, name, address), as at
        // start, so that only real changes differ.
        let key = self.node.public_key();
        super::super::load_trust(&mut new, &key, false)?;
        let old = &self.cfg;
        let mut applied = Vec::new();
        if new.log != old.log {
            if let Some(level) = level(&new.log) {
                log::set_max_level(level);
                applied.push(format!("log = {}", new.log));
            }
        }
        if new.firewall != old.firewall && self.node.set_firewall_rules(new.firewall.clone()) {
            applied.push(format!("firewall ({} rules)", new.firewall.len()));
        }
        if new.revocations.is_some() {
            // Read again now, changed or not (the list may have been
            // replaced by one with the same modification time).
            self.revocations = new
                .revocations
                .clone()
                .map(super::super::RevocationFile::new_unread);
            applied.push("revocation list read again".into());
        }
        let mut restart_cert = None;
        if new.ca == self.cfg.ca && new.cert == self.cfg.cert {
            match self.renew_certificate(&new)? {
                Renewal::Same => {}
                Renewal::Applied(what) => applied.push(what),
                Renewal::NeedsRestart(what) => restart_cert = Some(what),
            }
        }
        let old = &self.cfg;
        // `address` may have been filled in from the certificate at start.
        let auto = old.auto_address || new.auto_address;
        let mut restart = differing!(
            old,
            new,
            key_file,
            listen,
            tap,
            mtu,
            network,
            subnet,
            ipv6,
            dhcp,
            tcp,
            control,
            peer_cache,
            fwmark,
            metrics,
            keepalive,
            relay_kib,
            ondemand,
            ondemand_idle,
            max_peers,
            ca,
            cert,
            overlay,
            bootstrap,
            bootstrap_names,
            peers,
            peer_routes,
            routing,
            auto_address,
            networks,
        );
        if !auto && old.address != new.address {
            restart.push("address");
        }
        restart.extend(restart_cert);
        let kept: Config = Config {
            log: new.log.clone(),
            firewall: new.firewall.clone(),
            revocations: new.revocations.clone(),
            ..self.cfg.clone()
        };
        self.cfg = kept;
        let mut said = format!("reloaded {}", path.display());
        if applied.is_empty() && restart.is_empty() {
            said.push_str(": nothing changed");
        }
        if !applied.is_empty() {
            said.push_str(&format!("; applied: {}", applied.join(", ")));
        }
        if !restart.is_empty() {
            said.push_str(&format!(
                "; changed but needs a restart: {}",
                restart.join(", ")
            ));
        }
        Ok(said)
    }

    /// Certificate mode: our certificate or the CA file changed on disk.
    /// A renewal (the same name, network, addresses, groups and routes:
    /// a new validity, a new CA signature) applies under running links;
    /// a certificate that says something else about us needs a restart.
    fn renew_certificate(&mut self, new: &Config) -> Result<Renewal, String> {
        let key = self.node.public_key();
        let Some((trust, bytes)) = super::super::load_trust(&mut new.clone(), &key, false)? else {
            return Ok(Renewal::Same);
        };
        let Some((old_bytes, old_cas)) = self.node.credentials() else {
            return Ok(Renewal::Same);
        };
        if old_bytes == bytes.as_slice() && old_cas == trust.cas.as_slice() {
            return Ok(Renewal::Same);
        }
        let decode = |b: &[u8]| crate::crypto::cert::Cert::decode(b).ok();
        let (Some(was), Some(now_cert)) = (decode(old_bytes), decode(&bytes)) else {
            return Ok(Renewal::NeedsRestart("certificate"));
        };
        let same_identity = was.name == now_cert.name
            && was.network == now_cert.network
            && was.prefixes == now_cert.prefixes
            && was.groups == now_cert.groups
            && was.routes == now_cert.routes;
        if !same_identity {
            return Ok(Renewal::NeedsRestart(
                "certificate (its name, addresses, groups or routes changed)",
            ));
        }
        let cas = trust.cas.len();
        let now = self.now();
        self.node.renew_credentials(now, bytes, trust.cas);
        Ok(Renewal::Applied(format!(
            "certificate valid until {} and {cas} CA(s) (records signed again, links kept)",
            crate::pki::utc(now_cert.not_after)
        )))
    }

    /// SIGHUP: reload and log the outcome.
    pub(super) fn reload_logged(&mut self) {
        match self.reload() {
            Ok(said) => log::info!("{said}"),
            Err(e) => log::error!("reload refused, running as before: {e}"),
        }
    }
}

/// What a reload does with the certificate files.
enum Renewal {
    Same,
    Applied(String),
    NeedsRestart(&'static str),
}

/// A `log =` value as a level filter.
pub fn level(v: &str) -> Option<log::LevelFilter> {
    v.parse().ok()
}
