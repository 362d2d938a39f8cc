//! Small handles shared by the layers above `wire`: they sit at the bottom
//! so that a policy object (`overlay`, `vpn`) can name a node's peer
//! without importing the node.

/// Index of a peer in the node's table: what policy objects hand back in
/// their actions (send on this link), never a pointer into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerIdx(pub u16);
