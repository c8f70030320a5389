//! Read a manifest `M` without holding it in memory: one pass over the file through a
//! buffer, splitting it into the header (every top-level field but `links`, kept as JSON text
//! with `"links": []`) and the link records, each handed over as its offset in the file and
//! the buffered bytes from its start, one at a time. The scanner finds where header values
//! begin and end (strings, escapes, nesting); a record's end is found by the caller's own
//! parse of it ([`Step`]), so a record's bytes are looked at once, in place, not first
//! scanned and copied and then parsed (that was half the cost of opening a 100,000-link
//! manifest). serde parses the header and every record, so a damaged file is still refused
//! with serde's message.

use std::io::{self, Read};

const BUF: usize = 256 * 1024;

/// The bytes a container scan stops at: quotes and brackets.
const STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// What went wrong, for the "not a valid manifest" message.
pub(crate) type ScanError = String;

/// What the caller's parse of a record made of the bytes it was given.
pub(crate) enum Step {
    /// The record is the first `n` bytes.
    Took(usize),
    /// The bytes end inside the record: give me more (only asked while the file has more).
    More,
}

/// Parse one record from the start of `bytes` with serde, as `T` (borrowing from `bytes`):
/// the record and how many bytes it took, or `None` when `bytes` ends inside it and more
/// may follow (`eof`: nothing follows).
pub(crate) fn parse_one<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    eof: bool,
) -> std::result::Result<Option<(T, usize)>, serde_json::Error> {
    let mut it = serde_json::Deserializer::from_slice(bytes).into_iter::<T>();
    match it.next() {
        Some(Ok(v)) => Ok(Some((v, it.byte_offset()))),
        Some(Err(e)) if e.is_eof() && !eof => Ok(None),
        Some(Err(e)) => Err(e),
        None if !eof => Ok(None),
        None => Err(serde::de::Error::custom(
            "the file ends where a record should be",
        )),
    }
}

pub(crate) struct Scanner<R> {
    r: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
}

impl<R: Read> Scanner<R> {
    pub fn new(r: R) -> Self {
        Scanner {
            r,
            buf: vec![0u8; BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.end {
            self.base += self.end as u64;
            self.pos = 0;
            self.end = 0;
            loop {
                match self.r.read(&mut self.buf) {
                    Ok(n) => {
                        self.end = n;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.end == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[self.pos]))
    }

    fn bump(&mut self) -> io::Result<Option<u8>> {
        let b = self.peek()?;
        if b.is_some() {
            self.pos += 1;
        }
        Ok(b)
    }

    fn skip_ws(&mut self, mut out: Option<&mut Vec<u8>>) -> io::Result<()> {
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            if let Some(o) = out.as_deref_mut() {
                o.push(b);
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// Copy one string (the opening quote is next) into `out`.
    fn string(&mut self, out: &mut Vec<u8>) -> io::Result<std::result::Result<(), ScanError>> {
        out.push(b'"');
        self.pos += 1;
        loop {
            if self.peek()?.is_none() {
                return Ok(Err("a string is not closed".into()));
            }
            let chunk = &self.buf[self.pos..self.end];
            match memchr::memchr2(b'"', b'\\', chunk) {
                None => {
                    out.extend_from_slice(chunk);
                    self.pos = self.end;
                }
                Some(i) => {
                    let c = chunk[i];
                    out.extend_from_slice(&chunk[..=i]);
                    self.pos += i + 1;
                    if c == b'"' {
                        return Ok(Ok(()));
                    }
                    // After a backslash, the next byte is escaped (`\"` does not close).
                    match self.bump()? {
                        Some(n) => out.push(n),
                        None => return Ok(Err("a string is not closed".into())),
                    }
                }
            }
        }
    }

    /// Copy one value (its first byte is next) into `out`.
    fn value(&mut self, out: &mut Vec<u8>) -> io::Result<std::result::Result<(), ScanError>> {
        match self.peek()? {
            None => Ok(Err("the file ends where a value should be".into())),
            Some(b'"') => self.string(out),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    if self.peek()?.is_none() {
                        return Ok(Err("an object or array is not closed".into()));
                    }
                    // Copy up to the next byte that matters, in one go.
                    let chunk = &self.buf[self.pos..self.end];
                    let Some(i) = chunk.iter().position(|&b| STRUCTURAL[usize::from(b)]) else {
                        out.extend_from_slice(chunk);
                        self.pos = self.end;
                        continue;
                    };
                    out.extend_from_slice(&chunk[..i]);
                    self.pos += i;
                    match self.buf[self.pos] {
                        b'"' => {
                            if let Err(e) = self.string(out)? {
                                return Ok(Err(e));
                            }
                        }
                        c @ (b'{' | b'[') => {
                            depth += 1;
                            out.push(c);
                            self.pos += 1;
                        }
                        c => {
                            out.push(c);
                            self.pos += 1;
                            depth -= 1;
                            if depth == 0 {
                                return Ok(Ok(()));
                            }
                        }
                    }
                }
            }
            Some(_) => {
                while let Some(c) = self.peek()? {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    out.push(c);
                    self.pos += 1;
                }
                Ok(Ok(()))
            }
        }
    }

    /// Keep `buf[pos..end]`, moved to the front, and read more after it (growing the
    /// buffer when it is full). Returns whether the file ended (nothing more was read).
    fn more(&mut self) -> io::Result<bool> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            let mut bigger = vec![0u8; self.buf.len() * 2].into_boxed_slice();
            bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
            self.buf = bigger;
        }
        // Fill the buffer: a record is parsed again from its start after each refill, so
        // short reads must not make that quadratic.
        while self.end < self.buf.len() {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Scan the whole manifest: returns the header's JSON text (with `"links": []`) and
    /// calls `record(offset, bytes, eof)` for each element of `links`, in order, with the
    /// buffered bytes from the record's start (`eof`: the file has no more); it parses the
    /// record and says where it ends ([`Step`]). `record`'s own error stops the scan and
    /// is returned as is.
    pub fn scan<E>(
        mut self,
        mut record: impl FnMut(u64, &[u8], bool) -> std::result::Result<Step, E>,
    ) -> io::Result<std::result::Result<std::result::Result<Vec<u8>, ScanError>, E>> {
        let mut header = Vec::with_capacity(16 * 1024);
        macro_rules! bad {
            ($e:expr) => {
                return Ok(Ok(Err($e.into())))
            };
        }
        macro_rules! check {
            ($e:expr) => {
                if let Err(e) = $e? {
                    return Ok(Ok(Err(e)));
                }
            };
        }
        self.skip_ws(None)?;
        if self.bump()? != Some(b'{') {
            bad!("it is not a JSON object");
        }
        header.push(b'{');
        loop {
            self.skip_ws(Some(&mut header))?;
            match self.peek()? {
                Some(b'}') => {
                    self.pos += 1;
                    header.push(b'}');
                    break;
                }
                Some(b'"') => {}
                _ => bad!("a field name is missing"),
            }
            let start = header.len();
            check!(self.string(&mut header));
            let is_links = &header[start..] == b"\"links\"";
            self.skip_ws(Some(&mut header))?;
            if self.bump()? != Some(b':') {
                bad!("a `:` is missing after a field name");
            }
            header.push(b':');
            self.skip_ws(Some(&mut header))?;
            if is_links && self.peek()? == Some(b'[') {
                self.pos += 1;
                header.extend_from_slice(b"[]");
                self.skip_ws(None)?;
                if self.peek()? == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws(None)?;
                        if self.peek()?.is_none() {
                            bad!("the file ends where a value should be");
                        }
                        let at = self.offset();
                        let mut eof = false;
                        loop {
                            match record(at, &self.buf[self.pos..self.end], eof) {
                                Err(e) => return Ok(Err(e)),
                                Ok(Step::Took(n)) => {
                                    self.pos += n.min(self.end - self.pos);
                                    break;
                                }
                                Ok(Step::More) if eof => {
                                    bad!("the file ends inside a link record")
                                }
                                Ok(Step::More) => eof = self.more()?,
                            }
                        }
                        self.skip_ws(None)?;
                        match self.bump()? {
                            Some(b',') => {}
                            Some(b']') => break,
                            _ => bad!("a `,` or `]` is missing in `links`"),
                        }
                    }
                }
            } else {
                check!(self.value(&mut header));
            }
            self.skip_ws(Some(&mut header))?;
            match self.bump()? {
                Some(b',') => header.push(b','),
                Some(b'}') => {
                    header.push(b'}');
                    break;
                }
                _ => bad!("a `,` or `}` is missing between fields"),
            }
        }
        self.skip_ws(None)?;
        if self.peek()?.is_some() {
            bad!("there is more after the closing `}`");
        }
        Ok(Ok(Ok(header)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> (std::result::Result<String, ScanError>, Vec<(u64, String)>) {
        let mut recs = Vec::new();
        let out = Scanner::new(text.as_bytes())
            .scan(
                |at, b, eof| match parse_one::<serde::de::IgnoredAny>(b, eof) {
                    Ok(Some((_, n))) => {
                        recs.push((at, String::from_utf8(b[..n].to_vec()).unwrap()));
                        Ok(Step::Took(n))
                    }
                    Ok(None) => Ok(Step::More),
                    Err(e) => Err(e.to_string()),
                },
            )
            .unwrap()
            .unwrap_or_else(Err);
        (out.map(|h| String::from_utf8(h).unwrap()), recs)
    }

    #[test]
    fn splits_header_and_records_with_offsets() {
        let text = r#"{"a": 1, "links": [ {"k": "x]}\"", "n": [1, {}]} , {"k":"y"}], "z": "}"}"#;
        let (header, recs) = scan(text);
        assert_eq!(header.unwrap(), r#"{"a": 1, "links": [], "z": "}"}"#);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].1, r#"{"k": "x]}\"", "n": [1, {}]}"#);
        assert_eq!(&text[recs[0].0 as usize..][..recs[0].1.len()], recs[0].1);
        assert_eq!(
            &text[recs[1].0 as usize..][..recs[1].1.len()],
            r#"{"k":"y"}"#
        );
    }

    /// A reader that hands out a few bytes at a time: records straddle every refill.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(7);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn records_that_straddle_refills_come_out_whole() {
        let big = "x".repeat(3 * BUF);
        let text = format!(
            r#"{{"a": 1, "links": [{{"k": "\"]}}"}}, {{"k": "{big}"}}, {{"n": [1, {{}}]}}], "z": 2}}"#
        );
        let mut recs = Vec::new();
        let header = Scanner::new(Trickle(text.as_bytes()))
            .scan(
                |at, b, eof| match parse_one::<serde::de::IgnoredAny>(b, eof) {
                    Ok(Some((_, n))) => {
                        recs.push((at, n));
                        Ok(Step::Took(n))
                    }
                    Ok(None) => Ok(Step::More),
                    Err(e) => Err(e.to_string()),
                },
            )
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            r#"{"a": 1, "links": [], "z": 2}"#
        );
        let got: Vec<&str> = recs
            .iter()
            .map(|&(at, n)| &text[at as usize..][..n])
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], r#"{"k": "\"]}"}"#);
        assert_eq!(got[1].len(), big.len() + 9);
        assert_eq!(got[2], r#"{"n": [1, {}]}"#);
    }

    #[test]
    fn damage_is_reported() {
        assert!(scan(r#"{"links": [{"k": 1}"#).0.is_err());
        assert!(scan(r#"{"a": "open"#).0.is_err());
        assert!(scan(r#"[1]"#).0.is_err());
        assert!(scan(r#"{"a": 1} x"#).0.is_err());
        assert_eq!(scan(r#"{"links": []}"#).0.unwrap(), r#"{"links": []}"#);
    }
}
