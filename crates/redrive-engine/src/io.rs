//! The file layer under the WAL: a directory of append-only segment files behind two small
//! traits, so tests can swap the real file system for memory that injects torn writes, lost
//! unsynced data and fsync errors.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A directory of segment files.
pub trait Storage: Send + 'static {
    /// File names in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    fn open(&self, name: &str) -> io::Result<Box<dyn SegmentFile>>;
    /// Creates an empty file; fails if it exists.
    fn create(&self, name: &str) -> io::Result<Box<dyn SegmentFile>>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// A way to remove a file and make that durable from another thread, for removals that
    /// need not hold up the caller; `None` (the default) when they are done in place.
    fn remover(&self) -> Option<Remove> {
        None
    }
}

/// Removes one file of the directory and makes the removal durable (see [`Storage::remover`]).
pub type Remove = Box<dyn FnMut(&str) -> io::Result<()> + Send>;

/// One append-only file.
#[allow(clippy::len_without_is_empty)] // a segment is never empty: it starts with its header
pub trait SegmentFile: Send {
    fn len(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Reserves space up to `bytes` without changing what `len` reports, so that later appends
    /// do not change the file's size: an fsync then has no metadata to write (half the cost on
    /// ext4). Best effort: a file system that cannot do it just skips it, and on a nearly full
    /// disk it reserves what fits (appends then fail with `StorageFull` when space runs out).
    fn preallocate(&mut self, _bytes: u64) -> io::Result<()> {
        Ok(())
    }
    /// Cuts the file to `len` (dropping preallocated space) and makes it durable: the segment
    /// is complete.
    fn seal(&mut self) -> io::Result<()> {
        let len = self.len();
        self.truncate(len)?;
        self.sync()
    }
    /// A handle another thread can fsync the file through (group commit runs fsync off the
    /// engine thread).
    fn sync_handle(&self) -> Arc<dyn SyncHandle>;
}

/// Makes everything written to one file so far durable.
pub trait SyncHandle: Send + Sync {
    fn sync(&self) -> io::Result<()>;
}

/// Smallest preallocation worth making (see [`SegmentFile::preallocate`]).
const PREALLOCATE_MIN_BYTES: u64 = 64 * 1024;

/// What a segment being removed is renamed to first (see [`FsStorage::remover`]); a name the
/// log never reads, deleted at the next start if a crash left one.
const REMOVED_SUFFIX: &str = ".removed";
/// A removed segment's blocks are given back this many bytes at a time, with
/// [`FREE_STEP_PAUSE`] between two steps.
const FREE_STEP_BYTES: u64 = 2 << 20;
const FREE_STEP_PAUSE: Duration = Duration::from_millis(5);

/// The real file system. Holds an exclusive lock on `LOCK` in the directory so that two
/// servers never write one log.
pub struct FsStorage {
    dir: PathBuf,
    _lock: File,
}

impl FsStorage {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<FsStorage> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another redrive process", dir.display()),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let storage = FsStorage { dir, _lock: lock };
        // Removals a crash cut short: already removed as far as the log is concerned.
        for name in storage.list()? {
            if name.ends_with(REMOVED_SUFFIX) {
                storage.remove(&name)?;
            }
        }
        Ok(storage)
    }
}

/// Makes creations, renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Shortens a file to nothing a step at a time, then deletes it. With the file system mounted
/// with `discard` (as this project's machines are) the blocks a commit frees are discarded
/// before the commit completes, and every fsync waiting for that commit waits too: a 64 MiB
/// segment deleted at once held the log's fsync for 20–25 ms. A few MiB at a time, with a pause
/// between, each commit frees little (docs/benchmarks.md, "What the remaining stalls are").
fn free_gradually(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > FREE_STEP_BYTES {
        len -= FREE_STEP_BYTES;
        file.set_len(len)?;
        std::thread::sleep(FREE_STEP_PAUSE);
    }
    drop(file);
    fs::remove_file(path)
}

struct FsFile {
    file: Arc<File>,
    len: u64,
}

struct FsSync(Arc<File>);

impl SyncHandle for FsSync {
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            if let Some(n) = e?.file_name().to_str() {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.dir.join(name))?;
        let len = file.metadata()?.len();
        Ok(Box::new(FsFile { file: Arc::new(file), len }))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn SegmentFile>> {
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(self.dir.join(name))?;
        Ok(Box::new(FsFile { file: Arc::new(file), len: 0 }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    /// Unlinking a 64 MB segment takes the file system 10–30 ms on this project's machines
    /// (its blocks are freed and its cached pages dropped): long enough to be worth a thread.
    /// The removal proper is a rename to a name the log never reads, made durable; the blocks
    /// are then given back gradually ([`free_gradually`]).
    fn remover(&self) -> Option<Remove> {
        let dir = self.dir.clone();
        Some(Box::new(move |name| {
            let removed = dir.join(format!("{name}{REMOVED_SUFFIX}"));
            fs::rename(dir.join(name), &removed)?;
            sync_dir(&dir)?;
            // Removed for good now; a file left behind is deleted at the next start.
            if let Err(e) = free_gradually(&removed) {
                tracing::warn!(file = %removed.display(), error = %e, "cannot free a removed log segment yet");
            }
            Ok(())
        }))
    }
}

impl SegmentFile for FsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        // Positional: the file may be longer than `len` (preallocated).
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn preallocate(&mut self, bytes: u64) -> io::Result<()> {
        use rustix::io::Errno;
        // Halving on ENOSPC: a start on a small or nearly full disk must not need a whole
        // segment of free space.
        let mut want = bytes;
        while want >= PREALLOCATE_MIN_BYTES {
            match rustix::fs::fallocate(&*self.file, rustix::fs::FallocateFlags::empty(), 0, want) {
                Ok(()) => return Ok(()),
                Err(e) if e == Errno::OPNOTSUPP || e == Errno::NOSYS => return Ok(()),
                Err(e) if e == Errno::NOSPC => want /= 2,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::warn!(bytes, "the disk is nearly full: a log segment could not reserve space");
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()?;
        self.len = len;
        Ok(())
    }

    fn sync_handle(&self) -> Arc<dyn SyncHandle> {
        Arc::new(FsSync(self.file.clone()))
    }
}

/// In-memory storage for tests. It remembers how much of each file was synced, can fail the
/// next fsync or write, and [`MemStorage::crash`] drops what was never synced, optionally leaving
/// a torn prefix of it, as a power cut would.
#[derive(Clone, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Default)]
struct MemInner {
    files: BTreeMap<String, MemData>,
    fail_sync: bool,
    fail_write: bool,
    /// Creating a file fails as when descriptors run out (EMFILE).
    fail_create: bool,
    /// Bytes all files together may hold; appends past it fail with `StorageFull`.
    capacity: Option<usize>,
    dead: bool,
}

#[derive(Default, Clone)]
struct MemData {
    data: Vec<u8>,
    synced: usize,
}

struct MemFile {
    name: String,
    store: MemStorage,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Every later fsync fails (until cleared).
    pub fn fail_syncs(&self, on: bool) {
        self.inner.lock().unwrap().fail_sync = on;
    }

    /// Every later write fails (until cleared).
    pub fn fail_writes(&self, on: bool) {
        self.inner.lock().unwrap().fail_write = on;
    }

    /// Every later file creation fails, as when the process is out of descriptors (until cleared).
    pub fn fail_creates(&self, on: bool) {
        self.inner.lock().unwrap().fail_create = on;
    }

    /// A disk of `bytes` in all (`None`: unbounded): an append that does not fit fails with
    /// `ErrorKind::StorageFull`, as ENOSPC does, and writes nothing.
    pub fn set_capacity(&self, bytes: Option<usize>) {
        self.inner.lock().unwrap().capacity = bytes;
    }

    /// Simulates a power cut and returns the disk as a restarted machine finds it: each file
    /// keeps its synced bytes plus the first `torn` bytes of what was written after the last sync.
    /// This storage is dead from now on (every operation fails), as the crashed process would be.
    pub fn crash(&self, torn: usize) -> MemStorage {
        let mut g = self.inner.lock().unwrap();
        g.dead = true;
        let mut files = g.files.clone();
        for f in files.values_mut() {
            let keep = f.synced.saturating_add(torn).min(f.data.len());
            f.data.truncate(keep);
            f.synced = keep;
        }
        let capacity = g.capacity;
        MemStorage {
            inner: Arc::new(Mutex::new(MemInner { files, capacity, ..MemInner::default() })),
        }
    }

    /// Direct access for corruption tests.
    pub fn with_file<R>(&self, name: &str, f: impl FnOnce(&mut Vec<u8>) -> R) -> Option<R> {
        let mut g = self.inner.lock().unwrap();
        g.files.get_mut(name).map(|d| f(&mut d.data))
    }

    pub fn total_bytes(&self) -> usize {
        self.inner.lock().unwrap().files.values().map(|f| f.data.len()).sum()
    }
}

impl Storage for MemStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.inner.lock().unwrap().files.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn SegmentFile>> {
        if !self.inner.lock().unwrap().files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::NotFound, name.to_owned()));
        }
        Ok(Box::new(MemFile { name: name.to_owned(), store: self.clone() }))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn SegmentFile>> {
        let mut g = self.inner.lock().unwrap();
        if g.fail_create {
            return Err(io::Error::other("Too many open files (injected)"));
        }
        if g.files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name.to_owned()));
        }
        g.files.insert(name.to_owned(), MemData::default());
        Ok(Box::new(MemFile { name: name.to_owned(), store: self.clone() }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.lock().unwrap().files.remove(name);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

impl MemFile {
    fn with<R>(&self, f: impl FnOnce(&mut MemInner, &str) -> io::Result<R>) -> io::Result<R> {
        let mut g = self.store.inner.lock().unwrap();
        if g.dead {
            return Err(io::Error::other("the process crashed"));
        }
        f(&mut g, &self.name)
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "file removed")
}

impl SegmentFile for MemFile {
    fn len(&self) -> u64 {
        self.with(|g, n| Ok(g.files.get(n).map_or(0, |f| f.data.len() as u64))).unwrap_or(0)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|g, n| {
            let f = g.files.get(n).ok_or_else(gone)?;
            let end = offset as usize + buf.len();
            if end > f.data.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"));
            }
            buf.copy_from_slice(&f.data[offset as usize..end]);
            Ok(())
        })
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.with(|g, n| {
            if g.fail_write {
                return Err(io::Error::other("injected write failure"));
            }
            let used: usize = g.files.values().map(|f| f.data.len()).sum();
            if g.capacity.is_some_and(|cap| used + data.len() > cap) {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device"));
            }
            g.files.get_mut(n).ok_or_else(gone)?.data.extend_from_slice(data);
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        SyncHandle::sync(self)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with(|g, n| {
            let f = g.files.get_mut(n).ok_or_else(gone)?;
            f.data.truncate(len as usize);
            f.synced = f.synced.min(len as usize);
            Ok(())
        })
    }

    fn sync_handle(&self) -> Arc<dyn SyncHandle> {
        Arc::new(MemFile { name: self.name.clone(), store: self.store.clone() })
    }
}

impl SyncHandle for MemFile {
    fn sync(&self) -> io::Result<()> {
        self.with(|g, n| {
            if g.fail_sync {
                return Err(io::Error::other("injected fsync failure"));
            }
            let f = g.files.get_mut(n).ok_or_else(gone)?;
            f.synced = f.data.len();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A removed segment leaves no file behind, however large; one a crash left half removed is
    /// deleted when the directory is next opened, and nothing else in it is touched.
    #[test]
    fn removals_leave_nothing_behind_even_when_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path()).unwrap();
        let mut file = storage.create("wal-00000001.log").unwrap();
        file.append(&vec![7u8; 5 * FREE_STEP_BYTES as usize + 123]).unwrap();
        file.sync().unwrap();
        let mut remove = storage.remover().expect("removals on a thread");
        remove("wal-00000001.log").unwrap();
        drop(file);
        assert!(fs::read_dir(dir.path()).unwrap().all(|e| e.unwrap().file_name() == "LOCK"));
        drop(storage);

        fs::write(dir.path().join("wal-00000002.log.removed"), b"old").unwrap();
        fs::write(dir.path().join("wal-00000003.log"), b"kept").unwrap();
        let _storage = FsStorage::new(dir.path()).unwrap();
        assert!(!dir.path().join("wal-00000002.log.removed").exists());
        assert_eq!(fs::read(dir.path().join("wal-00000003.log")).unwrap(), b"kept");
    }
}
