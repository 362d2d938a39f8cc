//! Certificates and revocation lists: how a group trusts its members with
//! no server. A group CA (an Ed25519 key kept offline) signs each node's
//! certificate; every node checks its peers' certificates itself.
//!
//! The binary encoding (docs/PROTOCOL.md, "Certificates") is strict: fixed
//! field order, bounded lengths, no trailing bytes. Files hold it in a text
//! armour (`-----BEGIN RINGVPN CERTIFICATE-----`, base64 lines).

use super::keys::{Identity, NodeKey};
use crate::base64;
use std::fmt;
use std::net::IpAddr;

/// Encoding versions. Version 2 adds the prefixes a node may route for
/// others (exit gateways, subnet routers); a certificate without any is
/// encoded as version 1, byte for byte as before, so certificates signed
/// before routes existed still verify and older nodes read new ones that
/// route nothing.
pub const VERSION: u8 = 1;
pub const VERSION_ROUTES: u8 = 2;
/// What a signed object is.
pub const KIND_CA: u8 = 1;
pub const KIND_NODE: u8 = 2;
pub const KIND_REVOCATIONS: u8 = 3;
/// Bounds on the variable parts (keep a certificate inside a handshake).
pub const MAX_TEXT: usize = 64;
pub const MAX_GROUP: usize = 32;
pub const MAX_PREFIXES: usize = 8;
pub const MAX_ROUTES: usize = 16;
pub const MAX_GROUPS: usize = 8;
pub const MAX_REVOKED: usize = 1024;
pub const SIG_LEN: usize = 64;
/// Clocks of members may disagree by this much (seconds): a certificate
/// is accepted this long before its start and after its end.
pub const CLOCK_SKEW: u64 = 300;

/// The domain separation of certificate signatures.
const SIGNED_LABEL: &[u8] = b"ringvpn certificate v1\0";

/// An address range a node may claim (shared with the rest of the crate).
pub use crate::net::Prefix;

/// A certificate: a CA's own (kind CA, self-signed) or a node's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    pub kind: u8,
    /// The key certified.
    pub subject: NodeKey,
    /// The CA key that signed it (the subject itself for a CA).
    pub issuer: NodeKey,
    /// Validity, Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    pub network: String,
    pub name: String,
    /// Addresses the node may claim (none for a CA).
    pub prefixes: Vec<Prefix>,
    pub groups: Vec<String>,
    /// Prefixes the node may carry traffic for: 0.0.0.0/0 and ::/0 for an
    /// exit gateway, a LAN behind a subnet router (none for a CA).
    pub routes: Vec<Prefix>,
    pub signature: [u8; SIG_LEN],
}

/// Why a certificate (or list) was refused: each is a counter and a log
/// line naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertError {
    /// Not a well-formed encoding (lengths, version, kind, text).
    Malformed,
    /// Signed by a CA we do not trust.
    UnknownCa,
    /// The signature does not verify.
    BadSignature,
    /// Before its start or after its end (beyond the clock skew).
    Expired,
    /// For another network.
    WrongNetwork,
    /// On the CA's revocation list.
    Revoked,
    /// The certificate is for another key than the one that signed the
    /// handshake.
    WrongKey,
}

impl CertError {
    pub fn describe(self) -> &'static str {
        match self {
            CertError::Malformed => "malformed certificate",
            CertError::UnknownCa => "certificate signed by an untrusted CA",
            CertError::BadSignature => "certificate signature does not verify",
            CertError::Expired => "certificate outside its validity window",
            CertError::WrongNetwork => "certificate for another network",
            CertError::Revoked => "certificate revoked",
            CertError::WrongKey => "certificate for another key",
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A strict reader over a byte slice.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CertError> {
        let end = self.at.checked_add(n).ok_or(CertError::Malformed)?;
        let s = self.b.get(self.at..end).ok_or(CertError::Malformed)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CertError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CertError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u64(&mut self) -> Result<u64, CertError> {
        let s = self.take(8)?;
        Ok(u64::from_be_bytes(
            s.try_into().map_err(|_| CertError::Malformed)?,
        ))
    }
    fn key(&mut self) -> Result<NodeKey, CertError> {
        Ok(NodeKey(
            self.take(32)?
                .try_into()
                .map_err(|_| CertError::Malformed)?,
        ))
    }
    /// A length-prefixed printable text of 1..=max bytes.
    fn text(&mut self, max: usize) -> Result<String, CertError> {
        let n = usize::from(self.u8()?);
        if n == 0 || n > max {
            return Err(CertError::Malformed);
        }
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| CertError::Malformed)?;
        if !valid_text(s) {
            return Err(CertError::Malformed);
        }
        Ok(s.to_string())
    }
    /// A count, then that many prefixes (family 4 or 6, length, address).
    fn prefixes(&mut self, max: usize) -> Result<Vec<Prefix>, CertError> {
        let n = usize::from(self.u8()?);
        if n > max {
            return Err(CertError::Malformed);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (family, len) = (self.u8()?, self.u8()?);
            let addr = match family {
                4 if len <= 32 => {
                    let a: [u8; 4] = self.take(4)?.try_into().map_err(|_| CertError::Malformed)?;
                    IpAddr::from(a)
                }
                6 if len <= 128 => {
                    let a: [u8; 16] = self
                        .take(16)?
                        .try_into()
                        .map_err(|_| CertError::Malformed)?;
                    IpAddr::from(a)
                }
                _ => return Err(CertError::Malformed),
            };
            out.push(Prefix { addr, len });
        }
        Ok(out)
    }
}

fn push_prefixes(out: &mut Vec<u8>, prefixes: &[Prefix]) {
    out.push(prefixes.len() as u8);
    for p in prefixes {
        match p.addr {
            IpAddr::V4(a) => {
                out.extend_from_slice(&[4, p.len]);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.extend_from_slice(&[6, p.len]);
                out.extend_from_slice(&a.octets());
            }
        }
    }
}

/// Names are printable, without control characters or spaces at the ends.
pub fn valid_text(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && s.chars().all(|c| !c.is_control())
}

fn push_text(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// What a signature covers: the label, then the encoding up to it.
fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_LABEL.len() + body.len());
    m.extend_from_slice(SIGNED_LABEL);
    m.extend_from_slice(body);
    m
}

/// What certificates and revocation lists share: an encoded body signed
/// by an issuer.
trait Signed {
    fn body(&self) -> Result<Vec<u8>, CertError>;
    fn issuer(&self) -> &NodeKey;
    fn signature(&self) -> &[u8; SIG_LEN];

    fn encode_signed(&self) -> Result<Vec<u8>, CertError> {
        let mut out = self.body()?;
        out.extend_from_slice(self.signature());
        Ok(out)
    }

    fn verify_signed(&self) -> bool {
        match self.body() {
            Ok(body) => self
                .issuer()
                .verify(&signed_message(&body), self.signature()),
            Err(_) => false,
        }
    }
}

impl Signed for Cert {
    fn body(&self) -> Result<Vec<u8>, CertError> {
        self.cert_body()
    }
    fn issuer(&self) -> &NodeKey {
        &self.issuer
    }
    fn signature(&self) -> &[u8; SIG_LEN] {
        &self.signature
    }
}

impl Signed for Revocations {
    fn body(&self) -> Result<Vec<u8>, CertError> {
        self.list_body()
    }
    fn issuer(&self) -> &NodeKey {
        &self.issuer
    }
    fn signature(&self) -> &[u8; SIG_LEN] {
        &self.signature
    }
}

impl Cert {
    /// A self-signed CA certificate for `network`, valid from `valid.0` to
    /// `valid.1` (Unix seconds).
    pub fn new_ca(
        ca: &Identity,
        network: &str,
        name: &str,
        valid: (u64, u64),
    ) -> Result<Cert, CertError> {
        Cert {
            kind: KIND_CA,
            subject: ca.public(),
            issuer: ca.public(),
            not_before: valid.0,
            not_after: valid.1,
            network: network.into(),
            name: name.into(),
            prefixes: Vec::new(),
            groups: Vec::new(),
            routes: Vec::new(),
            signature: [0; SIG_LEN],
        }
        .sign(ca)
    }

    /// A node certificate for `subject`, signed by `ca`.
    pub fn new_node(
        ca: &Identity,
        subject: NodeKey,
        network: &str,
        name: &str,
        prefixes: Vec<Prefix>,
        groups: Vec<String>,
        valid: (u64, u64),
    ) -> Result<Cert, CertError> {
        Cert {
            kind: KIND_NODE,
            subject,
            issuer: ca.public(),
            not_before: valid.0,
            not_after: valid.1,
            network: network.into(),
            name: name.into(),
            prefixes,
            groups,
            routes: Vec::new(),
            signature: [0; SIG_LEN],
        }
        .sign(ca)
    }

    /// The same certificate allowed to route `routes`, signed again.
    pub fn with_routes(mut self, routes: Vec<Prefix>, ca: &Identity) -> Result<Cert, CertError> {
        self.routes = routes;
        self.sign(ca)
    }

    /// The encoding without the signature (what is signed).
    fn cert_body(&self) -> Result<Vec<u8>, CertError> {
        let texts_ok = valid_text(&self.network)
            && self.network.len() <= MAX_TEXT
            && valid_text(&self.name)
            && self.name.len() <= MAX_TEXT
            && self.prefixes.len() <= MAX_PREFIXES
            && self.routes.len() <= MAX_ROUTES
            && (self.kind == KIND_NODE || self.routes.is_empty())
            && self.groups.len() <= MAX_GROUPS
            && self
                .groups
                .iter()
                .all(|g| valid_text(g) && g.len() <= MAX_GROUP);
        if !texts_ok || !matches!(self.kind, KIND_CA | KIND_NODE) {
            return Err(CertError::Malformed);
        }
        let version = if self.routes.is_empty() {
            VERSION
        } else {
            VERSION_ROUTES
        };
        let mut out = vec![version, self.kind];
        out.extend_from_slice(&self.subject.0);
        out.extend_from_slice(&self.issuer.0);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        push_text(&mut out, &self.network);
        push_text(&mut out, &self.name);
        push_prefixes(&mut out, &self.prefixes);
        out.push(self.groups.len() as u8);
        for g in &self.groups {
            push_text(&mut out, g);
        }
        if version == VERSION_ROUTES {
            push_prefixes(&mut out, &self.routes);
        }
        Ok(out)
    }

    /// Fills in the issuer and signs with the CA's key.
    pub fn sign(mut self, ca: &Identity) -> Result<Cert, CertError> {
        self.issuer = ca.public();
        self.signature = ca.sign(&signed_message(&self.cert_body()?));
        Ok(self)
    }

    /// The binary encoding.
    pub fn encode(&self) -> Result<Vec<u8>, CertError> {
        self.encode_signed()
    }

    /// Parses the binary encoding (no signature check: see `Trust`).
    pub fn decode(b: &[u8]) -> Result<Cert, CertError> {
        let mut r = Reader { b, at: 0 };
        let version = r.u8()?;
        if !matches!(version, VERSION | VERSION_ROUTES) {
            return Err(CertError::Malformed);
        }
        let kind = r.u8()?;
        if !matches!(kind, KIND_CA | KIND_NODE) {
            return Err(CertError::Malformed);
        }
        let subject = r.key()?;
        let issuer = r.key()?;
        let not_before = r.u64()?;
        let not_after = r.u64()?;
        let network = r.text(MAX_TEXT)?;
        let name = r.text(MAX_TEXT)?;
        let prefixes = r.prefixes(MAX_PREFIXES)?;
        let ng = usize::from(r.u8()?);
        if ng > MAX_GROUPS {
            return Err(CertError::Malformed);
        }
        let mut groups = Vec::with_capacity(ng);
        for _ in 0..ng {
            groups.push(r.text(MAX_GROUP)?);
        }
        // Version 2 has at least one route (none is version 1: one
        // encoding per certificate), and only node certificates route.
        let routes = match version {
            VERSION_ROUTES => r.prefixes(MAX_ROUTES)?,
            _ => Vec::new(),
        };
        if version == VERSION_ROUTES && (routes.is_empty() || kind != KIND_NODE) {
            return Err(CertError::Malformed);
        }
        let signature: [u8; SIG_LEN] = r
            .take(SIG_LEN)?
            .try_into()
            .map_err(|_| CertError::Malformed)?;
        if r.at != b.len() || not_after < not_before {
            return Err(CertError::Malformed);
        }
        if kind == KIND_CA && (issuer != subject || !prefixes.is_empty()) {
            return Err(CertError::Malformed);
        }
        Ok(Cert {
            kind,
            subject,
            issuer,
            not_before,
            not_after,
            network,
            name,
            prefixes,
            groups,
            routes,
            signature,
        })
    }

    /// Whether the issuer's signature verifies.
    pub fn signature_ok(&self) -> bool {
        self.verify_signed()
    }

    /// Whether this node may claim `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }

    /// Whether this node may carry traffic for all of `prefix`: one of its
    /// routes covers it (0.0.0.0/0 covers every IPv4 prefix).
    pub fn may_route(&self, prefix: &Prefix) -> bool {
        self.routes.iter().any(|r| r.covers(prefix))
    }
}

/// A CA-signed list of revoked node keys. A higher `serial` replaces a
/// lower one, never the reverse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocations {
    pub issuer: NodeKey,
    pub serial: u64,
    pub issued_at: u64,
    /// Sorted, without duplicates.
    pub revoked: Vec<NodeKey>,
    pub signature: [u8; SIG_LEN],
}

impl Revocations {
    fn list_body(&self) -> Result<Vec<u8>, CertError> {
        if self.revoked.len() > MAX_REVOKED || !self.revoked.windows(2).all(|w| w[0] < w[1]) {
            return Err(CertError::Malformed);
        }
        let mut out = vec![VERSION, KIND_REVOCATIONS];
        out.extend_from_slice(&self.issuer.0);
        out.extend_from_slice(&self.serial.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&(self.revoked.len() as u16).to_be_bytes());
        for k in &self.revoked {
            out.extend_from_slice(&k.0);
        }
        Ok(out)
    }

    pub fn sign(mut self, ca: &Identity) -> Result<Revocations, CertError> {
        self.issuer = ca.public();
        self.revoked.sort();
        self.revoked.dedup();
        self.signature = ca.sign(&signed_message(&self.list_body()?));
        Ok(self)
    }

    pub fn encode(&self) -> Result<Vec<u8>, CertError> {
        self.encode_signed()
    }

    pub fn decode(b: &[u8]) -> Result<Revocations, CertError> {
        let mut r = Reader { b, at: 0 };
        if r.u8()? != VERSION || r.u8()? != KIND_REVOCATIONS {
            return Err(CertError::Malformed);
        }
        let issuer = r.key()?;
        let serial = r.u64()?;
        let issued_at = r.u64()?;
        let n = usize::from(r.u16()?);
        if n > MAX_REVOKED {
            return Err(CertError::Malformed);
        }
        let mut revoked = Vec::with_capacity(n);
        for _ in 0..n {
            revoked.push(r.key()?);
        }
        let signature: [u8; SIG_LEN] = r
            .take(SIG_LEN)?
            .try_into()
            .map_err(|_| CertError::Malformed)?;
        if r.at != b.len() || !revoked.windows(2).all(|w| w[0] < w[1]) {
            return Err(CertError::Malformed);
        }
        Ok(Revocations {
            issuer,
            serial,
            issued_at,
            revoked,
            signature,
        })
    }

    pub fn signature_ok(&self) -> bool {
        self.verify_signed()
    }

    pub fn contains(&self, key: &NodeKey) -> bool {
        self.revoked.binary_search(key).is_ok()
    }
}

/// What a node trusts: its network's CA(s) (two during a rollover) and
/// the newest revocation list of each.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub network: String,
    pub cas: Vec<Cert>,
    pub revocations: Vec<Revocations>,
}

impl Trust {
    /// Checks a node certificate presented by `key`, at Unix time `now`.
    pub fn check(&self, cert: &Cert, key: &NodeKey, now: u64) -> Result<(), CertError> {
        if cert.kind != KIND_NODE {
            return Err(CertError::Malformed);
        }
        if cert.subject != *key {
            return Err(CertError::WrongKey);
        }
        let ca = self
            .cas
            .iter()
            .find(|c| c.subject == cert.issuer)
            .ok_or(CertError::UnknownCa)?;
        if !cert.signature_ok() {
            return Err(CertError::BadSignature);
        }
        let valid = |c: &Cert| {
            now.saturating_add(CLOCK_SKEW) >= c.not_before
                && now <= c.not_after.saturating_add(CLOCK_SKEW)
        };
        if !valid(cert) || !valid(ca) {
            return Err(CertError::Expired);
        }
        if cert.network != self.network || ca.network != self.network {
            return Err(CertError::WrongNetwork);
        }
        if self.is_revoked(key) {
            return Err(CertError::Revoked);
        }
        Ok(())
    }

    pub fn is_revoked(&self, key: &NodeKey) -> bool {
        self.revocations.iter().any(|r| r.contains(key))
    }

    /// The serial of the list that revokes `key`, if one does.
    pub fn revoked_by(&self, key: &NodeKey) -> Option<u64> {
        self.revocations
            .iter()
            .find(|r| r.contains(key))
            .map(|r| r.serial)
    }

    /// Takes a revocation list if a trusted CA signed it and it is newer
    /// than the one held for that CA. Returns whether it was taken.
    pub fn offer_revocations(&mut self, list: Revocations) -> Result<bool, CertError> {
        if !self.cas.iter().any(|c| c.subject == list.issuer) {
            return Err(CertError::UnknownCa);
        }
        if !list.signature_ok() {
            return Err(CertError::BadSignature);
        }
        match self
            .revocations
            .iter_mut()
            .find(|r| r.issuer == list.issuer)
        {
            Some(held) if held.serial >= list.serial => Ok(false),
            Some(held) => {
                *held = list;
                Ok(true)
            }
            None => {
                self.revocations.push(list);
                Ok(true)
            }
        }
    }
}

/// The text armour of certificate and revocation files.
pub const CERT_ARMOUR: &str = "RINGVPN CERTIFICATE";
pub const REVOCATIONS_ARMOUR: &str = "RINGVPN REVOCATION LIST";

/// Wraps `bytes` in `-----BEGIN LABEL-----` … `-----END LABEL-----`.
pub fn armour(label: &str, bytes: &[u8]) -> String {
    let b64 = base64::encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every armoured block with `label` in `text`, decoded.
pub fn dearmour(label: &str, text: &str) -> Result<Vec<Vec<u8>>, String> {
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line == begin {
            if body.is_some() {
                return Err(format!("{begin} inside another block"));
            }
            body = Some(String::new());
        } else if line == end {
            let b = body
                .take()
                .ok_or_else(|| format!("{end} without {begin}"))?;
            out.push(base64::decode(&b).ok_or("bad base64 inside the block")?);
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        } else if !line.is_empty() && !line.starts_with('#') {
            return Err(format!("text outside a {label} block"));
        }
    }
    if body.is_some() {
        return Err(format!("{begin} without {end}"));
    }
    if out.is_empty() {
        return Err(format!("no {label} block"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
