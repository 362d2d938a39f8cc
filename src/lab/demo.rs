//! `ringvpn lab demo`: the README's "run it" command.

use super::{have, Lab};
use std::io;
use std::path::Path;
use std::time::Duration;

pub fn run(bin: &Path, n: usize) -> io::Result<()> {
    if let Some(why) = super::unavailable() {
        return Err(io::Error::other(format!("cannot run the lab: {why}")));
    }
    crate::shell::sys::catch_interrupts();
    println!("ringvpn lab demo: {n} hosts, each in its own network namespace");
    let mut lab = Lab::new(bin, n)?;
    let result = demo(&mut lab, n);
    print!("tearing down namespaces {}* ... ", lab.prefix);
    lab.teardown();
    println!("done");
    result
}

fn demo(lab: &mut Lab, n: usize) -> io::Result<()> {
    for h in &lab.hosts {
        println!(
            "  {}  underlay {}  vpn {}  key {}",
            h.ns, h.underlay, h.vip, h.key
        );
    }
    lab.configure_full_mesh()?;
    for i in 0..n {
        lab.start(i)?;
    }
    println!("\nstarted {n} daemons; waiting for the encrypted links...");
    for i in 0..n {
        let t = lab.wait_links_up(i, n - 1, Duration::from_secs(15))?;
        println!(
            "  h{i}: {} links up after {:.0} ms",
            n - 1,
            t.as_secs_f64() * 1e3
        );
    }
    println!("\n$ ringvpn status   (on h0)\n{}", lab.status_text(0)?);

    println!("ping over the VPN (TAP to TAP, ARP and ICMP through encrypted UDP):");
    println!(
        "  {:<6} {:<14} {:>9} {:>10} {:>10}",
        "from", "to", "received", "min ms", "avg ms"
    );
    let mut failures = 0;
    for i in 0..n {
        for j in 0..n {
            if i == j || crate::shell::sys::interrupted() {
                continue;
            }
            let p = lab.ping(i, lab.hosts[j].vip, 3, 56, false)?;
            failures += usize::from(!p.all_ok());
            println!(
                "  h{:<5} {:<14} {:>5}/{:<3} {:>10.3} {:>10.3}",
                i, lab.hosts[j].vip, p.received, p.sent, p.min_ms, p.avg_ms
            );
        }
    }
    let big = lab.ping(0, lab.hosts[1].vip, 3, 1372, true)?;
    println!(
        "  full-MTU ping (1400-byte packets, DF set) h0 -> h1: {}/{} received",
        big.received, big.sent
    );
    failures += usize::from(!big.all_ok());

    if have("iperf3") && !crate::shell::sys::interrupted() {
        let up = lab.iperf3(0, 1, 3, false)?;
        let down = lab.iperf3(0, 1, 3, true)?;
        println!(
            "\niperf3 TCP over the VPN, 3 s each way: h0 -> h1 {:.0} Mbit/s, h1 -> h0 {:.0} Mbit/s",
            up / 1e6,
            down / 1e6
        );
    } else {
        println!("\n(iperf3 not installed: skipping the throughput test)");
    }
    if crate::shell::sys::interrupted() {
        return Err(io::Error::other("interrupted"));
    }
    if failures > 0 {
        return Err(io::Error::other(format!(
            "{failures} ping runs lost packets"
        )));
    }
    println!("\nsummary: {n} nodes, all links up, every pair pings across the VPN");
    Ok(())
}
