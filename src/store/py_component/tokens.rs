//! Just enough of Python 3.11's tokenizer to find a module's top-level statements and to read
//! the literals in them.
//!
//! hetida parses a component file with `ast.parse` and libcst before it reads anything from it,
//! so a file Python cannot tokenize is refused. Tokenizing the whole file keeps that: every
//! lexical error (unterminated string, bad escape, unbalanced bracket, stray character, bad
//! number, mixed bytes and str) is found wherever it is; a string whose value we cannot hold
//! is an error only where that value is needed. Errors of the grammar outside the
//! statements we read are not: we do not parse Python, and the runtime reports them when the
//! component runs.

use std::fmt;

/// 1-based line and column (in characters) of a token, as Python reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (not bytes).
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A token, as far as reading literals and finding statements needs to tell them apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier or keyword as written: `True`, `None`, `lambda` and `if` are names too.
    Name(String),
    /// As written (underscores and all); checked here, evaluated by `literal`.
    Number(String),
    /// A string literal, with its prefix taken into account.
    Str(StrValue),
    /// An operator or delimiter: `(`, `=`, `**=`, `...`, ...
    Op(&'static str),
}

/// A string literal's value after escape processing.
#[derive(Debug, Clone, PartialEq)]
pub enum StrValue {
    /// A str literal's value.
    Str(String),
    /// A bytes literal's value.
    Bytes(Vec<u8>),
    /// An f-string: never a literal for `ast.literal_eval`, so its value is not needed.
    Format,
    /// Valid Python whose value a Rust `String` cannot hold or we cannot compute (a lone
    /// surrogate, a `\N{...}` escape); an error only where the value is needed, so that such a
    /// string elsewhere in a component does not refuse the file.
    Unsupported(String),
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Where its first character is; errors and warnings about it point here.
    pub at: Pos,
}

impl Token {
    /// Whether it is the operator or delimiter `op`.
    pub fn is_op(&self, op: &str) -> bool {
        matches!(self.tok, Tok::Op(o) if o == op)
    }

    /// Whether it is the name (or keyword) `name`.
    pub fn is_name(&self, name: &str) -> bool {
        matches!(&self.tok, Tok::Name(n) if n == name)
    }
}

/// One logical line: a statement line, joined across brackets and backslash continuations.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalLine {
    /// Indentation in characters (a tab counts one, a form feed starts over); all that is
    /// asked of it is whether it is 0, as for a statement of the module itself.
    pub indent: usize,
    /// The line's tokens, without comments and line breaks; never empty.
    pub tokens: Vec<Token>,
}

/// What Python's tokenizer would reject, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where Python reports it.
    pub at: Pos,
    /// Python's message, as CPython 3.11 words it.
    pub reason: String,
}

fn error<T>(at: Pos, reason: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        at,
        reason: reason.into(),
    })
}

/// Python's limit of nested brackets (`MAXLEVEL`): deeper is "too many nested parentheses".
const MAX_NESTING: usize = 200;

/// Longest first, so that matching takes the longest operator (`**=` before `**` before `*`).
const OPERATORS: [&str; 46] = [
    "**=", "//=", ">>=", "<<=", "...", "->", ":=", "**", "//", ">>", "<<", "<=", ">=", "==", "!=",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", "(", ")", "[", "]", "{", "}", ",", ":",
    ";", ".", "+", "-", "*", "/", "%", "&", "|", "^", "~", "<", ">", "=",
];
const AT: &str = "@";

/// Splits Python source (newlines already `\n`) into logical lines of tokens.
pub fn logical_lines(source: &str) -> Result<Vec<LogicalLine>, SyntaxError> {
    let lines = Lexer::new(source).run()?;
    for line in &lines {
        check_string_concatenation(&line.tokens)?;
    }
    Ok(lines)
}

/// What the start of a physical line outside any statement holds.
enum LineStart {
    /// The end of the source.
    End,
    /// A blank or comment-only line, already consumed.
    Blank,
    /// The first token of a statement, after `indent` characters of indentation.
    Statement { indent: usize },
}

/// One pass over the source, keeping the position Python would report and the open brackets.
struct Lexer {
    /// The source as characters, so that columns count characters, as Python's do.
    chars: Vec<char>,
    /// Index of the next character in `chars`.
    i: usize,
    /// 1-based line of `chars[i]`.
    line: usize,
    /// 0-based column of `chars[i]`.
    column: usize,
    /// Open brackets with where they were opened.
    brackets: Vec<(char, Pos)>,
}

impl Lexer {
    fn new(source: &str) -> Lexer {
        Lexer {
            chars: source.chars().collect(),
            i: 0,
            line: 1,
            column: 0,
            brackets: Vec::new(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column + 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 0;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn run(mut self) -> Result<Vec<LogicalLine>, SyntaxError> {
        let mut lines = Vec::new();
        let mut current: Option<LogicalLine> = None;
        loop {
            if current.is_none() {
                match self.line_start() {
                    LineStart::End => break,
                    LineStart::Blank => continue,
                    LineStart::Statement { indent } => {
                        current = Some(LogicalLine {
                            indent,
                            tokens: Vec::new(),
                        })
                    }
                }
            }
            let at = self.pos();
            let Some(c) = self.peek(0) else { break };
            let tokens = &mut current.as_mut().expect("a line is open").tokens;
            match c {
                ' ' | '\t' | '\u{c}' => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                '\n' => {
                    self.bump();
                    if self.brackets.is_empty() {
                        lines.extend(current.take().filter(|l| !l.tokens.is_empty()));
                    }
                }
                '\\' => self.line_continuation(at)?,
                _ => tokens.push(self.token(c, at)?),
            }
        }
        if let Some(&(open, at)) = self.brackets.last() {
            return error(at, format!("'{open}' was never closed"));
        }
        lines.extend(current.filter(|l| !l.tokens.is_empty()));
        Ok(lines)
    }

    /// The start of a line outside any statement: measures its indentation and skips the line
    /// if it is blank or only a comment. A form feed resets the column, as in CPython.
    fn line_start(&mut self) -> LineStart {
        let mut indent = 0;
        while let Some(c @ (' ' | '\t' | '\u{c}')) = self.peek(0) {
            indent = if c == '\u{c}' { 0 } else { indent + 1 };
            self.bump();
        }
        match self.peek(0) {
            None => LineStart::End,
            Some('\n') => {
                self.bump();
                LineStart::Blank
            }
            Some('#') => {
                self.skip_comment();
                LineStart::Blank
            }
            Some(_) => LineStart::Statement { indent },
        }
    }

    /// A backslash (at `at`) joins the next physical line to this logical line; it must end
    /// the line.
    fn line_continuation(&mut self, at: Pos) -> Result<(), SyntaxError> {
        self.bump();
        match self.peek(0) {
            Some('\n') => {
                self.bump();
                Ok(())
            }
            None => error(at, "unexpected EOF while parsing"),
            Some(_) => error(at, "unexpected character after line continuation character"),
        }
    }

    /// The token starting with `c` (not whitespace, a comment or a line break).
    fn token(&mut self, c: char, at: Pos) -> Result<Token, SyntaxError> {
        match c {
            '\'' | '"' => self.string("", at),
            '0'..='9' => self.number(at),
            '.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => self.number(at),
            c if c == '_' || unicode_ident::is_xid_start(c) => self.name_or_prefixed_string(at),
            '(' | '[' | '{' => {
                if self.brackets.len() >= MAX_NESTING {
                    return error(at, "too many nested parentheses");
                }
                self.brackets.push((c, at));
                self.operator(at)
            }
            ')' | ']' | '}' => self.closing_bracket(c, at),
            '\0' => error(at, "source code cannot contain null bytes"),
            _ => self.operator(at),
        }
    }

    /// A name, or a string literal if the name is a string prefix (`rb`, `f`, ...) directly
    /// followed by a quote.
    fn name_or_prefixed_string(&mut self, at: Pos) -> Result<Token, SyntaxError> {
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            if c == '_' || unicode_ident::is_xid_continue(c) {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let prefix = name.to_ascii_lowercase();
        let is_prefix = matches!(
            prefix.as_str(),
            "r" | "u" | "b" | "br" | "rb" | "f" | "fr" | "rf"
        );
        if is_prefix && matches!(self.peek(0), Some('\'' | '"')) {
            self.string(&prefix, at)
        } else {
            Ok(Token {
                tok: Tok::Name(name),
                at,
            })
        }
    }

    /// A closing bracket `c` must close the innermost open one, with its own kind.
    fn closing_bracket(&mut self, c: char, at: Pos) -> Result<Token, SyntaxError> {
        let Some((open, _)) = self.brackets.pop() else {
            return error(at, format!("unmatched '{c}'"));
        };
        let expected = match open {
            '(' => ')',
            '[' => ']',
            _ => '}',
        };
        if c != expected {
            return error(
                at,
                format!("closing parenthesis '{c}' does not match opening parenthesis '{open}'"),
            );
        }
        self.operator(at)
    }

    fn skip_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    fn operator(&mut self, at: Pos) -> Result<Token, SyntaxError> {
        let found = OPERATORS
            .iter()
            .chain([&AT])
            .find(|op| op.chars().enumerate().all(|(k, c)| self.peek(k) == Some(c)));
        let Some(&op) = found else {
            let c = self.peek(0).expect("called on a character");
            return if c.is_control() || c.is_whitespace() || c == '\u{feff}' {
                error(
                    at,
                    format!("invalid non-printable character U+{:04X}", c as u32),
                )
            } else {
                error(at, format!("invalid character '{c}' (U+{:04X})", c as u32))
            };
        };
        for _ in 0..op.chars().count() {
            self.bump();
        }
        Ok(Token {
            tok: Tok::Op(op),
            at,
        })
    }

    /// A number as CPython's tokenizer reads it, with its errors.
    fn number(&mut self, at: Pos) -> Result<Token, SyntaxError> {
        let start = self.i;
        let first = self.peek(0).expect("called on a digit or a point");
        if first == '0' && matches!(self.peek(1), Some('x' | 'X' | 'o' | 'O' | 'b' | 'B')) {
            let (radix, what) = match self.peek(1) {
                Some('x' | 'X') => (16, "hexadecimal"),
                Some('o' | 'O') => (8, "octal"),
                _ => (2, "binary"),
            };
            self.bump();
            self.bump();
            let mut digits = 0;
            loop {
                if self.peek(0) == Some('_') {
                    self.bump();
                }
                match self.peek(0) {
                    Some(c) if c.is_digit(radix) => {
                        self.bump();
                        digits += 1;
                    }
                    Some(c) if c.is_ascii_digit() => {
                        return error(self.pos(), format!("invalid digit '{c}' in {what} literal"));
                    }
                    _ => break,
                }
            }
            if digits == 0 || self.chars[self.i - 1] == '_' {
                return error(at, format!("invalid {what} literal"));
            }
            self.end_of_number(what, at)?;
            return Ok(self.number_token(start, at));
        }
        let mut is_float = false;
        let mut integer_digits = String::new();
        if first != '.' {
            integer_digits = self.digit_part(at)?;
        }
        if self.peek(0) == Some('.') {
            is_float = true;
            self.bump();
            if self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.digit_part(at)?;
            }
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = matches!(self.peek(1), Some('+' | '-'));
            let digit_at = if sign { 2 } else { 1 };
            if self.peek(digit_at).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                self.bump();
                if sign {
                    self.bump();
                }
                self.digit_part(at)?;
            } else if sign {
                return error(at, "invalid decimal literal");
            }
        }
        if matches!(self.peek(0), Some('j' | 'J')) {
            self.bump();
            is_float = true;
        }
        if !is_float
            && integer_digits.len() > 1
            && integer_digits.starts_with('0')
            && integer_digits.bytes().any(|b| b != b'0')
        {
            return error(
                at,
                "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
            );
        }
        self.end_of_number("decimal", at)?;
        Ok(self.number_token(start, at))
    }

    /// Digits with single underscores between them; returns the digits without underscores.
    fn digit_part(&mut self, at: Pos) -> Result<String, SyntaxError> {
        let mut digits = String::new();
        loop {
            match self.peek(0) {
                Some(c) if c.is_ascii_digit() => {
                    digits.push(c);
                    self.bump();
                }
                Some('_') if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => {
                    self.bump();
                }
                Some('_') => return error(at, "invalid decimal literal"),
                _ => return Ok(digits),
            }
        }
    }

    /// CPython 3.11 lets a keyword follow a number directly (`1if x else 2`, with a warning);
    /// any other letter there is an error.
    fn end_of_number(&mut self, what: &str, at: Pos) -> Result<(), SyntaxError> {
        let Some(c) = self.peek(0) else { return Ok(()) };
        if !(c == '_' || unicode_ident::is_xid_continue(c)) {
            return Ok(());
        }
        let rest: String = self.chars[self.i..].iter().take(5).collect();
        let keyword_follows = ["and", "else", "for", "if", "in", "is", "not", "or"]
            .iter()
            .any(|k| rest.starts_with(k));
        if keyword_follows {
            Ok(())
        } else {
            error(at, format!("invalid {what} literal"))
        }
    }

    fn number_token(&self, start: usize, at: Pos) -> Token {
        Token {
            tok: Tok::Number(self.chars[start..self.i].iter().collect()),
            at,
        }
    }

    /// A string literal whose prefix (lower-cased) has been read; `self` is at the quote.
    fn string(&mut self, prefix: &str, at: Pos) -> Result<Token, SyntaxError> {
        let quote = self.bump().expect("called on a quote");
        let triple = self.peek(0) == Some(quote) && self.peek(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        let mut body = String::new();
        loop {
            let Some(c) = self.bump() else {
                // CPython names the line of the file's last character.
                let last_line = if self.chars.last() == Some(&'\n') {
                    self.line - 1
                } else {
                    self.line
                };
                let reason = if triple {
                    format!(
                        "unterminated triple-quoted string literal (detected at line {last_line})"
                    )
                } else {
                    format!("unterminated string literal (detected at line {last_line})")
                };
                return error(at, reason);
            };
            match c {
                '\n' if !triple => {
                    return error(
                        at,
                        format!(
                            "unterminated string literal (detected at line {})",
                            self.line - 1
                        ),
                    );
                }
                '\\' => {
                    body.push(c);
                    // The escaped character never ends the string, even in a raw string.
                    if let Some(next) = self.bump() {
                        body.push(next);
                    }
                }
                c if c == quote
                    && (!triple
                        || (self.peek(0) == Some(quote) && self.peek(1) == Some(quote))) =>
                {
                    if triple {
                        self.bump();
                        self.bump();
                    }
                    break;
                }
                c => body.push(c),
            }
        }
        let raw = prefix.contains('r');
        let value = if prefix.contains('f') {
            StrValue::Format
        } else if prefix.contains('b') {
            if !body.is_ascii() {
                return error(at, "bytes can only contain ASCII literal characters");
            }
            let bytes = if raw {
                body.into_bytes()
            } else {
                unescape_bytes(&body).map_err(|reason| SyntaxError { at, reason })?
            };
            StrValue::Bytes(bytes)
        } else if raw {
            StrValue::Str(body)
        } else {
            match unescape_str(&body).map_err(|reason| SyntaxError { at, reason })? {
                Unescaped::Value(v) => StrValue::Str(v),
                Unescaped::Unsupported(reason) => StrValue::Unsupported(reason),
            }
        };
        Ok(Token {
            tok: Tok::Str(value),
            at,
        })
    }
}

/// Adjacent string literals concatenate, and Python refuses to mix bytes with str.
fn check_string_concatenation(tokens: &[Token]) -> Result<(), SyntaxError> {
    for pair in tokens.windows(2) {
        if let (Tok::Str(a), Tok::Str(b)) = (&pair[0].tok, &pair[1].tok) {
            let bytes = |v: &StrValue| matches!(v, StrValue::Bytes(_));
            if bytes(a) != bytes(b) {
                return error(pair[0].at, "cannot mix bytes and nonbytes literals");
            }
        }
    }
    Ok(())
}

/// The common escapes of str and bytes literals; `None` for the others.
fn simple_escape(c: char) -> Option<char> {
    Some(match c {
        '\\' => '\\',
        '\'' => '\'',
        '"' => '"',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        _ => return None,
    })
}

/// Exactly `len` hex digits, or `None` (a truncated escape).
fn hex_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, len: usize) -> Option<u32> {
    let mut value = 0u32;
    for _ in 0..len {
        let d = chars.peek()?.to_digit(16)?;
        chars.next();
        value = value * 16 + d;
    }
    Some(value)
}

fn octal_escape(first: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> u32 {
    let mut value = first.to_digit(8).expect("an octal digit");
    for _ in 0..2 {
        match chars.peek().and_then(|c| c.to_digit(8)) {
            Some(d) => {
                value = value * 8 + d;
                chars.next();
            }
            None => break,
        }
    }
    value
}

/// A str literal's value, or why we cannot hold it.
enum Unescaped {
    /// The value.
    Value(String),
    /// Valid Python we cannot hold; the reason, for wherever the value is needed.
    Unsupported(String),
}

/// A str literal's value; `Err` for what Python's codec refuses.
fn unescape_str(body: &str) -> Result<Unescaped, String> {
    let mut out = String::with_capacity(body.len());
    // Scanning goes on after an unsupported escape: a later syntax error still counts.
    let mut unsupported = None;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        if e == '\n' {
            continue;
        }
        if let Some(plain) = simple_escape(e) {
            out.push(plain);
            continue;
        }
        let code = match e {
            '0'..='7' => octal_escape(e, &mut chars),
            'x' => hex_escape(&mut chars, 2).ok_or(
                "(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\xXX escape",
            )?,
            'u' => hex_escape(&mut chars, 4).ok_or(
                "(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\uXXXX escape",
            )?,
            'U' => hex_escape(&mut chars, 8).ok_or(
                "(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\UXXXXXXXX escape",
            )?,
            'N' => {
                let named = chars.next() == Some('{')
                    && chars.by_ref().take_while(|c| *c != '}').count() > 0;
                if !named {
                    return Err(
                        "(unicode error) 'unicodeescape' codec can't decode bytes: malformed \\N character escape"
                            .to_owned(),
                    );
                }
                unsupported.get_or_insert_with(|| {
                    "a \\N{...} escape (a character by name) is not supported here; write the character itself or a \\u escape".to_owned()
                });
                continue;
            }
            other => {
                // Unknown escapes stay as written (CPython only warns).
                out.push('\\');
                out.push(other);
                continue;
            }
        };
        match char::from_u32(code) {
            Some(ch) => out.push(ch),
            None if (0xd800..0xe000).contains(&code) => {
                unsupported.get_or_insert_with(|| {
                    format!(
                        "the escape for U+{code:04X} makes a lone surrogate, which a revision cannot hold"
                    )
                });
            }
            None => {
                return Err(
                    "(unicode error) 'unicodeescape' codec can't decode bytes: illegal Unicode character"
                        .to_owned(),
                );
            }
        }
    }
    Ok(match unsupported {
        Some(reason) => Unescaped::Unsupported(reason),
        None => Unescaped::Value(out),
    })
}

fn unescape_bytes(body: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c as u8);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push(b'\\');
            break;
        };
        if e == '\n' {
            continue;
        }
        if let Some(plain) = simple_escape(e) {
            out.push(plain as u8);
            continue;
        }
        match e {
            // CPython keeps the low byte of an octal escape above \377.
            '0'..='7' => out.push((octal_escape(e, &mut chars) & 0xff) as u8),
            'x' => {
                let v = hex_escape(&mut chars, 2)
                    .ok_or("(value error) invalid \\x escape in a bytes literal")?;
                out.push(v as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other as u8);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        logical_lines(src)
            .unwrap()
            .into_iter()
            .flat_map(|l| l.tokens)
            .map(|t| t.tok)
            .collect()
    }

    fn err(src: &str) -> (usize, usize, String) {
        let e = logical_lines(src).unwrap_err();
        (e.at.line, e.at.column, e.reason)
    }

    fn s(v: &str) -> Tok {
        Tok::Str(StrValue::Str(v.to_owned()))
    }

    #[test]
    fn logical_lines_join_brackets_and_continuations() {
        let src = "a = 1; b = 2\n\n# comment\nif x:\n    c = (1,\n  2)  # trailing\nd = 3 \\\n  + 4\n\u{c}e = 5";
        let lines = logical_lines(src).unwrap();
        let summary: Vec<(usize, usize, usize)> = lines
            .iter()
            .map(|l| (l.indent, l.tokens[0].at.line, l.tokens.len()))
            .collect();
        assert_eq!(
            summary,
            vec![(0, 1, 7), (0, 4, 3), (4, 5, 7), (0, 7, 5), (0, 9, 3)]
        );
    }

    #[test]
    fn string_forms_decode_as_python_does() {
        assert_eq!(
            toks(r#"'a' "b" '''c'd''' """e"f""""#),
            [s("a"), s("b"), s("c'd"), s("e\"f")]
        );
        assert_eq!(
            toks(r"'\x41\u00e9\U0001F600\101\7\777\d\'\\\n'"),
            [s("A\u{e9}\u{1F600}A\u{7}\u{1ff}\\d'\\\n")]
        );
        assert_eq!(toks("'a\\\nb'"), [s("ab")]);
        assert_eq!(
            toks("r'\\n\\'' R'\\x' U'u'\nrB'\\n' Br'x' b'\\x41\\777\\u0041'\nf'{x}' Rf'{y}'"),
            [
                s("\\n\\'"),
                s("\\x"),
                s("u"),
                Tok::Str(StrValue::Bytes(b"\\n".to_vec())),
                Tok::Str(StrValue::Bytes(b"x".to_vec())),
                Tok::Str(StrValue::Bytes(b"A\xff\\u0041".to_vec())),
                Tok::Str(StrValue::Format),
                Tok::Str(StrValue::Format),
            ]
        );
        // Valid Python whose value we do not hold: an error only where it is needed.
        assert_eq!(
            toks(r"'\ud800' '\N{BULLET}'"),
            [
                Tok::Str(StrValue::Unsupported(
                    "the escape for U+D800 makes a lone surrogate, which a revision cannot hold"
                        .into()
                )),
                Tok::Str(StrValue::Unsupported(
                    "a \\N{...} escape (a character by name) is not supported here; write the character itself or a \\u escape".into()
                )),
            ]
        );
        // Not a prefix: a name followed by a string.
        assert_eq!(toks("ur'a'"), [Tok::Name("ur".into()), s("a")]);
    }

    #[test]
    fn numbers_are_read_whole() {
        assert_eq!(
            toks("0x_1f 0o17 0b1_0 1_000 0_0 1. .5e-3 1_0.0_1e1_0 1e5j 1E+5 1if"),
            [
                "0x_1f",
                "0o17",
                "0b1_0",
                "1_000",
                "0_0",
                "1.",
                ".5e-3",
                "1_0.0_1e1_0",
                "1e5j",
                "1E+5",
                "1",
            ]
            .iter()
            .map(|n| Tok::Number((*n).to_owned()))
            .chain([Tok::Name("if".into())])
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn lexical_errors_name_their_line_and_column() {
        let cases: [(&str, (usize, usize, &str)); 18] = [
            (
                "x = 'abc\n",
                (1, 5, "unterminated string literal (detected at line 1)"),
            ),
            (
                "x = 1\ny = '''abc\n\n",
                (
                    2,
                    5,
                    "unterminated triple-quoted string literal (detected at line 3)",
                ),
            ),
            ("x = (1,\n2\n", (1, 5, "'(' was never closed")),
            ("x = 1)\n", (1, 6, "unmatched ')'")),
            (
                "x = (1]\n",
                (
                    1,
                    7,
                    "closing parenthesis ']' does not match opening parenthesis '('",
                ),
            ),
            (
                "x = 012\n",
                (
                    1,
                    5,
                    "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
                ),
            ),
            ("x = 1__0\n", (1, 5, "invalid decimal literal")),
            ("x = 1_\n", (1, 5, "invalid decimal literal")),
            ("x = 1abc\n", (1, 5, "invalid decimal literal")),
            ("x = 0x\n", (1, 5, "invalid hexadecimal literal")),
            ("x = 0b12\n", (1, 8, "invalid digit '2' in binary literal")),
            ("x = $\n", (1, 5, "invalid character '$' (U+0024)")),
            (
                "\u{feff}x = 1\n",
                (1, 1, "invalid non-printable character U+FEFF"),
            ),
            (
                "x = 1\u{b}\n",
                (1, 6, "invalid non-printable character U+000B"),
            ),
            (
                "x = 1 \\ 2\n",
                (
                    1,
                    7,
                    "unexpected character after line continuation character",
                ),
            ),
            (
                "x = 'a' b'c'\n",
                (1, 5, "cannot mix bytes and nonbytes literals"),
            ),
            (
                "x = b'\u{e9}'\n",
                (1, 5, "bytes can only contain ASCII literal characters"),
            ),
            (
                "x = '\\x4'\n",
                (
                    1,
                    5,
                    "(unicode error) 'unicodeescape' codec can't decode bytes: truncated \\xXX escape",
                ),
            ),
        ];
        for (src, (line, column, reason)) in cases {
            assert_eq!(err(src), (line, column, reason.to_owned()), "{src:?}");
        }
        assert!(
            err("x = '\\N'")
                .2
                .contains("malformed \\N character escape")
        );
        assert_eq!(err(&"(".repeat(201)).2, "too many nested parentheses");
    }

    #[test]
    fn operators_take_the_longest_match() {
        assert_eq!(
            toks("a **= b == c := ... -> @"),
            [
                Tok::Name("a".into()),
                Tok::Op("**="),
                Tok::Name("b".into()),
                Tok::Op("=="),
                Tok::Name("c".into()),
                Tok::Op(":="),
                Tok::Op("..."),
                Tok::Op("->"),
                Tok::Op("@"),
            ]
        );
    }
}
