//! What a crawl shows (`ringvpn net crawl`, `ringvpn net map`): a table
//! for people, JSON for scripts, and a picture of the ring.
//!
//! The crawl's descriptions are put in ring order; each member's own
//! word on its neighbours is then checked against that order — a member
//! whose left or right neighbour is not the one next to it is
//! inconsistent (the map marks it in red). A claim naming a member the
//! crawl did not describe cannot be judged (that member may sit right
//! there), so a partial crawl counts only the claims it can judge. Links
//! are drawn once per pair as chords, coloured by path. A partial crawl
//! says so everywhere.

use crate::manage::Outcome;
use crate::wire::addr::Addr;
use crate::wire::describe::{Description, LinkPath};
use std::fmt::Write as _;
use std::time::Duration;

/// A crawl put in ring order, with what each member got wrong.
pub struct RingView<'a> {
    pub outcome: &'a Outcome,
    /// Descriptions by ring address.
    pub members: Vec<&'a Description>,
    /// Per member: (left wrong, right wrong).
    pub wrong: Vec<(bool, bool)>,
    /// Neighbour claims that could be judged (2 per member, less those
    /// naming members the crawl did not describe).
    pub judged: usize,
    /// Pairs (indices into `members`, lower first) and their path.
    pub chords: Vec<(usize, usize, LinkPath)>,
}

impl<'a> RingView<'a> {
    pub fn new(outcome: &'a Outcome) -> RingView<'a> {
        let mut members: Vec<&Description> = outcome.described.iter().collect();
        members.sort_by_key(|d| d.addr());
        let n = members.len();
        let addr: Vec<Addr> = members.iter().map(|d| d.addr()).collect();
        let described: std::collections::HashSet<Addr> = addr.iter().copied().collect();
        // A claim naming an undescribed member: not judged.
        let unknown = |c: Option<Addr>| c.is_some_and(|a| !described.contains(&a));
        let mut judged = 0;
        let wrong = (0..n)
            .map(|i| {
                let d = members[i];
                let (left, right) = if n == 1 {
                    (None, None)
                } else {
                    (Some(addr[(i + n - 1) % n]), Some(addr[(i + 1) % n]))
                };
                let mut judge = |claim: Option<Addr>, truth: Option<Addr>| {
                    if unknown(claim) {
                        return false;
                    }
                    judged += 1;
                    claim != truth
                };
                (judge(d.left, left), judge(d.right, right))
            })
            .collect();
        let by_prefix: std::collections::HashMap<u64, usize> = addr
            .iter()
            .enumerate()
            .map(|(i, a)| ((a.0 >> 64) as u64, i))
            .collect();
        let mut pairs: std::collections::BTreeMap<(usize, usize), LinkPath> = Default::default();
        for (i, d) in members.iter().enumerate() {
            for l in &d.links {
                let Some(&j) = by_prefix.get(&l.prefix) else {
                    continue;
                };
                if i != j {
                    let e = pairs.entry((i.min(j), i.max(j))).or_insert(l.path);
                    *e = (*e).max(l.path);
                }
            }
        }
        RingView {
            outcome,
            members,
            wrong,
            judged,
            chords: pairs.into_iter().map(|((i, j), p)| (i, j, p)).collect(),
        }
    }

    /// Members that see a wrong neighbour.
    pub fn inconsistent(&self) -> usize {
        self.wrong.iter().filter(|(l, r)| *l || *r).count()
    }

    /// The notes' consistency value over the described members: correct
    /// neighbour claims / claims judged (2n when the crawl is complete).
    pub fn consistency(&self) -> f64 {
        let wrong: usize = self
            .wrong
            .iter()
            .map(|(l, r)| usize::from(*l) + usize::from(*r))
            .sum();
        if self.judged == 0 {
            return 0.0;
        }
        (self.judged - wrong) as f64 / self.judged as f64
    }

    fn counted(&self) -> u64 {
        self.outcome.reduced.get("members")
    }

    fn paths(&self) -> [usize; 3] {
        let mut c = [0; 3];
        for (_, _, p) in &self.chords {
            c[*p as usize - 1] += 1;
        }
        c
    }

    /// One line saying how complete the crawl is.
    fn headline(&self, took: Duration) -> String {
        let r = &self.outcome.reduced;
        let mut s = format!(
            "members {} described of {} counted ({} ms)",
            self.members.len(),
            self.counted(),
            took.as_millis()
        );
        if self.outcome.partial() {
            let _ = write!(s, "  PARTIAL");
            if r.missing_arcs() > 0 {
                let _ = write!(s, ": {} arcs did not answer", r.missing_arcs());
            }
        }
        s
    }
}

fn short(a: Addr) -> String {
    a.to_hex()[..16].to_string()
}

fn label(d: &Description) -> String {
    if d.name.is_empty() {
        short(d.addr())
    } else {
        d.name.clone()
    }
}

/// The crawl as a table.
pub fn render_text(outcome: &Outcome, took: Duration) -> String {
    let v = RingView::new(outcome);
    let mut o = String::new();
    let _ = writeln!(o, "{}", v.headline(took));
    let _ = writeln!(
        o,
        "{:<16}  {:<16}  {:<15}  {:<24}  LINKS",
        "ADDRESS", "NAME", "IPV4", "ENDPOINTS"
    );
    for (i, d) in v.members.iter().enumerate() {
        let ip = d.ipv4.map_or("-".into(), |a| a.to_string());
        let eps = match d.endpoints.split_first() {
            None => "-".to_string(),
            Some((first, [])) => first.to_string(),
            Some((first, rest)) => format!("{first} (+{})", rest.len()),
        };
        let mut c = [0; 3];
        for l in &d.links {
            c[l.path as usize - 1] += 1;
        }
        let mark = if v.wrong[i].0 || v.wrong[i].1 {
            "  !"
        } else {
            ""
        };
        let name = if d.name.is_empty() { "-" } else { &d.name };
        let _ = writeln!(
            o,
            "{}  {name:<16}  {ip:<15}  {eps:<24}  {} direct, {} tunnel, {} routed{mark}",
            short(d.addr()),
            c[0],
            c[1],
            c[2]
        );
    }
    let [direct, tunnel, routed] = v.paths();
    let _ = writeln!(
        o,
        "links {} ({direct} direct, {tunnel} tunnel, {routed} routed); consistency {:.4}",
        v.chords.len(),
        v.consistency()
    );
    for (i, d) in v.members.iter().enumerate() {
        let n = v.members.len();
        for (wrong, side, claimed, truth) in [
            (
                v.wrong[i].0,
                "left",
                d.left,
                v.members[(i + n - 1) % n].addr(),
            ),
            (
                v.wrong[i].1,
                "right",
                d.right,
                v.members[(i + 1) % n].addr(),
            ),
        ] {
            if wrong {
                let claimed = claimed.map_or("none".into(), short);
                let _ = writeln!(
                    o,
                    "! {} ({}) sees {side} {claimed}; ring order says {}",
                    short(d.addr()),
                    label(d),
                    short(truth)
                );
            }
        }
    }
    for (s, e) in &outcome.reduced.missing {
        let _ = writeln!(o, "  missing {}..{}", short(*s), short(*e));
    }
    o
}

/// The crawl as JSON.
pub fn render_json(outcome: &Outcome, took: Duration) -> String {
    use crate::json::{quote, Object};
    let v = RingView::new(outcome);
    let mut nodes = Vec::new();
    for (i, d) in v.members.iter().enumerate() {
        let eps: Vec<String> = d.endpoints.iter().map(|e| quote(&e.to_string())).collect();
        let links: Vec<String> = d
            .links
            .iter()
            .map(|l| {
                format!(
                    "{{\"to\":\"{:016x}\",\"path\":\"{}\"}}",
                    l.prefix,
                    l.path.name()
                )
            })
            .collect();
        let left = d.left.map(Addr::to_hex);
        let right = d.right.map(Addr::to_hex);
        let ipv4 = d.ipv4.map(|a| a.to_string());
        let ipv6 = d.ipv6.map(|a| a.to_string());
        let mut s = String::new();
        let mut o = Object::new(&mut s);
        o.str("addr", &d.addr().to_hex())
            .str("name", &d.name)
            .opt_str("ipv4", ipv4.as_deref())
            .opt_str("ipv6", ipv6.as_deref())
            .opt_str("left", left.as_deref())
            .opt_str("right", right.as_deref())
            .raw("endpoints", &format!("[{}]", eps.join(",")))
            .raw("links", &format!("[{}]", links.join(",")))
            .raw(
                "consistent",
                if v.wrong[i] == (false, false) {
                    "true"
                } else {
                    "false"
                },
            );
        o.end();
        nodes.push(s);
    }
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.num("members", v.counted())
        .num("described", v.members.len())
        .raw("partial", if outcome.partial() { "true" } else { "false" })
        .num("missing_arcs", outcome.reduced.missing_arcs())
        .raw("consistency", &format!("{:.4}", v.consistency()))
        .num("inconsistent", v.inconsistent())
        .num("took_ms", took.as_millis())
        .raw("nodes", &format!("[{}]", nodes.join(",")));
    o.end();
    out.push('\n');
    out
}

/// Text for SVG: `&`, `<`, `>` and quotes escaped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

const DIRECT: &str = "#2f9e44";
const TUNNEL: &str = "#f08c00";
const ROUTED: &str = "#1971c2";
const WRONG: &str = "#e03131";

/// The ring as an SVG picture: members evenly on a circle in ring order
/// (clockwise from the top), links as chords coloured by path, members
/// that see a wrong neighbour in red, names as labels (all of them up to
/// 96 members; past that only the first 40 red ones, or the picture is
/// ink).
pub fn render_svg(outcome: &Outcome, took: Duration) -> String {
    let v = RingView::new(outcome);
    let n = v.members.len();
    let (w, h, cx, cy) = (960.0, 1000.0, 480.0, 500.0);
    let r = 330.0;
    let pos = |i: usize| {
        let a = -std::f64::consts::FRAC_PI_2 + std::f64::consts::TAU * i as f64 / n.max(1) as f64;
        (a, cx + r * a.cos(), cy + r * a.sin())
    };
    let busy = n > 96;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">"
    );
    let _ = writeln!(o, "<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>");
    let _ = writeln!(
        o,
        "<text x=\"20\" y=\"32\" font-size=\"20\" font-weight=\"bold\">ringvpn: {}</text>",
        esc(&v.headline(took))
    );
    let [direct, tunnel, routed] = v.paths();
    let bad = v.inconsistent();
    let status = if bad == 0 {
        format!("consistent ({:.4})", v.consistency())
    } else {
        format!(
            "{bad} members see a wrong neighbour (consistency {:.4})",
            v.consistency()
        )
    };
    let _ = writeln!(
        o,
        "<text x=\"20\" y=\"56\" font-size=\"14\" fill=\"{}\">{} links: {direct} direct, {tunnel} tunnel, {routed} routed; {}</text>",
        if bad > 0 { WRONG } else { "#495057" },
        v.chords.len(),
        esc(&status)
    );
    let _ = writeln!(
        o,
        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"none\" stroke=\"#ced4da\" stroke-width=\"1\"/>"
    );
    let (width, opacity) = if busy { (0.5, 0.25) } else { (1.6, 0.75) };
    for &(i, j, path) in &v.chords {
        let ((_, x1, y1), (_, x2, y2)) = (pos(i), pos(j));
        // Pulled toward the centre, so chords between near members bow
        // inward instead of hiding under the circle.
        let (qx, qy) = (
            cx + ((x1 + x2) / 2.0 - cx) * 0.35,
            cy + ((y1 + y2) / 2.0 - cy) * 0.35,
        );
        let (colour, dash) = match path {
            LinkPath::Direct => (DIRECT, ""),
            LinkPath::Tunnel => (TUNNEL, " stroke-dasharray=\"6 3\""),
            LinkPath::Routed => (ROUTED, " stroke-dasharray=\"2 3\""),
        };
        let _ = writeln!(
            o,
            "<path d=\"M{x1:.1} {y1:.1} Q{qx:.1} {qy:.1} {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" stroke-opacity=\"{opacity}\"{dash}/>"
        );
    }
    let dot = if busy { 2.5 } else { 7.0 };
    // Past 96 members only red members are labelled, the first 40.
    let mut red_labels = 0;
    for (i, d) in v.members.iter().enumerate() {
        let (a, x, y) = pos(i);
        let wrong = v.wrong[i] != (false, false);
        let fill = if wrong { WRONG } else { "#343a40" };
        let _ = writeln!(
            o,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{dot}\" fill=\"{fill}\"><title>{}</title></circle>",
            esc(&format!("{} {}", d.addr().to_hex(), d.name))
        );
        if wrong {
            let _ = writeln!(
                o,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{}\" fill=\"none\" stroke=\"{WRONG}\" stroke-width=\"2\"/>",
                dot + 5.0
            );
        }
        if busy && (!wrong || red_labels >= 40) {
            continue;
        }
        red_labels += usize::from(wrong);
        // Two lines (name, address) outside the dot: above it at the top,
        // below it at the bottom, beside it elsewhere.
        let lift = if a.sin() < -0.3 {
            -12.0
        } else if a.sin() > 0.3 {
            8.0
        } else {
            3.0
        };
        let (lx, ly) = (cx + (r + 16.0) * a.cos(), cy + (r + 16.0) * a.sin() + lift);
        let anchor = if a.cos() < -0.01 {
            "end"
        } else if a.cos() > 0.01 {
            "start"
        } else {
            "middle"
        };
        let ip = d.ipv4.map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(
            o,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"12\" text-anchor=\"{anchor}\" fill=\"{}\">{}<tspan x=\"{lx:.1}\" dy=\"13\" font-size=\"10\" fill=\"#868e96\">{}</tspan></text>",
            if wrong { WRONG } else { "#212529" },
            esc(&label(d)),
            esc(&ip)
        );
    }
    let mut y = h - 70.0;
    for (colour, dash, what) in [
        (DIRECT, "", "direct link"),
        (
            TUNNEL,
            " stroke-dasharray=\"6 3\"",
            "tunnel edge (relayed by a common neighbour)",
        ),
        (
            ROUTED,
            " stroke-dasharray=\"2 3\"",
            "session routed over the ring",
        ),
    ] {
        let _ = writeln!(
            o,
            "<line x1=\"20\" y1=\"{y}\" x2=\"60\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}/><text x=\"70\" y=\"{}\" font-size=\"13\">{what}</text>",
            y + 4.0
        );
        y += 20.0;
    }
    let _ = writeln!(
        o,
        "<circle cx=\"{}\" cy=\"{}\" r=\"6\" fill=\"{WRONG}\"/><text x=\"{}\" y=\"{}\" font-size=\"13\">sees a wrong neighbour</text>",
        w - 250.0,
        h - 70.0,
        w - 238.0,
        h - 66.0
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests;
