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
