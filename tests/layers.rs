//! Arrows point down (docs/ARCHITECTURE.md): a module may use only the
//! modules of lower layers. The layers, bottom first, and the check: every
//! `crate::name` (or `ringvpn::name`) in a module's non-test code must name
//! a module of a lower layer. Tests (a `tests/` folder, `tests.rs`, a
//! trailing `#[cfg(test)] mod tests`) may reach up — the node's tests drive
//! it through the simulator.

use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["base64", "heap", "ids", "json", "net", "rand", "time"],
    &["limit", "wire"],
    &["buf", "crypto"],
    &["overlay"],
    &["firewall", "routes", "subring"],
    &["vpn"],
    &["manage"],
    &["node"],
    &["host"],
    &[
        "config", "control", "metrics", "ringmap", "sim", "status", "sys",
    ],
    &["pki"],
    &["shell"],
    &["ffi", "lab"],
    &["bin", "main"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().unwrap() != "tests" {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().unwrap() != "tests.rs" {
            out.push(p);
        }
    }
}

/// The module names a source text uses through `crate::` or `ringvpn::`.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "ringvpn::"] {
        for (i, _) in text.match_indices(prefix) {
            let rest = &text[i + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn arrows_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        let mine = layer(module).unwrap_or_else(|| panic!("{module}: not in LAYERS"));
        let text = std::fs::read_to_string(f).unwrap();
        let code = text
            .find("#[cfg(test)]\nmod tests")
            .map_or(&text[..], |i| &text[..i]);
        for used in uses(code) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < mine => {}
                _ => wrong.push(format!("{}: uses {used}", rel.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways:\n{}",
        wrong.join("\n")
    );
    // Every module of the crate has its layer.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let m = line.trim_end_matches(';');
        assert!(layer(m).is_some(), "{m}: not in LAYERS");
    }
}
