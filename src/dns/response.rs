//! Pure helpers for synthesized answers: sinkhole records and RFC 8914 Extended DNS Errors.

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::policy::{Match, PolicySnapshot, suffix_of};

/// RFC 8914 info-code 15: Blocked (the operator's policy blocked the name).
pub const EDE_BLOCKED: u16 = 15;
/// RFC 8914 info-code 18: Prohibited (the client is not allowed to query).
pub const EDE_PROHIBITED: u16 = 18;
/// RFC 8914 info-code 22: No Reachable Authority (upstream failed or timed out).
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
/// RFC 8914 info-code 0: Other (used for "still loading" SERVFAIL).
pub const EDE_OTHER: u16 = 0;

/// EDNS option code of Extended DNS Errors.
const EDE_OPTION: u16 = 15;

/// Builds an Extended DNS Error option: 2-byte info-code then UTF-8 extra text (capped so the
/// answer stays well inside a 512-byte UDP payload).
pub fn ede(info_code: u16, text: &str) -> EdnsOption {
    let text = &text.as_bytes()[..ede_text_len(text.as_bytes())];
    let mut data = Vec::with_capacity(2 + text.len());
    data.extend_from_slice(&info_code.to_be_bytes());
    data.extend_from_slice(text);
    EdnsOption::Unknown(EDE_OPTION, data)
}

/// Appends the EDE 15 text of a blocked answer (`blocked by iocdns: feed=… ioc=… id=…
/// malware=…`) to `out`; shared by the fast path and the full path so `dig` shows the same.
pub fn block_reason(out: &mut Vec<u8>, policy: &PolicySnapshot, m: &Match, qname: &[u8]) {
    let rule = policy.rule(m.rule);
    out.extend_from_slice(b"blocked by iocdns: feed=");
    out.extend_from_slice(policy.feeds[rule.feed as usize].name.as_bytes());
    out.extend_from_slice(b" ioc=");
    out.extend_from_slice(suffix_of(qname, m.suffix_labels));
    if let Some(meta) = policy.extra(rule).map(|e| &e.meta) {
        if let Some(id) = &meta.id {
            out.extend_from_slice(b" id=");
            out.extend_from_slice(id.as_bytes());
        }
        if let Some(mw) = &meta.malware {
            out.extend_from_slice(b" malware=");
            out.extend_from_slice(mw.as_bytes());
        }
    }
}

/// Longest EDE extra text, so answers stay well inside a 512-byte payload.
pub const EDE_TEXT_MAX: usize = 200;

/// Length of `text` cut to at most [`EDE_TEXT_MAX`] bytes on a UTF-8 character boundary.
pub fn ede_text_len(text: &[u8]) -> usize {
    if text.len() <= EDE_TEXT_MAX {
        return text.len();
    }
    let mut cut = EDE_TEXT_MAX;
    while cut > 0 && (text[cut] & 0xc0) == 0x80 {
        cut -= 1;
    }
    cut
}

/// The sinkhole answer for `qtype`: one A or AAAA record, or `None` for every other type (the
/// caller answers NODATA: never an A record in answer to MX or TXT).
pub fn sinkhole_record(
    name: &Name,
    qtype: RecordType,
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<std::net::Ipv6Addr>,
    ttl: u32,
) -> Option<Record> {
    match qtype {
        RecordType::A => v4.map(|ip| Record::from_rdata(name.clone(), ttl, RData::A(A(ip)))),
        RecordType::AAAA => {
            v6.map(|ip| Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(ip))))
        }
        _ => None,
    }
}

/// The address in an A/AAAA record.
pub fn record_ip(r: &Record) -> Option<IpAddr> {
    match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ede_layout() {
        let EdnsOption::Unknown(code, data) = ede(EDE_BLOCKED, "feed x") else {
            panic!("not an unknown option")
        };
        assert_eq!(code, 15);
        assert_eq!(&data[..2], &[0, 15]);
        assert_eq!(&data[2..], b"feed x");
    }

    #[test]
    fn ede_text_capped_on_char_boundary() {
        let long = "é".repeat(300);
        let EdnsOption::Unknown(_, data) = ede(EDE_BLOCKED, &long) else {
            panic!()
        };
        assert!(data.len() <= 202);
        assert!(std::str::from_utf8(&data[2..]).is_ok());
    }

    #[test]
    fn sinkhole_only_for_a_and_aaaa() {
        let n = Name::from_ascii("evil.example.").unwrap();
        let v4 = Some(std::net::Ipv4Addr::UNSPECIFIED);
        let v6 = Some(std::net::Ipv6Addr::UNSPECIFIED);
        assert!(sinkhole_record(&n, RecordType::A, v4, v6, 60).is_some());
        assert!(sinkhole_record(&n, RecordType::AAAA, v4, v6, 60).is_some());
        for t in [
            RecordType::MX,
            RecordType::TXT,
            RecordType::HTTPS,
            RecordType::ANY,
        ] {
            assert!(sinkhole_record(&n, t, v4, v6, 60).is_none());
        }
    }
}
