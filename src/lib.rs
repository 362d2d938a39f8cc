//! ringvpn: a fully decentralized peer-to-peer VPN on a structured ring overlay.
#![deny(unsafe_code)]

pub mod base64;
pub mod buf;
pub mod crypto;
pub mod node;
pub mod rand;
pub mod time;
pub mod wire;
