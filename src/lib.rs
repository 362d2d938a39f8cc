//! ringvpn: a fully decentralized peer-to-peer VPN on a structured ring overlay.
//!
//! Layers, bottom first; a module uses only the layers below it
//! (`tests/layers.rs` checks it):
//!
//! - small shared types: `heap` (the daemon's counted allocator), `ids` (peer handles), `time` (the virtual-or-real
//!   instant), `rand`, `net` (prefixes), `base64`, `json`; `limit` (token
//!   buckets);
//! - `wire`: every message format as a zero-copy view, with the types
//!   messages carry (`wire::addr` ring addresses, `wire::key` node keys);
//! - `buf` (the packet pool) and `crypto` (identities, handshake, sessions,
//!   sealed credentials, certificates);
//! - `overlay`: the ring as a policy object — routing, linking, the DHT —
//!   answering events with actions;
//! - `firewall`: inbound rules by certificate group with stateful return
//!   traffic (a fixed flow table);
//! - `routes`: exit gateways and subnet routes as a policy object — signed
//!   route records in the DHT, the choice of an advertiser per prefix,
//!   failover;
//! - `vpn`: the VPN as a policy object (`vpn::Vpn`) on top of the
//!   overlay's DHT: address claims, resolution, ARP/ND/DHCP answers,
//!   broadcast — each packet answered with what to do with it;
//! - `manage`: map-reduce tasks over the ring (stats, consistency, find)
//!   as a policy object;
//! - `node`: the sans-IO core that runs both policies and owns peers and
//!   sessions: `handle_*(now, …)` in; datagrams and frames (zero-copy
//!   queues), events and the next deadline out; no sockets, files or
//!   clock;
//! - drivers of the node and the operator's side: `sim` (the deterministic
//!   many-node simulator), `config` (the file format), `control` and
//!   `status` (the control socket), `metrics` (Prometheus text), `sys`
//!   (the OS glue: every `unsafe`
//!   block), `pki` (the group CA's tool);
//! - `shell`: the mio reactor, the only code with fds and the OS clock;
//! - `ffi`: the C API (`include/ringvpn.h`, feature `ffi`): the node
//!   and the daemon loop for programs that embed them;
//! - `lab`: network namespaces for the demo, tests and benchmarks (it runs
//!   `ip` and is a tool, not the core).
#![deny(unsafe_code)]

pub mod base64;
pub mod buf;
pub mod config;
pub mod control;
pub mod crypto;
#[cfg(feature = "ffi")]
pub mod ffi;
pub mod firewall;
pub mod heap;
pub mod host;
pub mod ids;
pub mod json;
pub mod lab;
pub mod limit;
pub mod manage;
pub mod metrics;
pub mod net;
pub mod node;
pub mod overlay;
pub mod pki;
pub mod rand;
pub mod ringmap;
pub mod routes;
pub mod shell;
pub mod sim;
pub mod status;
pub mod subring;
pub mod sys;
pub mod time;
pub mod vpn;
pub mod wire;
