//! A small cursor over a JSON document that walks the top-level container(s) by hand and parses
//! each element with `serde_json`, so every IOC object gets the line it starts on and a syntax
//! error late in a file does not lose the objects before it. `serde_json`'s recursion limit
//! keeps arbitrarily nested input from overflowing the stack.

use serde::de::DeserializeOwned;

use super::parse::strip_bom;

/// A structural or syntax error, with the 1-based line it occurred on.
pub(crate) struct JsonError {
    pub(crate) line: u32,
    pub(crate) msg: String,
}

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    line: u32,
    counted: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Cursor {
            buf: strip_bom(input),
            pos: 0,
            line: 1,
            counted: 0,
        }
    }

    pub(crate) fn skip_ws(&mut self) {
        while self
            .buf
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.pos += 1;
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.buf.len()
    }

    /// Line of the current position (amortised O(1): positions only move forward).
    pub(crate) fn line(&mut self) -> u32 {
        let end = self.pos.min(self.buf.len());
        if end > self.counted {
            let n = self.buf[self.counted..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line = self
                .line
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            self.counted = end;
        }
        self.line
    }

    pub(crate) fn err(&mut self, msg: impl Into<String>) -> JsonError {
        JsonError {
            line: self.line(),
            msg: msg.into(),
        }
    }

    /// Parse one JSON value at the cursor and move past it.
    pub(crate) fn value<T: DeserializeOwned>(&mut self) -> Result<T, JsonError> {
        self.skip_ws();
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
        match it.next() {
            Some(Ok(v)) => {
                self.pos += it.byte_offset();
                Ok(v)
            }
            Some(Err(e)) => {
                let base = self.line();
                Err(JsonError {
                    line: base
                        .saturating_add(u32::try_from(e.line()).unwrap_or(1).saturating_sub(1)),
                    msg: format!("invalid JSON: {e}"),
                })
            }
            None => Err(self.err("invalid JSON: unexpected end of input")),
        }
    }

    /// Skip one JSON value.
    pub(crate) fn skip_value(&mut self) -> Result<(), JsonError> {
        self.value::<serde::de::IgnoredAny>().map(|_| ())
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), JsonError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("invalid JSON: expected {what}")))
        }
    }

    /// Walk the array at the cursor: `f(cursor, line)` must consume exactly one element.
    pub(crate) fn array(
        &mut self,
        mut f: impl FnMut(&mut Self, u32) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.expect(b'[', "'['")?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let line = self.line();
            f(self, line)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("invalid JSON: expected ',' or ']' in array")),
            }
        }
    }

    /// Walk the object at the cursor: `f(cursor, key, line)` must consume exactly the value.
    pub(crate) fn object(
        &mut self,
        mut f: impl FnMut(&mut Self, String, u32) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.expect(b'{', "'{'")?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("invalid JSON: expected a string key"));
            }
            let key: String = self.value()?;
            self.expect(b':', "':'")?;
            self.skip_ws();
            let line = self.line();
            f(self, key, line)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("invalid JSON: expected ',' or '}' in object")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn walks_with_lines() {
        let doc = b"{\n \"a\": 1,\n \"list\": [\n  {\"x\": 1},\n\n  {\"x\": 2}\n ]\n}\n";
        let mut c = Cursor::new(doc);
        let mut seen = Vec::new();
        c.object(|c, k, line| {
            if k == "list" {
                c.array(|c, line| {
                    let v: Value = c.value()?;
                    seen.push((line, v["x"].as_i64()));
                    Ok(())
                })
            } else {
                seen.push((line, None));
                c.skip_value()
            }
        })
        .unwrap_or_else(|e| panic!("{}", e.msg));
        assert!(c.at_end());
        assert_eq!(seen, vec![(2, None), (4, Some(1)), (6, Some(2))]);
    }

    #[test]
    fn error_line() {
        let doc = b"[\n{\"x\": 1},\n{\"x\": }\n]";
        let mut c = Cursor::new(doc);
        let mut n = 0;
        let e = c
            .array(|c, _| {
                let _: Value = c.value()?;
                n += 1;
                Ok(())
            })
            .err()
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(e.line, 3);
    }
}
