//! The two-message handshake: build and check init and response.
//!
//! Each side signs its message with its Ed25519 node key and sends a fresh
//! X25519 ephemeral; the session keys come from the ephemerals' shared
//! secret and the transcript. Functions here only compute; which peers are
//! trusted, rate limits and session bookkeeping belong to the node.
//!
//! Credentials travel sealed where they can (`seal`: what, under which
//! key, and what an observer still learns).

use super::cert::{Cert, CertError};
use super::keys::{x25519, x25519_public, Identity, NodeKey, Seed};
use super::seal::{init_seal_key, kdf32, open, resp_seal_key, seal, sealable};
use super::session::{Cipher, Session};
use crate::time::Instant;
use crate::wire::handshake::{
    CredType, InitPacket, InitRepr, RespPacket, RespRepr, FLAG_AES_OFFERED, FLAG_SEALED_REPLY,
    MAX_CRED_LEN, RESP_FLAG_AES, SEAL_OVERHEAD, SIG_LEN,
};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::digest::{digest, Context, SHA256};
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
    /// The init's certificate is revoked: who it names, and the index to
    /// answer with a refusal (the signature is not checked: the answer is
    /// only a hint).
    Revoked { key: NodeKey, sender: u32 },
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
    /// Our X25519 ephemeral secret (wiped on drop): it serves twice, to
    /// seal our credential and, with the responder's, for the session.
    ephemeral: Seed,
    init_hash: [u8; 32],
    pub local_index: u32,
    /// We asked for AES-256-GCM (a response may only choose it then).
    offered_aes: bool,
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
    /// The initiator reads a sealed credential in our response.
    seal_reply: bool,
    /// The initiator has AES instructions and asks for AES-256-GCM.
    pub offers_aes: bool,
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
        // Opened before this point; a sealed credential inside is nonsense.
        Some(CredType::Sealed) | None => Err(HandshakeError::Malformed),
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

/// The credential of a message: opened with `key` if sealed (`None` when
/// it does not open: not for us, or altered), else as sent.
fn read_credential(
    cred_type: u8,
    cred: &[u8],
    aad: &[u8],
    key: Option<&[u8; 32]>,
) -> Result<(NodeKey, Option<Cert>), HandshakeError> {
    if cred_type != CredType::Sealed as u8 {
        return credential_key(cred_type, cred);
    }
    let key = key.ok_or(HandshakeError::Malformed)?;
    let mut opened = [0u8; MAX_CRED_LEN + SEAL_OVERHEAD];
    let (ty, inner) = open(key, aad, cred, &mut opened).ok_or(HandshakeError::NotForUs)?;
    credential_key(ty, inner)
}

/// The responder's ephemeral public key and the ephemerals' shared
/// secret: ring's X25519 (its assembly is the fastest we have), unless the
/// simulator runs this thread on stand-ins (see `keys::StandIns`).
fn respond_agreement(
    rng: &dyn ring::rand::SecureRandom,
    their_ephemeral: &[u8; 32],
) -> Result<([u8; 32], Seed), HandshakeError> {
    if super::keys::stand_ins_installed() {
        let mut ephemeral = Seed([0; 32]);
        rng.fill(&mut ephemeral.0)
            .map_err(|_| HandshakeError::Auth)?;
        let shared = x25519(&ephemeral, their_ephemeral).ok_or(HandshakeError::Auth)?;
        return Ok((x25519_public(&ephemeral), shared));
    }
    let (ephemeral, e_pub) = fresh_ephemeral(rng)?;
    let shared = agree_ephemeral(
        ephemeral,
        &UnparsedPublicKey::new(&X25519, their_ephemeral),
        |s| Seed(s.try_into().expect("X25519 shares 32 bytes")),
    )
    .map_err(|_| HandshakeError::Auth)?;
    Ok((e_pub, shared))
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
    (
        kdf32(transcript, shared, KDF_I2R),
        kdf32(transcript, shared, KDF_R2I),
    )
}

/// What a response's signature covers before its bytes: the init's hash,
/// and the sealing key when the credential is sealed.
fn resp_prefix(init_hash: &[u8; 32], seal_key: Option<&[u8; 32]>) -> Vec<u8> {
    let mut prefix = init_hash.to_vec();
    prefix.extend_from_slice(seal_key.map_or(&[][..], |k| &k[..]));
    prefix
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
    create_init_with(id, cred, false, rng, local_index, responder, timestamp, out)
}

/// `create_init` presenting `cred` (a certificate, in certificate mode),
/// offering AES-256-GCM if `fast_aes` (this CPU has AES instructions).
#[allow(clippy::too_many_arguments)]
pub fn create_init_with(
    id: &Identity,
    cred: Credential<'_>,
    fast_aes: bool,
    rng: &dyn ring::rand::SecureRandom,
    local_index: u32,
    responder: Option<NodeKey>,
    timestamp: u64,
    out: &mut [u8],
) -> Result<(Initiator, usize), HandshakeError> {
    let mut ephemeral = Seed([0; 32]);
    rng.fill(&mut ephemeral.0)
        .map_err(|_| HandshakeError::Auth)?;
    let e_pub = x25519_public(&ephemeral);
    // To a known responder the credential goes sealed, and the hint stays
    // empty (the sealing already names the responder).
    let seal_key = match responder {
        Some(r) => {
            let to = r.dh_public().ok_or(HandshakeError::Auth)?;
            let shared = x25519(&ephemeral, &to).ok_or(HandshakeError::Auth)?;
            Some(init_seal_key(&shared, &e_pub, &r))
        }
        None => None,
    };
    let sealed = seal_key.map(|_| sealable(cred.ty, cred.bytes));
    let repr = InitRepr {
        sender: local_index,
        responder_hint: [0; 32],
        ephemeral: e_pub,
        timestamp,
        cred_type: if sealed.is_some() {
            CredType::Sealed
        } else {
            cred.ty
        },
        flags: FLAG_SEALED_REPLY | if fast_aes { FLAG_AES_OFFERED } else { 0 },
        cred: sealed.as_deref().unwrap_or(cred.bytes),
    };
    let len = repr.buffer_len();
    let out = out.get_mut(..len).ok_or(HandshakeError::Malformed)?;
    let at = repr.emit_unsigned(out);
    if let Some(key) = &seal_key {
        let (aad, body) = out.split_at_mut(84);
        seal(key, aad, &mut body[..at - 84]);
    }
    let prefix = seal_key.as_ref().map_or(&[][..], |k| &k[..]);
    let sig = id.sign(&signed_digest(INIT_LABEL, prefix, &out[..at]));
    out[at..].copy_from_slice(&sig);
    let init_hash = digest(&SHA256, out).as_ref().try_into().expect("32 bytes");
    Ok((
        Initiator {
            ephemeral,
            init_hash,
            local_index,
            offered_aes: fast_aes,
        },
        len,
    ))
}

/// Parses an init, asks `trusted` about its key (before any expensive work)
/// and verifies the signature.
pub fn check_init(
    msg: &[u8],
    me: &Identity,
    trusted: impl Fn(&NodeKey) -> bool,
) -> Result<ValidInit, HandshakeError> {
    check_init_with(msg, me, key_only(trusted))
}

/// A revoked certificate's refusal names whom it was (and the index to
/// answer); other refusals pass as they are.
fn revoked(e: HandshakeError, key: NodeKey, sender: u32) -> HandshakeError {
    match e {
        HandshakeError::Cert(CertError::Revoked) => HandshakeError::Revoked { key, sender },
        e => e,
    }
}

/// `check_init` with a trust that sees the certificate too (and says why
/// it refuses).
pub fn check_init_with(
    msg: &[u8],
    me: &Identity,
    trusted: impl Fn(&NodeKey, Option<&Cert>) -> Result<(), HandshakeError>,
) -> Result<ValidInit, HandshakeError> {
    let p = InitPacket::new_checked(msg).map_err(|_| HandshakeError::Malformed)?;
    if p.responder_hint() != &[0; 32] && p.responder_hint() != &me.public().0 {
        return Err(HandshakeError::NotForUs);
    }
    let sealed = p.cred_type() == CredType::Sealed as u8;
    let seal_key = if sealed {
        let shared = me.dh(p.ephemeral()).ok_or(HandshakeError::NotForUs)?;
        Some(init_seal_key(&shared, p.ephemeral(), &me.public()))
    } else {
        None
    };
    let (peer, cert) =
        read_credential(p.cred_type(), p.cred(), p.before_cred(), seal_key.as_ref())?;
    trusted(&peer, cert.as_ref()).map_err(|e| revoked(e, peer, p.sender()))?;
    let prefix = seal_key.as_ref().map_or(&[][..], |k| &k[..]);
    if !peer.verify(
        &signed_digest(INIT_LABEL, prefix, p.signed()),
        p.signature(),
    ) {
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
        seal_reply: sealed || p.flags() & FLAG_SEALED_REPLY != 0,
        offers_aes: p.flags() & FLAG_AES_OFFERED != 0,
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
    respond_with(id, cred, false, rng, init, local_index, observed, now, out)
}

/// `respond` presenting `cred`; the session runs AES-256-GCM if the
/// initiator offered it and `fast_aes` (this CPU has AES instructions).
#[allow(clippy::too_many_arguments)]
pub fn respond_with(
    id: &Identity,
    cred: Credential<'_>,
    fast_aes: bool,
    rng: &dyn ring::rand::SecureRandom,
    init: &ValidInit,
    local_index: u32,
    observed: SocketAddr,
    now: Instant,
    out: &mut [u8],
) -> Result<(Session, usize), HandshakeError> {
    let (e_pub, shared) = respond_agreement(rng, &init.ephemeral)?;
    let seal_key = init
        .seal_reply
        .then(|| resp_seal_key(&shared, &init.init_hash));
    let sealed = seal_key.map(|_| sealable(cred.ty, cred.bytes));
    let cipher = if init.offers_aes && fast_aes {
        Cipher::Aes256Gcm
    } else {
        Cipher::ChaCha20Poly1305
    };
    let repr = RespRepr {
        sender: local_index,
        receiver: init.sender,
        ephemeral: e_pub,
        observed,
        cred_type: if sealed.is_some() {
            CredType::Sealed
        } else {
            cred.ty
        },
        flags: if cipher == Cipher::Aes256Gcm {
            RESP_FLAG_AES
        } else {
            0
        },
        cred: sealed.as_deref().unwrap_or(cred.bytes),
    };
    let len = repr.buffer_len();
    let out = out.get_mut(..len).ok_or(HandshakeError::Malformed)?;
    let at = repr.emit_unsigned(out);
    if let Some(key) = &seal_key {
        let (aad, body) = out.split_at_mut(68);
        seal(key, aad, &mut body[..at - 68]);
    }
    let prefix = resp_prefix(&init.init_hash, seal_key.as_ref());
    let sig = id.sign(&signed_digest(RESP_LABEL, &prefix, &out[..at]));
    out[at..].copy_from_slice(&sig);
    let th = transcript(&init.init_hash, &out[..len - SIG_LEN]);
    let (i2r, r2i) = derive(&shared.0, &th);
    let session = Session::new(cipher, local_index, init.sender, r2i, i2r, now, false);
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
    let cipher = match (p.flags() & RESP_FLAG_AES != 0, st.offered_aes) {
        (false, _) => Cipher::ChaCha20Poly1305,
        (true, true) => Cipher::Aes256Gcm,
        // AES chosen though we did not offer it: not an answer to our init.
        (true, false) => return Err(HandshakeError::Malformed),
    };
    let shared = x25519(&st.ephemeral, p.ephemeral()).ok_or(HandshakeError::Auth)?;
    let seal_key =
        (p.cred_type() == CredType::Sealed as u8).then(|| resp_seal_key(&shared, &st.init_hash));
    let (peer, cert) = read_credential(p.cred_type(), p.cred(), p.before_cred(), seal_key.as_ref())
        .map_err(|e| match e {
            // A response that does not open was altered or forged.
            HandshakeError::NotForUs => HandshakeError::Auth,
            e => e,
        })?;
    trusted(&peer, cert.as_ref()).map_err(|e| revoked(e, peer, p.sender()))?;
    let prefix = resp_prefix(&st.init_hash, seal_key.as_ref());
    if !peer.verify(
        &signed_digest(RESP_LABEL, &prefix, p.signed()),
        p.signature(),
    ) {
        return Err(HandshakeError::Auth);
    }
    let th = transcript(&st.init_hash, p.signed());
    let st = state.take().ok_or(HandshakeError::Malformed)?;
    let (i2r, r2i) = derive(&shared.0, &th);
    Ok(Completed {
        peer,
        cert,
        session: Session::new(cipher, st.local_index, p.sender(), i2r, r2i, now, true),
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
        let valid = check_init(&m1[..n1], b, |k| *k == a.public()).unwrap();
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
            let c = tx.next_counter(Instant::ZERO).unwrap();
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
            check_init(msg, &b, |_| false).err(),
            Some(HandshakeError::UnknownPeer)
        );
        let other = Identity::from_seed(&Seed([3; 32]));
        assert_eq!(
            check_init(msg, &other, |_| true).err(),
            Some(HandshakeError::NotForUs)
        );
        assert_eq!(
            check_init(&msg[..n1 - 1], &b, |_| true).err(),
            Some(HandshakeError::Malformed)
        );
        // A clear init (to whoever is there) altered in flight.
        let (_, n1) = create_init(&a, &rng, 1, None, 5, &mut m1).unwrap();
        m1[75] ^= 1; // timestamp
        assert_eq!(
            check_init(&m1[..n1], &b, |_| true).err(),
            Some(HandshakeError::Auth)
        );
    }

    /// Where `needle` occurs in `hay`.
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn credentials_travel_sealed_and_signatures_cannot_be_tested() {
        let (a, b) = ids();
        let rng = SystemRandom::new();
        let obs: SocketAddr = "198.18.0.1:1".parse().unwrap();
        // To a known responder: the init names neither side.
        let mut m1 = [0u8; 512];
        let (st, n1) = create_init(&a, &rng, 1, Some(b.public()), 5, &mut m1).unwrap();
        let init = &m1[..n1];
        assert_eq!(init[80], CredType::Sealed as u8);
        assert!(!contains(init, &a.public().0) && !contains(init, &b.public().0));
        let p = InitPacket::new_checked(init).unwrap();
        let plain = signed_digest(INIT_LABEL, &[], p.signed());
        assert!(!a.public().verify(&plain, p.signature()), "signer hidden");
        let valid = check_init(init, &b, |k| *k == a.public()).unwrap();
        assert_eq!(valid.peer, a.public());
        let mut m2 = [0u8; 512];
        let (_, n2) = respond(&b, &rng, &valid, 2, obs, Instant::ZERO, &mut m2).unwrap();
        assert_eq!(m2[64], CredType::Sealed as u8);
        assert!(!contains(&m2[..n2], &b.public().0));
        let done = finish(&mut Some(st), &m2[..n2], |_| true, Instant::ZERO).unwrap();
        assert_eq!(done.peer, b.public());
        // To whoever is there (a bootstrap endpoint): the init's credential
        // is in clear, but the response is sealed all the same.
        let (st, n1) = create_init(&a, &rng, 1, None, 6, &mut m1).unwrap();
        assert!(contains(&m1[..n1], &a.public().0));
        let valid = check_init(&m1[..n1], &b, |_| true).unwrap();
        let (_, n2) = respond(&b, &rng, &valid, 2, obs, Instant::ZERO, &mut m2).unwrap();
        assert!(!contains(&m2[..n2], &b.public().0));
        assert!(finish(&mut Some(st), &m2[..n2], |_| true, Instant::ZERO).is_ok());
    }

    #[test]
    fn a_sealed_init_opens_only_for_its_responder_and_only_unaltered() {
        let (a, b) = ids();
        let c = Identity::from_seed(&Seed([3; 32]));
        let rng = SystemRandom::new();
        let mut m1 = [0u8; 512];
        let (_, n1) = create_init(&a, &rng, 1, Some(b.public()), 5, &mut m1).unwrap();
        assert_eq!(
            check_init(&m1[..n1], &c, |_| true).err(),
            Some(HandshakeError::NotForUs)
        );
        for at in [4, 72, 90] {
            let mut bad = m1;
            bad[at] ^= 1; // header (associated data), timestamp, credential
            assert_eq!(
                check_init(&bad[..n1], &b, |_| true).err(),
                Some(HandshakeError::NotForUs),
                "byte {at}"
            );
        }
    }

    #[test]
    fn an_initiator_that_does_not_ask_gets_a_clear_response() {
        // A node from before sealed credentials: clear init, no flag.
        let (a, b) = ids();
        let rng = SystemRandom::new();
        let me = a.public();
        let mut m1 = [0u8; 512];
        let repr = InitRepr {
            sender: 1,
            responder_hint: [0; 32],
            ephemeral: [9; 32],
            timestamp: 5,
            cred_type: CredType::PublicKey,
            flags: 0,
            cred: &me.0,
        };
        let n1 = repr.buffer_len();
        let at = repr.emit_unsigned(&mut m1);
        let sig = a.sign(&signed_digest(INIT_LABEL, &[], &m1[..at]));
        m1[at..n1].copy_from_slice(&sig);
        let valid = check_init(&m1[..n1], &b, |_| true).unwrap();
        let mut m2 = [0u8; 512];
        let obs: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let (_, n2) = respond(&b, &rng, &valid, 2, obs, Instant::ZERO, &mut m2).unwrap();
        assert_eq!(m2[64], CredType::PublicKey as u8);
        assert!(contains(&m2[..n2], &b.public().0));
    }

    #[test]
    fn forged_response_fails() {
        let (a, b) = ids();
        let rng = SystemRandom::new();
        let mut m1 = [0u8; 512];
        let (st, n1) = create_init(&a, &rng, 1, None, 5, &mut m1).unwrap();
        let valid = check_init(&m1[..n1], &b, |_| true).unwrap();
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

    /// One handshake where the initiator offers AES if `a_aes` and the
    /// responder accepts it if `b_aes`; `tamper` edits the response.
    fn negotiate(
        a_aes: bool,
        b_aes: bool,
        tamper: impl Fn(&mut [u8]),
    ) -> Result<(Cipher, Cipher), HandshakeError> {
        let (a, b) = ids();
        let rng = SystemRandom::new();
        let mut m1 = [0u8; 512];
        let (ka, kb) = (a.public(), b.public());
        let cred = Credential::key(&ka);
        let (st, n1) =
            create_init_with(&a, cred, a_aes, &rng, 1, Some(b.public()), 5, &mut m1).unwrap();
        let valid = check_init(&m1[..n1], &b, |_| true).unwrap();
        assert_eq!(valid.offers_aes, a_aes);
        let mut m2 = [0u8; 512];
        let obs: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let cred = Credential::key(&kb);
        let (sb, n2) = respond_with(
            &b,
            cred,
            b_aes,
            &rng,
            &valid,
            2,
            obs,
            Instant::ZERO,
            &mut m2,
        )
        .unwrap();
        tamper(&mut m2[..n2]);
        let done = finish(&mut Some(st), &m2[..n2], |_| true, Instant::ZERO)?;
        // The keys match: a message sealed by one side opens on the other.
        let (mut sa, mut sb) = (done.session, sb);
        let mut msg = [0u8; 20];
        let tag = sa.seal(0, b"h", &mut msg[..4]);
        msg[4..].copy_from_slice(&tag);
        assert_eq!(sb.open(Instant::ZERO, 0, b"h", &mut msg), Ok(()));
        let _ = sa.next_counter(Instant::ZERO);
        Ok((sa.cipher(), sb.cipher()))
    }

    #[test]
    fn aes_gcm_only_when_both_sides_have_it() {
        use Cipher::*;
        let none = |_: &mut [u8]| {};
        assert_eq!(negotiate(true, true, none), Ok((Aes256Gcm, Aes256Gcm)));
        assert_eq!(
            negotiate(true, false, none),
            Ok((ChaCha20Poly1305, ChaCha20Poly1305))
        );
        assert_eq!(
            negotiate(false, true, none),
            Ok((ChaCha20Poly1305, ChaCha20Poly1305))
        );
        // The choice is signed: a path that clears or sets the response's
        // flag breaks the handshake instead of changing the cipher.
        let flip = |m: &mut [u8]| m[65] ^= RESP_FLAG_AES;
        assert_eq!(negotiate(true, true, flip), Err(HandshakeError::Auth));
        assert_eq!(negotiate(true, false, flip), Err(HandshakeError::Auth));
        // AES chosen for an initiator that never offered it: refused
        // before any signature work.
        assert_eq!(
            negotiate(false, false, flip),
            Err(HandshakeError::Malformed)
        );
    }
}
