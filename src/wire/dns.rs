//! DNS messages, as far as the node's own resolver needs them (RFC 1035):
//! a query with one question in, an authoritative answer with A, AAAA or
//! PTR records out. Nothing else is read: additional records (EDNS OPT)
//! are ignored, compression pointers are refused in a question (no
//! resolver sends them there), and answers point back at the question's
//! name (offset 12) instead of repeating it.
//!
//! ```text
//!  0 id (2) | 2 flags (2) | 4 qdcount | 6 ancount | 8 nscount | 10 arcount
//! 12 question: name (labels, ≤ 255 bytes) | type (2) | class (2)
//!    answer:   0xc00c (the question's name) | type | class | ttl (4)
//!              | rdlength (2) | rdata
//! ```

use super::{get_u16, Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const PORT: u16 = 53;
pub const HEADER_LEN: usize = 12;
/// The longest name in wire form (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;
pub const MAX_LABEL: usize = 63;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;

/// A domain name in wire form (length-prefixed labels, ending with the
/// empty root label), ASCII lower-cased: names compare case-insensitively.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self)
    }
}

impl std::fmt::Display for Name {
    /// Dotted, with the trailing dot: `h1.office.`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.labels().next().is_none() {
            return f.write_str(".");
        }
        for l in self.labels() {
            write!(f, "{}.", String::from_utf8_lossy(l))?;
        }
        Ok(())
    }
}

impl Name {
    /// Parses `host.example` or `host.example.`; `None` if a label is
    /// empty or too long, or the name is.
    pub fn from_dotted(s: &str) -> Option<Name> {
        let s = s.strip_suffix('.').unwrap_or(s);
        let mut n = Name {
            bytes: [0; MAX_NAME],
            len: 0,
        };
        let mut at = 0;
        if !s.is_empty() {
            for label in s.split('.') {
                let l = label.as_bytes();
                if l.is_empty() || l.len() > MAX_LABEL || at + 1 + l.len() >= MAX_NAME {
                    return None;
                }
                n.bytes[at] = l.len() as u8;
                for (d, c) in n.bytes[at + 1..].iter_mut().zip(l) {
                    *d = c.to_ascii_lowercase();
                }
                at += 1 + l.len();
            }
        }
        n.len = (at + 1) as u8; // the root label's 0 is already there
        Some(n)
    }

    /// The name in wire form, root label included.
    pub fn wire(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The labels, first (leftmost) first, without the root.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        let b = self.wire();
        std::iter::from_fn(move || {
            let l = usize::from(*b.get(at)?);
            if l == 0 {
                return None;
            }
            let label = b.get(at + 1..at + 1 + l)?;
            at += 1 + l;
            Some(label)
        })
    }

    /// If this name is `first.` followed by `zone`, the first label.
    pub fn strip_zone(&self, zone: &Name) -> Option<&[u8]> {
        let w = self.wire();
        let l = usize::from(*w.first()?);
        (l > 0 && w.get(1 + l..)? == zone.wire()).then(|| &w[1..1 + l])
    }

    /// Whether this name is `zone` or a name under it.
    pub fn is_under(&self, zone: &Name) -> bool {
        let (w, z) = (self.wire(), zone.wire());
        let mut at = 0;
        while at < w.len() {
            if &w[at..] == z {
                return true;
            }
            at += 1 + usize::from(w[at]);
        }
        false
    }

    /// Parses a name at `at` of `msg` (no compression pointers); returns
    /// it and the offset just past it.
    fn parse(msg: &[u8], mut at: usize) -> Result<(Name, usize)> {
        let mut n = Name {
            bytes: [0; MAX_NAME],
            len: 0,
        };
        let mut out = 0;
        loop {
            let l = usize::from(*msg.get(at).ok_or(Error)?);
            if l > MAX_LABEL || out + 1 + l > MAX_NAME {
                return Err(Error); // a pointer (0xc0) or too long
            }
            let label = msg.get(at + 1..at + 1 + l).ok_or(Error)?;
            n.bytes[out] = l as u8;
            for (d, c) in n.bytes[out + 1..].iter_mut().zip(label) {
                *d = c.to_ascii_lowercase();
            }
            out += 1 + l;
            at += 1 + l;
            if l == 0 {
                n.len = out as u8;
                return Ok((n, at));
            }
        }
    }
}

/// A query's one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Only a standard query (0) is answered; others get NOTIMP.
    pub opcode: u8,
    pub recursion_desired: bool,
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// Reads a query: a request (QR clear) with exactly one question.
    /// Answer, authority and additional sections are not read.
    pub fn parse(msg: &[u8]) -> Result<Question> {
        if msg.len() < HEADER_LEN {
            return Err(Error);
        }
        let flags = get_u16(msg, 2);
        if flags & FLAG_QR != 0 || get_u16(msg, 4) != 1 {
            return Err(Error);
        }
        let (name, at) = Name::parse(msg, HEADER_LEN)?;
        if msg.len() < at + 4 {
            return Err(Error);
        }
        Ok(Question {
            id: get_u16(msg, 0),
            opcode: ((flags >> 11) & 0xf) as u8,
            recursion_desired: flags & FLAG_RD != 0,
            name,
            qtype: get_u16(msg, at),
            qclass: get_u16(msg, at + 2),
        })
    }
}

/// One answer record's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdata<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ptr(&'a Name),
}

impl Rdata<'_> {
    fn rtype(&self) -> u16 {
        match self {
            Rdata::A(_) => TYPE_A,
            Rdata::Aaaa(_) => TYPE_AAAA,
            Rdata::Ptr(_) => TYPE_PTR,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Rdata::A(_) | Rdata::Aaaa(_) => &[],
            Rdata::Ptr(n) => n.wire(),
        }
    }
}

/// An authoritative answer to `question`.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub question: &'a Question,
    pub rcode: u8,
    pub answers: &'a [Rdata<'a>],
    pub ttl: u32,
}

impl Reply<'_> {
    pub fn buffer_len(&self) -> usize {
        let answers: usize = self
            .answers
            .iter()
            .map(|a| {
                12 + match a {
                    Rdata::A(_) => 4,
                    Rdata::Aaaa(_) => 16,
                    Rdata::Ptr(n) => n.wire().len(),
                }
            })
            .sum();
        HEADER_LEN + self.question.name.wire().len() + 4 + answers
    }

    /// Writes the reply into `out[..self.buffer_len()]`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let q = self.question;
        let mut flags = FLAG_QR | FLAG_AA | u16::from(self.rcode & 0xf);
        flags |= u16::from(q.opcode & 0xf) << 11;
        if q.recursion_desired {
            flags |= FLAG_RD;
        }
        let mut w = Writer { out, at: 0 };
        w.u16(q.id);
        w.u16(flags);
        w.u16(1);
        w.u16(self.answers.len() as u16);
        w.u16(0);
        w.u16(0);
        w.bytes(q.name.wire());
        w.u16(q.qtype);
        w.u16(q.qclass);
        for a in self.answers {
            w.u16(0xc000 | HEADER_LEN as u16);
            w.u16(a.rtype());
            w.u16(CLASS_IN);
            w.bytes(&self.ttl.to_be_bytes());
            match a {
                Rdata::A(ip) => {
                    w.u16(4);
                    w.bytes(&ip.octets());
                }
                Rdata::Aaaa(ip) => {
                    w.u16(16);
                    w.bytes(&ip.octets());
                }
                Rdata::Ptr(_) => {
                    let b = a.bytes();
                    w.u16(b.len() as u16);
                    w.bytes(b);
                }
            }
        }
        w.at
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.out[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
}

/// The address a reverse-zone name asks about: `d.c.b.a.in-addr.arpa.`
/// → `a.b.c.d`; `None` for any other name.
pub fn reverse_v4(name: &Name) -> Option<Ipv4Addr> {
    let mut labels = name.labels();
    let mut o = [0u8; 4];
    for i in (0..4).rev() {
        let l = std::str::from_utf8(labels.next()?).ok()?;
        if l.len() > 1 && l.starts_with('0') {
            return None;
        }
        o[i] = l.parse().ok()?;
    }
    (labels.next()? == b"in-addr" && labels.next()? == b"arpa" && labels.next().is_none())
        .then(|| Ipv4Addr::from(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dig @100.64.0.1 H1.office A` (with an EDNS OPT record), as captured.
    const QUERY: [u8; 38] = [
        0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1, 2, b'H', b'1', 6, b'o', b'f', b'f', b'i',
        b'c', b'e', 0, 0, 1, 0, 1, // OPT: root, type 41, size 1232, no flags, no data
        0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn a_query_parses_lower_cased() {
        let q = Question::parse(&QUERY).unwrap();
        assert_eq!((q.id, q.opcode, q.recursion_desired), (0x1234, 0, true));
        assert_eq!((q.qtype, q.qclass), (TYPE_A, CLASS_IN));
        assert_eq!(q.name.to_string(), "h1.office.");
        let zone = Name::from_dotted("office").unwrap();
        assert_eq!(q.name.strip_zone(&zone), Some(&b"h1"[..]));
        assert_eq!(zone.strip_zone(&zone), None);
        assert!(q.name.is_under(&zone) && zone.is_under(&zone));
        assert!(Name::from_dotted("a.b.office").unwrap().is_under(&zone));
        assert!(!Name::from_dotted("xoffice").unwrap().is_under(&zone));
        assert!(Name::from_dotted("x")
            .unwrap()
            .is_under(&Name::from_dotted(".").unwrap()));
    }

    #[test]
    fn answers_point_at_the_question() {
        let q = Question::parse(&QUERY).unwrap();
        let ptr = Name::from_dotted("h2.office.").unwrap();
        let answers = [
            Rdata::A(Ipv4Addr::new(100, 64, 0, 2)),
            Rdata::Aaaa("fd00::6440:2".parse().unwrap()),
            Rdata::Ptr(&ptr),
        ];
        let r = Reply {
            question: &q,
            rcode: RCODE_NOERROR,
            answers: &answers,
            ttl: 60,
        };
        let mut out = [0u8; 200];
        let n = r.emit(&mut out);
        assert_eq!(n, r.buffer_len());
        assert_eq!(
            &out[..12],
            &[0x12, 0x34, 0x85, 0x00, 0, 1, 0, 3, 0, 0, 0, 0]
        );
        assert_eq!(&out[12..27], &QUERY[12..27].to_ascii_lowercase()[..]);
        assert_eq!(
            &out[27..43],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 100, 64, 0, 2]
        );
        // A reply is not a query.
        assert_eq!(Question::parse(&out[..n]), Err(Error));
    }

    #[test]
    fn bad_names_are_refused() {
        let mut q = QUERY;
        q[12] = 0xc0; // a compression pointer
        assert_eq!(Question::parse(&q), Err(Error));
        assert_eq!(Question::parse(&QUERY[..20]), Err(Error));
        let mut two = QUERY;
        two[5] = 2; // two questions
        assert_eq!(Question::parse(&two), Err(Error));
        assert!(Name::from_dotted("a..b").is_none());
        assert!(Name::from_dotted(&"x".repeat(64)).is_none());
        assert_eq!(Name::from_dotted(".").unwrap().to_string(), ".");
    }

    #[test]
    fn reverse_names() {
        let n = Name::from_dotted("7.0.64.100.in-addr.arpa.").unwrap();
        assert_eq!(reverse_v4(&n), Some(Ipv4Addr::new(100, 64, 0, 7)));
        for bad in [
            "0.64.100.in-addr.arpa",
            "07.0.64.100.in-addr.arpa",
            "7.0.64.100.ip6.arpa",
        ] {
            assert_eq!(reverse_v4(&Name::from_dotted(bad).unwrap()), None, "{bad}");
        }
    }
}
