//! A member's description of itself, for `ringvpn net crawl` and `net
//! map` (docs/MANAGE.md): who it is, where its neighbours are, which
//! virtual addresses it holds, where it can be reached and what it is
//! linked to. It travels as a routed overlay message (type 10) straight
//! to the task's origin — not up the task tree, which would make every
//! inner node hold its whole subtree's descriptions — and is signed by
//! the member's node key, so nobody on the way can make up another
//! member's.
//!
//! ```text
//!  0 version 1 | 1 flags (0) | 2..4 reserved
//!  4 task id (8)
//! 12 node key (32)
//! 44 left neighbour (16) | 60 right neighbour (16)   (all zero: none)
//! 76 IPv4 (4) | 80 IPv6 (16)                         (all zero: none)
//! 96 name length (1, ≤ 64) | name (UTF-8)
//!    endpoints n (1, ≤ 8) | n × 20-byte endpoint
//!    links k (1, ≤ 64) | k × (8-byte address prefix | path: 1 direct, 2 tunnel, 3 routed)
//!    64 Ed25519 signature by the node key over "ringvpn-describe" ‖ every byte before it
//! ```
//! At most 963 bytes: one datagram.

use super::addr::Addr;
use super::endpoint::{self, Endpoint};
use super::key::NodeKey;
use super::{get_u64, Error, Result};
use smallvec::SmallVec;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 1;
pub const LABEL: &[u8] = b"ringvpn-describe";
pub const MAX_NAME: usize = 64;
pub const MAX_ENDPOINTS: usize = 8;
pub const MAX_LINKS: usize = 64;
pub const SIG_LEN: usize = 64;
const FIXED: usize = 96;
const LINK_LEN: usize = 9;

/// How a member reaches another it has a session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkPath {
    /// A ring link straight to its endpoint.
    Direct = 1,
    /// A ring link relayed through a common neighbour (a tunnel edge).
    Tunnel = 2,
    /// An end-to-end session with no link: routed over the ring.
    Routed = 3,
}

impl LinkPath {
    pub fn name(self) -> &'static str {
        match self {
            LinkPath::Direct => "direct",
            LinkPath::Tunnel => "tunnel",
            LinkPath::Routed => "routed",
        }
    }

    fn from_u8(b: u8) -> Option<LinkPath> {
        match b {
            1 => Some(LinkPath::Direct),
            2 => Some(LinkPath::Tunnel),
            3 => Some(LinkPath::Routed),
            _ => None,
        }
    }
}

/// One of a member's links: the other end's address prefix (the first 8
/// bytes, as connection lists carry them) and the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub prefix: u64,
    pub path: LinkPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The task (or sequential crawl step) this answers.
    pub task: u64,
    pub key: NodeKey,
    pub left: Option<Addr>,
    pub right: Option<Addr>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// The certificate's name ("" in static-key mode).
    pub name: String,
    pub endpoints: SmallVec<[Endpoint; 4]>,
    pub links: Vec<Link>,
}

impl Description {
    /// The member's ring address (its key's).
    pub fn addr(&self) -> Addr {
        Addr::of_key(&self.key)
    }

    /// Appends everything the signature covers (bounded: extra names,
    /// endpoints or links are cut).
    pub fn emit_unsigned(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.task.to_be_bytes());
        out.extend_from_slice(&self.key.0);
        for a in [self.left, self.right] {
            out.extend_from_slice(&a.map_or([0; 16], Addr::to_bytes));
        }
        out.extend_from_slice(&self.ipv4.map_or([0; 4], |a| a.octets()));
        out.extend_from_slice(&self.ipv6.map_or([0; 16], |a| a.octets()));
        let mut end = self.name.len().min(MAX_NAME);
        while !self.name.is_char_boundary(end) {
            end -= 1;
        }
        out.push(end as u8);
        out.extend_from_slice(&self.name.as_bytes()[..end]);
        let eps = &self.endpoints[..self.endpoints.len().min(MAX_ENDPOINTS)];
        out.push(eps.len() as u8);
        for ep in eps {
            let at = out.len();
            out.resize(at + endpoint::LEN, 0);
            endpoint::emit_endpoint(ep, &mut out[at..]);
        }
        let links = &self.links[..self.links.len().min(MAX_LINKS)];
        out.push(links.len() as u8);
        for l in links {
            out.extend_from_slice(&l.prefix.to_be_bytes());
            out.push(l.path as u8);
        }
    }

    /// The bytes to sign for `unsigned` (what `emit_unsigned` wrote).
    pub fn signed_bytes(unsigned: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(LABEL.len() + unsigned.len());
        m.extend_from_slice(LABEL);
        m.extend_from_slice(unsigned);
        m
    }

    /// Parses strictly. Returns the description, the bytes its signature
    /// covers (without the label) and the signature: checking it is the
    /// receiver's job.
    pub fn parse(b: &[u8]) -> Result<(Description, &[u8], [u8; SIG_LEN])> {
        if b.len() < FIXED + 3 + SIG_LEN || b[0] != VERSION || b[1..4] != [0, 0, 0] {
            return Err(Error);
        }
        let (body, sig) = b.split_at(b.len() - SIG_LEN);
        let addr = |at: usize| {
            let a: [u8; 16] = body[at..at + 16].try_into().map_err(|_| Error)?;
            Ok::<_, Error>((a != [0; 16]).then(|| Addr::from_bytes(a)))
        };
        let v4: [u8; 4] = body[76..80].try_into().map_err(|_| Error)?;
        let v6: [u8; 16] = body[80..96].try_into().map_err(|_| Error)?;
        let mut at = FIXED;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = body.get(at..at + n).ok_or(Error)?;
            at += n;
            Ok(s)
        };
        let n = usize::from(take(1)?[0]);
        if n > MAX_NAME {
            return Err(Error);
        }
        let name = std::str::from_utf8(take(n)?)
            .map_err(|_| Error)?
            .to_string();
        let n = usize::from(take(1)?[0]);
        if n > MAX_ENDPOINTS {
            return Err(Error);
        }
        let mut endpoints = SmallVec::new();
        for _ in 0..n {
            endpoints.push(endpoint::parse_endpoint(take(endpoint::LEN)?)?);
        }
        let n = usize::from(take(1)?[0]);
        if n > MAX_LINKS {
            return Err(Error);
        }
        let mut links = Vec::with_capacity(n);
        for _ in 0..n {
            let l = take(LINK_LEN)?;
            links.push(Link {
                prefix: get_u64(l, 0),
                path: LinkPath::from_u8(l[8]).ok_or(Error)?,
            });
        }
        if at != body.len() {
            return Err(Error);
        }
        let d = Description {
            task: get_u64(body, 4),
            key: NodeKey(body[12..44].try_into().map_err(|_| Error)?),
            left: addr(44)?,
            right: addr(60)?,
            ipv4: (v4 != [0; 4]).then(|| Ipv4Addr::from(v4)),
            ipv6: (v6 != [0; 16]).then(|| Ipv6Addr::from(v6)),
            name,
            endpoints,
            links,
        };
        Ok((d, body, sig.try_into().map_err(|_| Error)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(links: usize) -> Description {
        Description {
            task: 0x0102_0304_0506_0708,
            key: NodeKey([5; 32]),
            left: Some(Addr(1 << 100)),
            right: None,
            ipv4: Some(Ipv4Addr::new(100, 64, 0, 7)),
            ipv6: None,
            name: "router-7".into(),
            endpoints: [Endpoint::udp("198.18.0.7:7000".parse().unwrap())]
                .into_iter()
                .collect(),
            links: (0..links as u64)
                .map(|i| Link {
                    prefix: i << 40,
                    path: [LinkPath::Direct, LinkPath::Tunnel, LinkPath::Routed][i as usize % 3],
                })
                .collect(),
        }
    }

    #[test]
    fn a_description_reads_back_and_rejects_any_cut() {
        let d = description(5);
        let mut b = Vec::new();
        d.emit_unsigned(&mut b);
        let unsigned_len = b.len();
        b.extend_from_slice(&[9; SIG_LEN]);
        let (back, covered, sig) = Description::parse(&b).unwrap();
        assert_eq!(back, d);
        assert_eq!(covered.len(), unsigned_len);
        assert_eq!(sig, [9; SIG_LEN]);
        for cut in 0..b.len() {
            assert!(Description::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = b.clone();
        bad[unsigned_len - 1] = 7; // no such path
        assert!(Description::parse(&bad).is_err());
    }

    #[test]
    fn the_largest_description_is_one_datagram() {
        let mut d = description(200);
        d.name = "n".repeat(300);
        d.endpoints = (0..20)
            .map(|i| Endpoint::udp(format!("198.18.0.{i}:7000").parse().unwrap()))
            .collect();
        let mut b = Vec::new();
        d.emit_unsigned(&mut b);
        b.extend_from_slice(&[0; SIG_LEN]);
        assert_eq!(b.len(), 963);
        let (back, _, _) = Description::parse(&b).unwrap();
        assert_eq!((back.links.len(), back.endpoints.len()), (MAX_LINKS, 8));
    }
}
