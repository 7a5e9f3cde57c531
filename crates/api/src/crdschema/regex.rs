//! The `pattern` keyword's regular expressions, and the string formats upstream checks with
//! expressions: the `regex` crate (RE2 syntax, as Go's `regexp`, searched anywhere in the
//! string, linear in the input), with a syntax error worded as Go's
//! (`error parsing regexp: missing closing ): `(``).
//!
//! Differences from Go left as they are: `\d`, `\w`, `\s` and `\b` follow Unicode here where
//! Go's are ASCII-only.

use regex_syntax::ast::{self, Ast, ErrorKind, RepetitionKind, RepetitionRange};

/// Go's limit on a counted repetition.
const MAX_REPEAT: u32 = 1000;

/// A compiled expression.
#[derive(Debug)]
pub(super) struct Regex(regex::Regex);

impl Regex {
    /// Compiles `pattern`, or says why not as Go does.
    pub(super) fn new(pattern: &str) -> Result<Regex, String> {
        let parsed = ast::parse::Parser::new().parse(pattern);
        let tree = parsed.map_err(|e| go_error(pattern, &e))?;
        if let Some(e) = refused_by_go(&tree, pattern) {
            return Err(e);
        }
        regex::Regex::new(pattern)
            .map(Regex)
            .map_err(|e| format!("error parsing regexp: {e}"))
    }

    /// Whether the expression matches somewhere in `s`.
    pub(super) fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

fn go_message(code: &str, fragment: &str) -> String {
    format!("error parsing regexp: {code}: `{fragment}`")
}

/// Go's words for a syntax error, with the part of the pattern Go quotes.
fn go_error(pattern: &str, e: &ast::Error) -> String {
    let span = e.span();
    let at = &pattern[span.start.offset..span.end.offset];
    // A missing operand's span is empty: Go quotes the operator there.
    let op_end = span.start.offset + from_char_len(pattern, span.start.offset);
    let from = &pattern[span.start.offset..];
    let before = &pattern[..span.start.offset];
    let (code, fragment) = match e.kind() {
        ErrorKind::GroupUnclosed => ("missing closing )", pattern),
        ErrorKind::GroupUnopened => ("unexpected )", pattern),
        ErrorKind::ClassUnclosed => ("missing closing ]", from),
        ErrorKind::RepetitionMissing if before.ends_with(['*', '+', '?', '}']) => {
            let op = &pattern[span.start.offset - 1..op_end];
            return go_message("invalid nested repetition operator", op);
        }
        ErrorKind::RepetitionMissing => (
            "missing argument to repetition operator",
            &pattern[span.start.offset..op_end],
        ),
        ErrorKind::EscapeUnrecognized | ErrorKind::ClassEscapeInvalid => {
            ("invalid escape sequence", at)
        }
        ErrorKind::ClassRangeInvalid => ("invalid character class range", at),
        ErrorKind::RepetitionCountInvalid => ("invalid repeat count", at),
        ErrorKind::EscapeUnexpectedEof => ("trailing backslash at end of expression", ""),
        ErrorKind::UnsupportedLookAround | ErrorKind::UnsupportedBackreference => {
            let end = from.char_indices().nth(3).map_or(from.len(), |(i, _)| i);
            ("invalid or unsupported Perl syntax", &from[..end])
        }
        ErrorKind::GroupNameInvalid
        | ErrorKind::GroupNameEmpty
        | ErrorKind::GroupNameUnexpectedEof
        | ErrorKind::GroupNameDuplicate { .. } => ("invalid named capture", at),
        other => return format!("error parsing regexp: {other}: `{at}`"),
    };
    go_message(code, fragment)
}

/// The length of the character at `at`, 0 at the end.
fn from_char_len(pattern: &str, at: usize) -> usize {
    pattern[at..].chars().next().map_or(0, char::len_utf8)
}

/// What Go refuses that the `regex` crate takes: a repetition of a repetition (`a**`) and a
/// counted repetition over 1000.
fn refused_by_go(tree: &Ast, pattern: &str) -> Option<String> {
    match tree {
        Ast::Repetition(rep) => {
            if let Ast::Repetition(inner) = &*rep.ast {
                let ops = &pattern[inner.op.span.start.offset..rep.op.span.end.offset];
                return Some(go_message("invalid nested repetition operator", ops));
            }
            let over = match &rep.op.kind {
                RepetitionKind::Range(
                    RepetitionRange::Exactly(n) | RepetitionRange::AtLeast(n),
                ) => *n > MAX_REPEAT,
                RepetitionKind::Range(RepetitionRange::Bounded(m, n)) => {
                    *m > MAX_REPEAT || *n > MAX_REPEAT
                }
                _ => false,
            };
            if over {
                let op = &pattern[rep.op.span.start.offset..rep.op.span.end.offset];
                return Some(go_message("invalid repeat count", op));
            }
            refused_by_go(&rep.ast, pattern)
        }
        Ast::Group(g) => refused_by_go(&g.ast, pattern),
        Ast::Alternation(a) => a.asts.iter().find_map(|t| refused_by_go(t, pattern)),
        Ast::Concat(c) => c.asts.iter().find_map(|t| refused_by_go(t, pattern)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Regex::new(p).unwrap().is_match(s)
    }

    #[test]
    fn patterns_match_anywhere_unless_anchored() {
        assert!(m("abc", "xxabcxx"));
        assert!(!m("^abc$", "xxabcxx"));
        assert!(m("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "my-name"));
        assert!(!m("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "My-name"));
        assert!(m(r"^\d{3}-\d{2}$", "123-45"));
        assert!(m("(?i)^abc$", "AbC"));
        assert!(m("^[[:alpha:]]+$", "abc"));
        assert!(m(r"^\p{L}+$", "héllo"));
        assert!(!m("a.c", "a\nc"));
        assert!(m("(?s)a.c", "a\nc"));
        assert!(m("^(?P<n>a)b$", "ab"));
    }

    #[test]
    fn errors_are_worded_like_go() {
        let e = |p: &str| Regex::new(p).unwrap_err();
        assert_eq!(e("(abc"), "error parsing regexp: missing closing ): `(abc`");
        assert_eq!(e("abc)"), "error parsing regexp: unexpected ): `abc)`");
        assert_eq!(e("[abc"), "error parsing regexp: missing closing ]: `[abc`");
        assert_eq!(
            e("*a"),
            "error parsing regexp: missing argument to repetition operator: `*`"
        );
        assert_eq!(
            e("a**"),
            "error parsing regexp: invalid nested repetition operator: `**`"
        );
        assert_eq!(
            e(r"\q"),
            "error parsing regexp: invalid escape sequence: `\\q`"
        );
        assert_eq!(
            e("[z-a]"),
            "error parsing regexp: invalid character class range: `z-a`"
        );
        assert_eq!(
            e("a{1001}"),
            "error parsing regexp: invalid repeat count: `{1001}`"
        );
        assert_eq!(
            e("a\\"),
            "error parsing regexp: trailing backslash at end of expression: ``"
        );
        assert_eq!(
            e("(?=a)"),
            "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
        );
    }

    #[test]
    fn large_inputs_stay_linear() {
        let re = Regex::new("^(a+)+$").unwrap();
        let s = "a".repeat(5000) + "b";
        assert!(!re.is_match(&s));
    }
}
