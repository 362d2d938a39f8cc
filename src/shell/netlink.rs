//! Routes, policy rules and interface addresses through rtnetlink, the
//! kernel's own interface (what `ip route`, `ip rule` and `ip addr`
//! speak), so the daemon runs no `ip`. IPv6 addresses go this way rather
//! than by the old SIOCSIFADDR ioctl: its `in6_ifreq` is a struct that
//! emulators (qemu-user, used to test cross builds) do not translate.
//!
//! Netlink is in the host's byte order (not the network's): lengths,
//! tables, marks and priorities are `to_ne_bytes`; addresses are their
//! octets. Each request asks for an acknowledgement and waits for it on a
//! blocking socket (the kernel answers at once), so an error comes back
//! to the call that caused it.

use crate::net::Prefix;
use crate::sys;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const RTM_GETRULE: u16 = 34;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const HDR: usize = 16;
/// rtmsg and fib_rule_hdr are both 12 bytes.
const BODY: usize = 12;

// Address attributes and flags.
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
// Route attributes.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
// Rule attributes.
const FRA_DST: u16 = 1;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FR_ACT_TO_TBL: u8 = 1;
const FIB_RULE_INVERT: u32 = 0x2;
const RTNH_F_ONLINK: u32 = 0x4;
const RTN_UNICAST: u8 = 1;
pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

fn family(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A policy rule: `[not] [fwmark M] [to PREFIX] lookup TABLE
/// [suppress_prefixlength N] pref PRIORITY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub v6: bool,
    pub priority: u32,
    pub table: u32,
    pub fwmark: Option<u32>,
    pub invert: bool,
    pub suppress_prefixlen: Option<u32>,
    pub dst: Option<Prefix>,
}

/// A route: `PREFIX via GATEWAY dev OIF onlink table T proto P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Prefix,
    pub table: u32,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub protocol: u8,
}

/// What a route dump tells of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: Prefix,
    pub table: u32,
    pub oif: Option<u32>,
    pub protocol: u8,
    pub scope: u8,
    pub kind: u8,
}

/// A message under construction: header, fixed body, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, body: &[u8]) -> Msg {
        let mut v = Vec::with_capacity(128);
        v.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `done`
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set when sent
        v.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
        v.extend_from_slice(body);
        Msg(v)
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }

    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// `ip addr replace IP/LEN dev INDEX nodad`: an ifaddrmsg (family,
/// prefix length, flags, scope, interface index) and the address as both
/// local and peer address. No duplicate-address detection: the DHT claim
/// made the address ours, and DAD would hold it back a second or two.
fn addr_msg(index: u32, ip: &IpAddr, len: u8) -> Vec<u8> {
    let mut body = [family(ip), len, IFA_F_NODAD, 0, 0, 0, 0, 0];
    body[4..].copy_from_slice(&index.to_ne_bytes());
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &body);
    m.attr(IFA_LOCAL, &octets(ip));
    m.attr(IFA_ADDRESS, &octets(ip));
    m.done()
}

fn rule_msg(ty: u16, flags: u16, r: &Rule) -> Vec<u8> {
    let fam = if r.v6 { AF_INET6 } else { AF_INET };
    let dst_len = r.dst.map_or(0, |p| p.len);
    let table8 = if r.table < 256 { r.table as u8 } else { 0 };
    let mut body = [fam, dst_len, 0, 0, table8, 0, 0, FR_ACT_TO_TBL, 0, 0, 0, 0];
    if r.invert {
        body[8..12].copy_from_slice(&FIB_RULE_INVERT.to_ne_bytes());
    }
    let mut m = Msg::new(ty, flags, &body);
    m.u32(FRA_PRIORITY, r.priority);
    m.u32(FRA_TABLE, r.table);
    if let Some(mark) = r.fwmark {
        m.u32(FRA_FWMARK, mark);
        m.u32(FRA_FWMASK, u32::MAX);
    }
    if let Some(n) = r.suppress_prefixlen {
        m.u32(FRA_SUPPRESS_PREFIXLEN, n);
    }
    if let Some(p) = r.dst {
        m.attr(FRA_DST, &octets(&p.addr));
    }
    m.done()
}

fn route_msg(ty: u16, flags: u16, r: &Route) -> Vec<u8> {
    let table8 = if r.table < 256 { r.table as u8 } else { 0 };
    let scope = if r.gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let mut body = [
        family(&r.dst.addr),
        r.dst.len,
        0,
        0,
        table8,
        r.protocol,
        scope,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    if r.gateway.is_some() {
        // The virtual router answers ARP on the TAP whatever address the
        // TAP has (yet): no need to wait for it.
        body[8..12].copy_from_slice(&RTNH_F_ONLINK.to_ne_bytes());
    }
    let mut m = Msg::new(ty, flags, &body);
    m.u32(RTA_TABLE, r.table);
    if r.dst.len > 0 {
        m.attr(RTA_DST, &octets(&r.dst.addr));
    }
    if let Some(gw) = r.gateway {
        m.attr(RTA_GATEWAY, &octets(&gw));
    }
    m.u32(RTA_OIF, r.oif);
    m.done()
}

/// The attributes after a message's fixed body: (type, payload).
fn attrs(payload: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = BODY;
    std::iter::from_fn(move || {
        let h = payload.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & 0x3fff;
        if len < 4 {
            return None; // malformed: stop
        }
        let data = payload.get(at + 4..at + len)?;
        at += (len + 3) & !3;
        Some((ty, data))
    })
}

fn ne_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

fn addr(fam: u8, b: &[u8]) -> Option<IpAddr> {
    match fam {
        AF_INET => Some(IpAddr::from(<[u8; 4]>::try_from(b.get(..4)?).ok()?)),
        AF_INET6 => Some(IpAddr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?)),
        _ => None,
    }
}

fn parse_rule(payload: &[u8]) -> Option<Rule> {
    let fam = *payload.first()?;
    let dst_len = *payload.get(1)?;
    let flags = ne_u32(payload.get(8..12)?)?;
    let mut r = Rule {
        v6: fam == AF_INET6,
        priority: 0,
        table: u32::from(*payload.get(4)?),
        fwmark: None,
        invert: flags & FIB_RULE_INVERT != 0,
        suppress_prefixlen: None,
        dst: None,
    };
    for (ty, data) in attrs(payload) {
        match ty {
            FRA_PRIORITY => r.priority = ne_u32(data)?,
            FRA_TABLE => r.table = ne_u32(data)?,
            FRA_FWMARK => r.fwmark = ne_u32(data),
            FRA_SUPPRESS_PREFIXLEN => r.suppress_prefixlen = ne_u32(data),
            FRA_DST => r.dst = Some(Prefix::new(addr(fam, data)?, dst_len)),
            _ => {}
        }
    }
    Some(r)
}

fn parse_route(payload: &[u8]) -> Option<RouteInfo> {
    let fam = *payload.first()?;
    let zero = match fam {
        AF_INET => IpAddr::from([0u8; 4]),
        AF_INET6 => IpAddr::from([0u8; 16]),
        _ => return None,
    };
    let mut r = RouteInfo {
        dst: Prefix::new(zero, *payload.get(1)?),
        table: u32::from(*payload.get(4)?),
        oif: None,
        protocol: *payload.get(5)?,
        scope: *payload.get(6)?,
        kind: *payload.get(7)?,
    };
    for (ty, data) in attrs(payload) {
        match ty {
            RTA_TABLE => r.table = ne_u32(data)?,
            RTA_DST => r.dst.addr = addr(fam, data)?,
            RTA_OIF => r.oif = ne_u32(data),
            _ => {}
        }
    }
    Some(r)
}

/// A request socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        Ok(Netlink {
            fd: sys::netlink_request_socket()?,
            seq: 1,
        })
    }

    fn send(&mut self, mut msg: Vec<u8>) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        sys::write(self.fd.as_raw_fd(), &msg)?;
        Ok(self.seq)
    }

    /// Reads answers to `seq`, handing each message (type, payload after
    /// the header) to `each`, until the acknowledgement or the end of a
    /// dump. A kernel error comes back as the error.
    fn answers(&mut self, seq: u32, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sys::read(self.fd.as_raw_fd(), &mut buf)?;
            let mut at = 0;
            while at + HDR <= n {
                let len = ne_u32(&buf[at..]).unwrap_or(0) as usize;
                if len < HDR || at + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "short netlink message",
                    ));
                }
                let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let mseq = ne_u32(&buf[at + 8..]).unwrap_or(0);
                let payload = &buf[at + HDR..at + len];
                at += (len + 3) & !3;
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = ne_u32(payload).unwrap_or(0) as i32;
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => each(ty, payload),
                }
            }
        }
    }

    fn request(&mut self, msg: Vec<u8>) -> io::Result<()> {
        let seq = self.send(msg)?;
        self.answers(seq, |_, _| {})
    }

    fn dump(&mut self, ty: u16, fam: u8) -> io::Result<Vec<Vec<u8>>> {
        let body = [fam, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let seq = self.send(Msg::new(ty, NLM_F_DUMP, &body).done())?;
        let mut out = Vec::new();
        self.answers(seq, |_, p| out.push(p.to_vec()))?;
        Ok(out)
    }

    /// Gives interface `index` the address `ip/len` (kept if it has it).
    pub fn add_address(&mut self, index: u32, ip: IpAddr, len: u8) -> io::Result<()> {
        self.request(addr_msg(index, &ip, len))
    }

    pub fn add_rule(&mut self, r: &Rule) -> io::Result<()> {
        self.request(rule_msg(
            RTM_NEWRULE,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            r,
        ))
    }

    pub fn del_rule(&mut self, r: &Rule) -> io::Result<()> {
        self.request(rule_msg(RTM_DELRULE, NLM_F_ACK, r))
    }

    pub fn rules(&mut self, v6: bool) -> io::Result<Vec<Rule>> {
        let fam = if v6 { AF_INET6 } else { AF_INET };
        let msgs = self.dump(RTM_GETRULE, fam)?;
        Ok(msgs.iter().filter_map(|m| parse_rule(m)).collect())
    }

    pub fn add_route(&mut self, r: &Route) -> io::Result<()> {
        self.request(route_msg(
            RTM_NEWROUTE,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            r,
        ))
    }

    pub fn del_route(&mut self, r: &Route) -> io::Result<()> {
        self.request(route_msg(RTM_DELROUTE, NLM_F_ACK, r))
    }

    pub fn routes(&mut self, v6: bool) -> io::Result<Vec<RouteInfo>> {
        let fam = if v6 { AF_INET6 } else { AF_INET };
        let msgs = self.dump(RTM_GETROUTE, fam)?;
        Ok(msgs.iter().filter_map(|m| parse_route(m)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_message_reads_back_as_written() {
        let r = Rule {
            v6: false,
            priority: 29302,
            table: 29302,
            fwmark: Some(0x7276),
            invert: true,
            suppress_prefixlen: None,
            dst: Some(Prefix::parse("198.18.0.0/24").unwrap()),
        };
        let m = rule_msg(RTM_NEWRULE, NLM_F_ACK, &r);
        assert_eq!(ne_u32(&m).unwrap() as usize, m.len());
        assert_eq!(parse_rule(&m[HDR..]), Some(r));
    }

    #[test]
    fn a_route_message_reads_back_as_written() {
        let r = Route {
            dst: Prefix::parse("198.19.5.0/24").unwrap(),
            table: RT_TABLE_MAIN,
            gateway: Some("100.64.0.1".parse().unwrap()),
            oif: 7,
            protocol: 76,
        };
        let m = route_msg(RTM_NEWROUTE, NLM_F_ACK, &r);
        let info = parse_route(&m[HDR..]).unwrap();
        assert_eq!(
            (info.dst, info.table, info.oif, info.protocol),
            (r.dst, r.table, Some(7), 76)
        );
        // Truncated or garbled attributes end the walk, never panic.
        for cut in 0..m.len() {
            let _ = parse_route(&m[HDR.min(cut)..cut]);
            let _ = parse_rule(&m[HDR.min(cut)..cut]);
        }
    }

    #[test]
    fn an_address_message_is_an_ifaddrmsg_with_local_and_address() {
        let ip: IpAddr = "fd00::6440:b".parse().unwrap();
        let m = addr_msg(7, &ip, 96);
        assert_eq!(m.len(), 16 + 8 + 2 * 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWADDR);
        assert_eq!(&m[16..20], &[10, 96, IFA_F_NODAD, 0]);
        assert_eq!(u32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 7);
        for (at, ty) in [(24, IFA_LOCAL), (44, IFA_ADDRESS)] {
            assert_eq!(u16::from_ne_bytes([m[at], m[at + 1]]), 20);
            assert_eq!(u16::from_ne_bytes([m[at + 2], m[at + 3]]), ty);
            assert_eq!(&m[at + 4..at + 20], &octets(&ip)[..]);
        }
    }
}
