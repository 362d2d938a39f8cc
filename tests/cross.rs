//! Router and board targets, built with Debian's own Rust (`-Z build-std`)
//! and a cross C toolchain, run under qemu-user: the library's tests and
//! the small simulator tests on the target, the release daemon's stripped
//! size, then a two-host lab where the emulated daemon and a native one
//! link over the overlay, claim their addresses and ping each other over
//! TAP devices. This is where byte order, 32-bit `usize`, the target's
//! ioctl numbers and its libc meet real traffic.
//!
//! Big-endian MIPS (glibc) runs on every `cargo test` (the library's tests
//! and the lab; the simulator tests only when `RINGVPN_CROSS` is set). The others run when
//! `RINGVPN_CROSS` names them (`all`, or triples separated by commas):
//! `packaging/cross.sh` installs what they need and runs them all, writing
//! the table to target/cross/results.md.
//!
//! Needs rustc-web, cargo-web, rust-web-src, qemu-user and each target's
//! gcc and libc (`.ci/run` installs MIPS's; packaging/cross.sh the rest),
//! and for mips-unknown-linux-musl cargo-zigbuild with zig (PyPI), since
//! Debian has no musl for foreign architectures. Root for the lab part.
//! Without them: SKIPPED; under CI=true (MIPS), a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One target: how to build for it and how to run what was built.
struct Target {
    triple: &'static str,
    /// What it stands for, in the table.
    what: &'static str,
    /// The gcc triple (linker, C compiler for ring); None: zig (musl).
    gcc: Option<&'static str>,
    /// qemu-user binary.
    qemu: &'static str,
}

const MIPS: Target = Target {
    triple: "mips-unknown-linux-gnu",
    what: "32-bit big-endian MIPS, glibc",
    gcc: Some("mips-linux-gnu"),
    qemu: "qemu-mips",
};
const MIPS_MUSL: Target = Target {
    triple: "mips-unknown-linux-musl",
    what: "32-bit big-endian MIPS, musl (OpenWrt)",
    gcc: None,
    qemu: "qemu-mips",
};
const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    what: "Raspberry Pi, 32-bit",
    gcc: Some("arm-linux-gnueabihf"),
    qemu: "qemu-arm",
};
const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    what: "Raspberry Pi 3/4/5, 64-bit",
    gcc: Some("aarch64-linux-gnu"),
    qemu: "qemu-aarch64",
};

/// Simulator tests small enough for emulation (seconds natively).
const SIM_TESTS: [&str; 2] = ["vpn_sim", "dns_sim"];

impl Target {
    /// The Debian package a path comes from, for each one missing.
    fn missing(&self) -> Option<String> {
        let mut tools = vec![
            ("/usr/bin/cargo".to_string(), "cargo-web"),
            ("/usr/bin/rustc".to_string(), "rustc-web"),
            (
                "/usr/lib/rustlib/src/rust/library".to_string(),
                "rust-web-src",
            ),
            (format!("/usr/bin/{}", self.qemu), "qemu-user"),
        ];
        if let Some(g) = self.gcc {
            tools.push((format!("/usr/bin/{g}-gcc"), "gcc-<arch>-linux-gnu"));
            tools.push((format!("/usr/{g}/lib"), "libc6-dev-<arch>-cross"));
        }
        let mut absent: Vec<&str> = tools
            .iter()
            .filter(|(p, _)| !Path::new(p).exists())
            .map(|(_, pkg)| *pkg)
            .collect();
        if self.gcc.is_none() && zigbuild().is_none() {
            absent.push(
                "cargo-zigbuild and zig (pip install ziglang cargo-zigbuild; packaging/cross.sh)",
            );
        }
        (!absent.is_empty()).then(|| format!("missing: {}", absent.join(", ")))
    }

    /// Debian's cargo set up for the target (shared/crossbuild.md's
    /// recipe), with its own target directory; cargo-zigbuild for musl.
    fn cargo(&self, args: &[&str]) -> std::process::Output {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
        // cargo-zigbuild takes cargo's subcommands (`build`, `test`) and
        // puts zig in as the C compiler and linker.
        let mut cmd = match self.gcc {
            Some(_) => Command::new("/usr/bin/cargo"),
            None => {
                let zb = zigbuild().expect("checked by missing()");
                path = format!("{}:{path}", zb.parent().unwrap().display());
                Command::new(zb)
            }
        };
        let upper = self.triple.to_uppercase().replace('-', "_");
        let lower = self.triple.replace('-', "_");
        cmd.args(args)
            .current_dir(root)
            .env("PATH", path)
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTDOC", "/usr/bin/rustdoc")
            .env("CARGO", "/usr/bin/cargo")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", Path::new(root).join("target/cross"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
        let runner = match self.gcc {
            Some(g) => {
                cmd.env(format!("CC_{lower}"), format!("{g}-gcc"))
                    .env(format!("AR_{lower}"), format!("{g}-ar"))
                    .env(format!("CARGO_TARGET_{upper}_LINKER"), format!("{g}-gcc"));
                format!("{} -L /usr/{g}", self.qemu)
            }
            None => self.qemu.to_string(),
        };
        cmd.env(format!("CARGO_TARGET_{upper}_RUNNER"), runner);
        cmd.output().expect("run cargo")
    }

    fn daemon(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("target/cross/{}/release/ringvpn", self.triple))
    }

    /// Whether this run should cover the target: MIPS always, the others
    /// when RINGVPN_CROSS names them.
    fn wanted(&self) -> bool {
        if self.triple == MIPS.triple {
            return true;
        }
        std::env::var("RINGVPN_CROSS").is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "all" || t.trim() == self.triple)
        })
    }
}

/// cargo-zigbuild: RINGVPN_ZIGBUILD, or on PATH.
fn zigbuild() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RINGVPN_ZIGBUILD") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("cargo-zigbuild"))
            .find(|p| p.exists())
    })
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Adds up the `test result: ok. N passed` lines.
fn passed(said: &str) -> usize {
    said.lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

/// One row of target/cross/results.md.
fn record(row: &str) {
    use std::io::Write;
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cross/results.md");
    let _ = std::fs::create_dir_all(p.parent().unwrap());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
    {
        let _ = writeln!(f, "{row}");
    }
}

/// Builds and tests `t` on the target, then links its daemon with a
/// native one.
fn cross(t: &Target) {
    if !t.wanted() {
        println!(
            "SKIPPED {}: set RINGVPN_CROSS=all or ={} (packaging/cross.sh does)",
            t.triple, t.triple
        );
        return;
    }
    if let Some(why) = t.missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{}: cross build tools missing under CI: {why}",
            t.triple
        );
        println!("SKIPPED {}: {why}", t.triple);
        return;
    }
    // The library's tests and the small simulator tests, on the target.
    let started = Instant::now();
    let mut args = vec!["test", "--locked", "--lib"];
    // The simulator tests when asked for (packaging/cross.sh): CI's run of
    // MIPS keeps to the library's tests, within its time budget.
    if std::env::var_os("RINGVPN_CROSS").is_some() {
        for s in SIM_TESTS {
            args.extend(["--test", s]);
        }
    }
    args.extend(["--target", t.triple, "-Z", "build-std"]);
    let out = t.cargo(&args);
    let said = text(&out);
    assert!(out.status.success(), "{}: {said}", t.triple);
    let tests = passed(&said);
    eprintln!(
        "{}: {tests} tests passed under {} ({:.0} s with the build)",
        t.triple,
        t.qemu,
        started.elapsed().as_secs_f64()
    );
    // The daemon, as a router would run it.
    let out = t.cargo(&[
        "build",
        "--locked",
        "--release",
        "--bin",
        "ringvpn",
        "--target",
        t.triple,
        "-Z",
        "build-std=std,panic_abort",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bin = t.daemon();
    let size = std::fs::metadata(&bin).unwrap().len();
    eprintln!("{}: stripped daemon {size} bytes", t.triple);
    let Some(mut lab) = common::lab_or_skip(&format!("{} (lab part)", t.triple), 2) else {
        return;
    };
    let mut command = vec![t.qemu.to_string()];
    if let Some(g) = t.gcc {
        command.extend(["-L".to_string(), format!("/usr/{g}")]);
    }
    command.push(bin.to_string_lossy().into_owned());
    lab.hosts[1].command = Some(command);
    common::start_overlay(&mut lab, 2);
    let held = lab
        .wait_vpn_held(&[0, 1], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", lab.log_tail(0), lab.log_tail(1)));
    let (v0, v1) = (lab.hosts[0].vip, lab.hosts[1].vip);
    let there = lab.ping(0, v1, 3, 56, false).unwrap();
    let back = lab.ping(1, v0, 3, 1300, false).unwrap();
    eprintln!(
        "{}: addresses held after {held:?}; native -> emulated: {}/{} (avg {:.2} ms); emulated -> native, 1300 B: {}/{} (avg {:.2} ms)",
        t.triple, there.received, there.sent, there.avg_ms, back.received, back.sent, back.avg_ms
    );
    assert!(there.all_ok() && back.all_ok(), "{}", lab.log_tail(1));
    // TCP both ways: the emulated daemon cuts its TAP's super-frames and
    // joins the native side's segments (the virtio-net header is
    // little-endian even on a big-endian target).
    let up = lab.iperf3(0, 1, 2, false).unwrap();
    let down = lab.iperf3(0, 1, 2, true).unwrap();
    eprintln!(
        "{}: TCP native -> emulated {:.0} Mbit/s, emulated -> native {:.0} Mbit/s",
        t.triple,
        up / 1e6,
        down / 1e6
    );
    assert!(up > 1e6 && down > 1e6, "{up} / {down}\n{}", lab.log_tail(1));
    let json = lab.status_json(1).unwrap();
    assert!(json.contains("\"bad_frame\":0"), "{json}");
    let st = lab.status_text(1).unwrap();
    assert!(st.contains("state      up"), "{st}");
    // The loopback self-test decides the UDP offloads (under qemu-user,
    // whose control messages keep the host's byte order, it turns them
    // off; the link above shows the daemon works either way). The TAP's
    // show the super-frames cut and runs joined by the emulated daemon.
    let offload = st.lines().find(|l| l.starts_with("offload"));
    eprintln!("{}: {}", t.triple, offload.unwrap_or("no offload line"));
    assert!(offload.is_some(), "{st}");
    let buffers = st
        .lines()
        .find(|l| l.starts_with("buffers"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let memory = st
        .lines()
        .find(|l| l.starts_with("memory"))
        .unwrap_or_default()
        .trim()
        .to_string();
    // What the daemon would hold on the device: the binary's pages it
    // touched (qemu maps the target's file; its own memory is apart) and
    // the heap it uses — the pool's slab is reserved on the heap but
    // touched only as deep as the pool has been.
    let text_kib = lab.mapped_rss_kib(1, &bin).unwrap_or(0);
    let json = lab.status_json(1).unwrap();
    let num = |k: &str| -> u64 {
        let at = json.find(&format!("\"{k}\":")).map(|i| i + k.len() + 3);
        at.and_then(|i| {
            json[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
    };
    let slab = num("pool_capacity") * ringvpn::buf::SLOT_LEN as u64;
    let heap_touched_kib = (num("heap_bytes") + num("pool_bytes")).saturating_sub(slab) / 1024;
    eprintln!(
        "{}: {text_kib} KiB of the binary resident, heap {heap_touched_kib} KiB touched ({memory})",
        t.triple
    );
    record(&format!(
        "| {} | {} | {size} | {tests} passed | linked, ping {}/{} and {}/{} (1300 B) | {text_kib} KiB | {heap_touched_kib} KiB | {memory}; {buffers} |",
        t.triple, t.what, there.received, there.sent, back.received, back.sent
    ));
}

#[test]
fn mips_big_endian_passes_its_tests_and_links_with_a_native_node() {
    cross(&MIPS);
}

#[test]
fn mips_musl_openwrt_passes_its_tests_and_links_with_a_native_node() {
    cross(&MIPS_MUSL);
}

#[test]
fn armv7_passes_its_tests_and_links_with_a_native_node() {
    cross(&ARMV7);
}

#[test]
fn aarch64_passes_its_tests_and_links_with_a_native_node() {
    cross(&AARCH64);
}
