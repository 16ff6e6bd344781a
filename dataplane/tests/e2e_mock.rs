//! End to end with the bundled mock inference server (`weir-loadtest mock`) as a real
//! process behind a real `weir` process. `scripts/test.sh` builds both binaries first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use support::*;

struct Mock(Child, SocketAddr);

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mock() -> Mock {
    // The mock lives in another crate of the workspace: next to `weir` in target/.
    let weir = PathBuf::from(env!("CARGO_BIN_EXE_weir"));
    let bin = weir.with_file_name("weir-loadtest");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    let (child, addr) =
        spawn_listening(Command::new(bin).args(["mock", "--listen", "127.0.0.1:0"]));
    Mock(child, addr)
}

#[test]
fn chat_completion_through_weir_and_the_mock() {
    let mock = start_mock();
    let gw = Gateway::to(mock.1);
    let r = request(
        gw.addr,
        &post_json(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":7}"#,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 7);
}

#[test]
fn streamed_chat_completion_with_usage_through_weir() {
    let mock = start_mock();
    let gw = Gateway::to(mock.1);
    let r = request(
        gw.addr,
        &post_json(
            "/v1/chat/completions",
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = String::from_utf8(r.body).unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let usage: serde_json::Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    let content: String = events[..events.len() - 2]
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!content.is_empty());
}
