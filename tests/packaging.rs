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

/// A tool the test needs: present, or skipped (a failure under CI=true).
fn have(tool: &str, package: &str, test: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() || Command::new(tool).output().is_ok() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{tool} is missing (apt-get install {package})");
    }
    eprintln!("SKIPPED {test}: no {tool} (apt-get install {package})");
    false
}

/// The `[node]` keys the config parser takes, read from its source.
fn config_keys() -> Vec<String> {
    let src = include_str!("../src/config/parse.rs");
    let body = &src[src.find("fn node(").unwrap()..src.find("fn peer(").unwrap()];
    let mut keys = Vec::new();
    for line in body.lines() {
        // The arms of `match k`, not of the matches on values inside them.
        let Some(t) = line
            .strip_prefix("            \"")
            .map(|t| &line[line.len() - t.len() - 1..])
        else {
            continue;
        };
        if !t.contains("=>") {
            continue;
        }
        for k in t[..t.find("=>").unwrap()].split('|') {
            let k = k.trim().trim_matches('"');
            if !k.is_empty() && !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
    }
    keys
}

/// The man pages render with scdoc into pages `man` reads, ringvpn.conf(5)
/// names every key the parser takes, and ringvpn(8) every command of
/// `ringvpn --help`.
#[test]
fn the_man_pages_render_and_cover_every_key_and_command() {
    let conf = include_str!("../docs/man/ringvpn.conf.5.scd");
    let keys = config_keys();
    assert!(
        keys.len() > 25 && keys.iter().any(|k| k == "name"),
        "{keys:?}"
    );
    for k in &keys {
        assert!(
            conf.contains(&format!("*{k}* =")),
            "ringvpn.conf(5) does not describe `{k}`"
        );
    }
    let page = include_str!("../docs/man/ringvpn.8.scd");
    let help = Command::new(env!("CARGO_BIN_EXE_ringvpn"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for line in help.lines().filter(|l| l.starts_with("  ringvpn ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).take(2).collect();
        let cmd = match words.as_slice() {
            ["--help", ..] => continue,
            [c, sub, ..] if ["net", "ca", "cert", "lab"].contains(c) => {
                format!("*{c} {}", sub.split('|').next().unwrap())
            }
            [c, ..] => format!("*{c}"),
            _ => continue,
        };
        assert!(
            page.contains(&cmd),
            "ringvpn(8) does not describe {cmd:?}: {line}"
        );
    }
    if !have("scdoc", "scdoc", "the_man_pages_render") {
        return;
    }
    for (src, title) in [
        (conf, ".TH \"ringvpn.conf\" \"5\""),
        (page, ".TH \"ringvpn\" \"8\""),
    ] {
        let mut child = Command::new("scdoc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(src.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let troff = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(troff.contains(title), "{}", &troff[..troff.len().min(300)]);
    }
}

/// The bash completion parses, and completes commands, subcommands and
/// options.
#[test]
fn bash_completion_completes_commands_and_options() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/completions/ringvpn.bash"
    );
    let complete = |line: &str| -> String {
        let words: Vec<&str> = line.split(' ').collect();
        let words_arr = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let prog = format!(
            "source {script}; COMP_WORDS=({words_arr}); COMP_CWORD={}; _ringvpn; echo \"${{COMPREPLY[*]}}\"",
            words.len() - 1
        );
        let out = Command::new("bash").args(["-c", &prog]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("ringvpn ce"), "cert");
    assert_eq!(complete("ringvpn cert v"), "verify");
    assert_eq!(complete("ringvpn cert verify --c"), "--ca --crl");
    assert_eq!(complete("ringvpn net "), "stats check find crawl map");
    assert!(complete("ringvpn status -").contains("--json"));
    assert_eq!(complete("ringvpn pi"), "ping");
}
