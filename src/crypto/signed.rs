//! The tail every signed DHT record shares (address records, route
//! records): the signer's credential — nothing for a bare key, its
//! certificate in certificate mode — and an Ed25519 signature over a
//! label and every byte before it. The label keeps one kind of record
//! from being passed off as another.
//!
//! ```text
//! credential length L (2) | credential (L ≤ 1024) | 64 signature over label ‖ all before
//! ```
//! The record's own header carries the credential type (1 key, 2
//! certificate) where its format says.

use super::cert::{Cert, CertError, Trust};
use super::keys::{Identity, NodeKey};
use crate::wire::handshake::{CredType, MAX_CRED_LEN, SIG_LEN};

/// The credential type byte for a record signed with `cert` (or none).
pub fn cred_type(cert: Option<&[u8]>) -> u8 {
    match cert {
        Some(_) => CredType::Certificate as u8,
        None => CredType::PublicKey as u8,
    }
}

/// Appends the credential and the signature to `body`. `None` if the
/// certificate is too long.
pub fn finish(
    id: &Identity,
    label: &[u8],
    mut body: Vec<u8>,
    cert: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let cred = cert.unwrap_or(&[]);
    if cred.len() > MAX_CRED_LEN {
        return None;
    }
    body.reserve(2 + cred.len() + SIG_LEN);
    body.extend_from_slice(&(cred.len() as u16).to_be_bytes());
    body.extend_from_slice(cred);
    let sig = id.sign(&message(label, &body));
    body.extend_from_slice(&sig);
    Some(body)
}

/// Bytes needed after the body at least (an empty credential).
pub const MIN_TAIL: usize = 2 + SIG_LEN;

/// Why a tail does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailError {
    Malformed,
    BadSignature,
}

/// Reads the tail that starts at `at` in `v` (which must end with it
/// exactly), checks `signer`'s signature, and decodes the credential
/// of type `ty`.
pub fn open(
    v: &[u8],
    at: usize,
    ty: u8,
    label: &[u8],
    signer: &NodeKey,
) -> Result<Option<Cert>, TailError> {
    let bad = TailError::Malformed;
    let len = v.get(at..at + 2).ok_or(bad)?;
    let cred_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let sig_at = at + 2 + cred_len;
    if cred_len > MAX_CRED_LEN || v.len() != sig_at + SIG_LEN {
        return Err(bad);
    }
    let cred = &v[at + 2..sig_at];
    let cert = match CredType::from_u8(ty) {
        Some(CredType::PublicKey) if cred.is_empty() => None,
        Some(CredType::Certificate) => Some(Cert::decode(cred).map_err(|_| bad)?),
        _ => return Err(bad),
    };
    if !signer.verify(&message(label, &v[..sig_at]), &v[sig_at..]) {
        return Err(TailError::BadSignature);
    }
    Ok(cert)
}

/// Certificate mode: the record's certificate, if it checks out against
/// `trust` for `signer` at `now` (wall time from `wall_origin_us`).
pub fn certified<'c>(
    trust: &Trust,
    cert: Option<&'c Cert>,
    signer: &NodeKey,
    wall_origin_us: u64,
    now: crate::time::Instant,
) -> Result<&'c Cert, CertError> {
    let cert = cert.ok_or(CertError::Malformed)?;
    let unix = crate::time::unix_secs(wall_origin_us, now);
    trust.check(cert, signer, unix)?;
    Ok(cert)
}

fn message(label: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + body.len());
    m.extend_from_slice(label);
    m.extend_from_slice(body);
    m
}
