//! Routes with real daemons in namespaces (docs/ROUTES.md): exit
//! gateways for a client behind a NAT, failover between two gateways,
//! subnet routes to a LAN whose host runs no ringvpn (two routers, one
//! killed), a spoofed outside source refused, and the client's rules and
//! routes restored byte for byte after a clean stop and after SIGKILL.
//!
//! ```text
//!  h0 gateway A ─ up0 198.19.200.10 ─┐
//!                                    ├─ the "internet" server 198.19.200.1
//!  h1 gateway B ─ up0 198.19.200.11 ─┘
//!  h2 router R1 ─ lan0 198.19.5.2 ───┐
//!                                    ├─ a LAN host 198.19.5.100 (no ringvpn)
//!  h3 router R2 ─ lan0 198.19.5.3 ───┘
//!  h4 member                           (all five on the underlay 198.18.0.0/16)
//!  h5 client, exit = auto, behind a port-restricted NAT (198.19.1.0/24)
//! ```

mod common;

use common::{ca, configure_signed, write_cert, Member};
use ringvpn::crypto::Identity;
use ringvpn::lab::nat::{NatLab, NatType};
use ringvpn::lab::trace::PingTrace;
use ringvpn::lab::Lab;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringvpn");
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 1);
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(198, 19, 5, 100);

fn nat_lab_or_skip(test: &str) -> bool {
    let why = ringvpn::lab::nat::unavailable()
        .or_else(|| (!ringvpn::lab::have("iperf3")).then(|| "iperf3 is not installed".to_string()));
    if let Some(why) = why {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: cannot run under CI: {why}");
        }
        eprintln!("SKIPPED {test}: {why}");
        return false;
    }
    true
}

/// Host `i` as a certificate-mode member allowed to route `routes`.
fn member(lab: &Lab, ca: &Identity, ca_file: &Path, i: usize, routes: &[&str], extra: &[&str]) {
    let m = Member {
        routes,
        extra,
        ..Member::default()
    };
    configure_signed(lab, ca, ca_file, i, m);
}

/// A string field of host `i`'s `"routes"` status object.
fn routes_field(lab: &Lab, i: usize, field: &str) -> Option<String> {
    let st = lab.status_json(i).ok()?;
    let r = &st[st.find("\"routes\":{")?..];
    let key = format!("\"{field}\":\"");
    let rest = &r[r.find(&key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The advertiser host `i` uses for `prefix` (from its status).
fn in_use(lab: &Lab, i: usize, prefix: &str) -> Option<String> {
    let st = lab.status_json(i).ok()?;
    let at = st.find(&format!("\"prefix\":\"{prefix}\""))?;
    // Each route object: prefix, advertiser, state, rtt_ms, in_use.
    st[at..]
        .split('}')
        .take(8)
        .zip(std::iter::repeat(()))
        .map(|(o, _)| o)
        .find(|o| o.contains(&format!("\"prefix\":\"{prefix}\"")) && o.contains("\"in_use\":true"))
        .and_then(|o| {
            let key = "\"advertiser\":\"";
            let rest = &o[o.find(key)? + key.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {timeout:?}");
}

fn host_index(name: &str) -> usize {
    name.trim_start_matches('h').parse().unwrap()
}

#[test]
fn exit_gateways_subnet_routes_and_failover() {
    let test = "exit_gateways_subnet_routes_and_failover";
    if !nat_lab_or_skip(test) {
        return;
    }
    let mut nat = NatLab::new(Path::new(BIN), 5, &[(NatType::PortRestricted, 1)]).unwrap();
    let client = nat.sites[0].hosts[0];
    let lab = &mut nat.lab;
    let internet = lab.add_segment("net", SERVER, 24).unwrap();
    lab.plug(0, &internet, "up0", Ipv4Addr::new(198, 19, 200, 10))
        .unwrap();
    lab.plug(1, &internet, "up0", Ipv4Addr::new(198, 19, 200, 11))
        .unwrap();
    let lan = lab.add_segment("lan", LAN_HOST, 24).unwrap();
    lab.plug(2, &lan, "lan0", Ipv4Addr::new(198, 19, 5, 2))
        .unwrap();
    lab.plug(3, &lan, "lan0", Ipv4Addr::new(198, 19, 5, 3))
        .unwrap();

    // The client's underlay route is the whole of 198.18.0.0/15, which
    // holds the server's 198.19.200.0/24 too: narrowed to the public
    // members' /16, so that only the exit reaches the server (as on a
    // real host, whose main table holds its LAN and a default route).
    let site_gw = nat.sites[0].lan_gateway.to_string();
    let lab = &mut nat.lab;
    for args in [
        &["ip", "route", "del", "198.18.0.0/15"][..],
        &["ip", "route", "add", "198.18.0.0/16", "via", &site_gw],
    ] {
        assert!(lab.exec(client, args).unwrap().status.success(), "{args:?}");
    }
    let (ca_id, ca_cert) = ca("lab-ca", 1);
    let ca_file = lab.dir.join("ca.crt");
    write_cert(&ca_file, &ca_cert);
    for g in [0, 1] {
        member(
            lab,
            &ca_id,
            &ca_file,
            g,
            &["0.0.0.0/0", "::/0"],
            &["gateway = on"],
        );
    }
    for r in [2, 3] {
        member(
            lab,
            &ca_id,
            &ca_file,
            r,
            &["198.19.5.0/24"],
            &["routes = 198.19.5.0/24"],
        );
    }
    member(lab, &ca_id, &ca_file, 4, &[], &[]);
    member(lab, &ca_id, &ca_file, client, &[], &["exit = auto"]);
    let members: Vec<usize> = (0..5).collect();
    for i in &members {
        lab.start(*i).unwrap();
    }
    lab.wait_vpn_held(&members, Duration::from_secs(40))
        .unwrap();

    // The client's rules and routes before its daemon runs.
    let before = lab.routing_snapshot(client).unwrap();
    lab.start(client).unwrap();
    let mut all = members.clone();
    all.push(client);
    lab.wait_vpn_held(&all, Duration::from_secs(40)).unwrap();
    let chose = wait_for("an exit chosen", Duration::from_secs(40), || {
        routes_field(lab, client, "exit_via").is_some()
    });
    let gw = routes_field(lab, client, "exit_via").unwrap();
    eprintln!("exit chosen {chose:?} after the address: {gw}");

    // The internet through the gateway: ping, upload, download.
    let p = lab.ping(client, SERVER, 5, 56, false).unwrap();
    assert!(
        p.all_ok(),
        "ping the server: {p:?}\n{}\n{}\n{}",
        lab.status_text(client).unwrap_or_default(),
        lab.status_text(host_index(&gw)).unwrap_or_default(),
        String::from_utf8_lossy(
            &lab.exec(client, &["ip", "route", "get", "198.19.200.1"])
                .unwrap()
                .stdout
        ),
    );
    let (up, seen) = lab.iperf3_to_segment(client, &internet, 3, false).unwrap();
    let (down, _) = lab.iperf3_to_segment(client, &internet, 3, true).unwrap();
    let gw_uplink = format!("198.19.200.{}", 10 + host_index(&gw));
    assert_eq!(seen, gw_uplink, "the server sees the gateway's address");
    let direct = lab.iperf3(client, 4, 3, false).unwrap();
    eprintln!(
        "through gateway {gw}: {:.0} Mbit/s up, {:.0} Mbit/s down; to a member directly {:.0} Mbit/s",
        up / 1e6,
        down / 1e6,
        direct / 1e6
    );
    // Its own ring links are not caught in the tunnel.
    let p = lab.ping(client, lab.hosts[4].vip, 3, 56, false).unwrap();
    assert!(p.all_ok(), "the VPN itself: {p:?}");

    // Subnet routes: the LAN host from the client and from h4.
    for i in [client, 4] {
        let p = lab.ping(i, LAN_HOST, 3, 56, false).unwrap();
        assert!(
            p.all_ok(),
            "h{i} -> LAN host: {p:?}\n{}",
            lab.status_text(i).unwrap_or_default()
        );
    }
    let (from_client, _) = lab.iperf3_to_segment(client, &lan, 3, false).unwrap();
    let (lan_bps, lan_seen) = lab
        .iperf3_to_segment(4, &lan, 3, false)
        .unwrap_or_else(|e| {
            panic!(
                "h4 -> LAN host: {e}\n{}\n{}",
                lab.status_text(4).unwrap_or_default(),
                lab.status_text(2).unwrap_or_default()
            )
        });
    eprintln!(
        "-> LAN host: {:.0} Mbit/s from h4 (seen as {lan_seen}), {:.0} Mbit/s from the client",
        lan_bps / 1e6,
        from_client / 1e6
    );

    // A member sending from an outside address it does not route: dropped.
    lab.exec(4, &["ip", "addr", "add", "198.19.200.99/32", "dev", "lo"])
        .unwrap();
    let vip = lab.hosts[client].vip.to_string();
    let _ = lab.exec(
        4,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "198.19.200.99",
            &vip,
        ],
    );
    let spoofed = common::drops(lab, client, "outside_source");
    assert!(spoofed >= 1.0, "spoofed outside source not counted");

    // Failover: the gateway in use dies under a 100 ms ping.
    let trace = PingTrace::start(lab, client, SERVER, 250, Duration::from_millis(100)).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    lab.stop_hard(host_index(&gw));
    let t = trace.finish().unwrap();
    let other = routes_field(lab, client, "exit_via").unwrap_or_default();
    eprintln!(
        "gateway {gw} killed: {} of {} lost, traffic lost for {:?}, now through {other}",
        t.lost(),
        t.sent,
        t.longest_gap
    );
    assert_ne!(other, gw);
    assert!(
        t.longest_gap <= Duration::from_secs(5),
        "gateway failover took {:?}",
        t.longest_gap
    );
    // Back: the gateway returns; equally fast, so the client stays.
    lab.start(host_index(&gw)).unwrap();
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(
        routes_field(lab, client, "exit_via").as_deref(),
        Some(&other[..])
    );

    // Two routers for the LAN: the one in use dies, the other carries on.
    let router = in_use(lab, client, "198.19.5.0/24").expect("a router in use");
    let trace = PingTrace::start(lab, client, LAN_HOST, 200, Duration::from_millis(100)).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    lab.stop_hard(host_index(&router));
    let t = trace.finish().unwrap();
    eprintln!(
        "router {router} killed: {} of {} lost, traffic lost for {:?}",
        t.lost(),
        t.sent,
        t.longest_gap
    );
    assert!(t.received > t.sent / 2 && t.longest_gap <= Duration::from_secs(5));

    // exit-lan = deny (the default): the client's own LAN (its NAT
    // router) is reached through the exit, where it is not.
    let router = site_gw.parse::<Ipv4Addr>().unwrap();
    let p = lab.ping(client, router, 2, 56, false).unwrap();
    assert_eq!(p.received, 0, "the LAN bypassed the exit: {p:?}");

    // Clean stop: rules and routes exactly as before.
    lab.stop(client);
    assert_eq!(
        lab.routing_snapshot(client).unwrap(),
        before,
        "after a clean stop"
    );
    // SIGKILL leaves the rules; the next start cleans them up.
    lab.start(client).unwrap();
    wait_for("the tunnel rules", Duration::from_secs(10), || {
        lab.routing_snapshot(client).unwrap() != before
    });
    lab.stop_hard(client);
    let stale = lab.routing_snapshot(client).unwrap();
    assert!(stale.contains("29303"), "rules survive SIGKILL:\n{stale}");
    lab.start(client).unwrap();
    lab.stop(client);
    assert_eq!(
        lab.routing_snapshot(client).unwrap(),
        before,
        "after SIGKILL and a restart"
    );
    // exit-lan = allow: the LAN directly, the internet still through
    // the exit.
    member(
        lab,
        &ca_id,
        &ca_file,
        client,
        &[],
        &["exit = auto", "exit-lan = allow"],
    );
    lab.start(client).unwrap();
    wait_for("an exit chosen again", Duration::from_secs(40), || {
        routes_field(lab, client, "exit_via").is_some()
    });
    let lan_ok = lab.ping(client, router, 2, 56, false).unwrap();
    let net_ok = lab.ping(client, SERVER, 2, 56, false).unwrap();
    lab.stop(client);
    assert!(lan_ok.all_ok(), "exit-lan = allow: the LAN: {lan_ok:?}");
    assert!(
        net_ok.all_ok(),
        "exit-lan = allow: the internet: {net_ok:?}"
    );
    assert_eq!(
        lab.routing_snapshot(client).unwrap(),
        before,
        "after exit-lan = allow"
    );
}
