//! Sub-rings with real daemons (docs/SUBRINGS.md): six daemons in one
//! public ring; network "red" on hosts 0–2 and "blue" on hosts 2–4 (host
//! 2 in both, with two TAPs), each with its own CA; host 5 only public.
//! Every pair inside a network pings by virtual IP and by name; nothing
//! crosses between the networks, a broadcast (mDNS) stays inside its
//! network, and a member of one cannot resolve or reach the other's.
//! The configs are the README's sub-ring example: `[public]` with the
//! default listen address, `[network NAME]` with defaults for the TAP.

mod common;

use common::{ca, write_cert};
use ringvpn::crypto::cert::{Cert, Prefix};
use ringvpn::crypto::{Identity, Seed};
use ringvpn::lab::Lab;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const LAB_BIN: &str = env!("CARGO_BIN_EXE_ringvpn-lab");
const BIN: &str = env!("CARGO_BIN_EXE_ringvpn");

/// The networks: name, third octet of its /24, member hosts.
const NETS: [(&str, u8, [usize; 3]); 2] = [("red", 1, [0, 1, 2]), ("blue", 2, [2, 3, 4])];

fn vip(net: usize, host: usize) -> String {
    format!("100.64.{}.{}", NETS[net].1, 10 + host)
}

/// Host `i`'s config: the public ring, and a section per network it is
/// in (its key, certificate from the network's CA, static address).
fn configure(lab: &Lab, i: usize, cas: &[(Identity, std::path::PathBuf)]) {
    let mut c = public_section(lab, i, Some(if i == 0 { 1 } else { 0 }));
    if i == 2 {
        let _ = writeln!(c, "metrics = 127.0.0.1:9474");
    }
    std::fs::write(&lab.hosts[i].config, c).unwrap();
    for (n, (name, octet, members)) in NETS.iter().enumerate() {
        if members.contains(&i) {
            configure_one(lab, i, &cas[n], name, *octet);
        }
    }
}

/// Host `i`'s `[public]` section as the README writes it (default listen
/// address), bootstrapping from host `boot`.
fn public_section(lab: &Lab, i: usize, boot: Option<usize>) -> String {
    let h = &lab.hosts[i];
    let mut c = String::new();
    let _ = writeln!(c, "[public]\nkey = {}", h.key_file.display());
    let _ = writeln!(c, "control = {}", h.control.display());
    let state = lab.dir.join(format!("h{i}-state"));
    let _ = writeln!(c, "state-dir = {}", state.display());
    if let Some(b) = boot {
        let _ = writeln!(c, "bootstrap = {}:5140", lab.hosts[b].underlay);
    }
    c
}

/// Network `name`'s CA, its certificate written into the lab.
fn network_ca(lab: &Lab, name: &str) -> (Identity, std::path::PathBuf) {
    let (id, _) = ca(name, 30);
    let now = ringvpn::pki::unix_now();
    let cert = Cert::new_ca(&id, name, &format!("{name} CA"), (now - 60, now + 86_400)).unwrap();
    let file = lab.dir.join(format!("{name}-ca.crt"));
    write_cert(&file, &cert);
    (id, file)
}

/// Host `i`'s status of network `net` (JSON).
fn net_status(lab: &Lab, i: usize, net: &str) -> String {
    ringvpn::control::query(&lab.hosts[i].control, &format!("@{net} status --json"))
        .unwrap_or_default()
}

/// `ringvpn` with `args` in host `i`'s namespace.
fn ringvpn(lab: &Lab, i: usize, args: &[&str]) -> (bool, String) {
    let socket = lab.hosts[i].control.display().to_string();
    let mut a = vec![BIN];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-s", &socket]);
    let out = lab.exec(i, &a).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ping(lab: &Lab, i: usize, ip: &str) -> bool {
    lab.exec(i, &["ping", "-c", "2", "-i", "0.3", "-W", "2", ip])
        .is_ok_and(|o| o.status.success())
}

#[test]
fn two_networks_over_one_public_ring_stay_apart() {
    let Some(mut lab) = common::lab_or_skip("two_networks_over_one_public_ring", 6) else {
        return;
    };
    let cas: Vec<(Identity, std::path::PathBuf)> = NETS
        .iter()
        .map(|(name, ..)| network_ca(&lab, name))
        .collect();
    for i in 0..6 {
        configure(&lab, i, &cas);
    }
    for i in 0..6 {
        lab.start(i).unwrap();
    }
    // Every member's address held in its network.
    let start = Instant::now();
    for (n, (name, _, members)) in NETS.iter().enumerate() {
        for &i in members {
            while !net_status(&lab, i, name).contains("\"state\":\"held\"") {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "h{i} in {name}: {}\n{}",
                    net_status(&lab, i, name),
                    lab.log_tail(i)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = n;
        }
    }
    eprintln!("every member's address held after {:?}", start.elapsed());
    // Host 2's two TAPs. Listening on 0.0.0.0, no daemon advertises a
    // network's address as an underlay endpoint, on the public ring or in
    // a network (a path through a network that runs over it).
    for i in 0..6 {
        let (_, st) = ringvpn(&lab, i, &["status"]);
        let adv = st
            .lines()
            .find(|l| l.starts_with("advertise"))
            .unwrap_or("");
        assert!(!adv.contains("100.64."), "h{i}: {adv}");
    }
    let (_, st) = ringvpn(&lab, 2, &["status", "-N", "red"]);
    let adv = st
        .lines()
        .find(|l| l.starts_with("advertise"))
        .unwrap_or("");
    assert!(
        !adv.contains("100.64.") && adv.contains("carried:"),
        "h2 in red: {adv}"
    );
    let (_, st) = ringvpn(&lab, 2, &["status"]);
    assert!(
        st.contains("network   red on rv-red") && st.contains("network   blue on rv-blue"),
        "{st}"
    );
    // Every pair inside a network: by virtual IP, and by name.
    for (n, (name, _, members)) in NETS.iter().enumerate() {
        for &a in members {
            for &b in members.iter().filter(|&&b| b != a) {
                let t = Instant::now();
                while !ping(&lab, a, &vip(n, b)) {
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "{name}: h{a} -> h{b} ({})\n{}",
                        vip(n, b),
                        net_status(&lab, a, name)
                    );
                }
                let (ok, said) =
                    ringvpn(&lab, a, &["ping", "-N", name, "-n", "1", &format!("h{b}")]);
                assert!(ok, "{name}: ringvpn ping h{b} from h{a}: {said}");
            }
        }
        // The network's own DNS answers its members' names.
        let router = format!("100.64.{}.1", NETS[n].1);
        let a = members[0];
        let out = lab
            .exec(
                a,
                &[
                    "dig",
                    "+short",
                    "+time=2",
                    "+tries=3",
                    &format!("@{router}"),
                    &format!("h{}.{name}", members[1]),
                    "A",
                ],
            )
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            vip(n, members[1]),
            "dig in {name}"
        );
    }
    // Nothing crosses: red's h0, routing blue's subnet into its red TAP,
    // reaches nobody in blue; red does not know blue's names; the other
    // way round too.
    lab.exec(0, &["ip", "route", "add", "100.64.2.0/24", "dev", "rv-red"])
        .unwrap();
    assert!(!ping(&lab, 0, &vip(1, 3)), "red's h0 reached blue's h3");
    let (ok, said) = ringvpn(&lab, 0, &["ping", "-N", "red", "-n", "1", "h3"]);
    assert!(!ok, "red resolved blue's h3: {said}");
    let out = lab
        .exec(
            0,
            &[
                "dig",
                "+short",
                "+time=2",
                "+tries=2",
                "@100.64.1.1",
                "h3.blue",
                "A",
            ],
        )
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "h3.blue from red"
    );
    lab.exec(
        4,
        &["ip", "route", "add", "100.64.1.0/24", "dev", "rv-blue"],
    )
    .unwrap();
    assert!(!ping(&lab, 4, &vip(0, 1)), "blue's h4 reached red's h1");
    // Host 5 is only public: it has no network and is asked in vain.
    let (_, said) = ringvpn(&lab, 5, &["status", "-N", "red"]);
    assert!(said.contains("runs no networks"), "{said}");
    // An mDNS query from red's h0 reaches red's h1 and host 2 on its red
    // TAP, and nobody in blue: h3, h4 and — asked alone, since a socket
    // bound to the port hears the group on every interface that joined
    // it — host 2 on its blue TAP.
    let red = (0, vip(0, 0));
    mdns(
        &lab,
        red.clone(),
        &[
            (1, vip(0, 1), true),
            (2, vip(0, 2), true),
            (3, vip(1, 3), false),
            (4, vip(1, 4), false),
        ],
    );
    mdns(&lab, red, &[(2, vip(1, 2), false)]);
    // And the other way: blue's h3 reaches blue only.
    mdns(
        &lab,
        (3, vip(1, 3)),
        &[
            (2, vip(1, 2), true),
            (4, vip(1, 4), true),
            (1, vip(0, 1), false),
        ],
    );
    // Host 2 carries both networks on one socket: tagged datagrams in.
    let (_, st) = ringvpn(&lab, 2, &["status"]);
    assert!(st.contains("carriage"), "{st}");
    // Metrics per network: the control socket, and /metrics/NAME.
    let (ok, m) = ringvpn(&lab, 2, &["metrics", "-N", "blue"]);
    assert!(ok && peers_up(&m) >= 2, "{m}");
    let get = |path: &str| {
        let cmd = format!("exec 3<>/dev/tcp/127.0.0.1/9474; printf 'GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; cat <&3");
        let out = lab.exec(2, &["timeout", "5", "bash", "-c", &cmd]).unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let red = get("/metrics/red");
    assert!(
        red.starts_with("HTTP/1.1 200 OK") && peers_up(&red) >= 2,
        "{red}"
    );
    assert!(get("/metrics").starts_with("HTTP/1.1 200 OK"));
    assert!(get("/metrics/green").starts_with("HTTP/1.1 404"));
    lab.teardown();
}

/// Host `from.0` sends an mDNS query from `from.1`; each (host, address,
/// expected) listener says whether it heard it.
fn mdns(lab: &Lab, from: (usize, String), listen: &[(usize, String, bool)]) {
    let listeners: Vec<_> = listen
        .iter()
        .map(|(h, ip, _)| {
            lab.spawn_piped(*h, &[LAB_BIN, "mdns-listen", ip, "4"])
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let q = lab
        .exec(
            from.0,
            &[LAB_BIN, "mdns-query", &from.1, "ringvpn-lab.local"],
        )
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    for ((h, ip, expect), l) in listen.iter().zip(listeners) {
        let out = l.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let seen = text.contains(&format!("from {}:", from.1));
        assert_eq!(seen, *expect, "query from {}: h{h} on {ip}: {text}", from.1);
    }
}

/// Two members of a network whose direct path is cut (each drops what
/// comes from the other's address) link over the public ring through the
/// third daemon, which is in no network: pings cross, the daemons count
/// carried datagrams, and the relay's own status shows no network.
#[test]
fn members_with_no_direct_path_link_over_the_public_ring() {
    let Some(mut lab) = common::lab_or_skip("members_with_no_direct_path", 3) else {
        return;
    };
    if !ringvpn::lab::have("nft") {
        assert!(
            std::env::var_os("CI").is_none(),
            "nft is missing (apt-get install nftables)"
        );
        println!("SKIPPED members_with_no_direct_path: nft is missing");
        return;
    }
    let red = network_ca(&lab, "red");
    // Hosts 1 and 2 in red (as host 2 of the other test: one network).
    for i in 0..3 {
        let c = public_section(&lab, i, (i > 0).then_some(0));
        std::fs::write(&lab.hosts[i].config, c).unwrap();
    }
    for i in [1, 2] {
        configure_one(&lab, i, &red, "red", 1);
    }
    for (i, other) in [(1, 2), (2, 1)] {
        let rule = format!(
            "table inet cut {{\n  chain in {{\n    type filter hook input priority 0;\n    ip saddr {} drop\n  }}\n}}\n",
            lab.hosts[other].underlay
        );
        let file = lab.dir.join(format!("h{i}-cut.nft"));
        std::fs::write(&file, rule).unwrap();
        let out = lab
            .exec(i, &["nft", "-f", &file.display().to_string()])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..3 {
        lab.start(i).unwrap();
    }
    let target = "100.64.1.12";
    let t = Instant::now();
    while !ping(&lab, 1, target) {
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "h1 -> h2 over the public ring\n{}\n{}",
            net_status(&lab, 1, "red"),
            lab.log_tail(1)
        );
    }
    eprintln!("h1 reached h2 over the public ring after {:?}", t.elapsed());
    for i in [1, 2] {
        let (_, st) = ringvpn(&lab, i, &["status"]);
        let carried_out = st
            .lines()
            .find_map(|l| {
                l.strip_prefix("carriage")?
                    .split(" carried in, ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        assert!(carried_out > 0, "h{i}: {st}");
    }
    let (ok, said) = ringvpn(&lab, 1, &["ping", "-N", "red", "-n", "1", "h2"]);
    assert!(ok, "{said}");
    let (_, st) = ringvpn(&lab, 0, &["status"]);
    assert!(
        !st.contains("network   "),
        "the relay runs no network: {st}"
    );
    lab.teardown();
}

/// Appends network `name` (its /24's third octet `octet`) to host `i`'s
/// config: a fresh key, a certificate from `ca` for 100.64.OCTET.(10+i).
fn configure_one(lab: &Lab, i: usize, ca: &(Identity, std::path::PathBuf), name: &str, octet: u8) {
    let seed = Seed::generate();
    let key_file = lab.dir.join(format!("h{i}-{name}.key"));
    ringvpn::config::write_new_key(&key_file, &seed).unwrap();
    let key = Identity::from_seed(&seed).public();
    let now = ringvpn::pki::unix_now();
    let address = format!("100.64.{octet}.{}", 10 + i);
    let ip = vec![Prefix::parse(&address).unwrap()];
    let cert = Cert::new_node(
        &ca.0,
        key,
        name,
        &format!("h{i}"),
        ip,
        vec![],
        (now - 60, now + 86_400),
    )
    .unwrap();
    let cert_file = lab.dir.join(format!("h{i}-{name}.crt"));
    write_cert(&cert_file, &cert);
    let mut c = std::fs::read_to_string(&lab.hosts[i].config).unwrap();
    let _ = writeln!(
        c,
        "\n[network {name}]\nkey = {}\nca = {}\ncert = {}\naddress = {address}/24",
        key_file.display(),
        ca.1.display(),
        cert_file.display(),
    );
    std::fs::write(&lab.hosts[i].config, c).unwrap();
}

/// `ringvpn_peers{state="up"}` in a metrics text.
fn peers_up(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("ringvpn_peers{state=\"up\"} ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
