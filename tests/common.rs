//! Shared by the integration tests (each test file includes it as a module).
#![allow(dead_code)]

use ringvpn::crypto::cert::{armour, Cert, Prefix, CERT_ARMOUR};
use ringvpn::crypto::{Identity, Seed};
use ringvpn::lab::{Lab, LabAddress, NodeOptions};
use std::path::Path;

/// A lab with `n` hosts, or `None` (with the reason printed) when this
/// machine cannot run one. Under CI=true a missing lab is a failure.
pub fn lab_or_skip(test: &str, n: usize) -> Option<Lab> {
    if let Some(why) = ringvpn::lab::unavailable() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: cannot run under CI: {why}");
        }
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    Some(Lab::new(Path::new(env!("CARGO_BIN_EXE_ringvpn")), n).expect("lab setup"))
}

/// A fresh CA for network "lab", valid for `days`.
pub fn ca(name: &str, days: u64) -> (Identity, Cert) {
    let id = Identity::from_seed(&Seed::generate());
    let now = ringvpn::pki::unix_now();
    let cert = Cert::new_ca(&id, "lab", name, (now - 60, now + days * 86_400)).unwrap();
    (id, cert)
}

/// Writes a certificate file (armoured).
pub fn write_cert(path: &Path, c: &Cert) {
    std::fs::write(path, armour(CERT_ARMOUR, &c.encode().unwrap())).unwrap();
}

/// Host `i`'s certificate from `ca`: its key, its virtual address.
pub fn node_cert(ca: &Identity, lab: &Lab, i: usize) -> Cert {
    let now = ringvpn::pki::unix_now();
    let ip = vec![Prefix::parse(&lab.hosts[i].vip.to_string()).unwrap()];
    let (key, name) = (lab.hosts[i].key, format!("h{i}"));
    Cert::new_node(ca, key, "lab", &name, ip, vec![], (now - 60, now + 86_400)).unwrap()
}

/// Host `i`'s drop counter `name`.
pub fn drops(lab: &Lab, i: usize, name: &str) -> f64 {
    let st = lab.status_json(i).unwrap_or_default();
    ringvpn::lab::json_number_after(&st, "\"drops\"", &format!("\"{name}\"")).unwrap_or(0.0)
}

/// Host `i` as a certificate-mode member: signed by `signer`, trusting the
/// CA file `trusted`, bootstrapping from host 0 (host 0 from nobody), with
/// its certificate's static address.
pub fn configure_member(lab: &Lab, i: usize, signer: &Identity, trusted: &Path, extra: &[String]) {
    let cert_file = lab.dir.join(format!("h{i}.crt"));
    write_cert(&cert_file, &node_cert(signer, lab, i));
    let mut lines = vec![
        format!("ca = {}", trusted.display()),
        format!("cert = {}", cert_file.display()),
    ];
    lines.extend_from_slice(extra);
    let opts = NodeOptions {
        overlay: true,
        bootstrap: if i == 0 { vec![] } else { vec![0] },
        address: LabAddress::Static,
        extra: lines,
        ..NodeOptions::default()
    };
    lab.configure(i, &opts).unwrap();
}

/// What a certificate-mode lab member is signed for, and its extra config.
#[derive(Default)]
pub struct Member<'a> {
    pub groups: &'a [&'a str],
    /// Prefixes its certificate lets it route.
    pub routes: &'a [&'a str],
    /// Lines at the end of `[node]` (they may open `[firewall]`).
    pub extra: &'a [&'a str],
}

/// Host `i` as a certificate-mode member (its certificate from `ca`, for
/// its virtual address, with `m`'s groups and routes; trusting
/// `ca_file`), bootstrapping from host 0 (host 0 from host 1).
pub fn configure_signed(lab: &Lab, ca: &Identity, ca_file: &Path, i: usize, m: Member) {
    let now = ringvpn::pki::unix_now();
    let ip = vec![Prefix::parse(&lab.hosts[i].vip.to_string()).unwrap()];
    let groups = m.groups.iter().map(|g| g.to_string()).collect();
    let (key, name) = (lab.hosts[i].key, format!("h{i}"));
    let mut cert =
        Cert::new_node(ca, key, "lab", &name, ip, groups, (now - 60, now + 86_400)).unwrap();
    if !m.routes.is_empty() {
        let r = m.routes.iter().map(|r| Prefix::parse(r).unwrap()).collect();
        cert = cert.with_routes(r, ca).unwrap();
    }
    let cert_file = lab.dir.join(format!("h{i}.crt"));
    write_cert(&cert_file, &cert);
    let mut lines = vec![
        format!("ca = {}", ca_file.display()),
        format!("cert = {}", cert_file.display()),
    ];
    lines.extend(m.extra.iter().map(|s| s.to_string()));
    let opts = NodeOptions {
        overlay: true,
        bootstrap: vec![if i == 0 { 1 } else { 0 }],
        address: LabAddress::Static,
        extra: lines,
        ..NodeOptions::default()
    };
    lab.configure(i, &opts).unwrap();
}

/// Starts hosts 0..n as overlay members, each bootstrapping from host 0.
pub fn start_overlay(lab: &mut Lab, n: usize) {
    for i in 0..n {
        let opts = NodeOptions {
            overlay: true,
            bootstrap: if i == 0 { vec![] } else { vec![0] },
            ..NodeOptions::default()
        };
        lab.configure(i, &opts).unwrap();
        lab.start(i).unwrap();
    }
}
