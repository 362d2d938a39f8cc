//! The group CA's offline tools behind `ringvpn ca …` and `ringvpn cert …`:
//! key and certificate files, signing, revocation lists, showing them.
//! Nothing here runs in the daemon except the loaders.

use crate::config::{load_key, write_new_key};
use crate::crypto::cert::{
    armour, dearmour, Cert, Prefix, Revocations, CERT_ARMOUR, KIND_CA, REVOCATIONS_ARMOUR, SIG_LEN,
};
use crate::crypto::{Identity, NodeKey, Seed};
use std::path::Path;

/// A day in seconds.
pub const DAY: u64 = 86_400;

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every certificate in an armoured file (a CA file may hold two during a
/// rollover).
pub fn load_certs(path: &Path) -> Result<Vec<Cert>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    dearmour(CERT_ARMOUR, &text)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .iter()
        .map(|b| Cert::decode(b).map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

/// The one certificate in a file, as bytes and parsed.
pub fn load_cert(path: &Path) -> Result<(Vec<u8>, Cert), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let blocks = dearmour(CERT_ARMOUR, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let [bytes] = <[Vec<u8>; 1]>::try_from(blocks)
        .map_err(|_| format!("{}: expected exactly one certificate", path.display()))?;
    let cert = Cert::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((bytes, cert))
}

pub fn load_revocations(path: &Path) -> Result<Revocations, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let blocks =
        dearmour(REVOCATIONS_ARMOUR, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let [bytes] = <[Vec<u8>; 1]>::try_from(blocks)
        .map_err(|_| format!("{}: expected exactly one revocation list", path.display()))?;
    Revocations::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a text file, refusing to overwrite one.
fn write_new(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `ringvpn ca init`: a new CA key (mode 0600) and its self-signed
/// certificate for `network`, valid from now for `days`.
/// A network name a config can carry: `network = NET`, where `#` starts a
/// comment and spaces are trimmed (a CA for another name would be one no
/// config can use).
pub fn check_network_name(network: &str) -> Result<(), String> {
    let usable = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    if network.is_empty() || network.len() > 64 || !network.chars().all(usable) {
        return Err(format!(
            "network {network:?}: use 1 to 64 letters, digits, `-`, `.` and `_` (the config's `network =` must be able to name it)"
        ));
    }
    Ok(())
}

pub fn ca_init(
    key_path: &Path,
    cert_path: &Path,
    network: &str,
    name: &str,
    days: u64,
) -> Result<Cert, String> {
    check_network_name(network)?;
    let seed = Seed::generate();
    let id = Identity::from_seed(&seed);
    let now = unix_now();
    let valid = (now, now.saturating_add(days.saturating_mul(DAY)));
    let cert = Cert::new_ca(&id, network, name, valid)
        .map_err(|_| "network and name must be 1 to 64 printable bytes".to_string())?;
    let bytes = cert.encode().map_err(|e| e.to_string())?;
    write_new_key(key_path, &seed)?;
    write_new(cert_path, &armour(CERT_ARMOUR, &bytes))?;
    Ok(cert)
}

/// What `ringvpn cert sign` certifies.
pub struct SignRequest {
    pub subject: NodeKey,
    pub name: String,
    pub prefixes: Vec<Prefix>,
    pub groups: Vec<String>,
    /// Prefixes it may carry traffic for (docs/PROTOCOL.md: version 2).
    pub routes: Vec<Prefix>,
    pub not_before: u64,
    pub days: u64,
}

/// Signs a node certificate with the CA key, for the CA's network; the
/// validity may not outlast the CA's.
pub fn sign(ca_key: &Path, ca_cert: &Path, req: SignRequest) -> Result<Cert, String> {
    let id = Identity::from_seed(&load_key(ca_key)?);
    let ca = load_certs(ca_cert)?
        .into_iter()
        .find(|c| c.subject == id.public() && c.kind == KIND_CA)
        .ok_or_else(|| format!("{}: no CA certificate for this key", ca_cert.display()))?;
    let not_after = req
        .not_before
        .saturating_add(req.days.saturating_mul(DAY))
        .min(ca.not_after);
    let valid = (req.not_before, not_after);
    Cert::new_node(
        &id,
        req.subject,
        &ca.network,
        &req.name,
        req.prefixes,
        req.groups,
        valid,
    )
    .and_then(|c| match req.routes.is_empty() {
        true => Ok(c),
        false => c.with_routes(req.routes, &id),
    })
    .map_err(|_| {
        "name and groups must be printable (name ≤ 64 bytes, ≤ 8 groups of ≤ 32), ≤ 8 prefixes, ≤ 16 routes"
            .to_string()
    })
}

/// `ringvpn cert revoke`: a new list from the CA adding `keys` to the one
/// in `previous` (if any), with the next serial.
pub fn revoke(
    ca_key: &Path,
    previous: Option<&Revocations>,
    keys: &[NodeKey],
) -> Result<Revocations, String> {
    let id = Identity::from_seed(&load_key(ca_key)?);
    let mut revoked: Vec<NodeKey> = previous.map(|p| p.revoked.clone()).unwrap_or_default();
    if previous.is_some_and(|p| p.issuer != id.public()) {
        return Err("the previous list was signed by another CA".into());
    }
    revoked.extend_from_slice(keys);
    Revocations {
        issuer: id.public(),
        serial: previous.map_or(1, |p| p.serial + 1),
        issued_at: unix_now(),
        revoked,
        signature: [0; SIG_LEN],
    }
    .sign(&id)
    .map_err(|_| format!("at most {} revoked keys", crate::crypto::cert::MAX_REVOKED))
}

pub fn write_cert(path: &Path, cert: &Cert) -> Result<(), String> {
    let bytes = cert.encode().map_err(|e| e.to_string())?;
    write_new(path, &armour(CERT_ARMOUR, &bytes))
}

/// Writes a revocation list (replacing the file: lists are meant to be
/// updated in place, and an older one never wins anyway).
pub fn write_revocations(path: &Path, list: &Revocations) -> Result<(), String> {
    let bytes = list.encode().map_err(|e| e.to_string())?;
    std::fs::write(path, armour(REVOCATIONS_ARMOUR, &bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A certificate's fingerprint: SHA-256 of its encoding, in hex (what
/// `cert show` prints, to compare a certificate with the one expected).
pub fn fingerprint(c: &Cert) -> String {
    let bytes = c.encode().unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `path` holds a revocation list (rather than certificates).
pub fn is_revocation_file(path: &Path) -> bool {
    let label = format!("-----BEGIN {REVOCATIONS_ARMOUR}-----");
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(&label))
}

/// `ringvpn cert show` of a revocation list.
pub fn show_revocations_text(list: &Revocations) -> String {
    let mut out = format!(
        "revocation list\n  serial      {}\n  issuer      {}\n  issued at   {}\n  revoked     {} key(s)\n",
        list.serial,
        list.issuer,
        utc(list.issued_at),
        list.revoked.len()
    );
    for k in &list.revoked {
        out.push_str(&format!("    {k}\n"));
    }
    out
}

/// `ringvpn cert show --json` of a revocation list.
pub fn show_revocations_json(list: &Revocations) -> String {
    use crate::json::{quote, Object};
    let keys: Vec<String> = list.revoked.iter().map(|k| quote(&k.to_base64())).collect();
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.str("kind", "revocations")
        .num("serial", list.serial)
        .str("issuer", &list.issuer.to_base64())
        .num("issued_at", list.issued_at)
        .raw("revoked", &format!("[{}]", keys.join(",")));
    o.end();
    out.push('\n');
    out
}

/// `ringvpn cert verify`: whether `cert` checks out against the CA(s) in
/// `ca` (and the list in `crl`) now, as a member would check it; the
/// reason if not.
pub fn verify(cert: &Path, ca: &Path, crl: Option<&Path>, now: u64) -> Result<String, String> {
    let (_, c) = load_cert(cert)?;
    let cas = load_certs(ca)?;
    if cas.iter().any(|c| c.kind != KIND_CA || !c.signature_ok()) {
        return Err(format!("{}: not a valid CA certificate", ca.display()));
    }
    let mut trust = crate::crypto::cert::Trust {
        network: c.network.clone(),
        cas,
        revocations: Vec::new(),
    };
    if let Some(crl) = crl {
        trust
            .offer_revocations(load_revocations(crl)?)
            .map_err(|e| format!("{}: {e}", crl.display()))?;
    }
    trust
        .check(&c, &c.subject, now)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let issuer = trust
        .cas
        .iter()
        .find(|a| a.subject == c.issuer)
        .map_or("?", |a| a.name.as_str());
    Ok(format!(
        "{}: valid: {} in network {}, signed by {issuer}, until {}",
        cert.display(),
        c.name,
        c.network,
        utc(c.not_after)
    ))
}

/// What is worth a warning in a certificate about to be signed: already
/// expired, or an address no default network hands out.
pub fn sign_warnings(c: &Cert, now: u64) -> Vec<String> {
    let mut w = Vec::new();
    if c.not_after < now {
        w.push(format!(
            "the certificate is already expired (not after {})",
            utc(c.not_after)
        ));
    }
    let subnet = crate::vpn::VpnConfig::new(&c.network);
    for p in &c.prefixes {
        if let std::net::IpAddr::V4(a) = p.addr {
            if !subnet.contains(a) {
                w.push(format!(
                    "{p} is outside the default virtual subnet 100.64.0.0/10 (members must set `subnet` to cover it)"
                ));
            } else if p.len == 32 && !subnet.assignable(a) {
                w.push(format!(
                    "{p} is not a host address (100.64.0.1 is the virtual router's)"
                ));
            }
        }
    }
    if c.prefixes.is_empty() {
        w.push("no --ip: the member may claim no virtual address".into());
    }
    w
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::time::utc_parts(t);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

/// `ringvpn cert show`: human-readable.
pub fn show_text(c: &Cert, now: u64) -> String {
    let kind = if c.kind == KIND_CA {
        "CA certificate"
    } else {
        "node certificate"
    };
    let state = if now < c.not_before {
        "not yet valid"
    } else if now > c.not_after {
        "expired"
    } else {
        "valid"
    };
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "{kind}\n  name        {}\n  network     {}\n  key         {}\n  fingerprint {}\n  issuer      {}\n  not before  {}\n  not after   {}  ({state} now)\n  addresses   {}\n  groups      {}\n  routes      {}\n",
        c.name,
        c.network,
        c.subject,
        fingerprint(c),
        c.issuer,
        utc(c.not_before),
        utc(c.not_after),
        list(c.prefixes.iter().map(|p| p.to_string()).collect()),
        list(c.groups.clone()),
        list(c.routes.iter().map(|p| p.to_string()).collect()),
    )
}

/// `ringvpn cert show --json`.
pub fn show_json(c: &Cert) -> String {
    use crate::json::{quote, Object};
    let arr = |v: Vec<String>| {
        format!(
            "[{}]",
            v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(",")
        )
    };
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.str("kind", if c.kind == KIND_CA { "ca" } else { "node" })
        .str("name", &c.name)
        .str("network", &c.network)
        .str("key", &c.subject.to_base64())
        .str("fingerprint", &fingerprint(c))
        .str("issuer", &c.issuer.to_base64())
        .num("not_before", c.not_before)
        .num("not_after", c.not_after)
        .raw(
            "addresses",
            &arr(c.prefixes.iter().map(|p| p.to_string()).collect()),
        )
        .raw("groups", &arr(c.groups.clone()))
        .raw(
            "routes",
            &arr(c.routes.iter().map(|p| p.to_string()).collect()),
        );
    o.end();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
