//! The structured ring overlay (see docs/OVERLAY.md).

pub mod addr;
pub mod table;

pub use addr::Addr;
