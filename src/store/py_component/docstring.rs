//! A component's documentation: its module docstring, as hetida reads it.
//!
//! hetida takes libcst's `Module.get_docstring()` (the first statement, if it is nothing but a
//! string literal, or adjacent ones, possibly in parentheses; not bytes, not an f-string),
//! cleaned with `inspect.cleandoc`, and keeps its lines from the third on: the first line is a
//! title and the second is blank by convention.

use super::tokens::{LogicalLine, Pos, StrValue, Tok};

/// The documentation hetida stores for a component with this module docstring.
pub fn documentation(docstring: Option<&str>) -> String {
    docstring
        .map(|d| {
            splitlines(d)
                .into_iter()
                .skip(2)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The module docstring, cleaned, or `None` when the module does not start with one; `Err`
/// (where, why) when it holds a string whose value we cannot hold.
pub fn module_docstring(lines: &[LogicalLine]) -> Result<Option<String>, (Pos, String)> {
    let Some(first) = lines.first() else {
        return Ok(None);
    };
    let tokens = &first.tokens;
    // The first simple statement of the first line.
    let end = tokens
        .iter()
        .position(|t| t.is_op(";"))
        .unwrap_or(tokens.len());
    let statement = &tokens[..end];
    let parens = statement.iter().take_while(|t| t.is_op("(")).count();
    if statement.len() <= 2 * parens {
        return Ok(None);
    }
    let (inner, closing) = statement[parens..].split_at(statement.len() - 2 * parens);
    if !closing.iter().all(|t| t.is_op(")")) {
        return Ok(None);
    }
    let mut text = String::new();
    let mut unsupported = None;
    for token in inner {
        match &token.tok {
            Tok::Str(StrValue::Str(s)) => text.push_str(s),
            Tok::Str(StrValue::Unsupported(reason)) => {
                unsupported.get_or_insert((token.at, reason.clone()));
            }
            // An f-string has no value to libcst, and a bytes docstring is none.
            _ => return Ok(None),
        }
    }
    match unsupported {
        Some(e) => Err(e),
        None => Ok(Some(cleandoc(&text))),
    }
}

/// Python 3.11's `inspect.cleandoc`.
pub fn cleandoc(doc: &str) -> String {
    let expanded = expand_tabs(doc);
    let mut lines: Vec<String> = expanded.split('\n').map(str::to_owned).collect();
    let margin = lines[1..]
        .iter()
        .filter_map(|line| {
            let content = line.trim_start_matches(is_python_space).chars().count();
            (content > 0).then(|| line.chars().count() - content)
        })
        .min();
    lines[0] = lines[0].trim_start_matches(is_python_space).to_owned();
    if let Some(margin) = margin {
        for line in &mut lines[1..] {
            *line = line.chars().skip(margin).collect();
        }
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let leading = lines.iter().take_while(|l| l.is_empty()).count();
    lines.drain(..leading);
    lines.join("\n")
}

/// `str.expandtabs()`: tab stops every 8 columns; a line break starts column 0 again.
fn expand_tabs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut column = 0;
    for c in s.chars() {
        match c {
            '\t' => {
                let spaces = 8 - column % 8;
                out.extend(std::iter::repeat_n(' ', spaces));
                column += spaces;
            }
            '\n' | '\r' => {
                out.push(c);
                column = 0;
            }
            _ => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// `str.isspace()`: Unicode's White_Space plus the four ASCII separators \x1c..\x1f.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.splitlines()`: the line boundaries Python knows, `\r\n` as one; no empty last line.
fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !boundary {
            continue;
        }
        lines.push(&s[start..i]);
        start = i + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|(_, n)| *n == '\n') {
            chars.next();
            start += 1;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::super::tokens::logical_lines;
    use super::*;

    /// Expected values from libcst 1.1.0 on CPython 3.11: `parse_module(src).get_docstring()`
    /// and `"\n".join(docstring.splitlines()[2:])`.
    #[test]
    fn docstrings_and_documentation_match_libcst_and_python() {
        let cases: [(&str, Option<&str>, &str); 25] = [
            (
                "\"\"\"Title\n\n# Heading\n    indented\n\tTabbed\n\"\"\"\nX = 1\n",
                Some("Title\n\n# Heading\n    indented\n        Tabbed"),
                "# Heading\n    indented\n        Tabbed",
            ),
            (
                "\"\"\"\n    Summary\n\n    body line\n      deeper\n    last\n    \"\"\"\n",
                Some("Summary\n\nbody line\n  deeper\nlast"),
                "body line\n  deeper\nlast",
            ),
            (
                "  \n# comment\n\"\"\"Only one line\"\"\"\n",
                Some("Only one line"),
                "",
            ),
            ("\"\"\"Two\nlines\"\"\"\n", Some("Two\nlines"), ""),
            (
                r#""""A

B\r\nC\x0bD\x0cE\x1cF\x1dG\x1eH\x85I\u2028J\u2029K\x1fL\rM"""
"#,
                Some(
                    "A\n\nB\r\nC\u{b}D\u{c}E\u{1c}F\u{1d}G\u{1e}H\u{85}I\u{2028}J\u{2029}K\u{1f}L\rM",
                ),
                "B\nC\nD\nE\nF\nG\nH\nI\nJ\nK\u{1f}L\nM",
            ),
            (
                "\"\"\"x\n\n\\ta\\tb\\r\\tc\"\"\"\n",
                Some("x\n\na       b\r        c"),
                "a       b\n        c",
            ),
            ("(\"\"\"paren\"\"\" \n \"cat\")\n", Some("parencat"), ""),
            ("\"a\" \"b\" 'c'; X = 1\n", Some("abc"), ""),
            ("f\"\"\"no\"\"\"\n", None, ""),
            ("\"a\" f\"b\"\n", None, ""),
            ("b\"\"\"bytes\"\"\"\n", None, ""),
            ("\"\"\"doc\"\"\".strip()\n", None, ""),
            ("\"\"\"doc\"\"\", 1\n", None, ""),
            ("X = 1\n\"\"\"late\"\"\"\n", None, ""),
            ("r\"\"\"raw\\n\"\"\"\n", Some("raw\\n"), ""),
            ("\"\"\"\t\tx\n\t  y\n \t z\n\"\"\"\n", Some("x\n y\nz"), "z"),
            (
                "\"\"\"\u{a0}lead\n\n\u{1f}\u{1f}  sp\n\u{1f}\u{1f}    sp2\n\"\"\"\n",
                Some("lead\n\nsp\n  sp2"),
                "sp\n  sp2",
            ),
            (
                "\"\"\"first\n  \n\n   \n\"\"\"\n",
                Some("first\n  \n\n   "),
                "\n   ",
            ),
            ("\"\"\"\n\n\n\"\"\"\n", Some(""), ""),
            ("\"\"\"\"\"\"\n", Some(""), ""),
            ("((\"\"\"x\n\ny\nz\"\"\"))\n", Some("x\n\ny\nz"), "y\nz"),
            (
                "\"\"\"\\\n  cont\n\n  a\n  b\"\"\"\n",
                Some("cont\n\na\nb"),
                "a\nb",
            ),
            ("def f():\n    \"\"\"not module\"\"\"\n", None, ""),
            (
                "'''single\n\n  quoted'''\n",
                Some("single\n\nquoted"),
                "quoted",
            ),
            (
                "\"\"\"\n\n  \u{e9}t\u{e9}\n  ok\"\"\"\n",
                Some("\u{e9}t\u{e9}\nok"),
                "",
            ),
        ];
        for (src, docstring, doc) in cases {
            let lines = logical_lines(src).unwrap();
            let found = module_docstring(&lines).unwrap();
            assert_eq!(found.as_deref(), docstring, "{src:?}");
            assert_eq!(documentation(found.as_deref()), doc, "{src:?}");
        }
    }

    #[test]
    fn no_statement_no_docstring() {
        let docstring = |src: &str| module_docstring(&logical_lines(src).unwrap());
        assert_eq!(docstring("# only a comment\n"), Ok(None));
        assert_eq!(docstring(""), Ok(None));
        // An f-string part makes it no docstring, whatever else is in it.
        assert_eq!(docstring("'\\ud800' f'x'\n"), Ok(None));
        let (at, reason) = docstring("\n'''Title\n\nabout \\N{DEGREE SIGN}'''\n").unwrap_err();
        assert_eq!((at.line, at.column), (2, 1));
        assert!(reason.contains("\\N{...}"), "{reason}");
        assert_eq!(documentation(None), "");
    }
}
