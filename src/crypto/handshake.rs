//! The two-message handshake: build and check init and response.
//!
//! Functions here only compute; which peers are trusted, rate limits and
//! session bookkeeping belong to the node.

use super::cert::{Cert, CertError};
use super::keys::{Identity, NodeKey};
use super::session::Session;
use crate::time::Instant;
use crate::wire::handshake::{CredType, InitPacket, InitRepr, RespPacket, RespRepr, SIG_LEN};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::digest::{digest, Context, SHA256};
use ring::hkdf;
use std::net::SocketAddr;

const INIT_LABEL: &[u8] = b"ringvpn-init";
const RESP_LABEL: &[u8] = b"ringvpn-resp";
const KDF_I2R: &[u8] = b"ringvpn v1 initiator to responder";
const KDF_R2I: &[u8] = b"ringvpn v1 responder to initiator";

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Wrong length, version or field values.
    Malformed,
    /// The credential names a key we do not trust.
    UnknownPeer,
    /// The init names a different responder.
    NotForUs,
    /// A signature or key agreement failed.
    Auth,
    /// Certificates are required and the peer sent a bare key.
    NoCert,
    /// The peer's certificate was refused.
    Cert(CertError),
}

/// What we present in our handshake messages: our bare key, or our
/// certificate's bytes.
#[derive(Clone, Copy)]
pub struct Credential<'a> {
    pub ty: CredType,
    pub bytes: &'a [u8],
}

impl<'a> Credential<'a> {
    pub fn key(key: &'a NodeKey) -> Credential<'a> {
        Credential {
            ty: CredType::PublicKey,
            bytes: &key.0,
        }
    }
    pub fn cert(bytes: &'a [u8]) -> Credential<'a> {
        Credential {
            ty: CredType::Certificate,
            bytes,
        }
    }
}

/// The initiator's state between sending the init and getting the response.
pub struct Initiator {
    ephemeral: EphemeralPrivateKey,
    init_hash: [u8; 32],
    pub local_index: u32,
}

/// A verified init from a trusted peer.
pub struct ValidInit {
    pub peer: NodeKey,
    /// The certificate it presented, if any (checked by the caller's trust).
    pub cert: Option<Cert>,
    pub sender: u32,
    pub timestamp: u64,
    ephemeral: [u8; 32],
    init_hash: [u8; 32],
}

/// A verified response.
pub struct Completed {
    pub peer: NodeKey,
    pub cert: Option<Cert>,
    pub session: Session,
    /// Our own endpoint as the responder saw it.
    pub observed: SocketAddr,
}

fn signed_digest(label: &[u8], prefix: &[u8], body: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(label);
    ctx.update(prefix);
    ctx.update(body);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The key a credential names, and the certificate if it is one (parsed,
/// not yet trusted).
fn credential_key(cred_type: u8, cred: &[u8]) -> Result<(NodeKey, Option<Cert>), HandshakeError> {
    match CredType::from_u8(cred_type) {
        Some(CredType::PublicKey) => cred
            .try_into()
            .map(|k| (NodeKey(k), None))
            .map_err(|_| HandshakeError::Malformed),
        Some(CredType::Certificate) => {
            let cert = Cert::decode(cred).map_err(HandshakeError::Cert)?;
            Ok((cert.subject, Some(cert)))
        }
        None => Err(HandshakeError::Malformed),
    }
}

/// The plain trust of the static-key mode: a yes/no on the key.
fn key_only(
    trusted: impl Fn(&NodeKey) -> bool,
) -> impl Fn(&NodeKey, Option<&Cert>) -> Result<(), HandshakeError> {
    move |k, _| {
        if trusted(k) {
            Ok(())
        } else {
            Err(HandshakeError::UnknownPeer)
        }
    }
}

/// A new X25519 key pair, used for exactly one handshake.
fn fresh_ephemeral(
    rng: &dyn ring::rand::SecureRandom,
) -> Result<(EphemeralPrivateKey, [u8; 32]), HandshakeError> {
    let private = EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| HandshakeError::Auth)?;
    let public = private
        .compute_public_key()
        .map_err(|_| HandshakeError::Auth)?;
    let public = public
        .as_ref()
        .try_into()
        .map_err(|_| HandshakeError::Auth)?;
    Ok((private, public))
}

/// Derives the two session keys from the ephemeral DH and the transcript.
fn derive(shared: &[u8], transcript: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, transcript).extract(shared);
    let mut i2r = [0u8; 32];
    let mut r2i = [0u8; 32];
    for (info, out) in [(KDF_I2R, &mut i2r), (KDF_R2I, &mut r2i)] {
        prk.expand(&[info], Len32)
            .and_then(|okm| okm.fill(out))
            .expect("32 bytes is within HKDF's limit");
    }
    (i2r, r2i)
}

fn transcript(init_hash: &[u8; 32], resp_signed: &[u8]) -> [u8; 32] {
    signed_digest(b"ringvpn-transcript", init_hash, resp_signed)
}

/// Writes an init into `out` (at least `INIT_FIXED_LEN + 32` bytes) and
/// returns the initiator state and the message length.
pub fn create_init(
    id: &Identity,
    rng: &dyn ring::rand::SecureRandom,
    local_index: u32,
    responder: Option<NodeKey>,
    timestamp: u64,
    out: &mut [u8],
) -> Result<(Initiator, usize), HandshakeError> {
    let me = id.public();
    let cred = Credential::key(&me);
    create_init_with(id, cred, rng, local_index, responder, timestamp, out)
}

/// `create_init` presenting `cred` (a certificate, in certificate mode).
pub fn create_init_with(
    id: &Identity,
    cred: Credential<'_>,
    rng: &dyn ring::rand::SecureRandom,
    local_index: u32,
    responder: Option<NodeKey>,
    timestamp: u64,
    out: &mut [u8],
) -> Result<(Initiator, usize), HandshakeError> {
    let (ephemeral, e_pub) = fresh_ephemeral(rng)?;
    let repr = InitRepr {
        sender: local_index,
        responder_hint: responder.map_or([0; 32], |k| k.0),
        ephemeral: e_pub,
        timestamp,
        cred_type: cred.ty,
        cred: cred.bytes,
    };
    let len = repr.buffer_len();
    let out = out.get_mut(..len).ok_or(HandshakeError::Malformed)?;
    let at = repr.emit_unsigned(out);
    let sig = id.sign(&signed_digest(INIT_LABEL, &[], &out[..at]));
    out[at..].copy_from_slice(&sig);
    let init_hash = digest(&SHA256, out).as_ref().try_into().expect("32 bytes");
    Ok((
        Initiator {
            ephemeral,
            init_hash,
            local_index,
        },
        len,
    ))
}

/// Parses an init, asks `trusted` about its key (before any expensive work)
/// and verifies the signature.
pub fn check_init(
    msg: &[u8],
    me: NodeKey,
    trusted: impl Fn(&NodeKey) -> bool,
) -> Result<ValidInit, HandshakeError> {
    check_init_with(msg, me, key_only(trusted))
}

/// `check_init` with a trust that sees the certificate too (and says why
/// it refuses).
pub fn check_init_with(
    msg: &[u8],
    me: NodeKey,
    trusted: impl Fn(&NodeKey, Option<&Cert>) -> Result<(), HandshakeError>,
) -> Result<ValidInit, HandshakeError> {
    let p = InitPacket::new_checked(msg).map_err(|_| HandshakeError::Malformed)?;
    if p.responder_hint() != &[0; 32] && p.responder_hint() != &me.0 {
        return Err(HandshakeError::NotForUs);
    }
    let (peer, cert) = credential_key(p.cred_type(), p.cred())?;
    trusted(&peer, cert.as_ref())?;
    if !peer.verify(&signed_digest(INIT_LABEL, &[], p.signed()), p.signature()) {
        return Err(HandshakeError::Auth);
    }
    Ok(ValidInit {
        peer,
        cert,
        sender: p.sender(),
        timestamp: p.timestamp(),
        ephemeral: *p.ephemeral(),
        init_hash: digest(&SHA256, p.proper())
            .as_ref()
            .try_into()
            .expect("32 bytes"),
    })
}

/// Answers a verified init: writes the response into `out` and returns the
/// new (responder) session and the message length.
pub fn respond(
    id: &Identity,
    rng: &dyn ring::rand::SecureRandom,
    init: &ValidInit,
    local_index: u32,
    observed: SocketAddr,
    now: Instant,
    out: &mut [u8],
) -> Result<(Session, usize), HandshakeError> {
    let me = id.public();
    let cred = Credential::key(&me);
    respond_with(id, cred, rng, init, local_index, observed, now, out)
}

/// `respond` presenting `cred`.
#[allow(clippy::too_many_arguments)]
pub fn respond_with(
    id: &Identity,
    cred: Credential<'_>,
    rng: &dyn ring::rand::SecureRandom,
    init: &ValidInit,
    local_index: u32,
    observed: SocketAddr,
    now: Instant,
    out: &mut [u8],
) -> Result<(Session, usize), HandshakeError> {
    let (ephemeral, e_pub) = fresh_ephemeral(rng)?;
    let repr = RespRepr {
        sender: local_index,
        receiver: init.sender,
        ephemeral: e_pub,
        observed,
        cred_type: cred.ty,
        cred: cred.bytes,
    };
    let len = repr.buffer_len();
    let out = out.get_mut(..len).ok_or(HandshakeError::Malformed)?;
    let at = repr.emit_unsigned(out);
    let sig = id.sign(&signed_digest(RESP_LABEL, &init.init_hash, &out[..at]));
    out[at..].copy_from_slice(&sig);
    let th = transcript(&init.init_hash, &out[..len - SIG_LEN]);
    let (i2r, r2i) = agree_ephemeral(
        ephemeral,
        &UnparsedPublicKey::new(&X25519, &init.ephemeral),
        |shared| derive(shared, &th),
    )
    .map_err(|_| HandshakeError::Auth)?;
    let session = Session::new(local_index, init.sender, r2i, i2r, now, false);
    Ok((session, len))
}

/// The receiver index of a response, to find its initiator state.
pub fn resp_receiver(msg: &[u8]) -> Result<u32, HandshakeError> {
    RespPacket::new_checked(msg)
        .map(|p| p.receiver())
        .map_err(|_| HandshakeError::Malformed)
}

/// Verifies a response to our init and derives the (initiator) session.
/// `state` is consumed only by a response that verifies, so a forged
/// response cannot abort a handshake in progress.
pub fn finish(
    state: &mut Option<Initiator>,
    msg: &[u8],
    trusted: impl Fn(&NodeKey) -> bool,
    now: Instant,
) -> Result<Completed, HandshakeError> {
    finish_with(state, msg, key_only(trusted), now)
}

/// `finish` with a trust that sees the certificate too.
pub fn finish_with(
    state: &mut Option<Initiator>,
    msg: &[u8],
    trusted: impl Fn(&NodeKey, Option<&Cert>) -> Result<(), HandshakeError>,
    now: Instant,
) -> Result<Completed, HandshakeError> {
    let p = RespPacket::new_checked(msg).map_err(|_| HandshakeError::Malformed)?;
    let st = state.as_ref().ok_or(HandshakeError::Malformed)?;
    if p.receiver() != st.local_index {
        return Err(HandshakeError::Malformed);
    }
    let (peer, cert) = credential_key(p.cred_type(), p.cred())?;
    trusted(&peer, cert.as_ref())?;
    if !peer.verify(
        &signed_digest(RESP_LABEL, &st.init_hash, p.signed()),
        p.signature(),
    ) {
        return Err(HandshakeError::Auth);
    }
    let th = transcript(&st.init_hash, p.signed());
    let st = state.take().ok_or(HandshakeError::Malformed)?;
    let (i2r, r2i) = agree_ephemeral(
        st.ephemeral,
        &UnparsedPublicKey::new(&X25519, p.ephemeral()),
        |shared| derive(shared, &th),
    )
    .map_err(|_| HandshakeError::Auth)?;
    Ok(Completed {
        peer,
        cert,
        session: Session::new(st.local_index, p.sender(), i2r, r2i, now, true),
        observed: p.observed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::Seed;
    use ring::rand::SystemRandom;

    fn ids() -> (Identity, Identity) {
        (
            Identity::from_seed(&Seed([1; 32])),
            Identity::from_seed(&Seed([2; 32])),
        )
    }

    fn run(a: &Identity, b: &Identity) -> (Session, Session) {
        let rng = SystemRandom::new();
        let mut m1 = [0u8; 512];
        let (st, n1) = create_init(a, &rng, 11, Some(b.public()), 1000, &mut m1).unwrap();
        let valid = check_init(&m1[..n1], b.public(), |k| *k == a.public()).unwrap();
        assert_eq!(
            (valid.peer, valid.sender, valid.timestamp),
            (a.public(), 11, 1000)
        );
        let obs: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let mut m2 = [0u8; 512];
        let (sb, n2) = respond(b, &rng, &valid, 22, obs, Instant::ZERO, &mut m2).unwrap();
        assert_eq!(resp_receiver(&m2[..n2]), Ok(11));
        let done = finish(
            &mut Some(st),
            &m2[..n2],
            |k| *k == b.public(),
            Instant::ZERO,
        )
        .unwrap();
        assert_eq!(done.peer, b.public());
        assert_eq!(done.observed, obs);
        (done.session, sb)
    }

    #[test]
    fn both_sides_derive_matching_keys() {
        let (a, b) = ids();
        let (mut sa, mut sb) = run(&a, &b);
        assert_eq!((sa.local_index, sa.remote_index), (11, 22));
        assert_eq!((sb.local_index, sb.remote_index), (22, 11));
        fn one_way(tx: &mut Session, rx: &mut Session) {
            let mut buf = [0u8; 21];
            buf[..5].copy_from_slice(b"hello");
            let c = tx.next_counter().unwrap();
            let tag = tx.seal(c, b"hdr", &mut buf[..5]);
            buf[5..].copy_from_slice(&tag);
            rx.open(Instant::ZERO, c, b"hdr", &mut buf).unwrap();
            assert_eq!(&buf[..5], b"hello");
        }
        one_way(&mut sa, &mut sb);
        one_way(&mut sb, &mut sa);
    }

    #[test]
    fn untrusted_tampered_and_misdirected_inits_fail() {
        let (a, b) = ids();
        let rng = SystemRandom::new();
        let mut m1 = [0u8; 512];
        let (_, n1) = create_init(&a, &rng, 1, Some(b.public()), 5, &mut m1).unwrap();
        let msg = &mut m1[..n1];
        assert_eq!(
            check_init(msg, b.public(), |_| false).err(),
            Some(HandshakeError::UnknownPeer)
        );
        let other = Identity::from_seed(&Seed([3; 32])).public();
        assert_eq!(
            check_init(msg, other, |_| true).err(),
            Some(HandshakeError::NotForUs)
        );
        msg[75] ^= 1; // timestamp
        assert_eq!(
            check_init(msg, b.public(), |_| true).err(),
            Some(HandshakeError::Auth)
        );
        assert_eq!(
            check_init(&msg[..n1 - 1], b.public(), |_| true).err(),
            Some(HandshakeError::Malformed)
        );
    }

    #[test]
    fn forged_response_fails() {
        let (a, b) = ids();
        let rng = SystemRandom::new();
        let mut m1 = [0u8; 512];
        let (st, n1) = create_init(&a, &rng, 1, None, 5, &mut m1).unwrap();
        let valid = check_init(&m1[..n1], b.public(), |_| true).unwrap();
        let mut m2 = [0u8; 512];
        let obs: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let (_, n2) = respond(&b, &rng, &valid, 2, obs, Instant::ZERO, &mut m2).unwrap();
        m2[20] ^= 1; // responder ephemeral
        let mut st = Some(st);
        assert_eq!(
            finish(&mut st, &m2[..n2], |_| true, Instant::ZERO).err(),
            Some(HandshakeError::Auth)
        );
        assert!(st.is_some(), "a forged response must not consume the state");
    }
}
