//! Certificate mode with real daemons: certified members link and carry
//! traffic; a node certified by another CA cannot link (each refusal
//! counted); a revocation list given to one member reaches the others over
//! the links and cuts the revoked member off.

mod common;

use ringvpn::crypto::cert::{
    armour, Cert, Prefix, Revocations, CERT_ARMOUR, REVOCATIONS_ARMOUR, SIG_LEN,
};
use ringvpn::crypto::{Identity, NodeKey, Seed};
use ringvpn::lab::{Lab, LabAddress, NodeOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn ca(name: &str, days: u64) -> (Identity, Cert) {
    let id = Identity::from_seed(&Seed::generate());
    let now = ringvpn::pki::unix_now();
    let cert = Cert::new_ca(&id, "lab", name, (now - 60, now + days * 86_400)).unwrap();
    (id, cert)
}

fn write_cert(path: &Path, c: &Cert) {
    std::fs::write(path, armour(CERT_ARMOUR, &c.encode().unwrap())).unwrap();
}

fn node_cert(ca: &Identity, lab: &Lab, i: usize) -> Cert {
    let now = ringvpn::pki::unix_now();
    let ip = vec![Prefix::parse(&lab.hosts[i].vip.to_string()).unwrap()];
    let (key, name) = (lab.hosts[i].key, format!("h{i}"));
    Cert::new_node(ca, key, "lab", &name, ip, vec![], (now - 60, now + 86_400)).unwrap()
}

fn drops(lab: &Lab, i: usize, name: &str) -> f64 {
    let st = lab.status_json(i).unwrap_or_default();
    ringvpn::lab::json_number_after(&st, "\"drops\"", &format!("\"{name}\"")).unwrap_or(0.0)
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
        let signer = if i == 3 { &rogue_ca } else { &ca_id };
        let cert_file = lab.dir.join(format!("h{i}.crt"));
        write_cert(&cert_file, &node_cert(signer, &lab, i));
        // Host 3, the outsider, has its own CA (a daemon refuses to start
        // with a certificate its CA file does not vouch for).
        let trusted = if i == 3 { &rogue_file } else { &ca_file };
        let opts = NodeOptions {
            overlay: true,
            bootstrap: if i == 0 { vec![] } else { vec![0] },
            address: LabAddress::Static,
            extra: vec![
                format!("ca = {}", trusted.display()),
                format!("cert = {}", cert_file.display()),
                format!("revocations = {}", crl(i).display()),
            ],
            ..NodeOptions::default()
        };
        lab.configure(i, &opts).unwrap();
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
    let list = Revocations {
        issuer: NodeKey::default(),
        serial: 1,
        issued_at: ringvpn::pki::unix_now(),
        revoked: vec![lab.hosts[2].key],
        signature: [0; SIG_LEN],
    }
    .sign(&ca_id)
    .unwrap();
    std::fs::write(crl(0), armour(REVOCATIONS_ARMOUR, &list.encode().unwrap())).unwrap();
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
