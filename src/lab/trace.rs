//! What a steady ping saw, from its own timestamps: how soon the first
//! reply came, how many were lost, and the longest silence between two
//! replies. Timestamps come from `ping -D` (the kernel's receive time as
//! ping reports it), not from when the lab got round to looking, so a slow
//! or busy machine does not stretch the figures.

use super::Lab;
use std::io;
use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A `ping -D -i INTERVAL -c COUNT` running in a host's namespace.
pub struct PingTrace {
    child: Child,
    started: f64,
    interval: Duration,
}

/// Its outcome.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub sent: u32,
    pub received: u32,
    /// From the start to the first reply.
    pub first_reply: Option<Duration>,
    /// The longest time without a reply (between two replies, from the
    /// start to the first, or from the last to the end), less one
    /// interval: the time traffic was lost for.
    pub longest_gap: Duration,
    /// Seconds after the start at which each reply arrived.
    pub replies: Vec<f64>,
    /// Sequence numbers (from 1) of the requests never answered.
    pub unanswered: Vec<u32>,
}

impl Trace {
    /// Packets lost.
    pub fn lost(&self) -> u32 {
        self.sent.saturating_sub(self.received)
    }
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl PingTrace {
    /// Starts pinging `dst` from host `i`: `count` echo requests, one per
    /// `interval`, each waited for at most 1 s.
    pub fn start(
        lab: &Lab,
        i: usize,
        dst: std::net::Ipv4Addr,
        count: u32,
        interval: Duration,
    ) -> io::Result<PingTrace> {
        let (c, iv, d) = (
            count.to_string(),
            format!("{:.3}", interval.as_secs_f64()),
            dst.to_string(),
        );
        let started = wall();
        let child =
            lab.spawn_piped(i, &["ping", "-n", "-D", "-c", &c, "-i", &iv, "-W", "1", &d])?;
        Ok(PingTrace {
            child,
            started,
            interval,
        })
    }

    /// Waits for the ping to end and reads what it saw.
    pub fn finish(self) -> io::Result<Trace> {
        let out = self.child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(parse(&text, self.started, self.interval))
    }

    /// Stops the ping now and reads what it saw so far (SIGINT: ping
    /// prints its summary; `ip netns exec` passes the signal on).
    pub fn stop(self) -> io::Result<Trace> {
        let _ = crate::sys::kill(self.child.id(), libc::SIGINT);
        self.finish()
    }
}

/// Reads `ping -D` output: `[1733312345.123456] 64 bytes from …:
/// icmp_seq=1 ttl=64 time=0.5 ms` per reply, and the summary line. The
/// run ends one interval after the last request was sent.
pub fn parse(text: &str, started: f64, interval: Duration) -> Trace {
    let mut t = Trace {
        sent: super::Ping::parse(text).sent,
        ..Trace::default()
    };
    let mut answered = vec![false; t.sent as usize + 1];
    for line in text.lines() {
        if !line.contains("icmp_seq=") || !line.contains(" from ") {
            continue;
        }
        let seq = line
            .split("icmp_seq=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(a) = seq.and_then(|s| answered.get_mut(s)) {
            *a = true;
        }
        let stamp = line
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .and_then(|s| s.parse::<f64>().ok());
        if let Some(s) = stamp {
            t.replies.push((s - started).max(0.0));
        }
    }
    t.received = t.replies.len() as u32;
    t.unanswered = (1..=t.sent).filter(|&s| !answered[s as usize]).collect();
    t.first_reply = t.replies.first().map(|&s| Duration::from_secs_f64(s));
    // The ends count as replies: silence at the start or the end is loss too.
    let mut marks = vec![0.0];
    marks.extend(&t.replies);
    let end = f64::from(t.sent) * interval.as_secs_f64();
    marks.push(end.max(marks[marks.len() - 1]));
    let widest = marks.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    t.longest_gap = Duration::from_secs_f64((widest - interval.as_secs_f64()).max(0.0));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_from_timestamps() {
        let out = "PING 100.64.0.13 (100.64.0.13) 56(84) bytes of data.\n\
            [100.05] 64 bytes from 100.64.0.13: icmp_seq=1 ttl=64 time=0.5 ms\n\
            [100.15] 64 bytes from 100.64.0.13: icmp_seq=2 ttl=64 time=0.5 ms\n\
            [101.65] 64 bytes from 100.64.0.13: icmp_seq=17 ttl=64 time=0.5 ms\n\
            [101.75] 64 bytes from 100.64.0.13: icmp_seq=18 ttl=64 time=0.5 ms\n\
            \n--- 100.64.0.13 ping statistics ---\n\
            20 packets transmitted, 4 received, 80% packet loss, time 1900ms\n";
        let t = parse(out, 100.0, Duration::from_millis(100));
        assert_eq!((t.sent, t.received, t.lost()), (20, 4, 16));
        assert!((t.first_reply.unwrap().as_secs_f64() - 0.05).abs() < 1e-6);
        assert!((t.longest_gap.as_secs_f64() - 1.4).abs() < 1e-6);
        assert_eq!(
            t.unanswered,
            [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20]
        );
        // Nothing at all: the whole run is the gap.
        let none = "20 packets transmitted, 0 received, 100% packet loss\n";
        let t = parse(none, 100.0, Duration::from_millis(100));
        assert_eq!(t.received, 0);
        assert!((t.longest_gap.as_secs_f64() - 1.9).abs() < 1e-6);
    }
}
