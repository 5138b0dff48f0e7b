//! At most one host per workspace: an exclusive advisory lock on `.opsdeck/host.lock`, plus
//! `.opsdeck/host.json` naming the holder so a second host can say who is in the way. The
//! kernel drops the lock when the holder dies, however it dies, which is how the next process
//! knows a crashed host's runs were interrupted. `host.json` is readable by its owner only:
//! it carries the token that lets the same user's commands act through the host.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// Who hosts a workspace, published in `host.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub pid: u32,
    /// The command line that hosts it, such as `opsdeck serve`.
    pub command: String,
    pub started_at: Timestamp,
    /// Where the host can be reached, once it serves HTTP.
    pub address: Option<String>,
    /// The bearer token for `address`, when it needs one: made fresh by each host, so only
    /// someone who can read this file (the user running the host) can act through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl HostInfo {
    pub fn describe(&self) -> String {
        format!(
            "`{}` (pid {}, running since {})",
            self.command, self.pid, self.started_at
        )
    }
}

/// A held workspace lock; released (and `host.json` removed) on drop.
#[derive(Debug)]
pub struct HostLock {
    info_path: Option<PathBuf>,
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held_message(.0.as_ref()))]
    Held(Option<HostInfo>),
    #[error("cannot use the workspace lock {path}: {message}")]
    Io { path: String, message: String },
}

fn held_message(info: Option<&HostInfo>) -> String {
    match info {
        Some(i) => format!("the workspace is hosted by {}", i.describe()),
        None => "the workspace is hosted by another opsdeck process".to_string(),
    }
}

fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("host.lock")
}

fn info_path(state_dir: &Path) -> PathBuf {
    state_dir.join("host.json")
}

/// Writes `info` to `host.json` through a file only its owner can read, then renames it in
/// place, so no reader ever sees half of it or a moment of wider permissions.
fn publish(state_dir: &Path, info: &HostInfo) -> Result<PathBuf, LockError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = info_path(state_dir);
    let tmp = state_dir.join("host.json.tmp");
    let text = serde_json::to_string_pretty(info).unwrap_or_default();
    let _ = std::fs::remove_file(&tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| LockError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    Ok(path)
}

fn open(state_dir: &Path) -> Result<File, LockError> {
    let path = lock_path(state_dir);
    std::fs::create_dir_all(state_dir)
        .and_then(|()| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .map_err(|e| LockError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

/// Tries to take the lock, 50 ms apart: a second in all.
const ATTEMPTS: u32 = 20;

fn try_lock(file: &File, state_dir: &Path) -> Result<bool, LockError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(LockError::Io {
            path: lock_path(state_dir).display().to_string(),
            message: e.to_string(),
        }),
    }
}

impl HostLock {
    /// The host that holds the workspace, after the patience [`HostLock::acquire`] has (a
    /// read-only command recovering a crashed host's runs holds the lock for a moment, while
    /// the crashed host's `host.json` still names it): `None` once the lock is free.
    pub fn lasting_holder(state_dir: &Path) -> Option<HostInfo> {
        for attempt in 0..ATTEMPTS {
            let h = Self::holder(state_dir)?;
            if attempt + 1 == ATTEMPTS {
                return Some(h);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Takes the lock to host the workspace and publishes `info`. Waits up to a second, since
    /// a read-only command may hold the lock for a moment while it recovers a crashed host's runs.
    pub fn acquire(state_dir: &Path, info: &HostInfo) -> Result<HostLock, LockError> {
        let file = open(state_dir)?;
        for attempt in 0..ATTEMPTS {
            if try_lock(&file, state_dir)? {
                let path = publish(state_dir, info)?;
                return Ok(HostLock {
                    info_path: Some(path),
                    _file: file,
                });
            }
            if attempt + 1 < ATTEMPTS {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(LockError::Held(Self::holder(state_dir)))
    }

    /// Takes the lock only if it is free right now, without publishing anything: for a
    /// read-only command that wants to recover a crashed host's runs.
    pub fn try_quiet(state_dir: &Path) -> Result<Option<HostLock>, LockError> {
        let file = open(state_dir)?;
        Ok(try_lock(&file, state_dir)?.then_some(HostLock {
            info_path: None,
            _file: file,
        }))
    }

    /// The current host, if one holds the lock and has published itself.
    pub fn holder(state_dir: &Path) -> Option<HostInfo> {
        // A host makes the lock file before it takes the lock: without one, nobody hosts the
        // workspace, and a read-only command leaves no file behind by asking.
        if !lock_path(state_dir).exists() {
            return None;
        }
        let file = open(state_dir).ok()?;
        if try_lock(&file, state_dir).ok()? {
            // Nobody holds it: any host.json is stale.
            return None;
        }
        let text = std::fs::read_to_string(info_path(state_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records where the host can be reached (for commands that talk to it).
    pub fn set_address(&self, info: &HostInfo) -> Result<(), LockError> {
        match self.info_path.as_deref().and_then(Path::parent) {
            Some(dir) => publish(dir, info).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        if let Some(path) = &self.info_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_host_is_refused_and_told_who_holds_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let info = HostInfo {
            pid: 4242,
            command: "opsdeck serve".into(),
            started_at: Timestamp::from_millis(0),
            address: None,
            token: None,
        };
        let held = HostLock::acquire(dir.path(), &info).unwrap();
        assert!(HostLock::try_quiet(dir.path()).unwrap().is_none());
        let err = HostLock::acquire(dir.path(), &info)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the workspace is hosted by `opsdeck serve` (pid 4242, running since 1970-01-01T00:00:00.000Z)"
        );
        let mode = std::fs::metadata(dir.path().join("host.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "host.json carries a token: owner only");
        drop(held);
        assert!(!dir.path().join("host.json").exists());
        assert!(HostLock::try_quiet(dir.path()).unwrap().is_some());
    }
}
