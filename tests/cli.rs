//! The command line: key handling, config errors and exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

fn ringvpn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringvpn"))
        .args(args)
        .output()
        .unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringvpn-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn genkey_writes_a_private_file_and_pubkey_agrees() {
    let d = tmpdir("genkey");
    let key = d.join("node.key");
    let out = ringvpn(&["genkey", key.to_str().unwrap()]);
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap();
    assert_eq!(public.trim().len(), 44, "base64 of 32 bytes");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = ringvpn(&["pubkey", key.to_str().unwrap()]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), public);
    // Never overwrites an existing key.
    assert_eq!(
        ringvpn(&["genkey", key.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // Refuses a key others can read, with a clear message.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ringvpn(&["pubkey", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn config_errors_name_file_and_line_and_exit_2() {
    let d = tmpdir("config");
    let conf = d.join("bad.conf");
    std::fs::write(&conf, "[node]\nkey = k\nlisten = nowhere\n").unwrap();
    let out = ringvpn(&["run", "-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: invalid listen", conf.display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    let out = ringvpn(&["run", "-c", d.join("missing.conf").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf: cannot read"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn usage_errors_exit_2_and_help_succeeds() {
    assert!(ringvpn(&["--help"]).status.success());
    assert!(String::from_utf8(ringvpn(&["--help"]).stdout)
        .unwrap()
        .contains("ringvpn run -c FILE"));
    assert_eq!(ringvpn(&[]).status.code(), Some(2));
    assert_eq!(ringvpn(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(ringvpn(&["run"]).status.code(), Some(2));
    assert_eq!(
        ringvpn(&["lab", "demo", "--nodes", "99"]).status.code(),
        Some(2)
    );
}

#[test]
fn status_without_a_daemon_is_a_clear_error() {
    let out = ringvpn(&["status", "-s", "/nonexistent/ringvpn.sock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"));
}

#[test]
fn ca_init_cert_sign_show_and_revoke() {
    let d = tmpdir("certs");
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let out = ringvpn(&[
        "ca",
        "init",
        "--network",
        "office",
        &p("ca.key"),
        &p("ca.crt"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(d.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(d.join("ca.crt"))
        .unwrap()
        .starts_with("-----BEGIN RINGVPN CERTIFICATE-----"));
    let node = String::from_utf8(ringvpn(&["genkey", &p("node.key")]).stdout).unwrap();
    let node = node.trim();
    let sign = |out: &str, ip: &str| {
        ringvpn(&[
            "cert",
            "sign",
            "--ca-key",
            &p("ca.key"),
            "--ca",
            &p("ca.crt"),
            "--pubkey",
            node,
            "--name",
            "laptop",
            "--ip",
            ip,
            "--group",
            "staff",
            "--days",
            "30",
            &p(out),
        ])
    };
    let out = sign("node.crt", "100.64.0.10");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = ringvpn(&["cert", "show", &p("node.crt")]);
    let text = String::from_utf8(show.stdout).unwrap();
    assert!(
        text.contains("node certificate") && text.contains("100.64.0.10/32"),
        "{text}"
    );
    assert!(
        text.contains("network     office") && text.contains("(valid now)"),
        "{text}"
    );
    let json =
        String::from_utf8(ringvpn(&["cert", "show", "--json", &p("node.crt")]).stdout).unwrap();
    assert!(
        json.contains("\"kind\":\"node\"") && json.contains(&format!("\"key\":\"{node}\"")),
        "{json}"
    );
    assert!(
        json.contains("\"addresses\":[\"100.64.0.10/32\"]")
            && json.contains("\"groups\":[\"staff\"]")
    );
    assert!(json.contains("\"routes\":[]"), "{json}");
    // A gateway's certificate: the prefixes it may route, as the issue's
    // example writes them.
    let gateway = |out: &str, routes: &str| {
        ringvpn(&[
            "cert",
            "sign",
            "--ca-key",
            &p("ca.key"),
            "--ca",
            &p("ca.crt"),
            "--pubkey",
            node,
            "--name",
            "gw",
            "--ip",
            "100.64.0.11",
            "--routes",
            routes,
            &p(out),
        ])
    };
    let out = gateway("gw.crt", "0.0.0.0/0,::/0,198.19.5.0/24");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(ringvpn(&["cert", "show", &p("gw.crt")]).stdout).unwrap();
    assert!(
        text.contains("routes      0.0.0.0/0, ::/0, 198.19.5.0/24"),
        "{text}"
    );
    let json =
        String::from_utf8(ringvpn(&["cert", "show", "--json", &p("gw.crt")]).stdout).unwrap();
    assert!(
        json.contains("\"routes\":[\"0.0.0.0/0\",\"::/0\",\"198.19.5.0/24\"]"),
        "{json}"
    );
    // A host address in a route, or no length: a clear error naming it.
    for bad in ["198.19.5.7/24", "198.19.5.0"] {
        let out = gateway("bad.crt", bad);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(bad));
    }
    // Bad input: a clear error, exit 2.
    assert_eq!(sign("bad.crt", "100.64.0.0/40").status.code(), Some(2));
    std::fs::write(
        d.join("junk.crt"),
        "-----BEGIN RINGVPN CERTIFICATE-----\nAAAA\n-----END RINGVPN CERTIFICATE-----\n",
    )
    .unwrap();
    let out = ringvpn(&["cert", "show", &p("junk.crt")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed certificate"));
    // Revocation lists grow with a higher serial each time.
    let list = p("revoked.crl");
    let revoke = |key: &str| {
        let out = ringvpn(&[
            "cert",
            "revoke",
            "--ca-key",
            &p("ca.key"),
            "--list",
            &list,
            key,
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(revoke(node).contains("serial 1, 1 revoked"));
    let other = String::from_utf8(ringvpn(&["genkey", &p("other.key")]).stdout).unwrap();
    assert!(revoke(other.trim()).contains("serial 2, 2 revoked"));
    // `cert show` reads a list too; `cert verify` checks as members do.
    let text = String::from_utf8(ringvpn(&["cert", "show", &list]).stdout).unwrap();
    assert!(
        text.contains("revocation list") && text.contains("serial      2") && text.contains(node),
        "{text}"
    );
    let json = String::from_utf8(ringvpn(&["cert", "show", "--json", &list]).stdout).unwrap();
    assert!(
        json.contains("\"kind\":\"revocations\",\"serial\":2"),
        "{json}"
    );
    let verify = |crl: Option<&str>| {
        let ca = p("ca.crt");
        let mut a = vec!["cert", "verify", "--ca", &ca];
        if let Some(c) = crl {
            a.extend(["--crl", c]);
        }
        let gw = p("gw.crt");
        a.push(&gw);
        let out = ringvpn(&a);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = verify(None);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("valid: gw in network office, signed by"),
        "{text}"
    );
    let (code, text) = verify(Some(&list));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("gw.crt: certificate revoked"), "{text}");
    // A certificate from another CA.
    let other_ca = ringvpn(&[
        "ca",
        "init",
        "--network",
        "office",
        &p("ca2.key"),
        &p("ca2.crt"),
    ]);
    assert!(other_ca.status.success());
    let out = ringvpn(&["cert", "verify", "--ca", &p("ca2.crt"), &p("node.crt")]);
    assert_eq!(out.status.code(), Some(1));
    // Fingerprints are shown and stable.
    let fp = |f: &str| {
        let text = String::from_utf8(ringvpn(&["cert", "show", &p(f)]).stdout).unwrap();
        text.lines()
            .find(|l| l.contains("fingerprint"))
            .unwrap()
            .to_string()
    };
    assert_eq!(fp("node.crt"), fp("node.crt"));
    assert_ne!(fp("node.crt"), fp("gw.crt"));
    assert_eq!(fp("node.crt").split_whitespace().nth(1).unwrap().len(), 64);
    // Signing what no member would take: warned about.
    let out = ringvpn(&[
        "cert",
        "sign",
        "--ca-key",
        &p("ca.key"),
        "--ca",
        &p("ca.crt"),
        "--pubkey",
        node,
        "--name",
        "old",
        "--ip",
        "10.1.2.3",
        "--not-before",
        "1000",
        "--days",
        "1",
        &p("old.crt"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: the certificate is already expired"),
        "{err}"
    );
    assert!(
        err.contains("warning: 10.1.2.3/32 is outside the default virtual subnet"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `ringvpn pubkey -` with `input` on stdin.
fn pubkey_from_stdin(input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringvpn"))
        .args(["pubkey", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_key_through_pipes_as_wg_does() {
    let out = ringvpn(&["genkey", "-"]);
    assert!(out.status.success());
    let private = String::from_utf8(out.stdout).unwrap();
    assert_eq!(private.trim().len(), 44);
    assert!(!std::path::Path::new("-").exists(), "no file named -");
    let out = pubkey_from_stdin(private.as_bytes());
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap();
    // The same public key as through a file.
    let d = tmpdir("pipe");
    let key = d.join("k");
    std::fs::write(&key, &private).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let from_file = ringvpn(&["pubkey", key.to_str().unwrap()]);
    assert_eq!(String::from_utf8(from_file.stdout).unwrap(), public);
    let out = pubkey_from_stdin(b"not a key");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin: not a ringvpn private key"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_key_given_twice_and_a_bad_key_file_exit_2_naming_the_file() {
    let d = tmpdir("twice");
    let conf = d.join("twice.conf");
    std::fs::write(&conf, "[node]\nkey = k\nmtu = 1400\n# again\nmtu = 1300\n").unwrap();
    let out = ringvpn(&["run", "-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:5: mtu given twice (first on line 3)",
            conf.display()
        )),
        "{err}"
    );
    // A key file others can read: refused before anything is opened.
    let key = d.join("open.key");
    std::fs::write(&key, "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&conf, format!("[node]\nkey = {}\n", key.display())).unwrap();
    let out = ringvpn(&["run", "-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: private key", key.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "run", "check", "genkey", "status", "net", "reload", "metrics", "ca", "cert",
    ] {
        let out = ringvpn(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!("ringvpn {cmd}")), "{cmd}: {text}");
    }
}

#[test]
fn certificate_mistakes_say_what_is_wrong() {
    let d = tmpdir("certmistakes");
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    // A network name the config could not carry.
    let out = ringvpn(&[
        "ca",
        "init",
        "--network",
        "of#fice",
        &p("x.key"),
        &p("x.crt"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("network \"of#fice\": use"));
    assert!(!d.join("x.key").exists());
    for (net, key, crt) in [
        ("office", "ca.key", "ca.crt"),
        ("home", "ca2.key", "ca2.crt"),
    ] {
        assert!(ringvpn(&["ca", "init", "--network", net, &p(key), &p(crt)])
            .status
            .success());
    }
    let node = String::from_utf8(ringvpn(&["genkey", &p("node.key")]).stdout).unwrap();
    let signed = ringvpn(&[
        "cert",
        "sign",
        "--ca-key",
        &p("ca2.key"),
        "--ca",
        &p("ca2.crt"),
        "--pubkey",
        node.trim(),
        "--name",
        "n1",
        "--ip",
        "100.64.0.5",
        &p("home.crt"),
    ]);
    assert!(signed.status.success());
    let run = |ca: &str, cert: &str| {
        let conf = d.join("c.conf");
        std::fs::write(
            &conf,
            format!(
                "[node]\nkey = node.key\naddress = 100.64.0.5/10\noverlay = on\nnetwork = office\nca = {ca}\ncert = {cert}\ncontrol = {}\n",
                p("s.sock")
            ),
        )
        .unwrap();
        let out = ringvpn(&["run", "-c", conf.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The CA's certificate where the node's goes.
    let err = run("ca.crt", "ca.crt");
    assert!(err.contains("ca.crt: this is a CA certificate"), "{err}");
    // A certificate for another network: both named.
    let err = run("ca2.crt", "home.crt");
    assert!(
        err.contains("the certificate is for network \"home\", the config says `network = office`"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `ring-ping` takes ring addresses; a name points at `ringvpn ping`.
#[test]
fn ring_ping_with_a_name_points_at_ping() {
    let out = ringvpn(&["ring-ping", "-s", "/nonexistent", "alice"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a ring address is 32 hex digits") && err.contains("ringvpn ping alice"),
        "{err}"
    );
}

/// The demo names a missing tool instead of printing empty rows.
#[test]
fn the_demo_names_a_missing_ping() {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let (Some(ip), true) = (ip, root && std::path::Path::new("/dev/net/tun").exists()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with iproute2 and /dev/net/tun"
        );
        println!("SKIPPED the_demo_names_a_missing_ping: needs root, /dev/net/tun and ip");
        return;
    };
    let d = tmpdir("nopath");
    std::os::unix::fs::symlink(ip, d.join("ip")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringvpn"))
        .args(["lab", "demo"])
        .env("PATH", &d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`ping` is not installed (apt-get install iputils-ping)"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn check_accepts_a_good_config_and_names_the_mistake_in_a_bad_one() {
    let d = tmpdir("check");
    let key = d.join("node.key");
    assert!(ringvpn(&["genkey", key.to_str().unwrap()]).status.success());
    let good = d.join("good.conf");
    std::fs::write(
        &good,
        format!(
            "[node]\nkey = {}\nlisten = 0.0.0.0:5140\ntap = ringvpn0\naddress = 100.64.0.10/10\n",
            key.display()
        ),
    )
    .unwrap();
    let out = ringvpn(&["check", "-c", good.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok\n", good.display())
    );
    // A wrong line, and a key others can read: exit 2, the file named.
    let bad = d.join("bad.conf");
    std::fs::write(&bad, "[node]\nkey = node.key\nmtu = lots\n").unwrap();
    let out = ringvpn(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.conf:3: invalid mtu"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ringvpn(&["check", "-c", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::remove_dir_all(&d).unwrap();
}

/// The simulator's stand-in crypto (docs/SIMULATOR.md) is never in the
/// daemon: its label is in the lab binary and not in `ringvpn`.
#[test]
fn the_daemon_carries_no_stand_in_crypto() {
    let label = ringvpn::sim::cheap_crypto::label();
    let has = |path: &str| {
        let bin = std::fs::read(path).unwrap();
        bin.windows(label.len()).any(|w| w == label)
    };
    assert!(
        has(env!("CARGO_BIN_EXE_ringvpn-lab")),
        "the test finds it where it is"
    );
    assert!(!has(env!("CARGO_BIN_EXE_ringvpn")));
}
