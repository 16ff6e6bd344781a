//! Incremental decoders for response bodies: HTTP/1.1 chunked framing and
//! server-sent events. Both accept input split at any byte boundary.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size line (extensions skipped until LF).
    Size {
        value: u64,
        digits: u32,
        ext: bool,
    },
    Data(u64),
    /// Expecting the CRLF after a chunk's data (`seen_cr`).
    DataEnd {
        seen_cr: bool,
    },
    /// Trailer lines after the last chunk; `empty` while the line is empty.
    Trailer {
        empty: bool,
    },
    Done,
}

/// Chunked transfer-coding decoder.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    pub fn new() -> Self {
        Chunked {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
                ext: false,
            },
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes as much of `input` as belongs to this body, handing payload
    /// slices to `out`. Returns the number of bytes consumed (less than
    /// `input.len()` only once the body is complete).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut out: impl FnMut(&[u8]),
    ) -> Result<usize, FramingError> {
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                ChunkState::Done => break,
                ChunkState::Data(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    out(&input[i..i + take]);
                    i += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd { seen_cr: false };
                    }
                }
                ChunkState::DataEnd { seen_cr } => {
                    let b = input[i];
                    i += 1;
                    match (b, *seen_cr) {
                        (b'\r', false) => *seen_cr = true,
                        (b'\n', _) => {
                            self.state = ChunkState::Size {
                                value: 0,
                                digits: 0,
                                ext: false,
                            }
                        }
                        _ => return Err(FramingError),
                    }
                }
                ChunkState::Size { value, digits, ext } => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' {
                        if *digits == 0 {
                            return Err(FramingError);
                        }
                        self.state = if *value == 0 {
                            ChunkState::Trailer { empty: true }
                        } else {
                            ChunkState::Data(*value)
                        };
                    } else if *ext || b == b'\r' {
                        // Extensions and the CR before LF are ignored.
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        *ext = true;
                    } else {
                        let d = match b {
                            b'0'..=b'9' => b - b'0',
                            b'a'..=b'f' => b - b'a' + 10,
                            b'A'..=b'F' => b - b'A' + 10,
                            _ => return Err(FramingError),
                        };
                        *digits += 1;
                        if *digits > 15 {
                            return Err(FramingError);
                        }
                        *value = *value * 16 + u64::from(d);
                    }
                }
                ChunkState::Trailer { empty } => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'\n' if *empty => self.state = ChunkState::Done,
                        b'\n' => *empty = true,
                        b'\r' => {}
                        _ => *empty = false,
                    }
                }
            }
        }
        Ok(i)
    }
}

/// Bytes one event may accumulate before the stream is declared broken.
const MAX_EVENT: usize = 4 << 20;

/// Server-sent-events splitter: collects `data:` lines and emits each
/// event's data (lines joined with `\n`) when its blank line arrives.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any partial event, keeping the buffers.
    pub fn reset(&mut self) {
        self.line.clear();
        self.data.clear();
        self.has_data = false;
    }

    pub fn feed(&mut self, input: &[u8], mut event: impl FnMut(&[u8])) -> Result<(), FramingError> {
        let mut rest = input;
        while !rest.is_empty() {
            match memchr::memchr(b'\n', rest) {
                None => {
                    self.line.extend_from_slice(rest);
                    if self.line.len() > MAX_EVENT {
                        return Err(FramingError);
                    }
                    return Ok(());
                }
                Some(n) => {
                    let piece = &rest[..n];
                    rest = &rest[n + 1..];
                    if self.line.is_empty() {
                        self.line_done(piece, &mut event)?;
                    } else {
                        self.line.extend_from_slice(piece);
                        let line = std::mem::take(&mut self.line);
                        let r = self.line_done(&line, &mut event);
                        self.line = line;
                        self.line.clear();
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn line_done(
        &mut self,
        line: &[u8],
        event: &mut impl FnMut(&[u8]),
    ) -> Result<(), FramingError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                event(&self.data);
                self.data.clear();
                self.has_data = false;
            }
            return Ok(());
        }
        if let Some(v) = line.strip_prefix(b"data") {
            let v = match v {
                [] => v,
                [b':', b' ', rest @ ..] | [b':', rest @ ..] => rest,
                // Another field whose name starts with "data".
                _ => return Ok(()),
            };
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(v);
            self.has_data = true;
            if self.data.len() > MAX_EVENT {
                return Err(FramingError);
            }
        }
        // Comments (`:`), `event:`, `id:`, `retry:` are ignored.
        Ok(())
    }
}

/// What one streamed chunk means for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventInfo {
    /// Carries non-empty `delta.content` or `text`.
    pub content: bool,
    /// `usage.completion_tokens`, when the chunk has a usage object.
    pub completion_tokens: Option<u64>,
    /// The `[DONE]` sentinel.
    pub done: bool,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Interprets one event's data. Unparseable events count as nothing.
pub fn classify(data: &[u8]) -> EventInfo {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return EventInfo {
            done: true,
            ..EventInfo::default()
        };
    }
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(trimmed) else {
        return EventInfo::default();
    };
    let content = chunk.choices.iter().any(|c| {
        c.delta
            .as_ref()
            .and_then(|d| d.content.as_ref())
            .is_some_and(|s| !s.is_empty())
            || c.text.as_ref().is_some_and(|s| !s.is_empty())
    });
    EventInfo {
        content,
        completion_tokens: chunk.usage.and_then(|u| u.completion_tokens),
        done: false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A chunked SSE body as the mock sends it, with CRLF line ends in one
    /// event, a comment, a multi-line event and a chunk extension.
    fn sample() -> (Vec<u8>, Vec<String>) {
        let events = [
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            ": keep-alive comment\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n",
            "event: message\ndata: {\"choices\":[{\"delta\":\ndata: {\"content\":\"lo\"}}]}\n\n",
            "data:{\"choices\":[{\"text\":\" w\\\"x\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        ];
        let mut body = Vec::new();
        for (n, e) in events.iter().enumerate() {
            if n == 2 {
                body.extend_from_slice(format!("{:X};ext=1\r\n", e.len()).as_bytes());
            } else {
                body.extend_from_slice(format!("{:x}\r\n", e.len()).as_bytes());
            }
            body.extend_from_slice(e.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\nNEXT");
        let want = vec![
            "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}".to_string(),
            "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}".to_string(),
            "{\"choices\":[{\"delta\":\n{\"content\":\"lo\"}}]}".to_string(),
            "{\"choices\":[{\"text\":\" w\\\"x\"}]}".to_string(),
            "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7}}".to_string(),
            "[DONE]".to_string(),
        ];
        (body, want)
    }

    fn decode_in_pieces(body: &[u8], cuts: &[usize]) -> (Vec<String>, usize) {
        let mut chunked = Chunked::new();
        let mut sse = SseParser::new();
        let mut events = Vec::new();
        let mut consumed = 0;
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            let piece = &body[prev..cut];
            prev = cut;
            if chunked.is_done() {
                continue;
            }
            let n = chunked
                .feed(piece, |p| {
                    sse.feed(p, |e| events.push(String::from_utf8(e.to_vec()).unwrap()))
                        .unwrap()
                })
                .unwrap();
            consumed += n;
        }
        assert!(chunked.is_done());
        (events, consumed)
    }

    #[test]
    fn whole_body() {
        let (body, want) = sample();
        let (events, consumed) = decode_in_pieces(&body, &[]);
        assert_eq!(events, want);
        assert_eq!(&body[consumed..], b"NEXT");
    }

    #[test]
    fn split_at_every_byte() {
        let (body, want) = sample();
        for cut in 0..=body.len() {
            let (events, consumed) = decode_in_pieces(&body, &[cut]);
            assert_eq!(events, want, "split at {cut}");
            assert_eq!(&body[consumed..], b"NEXT", "split at {cut}");
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let (body, want) = sample();
        let cuts: Vec<usize> = (1..body.len()).collect();
        let (events, consumed) = decode_in_pieces(&body, &cuts);
        assert_eq!(events, want);
        assert_eq!(&body[consumed..], b"NEXT");
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"zz\r\n", |_| {}), Err(FramingError));
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"2\r\nabXY", |_| {}), Err(FramingError));
    }

    #[test]
    fn classify_events() {
        let (_, want) = sample();
        let infos: Vec<EventInfo> = want.iter().map(|e| classify(e.as_bytes())).collect();
        let content: Vec<bool> = infos.iter().map(|i| i.content).collect();
        assert_eq!(content, [false, true, true, true, false, false]);
        assert_eq!(infos[4].completion_tokens, Some(7));
        assert!(infos[5].done);
        assert_eq!(classify(b"not json"), EventInfo::default());
        assert_eq!(
            classify(b"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}"),
            EventInfo::default()
        );
    }
}
