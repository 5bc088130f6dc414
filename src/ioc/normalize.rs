//! Refanging and host-name normalisation shared by every feed parser.
//!
//! Pipeline of [`normalize_value`]: [`refang`] (conservative, bracketed forms and `hxxp`/`fxp`
//! schemes only), trim, strip `scheme://`, userinfo, path/query/fragment, port and the `[ ]` around an
//! IPv6 literal, strip one trailing dot, lowercase, IDNA (UTS-46) to A-labels, then validate.
//! A plain lowercase ASCII host name (the common case in big lists) takes a fast path that only
//! validates and copies it once.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest host name accepted (presentation form without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label accepted.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a value could not be normalised to a host name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// Nothing left after stripping scheme, path, port, dot...
    #[error("empty name")]
    Empty,
    /// `foo..bar`, `.foo`, or `foo..`.
    #[error("empty label")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// More than 253 bytes in total.
    #[error("name longer than 253 bytes")]
    NameTooLong,
    /// A character other than letters, digits, `-`, `_` and `.`.
    #[error("invalid character {0:?}")]
    InvalidChar(char),
    /// The last label is all digits but the whole is not a valid IPv4 address (`1.2.3.999`).
    #[error("numeric top-level label (neither a host name nor a valid IPv4 address)")]
    NumericTld,
    /// The UTS-46 (IDNA) conversion rejected the name.
    #[error("IDNA conversion failed")]
    Idna,
    /// A `:port` suffix that is not a number.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// Something that looks like an IPv6 literal but does not parse.
    #[error("invalid IPv6 address")]
    InvalidIpv6,
    /// [`normalize_host`] was given an IP address.
    #[error("is an IP address, not a host name")]
    IpAddress,
}

/// A normalised IOC value: a host name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostOrIp {
    /// Lowercase A-label host name, no trailing dot.
    Host(String),
    /// An IP address (from a bare address, `[v6]`, `ip:port` or a URL with an IP host).
    Ip(IpAddr),
}

/// Undo the common *conservative* defanging conventions.
///
/// * `[.]` `(.)` `{.}` `[dot]` `(dot)` `{dot}` (any case) → `.`
/// * `[:]` `(:)` `{:}` → `:`, `[://]` `(://)` `{://}` → `://`
/// * `hxxp`/`hXXp` (any case) → `http`, `fxp` → `ftp`, only at the start of a token and only
///   when a scheme separator follows (`hxxps://`, `hxxp[:]//`, ...), so a host such as
///   `myhxxpsite.example` is left alone.
///
/// Deliberately *not* handled: the bare word `dot`, `DOT`, "any 4/5-letter scheme", one-sided
/// brackets. Returns the input unchanged (borrowed) when nothing needs replacing.
pub fn refang(raw: &str) -> Cow<'_, str> {
    let b = raw.as_bytes();
    let has_bracket = b.iter().any(|&c| matches!(c, b'[' | b'(' | b'{'));
    let has_scheme = b.contains(&b':') && contains_defanged_scheme(b);
    if !has_bracket && !has_scheme {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        let token_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if token_start && let Some((repl, n)) = defanged_scheme(&b[i..]) {
            out.push_str(repl);
            i += n;
            changed = true;
            continue;
        }
        if let Some(close) = match b[i] {
            b'[' => Some(b']'),
            b'(' => Some(b')'),
            b'{' => Some(b'}'),
            _ => None,
        } {
            let mut hit = None;
            for (pat, repl) in [(".", "."), ("dot", "."), (":", ":"), ("://", "://")] {
                let end = i + 1 + pat.len();
                if end < b.len()
                    && b[end] == close
                    && b[i + 1..end].eq_ignore_ascii_case(pat.as_bytes())
                {
                    hit = Some((repl, end + 1 - i));
                    break;
                }
            }
            if let Some((repl, n)) = hit {
                out.push_str(repl);
                i += n;
                changed = true;
                continue;
            }
        }
        // Copy one whole character (i is always on a char boundary: we only skip ASCII patterns).
        match raw.get(i..).and_then(|s| s.chars().next()) {
            Some(c) => {
                out.push(c);
                i += c.len_utf8();
            }
            None => break,
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw)
    }
}

fn contains_defanged_scheme(b: &[u8]) -> bool {
    b.windows(3).any(|w| {
        (w[0].eq_ignore_ascii_case(&b'x') && w[1].eq_ignore_ascii_case(&b'x'))
            || (w[0].eq_ignore_ascii_case(&b'f') && w[1].eq_ignore_ascii_case(&b'x'))
    })
}

/// `hxxp`/`fxp` at `b`, followed by an optional `s` and a scheme separator (`:`, `[`, `(`).
fn defanged_scheme(b: &[u8]) -> Option<(&'static str, usize)> {
    let (repl, n) = if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"hxxp") {
        ("http", 4)
    } else if b.len() >= 3 && b[..3].eq_ignore_ascii_case(b"fxp") {
        ("ftp", 3)
    } else {
        return None;
    };
    let mut j = n;
    if b.get(j).is_some_and(|c| c.eq_ignore_ascii_case(&b's')) {
        j += 1;
    }
    matches!(b.get(j), Some(b':' | b'[' | b'(' | b'{')).then_some((repl, n))
}

/// Normalise a feed value (bare host, defanged host, URL, `host:port`, IP, `ip:port`, `[v6]:port`)
/// and classify it as a host name or an IP address.
pub fn normalize_value(raw: &str) -> Result<HostOrIp, NormalizeError> {
    if let Some(res) = normalize_plain(raw.as_bytes()) {
        return res;
    }
    let refanged = refang(raw);
    let mut rest = refanged.trim();
    // Scheme.
    if let Some(i) = rest.find("://") {
        let scheme = &rest[..i];
        if !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            rest = &rest[i + 3..];
        }
    } else if let Some(r) = rest.strip_prefix("//") {
        rest = r;
    }
    // Authority ends at the path, query or fragment.
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let mut auth = &rest[..end];
    // Userinfo.
    if let Some(at) = auth.rfind('@') {
        auth = &auth[at + 1..];
    }
    // Bracketed IPv6, optionally with a port.
    if let Some(inner) = auth.strip_prefix('[') {
        let close = inner.find(']').ok_or(NormalizeError::InvalidIpv6)?;
        let after = &inner[close + 1..];
        if !after.is_empty() {
            check_port(after.strip_prefix(':').ok_or(NormalizeError::InvalidIpv6)?)?;
        }
        return inner[..close]
            .parse::<Ipv6Addr>()
            .map(|a| HostOrIp::Ip(IpAddr::V6(a)))
            .map_err(|_| NormalizeError::InvalidIpv6);
    }
    // Bare IPv6 (two or more colons).
    if auth.bytes().filter(|&c| c == b':').count() >= 2 {
        return auth
            .parse::<Ipv6Addr>()
            .map(|a| HostOrIp::Ip(IpAddr::V6(a)))
            .map_err(|_| NormalizeError::InvalidIpv6);
    }
    // Port.
    if let Some(c) = auth.find(':') {
        check_port(&auth[c + 1..])?;
        auth = &auth[..c];
    }
    finish_host(auth)
}

/// Normalise a host name (see [`normalize_value`]); IP addresses are an error here.
///
/// `normalize_host("hxxps://Bücher[.]example:8443/x")` is `Ok("xn--bcher-kva.example")`.
pub fn normalize_host(raw: &str) -> Result<String, NormalizeError> {
    match normalize_value(raw)? {
        HostOrIp::Host(h) => Ok(h),
        HostOrIp::Ip(_) => Err(NormalizeError::IpAddress),
    }
}

/// Normalise a DNS name written in a zone file or similar: no refanging and no URL stripping,
/// only one trailing dot, lowercase, IDNA and validation. Numeric names are an error.
pub(crate) fn normalize_dns_name(name: &str) -> Result<String, NormalizeError> {
    let n = to_ascii_name(name)?;
    if last_label_numeric(&n) {
        return Err(NormalizeError::NumericTld);
    }
    Ok(n)
}

fn check_port(p: &str) -> Result<(), NormalizeError> {
    if p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(NormalizeError::InvalidPort(p.chars().take(32).collect()))
    }
}

/// Bytes allowed in an already-normalised host name: `[a-z0-9_.-]`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = true;
        c += 1;
    }
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    t[b'-' as usize] = true;
    t[b'_' as usize] = true;
    t[b'.' as usize] = true;
    t
};

/// Fast path: `Some` when `b` (after one trailing dot) is non-empty and made only of lowercase
/// host-name bytes `[a-z0-9_.-]`, validated with one table scan plus a `memchr` over the dots;
/// `None` means "use the general path" (uppercase, non-ASCII, brackets, scheme, port, whitespace,
/// comment markers...). The only allocation is the returned name.
#[inline]
pub(crate) fn normalize_plain(b: &[u8]) -> Option<Result<HostOrIp, NormalizeError>> {
    let t = b.strip_suffix(b".").unwrap_or(b);
    if t.is_empty() || !is_plain_host(t) {
        return None;
    }
    if t.len() > MAX_NAME_LEN {
        return Some(Err(NormalizeError::NameTooLong));
    }
    let mut start = 0;
    for end in memchr::memchr_iter(b'.', t).chain(std::iter::once(t.len())) {
        let len = end - start;
        if len == 0 {
            return Some(Err(NormalizeError::EmptyLabel));
        }
        if len > MAX_LABEL_LEN {
            return Some(Err(NormalizeError::LabelTooLong));
        }
        start = end + 1;
    }
    // All bytes are ASCII, so this cannot fail.
    let name = std::str::from_utf8(t).ok()?;
    Some(if last_label_numeric(name) {
        name.parse::<Ipv4Addr>()
            .map(|a| HostOrIp::Ip(IpAddr::V4(a)))
            .map_err(|_| NormalizeError::NumericTld)
    } else {
        Ok(HostOrIp::Host(name.to_owned()))
    })
}

/// Lowercase hostname characters only (so no `*`, no uppercase, no whitespace).
#[inline]
fn is_plain_host(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| PLAIN[c as usize])
}

fn last_label_numeric(name: &str) -> bool {
    let b = name.as_bytes();
    let last = memchr::memrchr(b'.', b).map_or(b, |i| &b[i + 1..]);
    !last.is_empty() && last.iter().all(u8::is_ascii_digit)
}

fn finish_host(h: &str) -> Result<HostOrIp, NormalizeError> {
    let name = to_ascii_name(h)?;
    if last_label_numeric(&name) {
        return name
            .parse::<Ipv4Addr>()
            .map(|a| HostOrIp::Ip(IpAddr::V4(a)))
            .map_err(|_| NormalizeError::NumericTld);
    }
    Ok(HostOrIp::Host(name))
}

/// Strip one trailing dot, lowercase / IDNA-encode, validate. Returns the owned A-label form.
fn to_ascii_name(h: &str) -> Result<String, NormalizeError> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() {
        return Err(NormalizeError::Empty);
    }
    if is_plain_host(h.as_bytes()) {
        validate_labels(h)?;
        return Ok(h.to_owned());
    }
    if h.is_ascii() {
        if let Some(c) = h
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(NormalizeError::InvalidChar(c));
        }
        validate_labels(h)?;
        return Ok(h.to_ascii_lowercase());
    }
    let ascii = idna::domain_to_ascii_cow(h.as_bytes(), idna::AsciiDenyList::URL)
        .map_err(|_| NormalizeError::Idna)?;
    let a = ascii.strip_suffix('.').unwrap_or(&ascii);
    if a.is_empty() {
        return Err(NormalizeError::Empty);
    }
    if let Some(c) = a
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NormalizeError::InvalidChar(c));
    }
    validate_labels(a)?;
    Ok(a.to_owned())
}

/// Label and total length checks on an ASCII name without a trailing dot.
fn validate_labels(name: &str) -> Result<(), NormalizeError> {
    if name.len() > MAX_NAME_LEN {
        return Err(NormalizeError::NameTooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NormalizeError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NormalizeError::LabelTooLong);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> String {
        normalize_host(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn refang_conservative_forms() {
        assert_eq!(refang("evil[.]example"), "evil.example");
        assert_eq!(refang("evil(.)example{.}com"), "evil.example.com");
        assert_eq!(
            refang("evil[DOT]example(dot)com{Dot}net"),
            "evil.example.com.net"
        );
        assert_eq!(refang("hxxps[:]//a[.]b"), "https://a.b");
        assert_eq!(refang("hXXp(:)//a.b"), "http://a.b");
        assert_eq!(refang("HXXPS://a.b"), "httpS://a.b");
        assert_eq!(refang("fxp://a.b"), "ftp://a.b");
        assert_eq!(refang("http[://]a.b"), "http://a.b");
        assert_eq!(refang("1.2.3[.]4"), "1.2.3.4");
        // Untouched.
        assert!(matches!(refang("evil.example"), Cow::Borrowed(_)));
        assert_eq!(refang("foodotcom"), "foodotcom");
        assert_eq!(refang("dot-example.online"), "dot-example.online");
        assert_eq!(refang("foo[.com"), "foo[.com");
        assert_eq!(refang("myhxxpsite.example"), "myhxxpsite.example");
        assert_eq!(refang("a.hxxp.b:80"), "a.hxxp.b:80");
        assert_eq!(refang("bü[.]cher"), "bü.cher");
        assert_eq!(refang("["), "[");
        assert_eq!(refang("[.]"), ".");
    }

    #[test]
    fn normalize_hosts() {
        assert_eq!(host("evil.example"), "evil.example");
        assert_eq!(host("Evil.Example."), "evil.example");
        assert_eq!(host("  evil[.]example  "), "evil.example");
        assert_eq!(
            host("hxxps://user:pw@Evil[.]Example:8443/path?q=1#f"),
            "evil.example"
        );
        assert_eq!(host("evil.example:443"), "evil.example");
        assert_eq!(host("//evil.example/x"), "evil.example");
        assert_eq!(host("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(host("BÜCHER.example."), "xn--bcher-kva.example");
        assert_eq!(host("hxxp://bücher[.]example/x"), "xn--bcher-kva.example");
        assert_eq!(host("_dmarc.evil.example"), "_dmarc.evil.example");
        assert_eq!(host("localhost"), "localhost");
        assert_eq!(host("xn--bcher-kva.example"), "xn--bcher-kva.example");
    }

    #[test]
    fn normalize_rejects() {
        use NormalizeError::*;
        assert_eq!(normalize_host("foo..bar"), Err(EmptyLabel));
        assert_eq!(normalize_host(".foo"), Err(EmptyLabel));
        assert_eq!(normalize_host("foo.."), Err(EmptyLabel));
        assert_eq!(normalize_host(""), Err(Empty));
        assert_eq!(normalize_host("  "), Err(Empty));
        assert_eq!(normalize_host("http://"), Err(Empty));
        assert_eq!(normalize_host("."), Err(Empty));
        assert_eq!(normalize_host("foo bar"), Err(InvalidChar(' ')));
        assert_eq!(normalize_host("*.foo"), Err(InvalidChar('*')));
        assert_eq!(
            normalize_host("foo.com:abc"),
            Err(InvalidPort("abc".into()))
        );
        assert_eq!(normalize_host(&"a".repeat(64)), Err(LabelTooLong));
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(normalize_host(&long), Err(NameTooLong));
        assert_eq!(normalize_host("1.2.3.999"), Err(NumericTld));
        assert_eq!(normalize_host("1.2.3.4"), Err(IpAddress));
        assert_eq!(normalize_host("[::1"), Err(InvalidIpv6));
    }

    #[test]
    fn classify_ips() {
        let ip = |s: &str| match normalize_value(s) {
            Ok(HostOrIp::Ip(a)) => a.to_string(),
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(ip("198.51.100.7"), "198.51.100.7");
        assert_eq!(ip("198.51.100.7:4444"), "198.51.100.7");
        assert_eq!(ip("198[.]51[.]100[.]7"), "198.51.100.7");
        assert_eq!(ip("hxxp://198.51.100.7:8080/x.exe"), "198.51.100.7");
        assert_eq!(ip("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(ip("2001:DB8:0::1"), "2001:db8::1");
        assert_eq!(ip("http://[2001:db8::1]/x"), "2001:db8::1");
        assert_eq!(ip("::"), "::");
        assert_eq!(
            normalize_value("evil.example"),
            Ok(HostOrIp::Host("evil.example".into()))
        );
    }

    #[test]
    fn fast_path_agrees_with_general_path() {
        for s in [
            "a.example",
            "a.example.",
            "a..b",
            "a.",
            "a..",
            "1.2.3.4",
            "1.2.3.999",
            "1.2.3.4.",
            "x1.2",
            "_a.b",
            "-a.b",
            ".a",
            "..",
            "a",
        ] {
            let fast = normalize_plain(s.as_bytes());
            let slow = to_ascii_name(s).and_then(|n| finish_host(&n));
            if let Some(f) = fast {
                assert_eq!(f, slow, "{s}");
            }
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(
            normalize_plain(long.as_bytes()),
            Some(Err(NormalizeError::NameTooLong))
        );
        assert_eq!(
            normalize_plain("a".repeat(64).as_bytes()),
            Some(Err(NormalizeError::LabelTooLong))
        );
        assert_eq!(normalize_plain(b"A.example"), None);
        assert_eq!(normalize_plain(b""), None);
        assert_eq!(normalize_plain(b"."), None);
    }

    #[test]
    fn dns_names() {
        assert_eq!(
            normalize_dns_name("Evil.Example."),
            Ok("evil.example".into())
        );
        assert_eq!(
            normalize_dns_name("1.2.3.4"),
            Err(NormalizeError::NumericTld)
        );
        assert_eq!(
            normalize_dns_name("a:b"),
            Err(NormalizeError::InvalidChar(':'))
        );
    }
}
