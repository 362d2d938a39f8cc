//! Sub-rings (docs/SUBRINGS.md): the nodes' part in carrying a daemon's
//! networks over its public node.
//!
//! A **network's node** (`Carriage::Network`) tags every datagram it
//! sends with its network id (`wire::subring::Tagged`, prepended in
//! place), so the daemon at the other end hands it to the node of the
//! same network; what it sends to a *carried* endpoint (a fellow member's
//! host on the public ring) goes instead to its host (`poll_to_carry`).
//!
//! The **public node** (`Carriage::Public`) sends what the host gives
//! it, behind the carried header the host wrote, as routed data
//! (`DATA_FLAG_CARRIED`) to the member's host — re-sealed link by link
//! like any routed data and metered by the same transit budgets on the
//! way — and puts what is carried to it out for the host
//! (`poll_carried`). It never looks inside: the datagram is sealed by the
//! network's own session, so the relays see ciphertext only.

use super::config::Carriage;
use super::{DropReason, Endpoint, Node, Transmit, MAX_QUEUED};
use crate::buf::PacketBuf;
use crate::overlay::Addr;
use crate::time::Instant;
use crate::wire::overlay::DATA_FLAG_CARRIED;
use crate::wire::subring::{TaggedRepr, TAGGED_HEADER_LEN};

impl Node {
    /// This node is the public node of a daemon with networks: it takes
    /// carried datagrams for them (`host::Networks` drains them).
    pub fn carry_for_networks(&mut self) {
        self.settings.carriage = Carriage::Public;
    }

    /// Sends a network's datagram, behind the carried header its host
    /// wrote, over the overlay to the public node at `dst`.
    pub fn send_carried(&mut self, now: Instant, dst: Addr, buf: PacketBuf) {
        self.send_routed_data(now, dst, buf, None, DATA_FLAG_CARRIED);
        self.settle(now);
    }

    /// The public node: next datagram carried to us for this daemon's
    /// networks (carried header first). Drain after every input.
    pub fn poll_carried(&mut self) -> Option<PacketBuf> {
        self.out.carried.pop_front()
    }

    /// A network's node: next datagram for a carried endpoint, for the
    /// host to carry. Drain after every input, before the transmits.
    pub fn poll_to_carry(&mut self) -> Option<Transmit> {
        self.out.to_carry.pop_front()
    }

    /// A carried datagram routed to us: for the host, if it takes them.
    pub(super) fn carried_in(&mut self, buf: PacketBuf) {
        if self.settings.carriage != Carriage::Public || self.out.carried.len() >= MAX_QUEUED {
            return self.drop_buf(buf, DropReason::Uncarried);
        }
        self.out.carried.push_back(buf);
    }

    /// A network's node sends: tagged over the shared socket, or to the
    /// host to carry.
    pub(super) fn network_out(&mut self, id: u64, dst: Endpoint, mut buf: PacketBuf) {
        if dst.is_carried() {
            if self.out.to_carry.len() >= MAX_QUEUED {
                return self.drop_buf(buf, DropReason::QueueFull);
            }
            return self.out.to_carry.push_back(Transmit { dst, buf });
        }
        let Some(hdr) = self.pool.prepend(&mut buf, TAGGED_HEADER_LEN) else {
            return self.drop_buf(buf, DropReason::BadFrame);
        };
        TaggedRepr { network: id }.emit(hdr);
        self.out.transmits.push_back(Transmit { dst, buf });
    }
}
