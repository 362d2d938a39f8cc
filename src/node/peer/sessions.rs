//! A peer's handshake and session slots: what a handshake leaves behind
//! (the pending init, our answer to the peer's) and the three sessions a
//! rekey rotates through.

use crate::crypto::handshake::Initiator;
use crate::crypto::Session;
use crate::time::Instant;
use std::time::Duration;

/// An init we sent and are waiting to hear back on.
pub struct Pending {
    pub state: Option<Initiator>,
    pub local_index: u32,
    pub sent_at: Instant,
    pub next_retry: Instant,
    pub attempts: u32,
}

/// The answer to the newest init from a peer. The same init may arrive
/// twice, directly and over the overlay; each way is answered once, with
/// the same bytes (one session), so whichever arrives first is not refused
/// as a replay of the other.
pub struct Answer {
    pub timestamp: u64,
    /// Answered although its timestamp was not newer than the newest seen
    /// (the peer's clock went back, see `CLOCK_BACK_QUIET`): the local
    /// index of the session, which moves the replay guard back only once
    /// the peer has used it.
    pub provisional: Option<u32>,
    pub bytes: Vec<u8>,
    pub direct_sent: bool,
    pub overlay_sent: bool,
}

/// Session slots, as in WireGuard: `current` sends; `next` is a
/// responder session not yet confirmed by the initiator's first message;
/// `previous` still receives what was in flight during a rekey.
///
/// Sessions are boxed (a few hundred bytes each: two keys and a replay
/// window), so a slot without one costs a pointer. Boxes are made per
/// handshake, never per packet.
#[derive(Default)]
pub struct Sessions {
    pub current: Option<Box<Session>>,
    pub previous: Option<Box<Session>>,
    /// The session replaced before `previous`, kept as long: after a
    /// crossed rekey (both sides initiating at once) the peer can send on
    /// our old session and on the one we just initiated, in either order,
    /// while a third (its own) becomes our current.
    pub older: Option<Box<Session>>,
    pub next: Option<Box<Session>>,
    /// The answered session `next` replaced, still unconfirmed: a peer with
    /// two inits in flight (a retry, or a link and a connect-to-me at once)
    /// may go on with either, and the one it completes must be found.
    pub next_alt: Option<Box<Session>>,
}

/// Which slot a received message matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Previous,
    Next,
    NextAlt,
}

impl Sessions {
    pub fn find_mut(&mut self, index: u32) -> Option<(Slot, &mut Session)> {
        for (slot, s) in [
            (Slot::Current, &mut self.current),
            (Slot::Next, &mut self.next),
            (Slot::NextAlt, &mut self.next_alt),
            (Slot::Previous, &mut self.previous),
            (Slot::Previous, &mut self.older),
        ] {
            if let Some(s) = s.as_mut().filter(|s| s.local_index == index) {
                return Some((slot, s));
            }
        }
        None
    }

    /// Installs a session we initiated: it sends at once. Returns the index
    /// of the session pushed out, to unregister.
    pub fn install_initiated(&mut self, s: Session) -> Option<u32> {
        let evicted = self.rotate();
        self.current = Some(Box::new(s));
        evicted
    }

    /// Makes room for a new current session: the current one becomes
    /// `previous` (its messages in flight still arrive) and that one
    /// `older`. If all three are taken, the one the peer last sent on
    /// longest ago goes. That is normally the oldest; but after crossed
    /// handshakes each side's current can be the other's previous, the
    /// peer sending on what is our previous — evicting that one lost the
    /// peer's traffic until it moved to the new session (seen in the
    /// simulator at the first rekey after a mass join). And one slot was
    /// too few: in a crossed rekey the peer went on sending on our old
    /// session, then on its new one (our `next`, promoted), then on ours
    /// just initiated, which the promotion had evicted as unused.
    fn rotate(&mut self) -> Option<u32> {
        let mut kept = [self.current.take(), self.previous.take(), self.older.take()];
        let evicted = if kept.iter().all(Option::is_some) {
            let stalest = (0..3)
                .min_by_key(|&i| kept[i].as_ref().map(|s| s.last_rx()))
                .unwrap_or(2);
            kept[stalest].take()
        } else {
            None
        };
        let mut left = kept.into_iter().flatten();
        self.previous = left.next();
        self.older = left.next();
        evicted.map(|e| e.local_index)
    }

    /// Installs a responder session in `next` (the one there moves to
    /// `next_alt`); returns the index evicted.
    pub fn install_responded(&mut self, s: Session) -> Option<u32> {
        let old = self.next.replace(Box::new(s))?;
        self.next_alt.replace(old).map(|n| n.local_index)
    }

    /// The initiator used an answered session (`slot` is `Next` or
    /// `NextAlt`): it becomes current. Returns the index evicted.
    pub fn promote(&mut self, slot: Slot) -> Option<u32> {
        let n = match slot {
            Slot::Next => self.next.take(),
            Slot::NextAlt => self.next_alt.take(),
            _ => None,
        }?;
        let evicted = self.rotate();
        self.current = Some(n);
        evicted
    }

    /// Drops sessions older than `max_age`, and a replaced session once the
    /// current one is `PREVIOUS_KEEP` old; calls `gone` with each index.
    pub fn expire(&mut self, now: Instant, max_age: Duration, mut gone: impl FnMut(u32)) {
        if let Some(cur) = &self.current {
            for slot in [&mut self.previous, &mut self.older] {
                if slot
                    .as_ref()
                    .is_some_and(|s| now >= s.last_rx().max(cur.created) + super::PREVIOUS_KEEP)
                {
                    gone(slot.take().map_or(0, |s| s.local_index));
                }
            }
        }
        for slot in [
            &mut self.current,
            &mut self.previous,
            &mut self.older,
            &mut self.next,
            &mut self.next_alt,
        ] {
            if slot
                .as_ref()
                .is_some_and(|s| now.saturating_since(s.created) >= max_age)
            {
                gone(slot.take().map_or(0, |s| s.local_index));
            }
        }
    }

    /// Drops every session; calls `gone` with each index.
    pub fn clear(&mut self, mut gone: impl FnMut(u32)) {
        for slot in [
            &mut self.current,
            &mut self.previous,
            &mut self.older,
            &mut self.next,
            &mut self.next_alt,
        ] {
            if let Some(s) = slot.take() {
                gone(s.local_index);
            }
        }
    }

    /// Whether any slot holds a session.
    pub fn any(&self) -> bool {
        self.current.is_some()
            || self.previous.is_some()
            || self.older.is_some()
            || self.next.is_some()
            || self.next_alt.is_some()
    }

    pub fn oldest_created(&self) -> Option<Instant> {
        [
            &self.current,
            &self.previous,
            &self.older,
            &self.next,
            &self.next_alt,
        ]
        .iter()
        .filter_map(|s| s.as_ref().map(|s| s.created))
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session with local index `i` that has heard from the peer at `rx`.
    fn session(i: u32, rx: Instant) -> Session {
        let mut s = Session::new(
            crate::crypto::session::Cipher::ChaCha20Poly1305,
            i,
            i + 100,
            [1; 32],
            [1; 32],
            Instant::ZERO,
            true,
        );
        let mut msg = [0u8; 16];
        let c = s.next_counter(Instant::ZERO).unwrap();
        let tag = s.seal(c, &[], &mut msg[..0]);
        msg.copy_from_slice(&tag);
        s.open(rx, c, &[], &mut msg).unwrap();
        s
    }

    #[test]
    fn a_rekey_keeps_the_session_the_peer_sends_on() {
        let at = |ms: u64| Instant::from_micros(ms * 1000);
        let idx = |s: &Option<Box<Session>>| s.as_ref().map(|s| s.local_index);
        // Normal: current and previous both stay; nothing is evicted
        // until a third rekey within PREVIOUS_KEEP.
        let mut s = Sessions {
            current: Some(Box::new(session(1, at(50)))),
            previous: Some(Box::new(session(2, at(10)))),
            ..Sessions::default()
        };
        assert_eq!(s.install_initiated(session(3, at(60))), None);
        assert_eq!((idx(&s.previous), idx(&s.older)), (Some(1), Some(2)));
        // With all three taken, the one the peer last sent on longest ago
        // goes, whichever slot it is in.
        assert_eq!(s.install_initiated(session(4, at(70))), Some(2));
        assert_eq!((idx(&s.previous), idx(&s.older)), (Some(3), Some(1)));
        // Crossed: the peer goes on sending on what is our previous (its
        // current); our current is its previous. The rekey keeps it.
        let mut s = Sessions {
            current: Some(Box::new(session(1, at(10)))),
            previous: Some(Box::new(session(2, at(50)))),
            older: Some(Box::new(session(5, at(5)))),
            ..Sessions::default()
        };
        assert_eq!(s.install_initiated(session(3, at(60))), Some(5));
        assert_eq!(s.find_mut(2).map(|(slot, _)| slot), Some(Slot::Previous));
        assert!(s.find_mut(1).is_some());
        // A crossed rekey (seen in the simulator): the peer still sends on
        // our old session (2), then its own new one (3, our `next`) is
        // promoted, and it will send on the one we just initiated (1, not
        // yet heard on). All three must still be found.
        let mut s = Sessions {
            current: Some(Box::new(session(1, at(40)))),
            previous: Some(Box::new(session(2, at(50)))),
            next: Some(Box::new(session(3, at(60)))),
            ..Sessions::default()
        };
        assert_eq!(s.promote(Slot::Next), None);
        assert_eq!(idx(&s.current), Some(3));
        for i in [1, 2, 3] {
            assert!(s.find_mut(i).is_some(), "session {i}");
        }
        // Once the new current is PREVIOUS_KEEP old and the peer has gone
        // quiet on the old ones, they go.
        let mut gone = Vec::new();
        s.expire(
            at(60) + crate::node::peer::PREVIOUS_KEEP,
            Duration::from_secs(180),
            |i| gone.push(i),
        );
        gone.sort();
        assert_eq!(gone, vec![1, 2]);
        assert!(s.previous.is_none() && s.older.is_none());
    }
}
