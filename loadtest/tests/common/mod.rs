//! What the loadtest integration tests share: the real mock, started on port 0 and
//! killed by PID (via `Child`) when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_weir-loadtest");

pub struct Mock {
    child: Child,
    /// `127.0.0.1:PORT`, as the mock printed it.
    pub addr: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mock {
    pub fn start(args: &[&str]) -> Mock {
        let child = Command::new(BIN)
            .args(["mock", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mock");
        // The guard exists before anything can fail, so the child never leaks.
        let mut mock = Mock {
            child,
            addr: String::new(),
        };
        let stdout = mock.child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        mock.addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        mock
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
