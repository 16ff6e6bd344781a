//! Byte-level builders for the mock's HTTP responses and OpenAI JSON shapes.
//!
//! Everything appends to a caller-owned, reused `Vec<u8>` so the hot path
//! does no formatting machinery and no allocation once buffers are warm.
//! Strings spliced into JSON (`model`) are already JSON-escaped by the caller;
//! all other text is static and needs no escaping.

use super::json::GenKind;

/// The generated "tokens". Each carries its trailing space so a completion's
/// text is exactly the concatenation of its stream deltas.
const WORDS: [&str; 32] = [
    "the ",
    "quick ",
    "brown ",
    "fox ",
    "jumps ",
    "over ",
    "a ",
    "lazy ",
    "dog ",
    "while ",
    "mock ",
    "tokens ",
    "stream ",
    "from ",
    "an ",
    "imaginary ",
    "model ",
    "that ",
    "never ",
    "tires ",
    "of ",
    "saying ",
    "exactly ",
    "what ",
    "the ",
    "benchmark ",
    "asked ",
    "for ",
    "and ",
    "nothing ",
    "more ",
    "today ",
];

pub fn word(i: u32) -> &'static [u8] {
    WORDS[i as usize % WORDS.len()].as_bytes()
}

pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Room reserved at the front of an event buffer for its chunk-size line.
pub const CHUNK_RESERVE: usize = 18;

/// Frames `buf[CHUNK_RESERVE..]` as one HTTP/1.1 chunk, writing the size
/// line into the reserved space just before the payload so the event needs
/// no extra copy. Returns the offset at which the framed chunk starts.
pub fn frame_chunk(buf: &mut Vec<u8>) -> usize {
    let len = buf.len() - CHUNK_RESERVE;
    let bits = (usize::BITS - len.leading_zeros()).max(1) as usize;
    let digits = bits.div_ceil(4);
    let start = CHUNK_RESERVE - 2 - digits;
    let mut n = len;
    for b in buf[start..start + digits].iter_mut().rev() {
        *b = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    buf[CHUNK_RESERVE - 2..CHUNK_RESERVE].copy_from_slice(b"\r\n");
    buf.extend_from_slice(b"\r\n");
    start
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// What the `Connection` response header must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnHeader {
    /// HTTP/1.1 keep-alive: no header needed.
    Omit,
    /// HTTP/1.0 client that asked for keep-alive.
    KeepAlive,
    Close,
}

fn push_status_and_conn(buf: &mut Vec<u8>, status: u16, conn: ConnHeader) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    push_u64(buf, u64::from(status));
    buf.push(b' ');
    buf.extend_from_slice(reason(status).as_bytes());
    buf.extend_from_slice(b"\r\n");
    match conn {
        ConnHeader::Omit => {}
        ConnHeader::KeepAlive => buf.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => buf.extend_from_slice(b"Connection: close\r\n"),
    }
}

/// A complete response: head plus `body`.
pub fn full(buf: &mut Vec<u8>, status: u16, content_type: &str, conn: ConnHeader, body: &[u8]) {
    push_status_and_conn(buf, status, conn);
    buf.extend_from_slice(b"Content-Type: ");
    buf.extend_from_slice(content_type.as_bytes());
    buf.extend_from_slice(b"\r\nContent-Length: ");
    push_u64(buf, body.len() as u64);
    buf.extend_from_slice(b"\r\n\r\n");
    buf.extend_from_slice(body);
}

/// Head of a server-sent-events response. `chunked` is false only for
/// HTTP/1.0 clients, which get an EOF-delimited body instead.
pub fn sse_head(buf: &mut Vec<u8>, conn: ConnHeader, chunked: bool) {
    push_status_and_conn(buf, 200, conn);
    buf.extend_from_slice(b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n");
    if chunked {
        buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// OpenAI-style error body.
pub fn error_body(buf: &mut Vec<u8>, message: &str, kind: &str, code: Option<&str>) {
    buf.extend_from_slice(b"{\"error\":{\"message\":\"");
    buf.extend_from_slice(message.as_bytes());
    buf.extend_from_slice(b"\",\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"param\":null,\"code\":");
    match code {
        Some(c) => {
            buf.push(b'"');
            buf.extend_from_slice(c.as_bytes());
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b"}}");
}

/// Error body for a status injected with `x-mock-status`, typed the way
/// OpenAI types that class of failure.
pub fn injected_error_body(buf: &mut Vec<u8>, status: u16) {
    let (kind, code) = match status {
        401 => ("authentication_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    let message = format!("mock error injected by x-mock-status: {status}");
    error_body(buf, &message, kind, code);
}

/// Per-response identity shared by every chunk of a stream.
#[derive(Clone, Copy, Debug)]
pub struct Ident<'a> {
    pub kind: GenKind,
    pub id: u64,
    pub created: u64,
    /// JSON-escaped model name, without quotes.
    pub model: &'a [u8],
}

fn push_ident(buf: &mut Vec<u8>, ident: &Ident<'_>, object: &[u8]) {
    buf.extend_from_slice(match ident.kind {
        GenKind::Chat => b"{\"id\":\"chatcmpl-mock-",
        GenKind::Completion => b"{\"id\":\"cmpl-mock-",
    });
    push_u64(buf, ident.id);
    buf.extend_from_slice(b"\",\"object\":\"");
    buf.extend_from_slice(object);
    buf.extend_from_slice(b"\",\"created\":");
    push_u64(buf, ident.created);
    buf.extend_from_slice(b",\"model\":\"");
    buf.extend_from_slice(ident.model);
    buf.extend_from_slice(b"\",");
}

pub fn push_usage(buf: &mut Vec<u8>, prompt: u64, completion: u64) {
    buf.extend_from_slice(b"\"usage\":{\"prompt_tokens\":");
    push_u64(buf, prompt);
    buf.extend_from_slice(b",\"completion_tokens\":");
    push_u64(buf, completion);
    buf.extend_from_slice(b",\"total_tokens\":");
    push_u64(buf, prompt + completion);
    buf.push(b'}');
}

fn finish_reason(length: bool) -> &'static [u8] {
    if length {
        b"\"length\""
    } else {
        b"\"stop\""
    }
}

/// Non-streaming `chat.completion` / `text_completion` body.
pub fn completion_body(
    buf: &mut Vec<u8>,
    ident: &Ident<'_>,
    tokens: u32,
    finish_length: bool,
    prompt_tokens: u64,
) {
    let object: &[u8] = match ident.kind {
        GenKind::Chat => b"chat.completion",
        GenKind::Completion => b"text_completion",
    };
    push_ident(buf, ident, object);
    buf.extend_from_slice(match ident.kind {
        GenKind::Chat => {
            b"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\""
        }
        GenKind::Completion => b"\"choices\":[{\"index\":0,\"text\":\"",
    });
    for i in 0..tokens {
        buf.extend_from_slice(word(i));
    }
    buf.extend_from_slice(match ident.kind {
        GenKind::Chat => b"\"},\"logprobs\":null,\"finish_reason\":",
        GenKind::Completion => b"\",\"logprobs\":null,\"finish_reason\":",
    });
    buf.extend_from_slice(finish_reason(finish_length));
    buf.extend_from_slice(b"}],");
    push_usage(buf, prompt_tokens, u64::from(tokens));
    buf.push(b'}');
}

/// One streamed event (the SSE `data:` line plus its blank line).
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// Chat only: the assistant-role delta that precedes the first token.
    Role,
    Token(u32),
    Finish {
        length: bool,
    },
    Usage {
        prompt: u64,
        completion: u64,
    },
    Done,
}

pub fn sse_event(buf: &mut Vec<u8>, ident: &Ident<'_>, ev: Event) {
    buf.extend_from_slice(b"data: ");
    if let Event::Done = ev {
        buf.extend_from_slice(b"[DONE]\n\n");
        return;
    }
    let object: &[u8] = match ident.kind {
        GenKind::Chat => b"chat.completion.chunk",
        GenKind::Completion => b"text_completion",
    };
    push_ident(buf, ident, object);
    match (ev, ident.kind) {
        (Event::Usage { prompt, completion }, _) => {
            buf.extend_from_slice(b"\"choices\":[],");
            push_usage(buf, prompt, completion);
            buf.push(b'}');
        }
        (Event::Role, _) => buf.extend_from_slice(
            b"\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}",
        ),
        (Event::Token(i), GenKind::Chat) => {
            buf.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
            buf.extend_from_slice(word(i));
            buf.extend_from_slice(b"\"},\"logprobs\":null,\"finish_reason\":null}]}");
        }
        (Event::Token(i), GenKind::Completion) => {
            buf.extend_from_slice(b"\"choices\":[{\"index\":0,\"text\":\"");
            buf.extend_from_slice(word(i));
            buf.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":null}]}");
        }
        (Event::Finish { length }, GenKind::Chat) => {
            buf.extend_from_slice(
                b"\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":",
            );
            buf.extend_from_slice(finish_reason(length));
            buf.extend_from_slice(b"}]}");
        }
        (Event::Finish { length }, GenKind::Completion) => {
            buf.extend_from_slice(
                b"\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":",
            );
            buf.extend_from_slice(finish_reason(length));
            buf.extend_from_slice(b"}]}");
        }
        (Event::Done, _) => {}
    }
    buf.extend_from_slice(b"\n\n");
}

/// `/v1/embeddings` body: `inputs` vectors of `dims` deterministic floats.
pub fn embeddings_body(
    buf: &mut Vec<u8>,
    model: &[u8],
    inputs: usize,
    dims: usize,
    prompt_tokens: u64,
) {
    buf.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for i in 0..inputs {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        push_u64(buf, i as u64);
        buf.extend_from_slice(b",\"embedding\":[");
        for d in 0..dims {
            if d > 0 {
                buf.push(b',');
            }
            // Values in (-1, 1) with three decimals, varied per input/dim.
            let v = (i as u64 * 7919 + d as u64 * 104_729 + 17) % 1999;
            let (neg, mag) = if v >= 1000 {
                (true, v - 999)
            } else {
                (false, v)
            };
            if neg {
                buf.push(b'-');
            }
            buf.extend_from_slice(b"0.");
            buf.push(b'0' + (mag / 100) as u8);
            buf.push(b'0' + (mag / 10 % 10) as u8);
            buf.push(b'0' + (mag % 10) as u8);
        }
        buf.extend_from_slice(b"]}");
    }
    buf.extend_from_slice(b"],\"model\":\"");
    buf.extend_from_slice(model);
    buf.extend_from_slice(b"\",\"usage\":{\"prompt_tokens\":");
    push_u64(buf, prompt_tokens);
    buf.extend_from_slice(b",\"total_tokens\":");
    push_u64(buf, prompt_tokens);
    buf.extend_from_slice(b"}}");
}

/// `/v1/models` body listing the one served model.
pub fn models_body(buf: &mut Vec<u8>, model: &[u8]) {
    buf.extend_from_slice(b"{\"object\":\"list\",\"data\":[{\"id\":\"");
    buf.extend_from_slice(model);
    buf.extend_from_slice(b"\",\"object\":\"model\",\"created\":0,\"owned_by\":\"weir-mock\"}]}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
    }

    const CHAT: Ident<'static> = Ident {
        kind: GenKind::Chat,
        id: 42,
        created: 1_700_000_000,
        model: br#"my\"model"#,
    };

    #[test]
    fn numbers() {
        let mut b = Vec::new();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            b.clear();
            push_u64(&mut b, n);
            assert_eq!(b, n.to_string().as_bytes());
        }
        for n in [0usize, 9, 10, 255, 4096, 0xdead_beef] {
            b.clear();
            b.resize(CHUNK_RESERVE, 0);
            b.extend(std::iter::repeat_n(b'x', n.min(70_000)));
            let len = b.len() - CHUNK_RESERVE;
            let start = frame_chunk(&mut b);
            let expect = format!("{len:x}\r\n{}\r\n", "x".repeat(len));
            assert_eq!(&b[start..], expect.as_bytes());
        }
    }

    #[test]
    fn chat_completion_shape() {
        let mut b = Vec::new();
        completion_body(&mut b, &CHAT, 5, true, 11);
        let v = parse(&b);
        assert_eq!(v["id"], "chatcmpl-mock-42");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["created"], 1_700_000_000u64);
        assert_eq!(v["model"], "my\"model");
        let c = &v["choices"][0];
        assert_eq!(c["index"], 0);
        assert_eq!(c["message"]["role"], "assistant");
        assert_eq!(c["message"]["content"], "the quick brown fox jumps ");
        assert_eq!(c["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], 11);
        assert_eq!(v["usage"]["completion_tokens"], 5);
        assert_eq!(v["usage"]["total_tokens"], 16);
    }

    #[test]
    fn text_completion_shape() {
        let mut b = Vec::new();
        let ident = Ident {
            kind: GenKind::Completion,
            ..CHAT
        };
        completion_body(&mut b, &ident, 0, false, 1);
        let v = parse(&b);
        assert_eq!(v["id"], "cmpl-mock-42");
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 1);
    }

    fn event_json(ident: &Ident<'_>, ev: Event) -> Value {
        let mut b = Vec::new();
        sse_event(&mut b, ident, ev);
        let s = std::str::from_utf8(&b).unwrap();
        let payload = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        parse(payload.as_bytes())
    }

    #[test]
    fn chat_stream_events() {
        let v = event_json(&CHAT, Event::Role);
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v["choices"][0]["delta"]["content"], "");
        assert!(v["choices"][0]["finish_reason"].is_null());

        let v = event_json(&CHAT, Event::Token(1));
        assert_eq!(v["choices"][0]["delta"]["content"], "quick ");

        let v = event_json(&CHAT, Event::Finish { length: true });
        assert_eq!(v["choices"][0]["delta"], serde_json::json!({}));
        assert_eq!(v["choices"][0]["finish_reason"], "length");

        let v = event_json(
            &CHAT,
            Event::Usage {
                prompt: 3,
                completion: 4,
            },
        );
        assert_eq!(v["choices"], serde_json::json!([]));
        assert_eq!(v["usage"]["total_tokens"], 7);

        let mut b = Vec::new();
        sse_event(&mut b, &CHAT, Event::Done);
        assert_eq!(b, b"data: [DONE]\n\n");
    }

    #[test]
    fn completion_stream_events() {
        let ident = Ident {
            kind: GenKind::Completion,
            ..CHAT
        };
        let v = event_json(&ident, Event::Token(0));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "the ");
        let v = event_json(&ident, Event::Finish { length: false });
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn heads_and_errors() {
        let mut b = Vec::new();
        full(&mut b, 404, "application/json", ConnHeader::Close, b"{}");
        assert_eq!(
            b,
            b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        b.clear();
        sse_head(&mut b, ConnHeader::Omit, true);
        assert_eq!(
            b,
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"[..]
        );
        b.clear();
        injected_error_body(&mut b, 503);
        let v = parse(&b);
        assert_eq!(
            v["error"]["message"],
            "mock error injected by x-mock-status: 503"
        );
        assert_eq!(v["error"]["type"], "server_error");
        b.clear();
        injected_error_body(&mut b, 429);
        assert_eq!(parse(&b)["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn embeddings_and_models() {
        let mut b = Vec::new();
        embeddings_body(&mut b, b"emb", 2, 8, 9);
        let v = parse(&b);
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        let e = v["data"][0]["embedding"].as_array().unwrap();
        assert_eq!(e.len(), 8);
        assert!(e.iter().all(|x| x.as_f64().unwrap().abs() < 1.0));
        assert_eq!(v["usage"]["prompt_tokens"], 9);
        b.clear();
        models_body(&mut b, b"mock-model");
        let v = parse(&b);
        assert_eq!(v["data"][0]["id"], "mock-model");
    }
}
