//! `ast.literal_eval` over tokens, and `json.dumps` of what it returns.
//!
//! hetida reads `COMPONENT_INFO` and `TEST_WIRING_FROM_PY_FILE_IMPORT` with `ast.literal_eval`,
//! and writes default values of inputs with `json.dumps`. Both are reproduced here with
//! Python's semantics where they reach a revision: dict keys that compare equal merge (`1`,
//! `1.0` and `True` are one key; the first key stays, the last value wins), a number may carry
//! one sign, `+`/`-` between numbers only builds a complex number, `set()` is the one call
//! allowed, f-strings are refused, and unhashable keys are errors.
//!
//! Parsing and evaluating are two steps, as in Python: the parser builds a small tree of what
//! was written (parentheses vanish, as in Python's AST), and [`eval`] applies `literal_eval`'s
//! rules to it, so `-(1)` is a literal and `-(-1)` is not.

use std::fmt::Write as _;

use super::tokens::{Pos, StrValue, Tok, Token};
use crate::protocol::pyjson;

/// An evaluated literal and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    /// Where the expression starts; errors about the value point here.
    pub at: Pos,
    /// What `ast.literal_eval` returns for it.
    pub value: PyValue,
}

/// The values `ast.literal_eval` can return.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` or `False`; as a dict key, one with the ints 1 and 0.
    Bool(bool),
    /// An int of any size Python converts from text.
    Int(Int),
    /// Correctly rounded, as CPython reads it; too large a literal is infinity.
    Float(f64),
    /// An imaginary literal (`2j`), or a real number plus or minus one (`1 - 2j`).
    Complex {
        /// The real part.
        re: f64,
        /// The imaginary part.
        im: f64,
    },
    /// Escapes processed; adjacent literals joined.
    Str(String),
    /// Escapes processed; adjacent literals joined.
    Bytes(Vec<u8>),
    /// `...`
    Ellipsis,
    /// The items in order; an unparenthesized right-hand side (`X = 1, 2`) is one too.
    Tuple(Vec<Literal>),
    /// The items in order.
    List(Vec<Literal>),
    /// Without duplicates; in the order written (Python's order is by hash, but a set never
    /// reaches a revision: `json.dumps` refuses it).
    Set(Vec<Literal>),
    /// Without duplicate keys, in Python's dict order.
    Dict(Vec<(Literal, Literal)>),
}

/// A Python int of any size up to CPython's 4300-digit conversion limit, as canonical decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Int {
    /// The sign; never set for zero, so that equal ints are equal structs.
    pub negative: bool,
    /// No leading zeros; "0" for zero (which is never negative).
    pub digits: String,
}

/// CPython 3.11 refuses to convert ints of more decimal digits to or from text.
const MAX_INT_DIGITS: usize = 4300;

/// Bounds the recursion of the parser on chains of signs (brackets are bounded by the tokenizer).
const MAX_DEPTH: usize = 1000;

/// Why a value cannot be read as hetida reads it, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralError {
    /// The token or expression at fault.
    pub at: Pos,
    /// Python's message where there is one to match, else ours.
    pub reason: String,
    /// Python would evaluate it, but we cannot hold the value (see `StrValue::Unsupported`).
    pub unsupported: bool,
}

fn fail<T>(at: Pos, reason: impl Into<String>) -> Result<T, LiteralError> {
    Err(LiteralError {
        at,
        reason: reason.into(),
        unsupported: false,
    })
}

impl PyValue {
    /// Python's type name, for messages that match Python's.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Complex { .. } => "complex",
            PyValue::Str(_) => "str",
            PyValue::Bytes(_) => "bytes",
            PyValue::Ellipsis => "ellipsis",
            PyValue::Tuple(_) => "tuple",
            PyValue::List(_) => "list",
            PyValue::Set(_) => "set",
            PyValue::Dict(_) => "dict",
        }
    }

    /// The value of `key` in a dict (Python's `d[key]` for a str key).
    pub fn get(&self, key: &str) -> Option<&Literal> {
        match self {
            PyValue::Dict(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, PyValue::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The offending part of an unhashable value (Python's `unhashable type: 'list'`).
    pub fn unhashable(&self) -> Option<&'static str> {
        match self {
            PyValue::List(_) | PyValue::Set(_) | PyValue::Dict(_) => Some(self.type_name()),
            PyValue::Tuple(items) => items.iter().find_map(|i| i.value.unhashable()),
            _ => None,
        }
    }

    /// Python's `==` between hashable values.
    pub fn py_eq(&self, other: &PyValue) -> bool {
        if let (Some(a), Some(b)) = (Number::of(self), Number::of(other)) {
            return a.eq(&b);
        }
        match (self, other) {
            (PyValue::None, PyValue::None) | (PyValue::Ellipsis, PyValue::Ellipsis) => true,
            (PyValue::Str(a), PyValue::Str(b)) => a == b,
            (PyValue::Bytes(a), PyValue::Bytes(b)) => a == b,
            (PyValue::Tuple(a), PyValue::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.value.py_eq(&y.value))
            }
            _ => false,
        }
    }
}

/// A number as Python compares numbers: ints exactly, floats as they are, bools as 0 and 1.
enum Number<'a> {
    /// Exact; a bool comes as 0 or 1 (owned, as no `Int` of it exists).
    Int(std::borrow::Cow<'a, Int>),
    /// A float, compared exactly with an int of the same value.
    Float(f64),
    /// Real and imaginary part; equal to a real number when the imaginary part is 0.
    Complex(f64, f64),
}

impl<'a> Number<'a> {
    fn of(v: &'a PyValue) -> Option<Number<'a>> {
        Some(match v {
            PyValue::Bool(b) => Number::Int(std::borrow::Cow::Owned(Int::small(u64::from(*b)))),
            PyValue::Int(i) => Number::Int(std::borrow::Cow::Borrowed(i)),
            PyValue::Float(x) => Number::Float(*x),
            PyValue::Complex { re, im } => Number::Complex(*re, *im),
            _ => return None,
        })
    }

    fn eq(&self, other: &Number<'_>) -> bool {
        let split = |n: &Number<'_>| -> (Option<Int>, f64, f64) {
            match n {
                Number::Int(i) => (Some(i.as_ref().clone()), 0.0, 0.0),
                Number::Float(x) => (None, *x, 0.0),
                Number::Complex(re, im) => (None, *re, *im),
            }
        };
        let ((ai, ar, aim), (bi, br, bim)) = (split(self), split(other));
        if aim != bim {
            return false;
        }
        match (ai, bi) {
            (Some(a), Some(b)) => a == b,
            (Some(i), None) => Int::from_integral_f64(br).is_some_and(|f| f == i),
            (None, Some(i)) => Int::from_integral_f64(ar).is_some_and(|f| f == i),
            (None, None) => ar == br,
        }
    }
}

impl Int {
    fn small(v: u64) -> Int {
        Int {
            negative: false,
            digits: v.to_string(),
        }
    }

    /// Digits in `radix` (underscores removed) as an Int.
    fn parse(digits: &str, radix: u32, at: Pos) -> Result<Int, LiteralError> {
        // Little-endian limbs of 10^9.
        let mut limbs: Vec<u64> = vec![0];
        for c in digits.chars() {
            let d = u64::from(c.to_digit(radix).expect("the tokenizer checked the digits"));
            let mut carry = d;
            for limb in limbs.iter_mut() {
                let v = *limb * u64::from(radix) + carry;
                *limb = v % 1_000_000_000;
                carry = v / 1_000_000_000;
            }
            if carry > 0 {
                limbs.push(carry);
            }
        }
        let int = Int::from_limbs(&limbs);
        if int.digits.len() > MAX_INT_DIGITS {
            return fail(
                at,
                format!(
                    "Exceeds the limit ({MAX_INT_DIGITS} digits) for integer string conversion"
                ),
            );
        }
        Ok(int)
    }

    fn from_limbs(limbs: &[u64]) -> Int {
        let mut digits = String::new();
        let mut rest = limbs.iter().rev().skip_while(|l| **l == 0);
        match rest.next() {
            None => digits.push('0'),
            Some(top) => {
                digits.push_str(&top.to_string());
                for limb in rest {
                    write!(digits, "{limb:09}").expect("writing to a String");
                }
            }
        }
        Int {
            negative: false,
            digits,
        }
    }

    /// The exact integer value of an integral float (Python compares `1 == 1.0` exactly).
    fn from_integral_f64(x: f64) -> Option<Int> {
        if !x.is_finite() || x.fract() != 0.0 {
            return None;
        }
        let bits = x.abs().to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i64;
        let mantissa = if exponent == 0 {
            (bits & ((1 << 52) - 1)) << 1
        } else {
            (bits & ((1 << 52) - 1)) | (1 << 52)
        };
        let shift = exponent - 1075;
        let mut int = if shift >= 0 {
            let mut limbs = vec![mantissa % 1_000_000_000, mantissa / 1_000_000_000];
            for _ in 0..shift {
                let mut carry = 0;
                for limb in limbs.iter_mut() {
                    let v = *limb * 2 + carry;
                    *limb = v % 1_000_000_000;
                    carry = v / 1_000_000_000;
                }
                if carry > 0 {
                    limbs.push(carry);
                }
            }
            Int::from_limbs(&limbs)
        } else {
            Int::small(mantissa >> (-shift).min(63))
        };
        int.negative = x < 0.0 && int.digits != "0";
        Some(int)
    }

    fn negated(mut self) -> Int {
        self.negative = !self.negative && self.digits != "0";
        self
    }

    fn to_f64(&self) -> f64 {
        let magnitude: f64 = self
            .digits
            .parse()
            .expect("decimal digits parse as a float");
        if self.negative { -magnitude } else { magnitude }
    }

    /// The value, when it fits an `i64`.
    pub fn to_i64(&self) -> Option<i64> {
        let s = if self.negative {
            format!("-{}", self.digits)
        } else {
            self.digits.clone()
        };
        s.parse().ok()
    }

    /// The value, when it fits a `u64`: [`to_json`] takes positive ints up to 2**64 - 1.
    pub fn to_u64(&self) -> Option<u64> {
        if self.negative {
            None
        } else {
            self.digits.parse().ok()
        }
    }
}

impl std::fmt::Display for Int {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&self.digits)
    }
}

/// What was written, before `literal_eval`'s rules; parentheses leave no trace.
#[derive(Debug)]
/// Each node starts with where it was written.
enum Node {
    /// A number (unsigned: a sign is a `Unary`), string, `True`, `False`, `None` or `...`.
    Const(Pos, PyValue),
    /// `(a, b)`, or `a, b` at the top.
    Tuple(Pos, Vec<Node>),
    /// `[a, b]`.
    List(Pos, Vec<Node>),
    /// `{a, b}`, duplicates still in: `eval` drops them.
    Set(Pos, Vec<Node>),
    /// `{k: v}`, entries as written: `eval` merges equal keys.
    Dict(Pos, Vec<(Node, Node)>),
    /// `set()`, the one call `literal_eval` accepts.
    EmptySet(Pos),
    /// `-operand` (`true`) or `+operand`; `eval` allows it on a number only.
    Unary(Pos, bool, Box<Node>),
    /// `left + right` (`subtract` false) or `left - right`.
    Binary(Pos, Box<Node>, bool, Box<Node>),
}

impl Node {
    fn at(&self) -> Pos {
        match self {
            Node::Const(at, _)
            | Node::Tuple(at, _)
            | Node::List(at, _)
            | Node::Set(at, _)
            | Node::Dict(at, _)
            | Node::EmptySet(at)
            | Node::Unary(at, ..)
            | Node::Binary(at, ..) => *at,
        }
    }
}

/// `ast.literal_eval` of the expression `tokens` (an assignment's right-hand side, which may be
/// an unparenthesized tuple); `end` is where an error that finds no token points, such as
/// "expected an expression" (the caller passes the position just after the `=`).
pub fn literal_eval(tokens: &[Token], end: Pos) -> Result<Literal, LiteralError> {
    let mut parser = Parser {
        tokens,
        i: 0,
        end,
        depth: 0,
    };
    let node = parser.top()?;
    eval(&node)
}

/// Reads one expression, by recursive descent, into a [`Node`].
struct Parser<'a> {
    /// The expression's tokens: whatever is left after it is an error.
    tokens: &'a [Token],
    /// The next token to read.
    i: usize,
    /// Where an error that finds no token points (see [`literal_eval`]).
    end: Pos,
    /// Signs nested so far; at most [`MAX_DEPTH`], so that no input overflows the stack.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.i)
    }

    fn peek_op(&self, op: &str) -> bool {
        self.peek().is_some_and(|t| t.is_op(op))
    }

    fn here(&self) -> Pos {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), LiteralError> {
        if self.peek_op(op) {
            self.i += 1;
            Ok(())
        } else {
            self.unexpected(&format!("expected `{op}`"))
        }
    }

    fn unexpected<T>(&self, wanted: &str) -> Result<T, LiteralError> {
        match self.peek() {
            None => fail(self.end, format!("invalid syntax: {wanted}")),
            Some(t) => fail(t.at, not_a_literal(&t.tok, wanted)),
        }
    }

    fn top(&mut self) -> Result<Node, LiteralError> {
        if self.peek().is_none() {
            return fail(self.end, "invalid syntax: expected an expression");
        }
        let at = self.here();
        let first = self.expr()?;
        let node = if self.peek_op(",") {
            let mut items = vec![first];
            while self.peek_op(",") {
                self.i += 1;
                if self.peek().is_none() {
                    break;
                }
                items.push(self.expr()?);
            }
            Node::Tuple(at, items)
        } else {
            first
        };
        if self.peek().is_some() {
            return self.unexpected("expected the end of the statement");
        }
        Ok(node)
    }

    fn expr(&mut self) -> Result<Node, LiteralError> {
        let mut left = self.operand()?;
        while let Some(Tok::Op(op @ ("+" | "-"))) = self.peek().map(|t| &t.tok) {
            let subtract = *op == "-";
            self.i += 1;
            let right = self.operand()?;
            left = Node::Binary(left.at(), Box::new(left), subtract, Box::new(right));
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Node, LiteralError> {
        if let Some(Tok::Op(op @ ("+" | "-"))) = self.peek().map(|t| &t.tok) {
            let at = self.here();
            let negative = *op == "-";
            self.i += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return fail(at, "too many signs in a row");
            }
            let operand = self.operand()?;
            self.depth -= 1;
            return Ok(Node::Unary(at, negative, Box::new(operand)));
        }
        let atom = self.atom()?;
        if let Some(t) = self.peek()
            && (t.is_op("(") || t.is_op("[") || t.is_op("."))
        {
            return fail(
                t.at,
                "malformed node or string: calls, subscripts and attributes are not literals",
            );
        }
        Ok(atom)
    }

    fn atom(&mut self) -> Result<Node, LiteralError> {
        let Some(token) = self.peek() else {
            return self.unexpected("expected an expression");
        };
        let at = token.at;
        match &token.tok {
            Tok::Number(text) => {
                self.i += 1;
                Ok(Node::Const(at, number(text, at)?))
            }
            Tok::Str(_) => self.strings(),
            Tok::Name(name) => {
                let value = match name.as_str() {
                    "True" => PyValue::Bool(true),
                    "False" => PyValue::Bool(false),
                    "None" => PyValue::None,
                    "set"
                        if self.tokens.get(self.i + 1).is_some_and(|t| t.is_op("("))
                            && self.tokens.get(self.i + 2).is_some_and(|t| t.is_op(")")) =>
                    {
                        self.i += 3;
                        return Ok(Node::EmptySet(at));
                    }
                    _ => return self.unexpected("expected a literal"),
                };
                self.i += 1;
                Ok(Node::Const(at, value))
            }
            Tok::Op("...") => {
                self.i += 1;
                Ok(Node::Const(at, PyValue::Ellipsis))
            }
            Tok::Op("(") => {
                self.i += 1;
                if self.peek_op(")") {
                    self.i += 1;
                    return Ok(Node::Tuple(at, Vec::new()));
                }
                let first = self.expr()?;
                if self.peek_op(")") {
                    self.i += 1;
                    return Ok(first);
                }
                let mut items = vec![first];
                self.rest_of_items(&mut items, ")")?;
                Ok(Node::Tuple(at, items))
            }
            Tok::Op("[") => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek_op("]") {
                    self.i += 1;
                } else {
                    items.push(self.expr()?);
                    self.rest_of_items(&mut items, "]")?;
                }
                Ok(Node::List(at, items))
            }
            Tok::Op("{") => {
                self.i += 1;
                if self.peek_op("}") {
                    self.i += 1;
                    return Ok(Node::Dict(at, Vec::new()));
                }
                let first = self.expr()?;
                if !self.peek_op(":") {
                    let mut items = vec![first];
                    self.rest_of_items(&mut items, "}")?;
                    return Ok(Node::Set(at, items));
                }
                self.i += 1;
                let mut entries = vec![(first, self.expr()?)];
                loop {
                    if self.peek_op("}") {
                        self.i += 1;
                        break;
                    }
                    self.expect_op(",")?;
                    if self.peek_op("}") {
                        self.i += 1;
                        break;
                    }
                    let key = self.expr()?;
                    self.expect_op(":")?;
                    entries.push((key, self.expr()?));
                }
                Ok(Node::Dict(at, entries))
            }
            _ => self.unexpected("expected a literal"),
        }
    }

    /// After the first item: `, item` pairs, an optional trailing comma, then `close`.
    fn rest_of_items(&mut self, items: &mut Vec<Node>, close: &str) -> Result<(), LiteralError> {
        loop {
            if self.peek_op(close) {
                self.i += 1;
                return Ok(());
            }
            self.expect_op(",")?;
            if self.peek_op(close) {
                self.i += 1;
                return Ok(());
            }
            items.push(self.expr()?);
        }
    }

    /// Adjacent string literals are one constant; an f-string among them makes a `JoinedStr`,
    /// which `literal_eval` refuses.
    fn strings(&mut self) -> Result<Node, LiteralError> {
        let at = self.here();
        let mut text: Option<String> = None;
        let mut bytes: Option<Vec<u8>> = None;
        let mut formatted = false;
        while let Some(Tok::Str(v)) = self.peek().map(|t| &t.tok) {
            match v {
                StrValue::Str(s) => text.get_or_insert_with(String::new).push_str(s),
                StrValue::Bytes(b) => bytes.get_or_insert_with(Vec::new).extend_from_slice(b),
                StrValue::Format => formatted = true,
                StrValue::Unsupported(reason) => {
                    return Err(LiteralError {
                        at: self.here(),
                        reason: reason.clone(),
                        unsupported: true,
                    });
                }
            }
            self.i += 1;
        }
        if formatted {
            return fail(at, "malformed node or string: an f-string is not a literal");
        }
        // The tokenizer refused str next to bytes.
        Ok(Node::Const(
            at,
            match bytes {
                Some(b) => PyValue::Bytes(b),
                None => PyValue::Str(text.unwrap_or_default()),
            },
        ))
    }
}

fn not_a_literal(tok: &Tok, wanted: &str) -> String {
    match tok {
        Tok::Name(n) => format!(
            "malformed node or string: `{n}` is a name, not a literal (only strings, bytes, numbers, tuples, lists, dicts, sets, True, False and None are)"
        ),
        Tok::Op(op) => format!("invalid syntax or not a literal at `{op}`: {wanted}"),
        Tok::Number(n) => format!("invalid syntax at `{n}`: {wanted}"),
        Tok::Str(_) => format!("invalid syntax at a string: {wanted}"),
    }
}

/// A number token's value (the tokenizer has checked its form).
fn number(text: &str, at: Pos) -> Result<PyValue, LiteralError> {
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    let lower = plain.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            return Ok(PyValue::Int(Int::parse(digits, radix, at)?));
        }
    }
    if let Some(imaginary) = lower.strip_suffix('j') {
        return Ok(PyValue::Complex {
            re: 0.0,
            im: parse_float(imaginary),
        });
    }
    if lower.contains(['.', 'e']) {
        return Ok(PyValue::Float(parse_float(&lower)));
    }
    Ok(PyValue::Int(Int::parse(&lower, 10, at)?))
}

/// Correctly rounded, overflow to infinity: what CPython does with a float literal.
fn parse_float(text: &str) -> f64 {
    let text = if text.starts_with('.') {
        format!("0{text}")
    } else {
        text.to_owned()
    };
    text.parse()
        .expect("the tokenizer checked the float's form")
}

/// `literal_eval`'s `_convert`.
fn eval(node: &Node) -> Result<Literal, LiteralError> {
    let value = match node {
        Node::Const(_, v) => v.clone(),
        Node::Tuple(_, items) => PyValue::Tuple(items.iter().map(eval).collect::<Result<_, _>>()?),
        Node::List(_, items) => PyValue::List(items.iter().map(eval).collect::<Result<_, _>>()?),
        Node::EmptySet(_) => PyValue::Set(Vec::new()),
        Node::Set(_, items) => {
            let mut set: Vec<Literal> = Vec::with_capacity(items.len());
            for item in items {
                let item = eval(item)?;
                if let Some(kind) = item.value.unhashable() {
                    return fail(item.at, format!("unhashable type: '{kind}'"));
                }
                if !set.iter().any(|s| s.value.py_eq(&item.value)) {
                    set.push(item);
                }
            }
            PyValue::Set(set)
        }
        Node::Dict(_, entries) => {
            let mut dict: Vec<(Literal, Literal)> = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let (key, value) = (eval(key)?, eval(value)?);
                if let Some(kind) = key.value.unhashable() {
                    return fail(key.at, format!("unhashable type: '{kind}'"));
                }
                match dict.iter_mut().find(|(k, _)| k.value.py_eq(&key.value)) {
                    Some(entry) => entry.1 = value,
                    None => dict.push((key, value)),
                }
            }
            PyValue::Dict(dict)
        }
        Node::Binary(at, left, subtract, right) => {
            let l = signed_number(left)?;
            let r = number_operand(right)?;
            let real = match &l {
                PyValue::Int(i) => Some(i.to_f64()),
                PyValue::Float(x) => Some(*x),
                _ => None,
            };
            match (real, r) {
                (Some(real), PyValue::Complex { re, im }) => {
                    if real.is_infinite() && matches!(l, PyValue::Int(_)) {
                        return fail(*at, "int too large to convert to float");
                    }
                    if *subtract {
                        PyValue::Complex {
                            re: real - re,
                            im: -im,
                        }
                    } else {
                        PyValue::Complex { re: real + re, im }
                    }
                }
                _ => {
                    return fail(
                        *at,
                        "malformed node or string: `+` and `-` between numbers only build a complex number (real + imaginary)",
                    );
                }
            }
        }
        Node::Unary(..) => signed_number(node)?,
    };
    Ok(Literal {
        at: node.at(),
        value,
    })
}

/// `_convert_signed_num`: a number with at most one sign.
fn signed_number(node: &Node) -> Result<PyValue, LiteralError> {
    let Node::Unary(_, negative, operand) = node else {
        return number_operand(node);
    };
    let v = number_operand(operand)?;
    if !negative {
        return Ok(v);
    }
    Ok(match v {
        PyValue::Int(i) => PyValue::Int(i.negated()),
        PyValue::Float(x) => PyValue::Float(-x),
        PyValue::Complex { re, im } => PyValue::Complex { re: -re, im: -im },
        _ => unreachable!("number_operand returns numbers"),
    })
}

/// `_convert_num`: a number constant, not a bool.
fn number_operand(node: &Node) -> Result<PyValue, LiteralError> {
    match node {
        Node::Const(_, v @ (PyValue::Int(_) | PyValue::Float(_) | PyValue::Complex { .. })) => {
            Ok(v.clone())
        }
        other => fail(
            other.at(),
            "malformed node or string: only a number may stand here (after a sign, or beside `+`/`-`)",
        ),
    }
}

/// `json.dumps(value)` with Python's defaults, or the `TypeError` it raises.
pub fn json_dumps(lit: &Literal) -> Result<String, LiteralError> {
    let mut out = Vec::new();
    dump(lit, &mut out)?;
    Ok(String::from_utf8(out).expect("the JSON writer writes ASCII"))
}

fn dump(lit: &Literal, out: &mut Vec<u8>) -> Result<(), LiteralError> {
    match &lit.value {
        PyValue::None => out.extend_from_slice(b"null"),
        PyValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        PyValue::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        PyValue::Float(x) => out.extend_from_slice(pyjson::float_repr(*x).as_bytes()),
        PyValue::Str(s) => pyjson::write_str(out, s),
        PyValue::Tuple(items) | PyValue::List(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                dump(item, out)?;
            }
            out.push(b']');
        }
        PyValue::Dict(entries) => {
            out.push(b'{');
            for (n, (key, value)) in entries.iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                let key_text = match &key.value {
                    PyValue::Str(s) => s.clone(),
                    PyValue::Float(x) => pyjson::float_repr(*x),
                    PyValue::Bool(b) => b.to_string(),
                    PyValue::None => "null".to_owned(),
                    PyValue::Int(i) => i.to_string(),
                    other => {
                        return fail(
                            key.at,
                            format!(
                                "keys must be str, int, float, bool or None, not {}",
                                other.type_name()
                            ),
                        );
                    }
                };
                pyjson::write_str(out, &key_text);
                out.extend_from_slice(b": ");
                dump(value, out)?;
            }
            out.push(b'}');
        }
        other => {
            return fail(
                lit.at,
                format!(
                    "Object of type {} is not JSON serializable",
                    other.type_name()
                ),
            );
        }
    }
    Ok(())
}

/// The JSON value a literal stands for where hetida hands it to pydantic, or why there is none.
pub fn to_json(lit: &Literal) -> Result<serde_json::Value, LiteralError> {
    use serde_json::Value;
    Ok(match &lit.value {
        PyValue::None => Value::Null,
        PyValue::Bool(b) => Value::Bool(*b),
        PyValue::Int(i) => match (i.to_i64(), i.to_u64()) {
            (Some(v), _) => Value::from(v),
            (None, Some(v)) => Value::from(v),
            _ => return fail(lit.at, format!("the integer {i} is too large here")),
        },
        PyValue::Float(x) => match serde_json::Number::from_f64(*x) {
            Some(n) => Value::Number(n),
            None => {
                return fail(
                    lit.at,
                    format!("{} is not a valid value here", pyjson::float_repr(*x)),
                );
            }
        },
        PyValue::Str(s) => Value::String(s.clone()),
        PyValue::Tuple(items) | PyValue::List(items) => {
            Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        PyValue::Dict(entries) => {
            let mut map = serde_json::Map::with_capacity(entries.len());
            for (key, value) in entries {
                let PyValue::Str(k) = &key.value else {
                    return fail(
                        key.at,
                        format!("keys must be strings here, found {}", key.value.type_name()),
                    );
                };
                map.insert(k.clone(), to_json(value)?);
            }
            Value::Object(map)
        }
        other => {
            return fail(
                lit.at,
                format!("a {} is not a valid value here", other.type_name()),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::tokens::logical_lines;
    use super::*;

    /// `ast.literal_eval` of the right-hand side of `X = <src>`.
    fn eval_src(src: &str) -> Result<Literal, LiteralError> {
        let lines = logical_lines(&format!("X = {src}\n")).expect("tokenizes");
        let tokens: Vec<Token> = lines.into_iter().flat_map(|l| l.tokens).collect();
        literal_eval(
            &tokens[2..],
            Pos {
                line: 99,
                column: 1,
            },
        )
    }

    /// `json.dumps(ast.literal_eval(src))`, or the error's line, column and reason.
    fn dumps(src: &str) -> Result<String, (usize, usize, String)> {
        eval_src(src)
            .and_then(|l| json_dumps(&l))
            .map_err(|e| (e.at.line, e.at.column, e.reason))
    }

    fn int(src: &str) -> Int {
        match eval_src(src).unwrap().value {
            PyValue::Int(i) => i,
            other => panic!("{src}: {other:?}"),
        }
    }

    /// Expected values printed by CPython 3.11: `json.dumps(ast.literal_eval(src))`.
    #[test]
    fn literals_evaluate_and_dump_as_in_python() {
        for (src, python) in [
            ("'a' \"b\" '''c''' \"\"\"d\"\"\"", r#""abcd""#),
            (
                "('con'\n  'cat'  # comment\n  'enated')",
                r#""concatenated""#,
            ),
            ("'a' \\\n 'b'", r#""ab""#),
            (
                r"'\x41\u00e9\U0001F600\101\n\t\\\'\d'",
                r#""A\u00e9\ud83d\ude00A\n\t\\'\\d""#,
            ),
            (r"r'\n' R'\x'", r#""\\n\\x""#),
            ("1_000", "1000"),
            ("0x_1f", "31"),
            ("0o17", "15"),
            ("0B1_0", "2"),
            ("0_0", "0"),
            ("-0", "0"),
            ("+7", "7"),
            ("-(1)", "-1"),
            (
                "340282366920938463463374607431768211455",
                "340282366920938463463374607431768211455",
            ),
            (
                "0xffffffffffffffffffffffffffffffffff",
                "87112285931760246646623899502532662132735",
            ),
            (
                "-340282366920938463463374607431768211456",
                "-340282366920938463463374607431768211456",
            ),
            ("1.", "1.0"),
            (".5e-3", "0.0005"),
            ("1_0.0_1e1_0", "100100000000.0"),
            ("1E+5", "100000.0"),
            ("1.e5", "100000.0"),
            ("1.E-2", "0.01"),
            ("0e0", "0.0"),
            ("0.0e-0_1", "0.0"),
            ("00.5", "0.5"),
            ("0123e1", "1230.0"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("-1e-400", "-0.0"),
            ("0.1", "0.1"),
            ("1e16", "1e+16"),
            ("True, False, None", "[true, false, null]"),
            ("()", "[]"),
            ("(1,)", "[1]"),
            ("((1),)", "[1]"),
            ("(((1)))", "1"),
            ("1, 2,", "[1, 2]"),
            ("[1, [2, (3,)], {}, [],]", "[1, [2, [3]], {}, []]"),
            (
                "{\n  'b': 1,  # comment\n  'a': {'x': [1.5, None]},\n}",
                r#"{"b": 1, "a": {"x": [1.5, null]}}"#,
            ),
            ("{'a': 1, 'b': 2, 'a': 3}", r#"{"a": 3, "b": 2}"#),
            ("{1: 'a', True: 'b', 1.0: 'c'}", r#"{"1": "c"}"#),
            (
                "{2.5: 1, False: 2, None: 3, -4: 4}",
                r#"{"2.5": 1, "false": 2, "null": 3, "-4": 4}"#,
            ),
            ("{'é': 'ü€'}", r#"{"\u00e9": "\u00fc\u20ac"}"#),
        ] {
            assert_eq!(dumps(src).as_deref(), Ok(python), "{src}");
        }
    }

    #[test]
    fn values_json_cannot_hold_are_type_errors() {
        for (src, reason) in [
            ("1+2j", "Object of type complex is not JSON serializable"),
            ("-1-2j", "Object of type complex is not JSON serializable"),
            ("1e5j", "Object of type complex is not JSON serializable"),
            ("1.j", "Object of type complex is not JSON serializable"),
            (
                "1_2.3_4j",
                "Object of type complex is not JSON serializable",
            ),
            ("set()", "Object of type set is not JSON serializable"),
            ("set ( )", "Object of type set is not JSON serializable"),
            ("{1, 2}", "Object of type set is not JSON serializable"),
            ("...", "Object of type ellipsis is not JSON serializable"),
            ("b'x' B'y'", "Object of type bytes is not JSON serializable"),
            (
                "{(1, 2): 3}",
                "keys must be str, int, float, bool or None, not tuple",
            ),
        ] {
            assert_eq!(dumps(src).unwrap_err().2, reason, "{src}");
        }
    }

    #[test]
    fn non_literals_are_errors_with_their_position() {
        for (src, column, reason) in [
            ("-(-1)", 7, "only a number may stand here"),
            ("-True", 6, "only a number may stand here"),
            ("1+2", 5, "only build a complex number"),
            ("1 + 2j + 3j", 5, "only a number may stand here"),
            ("2j + 1", 5, "only build a complex number"),
            ("1 + -2j", 9, "only a number may stand here"),
            ("f'a'", 5, "an f-string is not a literal"),
            ("'a' f'b'", 5, "an f-string is not a literal"),
            ("x", 5, "`x` is a name, not a literal"),
            ("[1, *a]", 9, "not a literal at `*`"),
            ("{**{}}", 6, "not a literal at `**`"),
            ("{1: 2, 3}", 13, "expected `:`"),
            ("set([1])", 5, "`set` is a name, not a literal"),
            (
                "{}.get",
                7,
                "calls, subscripts and attributes are not literals",
            ),
            (
                "'abc'[0]",
                10,
                "calls, subscripts and attributes are not literals",
            ),
            ("1 if 1 else 2", 7, "`if` is a name, not a literal"),
            ("{'a': 1} | {}", 14, "expected the end of the statement"),
            ("{[1]: 2}", 6, "unhashable type: 'list'"),
            ("{(1, [2]): 2}", 6, "unhashable type: 'list'"),
            ("{1, [2]}", 9, "unhashable type: 'list'"),
            ("not True", 5, "`not` is a name, not a literal"),
        ] {
            let (line, col, message) = dumps(src).unwrap_err();
            assert_eq!((line, col), (1, column), "{src}: {message}");
            assert!(message.contains(reason), "{src}: {message}");
        }
        let (line, _, message) = dumps("{\n'a': 1,\n'b': foo,\n}").unwrap_err();
        assert_eq!(line, 3, "{message}");
        assert_eq!(
            eval_src("").unwrap_err().reason,
            "invalid syntax: expected an expression"
        );
        // Deep input is an error, not a stack overflow.
        assert!(
            eval_src(&format!("{}1", "-".repeat(999)))
                .unwrap_err()
                .reason
                .contains("only a number")
        );
        assert_eq!(
            eval_src(&format!("{}1", "-".repeat(1001)))
                .unwrap_err()
                .reason,
            "too many signs in a row"
        );
        let nested = format!("{}1{}", "[".repeat(199), "]".repeat(199));
        assert!(eval_src(&nested).is_ok());
        assert!(
            eval_src(&"9".repeat(4301))
                .unwrap_err()
                .reason
                .contains("4300 digits"),
            "CPython's conversion limit"
        );
    }

    #[test]
    fn ints_are_canonical() {
        assert_eq!(int("-0"), Int::small(0));
        assert_eq!(int("-0x10").to_string(), "-16");
        assert_eq!(int("000").to_string(), "0");
    }

    #[test]
    fn integral_floats_have_their_exact_value() {
        for (x, exact) in [
            (0.0, "0"),
            (-3.0, "-3"),
            (9007199254740993.0, "9007199254740992"),
            (1e22, "10000000000000000000000"),
            (1e23, "99999999999999991611392"),
        ] {
            assert_eq!(Int::from_integral_f64(x).unwrap().to_string(), exact);
        }
        assert_eq!(Int::from_integral_f64(0.5), None);
        // 2**53 + 1 is no float: as a dict key it stays apart from 2.0**53 + 1 (which is 2**53).
        assert_eq!(
            dumps("{9007199254740993: 'a', 9007199254740993.0: 'b'}").unwrap(),
            r#"{"9007199254740993": "a", "9007199254740992.0": "b"}"#
        );
        assert_eq!(
            dumps("{9007199254740992: 'a', 9007199254740992.0: 'b'}").unwrap(),
            r#"{"9007199254740992": "b"}"#
        );
    }

    #[test]
    fn json_values_for_pydantic() {
        let v = to_json(
            &eval_src("{'a': [1, 2.5, None, True], 'b': (18446744073709551615,)}").unwrap(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, 2.5, null, true], "b": [18446744073709551615u64]})
        );
        for (src, reason) in [
            ("b'x'", "a bytes is not a valid value here"),
            ("{1: 2}", "keys must be strings here, found int"),
            (
                "18446744073709551616",
                "the integer 18446744073709551616 is too large here",
            ),
            ("1e400", "Infinity is not a valid value here"),
        ] {
            assert_eq!(
                to_json(&eval_src(src).unwrap()).unwrap_err().reason,
                reason,
                "{src}"
            );
        }
    }
}
