//! Big-endian 32-bit MIPS — most OpenWrt routers — built with Debian's own
//! Rust (`-Z build-std`) and Debian's cross gcc, run under qemu-user: the
//! library's tests on the target, then a two-host lab where the emulated
//! MIPS daemon and a native one link, claim their addresses and ping each
//! other over TAP devices. This is where byte order, 32-bit `usize` and the
//! target's ioctl numbers meet real traffic.
//!
//! Needs rustc-web, cargo-web, rust-web-src, gcc-mips-linux-gnu,
//! libc6-dev-mips-cross and qemu-user (`.ci/run` installs them), and root
//! for the lab part. Without them: SKIPPED; under CI=true, a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TARGET: &str = "mips-unknown-linux-gnu";

/// What is missing for a MIPS build under emulation, if anything.
fn missing() -> Option<String> {
    let tools = [
        ("/usr/bin/cargo", "cargo-web"),
        ("/usr/bin/rustc", "rustc-web"),
        ("/usr/lib/rustlib/src/rust/library", "rust-web-src"),
        ("/usr/bin/mips-linux-gnu-gcc", "gcc-mips-linux-gnu"),
        ("/usr/mips-linux-gnu/lib", "libc6-dev-mips-cross"),
        ("/usr/bin/qemu-mips", "qemu-user"),
    ];
    let absent: Vec<&str> = tools
        .iter()
        .filter(|(p, _)| !Path::new(p).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    (!absent.is_empty()).then(|| format!("apt-get install {}", absent.join(" ")))
}

/// Debian's cargo, set up for the target (the recipe in README's
/// Portability section), with its own target directory.
fn cross_cargo(args: &[&str]) -> std::process::Output {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    Command::new("/usr/bin/cargo")
        .args(args)
        .current_dir(root)
        .env("PATH", path)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTDOC", "/usr/bin/rustdoc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", Path::new(root).join("target/cross"))
        .env("CC_mips_unknown_linux_gnu", "mips-linux-gnu-gcc")
        .env("AR_mips_unknown_linux_gnu", "mips-linux-gnu-ar")
        .env(
            "CARGO_TARGET_MIPS_UNKNOWN_LINUX_GNU_LINKER",
            "mips-linux-gnu-gcc",
        )
        .env(
            "CARGO_TARGET_MIPS_UNKNOWN_LINUX_GNU_RUNNER",
            "qemu-mips -L /usr/mips-linux-gnu",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run /usr/bin/cargo")
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn mips_big_endian_passes_its_tests_and_links_with_a_native_node() {
    if let Some(why) = missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cross build tools missing under CI: {why}"
        );
        println!("SKIPPED mips_big_endian: {why}");
        return;
    }
    // The library's tests, on the target.
    let t = std::time::Instant::now();
    let out = cross_cargo(&[
        "test",
        "--locked",
        "--lib",
        "--target",
        TARGET,
        "-Z",
        "build-std",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let result = said
        .lines()
        .find(|l| l.starts_with("test result: ok."))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "{TARGET}: library tests under qemu-mips: {result} ({:.0} s with the build)",
        t.elapsed().as_secs_f64()
    );
    // The daemon, as a router would run it.
    let out = cross_cargo(&[
        "build",
        "--locked",
        "--release",
        "--bin",
        "ringvpn",
        "--target",
        TARGET,
        "-Z",
        "build-std=std,panic_abort",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bin: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/cross/{TARGET}/release/ringvpn"));
    let size = std::fs::metadata(&bin).unwrap().len();
    eprintln!("{TARGET}: stripped daemon {size} bytes");
    let Some(mut lab) = common::lab_or_skip("mips_big_endian (lab part)", 2) else {
        return;
    };
    lab.hosts[1].command = Some(vec![
        "qemu-mips".into(),
        "-L".into(),
        "/usr/mips-linux-gnu".into(),
        bin.to_string_lossy().into_owned(),
    ]);
    common::start_overlay(&mut lab, 2);
    let t = lab
        .wait_vpn_held(&[0, 1], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", lab.log_tail(0), lab.log_tail(1)));
    eprintln!("native and emulated MIPS hold their addresses after {t:?}");
    let (v0, v1) = (lab.hosts[0].vip, lab.hosts[1].vip);
    let there = lab.ping(0, v1, 3, 56, false).unwrap();
    let back = lab.ping(1, v0, 3, 1300, false).unwrap();
    eprintln!(
        "native -> mips: {}/{} (avg {:.2} ms); mips -> native, 1300 B: {}/{} (avg {:.2} ms)",
        there.received, there.sent, there.avg_ms, back.received, back.sent, back.avg_ms
    );
    assert!(there.all_ok() && back.all_ok(), "{}", lab.log_tail(1));
    let st = lab.status_text(1).unwrap();
    assert!(st.contains("state      up"), "{st}");
}
