//! The files operators install: the systemd unit verifies cleanly with
//! `systemd-analyze verify` (any complaint, even one systemd only warns
//! about, is a failure), with its ExecStart pointing at the built binary.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies_and_reloads_by_sighup() {
    let unit = include_str!("../packaging/systemd/ringvpn@.service");
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("ExecStart=/usr/bin/ringvpn run -c /etc/ringvpn/%i.conf"));
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("systemd-analyze is missing (apt-get install systemd)");
        }
        eprintln!("SKIPPED the_systemd_unit_verifies: no systemd-analyze");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ringvpn-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringvpn@test.service");
    let unit = unit.replace("/usr/bin/ringvpn", env!("CARGO_BIN_EXE_ringvpn"));
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
