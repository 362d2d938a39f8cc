//! One direction-pair of AEAD keys agreed by a handshake.
//!
//! The cipher is ChaCha20-Poly1305 unless both ends have AES instructions
//! (AES-NI with carry-less multiply, or ARMv8's AES and PMULL), in which
//! case the handshake picks AES-256-GCM: there it seals a 1,400-byte frame
//! in about half the instructions. Routers without them (most MIPS and
//! 32-bit ARM boards) run ChaCha faster than a table-driven AES, so the
//! choice follows the slower end.
//!
//! A session keeps its two raw keys and expands them into the AEAD's key
//! schedules only once it carries traffic. Most sessions carry overlay
//! maintenance only, a message every few seconds, and live two minutes
//! until the rekey: two expanded keys (544 bytes each in ring, sized for
//! AES-GCM) would be three quarters of such a session. A cold message
//! pays a key set-up on the stack instead (a copy for ChaCha20, an AES
//! key expansion); a session that has carried [`HOT_AFTER`] messages at a
//! rate of at least one a second expands its keys for the rest of its
//! life, so a busy path seals and opens with ready keys. The replay window
//! follows the same rule: 256 counters while quiet, 2,048 once busy
//! (`crypto::replay`).

use super::replay::{QuietWindow, ReplayWindow};
use crate::time::Instant;
use ring::aead::{Aad, LessSafeKey, Nonce, AES_256_GCM, CHACHA20_POLY1305};

/// The AEAD a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    ChaCha20Poly1305,
    Aes256Gcm,
}

impl Cipher {
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &AES_256_GCM,
        }
    }

    /// The key schedule of a raw key.
    fn key(self, raw: &[u8; 32]) -> LessSafeKey {
        LessSafeKey::new(ring::aead::UnboundKey::new(self.algorithm(), raw).expect("32-byte key"))
    }
}

/// Counters stop well before 2^64 so a nonce can never wrap.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Messages (sent and accepted) after which a session that has averaged
/// at least one a second keeps expanded keys.
pub const HOT_AFTER: u64 = 256;

/// Which of a session's keys: ours to send with, or the peer's.
const SEND: usize = 0;
const RECV: usize = 1;

/// Keys and counters of one session.
pub struct Session {
    pub local_index: u32,
    pub remote_index: u32,
    /// Raw keys, `SEND` and `RECV`.
    keys: [[u8; 32]; 2],
    /// Their key schedules and the full replay window, once the session
    /// is busy.
    expanded: Option<Box<Hot>>,
    send_counter: u64,
    cipher: Cipher,
    /// The replay window while the session is quiet.
    replay: QuietWindow,
    pub created: Instant,
    last_rx: Instant,
    /// Whether we sent the init: the initiator is the one who rekeys on time.
    pub initiator: bool,
}

/// What a busy session adds: ready key schedules and a replay window that
/// takes a fast path's reordering.
struct Hot {
    keys: [LessSafeKey; 2],
    replay: ReplayWindow,
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Why an incoming message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Replay,
    Auth,
}

impl Session {
    /// A session running `cipher` (what the handshake agreed).
    pub fn new(
        cipher: Cipher,
        local_index: u32,
        remote_index: u32,
        send: [u8; 32],
        recv: [u8; 32],
        created: Instant,
        initiator: bool,
    ) -> Session {
        Session {
            local_index,
            remote_index,
            keys: [send, recv],
            expanded: None,
            send_counter: 0,
            cipher,
            replay: QuietWindow::default(),
            created,
            last_rx: created,
            initiator,
        }
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// When something last arrived on this session (its creation if nothing has).
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.send_counter
    }

    /// Whether the key schedules are expanded (the session is busy).
    pub fn is_hot(&self) -> bool {
        self.expanded.is_some()
    }

    /// Takes the next send counter, or `None` once the session is exhausted.
    #[inline]
    pub fn next_counter(&mut self, now: Instant) -> Option<u64> {
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return None;
        }
        let c = self.send_counter;
        self.send_counter += 1;
        if self.expanded.is_none() {
            self.warm(now);
        }
        Some(c)
    }

    /// Expands the keys once the session has shown it is busy.
    #[cold]
    fn warm(&mut self, now: Instant) {
        // Counters run in order, so the receive window's top counts what
        // arrived closely enough.
        let messages = self.send_counter + self.replay.top();
        let age_s = now.saturating_since(self.created).as_secs();
        if messages >= HOT_AFTER && messages >= age_s {
            let key = |k| self.cipher.key(k);
            self.expanded = Some(Box::new(Hot {
                keys: [key(&self.keys[SEND]), key(&self.keys[RECV])],
                replay: self.replay.widen(),
            }));
        }
    }

    /// Runs `f` with key schedule `SEND` or `RECV`: the expanded one of a
    /// busy session, else one set up on the stack for this message.
    #[inline(always)]
    fn with_key<R>(&self, which: usize, f: impl FnOnce(&LessSafeKey) -> R) -> R {
        match &self.expanded {
            Some(x) => f(&x.keys[which]),
            None => f(&self.cipher.key(&self.keys[which])),
        }
    }

    /// Encrypts `payload` in place; returns the tag to append.
    pub fn seal(&self, counter: u64, header: &[u8], payload: &mut [u8]) -> [u8; 16] {
        let tag = self.with_key(SEND, |key| {
            key.seal_in_place_separate_tag(nonce(counter), Aad::from(header), payload)
                .expect("payload below the AEAD's 256 GiB limit")
        });
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts in place with the receive key.
    fn decrypt(&self, counter: u64, header: &[u8], ciphertext_and_tag: &mut [u8]) -> bool {
        self.with_key(RECV, |key| {
            key.open_in_place(nonce(counter), Aad::from(header), ciphertext_and_tag)
                .is_ok()
        })
    }

    /// Tests: decrypts without the replay window (what the holder of these
    /// keys can read in a message on the wire, leaving the session as it
    /// was).
    #[cfg(test)]
    pub fn peek_open(
        &self,
        counter: u64,
        header: &[u8],
        ciphertext_and_tag: &mut [u8],
    ) -> Result<(), OpenError> {
        if self.decrypt(counter, header, ciphertext_and_tag) {
            Ok(())
        } else {
            Err(OpenError::Auth)
        }
    }

    /// Checks the replay window, then decrypts `ciphertext_and_tag` in place.
    /// On success the plaintext is the first `len - 16` bytes.
    pub fn open(
        &mut self,
        now: Instant,
        counter: u64,
        header: &[u8],
        ciphertext_and_tag: &mut [u8],
    ) -> Result<(), OpenError> {
        let fresh = match &self.expanded {
            Some(hot) => hot.replay.check(counter),
            None => self.replay.check(counter),
        };
        if counter >= REJECT_AFTER_MESSAGES || !fresh {
            return Err(OpenError::Replay);
        }
        if !self.decrypt(counter, header, ciphertext_and_tag) {
            return Err(OpenError::Auth);
        }
        self.accept(now, counter)?;
        if self.expanded.is_none() {
            self.warm(now);
        }
        Ok(())
    }

    /// Moves the window past an authenticated message: only after
    /// authentication, so forgeries cannot move it.
    #[inline(always)]
    fn accept(&mut self, now: Instant, counter: u64) -> Result<(), OpenError> {
        let fresh = match &mut self.expanded {
            Some(hot) => hot.replay.accept(counter),
            None => self.replay.accept(counter),
        };
        if fresh {
            self.last_rx = now;
            Ok(())
        } else {
            Err(OpenError::Replay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        pair_with(Cipher::ChaCha20Poly1305)
    }

    fn pair_with(c: Cipher) -> (Session, Session) {
        let a = Session::new(c, 1, 2, [7; 32], [8; 32], Instant::ZERO, true);
        let b = Session::new(c, 2, 1, [8; 32], [7; 32], Instant::ZERO, false);
        (a, b)
    }

    #[test]
    fn seal_open_tamper_replay() {
        for c in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
            seal_open_tamper_replay_with(c);
        }
    }

    #[test]
    fn ciphers_do_not_interoperate() {
        // The same keys under the other AEAD: refused, never misread.
        let (mut a, _) = pair_with(Cipher::Aes256Gcm);
        let (_, mut b) = pair_with(Cipher::ChaCha20Poly1305);
        let mut msg = [0u8; 32];
        let c = a.next_counter(Instant::ZERO).unwrap();
        let tag = a.seal(c, &[1], &mut msg[..16]);
        msg[16..].copy_from_slice(&tag);
        assert_eq!(
            b.open(Instant::ZERO, c, &[1], &mut msg),
            Err(OpenError::Auth)
        );
        assert_eq!(a.cipher().name(), "aes-256-gcm");
    }

    fn seal_open_tamper_replay_with(cipher: Cipher) {
        let (mut a, mut b) = pair_with(cipher);
        let hdr = [1u8; 16];
        let mut msg = *b"sixteen byte msg\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let c = a.next_counter(Instant::ZERO).unwrap();
        let tag = a.seal(c, &hdr, &mut msg[..16]);
        msg[16..].copy_from_slice(&tag);
        let mut copy = msg;
        assert_eq!(b.open(Instant::ZERO, c, &hdr, &mut msg), Ok(()));
        assert_eq!(&msg[..16], b"sixteen byte msg");
        // Replay of the same ciphertext.
        assert_eq!(
            b.open(Instant::ZERO, c, &hdr, &mut copy.clone()),
            Err(OpenError::Replay)
        );
        // Tampered header (associated data) or body.
        let mut other = [2u8; 16];
        other[0] = 9;
        copy[3] ^= 1;
        assert_eq!(
            b.open(Instant::ZERO, c + 1, &hdr, &mut copy),
            Err(OpenError::Auth)
        );
        assert_eq!(
            b.open(Instant::ZERO, c + 1, &other, &mut msg),
            Err(OpenError::Auth)
        );
        // A forgery did not advance the window: counter c+1 is still usable.
        let mut m2 = [0u8; 16];
        let tag = a.seal(1, &hdr, &mut []);
        m2.copy_from_slice(&tag);
        assert_eq!(a.next_counter(Instant::ZERO), Some(1));
        assert_eq!(b.open(Instant::ZERO, 1, &hdr, &mut m2), Ok(()));
    }

    /// Sends one message from `a` to `b` at `now`.
    fn one_message(a: &mut Session, b: &mut Session, now: Instant) {
        let mut msg = [0u8; 20];
        let c = a.next_counter(now).unwrap();
        let tag = a.seal(c, b"h", &mut msg[..4]);
        msg[4..].copy_from_slice(&tag);
        assert_eq!(b.open(now, c, b"h", &mut msg), Ok(()));
    }

    #[test]
    fn keys_are_expanded_only_for_a_busy_session() {
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
            // Maintenance pace, a message every two seconds: cold for life,
            // and cold keys read what hot ones seal.
            let (mut a, mut b) = pair_with(cipher);
            for i in 0..200u64 {
                one_message(&mut a, &mut b, Instant::from_micros(i * 2_000_000));
            }
            assert!(!a.is_hot() && !b.is_hot());
            // A burst: hot after HOT_AFTER messages (counted both ways).
            let (mut a, mut b) = pair_with(cipher);
            let at = Instant::from_micros(5_000_000);
            for _ in 0..HOT_AFTER / 2 - 1 {
                one_message(&mut a, &mut b, at);
                one_message(&mut b, &mut a, at);
            }
            assert!(!a.is_hot());
            one_message(&mut a, &mut b, at);
            one_message(&mut b, &mut a, at);
            assert!(a.is_hot() && b.is_hot());
            // Hot and cold ends still understand each other.
            let (_, mut cold) = pair_with(cipher);
            one_message(&mut a, &mut cold, at);
        }
    }

    /// A quiet session's window spans 256 counters; a busy one's 2,048,
    /// and what the quiet one saw stays refused when it turns busy.
    #[test]
    fn the_replay_window_widens_when_the_session_turns_busy() {
        let (mut a, mut b) = pair();
        // 1,000 s in: below one message a second until 1,000 have come.
        let at = Instant::from_micros(1_000_000_000);
        let mut sealed = Vec::new();
        for _ in 0..1400u64 {
            let mut msg = [0u8; 20];
            let c = a.next_counter(Instant::ZERO).unwrap();
            let tag = a.seal(c, b"h", &mut msg[..4]);
            msg[4..].copy_from_slice(&tag);
            sealed.push((c, msg));
        }
        let open = |b: &mut Session, i: usize| {
            let (c, mut m) = sealed[i];
            b.open(at, c, b"h", &mut m)
        };
        // Quiet: counter 10 arrives 300 behind the newest, too old.
        assert_eq!(open(&mut b, 310), Ok(()));
        assert_eq!(open(&mut b, 10), Err(OpenError::Replay));
        assert_eq!(open(&mut b, 100), Ok(()));
        for i in 311..999 {
            assert_eq!(open(&mut b, i), Ok(()));
        }
        assert!(!b.is_hot());
        assert_eq!(open(&mut b, 999), Ok(()));
        assert!(b.is_hot());
        // Busy: what was seen or too old stays refused; 300 behind is fine.
        assert_eq!(open(&mut b, 100), Err(OpenError::Replay));
        assert_eq!(open(&mut b, 10), Err(OpenError::Replay));
        assert_eq!(open(&mut b, 998), Err(OpenError::Replay));
        assert_eq!(open(&mut b, 1399), Ok(()));
        assert_eq!(open(&mut b, 1100), Ok(()));
        assert_eq!(open(&mut b, 1100), Err(OpenError::Replay));
    }

    #[test]
    fn exhausted_counter_refuses_to_send() {
        let (mut a, _) = pair();
        a.send_counter = REJECT_AFTER_MESSAGES;
        assert_eq!(a.next_counter(Instant::ZERO), None);
    }
}
