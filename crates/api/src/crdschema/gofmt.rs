//! Numbers printed the way Go's `fmt` prints them in upstream's messages (`%v` of a `float64`
//! is `1e+06`, not `1000000`), and the number values upstream's decoder produces.

use serde_json::{Number, Value};

/// Go's `%v` of a `float64`: the shortest representation that reads back, in exponent form
/// (`1e+06`) when the decimal exponent is below -4 or at least 6.
pub(super) fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, e.g. `1.5e6`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        return go_exp(mantissa, exp);
    }
    let digits = mantissa.chars().filter(char::is_ascii_digit).count() as i32;
    let precision = (digits - 1 - exp).max(0) as usize;
    format!("{f:.precision$}")
}

fn go_exp(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// The value upstream holds for a JSON number: `int64` when it is one, else `float64`.
pub(super) enum GoNumber {
    Int(i64),
    Float(f64),
}

pub(super) fn number(n: &Number) -> GoNumber {
    match n.as_i64() {
        Some(i) => GoNumber::Int(i),
        None => GoNumber::Float(n.as_f64().unwrap_or(0.0)),
    }
}

/// A float as a `Value` that prints like Go's `%v` where it can (`3` for `3.0`).
pub(super) fn float_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Whether a float is a JSON integer (go-swag's `IsFloat64AJSONInteger`).
pub(super) fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f == f.trunc() {
        return true;
    }
    let g = f.trunc();
    let diff = (f - g).abs();
    diff / (f.abs() + g.abs()).min(f64::MAX) < 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(10.0), "10");
        assert_eq!(float(1e6), "1e+06");
        assert_eq!(float(123456.0), "123456");
        assert_eq!(float(1234567.0), "1.234567e+06");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(-2.5), "-2.5");
    }
}
