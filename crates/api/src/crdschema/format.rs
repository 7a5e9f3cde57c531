//! The string formats upstream checks (`format: uuid`, `date-time`, `ipv4`, ...).
//!
//! Upstream keeps a format only if it is one of the formats it supports (after removing `-`
//! from the name, so `date-time` is `datetime`) and drops it otherwise; integers keep only
//! `int32`/`int64` and numbers only `float`/`double`. A kept string format is then checked
//! with kube-openapi's checker for it. `isbn`, `isbn10`, `isbn13`, `creditcard`, `rgbcolor`
//! and `duration` are known but not checked here (every string passes).

use super::regex::Regex;
use std::net::Ipv6Addr;

/// The string formats upstream supports, normalized (no `-`).
const STRING_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// The format upstream keeps for a schema of type `ty` declaring `format`, or `""`.
pub(super) fn effective<'a>(ty: &[&str], format: &'a str) -> &'a str {
    if format.is_empty() {
        return "";
    }
    let single = if ty.len() == 1 { ty[0] } else { "" };
    let keep = match single {
        "" | "string" => STRING_FORMATS.contains(&format.replace('-', "").as_str()),
        "integer" => format == "int32" || format == "int64",
        "number" => format == "float" || format == "double",
        _ => false,
    };
    if keep { format } else { "" }
}

/// Whether kube-openapi's registry has a checker for strings of this format.
pub(super) fn is_string_format(format: &str) -> bool {
    STRING_FORMATS.contains(&format.replace('-', "").as_str())
}

fn re(pattern: &str, s: &str) -> bool {
    Regex::new(pattern).is_ok_and(|r| r.is_match(s))
}

const UUID: &str = "(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
const UUID3: &str = "(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
const UUID4: &str = "(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$";
const UUID5: &str = "(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$";
const HOSTNAME: &str = r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$";
const BASE64: &str =
    r"^(?:[A-Za-z0-9+\/]{4})*(?:[A-Za-z0-9+\/]{2}==|[A-Za-z0-9+\/]{3}=|[A-Za-z0-9+\/]{4})$";
const TIME: &str = r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$";

/// Whether `s` is valid in `format` (a format [`is_string_format`] accepts).
pub(super) fn check(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "uuid" => re(UUID, s),
        "uuid3" => re(UUID3, s),
        "uuid4" => re(UUID4, s),
        "uuid5" => re(UUID5, s),
        "hostname" => hostname(s),
        "email" => email(s),
        "ipv4" => parse_ip(s) && s.contains('.'),
        "ipv6" => parse_ip(s) && s.contains(':'),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "byte" => re(BASE64, s),
        "date" => date(s),
        "datetime" => date_time(s),
        "bsonobjectid" => s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()),
        "hexcolor" => re("^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        "ssn" => re(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", s),
        "uri" => uri(s),
        _ => true,
    }
}

fn hostname(s: &str) -> bool {
    re(HOSTNAME, s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// Go's `net.ParseIP` (leading zeros allowed in IPv4, as Kubernetes' sloppy parser does).
fn parse_ip(s: &str) -> bool {
    ipv4(s) || (s.contains(':') && s.parse::<Ipv6Addr>().is_ok())
}

fn ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let max = if ipv4(ip) {
        32
    } else if ip.contains(':') && ip.parse::<Ipv6Addr>().is_ok() {
        128
    } else {
        return false;
    };
    !bits.is_empty()
        && bits.len() <= 3
        && bits.chars().all(|c| c.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|b| b <= max)
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets, colon- or dash-separated pairs or dotted quads.
fn mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let sizes = [6, 8, 20];
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() > 1 && sizes.contains(&parts.len()) && parts.iter().all(|p| hex(p, 2)) {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    sizes.contains(&(parts.len() * 2)) && parts.iter().all(|p| hex(p, 4))
}

/// RFC 3339 `full-date`, as Go's `time.Parse("2006-01-02")` reads it.
fn date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// kube-openapi's `IsDateTime`: a date, `t` (any case), and a time with an optional fraction and
/// a `z` or `±hh:mm` offset.
fn date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !date(parts[0]) {
        return false;
    }
    let time = parts[1];
    if !re(TIME, time) {
        return false;
    }
    let field = |r: std::ops::Range<usize>| time.get(r).unwrap_or("99");
    field(0..2) <= "23" && field(3..5) <= "59" && field(6..8) <= "59"
}

/// Go's `net/mail.ParseAddress`, for the common forms: `local@domain` or
/// `Display Name <local@domain>`.
fn email(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(open), true) => &s[open + 1..s.len() - 1],
        (None, false) => s,
        _ => return false,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let dot_atom =
        |p: &str| !p.is_empty() && p.split('.').all(|a| !a.is_empty() && a.chars().all(atext));
    let local_ok =
        dot_atom(local) || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"'));
    let domain_ok = dot_atom(domain) || (domain.starts_with('[') && domain.ends_with(']'));
    local_ok && domain_ok
}

/// Go's `url.ParseRequestURI`, approximately: an absolute URI or an absolute path, without
/// spaces or control characters.
fn uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(check("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(!check("uuid", "123e4567"));
        assert!(check("date-time", "2024-01-02T03:04:05Z"));
        assert!(check("date-time", "2024-01-02T03:04:05.123+02:00"));
        assert!(!check("date-time", "2024-01-02 03:04:05"));
        assert!(!check("date-time", "2024-13-02T03:04:05Z"));
        assert!(check("date", "2024-02-29"));
        assert!(!check("date", "2023-02-29"));
        assert!(check("email", "a.b@example.com"));
        assert!(check("email", "Jo <jo@example.com>"));
        assert!(!check("email", "not-an-email"));
        assert!(check("hostname", "example.com"));
        assert!(check("hostname", "localhost"));
        assert!(!check("hostname", "-bad"));
        assert!(!check("hostname", "exa mple.com"));
        assert!(check("ipv4", "10.0.0.1"));
        assert!(!check("ipv4", "10.0.0.256"));
        assert!(!check("ipv4", "::1"));
        assert!(check("ipv6", "::1"));
        assert!(!check("ipv6", "10.0.0.1"));
        assert!(check("cidr", "10.0.0.0/8"));
        assert!(check("cidr", "fd00::/64"));
        assert!(!check("cidr", "10.0.0.0/33"));
        assert!(check("byte", "aGVsbG8="));
        assert!(!check("byte", "hello!"));
        assert!(!check("byte", ""));
        assert!(check("mac", "00:1a:2b:3c:4d:5e"));
        assert!(!check("mac", "00:1a:2b"));
        assert!(check("uri", "https://example.com/x"));
        assert!(!check("uri", "example"));
    }

    #[test]
    fn kept_formats() {
        assert_eq!(effective(&["integer"], "int32"), "int32");
        assert_eq!(effective(&["integer"], "uuid"), "");
        assert_eq!(effective(&["string"], "date-time"), "date-time");
        assert_eq!(effective(&["string"], "int32"), "");
        assert_eq!(effective(&["number"], "double"), "double");
        assert_eq!(effective(&["boolean"], "byte"), "");
    }
}
