//! `[public]` and `[network NAME]` (sub-ring mode, docs/SUBRINGS.md):
//! the keys each takes, and the checks across networks once the file is
//! read — each network's own `[node]`-like checks, then no two sharing a
//! TAP or overlapping subnets, and no network using the public node's key.

use super::super::{Config, ConfigError, NetworkConfig};
use super::Draft;
use crate::net::Prefix;
use std::net::Ipv4Addr;
use std::path::Path;

/// Keys a `[network NAME]` section takes: what one network's node and
/// TAP need. The daemon-wide ones (listen, control, log, …) are
/// `[public]`'s.
pub(super) const NETWORK_KEYS: &[&str] = &[
    "key",
    "tap",
    "address",
    "mtu",
    "name",
    "subnet",
    "ipv6",
    "dhcp",
    "ca",
    "cert",
    "revocations",
    "cipher",
    "ondemand",
    "ondemand-idle",
    "max-peers",
];

/// Keys `[public]` does not take: the VPN's, which are each network's.
pub(super) const VPN_KEYS: &[&str] = &[
    "tap",
    "address",
    "name",
    "subnet",
    "ipv6",
    "dhcp",
    "mtu",
    "network",
    "gateway",
    "routes",
    "route-masquerade",
    "exit",
    "exit-lan",
    "accept-routes",
];

/// The networks, finished and checked; `d` (the `[public]` or `[node]`
/// draft) is set for sub-ring mode if there are any.
pub(super) fn finish(
    d: &mut Draft,
    path: &Path,
    need_key: bool,
) -> Result<Vec<NetworkConfig>, ConfigError> {
    let err = |line: usize, msg: String| ConfigError {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let nets = core::mem::take(&mut d.networks);
    let public = d.public_line;
    if !nets.is_empty() && public == 0 {
        return Err(err(
            nets[0].1,
            "[network NAME] needs a [public] section (the public ring the networks meet on)".into(),
        ));
    }
    if public != 0 && !d.peers.is_empty() {
        return Err(err(
            d.peers[0].line,
            "[peer] does not go with [public]: sub-ring mode is overlay-only".into(),
        ));
    }
    if public != 0 {
        d.overlay = true;
        d.overlay_set = true;
    }
    let mut networks = Vec::new();
    for (name, line, mut n) in nets {
        n.overlay = true;
        n.overlay_set = true;
        n.listen = d.listen;
        let section = format!("[network {name}]");
        let mut c = n.finish(need_key, &section).map_err(|(l, msg)| {
            let msg = match msg.starts_with(&section) {
                true => msg,
                false => format!("{section}: {msg}"),
            };
            err(if l == 0 { line } else { l }, msg)
        })?;
        if networks.iter().any(|o: &NetworkConfig| o.cfg.tap == c.tap) {
            return Err(err(
                line,
                format!("[network {name}]: tap {} is another network's", c.tap),
            ));
        }
        let subnet = |c: &Config| Prefix::new(c.subnet.0.into(), c.subnet.1);
        if let Some(o) = networks
            .iter()
            .find(|o: &&NetworkConfig| subnet(&o.cfg).overlaps(&subnet(&c)))
        {
            return Err(err(
                line,
                format!(
                    "[network {name}]: its subnet {} overlaps network {}'s {} (one host cannot route both into two TAPs: give each network its own, e.g. `address = 100.64.2.10/24`)",
                    network_of(c.subnet), o.name, network_of(o.cfg.subnet)
                ),
            ));
        }
        if d.key_file.as_ref().is_some_and(|k| *k == c.key_file) {
            return Err(err(line, format!("[network {name}]: its key must not be the public node's (members would be linkable across rings)")));
        }
        c.source = path.to_path_buf();
        networks.push(NetworkConfig { name, line, cfg: c });
    }
    Ok(networks)
}

/// `IPV4/LEN` with the host bits cleared.
fn network_of((ip, len): (Ipv4Addr, u8)) -> String {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    format!("{}/{len}", Ipv4Addr::from(u32::from(ip) & mask))
}
