//! Event signatures in the forms users copy, and their one canonical form (DESIGN §2,
//! refined in `docs/indexer.md`).
//!
//! Accepted: with or without the leading `event` keyword and a trailing `;`; any spacing;
//! `uint`/`int` for `uint256`/`int256`; tuples inline as Solidity and viem write them
//! (`(uint64 a, address b) p`), as ethers writes them (`tuple(uint64 a, address b) p`) or
//! without component names (`(uint64,address) p`), nested, with array suffixes
//! (`(uint64 a, address b)[] ps`) and `indexed`.
//!
//! Canonical: `event Name(T indexed name, T name)` — alloy's `Event::full_signature()` of
//! the event with its tuple components unnamed: tuples as `tuple(T1, T2)` (components
//! separated by `, `, no names), `indexed` and top-level names kept, one space between
//! words. Two declarations of an event are the same when their canonical forms are equal:
//! component names and spelling never matter. The canonical form parses again, with
//! alloy's parser as with this one.

use std::fmt::Write as _;

/// A signature that is not an event declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event signature: {message} at character {position}")]
pub struct SignatureError {
    /// Offset (in characters) of the problem in the trimmed text.
    pub position: usize,
    /// What was expected.
    pub message: String,
}

/// The canonical form of an event signature written in any accepted form.
pub fn canonical_event(text: &str) -> Result<String, SignatureError> {
    let mut p = Parser { chars: text.trim().trim_end_matches(';').trim_end().chars().collect(), at: 0 };
    p.skip_space();
    let mut name = p.ident().ok_or_else(|| p.error("expected the event name"))?;
    if name == "event" && p.peek_space_then_ident() {
        p.skip_space();
        name = p.ident().ok_or_else(|| p.error("expected the event name"))?;
    }
    p.skip_space();
    let mut out = format!("event {name}{}", p.params(true)?);
    p.skip_space();
    if let Some(word) = p.ident() {
        if word != "anonymous" {
            return Err(p.error("expected the end of the signature"));
        }
        out.push_str(" anonymous");
        p.skip_space();
    }
    if p.at < p.chars.len() {
        return Err(p.error("expected the end of the signature"));
    }
    Ok(out)
}

/// The canonical form of `text`, or `text` itself (trimmed) when it does not parse: for
/// comparing stored signatures, which were canonical when they were written.
pub fn canonical_or_same(text: &str) -> String {
    canonical_event(text).unwrap_or_else(|_| text.trim().to_owned())
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn error(&self, message: &str) -> SignatureError {
        SignatureError { position: self.at, message: message.to_owned() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: char) -> Result<(), SignatureError> {
        if self.eat(c) { Ok(()) } else { Err(self.error(&format!("expected `{c}`"))) }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// After the keyword `event`: whitespace and then a name (not `event(…)`, an event
    /// named `event`).
    fn peek_space_then_ident(&self) -> bool {
        let rest = &self.chars[self.at..];
        let space = rest.iter().take_while(|c| c.is_whitespace()).count();
        space > 0 && rest.get(space).is_some_and(|c| is_ident_start(*c))
    }

    fn ident(&mut self) -> Option<String> {
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        let start = self.at;
        while self.peek().is_some_and(|c| is_ident_start(c) || c.is_ascii_digit()) {
            self.at += 1;
        }
        Some(self.chars[start..self.at].iter().collect())
    }

    /// A type: elementary, or a tuple (`(…)` or `tuple(…)`) of component types with
    /// optional names (dropped); then array suffixes.
    fn ty(&mut self) -> Result<String, SignatureError> {
        let mut out = if self.peek() == Some('(') {
            self.tuple()?
        } else {
            let word = self.ident().ok_or_else(|| self.error("expected a type"))?;
            let save = self.at;
            self.skip_space();
            if word == "tuple" && self.peek() == Some('(') {
                self.tuple()?
            } else {
                self.at = save;
                match word.as_str() {
                    "uint" => "uint256".to_owned(),
                    "int" => "int256".to_owned(),
                    _ => word,
                }
            }
        };
        loop {
            let save = self.at;
            self.skip_space();
            if !self.eat('[') {
                self.at = save;
                return Ok(out);
            }
            self.skip_space();
            out.push('[');
            while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                out.push(d);
                self.at += 1;
            }
            self.skip_space();
            self.expect(']')?;
            out.push(']');
        }
    }

    fn tuple(&mut self) -> Result<String, SignatureError> {
        Ok(format!("tuple{}", self.params(false)?))
    }

    /// A parenthesized parameter list: the event's (`top`: `indexed` and names kept) or a
    /// tuple's (names dropped, at least one component).
    fn params(&mut self, top: bool) -> Result<String, SignatureError> {
        self.expect('(')?;
        let mut out = String::from("(");
        self.skip_space();
        if self.eat(')') {
            return if top {
                Ok("()".into())
            } else {
                Err(self.error("a tuple needs at least one component"))
            };
        }
        loop {
            let ty = self.ty()?;
            self.skip_space();
            let mut word = self.ident();
            let indexed = word.as_deref() == Some("indexed");
            if indexed {
                if !top {
                    return Err(self.error("only top-level parameters can be indexed"));
                }
                self.skip_space();
                word = self.ident();
            }
            if !out.ends_with('(') {
                out.push_str(", ");
            }
            out.push_str(&ty);
            if indexed {
                out.push_str(" indexed");
            }
            if let Some(w) = word.filter(|_| top) {
                let _ = write!(out, " {w}");
            }
            self.skip_space();
            if self.eat(')') {
                break;
            }
            self.expect(',')?;
            self.skip_space();
        }
        out.push(')');
        Ok(out)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copied_form_gives_one_canonical_string() {
        let canonical = "event Foo(tuple(uint64, address) p, uint256 indexed n)";
        for form in [
            "event Foo((uint64 a, address b) p, uint indexed n)",
            "Foo((uint64 a, address b) p, uint256 indexed n)",
            "event Foo(tuple(uint64 a, address b) p, uint256 indexed n);",
            "event Foo((uint64,address) p, uint indexed n)",
            "event Foo(tuple(uint64, address) p, uint256 indexed n)",
            "  event   Foo ( ( uint64  a , address b )  p ,uint   indexed   n )  ",
            "event Foo(tuple (uint64 x,address y) p, uint256 indexed n)",
        ] {
            assert_eq!(canonical_event(form).as_deref(), Ok(canonical), "{form}");
        }
    }

    #[test]
    fn arrays_nesting_indexed_tuples_and_unnamed_parameters() {
        let cases = [
            ("event Foo((uint64 a, address b)[] ps)", "event Foo(tuple(uint64, address)[] ps)"),
            ("event Foo((uint64 a, address b) indexed p)", "event Foo(tuple(uint64, address) indexed p)"),
            (
                "event Foo(((uint a, bool b) x, string s)[2][] p)",
                "event Foo(tuple(tuple(uint256, bool), string)[2][] p)",
            ),
            (
                "event Foo(uint[] , int [3] b, bytes32 indexed)",
                "event Foo(uint256[], int256[3] b, bytes32 indexed)",
            ),
            ("Foo()", "event Foo()"),
            ("event Foo(uint a) anonymous", "event Foo(uint256 a) anonymous"),
            ("event event(uint a)", "event event(uint256 a)"),
            ("event(uint a)", "event event(uint256 a)"),
            (
                "event Transfer(address indexed from, address indexed to, uint256 value)",
                "event Transfer(address indexed from, address indexed to, uint256 value)",
            ),
        ];
        for (form, want) in cases {
            assert_eq!(canonical_event(form).as_deref(), Ok(want), "{form}");
            // Canonical is a fixed point.
            assert_eq!(canonical_event(want).as_deref(), Ok(want), "{want}");
        }
    }

    #[test]
    fn malformed_signatures_say_where() {
        for bad in [
            "",
            "event",
            "event Foo",
            "event Foo(uint a",
            "event Foo(uint a,)",
            "event Foo(() p)",
            "event Foo((uint a indexed) p)",
            "event Foo(uint a) extra",
            "event Foo(uint[x] a)",
            "event Foo(uint a b)",
        ] {
            assert!(canonical_event(bad).is_err(), "{bad:?} is rejected");
        }
        let err = canonical_event("event Foo(uint a b)").expect_err("two names");
        assert_eq!(err.position, 17, "{err}");
        assert_eq!(canonical_or_same("  not a signature "), "not a signature");
    }
}
