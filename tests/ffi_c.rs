//! The C API from C: `include/ringvpn.h` against `src/ffi.rs` (every
//! constant and function on both sides, equal), then the examples in
//! `examples/c/` built with `gcc -Wall -Wextra -Werror` against the static
//! library and the shared one: two nodes passing a frame through the
//! program's own "network" (also under valgrind: no leaks, no invalid
//! accesses), and the daemon loop on a TAP and socket the program opened,
//! in a network namespace of its own (root).
//!
//! Needs gcc and valgrind (`.ci/run` installs them); without them:
//! SKIPPED, under CI=true a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn skip(test: &str, why: &str) {
    assert!(!under_ci(), "{test}: cannot run under CI: {why}");
    println!("SKIPPED {test}: {why}");
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// `#define RV_NAME INTEGER` in the header.
fn header_constants() -> BTreeMap<String, i64> {
    let h = std::fs::read_to_string(Path::new(ROOT).join("include/ringvpn.h")).unwrap();
    let mut out = BTreeMap::new();
    for line in h.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let ["#define", name, value, ..] = w.as_slice() {
            if let Ok(v) = value.trim_matches(|c| c == '(' || c == ')').parse::<i64>() {
                out.insert(name.to_string(), v);
            }
        }
    }
    out
}

/// `pub const RV_NAME: T = INTEGER;` in src/ffi.rs.
fn rust_constants(src: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for line in src.lines() {
        let Some(rest) = line.trim().strip_prefix("pub const RV_") else {
            continue;
        };
        let (name, rest) = rest.split_once(':').unwrap();
        let value = rest.split_once('=').unwrap().1.trim().trim_end_matches(';');
        if let Ok(v) = value.parse::<i64>() {
            out.insert(format!("RV_{name}"), v);
        }
    }
    out
}

/// Names `rv_x` followed by `(` and preceded by `prefix` (`fn ` in Rust;
/// a space or `*` in the header's declarations).
fn functions(text: &str, after: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices("rv_")
        .filter(|(i, _)| after.iter().any(|a| text[..*i].ends_with(a)))
        .filter_map(|(i, _)| {
            let rest = &text[i..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest[name.len()..].starts_with('(').then_some(name)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_header_matches_the_library() {
    // The C API: level 1 and the shared pieces in src/ffi.rs, the daemon
    // loop in src/ffi/daemon.rs.
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).unwrap();
    let src = read("src/ffi.rs") + &read("src/ffi/daemon.rs");
    let header = std::fs::read_to_string(Path::new(ROOT).join("include/ringvpn.h")).unwrap();
    let mut in_header = header_constants();
    let in_rust = rust_constants(&src);
    assert_eq!(
        in_header.remove("RV_ABI_VERSION"),
        Some(i64::from(ringvpn_abi(&src)))
    );
    assert_eq!(
        in_header.remove("RV_MAX_PACKET"),
        Some(ringvpn::buf::MAX_PAYLOAD as i64),
        "RV_MAX_PACKET is the pool's largest payload"
    );
    assert_eq!(
        in_header, in_rust,
        "constants: header (left) and src/ffi.rs"
    );
    // src/ffi.rs's own unit tests (built only with the feature).
    let out = Command::new(env!("CARGO"))
        .current_dir(ROOT)
        .env("CARGO_TARGET_DIR", Path::new(ROOT).join("target/ffi"))
        .env_remove("RUSTFLAGS")
        .args(["test", "--locked", "--lib", "--features", "ffi", "ffi::"])
        .output()
        .expect("run cargo");
    let said = text(&out);
    assert!(out.status.success() && said.contains("2 passed"), "{said}");
    let declared = functions(&header, &[" ", "*"]);
    let exported = functions(&src, &["fn "]);
    assert!(exported.len() >= 20, "{exported:?}");
    assert_eq!(
        declared, exported,
        "functions: header (left) and src/ffi.rs"
    );
}

fn ringvpn_abi(src: &str) -> u32 {
    let line = src
        .lines()
        .find(|l| l.starts_with("pub const ABI_VERSION"))
        .unwrap();
    line.split('=')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(';')
        .parse()
        .unwrap()
}

/// Builds the library (debug: a panic is caught at the boundary) as a
/// static archive, or as a shared object (which cannot take the
/// repository's static-glibc flags, so RUSTFLAGS replaces them).
fn build_library(shared: bool) -> PathBuf {
    let dir = Path::new(ROOT).join("target/ffi");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(ROOT)
        .env("CARGO_TARGET_DIR", &dir)
        .args([
            "rustc",
            "--locked",
            "--lib",
            "--features",
            "ffi",
            "--crate-type",
        ])
        .arg(if shared { "cdylib" } else { "staticlib" });
    if shared {
        cmd.env("RUSTFLAGS", "--cfg curve25519_dalek_backend=\"serial\"");
    } else {
        cmd.env_remove("RUSTFLAGS");
    }
    let out = cmd.output().expect("run cargo");
    assert!(out.status.success(), "{}", text(&out));
    dir.join("debug").join(if shared {
        "libringvpn.so"
    } else {
        "libringvpn.a"
    })
}

/// gcc -Wall -Wextra -Werror on an example, linked with `lib`.
fn compile(example: &str, lib: &Path, out: &Path) {
    let mut cmd = Command::new("gcc");
    cmd.current_dir(ROOT).args([
        "-Wall",
        "-Wextra",
        "-Werror",
        "-std=c11",
        "-D_GNU_SOURCE",
        "-g",
        "-Iinclude",
    ]);
    cmd.arg(format!("examples/c/{example}")).arg("-o").arg(out);
    if lib.extension().is_some_and(|e| e == "so") {
        cmd.arg(format!("-L{}", lib.parent().unwrap().display()))
            .arg("-lringvpn")
            .arg(format!("-Wl,-rpath,{}", lib.parent().unwrap().display()));
    } else {
        cmd.arg(lib).args(["-lpthread", "-ldl", "-lm"]);
    }
    let o = cmd.output().expect("run gcc");
    assert!(o.status.success(), "gcc {example}: {}", text(&o));
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(ROOT).join("target/ffi/examples");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn two_nodes_in_c_pass_a_frame_also_under_valgrind_and_with_the_shared_library() {
    for tool in ["gcc", "valgrind"] {
        if !have(tool) {
            return skip("two_nodes_in_c", &format!("{tool} not installed"));
        }
    }
    let lib = build_library(false);
    let exe = scratch("two_nodes");
    compile("two_nodes.c", &lib, &exe);
    let out = Command::new(&exe).output().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("frame delivered") && said.ends_with("ok\n"),
        "{said}"
    );
    eprint!("{said}");

    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=9",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            concat!(
                "--suppressions=",
                env!("CARGO_MANIFEST_DIR"),
                "/tests/valgrind.supp"
            ),
        ])
        .arg(&exe)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "valgrind: {said}");
    assert!(said.contains("ERROR SUMMARY: 0 errors"), "{said}");
    let summary = said
        .lines()
        .find(|l| l.contains("total heap usage"))
        .unwrap_or_default();
    eprintln!("under valgrind: 0 errors, no leaks; {summary}");

    let so = build_library(true);
    let exe = scratch("two_nodes_shared");
    compile("two_nodes.c", &so, &exe);
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success(), "shared: {}", text(&out));
    let nm = Command::new("nm").arg("-D").arg(&so).output().unwrap();
    let exported: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter(|l| l.contains(" T "))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert!(
        exported.iter().all(|s| s.starts_with("rv_")),
        "the shared library exports only the API: {exported:?}"
    );
}

#[test]
fn the_daemon_loop_runs_on_fds_a_c_program_opened_and_stops_when_asked() {
    if !have("gcc") {
        return skip("daemon_in_c", "gcc not installed");
    }
    if let Some(why) = ringvpn::lab::unavailable() {
        return skip("daemon_in_c", &why);
    }
    let lib = build_library(false);
    let exe = scratch("daemon");
    compile("daemon.c", &lib, &exe);
    let ns = format!("rvffi{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap();
    assert!(ok.success());
    let socket = scratch(&format!("{ns}.sock"));
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c"])
        .arg(format!(
            "ip link set lo up && exec {} {}",
            exe.display(),
            socket.display()
        ))
        .output();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let out = out.unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("tap       rvc0  100.64.77.1/24"), "{said}");
    assert!(said.ends_with("stopped\n"), "{said}");
    // Memory as the daemon sees it; the heap is the program's own here
    // (ringvpn's counting allocator is the ringvpn binary's).
    assert!(said.contains("memory    rss "), "{said}");
}
