//! Certificate mode with real daemons: certified members link and carry
//! traffic; a node certified by another CA cannot link (each refusal
//! counted); a revocation list given to one member reaches the others over
//! the links and cuts the revoked member off.

mod common;

use common::{ca, configure_member, drops, write_cert};
use ringvpn::crypto::cert::{armour, Revocations, REVOCATIONS_ARMOUR, SIG_LEN};
use ringvpn::crypto::NodeKey;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Writes a revocation list (serial 1) revoking `key` where a member
/// watches for one.
fn revoke(path: &std::path::Path, ca: &ringvpn::crypto::Identity, key: NodeKey) {
    let list = Revocations {
        issuer: NodeKey::default(),
        serial: 1,
        issued_at: ringvpn::pki::unix_now(),
        revoked: vec![key],
        signature: [0; SIG_LEN],
    }
    .sign(ca)
    .unwrap();
    std::fs::write(path, armour(REVOCATIONS_ARMOUR, &list.encode().unwrap())).unwrap();
}

#[test]
fn certified_members_link_outsiders_and_revoked_members_do_not() {
    let Some(mut lab) = common::lab_or_skip("certificates", 4) else {
        return;
    };
    let (ca_id, ca_cert) = ca("lab CA", 30);
    let (rogue_ca, rogue_cert) = ca("rogue CA", 30);
    let ca_file = lab.dir.join("ca.crt");
    write_cert(&ca_file, &ca_cert);
    let rogue_file = lab.dir.join("rogue.crt");
    write_cert(&rogue_file, &rogue_cert);
    let dir = lab.dir.clone();
    let crl = |i: usize| -> PathBuf { dir.join(format!("h{i}.crl")) };
    for i in 0..4 {
        // Host 3, the outsider, has its own CA (a daemon refuses to start
        // with a certificate its CA file does not vouch for).
        let (signer, trusted) = match i {
            3 => (&rogue_ca, &rogue_file),
            _ => (&ca_id, &ca_file),
        };
        let crl = format!("revocations = {}", crl(i).display());
        configure_member(&lab, i, signer, trusted, &[crl]);
    }
    for i in 0..4 {
        lab.start(i).unwrap();
    }
    let members = [0, 1, 2];
    lab.wait_ring(&members, Duration::from_secs(30)).unwrap();
    lab.wait_vpn_held(&members, Duration::from_secs(30))
        .unwrap();
    let ping = lab.ping(0, lab.hosts[2].vip, 3, 56, false).unwrap();
    assert!(ping.all_ok(), "certified members reach each other");
    // The outsider: its handshakes fail at every member, and it holds no
    // link.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        drops(&lab, 0, "cert_unknown_ca") >= 1.0,
        "{}",
        lab.status_text(0).unwrap_or_default()
    );
    let st = lab.status_text(3).unwrap_or_default();
    assert!(
        st.contains("peers     0") || !st.contains("state      up"),
        "{st}"
    );
    assert!(!lab
        .ping(3, lab.hosts[0].vip, 2, 56, false)
        .unwrap()
        .all_ok());
    // Revoke host 2 by giving the list to host 0 only.
    revoke(&crl(0), &ca_id, lab.hosts[2].key);
    let start = Instant::now();
    let key2 = lab.hosts[2].key.to_base64();
    let mut cut = None;
    while start.elapsed() < Duration::from_secs(30) {
        let up_at = |i: usize| {
            let st = lab.status_json(i).unwrap_or_default();
            ringvpn::lab::matrix::peer_field(&st, &key2, "state").as_deref() == Some("up")
        };
        if !up_at(0) && !up_at(1) {
            cut = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("revoked member cut off by every member after {cut:?} (file polled every 5 s)");
    assert!(cut.is_some(), "{}", lab.status_text(1).unwrap_or_default());
    assert!(!lab
        .ping(0, lab.hosts[2].vip, 2, 56, false)
        .unwrap()
        .all_ok());
    assert!(lab
        .ping(0, lab.hosts[1].vip, 2, 56, false)
        .unwrap()
        .all_ok());
}

/// Names, as an operator uses them: each member's certificate names it,
/// its host asks the member's own DNS server (the virtual router's
/// address) for another's name — with `dig`, and through the C library
/// with the namespace's resolv.conf — forward and reverse; `ringvpn ping
/// NAME` finds the path. Then a revocation shows on both sides: the
/// revokers list the member as "revoked (list 1)", and the revoked member
/// is told at its next handshake and says so.
#[test]
fn names_in_dns_ping_by_name_and_revocation_shown_on_both_sides() {
    let Some(mut lab) = common::lab_or_skip("names_in_dns", 3) else {
        return;
    };
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "dig is missing (apt-get install dnsutils)"
        );
        println!("SKIPPED names_in_dns: dig is missing (apt-get install dnsutils)");
        return;
    }
    let (ca_id, ca_cert) = ca("lab CA", 30);
    let ca_file = lab.dir.join("ca.crt");
    write_cert(&ca_file, &ca_cert);
    let dir = lab.dir.clone();
    let crl = |i: usize| -> PathBuf { dir.join(format!("h{i}.crl")) };
    for i in 0..3 {
        let crl = format!("revocations = {}", crl(i).display());
        configure_member(&lab, i, &ca_id, &ca_file, &[crl]);
    }
    for i in 0..3 {
        lab.start(i).unwrap();
    }
    lab.wait_vpn_held(&[0, 1, 2], Duration::from_secs(30))
        .unwrap();
    let router = ringvpn::vpn::VpnConfig::new("lab").gateway().to_string();
    let (vip1, vip2) = (lab.hosts[1].vip.to_string(), lab.hosts[2].vip.to_string());
    let dig = |i: usize, args: &[&str]| -> String {
        let at = format!("@{router}");
        let mut a = vec!["dig", "+short", "+time=2", "+tries=3", &at];
        a.extend_from_slice(args);
        let out = lab.exec(i, &a).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The names are registered a moment after the addresses.
    let start = Instant::now();
    while dig(0, &["h2.lab", "A"]) != vip2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "h2.lab: {:?}\n{}",
            dig(0, &["h2.lab", "A"]),
            lab.status_text(2).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("h2.lab answered at h0 after {:?}", start.elapsed());
    assert_eq!(dig(1, &["-x", &vip2]), "h2.lab.");
    let v6 = dig(0, &["h1.lab", "AAAA"]);
    assert!(
        v6.starts_with("fd")
            && v6.ends_with(&format!("{:x}", u32::from(lab.hosts[1].vip) & 0xffff)),
        "{v6}"
    );
    let out = lab
        .exec(0, &["dig", "+time=2", &format!("@{router}"), "example.com"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("REFUSED"));
    assert!(dig(0, &["nobody.lab", "A"]).is_empty());
    // Through the C library, as programs resolve names.
    lab.netns_file(
        0,
        "resolv.conf",
        &format!("nameserver {router}\nsearch lab\n"),
    )
    .unwrap();
    let out = lab.exec(0, &["getent", "ahosts", "h1.lab"]).unwrap();
    let got = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        got.contains(&format!("{vip1} ")) && got.contains(&v6),
        "{got:?}"
    );
    // Ping by bare name: the search domain makes it h1.lab.
    let out = lab
        .exec(0, &["ping", "-c", "2", "-i", "0.2", "-W", "3", "h1"])
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains(&format!("PING h1({v6})")),
        "{said}{err}"
    );
    // `ringvpn ping NAME`: the path by name.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringvpn"))
        .args(["ping", "-n", "1", "-s"])
        .arg(&lab.hosts[0].control)
        .arg("h2")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("pong from h2"), "{said}");
    let status = lab.status_text(0).unwrap();
    assert!(status.contains("name h0.lab. (registered)"), "{status}");
    // Revoke h2 at h0; h1 takes the list over the link.
    revoke(&crl(0), &ca_id, lab.hosts[2].key);
    let key2 = lab.hosts[2].key.to_base64();
    let start = Instant::now();
    let shown = |i: usize| {
        let st = lab.status_json(i).unwrap_or_default();
        ringvpn::lab::matrix::peer_field(&st, &key2, "state").as_deref() == Some("revoked (list 1)")
    };
    while !(shown(0) && shown(1)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            lab.status_text(1).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The revoked member tries again and is told.
    let start = Instant::now();
    loop {
        let st = lab.status_text(2).unwrap_or_default();
        if st.contains("WARNING   our certificate is revoked (list 1)") {
            eprintln!(
                "h2 told after {:?}:\n{}",
                start.elapsed(),
                st.lines().next().unwrap_or("")
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{st}\n{}",
            lab.log_tail(2)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(&lab.hosts[2].log).unwrap();
    assert!(
        log.contains("our certificate is revoked"),
        "{}",
        lab.log_tail(2)
    );
    let log0 = std::fs::read_to_string(&lab.hosts[0].log).unwrap();
    assert!(
        log0.contains("h2 presents a revoked certificate (revocation list 1"),
        "{}",
        lab.log_tail(0)
    );
}

/// A renewed certificate (new validity, same name and addresses) is taken
/// by `ringvpn reload` under running links, and our records are signed
/// again with it; one that names the member otherwise needs a restart.
/// The network comes from the certificate (the lab writes no `network`
/// for certificate members), and a reload does not mistake that for a
/// change.
#[test]
fn a_renewed_certificate_is_taken_on_reload() {
    let Some(mut lab) = common::lab_or_skip("a_renewed_certificate", 2) else {
        return;
    };
    let (ca_id, ca_cert) = ca("lab CA", 30);
    let ca_file = lab.dir.join("ca.crt");
    write_cert(&ca_file, &ca_cert);
    for i in 0..2 {
        configure_member(&lab, i, &ca_id, &ca_file, &[]);
        lab.start(i).unwrap();
    }
    lab.wait_vpn_held(&[0, 1], Duration::from_secs(30)).unwrap();
    assert!(lab
        .ping(0, lab.hosts[1].vip, 2, 56, false)
        .unwrap()
        .all_ok());
    let reload = |lab: &ringvpn::lab::Lab| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringvpn"))
            .args(["reload", "-s"])
            .arg(&lab.hosts[1].control)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let said = reload(&lab);
    assert!(said.contains("nothing changed"), "{said}");
    let now = ringvpn::pki::unix_now();
    let sign = |name: &str, days: u64| {
        let ip = vec![ringvpn::crypto::cert::Prefix::parse(&lab.hosts[1].vip.to_string()).unwrap()];
        ringvpn::crypto::cert::Cert::new_node(
            &ca_id,
            lab.hosts[1].key,
            "lab",
            name,
            ip,
            vec![],
            (now - 60, now + days * 86_400),
        )
        .unwrap()
    };
    let cert_file = lab.dir.join("h1.crt");
    std::fs::remove_file(&cert_file).unwrap();
    write_cert(&cert_file, &sign("h1", 60));
    let said = reload(&lab);
    eprintln!("{said}");
    assert!(
        said.contains("applied: ") && said.contains("certificate valid until"),
        "{said}"
    );
    assert!(!said.contains("needs a restart"), "{said}");
    assert!(lab
        .ping(0, lab.hosts[1].vip, 3, 56, false)
        .unwrap()
        .all_ok());
    let st = lab.status_json(0).unwrap();
    let state = ringvpn::lab::matrix::peer_field(&st, &lab.hosts[1].key.to_base64(), "state");
    assert_eq!(state.as_deref(), Some("up"), "{st}");
    std::fs::remove_file(&cert_file).unwrap();
    write_cert(&cert_file, &sign("someone-else", 60));
    let said = reload(&lab);
    assert!(
        said.contains("needs a restart: certificate (its name"),
        "{said}"
    );
}
