//! One writer per lake.
//!
//! The lock is a sequence of immutable objects `_opslake/lock/<seq>.json`, each created with a
//! conditional put (`PutMode::Create`: `If-None-Match: *` on S3, an atomic link on a local
//! disk). Whoever creates the next number owns the lake; two runs racing for the same number
//! cannot both win. The newest entry says who holds the lake and until when: a run takes the
//! next number only when the newest entry is released, expired, or held by a process on this
//! host that no longer exists (a run killed by the scheduler). Renewing and releasing are the
//! same move: creating the next entry. A holder whose renewal finds the number taken has lost
//! the lake and must stop before committing anything more.
//!
//! Compare-and-swap on one object would need `If-Match`, which local disks and some S3
//! implementations lack; create-only entries work on every store object_store supports.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, Lake, Result};

const LOCK_DIR: &str = "_opslake/lock";

/// How long a lock is good for without renewal. Runs renew it while they work, so this bounds
/// how long a lake stays blocked after a run dies on another host.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// One entry of the lock sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockEntry {
    /// `held` or `released`.
    pub state: String,
    /// The run holding (or releasing) the lake.
    pub run_id: String,
    /// What it is doing (`ingest`, `maintain`).
    pub command: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the entry was written.
    pub written_at: DateTime<Utc>,
    /// When a `held` entry stops counting.
    pub expires_at: DateTime<Utc>,
}

impl LockEntry {
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.state == "held" && self.expires_at > now && !self.holder_is_gone()
    }

    /// A holder on this host whose process has exited will never release the lock.
    fn holder_is_gone(&self) -> bool {
        self.host == host_name() && self.pid != std::process::id() && !process_exists(self.pid)
    }
}

/// A held lock. Drop does not release it (release is async): call [`LakeLock::release`]; a lock
/// left behind by a crash expires or is found dead by the next run on this host.
#[derive(Debug)]
pub struct LakeLock {
    store: std::sync::Arc<dyn ObjectStore>,
    seq: u64,
    entry: LockEntry,
    ttl: Duration,
}

/// The host name, for lock entries and run records.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

fn process_exists(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        // Without /proc we cannot tell: assume alive and let the lock expire.
        return true;
    }
    // A zombie (killed, not yet reaped by its parent) still has /proc/<pid> but will never run.
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn entry_path(seq: u64) -> Path {
    Path::from(format!("{LOCK_DIR}/{seq:020}.json"))
}

fn store_err(context: impl Into<String>) -> impl FnOnce(object_store::Error) -> Error {
    let context = context.into();
    move |source| Error::Store { context, source }
}

/// The newest lock entry and its number, if any.
async fn newest(store: &dyn ObjectStore) -> Result<Option<(u64, LockEntry)>> {
    use futures::TryStreamExt;
    let prefix = Path::from(LOCK_DIR);
    let mut attempts = 0;
    let (seq, bytes) = loop {
        let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.map_err(store_err("listing the lock"))?;
        let Some(seq) =
            metas.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse::<u64>().ok()).max()
        else {
            return Ok(None);
        };
        let read = match store.get(&entry_path(seq)).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(bytes) => break (seq, bytes),
            // The holder renewed or released between the listing and the read: list again.
            Err(object_store::Error::NotFound { .. }) if attempts < 5 => attempts += 1,
            Err(e) => return Err(store_err("reading the lock")(e)),
        }
    };
    let entry: LockEntry = serde_json::from_slice(&bytes).map_err(|e| Error::Location {
        message: format!("lock entry {} is not valid JSON ({e}); remove it if no run is active", entry_path(seq)),
    })?;
    Ok(Some((seq, entry)))
}

/// Creates entry `seq`; `false` when another process created it first.
async fn create(store: &dyn ObjectStore, seq: u64, entry: &LockEntry) -> Result<bool> {
    let body = serde_json::to_vec_pretty(entry).map_err(|e| Error::Internal { message: e.to_string() })?;
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match store.put_opts(&entry_path(seq), PutPayload::from(body), opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            // Taken by someone else, or by us: a PUT whose answer was lost is retried by
            // object_store and then finds our own entry.
            let existing = match store.get(&entry_path(seq)).await {
                Ok(got) => got.bytes().await.ok(),
                Err(_) => None,
            };
            Ok(existing.and_then(|b| serde_json::from_slice::<LockEntry>(&b).ok()).is_some_and(|e| &e == entry))
        }
        Err(e) => Err(store_err("writing the lock")(e)),
    }
}

impl LakeLock {
    /// Takes the lake for `run_id`, or fails with [`Error::Locked`] naming the holder.
    pub async fn acquire(lake: &Lake, run_id: &str, command: &str, ttl: Duration) -> Result<Self> {
        let store = lake.store().clone();
        let now = Utc::now();
        let entry = LockEntry {
            state: "held".into(),
            run_id: run_id.to_string(),
            command: command.to_string(),
            host: host_name(),
            pid: std::process::id(),
            written_at: now,
            expires_at: now + ttl,
        };
        let current = newest(store.as_ref()).await?;
        if let Some((_, held)) = current.as_ref().filter(|(_, e)| e.is_live(now)) {
            return Err(locked_message(lake, held));
        }
        let seq = current.as_ref().map_or(1, |(s, _)| s + 1);
        if !create(store.as_ref(), seq, &entry).await? {
            // Lost the race: say who won.
            let winner = newest(store.as_ref()).await?.map(|(_, e)| e);
            return Err(match winner {
                Some(w) => locked_message(lake, &w),
                None => Error::Locked { message: format!("the lake {} is being taken by another run", lake.url()) },
            });
        }
        // Entries before the previous one serve no one: keep the log of the lock short.
        if seq > 2 {
            let _ = store.delete(&entry_path(seq - 2)).await;
        }
        Ok(Self { store, seq, entry, ttl })
    }

    /// The entry this lock wrote.
    pub fn entry(&self) -> &LockEntry {
        &self.entry
    }

    /// Extends the lock when less than half its time is left; fails with [`Error::Locked`] when
    /// another run took the lake meanwhile (this one was presumed dead).
    pub async fn renew_if_due(&mut self) -> Result<()> {
        let now = Utc::now();
        let half = chrono::Duration::from_std(self.ttl / 2).unwrap_or_default();
        if self.entry.expires_at - now > half {
            return Ok(());
        }
        let mut next = self.entry.clone();
        next.written_at = now;
        next.expires_at = now + self.ttl;
        if !create(self.store.as_ref(), self.seq + 1, &next).await? {
            return Err(Error::Locked {
                message: format!(
                    "run {} lost the lake's lock to another run (it expired); stopping before writing more",
                    self.entry.run_id
                ),
            });
        }
        let _ = self.store.delete(&entry_path(self.seq)).await;
        self.seq += 1;
        self.entry = next;
        Ok(())
    }

    /// Gives the lake back. Returns `false` when another run had already taken it.
    pub async fn release(self) -> Result<bool> {
        let mut released = self.entry.clone();
        released.state = "released".into();
        released.written_at = Utc::now();
        let ok = create(self.store.as_ref(), self.seq + 1, &released).await?;
        if ok {
            let _ = self.store.delete(&entry_path(self.seq)).await;
        }
        Ok(ok)
    }
}

fn locked_message(lake: &Lake, held: &LockEntry) -> Error {
    Error::Locked {
        message: format!(
            "the lake {} is busy: run {} ({}) holds it, on {} pid {}, since {}; the lock expires at {} unless renewed. Run again later.",
            lake.url(),
            held.run_id,
            held.command,
            held.host,
            held.pid,
            held.written_at.format("%Y-%m-%d %H:%M:%S UTC"),
            held.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
        ),
    }
}

/// The entry holding the lake now, if any: for `opslake runs`, to tell a running run from a
/// killed one.
pub async fn holder(lake: &Lake) -> Result<Option<LockEntry>> {
    let now = Utc::now();
    Ok(newest(lake.store().as_ref()).await?.map(|(_, e)| e).filter(|e| e.is_live(now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opslake_config::StorageLocation;

    fn lake(dir: &std::path::Path) -> Lake {
        Lake::open(&StorageLocation::Local(dir.to_path_buf())).expect("lake")
    }

    #[tokio::test]
    async fn a_second_writer_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(dir.path());
        let first = LakeLock::acquire(&lake, "run-1", "ingest", DEFAULT_TTL).await.expect("free lake");
        let err = LakeLock::acquire(&lake, "run-2", "ingest", DEFAULT_TTL).await.expect_err("held");
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(err.to_string().contains("run-1"), "{err}");
        assert_eq!(holder(&lake).await.expect("reads").map(|e| e.run_id), Some("run-1".into()));
        assert!(first.release().await.expect("releases"));
        assert_eq!(holder(&lake).await.expect("reads"), None);
        let second = LakeLock::acquire(&lake, "run-2", "ingest", DEFAULT_TTL).await.expect("released lake");
        assert!(second.release().await.expect("releases"));
    }

    #[tokio::test]
    async fn an_expired_lock_is_taken_over_and_its_holder_learns_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(dir.path());
        let mut stale = LakeLock::acquire(&lake, "run-1", "ingest", Duration::from_millis(1)).await.expect("free");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taker = LakeLock::acquire(&lake, "run-2", "ingest", DEFAULT_TTL).await.expect("expired lock");
        let err = stale.renew_if_due().await.expect_err("lost");
        assert!(err.to_string().contains("lost the lake"), "{err}");
        assert!(taker.release().await.expect("releases"));
    }

    #[tokio::test]
    async fn a_lock_of_a_dead_process_on_this_host_is_stale_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(dir.path());
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead_pid = child.id();
        child.wait().expect("exits");
        let now = Utc::now();
        let entry = LockEntry {
            state: "held".into(),
            run_id: "killed-run".into(),
            command: "ingest".into(),
            host: host_name(),
            pid: dead_pid,
            written_at: now,
            expires_at: now + chrono::Duration::hours(1),
        };
        assert!(create(lake.store().as_ref(), 1, &entry).await.expect("writes"));
        let lock = LakeLock::acquire(&lake, "run-2", "ingest", DEFAULT_TTL).await.expect("dead holder");
        assert_eq!(lock.seq, 2);
        assert!(lock.release().await.expect("releases"));
    }

    #[tokio::test]
    async fn racing_writers_get_one_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(dir.path());
        let tries = (0..8).map(|i| {
            let lake = lake.clone();
            tokio::spawn(async move { LakeLock::acquire(&lake, &format!("run-{i}"), "ingest", DEFAULT_TTL).await })
        });
        let results = futures::future::join_all(tries).await;
        let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        let refused = results.iter().filter(|r| matches!(r, Ok(Err(Error::Locked { .. })))).count();
        assert_eq!((won, refused), (1, 7));
    }
}
