//! Link messages of the overlay: what a node tells the peer at the other
//! end of one link (never routed) — its nearest connections as gossip, its
//! connection list for lookahead routing, its candidate endpoints.
//! Routed messages are `wire::overlay`'s.

use super::control::{KIND_CONN_LIST, KIND_ENDPOINTS, KIND_NEIGHBOURS};
use super::overlay::{
    emit_endpoints, emit_record, parse_record, Endpoints, Records, MAX_CONN_LIST, MAX_ENDPOINTS,
    MAX_NEIGHBOURS, RECORD_LEN,
};
use super::{endpoint, get_u16, get_u64, Error, Result};

/// A neighbours message: the sender's reasons for this link and records of
/// its connections nearest the recipient (ring gossip that fills gaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbours {
    pub reasons: u8,
    pub records: Records,
}

impl Neighbours {
    pub fn parse(b: &[u8]) -> Result<Neighbours> {
        if b.len() < 4 || b[0] != KIND_NEIGHBOURS {
            return Err(Error);
        }
        let n = usize::from(b[1]);
        if n > MAX_NEIGHBOURS || b.len() != 4 + n * RECORD_LEN {
            return Err(Error);
        }
        let mut records = Records::new();
        for i in 0..n {
            records.push(parse_record(&b[4 + i * RECORD_LEN..])?);
        }
        Ok(Neighbours {
            reasons: b[2],
            records,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[KIND_NEIGHBOURS, self.records.len() as u8, self.reasons, 0]);
        for r in &self.records {
            emit_record(r, out);
        }
    }
}

/// An endpoints message: every endpoint the sender can be reached at now,
/// sent over each session it has when the set changes (an interface
/// address came or went, its NAT rebound). The whole set, not a change:
/// the receiver replaces what it knew, so a withdrawn address is gone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointList {
    pub endpoints: Endpoints,
}

impl EndpointList {
    pub fn parse(b: &[u8]) -> Result<EndpointList> {
        if b.len() < 4 || b[0] != KIND_ENDPOINTS {
            return Err(Error);
        }
        let n = usize::from(b[1]);
        if n > MAX_ENDPOINTS || b.len() != 4 + n * endpoint::LEN {
            return Err(Error);
        }
        let endpoints = b[4..]
            .chunks_exact(endpoint::LEN)
            .map(endpoint::parse_endpoint)
            .collect::<Result<Endpoints>>()?;
        Ok(EndpointList { endpoints })
    }

    /// Emits at most [`MAX_ENDPOINTS`] endpoints.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.endpoints.len().min(MAX_ENDPOINTS);
        out.extend_from_slice(&[KIND_ENDPOINTS, n as u8, 0, 0]);
        emit_endpoints(&self.endpoints[..n], out);
    }
}

/// A connection list: the top 64 bits of the ring address of each of the
/// sender's connections, for neighbour-of-neighbour routing. 64 bits place
/// a node to within 2^-64 of the ring, far finer than any node spacing, at
/// half the bytes of full addresses. It also says how much the sender
/// relays for others (KiB/s, 0: never), for relay selection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnList {
    pub prefixes: Vec<u64>,
    pub relay_kib: u16,
}

impl ConnList {
    pub fn parse(b: &[u8]) -> Result<ConnList> {
        if b.len() < 4 || b[0] != KIND_CONN_LIST {
            return Err(Error);
        }
        let n = usize::from(b[1]);
        if n > MAX_CONN_LIST || b.len() != 4 + n * 8 {
            return Err(Error);
        }
        let prefixes = (0..n).map(|i| get_u64(b, 4 + i * 8)).collect();
        Ok(ConnList {
            prefixes,
            relay_kib: get_u16(b, 2),
        })
    }

    /// Emits at most [`MAX_CONN_LIST`] entries.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.prefixes.len().min(MAX_CONN_LIST);
        out.extend_from_slice(&[KIND_CONN_LIST, n as u8]);
        out.extend_from_slice(&self.relay_kib.to_be_bytes());
        for p in &self.prefixes[..n] {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::endpoint::Endpoint;
    use crate::wire::overlay::tests::rec;

    #[test]
    fn neighbours_round_trip() {
        let n = Neighbours {
            reasons: 3,
            records: [rec(1), rec(2), rec(3)].into_iter().collect(),
        };
        let mut b = Vec::new();
        n.emit(&mut b);
        assert_eq!(b.len(), 4 + 3 * RECORD_LEN);
        assert_eq!(Neighbours::parse(&b).unwrap(), n);
        b[1] = 9;
        assert!(Neighbours::parse(&b).is_err());
    }

    #[test]
    fn conn_list_fixture_and_bounds() {
        let l = ConnList {
            prefixes: vec![1, u64::MAX],
            relay_kib: 0x1234,
        };
        let mut b = Vec::new();
        l.emit(&mut b);
        assert_eq!(&b[..4], &[6, 2, 0x12, 0x34]);
        assert_eq!(&b[4..12], &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(ConnList::parse(&b).unwrap(), l);
        assert!(ConnList::parse(&b[..11]).is_err());
        b[1] = 65;
        b.resize(4 + 65 * 8, 0);
        assert!(ConnList::parse(&b).is_err(), "over the bound");
        let big = ConnList {
            prefixes: vec![7; 100],
            relay_kib: 0,
        };
        let mut b = Vec::new();
        big.emit(&mut b);
        assert_eq!(ConnList::parse(&b).unwrap().prefixes.len(), MAX_CONN_LIST);
    }

    #[test]
    fn endpoint_list_fixture() {
        let l = EndpointList {
            endpoints: [
                Endpoint::udp("198.18.0.7:5140".parse().unwrap()),
                Endpoint::tcp("[2001:db8::1]:9".parse().unwrap()),
            ]
            .into_iter()
            .collect(),
        };
        let mut b = Vec::new();
        l.emit(&mut b);
        assert_eq!(b.len(), 4 + 2 * endpoint::LEN);
        assert_eq!(&b[..4], &[11, 2, 0, 0]);
        assert_eq!(&b[4..12], &[4, 0, 0x14, 0x14, 198, 18, 0, 7]);
        assert_eq!(&b[24..28], &[6, 1, 0, 9]);
        assert_eq!(EndpointList::parse(&b).unwrap(), l);
        assert!(EndpointList::parse(&b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        bad[25] = 2; // an unknown transport flag
        assert!(EndpointList::parse(&bad).is_err());
        bad = b.clone();
        bad[1] = 9;
        bad.resize(4 + 9 * endpoint::LEN, 0);
        assert!(EndpointList::parse(&bad).is_err(), "over the bound");
        let empty = EndpointList::default();
        let mut b = Vec::new();
        empty.emit(&mut b);
        assert_eq!(EndpointList::parse(&b).unwrap(), empty);
    }
}
