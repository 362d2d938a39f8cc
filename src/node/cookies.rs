//! Stateless cookies: how a node under a handshake flood makes an
//! initiator prove its address before doing expensive work for it.
//!
//! Checking an init costs a signature verification (and, in certificate
//! mode, two more); answering it costs a key exchange and a signature.
//! The handshake limiter bounds that work, but a flood from spoofed
//! addresses would use up the whole budget and lock real peers out. So
//! while the budget runs low ("under load"), an init from a source that
//! has not proven its address gets a 24-byte cookie reply instead: a MAC
//! of its address and port under a secret that rotates every two minutes.
//! Nothing is stored per source. The initiator's next init carries the
//! cookie, which proves it receives at that address, and proven sources
//! have a budget of their own that spoofed traffic cannot touch.
//!
//! The reply is smaller than the init it answers (24 bytes against 148 or
//! more), so a node cannot be used to amplify a flood at someone else.
//! It echoes the init's sender index, so an off-path attacker cannot make
//! a node hold a wrong cookie without guessing a 32-bit number.

use super::{DropReason, Node, Target};
use crate::buf::PacketBuf;
use crate::limit::Bucket;
use crate::time::Instant;
use crate::wire::endpoint::Endpoint;
use crate::wire::handshake::COOKIE_LEN;
use ring::hmac;
use std::time::Duration;

/// How long a cookie secret is used; a cookie stays valid for one more
/// period after its secret is replaced.
pub const SECRET_LIFE: Duration = Duration::from_secs(120);
/// How long an initiator uses a cookie it was given.
pub const COOKIE_LIFE: Duration = Duration::from_secs(110);
/// Cookies an initiator holds at once (one per endpoint that asked).
pub const HELD: usize = 16;
/// Cookie replies per second, and burst. A reply costs one HMAC and 52
/// bytes on the wire (0.5 MB/s at the full rate); the bound keeps a flood
/// from turning into as much traffic out. Beyond it an init is dropped,
/// and a real initiator's next attempt gets its cookie.
pub const REPLY_RATE_PER_S: u32 = 10_000;
pub const REPLY_BURST: u32 = 1000;

pub type Cookie = [u8; COOKIE_LEN];

pub struct Cookies {
    secret: hmac::Key,
    previous: hmac::Key,
    rotated_at: Instant,
    replies: Bucket,
    /// Cookies we were given, by the endpoint that gave them.
    held: Vec<(Endpoint, Cookie, Instant)>,
}

fn fresh_key(rng: &dyn ring::rand::SecureRandom) -> hmac::Key {
    let mut secret = [0u8; 32];
    // Without randomness the secret is still unknown to others only if
    // the system failed in a way nothing else survives either.
    let _ = rng.fill(&mut secret);
    hmac::Key::new(hmac::HMAC_SHA256, &secret)
}

fn mac(key: &hmac::Key, from: &Endpoint) -> Cookie {
    let mut msg = [0u8; 19];
    match from.addr.ip() {
        std::net::IpAddr::V4(v4) => msg[..4].copy_from_slice(&v4.octets()),
        std::net::IpAddr::V6(v6) => msg[..16].copy_from_slice(&v6.octets()),
    }
    msg[16..18].copy_from_slice(&from.addr.port().to_be_bytes());
    msg[18] = from.transport as u8;
    let tag = hmac::sign(key, &msg);
    let mut out = [0u8; COOKIE_LEN];
    out.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
    out
}

/// Equal without an early exit (the time taken says nothing of where two
/// cookies differ).
fn same(a: &Cookie, b: &Cookie) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Cookies {
    pub fn new(rng: &dyn ring::rand::SecureRandom, now: Instant) -> Cookies {
        Cookies {
            secret: fresh_key(rng),
            previous: fresh_key(rng),
            rotated_at: now,
            replies: Bucket::full(REPLY_BURST, now),
            held: Vec::new(),
        }
    }

    fn rotate(&mut self, now: Instant, rng: &dyn ring::rand::SecureRandom) {
        if now.saturating_since(self.rotated_at) >= SECRET_LIFE {
            self.previous = std::mem::replace(&mut self.secret, fresh_key(rng));
            self.rotated_at = now;
        }
    }

    /// The cookie for `from`, if another reply may go out now.
    pub fn reply(
        &mut self,
        now: Instant,
        rng: &dyn ring::rand::SecureRandom,
        from: &Endpoint,
    ) -> Option<Cookie> {
        self.rotate(now, rng);
        self.replies
            .take(now, REPLY_RATE_PER_S, REPLY_BURST)
            .then(|| mac(&self.secret, from))
    }

    /// Whether `cookie` is one we gave `from` (under this secret or the
    /// one before).
    pub fn valid(
        &mut self,
        now: Instant,
        rng: &dyn ring::rand::SecureRandom,
        from: &Endpoint,
        cookie: &Cookie,
    ) -> bool {
        self.rotate(now, rng);
        same(&mac(&self.secret, from), cookie) || same(&mac(&self.previous, from), cookie)
    }

    /// Keeps a cookie `from` gave us, for our next inits to it.
    pub fn remember(&mut self, now: Instant, from: Endpoint, cookie: Cookie) {
        self.held
            .retain(|(ep, _, at)| *ep != from && now.saturating_since(*at) < COOKIE_LIFE);
        if self.held.len() >= HELD {
            self.held.remove(0);
        }
        self.held.push((from, cookie, now));
    }

    /// The cookie to attach to an init for `to`, if we hold a fresh one.
    pub fn for_endpoint(&self, now: Instant, to: &Endpoint) -> Option<Cookie> {
        self.held
            .iter()
            .find(|(ep, _, at)| ep == to && now.saturating_since(*at) < COOKIE_LIFE)
            .map(|(_, c, _)| *c)
    }
}

impl Node {
    /// A cookie reply to one of our inits: the responder is under load and
    /// wants our address proven. The cookie goes on our inits to that
    /// endpoint from now on. A new cookie has the handshake retried at once
    /// without using up an attempt (a punch's inits to other candidates
    /// may still be answered: the pending init stays valid); a cookie for
    /// an endpoint that already gave us one is only kept.
    pub(super) fn handle_cookie_reply(&mut self, now: Instant, from: Endpoint, buf: PacketBuf) {
        let parsed = crate::wire::handshake::parse_cookie_reply(self.pool.data(&buf));
        let Ok((receiver, cookie)) = parsed else {
            return self.drop_buf(buf, DropReason::BadLength);
        };
        self.pool.free(buf);
        let target = match self.index.by_session.get(&receiver) {
            Some(&Target::Ctm(_)) => return self.stats.count(DropReason::Unsolicited),
            Some(&t) => t,
            None => return self.stats.count(DropReason::UnknownSession),
        };
        let fresh = self.guards.cookies.for_endpoint(now, &from).is_none();
        let Some(pending) = self
            .pending_slot(target)
            .as_mut()
            .filter(|x| x.local_index == receiver)
        else {
            return self.stats.count(DropReason::UnknownSession);
        };
        if fresh {
            log::debug!("cookie from {from}: handshake retried with it");
            pending.next_retry = now;
            pending.attempts = pending.attempts.saturating_sub(1);
        }
        self.guards.cookies.remember(now, from, cookie);
        match target {
            Target::Peer(p) => self.touch(p),
            _ => self.strangers.boots_dirty = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_bound_to_the_address_and_expire() {
        let rng = ring::rand::SystemRandom::new();
        let t0 = Instant::ZERO;
        let mut c = Cookies::new(&rng, t0);
        let a = Endpoint::udp("198.18.0.1:5140".parse().unwrap());
        let b = Endpoint::udp("198.18.0.2:5140".parse().unwrap());
        let other_port = Endpoint::udp("198.18.0.1:5141".parse().unwrap());
        let cookie = c.reply(t0, &rng, &a).unwrap();
        assert!(c.valid(t0, &rng, &a, &cookie));
        assert!(!c.valid(t0, &rng, &b, &cookie));
        assert!(!c.valid(t0, &rng, &other_port, &cookie));
        assert!(!c.valid(t0, &rng, &Endpoint::tcp(a.addr), &cookie));
        // Valid through one rotation, not two.
        assert!(c.valid(t0 + SECRET_LIFE, &rng, &a, &cookie));
        assert!(!c.valid(t0 + SECRET_LIFE * 2, &rng, &a, &cookie));
        // Replies are rate limited.
        let mut c = Cookies::new(&rng, t0);
        let sent = (0..10_000)
            .filter(|_| c.reply(t0, &rng, &a).is_some())
            .count();
        assert_eq!(sent, REPLY_BURST as usize);
    }

    #[test]
    fn an_initiator_holds_a_bounded_set_of_fresh_cookies() {
        let rng = ring::rand::SystemRandom::new();
        let t0 = Instant::ZERO;
        let mut c = Cookies::new(&rng, t0);
        let ep = |i: u32| {
            Endpoint::udp(std::net::SocketAddr::from((
                std::net::Ipv4Addr::from(0xc612_0000 + i),
                5140,
            )))
        };
        for i in 0..100 {
            c.remember(t0, ep(i), [i as u8; COOKIE_LEN]);
        }
        assert!(c.held.len() <= HELD);
        assert_eq!(c.for_endpoint(t0, &ep(99)), Some([99; COOKIE_LEN]));
        assert_eq!(c.for_endpoint(t0, &ep(0)), None);
        assert_eq!(c.for_endpoint(t0 + COOKIE_LIFE, &ep(99)), None);
        // A new cookie from the same endpoint replaces the old one.
        c.remember(t0, ep(99), [1; COOKIE_LEN]);
        assert_eq!(c.for_endpoint(t0, &ep(99)), Some([1; COOKIE_LEN]));
    }
}
