//! A non-blocking look at a socket's receive side, without consuming anything: used to
//! vet idle pooled upstream connections and to notice clients that hung up.

use std::os::unix::io::RawFd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read and the peer has not closed.
    Quiet,
    /// Bytes are waiting.
    Data,
    /// EOF or an error (reset): the peer is gone.
    Closed,
}

pub fn peek(fd: RawFd) -> Peek {
    let mut b = [0u8; 1];
    // SAFETY: valid 1-byte buffer; MSG_DONTWAIT never blocks; an invalid fd is an error.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peek::Closed,
        n if n > 0 => Peek::Data,
        _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock => {
            Peek::Quiet
        }
        _ => Peek::Closed,
    }
}
