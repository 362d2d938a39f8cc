//! Which queued datagrams leave together as one UDP GSO train.
//!
//! With UDP GSO (`UDP_SEGMENT`) one `sendmsg` hands the kernel up to 64
//! datagrams that it carries through its UDP and IP layers as one packet
//! and cuts only at the device (or, on a veth, not at all when the
//! receiver takes GRO): the per-datagram kernel cost that dominated a
//! bulk transfer is paid once per train. The kernel's rules shape a
//! train: one destination, every datagram the same size except a shorter
//! last one, at most 64 datagrams and 64 KiB. Order is kept: only
//! neighbours in the node's queue join, so a train never overtakes.

use crate::sys::{Train, BATCH};
use smallvec::SmallVec;
use std::net::SocketAddr;

/// Datagrams per train (the kernel's `UDP_MAX_SEGMENTS` since 4.18).
pub const MAX_SEGMENTS: usize = 64;
/// Bytes per train: a UDP payload must fit a 64 KiB IP packet.
pub const MAX_TRAIN_BYTES: usize = 65_000;

/// What may go in a train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Datagrams per train (1: no GSO).
    pub count: usize,
    /// Largest datagram that may join one: the kernel refuses a train
    /// whose datagrams exceed the route's MTU (it would fragment a lone
    /// datagram instead), and once it has, larger ones go alone.
    pub seg: usize,
}

/// Groups `msgs` (datagram, destination) into at most [`BATCH`] trains
/// within `limits`; the first `singles` datagrams go alone (a train the
/// kernel refused, sent again one by one). Returns how many datagrams the
/// trains cover (the rest wait for the next send).
pub fn plan(
    msgs: &[(&[u8], SocketAddr)],
    limits: Limits,
    singles: usize,
    out: &mut SmallVec<[Train; BATCH]>,
) -> usize {
    out.clear();
    let max_count = limits.count.clamp(1, MAX_SEGMENTS);
    let mut i = 0;
    while i < msgs.len() && out.len() < BATCH {
        let (first, dst) = msgs[i];
        let seg = first.len();
        let mut count = 1;
        let mut bytes = seg;
        if i >= singles && seg > 0 && seg <= limits.seg {
            while count < max_count && i + count < msgs.len() {
                let (next, to) = msgs[i + count];
                if to != dst
                    || next.is_empty()
                    || next.len() > seg
                    || bytes + next.len() > MAX_TRAIN_BYTES
                {
                    break;
                }
                count += 1;
                bytes += next.len();
                if next.len() < seg {
                    break; // a shorter datagram ends the train
                }
            }
        }
        out.push(Train {
            first: i,
            count,
            seg,
        });
        i += count;
    }
    i
}

/// How many datagrams the first `trains` trains of `plan` carried.
pub fn datagrams(plan: &[Train], trains: usize) -> usize {
    plan.iter().take(trains).map(|t| t.count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, n], 5140))
    }

    fn run(
        lens: &[(usize, u8)],
        max: usize,
        singles: usize,
    ) -> (Vec<(usize, usize, usize)>, usize) {
        let limits = Limits {
            count: max,
            seg: usize::MAX,
        };
        run_limited(lens, limits, singles)
    }

    fn run_limited(
        lens: &[(usize, u8)],
        limits: Limits,
        singles: usize,
    ) -> (Vec<(usize, usize, usize)>, usize) {
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&(l, _)| vec![0; l]).collect();
        let msgs: Vec<(&[u8], SocketAddr)> = bufs
            .iter()
            .zip(lens)
            .map(|(b, &(_, d))| (&b[..], addr(d)))
            .collect();
        let mut out = SmallVec::new();
        let covered = plan(&msgs, limits, singles, &mut out);
        (
            out.iter().map(|t| (t.first, t.count, t.seg)).collect(),
            covered,
        )
    }

    #[test]
    fn equal_sizes_to_one_peer_make_one_train_ended_by_a_shorter_one() {
        let lens = [(1432, 1), (1432, 1), (1432, 1), (600, 1), (1432, 1)];
        assert_eq!(run(&lens, 64, 0), (vec![(0, 4, 1432), (4, 1, 1432)], 5));
    }

    #[test]
    fn a_longer_datagram_or_another_destination_starts_a_new_train() {
        let lens = [(100, 1), (100, 1), (200, 1), (200, 2), (200, 2), (200, 1)];
        assert_eq!(
            run(&lens, 64, 0),
            (vec![(0, 2, 100), (2, 1, 200), (3, 2, 200), (5, 1, 200)], 6)
        );
    }

    #[test]
    fn limits_count_bytes_and_trains_per_send() {
        // 64 per train.
        let lens = vec![(100, 1); 70];
        assert_eq!(run(&lens, 64, 0), (vec![(0, 64, 100), (64, 6, 100)], 70));
        // 64 KiB per train: 45 × 1,432 = 64,440; a 46th would pass 65,000.
        let lens = vec![(1432, 1); 50];
        assert_eq!(run(&lens, 64, 0), (vec![(0, 45, 1432), (45, 5, 1432)], 50));
        // Without GSO every datagram is its own message, BATCH per send.
        let lens = vec![(100, 1); 40];
        let (trains, covered) = run(&lens, 1, 0);
        assert_eq!((trains.len(), covered), (BATCH, BATCH));
        assert!(trains.iter().all(|t| t.1 == 1));
    }

    #[test]
    fn a_refused_train_goes_again_one_by_one() {
        let lens = vec![(1432, 1); 6];
        let (trains, covered) = run(&lens, 64, 3);
        assert_eq!(
            trains,
            vec![(0, 1, 1432), (1, 1, 1432), (2, 1, 1432), (3, 3, 1432)]
        );
        assert_eq!(covered, 6);
        assert_eq!(
            datagrams(
                &[
                    Train {
                        first: 0,
                        count: 2,
                        seg: 1
                    },
                    Train {
                        first: 2,
                        count: 3,
                        seg: 1
                    }
                ],
                1
            ),
            2
        );
    }

    #[test]
    fn datagrams_above_a_refused_size_go_alone() {
        let lens = [(1474, 1), (1474, 1), (1000, 1), (1000, 1), (900, 1)];
        let limits = Limits {
            count: 64,
            seg: 1473,
        };
        assert_eq!(
            run_limited(&lens, limits, 0).0,
            vec![(0, 1, 1474), (1, 1, 1474), (2, 3, 1000)]
        );
    }

    #[test]
    fn empty_datagrams_never_join_a_train() {
        let lens = [(0, 1), (0, 1), (10, 1), (0, 1)];
        assert_eq!(
            run(&lens, 64, 0).0,
            vec![(0, 1, 0), (1, 1, 0), (2, 1, 10), (3, 1, 0)]
        );
    }
}
