//! The files operators install: the systemd unit verifies cleanly with
//! `systemd-analyze verify` (any complaint, even one systemd only warns
//! about, is a failure), with its ExecStart pointing at the built binary.

use std::path::Path;
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

/// The OpenWrt package's scripts, run by busybox ash (OpenWrt's shell,
/// Debian's busybox) with busybox's applets first on PATH and a stand-in
/// for /lib/functions.sh and procd (tests/openwrt/functions.sh, which
/// records procd calls): UCI sections become ringvpn.conf files the real
/// parser and `ringvpn check` accept, one procd instance per enabled
/// section, reload → SIGHUP, a broken section is logged and not started,
/// and the uci-defaults script adds the fw4 zone and rule once.
struct OpenWrt {
    dir: std::path::PathBuf,
    busybox: String,
}

impl OpenWrt {
    fn new(test: &str) -> Option<OpenWrt> {
        if !have("busybox", "busybox", test) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("rv-openwrt-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "etc/config", "root/lib", "var"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let ok = Command::new("busybox")
            .args(["--install", "-s"])
            .arg(dir.join("bin"))
            .status()
            .unwrap();
        assert!(ok.success(), "busybox --install");
        // `uci` answers `-q get` from a file and records batches.
        std::fs::write(
            dir.join("bin/uci"),
            format!(
                "#!{bin}/ash\nlog={d}/uci.log\necho \"uci $*\" >>$log\nif [ \"$1 $2\" = \"-q get\" ]; then cat {d}/uci.get 2>/dev/null; exit 0; fi\nif [ \"$2\" = batch ]; then cat >>$log; fi\n",
                bin = dir.join("bin").display(),
                d = dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("bin/uci"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openwrt/functions.sh");
        std::fs::copy(&shim, dir.join("root/lib/functions.sh")).unwrap();
        let which = Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap();
        let busybox = String::from_utf8_lossy(&which.stdout).trim().to_string();
        Some(OpenWrt { dir, busybox })
    }

    fn p(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// Runs `script` in busybox ash after loading the shim and the init
    /// script; returns (success, output).
    fn ash(&self, script: &str) -> (bool, String) {
        let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/openwrt/ringvpn/files");
        let full = format!(
            ". {shim}\n. {init}\nPROG={prog}\nCONF_DIR={var}\n{script}\n",
            shim = self.p("root/lib/functions.sh"),
            init = pkg.join("ringvpn.init").display(),
            prog = env!("CARGO_BIN_EXE_ringvpn"),
            var = self.p("var"),
        );
        let out = Command::new(&self.busybox)
            .args(["ash", "-c", &full])
            .env_clear()
            .env("PATH", self.p("bin"))
            .env("UCI_CONFIG_DIR", self.p("etc/config"))
            .env("PROCD_LOG", self.p("procd.log"))
            .env("IPKG_INSTROOT", self.p("root"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said)
    }

    fn procd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("procd.log")).unwrap_or_default()
    }

    fn uci(&self, text: &str) {
        std::fs::write(self.dir.join("etc/config/ringvpn"), text).unwrap();
        let _ = std::fs::remove_file(self.dir.join("procd.log"));
    }
}

impl Drop for OpenWrt {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openwrt_uci(w: &OpenWrt, log: &str, address: &str) -> String {
    format!(
        "config ringvpn 'home'
\toption enabled '1'
\toption key '{key}'
\toption listen '0.0.0.0:5140'
\toption tap 'ringvpn0'
\toption address '{address}'
\toption overlay '1'
\toption control '{sock}'
\toption state_dir '{state}'
\toption log '{log}'
\tlist routes '198.19.5.0/24'
\tlist routes '198.19.6.0/24'
\tlist bootstrap '198.18.0.10:5140'
\tlist bootstrap '198.18.0.11:5140'
\tlist inbound 'tcp 22 100.64.0.0/10'

config ringvpn 'lab'
\toption enabled '0'
\toption tap 'ringvpn1'

config peer
\toption instance 'home'
\toption name 'office'
\toption public_key 'x3UIxZbQtUVmJ8nnobfZSYHqW2sw0hKqDRAvxYRB3Sc='
\toption endpoint '198.18.0.2:5140'
",
        key = w.p("etc/ringvpn/home.key"),
        sock = w.p("home.sock"),
        state = w.p("state"),
    )
}

#[test]
fn openwrt_init_script_writes_configs_runs_one_instance_per_section_and_reloads_with_sighup() {
    let Some(w) = OpenWrt::new("init") else {
        return;
    };
    w.uci(&openwrt_uci(&w, "info", "100.64.0.10/10"));
    let (ok, said) = w.ash("start_service");
    assert!(ok, "{said}");
    // The key was made on first start, owner-only.
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(w.dir.join("etc/ringvpn/home.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o077, 0);
    let conf = std::fs::read_to_string(w.dir.join("var/home.conf")).unwrap();
    let expected = format!(
        "# Written by /etc/init.d/ringvpn from /etc/config/ringvpn (home): edit that.
[node]
key = {key}
listen = 0.0.0.0:5140
tap = ringvpn0
address = 100.64.0.10/10
overlay = on
control = {sock}
state-dir = {state}
log = info
routes = 198.19.5.0/24, 198.19.6.0/24
bootstrap = 198.18.0.10:5140
bootstrap = 198.18.0.11:5140

[firewall]
inbound = tcp 22 100.64.0.0/10

[peer]
name = office
public-key = x3UIxZbQtUVmJ8nnobfZSYHqW2sw0hKqDRAvxYRB3Sc=
endpoint = 198.18.0.2:5140
",
        key = w.p("etc/ringvpn/home.key"),
        sock = w.p("home.sock"),
        state = w.p("state"),
    );
    assert_eq!(conf, expected);
    // What ringvpn itself makes of it.
    let cfg = ringvpn::config::parse(&w.dir.join("var/home.conf"), &conf).unwrap();
    assert_eq!(cfg.bootstrap.len(), 2);
    assert_eq!(cfg.peers.len(), 1);
    assert!(cfg.overlay);
    let mode = std::fs::metadata(w.dir.join("var/home.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the config names key files: owner-only");
    // One procd instance, for the enabled section only.
    let log = w.procd_log();
    let expected_log = format!(
        "logger -t ringvpn home: new key {key}\nopen_instance home\nset_param command {prog} run -c {conf}\nset_param respawn 3600 5 5\nset_param stderr 1\nclose_instance\n",
        key = w.p("etc/ringvpn/home.key"),
        prog = env!("CARGO_BIN_EXE_ringvpn"),
        conf = w.p("var/home.conf"),
    );
    assert_eq!(log, expected_log);
    assert!(!w.dir.join("var/lab.conf").exists());

    // reload: the file again, SIGHUP to the running instance, and `start`
    // for sections that came or went.
    w.uci(&openwrt_uci(&w, "debug", "100.64.0.10/10"));
    let (ok, said) = w.ash("reload_service");
    assert!(ok, "{said}");
    let conf = std::fs::read_to_string(w.dir.join("var/home.conf")).unwrap();
    assert!(conf.contains("\nlog = debug\n"), "{conf}");
    let log = w.procd_log();
    assert!(
        log.starts_with("send_signal ringvpn home HUP\nstart\nopen_instance home\n"),
        "{log}"
    );

    // A mistake is logged with ringvpn's own words; the instance is not
    // handed to procd (which would respawn it in a loop).
    w.uci(&openwrt_uci(&w, "info", "100.64.0.10/40"));
    let (ok, said) = w.ash("start_service");
    assert!(ok, "{said}");
    let log = w.procd_log();
    assert!(
        log.starts_with("logger -t ringvpn home: not started: ")
            && log.contains("home.conf:")
            && !log.contains("open_instance"),
        "{log}"
    );

    // service_triggers: a UCI commit of `ringvpn` reloads.
    let (ok, said) = w.ash("service_triggers");
    assert!(
        ok && w.procd_log().contains("reload_trigger ringvpn"),
        "{said}"
    );
}

#[test]
fn openwrt_uci_options_cover_every_config_key() {
    let init = include_str!("../packaging/openwrt/ringvpn/files/ringvpn.init");
    let list = |name: &str| -> Vec<String> {
        let line = init
            .lines()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap();
        line[name.len() + 1..]
            .trim_matches('"')
            .split_whitespace()
            .map(|o| o.replace('_', "-"))
            .collect()
    };
    let mut mapped = list("RINGVPN_OPTIONS");
    mapped.extend(list("RINGVPN_LINES"));
    for k in config_keys() {
        assert!(
            mapped.contains(&k),
            "`{k}` in ringvpn.conf has no UCI option in ringvpn.init"
        );
    }
}

#[test]
fn openwrt_uci_defaults_add_the_firewall_zone_and_rule_once() {
    let Some(w) = OpenWrt::new("uci-defaults") else {
        return;
    };
    w.uci("config ringvpn 'home'\n\toption tap 'rv-home'\n\toption listen '[::]:5999'\n");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/openwrt/ringvpn/files/ringvpn.uci-defaults");
    let (ok, said) = w.ash(&format!(". {}", script.display()));
    assert!(ok, "{said}");
    let log = std::fs::read_to_string(w.dir.join("uci.log")).unwrap();
    for want in [
        "set firewall.ringvpn=zone",
        "add_list firewall.ringvpn.device='rv-home'",
        "set firewall.ringvpn.input='ACCEPT'",
        "set firewall.ringvpn_wan.src='wan'",
        "set firewall.ringvpn_wan.proto='udp'",
        "set firewall.ringvpn_wan.dest_port='5999'",
        "commit firewall",
    ] {
        assert!(log.contains(want), "missing {want:?}:\n{log}");
    }
    // Installed again over a firewall that has the zone: left alone.
    std::fs::remove_file(w.dir.join("uci.log")).unwrap();
    std::fs::write(w.dir.join("uci.get"), "zone\n").unwrap();
    let (ok, said) = w.ash(&format!(". {}", script.display()));
    assert!(ok, "{said}");
    let log = std::fs::read_to_string(w.dir.join("uci.log")).unwrap();
    assert!(!log.contains("batch"), "{log}");
}
