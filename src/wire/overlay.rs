//! Overlay messages, carried inside sealed link-control messages (type 4;
//! every kind is listed in `wire::control`; the per-link ones, kinds 4, 6
//! and 11, are defined in `wire::links`):
//!
//! | kind | name | layout |
//! |---:|---|---|
//! | 3 | routed | 40-byte routed header, then an overlay message |
//! | 4 | neighbours | kind, count, reasons, reserved; count × 52-byte node records |
//! | 6 | connection list | kind, count (≤ 64), relay budget (u16); count × 8-byte address prefixes |
//! | 7 | routed data | 20-byte compact header (exact mode), then a sealed end-to-end message |
//! | 8 | broadcast | header (`wire::broadcast`), then the broadcast packet |
//! | 11 | endpoints | kind, count (≤ 8), 2 reserved; count × 20-byte endpoints |
//!
//! Routed header (40 bytes):
//! ```text
//!  0 kind=3 | 1 mode | 2 hops | 3 ttl | 4..20 source addr | 20..36 destination addr
//!  36 message type | 37 flags | 38..40 reserved
//! ```
//! Flags: bit 0 = final approach (see [`FLAG_FINAL`]).
//! Node record (52 bytes): 32-byte node key, 20-byte endpoint.
//! Routed messages (docs/PROTOCOL.md has every byte):
//! - type 1, connect-to-me request: purpose, endpoint count n (≤ 8; bit 7:
//!   a reply address follows), init length L (u16, 0 = none), 32-byte
//!   requester key, 8-byte token, n endpoints, the 16-byte reply address
//!   if flagged, then L bytes of a handshake init addressed to "whoever is
//!   there": the node that accepts the request answers it straight to the
//!   requester, so the new link costs one round trip after the request.
//!   The reply address names a node linked to the requester (its first
//!   hop): a requester behind a NAT may have no link near its own address
//!   yet, so a reply routed there would find nobody who knows it; the
//!   reply goes to the named node inside a forward (type 11) instead.
//! - type 2, connect-to-me reply: purpose, endpoint count n (≤ 8), neighbour
//!   count m (≤ 8), reserved, 32-byte responder key, the request's token, n
//!   endpoints, m node records.
//! - type 3, echo request / type 4, echo reply: 8-byte nonce, 8-byte timestamp.
//! - type 5, DHT (`wire::dht`); type 6, a whole handshake message; types 7
//!   and 8, relay query and offer.
//! - type 9, a task request for the destination alone (`wire::task`);
//!   type 10, a member's description for a crawl (`wire::describe`).
//! - type 11, forward: a whole routed message (header and body, exact
//!   mode) that the destination passes to the inner destination, one of
//!   its own links (Brunet's forwarding sender).

use super::addr::Addr;
pub use super::endpoint::Endpoint;
use super::key::NodeKey;
use super::{endpoint, get_u16, get_u64, Error, Result};
use smallvec::SmallVec;

pub use super::broadcast::{Broadcast, BroadcastRepr, BROADCAST_HEADER_LEN};
use super::control::{KIND_ROUTED, KIND_ROUTED_DATA};
pub use super::links::{ConnList, EndpointList, Neighbours};

pub const ROUTED_HEADER_LEN: usize = 40;
/// Routed flag: a right-of / left-of message has reached the node closest
/// to its destination and now moves by the one-sided distance only.
pub const FLAG_FINAL: u8 = 1;
pub const RECORD_LEN: usize = 32 + endpoint::LEN;
/// Candidate endpoints a node advertises at most (bound, reflexive and
/// predicted UDP ones, TCP).
pub const MAX_ENDPOINTS: usize = 8;
pub const MAX_NEIGHBOURS: usize = 8;
/// Entries in a connection list (a node's table is normally ~17).
pub const MAX_CONN_LIST: usize = 64;
/// The largest handshake init a connect-to-me request carries.
pub const MAX_INIT: usize = super::handshake::INIT_FIXED_LEN + super::handshake::MAX_CRED_LEN;

/// Who accepts a routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Only the node whose address equals the destination.
    Exact = 1,
    /// The node closest to the destination.
    Closest = 2,
    /// The node closest to the destination other than the source.
    ClosestOther = 3,
    /// The first node clockwise from the destination, other than the
    /// source: how a node finds its right neighbour even when a closer
    /// node sits on its other side.
    RightOf = 4,
    /// The first node counter-clockwise from the destination, other than
    /// the source.
    LeftOf = 5,
}

impl Mode {
    fn from_u8(v: u8) -> Option<Mode> {
        match v {
            1 => Some(Mode::Exact),
            2 => Some(Mode::Closest),
            3 => Some(Mode::ClosestOther),
            4 => Some(Mode::RightOf),
            5 => Some(Mode::LeftOf),
            _ => None,
        }
    }
}

/// A view of a routed message.
#[derive(Debug)]
pub struct Routed<T: AsRef<[u8]>> {
    buffer: T,
}

pub(super) fn addr_at(b: &[u8], at: usize) -> Addr {
    Addr::from_bytes(b[at..at + 16].try_into().expect("checked length"))
}

impl<T: AsRef<[u8]>> Routed<T> {
    pub fn new_checked(buffer: T) -> Result<Routed<T>> {
        let b = buffer.as_ref();
        if b.len() < ROUTED_HEADER_LEN || b[0] != KIND_ROUTED || Mode::from_u8(b[1]).is_none() {
            return Err(Error);
        }
        Ok(Routed { buffer })
    }
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.buffer.as_ref()[1]).expect("checked mode")
    }
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[3]
    }
    pub fn src(&self) -> Addr {
        addr_at(self.buffer.as_ref(), 4)
    }
    pub fn dst(&self) -> Addr {
        addr_at(self.buffer.as_ref(), 20)
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[36]
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[37]
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[ROUTED_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Routed<T> {
    pub fn set_hops(&mut self, hops: u8) {
        self.buffer.as_mut()[2] = hops;
    }
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[3] = ttl;
    }
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[37] = flags;
    }
}

/// Routed data header (20 bytes): end-to-end sealed traffic between two
/// nodes with no direct link, routed in exact mode to `dst`. The source is
/// not carried: the sealed message's session identifies the sender.
///
/// ```text
///  0 kind=7 | 1 hops | 2 ttl | 3 flags | 4..20 destination address
/// ```
/// Flags: bit 0 = tunnel (sent to a chosen relay, which is linked to the
/// destination and forwards it within its relay budget); bit 1 = carried
/// (a sub-ring's datagram for the destination's host, behind a
/// `wire::subring` carried header, not a message for its node).
pub const ROUTED_DATA_HEADER_LEN: usize = 20;
pub const DATA_FLAG_TUNNEL: u8 = 1;
pub const DATA_FLAG_CARRIED: u8 = 2;

/// A view of a routed data message.
#[derive(Debug)]
pub struct RoutedData<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RoutedData<T> {
    pub fn new_checked(buffer: T) -> Result<RoutedData<T>> {
        let b = buffer.as_ref();
        if b.len() < ROUTED_DATA_HEADER_LEN || b[0] != KIND_ROUTED_DATA {
            return Err(Error);
        }
        Ok(RoutedData { buffer })
    }
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    pub fn dst(&self) -> Addr {
        addr_at(self.buffer.as_ref(), 4)
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[3]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RoutedData<T> {
    pub fn set_hops(&mut self, hops: u8) {
        self.buffer.as_mut()[1] = hops;
    }
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[2] = ttl;
    }
}

/// A routed data header to write (prepended in place; hops start at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedDataRepr {
    pub ttl: u8,
    /// `DATA_FLAG_*`.
    pub flags: u8,
    pub dst: Addr,
}

impl RoutedDataRepr {
    pub const fn buffer_len(&self) -> usize {
        ROUTED_DATA_HEADER_LEN
    }

    /// Writes the header into `out[..ROUTED_DATA_HEADER_LEN]`.
    #[inline]
    pub fn emit(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&[KIND_ROUTED_DATA, 0, self.ttl, self.flags]);
        out[4..20].copy_from_slice(&self.dst.to_bytes());
    }
}

/// Appends a routed header to `out`.
pub fn emit_routed_header(out: &mut Vec<u8>, mode: Mode, ttl: u8, src: Addr, dst: Addr, ty: u8) {
    out.extend_from_slice(&[KIND_ROUTED, mode as u8, 0, ttl]);
    out.extend_from_slice(&src.to_bytes());
    out.extend_from_slice(&dst.to_bytes());
    out.extend_from_slice(&[ty, 0, 0, 0]);
}

/// Appends a handshake init to a routed connect-to-me request that was
/// emitted without one (the overlay writes the request; the node, which
/// holds the keys, adds the init).
pub fn attach_init(routed_ctm: &mut Vec<u8>, init: &[u8]) -> Result<()> {
    let at = ROUTED_HEADER_LEN + 2;
    if routed_ctm.len() < ROUTED_HEADER_LEN + CTM_FIXED_LEN
        || routed_ctm[36] != MSG_CTM_REQUEST
        || routed_ctm[at..at + 2] != [0, 0]
        || init.len() > MAX_INIT
    {
        return Err(Error);
    }
    routed_ctm[at..at + 2].copy_from_slice(&(init.len() as u16).to_be_bytes());
    routed_ctm.extend_from_slice(init);
    Ok(())
}

/// A node and where to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRecord {
    pub key: NodeKey,
    pub endpoint: Endpoint,
}

pub(super) fn emit_record(r: &NodeRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.key.0);
    let mut ep = [0u8; endpoint::LEN];
    endpoint::emit_endpoint(&r.endpoint, &mut ep);
    out.extend_from_slice(&ep);
}

pub(super) fn parse_record(b: &[u8]) -> Result<NodeRecord> {
    let key = NodeKey(b.get(..32).ok_or(Error)?.try_into().map_err(|_| Error)?);
    Ok(NodeRecord {
        key,
        endpoint: endpoint::parse_endpoint(&b[32..])?,
    })
}

pub type Endpoints = SmallVec<[Endpoint; MAX_ENDPOINTS]>;
pub type Records = SmallVec<[NodeRecord; MAX_NEIGHBOURS]>;

/// A connect-to-me request's or reply's fixed part: purpose, two counts
/// (or the init length), the key and the token.
const CTM_FIXED_LEN: usize = 44;

/// Routed message types.
pub const MSG_CTM_REQUEST: u8 = 1;
pub const MSG_CTM_REPLY: u8 = 2;
pub const MSG_ECHO_REQUEST: u8 = 3;
pub const MSG_ECHO_REPLY: u8 = 4;
pub const MSG_DHT: u8 = 5;
pub const MSG_HANDSHAKE: u8 = 6;
pub const MSG_RELAY_QUERY: u8 = 7;
pub const MSG_RELAY_OFFER: u8 = 8;
/// A task request for one member (`wire::task`; the sequential crawler).
pub const MSG_TASK: u8 = 9;
/// A member's description for a crawl's origin (`wire::describe`).
pub const MSG_DESCRIPTION: u8 = 10;
/// A routed message for one of the destination's links (see `Forward`).
pub const MSG_FORWARD: u8 = 11;
/// Connect-to-me request, endpoint count byte: a reply address follows the
/// endpoints.
const CTM_FLAG_VIA: u8 = 0x80;
/// Relay query flag: the asker is behind a symmetric NAT.
pub const RELAY_FLAG_SYMMETRIC: u8 = 1;
/// Relay candidates in a query or offer at most.
pub const MAX_RELAY_CANDIDATES: usize = 8;

/// A parsed routed message body. The reply variant is large (its records
/// live inline); a message is parsed once and never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayMsg {
    CtmRequest {
        purpose: u8,
        key: NodeKey,
        /// The requester's id for this request, echoed by the reply.
        token: u64,
        endpoints: Endpoints,
        /// A node linked to the requester that passes the reply on
        /// (`Forward`): the requester may not be reachable at its own
        /// address yet.
        via: Option<Addr>,
        /// A handshake init for whoever accepts (empty: none).
        init: Vec<u8>,
    },
    CtmReply {
        purpose: u8,
        key: NodeKey,
        /// The request's token.
        token: u64,
        endpoints: Endpoints,
        neighbours: Records,
    },
    EchoRequest {
        nonce: u64,
        stamp: u64,
    },
    EchoReply {
        nonce: u64,
        stamp: u64,
    },
    Dht(super::dht::DhtMsg),
    /// A handshake init or response (the whole datagram) between two
    /// nodes with no direct link: an end-to-end session over the overlay.
    Handshake(Vec<u8>),
    /// "No direct path between us: here are my links that could relay,
    /// with their round-trip times" — the start of a tunnel edge. `from`
    /// is the asker (the answerer may not have met it yet).
    RelayQuery {
        /// `RELAY_FLAG_SYMMETRIC`: the asker is behind an
        /// endpoint-dependent NAT (it can link only to open nodes).
        flags: u8,
        from: NodeRecord,
        candidates: RelayCandidates,
    },
    /// The answer: the relay the responder picked for both directions
    /// (index into the query's list, or 255 for one of its own, first in
    /// `candidates`), and its own links.
    RelayOffer {
        chosen: u8,
        candidates: RelayCandidates,
    },
    /// A task request (`wire::task::Request`) for the destination alone.
    Task(Vec<u8>),
    /// A whole routed message (exact mode) for one of the destination's
    /// own links, which it passes on unchanged.
    Forward(Vec<u8>),
    /// A member's signed description (`wire::describe`) for the origin
    /// of a crawl.
    Description(Vec<u8>),
}

/// A node that could relay, as one of its links sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCandidate {
    pub node: NodeRecord,
    /// Round-trip time of the link to it, in milliseconds (65535: unknown).
    pub rtt_ms: u16,
    /// What it relays, in KiB/s (0: never).
    pub budget_kib: u16,
}

pub type RelayCandidates = SmallVec<[RelayCandidate; MAX_RELAY_CANDIDATES]>;

const RELAY_CANDIDATE_LEN: usize = RECORD_LEN + 4;

fn parse_relay_candidates(b: &[u8]) -> Result<RelayCandidates> {
    if b.len() % RELAY_CANDIDATE_LEN != 0 || b.len() / RELAY_CANDIDATE_LEN > MAX_RELAY_CANDIDATES {
        return Err(Error);
    }
    b.chunks_exact(RELAY_CANDIDATE_LEN)
        .map(|c| {
            Ok(RelayCandidate {
                node: parse_record(c)?,
                rtt_ms: get_u16(c, RECORD_LEN),
                budget_kib: get_u16(c, RECORD_LEN + 2),
            })
        })
        .collect()
}

fn emit_relay_candidates(cs: &[RelayCandidate], out: &mut Vec<u8>) {
    for c in cs.iter().take(MAX_RELAY_CANDIDATES) {
        emit_record(&c.node, out);
        out.extend_from_slice(&c.rtt_ms.to_be_bytes());
        out.extend_from_slice(&c.budget_kib.to_be_bytes());
    }
}

impl OverlayMsg {
    pub fn msg_type(&self) -> u8 {
        match self {
            OverlayMsg::CtmRequest { .. } => MSG_CTM_REQUEST,
            OverlayMsg::CtmReply { .. } => MSG_CTM_REPLY,
            OverlayMsg::EchoRequest { .. } => MSG_ECHO_REQUEST,
            OverlayMsg::EchoReply { .. } => MSG_ECHO_REPLY,
            OverlayMsg::Dht(_) => MSG_DHT,
            OverlayMsg::Handshake(_) => MSG_HANDSHAKE,
            OverlayMsg::RelayQuery { .. } => MSG_RELAY_QUERY,
            OverlayMsg::RelayOffer { .. } => MSG_RELAY_OFFER,
            OverlayMsg::Task(_) => MSG_TASK,
            OverlayMsg::Description(_) => MSG_DESCRIPTION,
            OverlayMsg::Forward(_) => MSG_FORWARD,
        }
    }

    /// Parses a body of routed type `ty`; lengths must add up exactly.
    pub fn parse(ty: u8, b: &[u8]) -> Result<OverlayMsg> {
        match ty {
            MSG_CTM_REQUEST | MSG_CTM_REPLY => {
                if b.len() < CTM_FIXED_LEN {
                    return Err(Error);
                }
                let purpose = b[0];
                let has_via = ty == MSG_CTM_REQUEST && b[1] & CTM_FLAG_VIA != 0;
                let n_ep = usize::from(if ty == MSG_CTM_REQUEST {
                    b[1] & !CTM_FLAG_VIA
                } else {
                    b[1]
                });
                let (n_nb, init_len) = if ty == MSG_CTM_REPLY {
                    (usize::from(b[2]), 0)
                } else {
                    (0, usize::from(get_u16(b, 2)))
                };
                if n_ep > MAX_ENDPOINTS || n_nb > MAX_NEIGHBOURS || init_len > MAX_INIT {
                    return Err(Error);
                }
                let via_len = if has_via { 16 } else { 0 };
                let expected =
                    CTM_FIXED_LEN + n_ep * endpoint::LEN + via_len + n_nb * RECORD_LEN + init_len;
                if b.len() != expected {
                    return Err(Error);
                }
                let key = NodeKey(b[4..36].try_into().map_err(|_| Error)?);
                let token = get_u64(b, 36);
                let mut endpoints = Endpoints::new();
                for i in 0..n_ep {
                    let at = CTM_FIXED_LEN + i * endpoint::LEN;
                    endpoints.push(endpoint::parse_endpoint(&b[at..])?);
                }
                let at = CTM_FIXED_LEN + n_ep * endpoint::LEN;
                if ty == MSG_CTM_REQUEST {
                    let via = has_via
                        .then(|| b[at..at + 16].try_into().map(Addr::from_bytes))
                        .transpose()
                        .map_err(|_| Error)?;
                    return Ok(OverlayMsg::CtmRequest {
                        purpose,
                        key,
                        token,
                        endpoints,
                        via,
                        init: b[at + via_len..].to_vec(),
                    });
                }
                let mut neighbours = Records::new();
                for i in 0..n_nb {
                    neighbours.push(parse_record(&b[at + i * RECORD_LEN..])?);
                }
                Ok(OverlayMsg::CtmReply {
                    purpose,
                    key,
                    token,
                    endpoints,
                    neighbours,
                })
            }
            MSG_ECHO_REQUEST | MSG_ECHO_REPLY => {
                if b.len() != 16 {
                    return Err(Error);
                }
                let (nonce, stamp) = (get_u64(b, 0), get_u64(b, 8));
                Ok(if ty == MSG_ECHO_REQUEST {
                    OverlayMsg::EchoRequest { nonce, stamp }
                } else {
                    OverlayMsg::EchoReply { nonce, stamp }
                })
            }
            MSG_DHT => Ok(OverlayMsg::Dht(super::dht::DhtMsg::parse(b)?)),
            MSG_RELAY_QUERY if b.len() > RECORD_LEN && b[0] & !RELAY_FLAG_SYMMETRIC == 0 => {
                Ok(OverlayMsg::RelayQuery {
                    flags: b[0],
                    from: parse_record(&b[1..])?,
                    candidates: parse_relay_candidates(&b[1 + RECORD_LEN..])?,
                })
            }
            MSG_RELAY_OFFER if !b.is_empty() => Ok(OverlayMsg::RelayOffer {
                chosen: b[0],
                candidates: parse_relay_candidates(&b[1..])?,
            }),
            MSG_HANDSHAKE => match super::peek(b) {
                Ok(super::MsgType::HandshakeInit | super::MsgType::HandshakeResp) => {
                    Ok(OverlayMsg::Handshake(b.to_vec()))
                }
                _ => Err(Error),
            },
            // Parsed strictly (and checked) by the manager: here only
            // what they claim to be.
            MSG_TASK if b.first() == Some(&super::control::KIND_TASK) => {
                Ok(OverlayMsg::Task(b.to_vec()))
            }
            MSG_DESCRIPTION if b.first() == Some(&super::describe::VERSION) => {
                Ok(OverlayMsg::Description(b.to_vec()))
            }
            MSG_FORWARD => match Routed::new_checked(b) {
                // One step only: a forward inside a forward is refused.
                Ok(r) if r.mode() == Mode::Exact && r.msg_type() != MSG_FORWARD => {
                    Ok(OverlayMsg::Forward(b.to_vec()))
                }
                _ => Err(Error),
            },
            _ => Err(Error),
        }
    }

    /// Appends the body to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            OverlayMsg::CtmRequest {
                purpose,
                key,
                token,
                endpoints,
                via,
                init,
            } => {
                let flag = if via.is_some() { CTM_FLAG_VIA } else { 0 };
                out.extend_from_slice(&[*purpose, endpoints.len() as u8 | flag]);
                out.extend_from_slice(&(init.len() as u16).to_be_bytes());
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&token.to_be_bytes());
                emit_endpoints(endpoints, out);
                if let Some(v) = via {
                    out.extend_from_slice(&v.to_bytes());
                }
                out.extend_from_slice(init);
            }
            OverlayMsg::CtmReply {
                purpose,
                key,
                token,
                endpoints,
                neighbours,
            } => {
                out.extend_from_slice(&[
                    *purpose,
                    endpoints.len() as u8,
                    neighbours.len() as u8,
                    0,
                ]);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&token.to_be_bytes());
                emit_endpoints(endpoints, out);
                for r in neighbours {
                    emit_record(r, out);
                }
            }
            OverlayMsg::EchoRequest { nonce, stamp } | OverlayMsg::EchoReply { nonce, stamp } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&stamp.to_be_bytes());
            }
            OverlayMsg::Dht(m) => m.emit(out),
            OverlayMsg::Handshake(b)
            | OverlayMsg::Task(b)
            | OverlayMsg::Description(b)
            | OverlayMsg::Forward(b) => out.extend_from_slice(b),
            OverlayMsg::RelayQuery {
                flags,
                from,
                candidates,
            } => {
                out.push(*flags);
                emit_record(from, out);
                emit_relay_candidates(candidates, out);
            }
            OverlayMsg::RelayOffer { chosen, candidates } => {
                out.push(*chosen);
                emit_relay_candidates(candidates, out);
            }
        }
    }
}

pub(super) fn emit_endpoints(eps: &[Endpoint], out: &mut Vec<u8>) {
    for ep in eps {
        let mut b = [0u8; endpoint::LEN];
        endpoint::emit_endpoint(ep, &mut b);
        out.extend_from_slice(&b);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A node record for fixtures (also `wire::links`'s).
    pub(in crate::wire) fn rec(n: u8) -> NodeRecord {
        NodeRecord {
            key: NodeKey([n; 32]),
            endpoint: format!("198.18.0.{n}:5140").parse().unwrap(),
        }
    }

    #[test]
    fn routed_header_fixture() {
        let mut out = Vec::new();
        emit_routed_header(
            &mut out,
            Mode::ClosestOther,
            64,
            Addr(1),
            Addr(u128::MAX),
            MSG_CTM_REQUEST,
        );
        assert_eq!(out.len(), ROUTED_HEADER_LEN);
        assert_eq!(&out[..4], &[3, 3, 0, 64]);
        assert_eq!(out[19], 1);
        assert!(out[20..36].iter().all(|&b| b == 0xff));
        assert_eq!(&out[36..], &[1, 0, 0, 0]);
        let mut r = Routed::new_checked(&mut out[..]).unwrap();
        assert_eq!((r.mode(), r.hops(), r.ttl()), (Mode::ClosestOther, 0, 64));
        assert_eq!(
            (r.src(), r.dst(), r.msg_type()),
            (Addr(1), Addr(u128::MAX), 1)
        );
        r.set_hops(5);
        assert_eq!(r.hops(), 5);
        out[1] = 5;
        assert_eq!(Routed::new_checked(&out[..]).unwrap().mode(), Mode::LeftOf);
        out[1] = 9;
        assert!(Routed::new_checked(&out[..]).is_err());
        assert!(Routed::new_checked(&out[..39]).is_err());
    }

    #[test]
    fn messages_round_trip_and_reject_bad_lengths() {
        let msgs = [
            OverlayMsg::CtmRequest {
                purpose: 1,
                key: NodeKey([7; 32]),
                token: 0x0102_0304_0506_0708,
                endpoints: [rec(1).endpoint, rec(2).endpoint].into_iter().collect(),
                via: None,
                init: Vec::new(),
            },
            OverlayMsg::CtmRequest {
                purpose: 1,
                key: NodeKey([7; 32]),
                token: 0x0102_0304_0506_0708,
                endpoints: [rec(1).endpoint].into_iter().collect(),
                via: None,
                init: vec![9; 180],
            },
            OverlayMsg::CtmRequest {
                purpose: 1,
                key: NodeKey([7; 32]),
                token: 0x0102_0304_0506_0708,
                endpoints: [rec(1).endpoint].into_iter().collect(),
                via: Some(Addr(0x0a0b_0c0d << 64)),
                init: vec![9; 180],
            },
            OverlayMsg::CtmReply {
                purpose: 2,
                key: NodeKey([8; 32]),
                token: 9,
                endpoints: [rec(3).endpoint].into_iter().collect(),
                neighbours: [rec(4), rec(5)].into_iter().collect(),
            },
            OverlayMsg::EchoRequest {
                nonce: 9,
                stamp: 10,
            },
            OverlayMsg::EchoReply {
                nonce: 9,
                stamp: 10,
            },
        ];
        for m in msgs {
            let mut b = Vec::new();
            m.emit(&mut b);
            assert_eq!(OverlayMsg::parse(m.msg_type(), &b).unwrap(), m);
            assert!(OverlayMsg::parse(m.msg_type(), &b[..b.len() - 1]).is_err());
            b.push(0);
            assert!(OverlayMsg::parse(m.msg_type(), &b).is_err());
        }
        assert!(OverlayMsg::parse(99, &[]).is_err());
        // A forward carries one exact-mode routed message, never a forward.
        let mut inner = Vec::new();
        emit_routed_header(
            &mut inner,
            Mode::Closest,
            64,
            Addr(1),
            Addr(2),
            MSG_ECHO_REQUEST,
        );
        inner.extend_from_slice(&[0; 16]);
        assert!(OverlayMsg::parse(MSG_FORWARD, &inner).is_err(), "not exact");
        inner[1] = Mode::Exact as u8;
        let fwd = OverlayMsg::Forward(inner.clone());
        let mut b = Vec::new();
        fwd.emit(&mut b);
        assert_eq!(OverlayMsg::parse(fwd.msg_type(), &b).unwrap(), fwd);
        assert!(
            OverlayMsg::parse(MSG_FORWARD, &inner[..39]).is_err(),
            "short header"
        );
        let mut nested = Vec::new();
        emit_routed_header(&mut nested, Mode::Exact, 64, Addr(1), Addr(2), MSG_FORWARD);
        nested.extend_from_slice(&inner);
        assert!(OverlayMsg::parse(MSG_FORWARD, &nested).is_err(), "nested");
        let mut too_many = vec![1, 5, 0, 0];
        too_many.extend_from_slice(&[0; 40 + 5 * 20]);
        assert!(OverlayMsg::parse(MSG_CTM_REQUEST, &too_many).is_err());
    }

    #[test]
    fn init_attaches_to_a_request_once() {
        let req = OverlayMsg::CtmRequest {
            purpose: 1,
            key: NodeKey([7; 32]),
            token: 3,
            endpoints: [rec(1).endpoint].into_iter().collect(),
            via: None,
            init: Vec::new(),
        };
        let mut b = Vec::new();
        emit_routed_header(&mut b, Mode::RightOf, 64, Addr(1), Addr(1), MSG_CTM_REQUEST);
        req.emit(&mut b);
        attach_init(&mut b, &[5; 148]).unwrap();
        assert_eq!(&b[42..44], &[0, 148]);
        let r = Routed::new_checked(&b[..]).unwrap();
        match OverlayMsg::parse(r.msg_type(), r.payload()).unwrap() {
            OverlayMsg::CtmRequest { init, .. } => assert_eq!(init, vec![5; 148]),
            m => panic!("{m:?}"),
        }
        assert!(attach_init(&mut b, &[5; 148]).is_err(), "only once");
        assert!(attach_init(&mut vec![0; 40], &[1]).is_err());
    }
}
