//! `ringvpn lab demo`: the README's "run it" command.
//!
//! N hosts, each in its own network namespace and knowing only one other's
//! underlay endpoint, form the ring overlay, claim their virtual addresses
//! in the DHT and reach each other by virtual IP (IPv4 and IPv6) with no
//! server and no peer list, and by name through their own node's DNS;
//! then TCP throughput and a broadcast ping.

use super::{have, Lab, LabAddress, NodeOptions};
use std::io;
use std::path::Path;
use std::time::Duration;

pub fn run(bin: &Path, n: usize) -> io::Result<()> {
    if let Some(why) = super::unavailable() {
        return Err(io::Error::other(format!("cannot run the lab: {why}")));
    }
    if !have("ping") {
        return Err(io::Error::other(
            "the demo pings across the VPN: `ping` is not installed (apt-get install iputils-ping)",
        ));
    }
    if !have("iperf3") {
        println!("note: iperf3 is not installed (apt-get install iperf3): the throughput step is skipped");
    }
    crate::sys::catch_interrupts();
    println!("ringvpn lab demo: {n} hosts, each in its own network namespace");
    let mut lab = Lab::new(bin, n)?;
    let result = demo(&mut lab, n);
    print!("tearing down namespaces {}* ... ", lab.prefix);
    lab.teardown();
    println!("done");
    result
}

fn interrupted() -> io::Result<()> {
    if crate::sys::interrupted() {
        return Err(io::Error::other("interrupted"));
    }
    Ok(())
}

fn demo(lab: &mut Lab, n: usize) -> io::Result<()> {
    for i in 0..n {
        let boot = if i == 0 { 1 } else { i - 1 };
        let h = &lab.hosts[i];
        println!(
            "  h{i}  {}  underlay {}  virtual {}  knows only h{boot}'s endpoint",
            h.ns, h.underlay, h.vip
        );
        let opts = NodeOptions {
            overlay: true,
            bootstrap: vec![boot],
            address: LabAddress::Static,
            extra: vec![format!("name = h{i}")],
            ..NodeOptions::default()
        };
        lab.configure(i, &opts)?;
        lab.sysctl(i, "net.ipv4.icmp_echo_ignore_broadcasts", "0")?;
    }
    for i in 0..n {
        lab.start(i)?;
    }
    let all: Vec<usize> = (0..n).collect();
    println!("\nstarted {n} daemons; waiting for the ring and the address claims...");
    let t = lab.wait_ring(&all, Duration::from_secs(30))?;
    println!("  ring consistent after {:.0} ms", t.as_secs_f64() * 1e3);
    let t = lab.wait_vpn_held(&all, Duration::from_secs(30))?;
    println!(
        "  every virtual address claimed in the DHT {:.0} ms later",
        t.as_secs_f64() * 1e3
    );
    println!("\n$ ringvpn status   (on h0)\n{}", lab.status_text(0)?);

    println!("ping by virtual IP (the first packet waits for the DHT lookup, not dropped):");
    println!(
        "  {:<6} {:<30} {:>9} {:>10} {:>10}",
        "from", "to", "received", "min ms", "avg ms"
    );
    let mut failures = 0;
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            interrupted()?;
            let v6 = lab
                .vpn_field(j, "ipv6")
                .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok());
            let mut targets = vec![std::net::IpAddr::V4(lab.hosts[j].vip)];
            targets.extend(v6.map(std::net::IpAddr::V6));
            for dst in targets {
                let p = lab.ping(i, dst, 3, 56, false)?;
                failures += usize::from(!p.all_ok());
                println!(
                    "  h{:<5} {:<30} {:>5}/{:<3} {:>10.3} {:>10.3}",
                    i,
                    format!("h{j} {dst}"),
                    p.received,
                    p.sent,
                    p.min_ms,
                    p.avg_ms
                );
            }
        }
    }
    let big = lab.ping(0, lab.hosts[1].vip, 3, 1332, true)?;
    println!(
        "  full-MTU ping (1360-byte packets, DF set) h0 -> h1: {}/{} received",
        big.received, big.sent
    );
    failures += usize::from(!big.all_ok());
    interrupted()?;

    let out = lab.exec(
        0,
        &["ping", "-b", "-n", "-c", "2", "-W", "2", "100.127.255.255"],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut answered: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("from ").nth(1)?.split(':').next())
        .collect();
    answered.sort_unstable();
    answered.dedup();
    println!(
        "\nbroadcast ping to 100.127.255.255 from h0 (a bounded broadcast over the ring): answered by {}",
        answered.join(", ")
    );

    // Names: each node answers its host's DNS on the virtual router's
    // address, from signed name records in the DHT.
    let router = crate::vpn::VpnConfig::new("lab").gateway();
    lab.netns_file(
        0,
        "resolv.conf",
        &format!("nameserver {router}\nsearch lab\n"),
    )?;
    let last = format!("h{}.lab", n - 1);
    let out = lab.exec(0, &["getent", "ahostsv4", &last])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text.split_whitespace().next().unwrap_or("nothing");
    println!(
        "
DNS from h0's host (nameserver {router}, its own node): {last} is {found}"
    );
    failures += usize::from(found != lab.hosts[n - 1].vip.to_string());

    if have("iperf3") {
        interrupted()?;
        let up = lab.iperf3(0, n - 1, 3, false)?;
        let down = lab.iperf3(0, n - 1, 3, true)?;
        println!(
            "\niperf3 TCP over the VPN, 3 s each way: h0 -> h{} {:.0} Mbit/s, h{} -> h0 {:.0} Mbit/s",
            n - 1,
            up / 1e6,
            n - 1,
            down / 1e6
        );
    }
    interrupted()?;
    if failures > 0 {
        return Err(io::Error::other(format!(
            "{failures} checks failed (ping runs that lost packets, or a name not resolved)"
        )));
    }
    println!(
        "\nsummary: {n} nodes, one bootstrap each, no server: every pair pings by virtual IPv4 and IPv6"
    );
    Ok(())
}
