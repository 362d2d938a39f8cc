#![no_main]
//! DNS questions (`wire::dns`) and name records (`vpn::name`): parse
//! strictly; a question that parsed is answered within the size the
//! answer says, and the answer reads back as no question.
use libfuzzer_sys::fuzz_target;
use ringvpn::wire::dns::{self, Name, Question, Rdata, Reply};
use std::net::Ipv4Addr;

fuzz_target!(|bytes: &[u8]| {
    let _ = ringvpn::vpn::name::verify(bytes);
    let Ok(q) = Question::parse(bytes) else {
        return;
    };
    let _ = dns::reverse_v4(&q.name);
    let zone = Name::from_dotted("office").unwrap();
    let _ = (q.name.strip_zone(&zone), q.name.is_under(&zone));
    let _ = q.name.to_string();
    let ptr = Name::from_dotted("h2.office").unwrap();
    let answers = [Rdata::A(Ipv4Addr::new(100, 64, 0, 2)), Rdata::Ptr(&ptr)];
    let r = Reply {
        question: &q,
        rcode: dns::RCODE_NOERROR,
        answers: &answers,
        ttl: 60,
    };
    let mut out = vec![0u8; r.buffer_len()];
    assert_eq!(r.emit(&mut out), out.len());
    assert!(Question::parse(&out).is_err());
});
