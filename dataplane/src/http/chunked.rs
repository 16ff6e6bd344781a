//! The chunked transfer coding (RFC 9112 §7.1) as an incremental state machine.
//!
//! The same decoder serves request bodies (data is collected) and upstream responses
//! (bytes are forwarded verbatim and the decoder only finds where the message ends).
//! It is strict on purpose: only hex sizes, CRLF line ends, bounded extensions and
//! trailers. A lenient parser in front of a strict one is how smuggling happens.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    InvalidSize,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("invalid chunk line ending")]
    InvalidLineEnding,
    #[error("chunk extension or trailer section too long")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the size; `digits` counts them.
    Size,
    /// Inside a `;ext` after the size.
    Ext,
    /// Expecting the LF after the size line's CR.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    /// Expecting the final LF.
    EndLf,
    Done,
}

const MAX_LINE_EXTRA: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    extra: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            extra: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds `input`; calls `data` with each run of body bytes. Returns how many bytes of
    /// `input` belong to this message (less than `input.len()` only once done).
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return Err(ChunkError::SizeOverflow);
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0);
                        self.size = (self.size << 4) | u64::from(v);
                        self.digits += 1;
                    }
                    b';' if self.digits > 0 => {
                        self.state = State::Ext;
                        self.extra = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(ChunkError::InvalidSize),
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkError::InvalidLineEnding),
                    _ => {
                        self.extra += 1;
                        if self.extra > MAX_LINE_EXTRA {
                            return Err(ChunkError::TooLong);
                        }
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::InvalidLineEnding);
                    }
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                        self.extra = 0;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let take = avail.min(self.size) as usize;
                    data(&input[i..i + take]);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::InvalidLineEnding);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::InvalidLineEnding);
                    }
                    self.state = State::Size;
                    self.digits = 0;
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\n' => return Err(ChunkError::InvalidLineEnding),
                    _ => {
                        self.state = State::Trailer;
                        self.bump_trailer()?;
                    }
                },
                State::Trailer => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err(ChunkError::InvalidLineEnding),
                    _ => self.bump_trailer()?,
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::InvalidLineEnding);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::InvalidLineEnding);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn bump_trailer(&mut self) -> Result<(), ChunkError> {
        self.extra += 1;
        if self.extra > MAX_TRAILERS {
            return Err(ChunkError::TooLong);
        }
        Ok(())
    }
}

/// Appends one chunk (size line, data, CRLF) to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = data.len();
    let mut tmp = [0u8; 16];
    let mut pos = tmp.len();
    loop {
        pos -= 1;
        tmp[pos] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[pos..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn decode_all(input: &[u8], split: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(split.max(1)) {
            let n = d.feed(part, |b| out.extend_from_slice(b))?;
            used += n;
            if d.is_done() {
                break;
            }
        }
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let msg = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 1..msg.len() {
            let (body, used, done) = decode_all(msg, split).unwrap();
            assert_eq!(body, b"hello, world");
            assert!(done);
            assert_eq!(used, msg.len() - 4, "split {split}");
        }
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"0x5\r\n",
            b"\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                decode_all(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encode_roundtrip() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &[7u8; 300]);
        out.extend_from_slice(b"0\r\n\r\n");
        assert!(out.starts_with(b"12c\r\n"));
        let (body, _, done) = decode_all(&out, 7).unwrap();
        assert_eq!(body.len(), 300);
        assert!(done);
    }
}
