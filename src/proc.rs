//! Child processes, for the two places opsdeck starts them (a `command` stage and a canary's
//! `traffic` command): a guard that kills a whole process group, and a reader that keeps the
//! head of a stream while draining the rest, so a chatty child never blocks on a full pipe.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Kills a process group when dropped, so a child abandoned for any reason (even a panic or a
/// dropped future) leaves no processes behind.
pub struct GroupGuard(pub Option<i32>);

impl GroupGuard {
    /// Guards the group led by `pid` (a child started with `process_group(0)`).
    pub fn of(pid: Option<u32>) -> GroupGuard {
        GroupGuard(pid.and_then(|p| i32::try_from(p).ok()))
    }

    pub fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first `limit` bytes of a stream and its whole length, read to the end.
pub async fn read_head<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> (Vec<u8>, u64) {
    let mut bytes = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total = total.saturating_add(n as u64);
                let room = limit.saturating_sub(bytes.len());
                bytes.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (bytes, total)
}
