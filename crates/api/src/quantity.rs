//! Resource quantities (`500m`, `1.5Gi`, `2e3`): upstream's syntax, parsed to an exact value.
//!
//! The grammar is upstream's: an optionally signed decimal number, then one suffix: a binary SI
//! suffix (`Ki Mi Gi Ti Pi Ei`), a decimal SI suffix (`n u m "" k M G T P E`) or a decimal
//! exponent (`e3`, `E-2`). Values are kept in nano-units as an `i128`, exact for every quantity
//! a cluster deals in (CPU millicores, memory bytes).

/// The message upstream gives for text that is not a quantity.
pub const SYNTAX_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Parses upstream's quantity syntax.
    pub fn parse(text: &str) -> Result<Quantity, String> {
        let s = text.trim();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(split);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(SYNTAX_ERROR.into());
        }
        // Nano-units per unit of the number, and a power of ten to apply.
        let (factor, exp10): (i128, i32) = match suffix {
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "" => (1, 0),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            e if e.starts_with(['e', 'E']) => {
                let exp = &e[1..];
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SYNTAX_ERROR.into());
                }
                (1, exp.parse::<i32>().map_err(|_| SYNTAX_ERROR.to_string())?)
            }
            _ => return Err(SYNTAX_ERROR.into()),
        };
        let too_large = || "quantity is too large".to_string();
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        // value = mantissa * 10^(exp10 - len(frac)) * factor, in nano-units (10^9).
        let exp = exp10 - frac.len() as i32 + 9;
        let mut nanos = mantissa.checked_mul(factor).ok_or_else(too_large)?;
        if exp >= 0 {
            nanos = nanos
                .checked_mul(10i128.checked_pow(exp as u32).ok_or_else(too_large)?)
                .ok_or_else(too_large)?;
        } else {
            // Below a nano-unit: round up, as upstream rounds up to its smallest scale.
            let div = 10i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
            nanos = nanos / div + i128::from(nanos % div != 0);
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// Thousandths of a unit, rounded up (CPU millicores).
    pub fn milli(&self) -> i128 {
        let n = self.nanos;
        n / 1_000_000 + i128::from(n % 1_000_000 > 0)
    }

    /// Whole units, rounded up (memory bytes).
    pub fn units(&self) -> i128 {
        let n = self.nanos;
        n / 1_000_000_000 + i128::from(n % 1_000_000_000 > 0)
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

/// Parses a quantity as it appears in JSON: a string, or a bare number (which upstream accepts).
pub fn from_json(v: &serde_json::Value) -> Result<Quantity, String> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => Err(SYNTAX_ERROR.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms_parse_exactly() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(q("500m").milli(), 500);
        assert_eq!(q("1").milli(), 1000);
        assert_eq!(q("1.5").milli(), 1500);
        assert_eq!(q("0.1").milli(), 100);
        assert_eq!(q(".5").milli(), 500);
        assert_eq!(q("64Mi").units(), 64 << 20);
        assert_eq!(q("1Gi").units(), 1 << 30);
        assert_eq!(q("1.5Gi").units(), 3 << 29);
        assert_eq!(q("2k").units(), 2000);
        assert_eq!(q("1e3").units(), 1000);
        assert_eq!(q("1E-3").milli(), 1);
        assert_eq!(q("100n").milli(), 1, "rounded up");
        assert_eq!(q("+3").units(), 3);
        assert!(q("-1").is_negative());
        assert!(q("1Ki") < q("1Mi"));
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            "", "Mi", "1.2.3", "64Mx", "1 Gi", "abc", "1e", "1e+", "--1", "1KiB", ".",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(Quantity::parse("64Mx").unwrap_err(), SYNTAX_ERROR);
        assert!(Quantity::parse("99999999999999999999999999999999999999999E").is_err());
        assert!(from_json(&serde_json::json!(2)).is_ok());
        assert!(from_json(&serde_json::json!(true)).is_err());
    }
}
