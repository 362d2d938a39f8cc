//! ringvpn: a fully decentralized peer-to-peer VPN on a structured ring overlay.
//!
//! Layers, top to bottom (arrows point down only):
//!
//! - `shell`: the mio reactor; the only code with fds, syscalls and the OS
//!   clock (`shell::sys` holds every `unsafe` block).
//! - `node`: the sans-IO protocol core: `handle_*(now, …)` in, `poll_*` out.
//! - `crypto`: identities, handshake, sessions, replay window.
//! - `buf` and `wire`: the buffer pool and zero-copy views of every message.
//!
//! Beside them: `config` (the file format), `control` and `status` (the
//! control socket and its replies), and `lab` (network namespaces for the
//! demo, tests and benchmarks; it runs `ip` and is a tool, not the core).
#![deny(unsafe_code)]

pub mod base64;
pub mod buf;
pub mod config;
pub mod control;
pub mod crypto;
pub mod json;
pub mod lab;
pub mod limit;
pub mod net;
pub mod node;
pub mod overlay;
pub mod pki;
pub mod rand;
pub mod shell;
pub mod sim;
pub mod status;
pub mod time;
pub mod vpn;
pub mod wire;
