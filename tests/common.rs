//! Shared by the integration tests (each test file includes it as a module).
#![allow(dead_code)]

use ringvpn::lab::Lab;
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
