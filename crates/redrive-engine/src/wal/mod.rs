//! The write-ahead log: numbered segment files (their bytes in `segment`) of framed records
//! (see [`record`]).
//!
//! The active segment is kept whole in memory: appends go there, reads of recent records (job
//! bodies on delivery) never reach the kernel, and [`Wal::commit`] writes the new part and, under
//! [`Durability::Sync`], fsyncs once for the whole batch (group commit). Any write or fsync
//! failure poisons the log: every later append or commit fails until restart, because after a
//! failed fsync the kernel may have dropped the dirty pages and a retry would lie.
//!
//! A segment is sealed (written and fsynced) before the next one is created, so only the newest
//! segment can end in a torn record. Recovery truncates such a tail; a bad record anywhere else
//! stops start-up with the file name and offset.
//!
//! A torn write and a damaged record that was synced look alike to a checksum; the log says
//! which is which with [`Record::Synced`] markers: "everything before byte N of this segment was
//! durable". The first append after an fsync completed writes one (so under load every batch
//! carries the news of the previous one's fsync), and when the log goes idle the engine has one
//! appended and synced behind the last batch ([`Wal::mark_synced`]). A marker carries its
//! segment's random nonce, so one found by scanning past a bad record is the log's own, not a
//! copy inside a job body. At recovery a bad record below a marker's mark was synced: damage,
//! and start-up refuses; anything else is a torn tail and is truncated, whatever valid-looking
//! frames follow it. The gap: a record damaged on disk after its fsync and before its marker
//! reached the disk (at most one idle interval, `MARK_IDLE_MS` in the engine) reads as torn.

pub mod record;
mod remover;
mod segment;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use redrive_core::{limits, Error};

use crate::io::{SegmentFile, Storage, SyncHandle};
use record::{Enc, Record, FRAME_HEADER_BYTES};
pub use segment::FORMAT_VERSION;
use segment::{check_header, file_header, scan, SEGMENT_HEADER_BYTES};

/// Where a record lives: segment number in the high 32 bits, byte offset in the low 32.
pub type Loc = u64;
pub const LOC_NONE: Loc = u64::MAX;

/// What a batch hands the group-commit thread: the file to fsync and how far that makes the log
/// durable.
pub type SyncTicket = (Arc<dyn SyncHandle>, Loc);

pub fn loc_segment(loc: Loc) -> u32 {
    (loc >> 32) as u32
}

/// Bytes of a sealed segment read at once when a record in it is read (see [`ReadWindow`]).
const READ_WINDOW_BYTES: usize = 256 * 1024;

/// The records of a slice of a segment, and where the next slice starts (`None` after the last).
pub type Slice = (Vec<(Loc, Record)>, Option<u64>);

/// When a write counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Reply only after the batch is fsynced.
    Sync,
    /// Reply after write(2); fsync at most every `interval_ms`. A power cut may lose that window.
    Relaxed { interval_ms: u64 },
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Sync => write!(f, "sync (fsync before every reply)"),
            Durability::Relaxed { interval_ms } => {
                write!(f, "relaxed (fsync every {interval_ms} ms)")
            }
        }
    }
}

/// Why the log could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// An I/O call failed; `doing` says which (e.g. "create wal-00000003.log").
    Io {
        doing: String,
        source: io::Error,
    },
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
}

impl OpenError {
    fn io(doing: impl Into<String>) -> impl FnOnce(io::Error) -> OpenError {
        let doing = doing.into();
        move |source| OpenError::Io { doing, source }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io { doing, source } if source.kind() == io::ErrorKind::StorageFull => write!(
                f,
                "cannot {doing}: the disk is full; nothing was changed, free some space and start again"
            ),
            OpenError::Io { doing, source } => write!(f, "write-ahead log: cannot {doing}: {source}"),
            OpenError::Corrupt { file, offset, reason } => write!(
                f,
                "write-ahead log is corrupt in {file} at byte {offset}: {reason}; refusing to start \
                 (nothing was changed; restore the file or move it aside to start without its records)"
            ),
        }
    }
}

impl std::error::Error for OpenError {}

struct Segment {
    file: Box<dyn SegmentFile>,
    /// One handle per segment, so the group-commit thread can tell batches of the same file
    /// apart from others and fsync each file once.
    sync: Arc<dyn SyncHandle>,
    /// Holders (jobs, queues, dedup entries, documents, tombstones) that point into this
    /// segment.
    live: i64,
    /// Of `live`, the tombstones: nothing in memory points at them, so they are counted apart
    /// for `Store::check_invariants` to match the rest against the store's references.
    tombstones: i64,
    records: u64,
    bytes: u64,
}

pub struct Wal {
    /// Deletes sealed segments off this thread, where the storage can (`Storage::remover`).
    /// Declared before `storage`: dropped first, it finishes its deletions while the directory
    /// is still locked.
    remover: Option<remover::Remover>,
    storage: Box<dyn Storage>,
    segments: BTreeMap<u32, Segment>,
    active: u32,
    /// The active segment's bytes, header included; `mem[written..]` is not yet written. Its
    /// capacity is reserved from the start for a whole segment and the record that goes past its
    /// end before a roll: growing it by doubling copied up to half a segment (32 MiB) and faulted
    /// in as much fresh memory on the engine thread at once, a pause of tens of milliseconds.
    /// Reserved, its pages are touched only as records fill them.
    mem: Vec<u8>,
    written: usize,
    /// Set once by the first failed write or fsync (here or on the group-commit thread).
    poisoned: Arc<OnceLock<String>>,
    /// A segment is sealed once the next record would take it past this size.
    segment_bytes: u32,
    /// The active segment was sealed but its successor could not be created yet.
    active_sealed: bool,
    /// How far the log is known durable (a [`Loc`]); advanced by whoever fsyncs.
    synced: Arc<AtomicU64>,
    /// End of the last record other than a marker, in the active segment.
    data_end: u64,
    /// The active segment's nonce, and the mark of its newest marker: records end past it
    /// (`data_end > marked_upto`) exactly when some were appended since that marker.
    nonce: u32,
    marked_upto: u64,
    last_sync_ms: u64,
    /// Bytes appended since the last fsync (relaxed mode only syncs when there are some).
    unsynced: bool,
    window: RefCell<ReadWindow>,
}

/// The last stretch read of a sealed segment. A backlog is leased in about the order it was
/// written, so the next body read is nearly always in it: one read per window instead of two
/// per record.
#[derive(Default)]
struct ReadWindow {
    /// Segment and offset of `data[0]`; no segment when empty.
    seg: Option<u32>,
    start: u64,
    data: Vec<u8>,
}

impl ReadWindow {
    fn holds(&self, n: u32, off: u64, len: usize) -> bool {
        self.seg == Some(n)
            && off >= self.start
            && off + len as u64 <= self.start + self.data.len() as u64
    }

    fn fill(&mut self, seg: &Segment, n: u32, off: u64) -> io::Result<()> {
        let end = (off + READ_WINDOW_BYTES as u64).min(seg.file.len()).max(off);
        self.seg = None;
        self.data.resize((end - off) as usize, 0);
        seg.file.read_at(&mut self.data, off)?;
        (self.seg, self.start) = (Some(n), off);
        Ok(())
    }

    fn bytes(&self, off: u64, len: usize) -> &[u8] {
        let at = (off - self.start) as usize;
        &self.data[at..at + len]
    }
}

fn segment_name(n: u32) -> String {
    format!("wal-{n:08}.log")
}

fn parse_segment_name(name: &str) -> Option<u32> {
    name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

impl Wal {
    /// Opens the log in `storage`, calling `replay` for every valid record in log order.
    pub fn open(
        storage: Box<dyn Storage>,
        segment_bytes: u32,
        mut replay: impl FnMut(Loc, Record),
    ) -> Result<Wal, OpenError> {
        assert!(segment_bytes >= 4096, "segments of at least 4 KiB");
        let names = storage.list().map_err(OpenError::io("list the data directory"))?;
        let mut numbers: Vec<u32> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        numbers.sort_unstable();
        let mut segments = BTreeMap::new();
        let last = numbers.last().copied();
        for &n in &numbers {
            let name = segment_name(n);
            let mut file = storage.open(&name).map_err(OpenError::io(format!("open {name}")))?;
            let len = file.len();
            let mut data = vec![0u8; len as usize];
            file.read_at(&mut data, 0).map_err(OpenError::io(format!("read {name}")))?;
            let is_last = Some(n) == last;
            let blank_header = data.iter().take(SEGMENT_HEADER_BYTES).all(|b| *b == 0);
            if is_last && (data.len() < SEGMENT_HEADER_BYTES || blank_header) {
                // Created but its header never reached the disk: nothing in it was acknowledged
                // (records are written only after the header is synced).
                drop(file);
                storage.remove(&name).map_err(OpenError::io(format!("remove {name}")))?;
                continue;
            }
            check_header(&data, n).map_err(|reason| OpenError::Corrupt {
                file: name.clone(),
                offset: 0,
                reason,
            })?;
            let mut records = 0;
            // Version 1 segments have no nonce and no markers.
            let nonce = (u32::from_le_bytes(data[8..12].try_into().unwrap()) >= 2)
                .then(|| u32::from_le_bytes(data[16..20].try_into().unwrap()));
            let end = scan(&data, n, is_last.then_some(nonce), &mut |loc, r| {
                records += 1;
                if !matches!(r, Record::Synced { .. }) {
                    replay(loc, r)
                }
            })
            .map_err(|(offset, reason)| OpenError::Corrupt {
                file: name.clone(),
                offset,
                reason,
            })?;
            let zero_tail = data[end as usize..].iter().all(|b| *b == 0);
            if end < len && !zero_tail {
                tracing::warn!(file = %name, offset = end, lost_bytes = len - end, "truncating torn tail of the write-ahead log");
            }
            if end < len {
                file.truncate(end).map_err(OpenError::io(format!("truncate {name}")))?;
            }
            let sync = file.sync_handle();
            segments.insert(n, Segment { file, sync, live: 0, tombstones: 0, records, bytes: end });
        }
        let poisoned = Arc::new(OnceLock::new());
        let mut wal = Wal {
            remover: storage.remover().map(|r| remover::Remover::spawn(r, poisoned.clone())),
            storage,
            segments,
            active: 0,
            mem: Vec::with_capacity(
                segment_bytes as usize
                    + limits::RECORD_SIZE_MAX_BYTES as usize
                    + FRAME_HEADER_BYTES,
            ),
            written: 0,
            poisoned,
            segment_bytes,
            active_sealed: false,
            synced: Arc::new(AtomicU64::new(0)),
            data_end: 0,
            nonce: 0,
            marked_upto: 0,
            last_sync_ms: 0,
            unsynced: false,
            window: RefCell::default(),
        };
        let next = wal.segments.keys().next_back().map_or(1, |n| n + 1);
        wal.start_segment(next).map_err(OpenError::io(format!("create {}", segment_name(next))))?;
        wal.storage.sync_dir().map_err(OpenError::io("sync the data directory"))?;
        Ok(wal)
    }

    /// Creates segment `n` and makes it the active one. On failure nothing changed: the
    /// half-made file is removed and the previous segment stays active.
    fn start_segment(&mut self, n: u32) -> io::Result<()> {
        let name = segment_name(n);
        let mut file = self.storage.create(&name)?;
        let nonce = {
            use rand::{Rng, SeedableRng};
            rand::rngs::SmallRng::from_os_rng().random::<u32>()
        };
        if let Err(e) = self.init_segment(&mut *file, n, nonce) {
            drop(file);
            let _ = self.storage.remove(&name);
            return Err(e);
        }
        let header = &file_header(n, nonce);
        self.segments.insert(
            n,
            Segment {
                sync: file.sync_handle(),
                file,
                live: 0,
                tombstones: 0,
                records: 0,
                bytes: SEGMENT_HEADER_BYTES as u64,
            },
        );
        self.active = n;
        self.active_sealed = false;
        self.mem.clear();
        self.mem.extend_from_slice(header);
        self.written = header.len();
        self.data_end = header.len() as u64;
        self.nonce = nonce;
        self.marked_upto = header.len() as u64;
        self.synced.fetch_max(self.written_loc(), Ordering::AcqRel);
        Ok(())
    }

    fn init_segment(&self, file: &mut dyn SegmentFile, n: u32, nonce: u32) -> io::Result<()> {
        file.append(&file_header(n, nonce))?;
        file.preallocate(self.segment_bytes as u64)?;
        file.sync()
    }

    /// The last byte written so far, as a location.
    pub fn written_loc(&self) -> Loc {
        ((self.active as u64) << 32) | self.written as u64
    }

    /// The shared record of how far the log is known durable, for the thread that fsyncs on
    /// the log's behalf: it raises it to [`Wal::written_loc`] as of the write it synced.
    pub fn synced_flag(&self) -> Arc<AtomicU64> {
        self.synced.clone()
    }

    /// Records were appended since the last marker (the engine then wakes sooner to mark).
    pub fn wants_mark(&self) -> bool {
        self.data_end > self.marked_upto
    }

    /// When idle: appends a `Synced` marker if records were appended since the last one and all
    /// of them are known durable; the caller commits it. Returns whether it appended one.
    pub fn mark_synced(&mut self) -> Result<bool, Poisoned> {
        let covered = self.synced_here().is_some_and(|upto| upto >= self.data_end);
        if !self.wants_mark() || !covered {
            return Ok(false);
        }
        self.mark()?;
        Ok(true)
    }

    /// How far the active segment is known durable, if the known-durable point is in it.
    fn synced_here(&self) -> Option<u64> {
        let synced = self.synced.load(Ordering::Acquire);
        (loc_segment(synced) == self.active).then_some(synced & 0xffff_ffff)
    }

    /// Appends a marker for the newest completed fsync, if it is news.
    fn mark(&mut self) -> Result<(), Poisoned> {
        let Some(upto) = self.synced_here().filter(|&u| u > self.marked_upto) else {
            return Ok(());
        };
        let nonce = self.nonce;
        self.append_framed(|e| e.synced(nonce, upto), false)?;
        self.marked_upto = upto;
        Ok(())
    }

    /// Rolls to a new segment before the active one is full, so that appends within the next
    /// batch need not. A failure to create the new segment refuses writes for now
    /// ([`Error::StoreUnavailable`]) without poisoning: nothing was written to it yet.
    pub fn make_room(&mut self) -> Result<(), Error> {
        if let Some(p) = self.poisoned.get() {
            return Err(Error::Poisoned(p.clone()));
        }
        let slack = self.segment_bytes as usize / 8;
        if self.mem.len() + slack <= self.segment_bytes as usize
            || self.mem.len() <= SEGMENT_HEADER_BYTES
        {
            return Ok(());
        }
        if let Err(e) = self.seal_active() {
            return Err(self.poison("sealing a segment", &e).into());
        }
        let next = self.active + 1;
        if let Err(e) = self.start_segment(next) {
            let why = format!("cannot create log segment {}: {e}", segment_name(next));
            tracing::warn!(error = %why, "refusing writes until a new segment can be created");
            return Err(Error::StoreUnavailable(why));
        }
        self.storage.sync_dir().map_err(|e| self.poison("syncing the data directory", &e).into())
    }

    fn seal_active(&mut self) -> io::Result<()> {
        if self.active_sealed {
            return Ok(());
        }
        self.write_buf()?;
        self.segments.get_mut(&self.active).expect("active").file.seal()?;
        self.active_sealed = true;
        self.synced.fetch_max(self.written_loc(), Ordering::AcqRel);
        Ok(())
    }

    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.get().map(String::as_str)
    }

    /// The shared poison flag, for the thread that fsyncs on the log's behalf.
    pub fn poison_flag(&self) -> Arc<OnceLock<String>> {
        self.poisoned.clone()
    }

    fn poison(&mut self, what: &str, e: &io::Error) -> Poisoned {
        let msg = format!("{what} failed: {e}");
        Poisoned(poison(&self.poisoned, msg))
    }

    /// Appends one record to the buffer and returns where it will live.
    pub fn append(&mut self, write: impl FnOnce(&mut Enc<'_>)) -> Result<Loc, Poisoned> {
        self.append_framed(write, true)
    }

    /// `data` is false for the log's own markers, which hold nothing and need no marker.
    fn append_framed(
        &mut self,
        write: impl FnOnce(&mut Enc<'_>),
        data: bool,
    ) -> Result<Loc, Poisoned> {
        if let Some(p) = self.poisoned.get() {
            return Err(Poisoned(p.clone()));
        }
        if data {
            self.mark()?;
        }
        let start = self.mem.len();
        let n = record::frame(&mut self.mem, write);
        if n > limits::RECORD_SIZE_MAX_BYTES as usize + FRAME_HEADER_BYTES {
            // Recovery refuses a record this long, so it must never be acknowledged. Every input
            // is bounded so that this cannot happen (limits.rs asserts it); if it does, stop
            // writing rather than acknowledge a record that cannot be read back.
            self.mem.truncate(start);
            let e = io::Error::other(format!(
                "a record of {n} bytes exceeds RECORD_SIZE_MAX_BYTES (a bound is missing)"
            ));
            return Err(self.poison("appending a record", &e));
        }
        let mut offset = start as u64;
        if offset + n as u64 > self.segment_bytes as u64 && offset > SEGMENT_HEADER_BYTES as u64 {
            // Seal the active segment with everything before this record, then move the record.
            let rec = self.mem.split_off(start);
            if let Err(e) = self.roll() {
                return Err(self.poison("sealing a segment", &e));
            }
            offset = self.mem.len() as u64;
            self.mem.extend_from_slice(&rec);
        }
        let seg = self.segments.get_mut(&self.active).expect("active segment exists");
        seg.bytes += n as u64;
        seg.records += 1;
        if data {
            self.data_end = offset + n as u64;
        }
        // A record starts inside its segment, whose size is a `u32`: the offset fits a `Loc`.
        assert!(offset <= u64::from(u32::MAX), "record offset {offset} past a u32");
        Ok(((self.active as u64) << 32) | offset)
    }

    /// Seals the active segment and starts the next one, within a batch ([`Wal::make_room`]
    /// rolls between batches, so this is rare). Any failure here poisons the log: records of
    /// the batch may already be applied in memory.
    fn roll(&mut self) -> io::Result<()> {
        self.seal_active()?;
        self.start_segment(self.active + 1)?;
        self.storage.sync_dir()
    }

    /// Seals the active segment and starts the next, between batches: every record appended so
    /// far is then in a sealed segment (for a rewrite of the whole log). A failure poisons.
    pub fn roll_now(&mut self) -> Result<(), Poisoned> {
        self.roll().map_err(|e| self.poison("sealing a segment", &e))
    }

    /// Writes appended records unless the log is poisoned; a failed write poisons it.
    fn write_checked(&mut self) -> Result<(), Poisoned> {
        if let Some(p) = self.poisoned.get() {
            return Err(Poisoned(p.clone()));
        }
        self.write_buf().map_err(|e| self.poison("write", &e))
    }

    fn write_buf(&mut self) -> io::Result<()> {
        if self.written == self.mem.len() {
            return Ok(());
        }
        let seg = self.segments.get_mut(&self.active).expect("active");
        seg.file.append(&self.mem[self.written..])?;
        self.written = self.mem.len();
        self.unsynced = true;
        Ok(())
    }

    /// Writes buffered records and makes them durable per `durability`. Returns the fsync time in
    /// microseconds when one happened.
    pub fn commit(&mut self, durability: Durability, now_ms: u64) -> Result<Option<u64>, Poisoned> {
        self.write_checked()?;
        let due = match durability {
            Durability::Sync => self.unsynced,
            Durability::Relaxed { interval_ms } => {
                self.unsynced && now_ms >= self.last_sync_ms + interval_ms
            }
        };
        if !due {
            return Ok(None);
        }
        let t = std::time::Instant::now();
        if let Err(e) = self.segments.get_mut(&self.active).expect("active").file.sync() {
            return Err(self.poison("fsync", &e));
        }
        self.unsynced = false;
        self.last_sync_ms = now_ms;
        self.synced.fetch_max(self.written_loc(), Ordering::AcqRel);
        Ok(Some(t.elapsed().as_micros() as u64))
    }

    /// Writes appended records (to the page cache) and returns a handle through which another
    /// thread makes them durable, or `None` when nothing new was written since the last call.
    /// With the handle comes the location the sync will make durable (for [`Wal::synced_flag`]).
    pub fn write_for_sync(&mut self) -> Result<Option<SyncTicket>, Poisoned> {
        self.write_checked()?;
        if !std::mem::take(&mut self.unsynced) {
            return Ok(None);
        }
        Ok(Some((self.segments[&self.active].sync.clone(), self.written_loc())))
    }

    /// Writes and fsyncs the active segment now, whatever was handed to other threads.
    pub fn sync_now(&mut self) -> Result<(), Poisoned> {
        self.write_checked()?;
        if let Err(e) = self.segments.get_mut(&self.active).expect("active").file.sync() {
            return Err(self.poison("fsync", &e));
        }
        self.unsynced = false;
        self.synced.fetch_max(self.written_loc(), Ordering::AcqRel);
        Ok(())
    }

    /// Reads back the record at `loc` (from memory when it is in the active segment).
    pub fn read(&self, loc: Loc) -> io::Result<Record> {
        let n = loc_segment(loc);
        let off = loc & 0xffff_ffff;
        let bad = |m: &str| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{m} at {}:{off}", segment_name(n)))
        };
        if n == self.active {
            let frame =
                self.mem.get(off as usize..).ok_or_else(|| bad("location past the segment"))?;
            let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
            let payload = frame.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len);
            let payload = payload.ok_or_else(|| bad("record past the segment"))?;
            return record::decode(payload).map_err(|e| bad(e.0));
        }
        let seg = self.segments.get(&n).ok_or_else(|| bad("segment is gone"))?;
        let mut window = self.window.borrow_mut();
        if !window.holds(n, off, FRAME_HEADER_BYTES) {
            window.fill(seg, n, off)?;
            if !window.holds(n, off, FRAME_HEADER_BYTES) {
                return Err(bad("location past the segment"));
            }
        }
        let head = window.bytes(off, FRAME_HEADER_BYTES);
        let len = u32::from_le_bytes(head[..4].try_into().unwrap());
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len > limits::RECORD_SIZE_MAX_BYTES {
            return Err(bad("record length out of range"));
        }
        let (len, at) = (len as usize, off + FRAME_HEADER_BYTES as u64);
        let big;
        let payload = if window.holds(n, at, len) {
            window.bytes(at, len)
        } else if FRAME_HEADER_BYTES + len <= READ_WINDOW_BYTES {
            window.fill(seg, n, off)?;
            if !window.holds(n, at, len) {
                return Err(bad("record past the segment"));
            }
            window.bytes(at, len)
        } else {
            big = {
                let mut payload = vec![0u8; len];
                seg.file.read_at(&mut payload, at)?;
                payload
            };
            &big
        };
        if crc32c::crc32c(payload) != crc {
            return Err(bad("checksum mismatch"));
        }
        record::decode(payload).map_err(|e| bad(e.0))
    }

    /// Adjusts the holder count of the segment `loc` is in.
    pub fn hold(&mut self, loc: Loc, delta: i64) {
        if loc == LOC_NONE {
            return;
        }
        if let Some(s) = self.segments.get_mut(&loc_segment(loc)) {
            s.live += delta;
            // Below zero, the segment would be deleted under a record someone still holds.
            assert!(s.live >= 0, "segment {} holder count below zero", loc_segment(loc));
        }
    }

    /// [`Wal::hold`] for a tombstone (`Remove`, `QueueDelete`, a deleted `Doc`), which no
    /// in-memory structure points at: the log keeps their count itself.
    pub fn hold_tombstone(&mut self, loc: Loc, delta: i64) {
        self.hold(loc, delta);
        if let Some(s) = self.segments.get_mut(&loc_segment(loc)) {
            s.tombstones += delta;
            assert!(s.tombstones >= 0, "segment {} tombstone count below zero", loc_segment(loc));
        }
    }

    /// Every segment (the active one too): (number, holders, of which tombstones).
    pub fn holders(&self) -> impl Iterator<Item = (u32, i64, i64)> + '_ {
        self.segments.iter().map(|(n, s)| (*n, s.live, s.tombstones))
    }

    /// Segments other than the active one, oldest first: (number, holders, records).
    pub fn sealed(&self) -> impl Iterator<Item = (u32, i64, u64)> + '_ {
        self.segments
            .iter()
            .filter(|(n, _)| **n != self.active)
            .map(|(n, s)| (*n, s.live, s.records))
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Reads every record of a sealed segment (for compaction).
    pub fn records(&self, n: u32) -> io::Result<Vec<(Loc, Record)>> {
        let seg = self
            .segments
            .get(&n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no segment"))?;
        let mut data = vec![0u8; seg.file.len() as usize];
        seg.file.read_at(&mut data, 0)?;
        let mut out = Vec::new();
        let mut keep = |loc, r| {
            if !matches!(r, Record::Synced { .. }) {
                out.push((loc, r))
            }
        };
        scan(&data, n, None, &mut keep).map_err(|(off, why)| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} at {off}: {why}", segment_name(n)),
            )
        })?;
        Ok(out)
    }

    /// Reads the records of sealed segment `n` from byte `off` (0: its first record) that lie
    /// in the next `bytes` or so (at least one whole record), for compaction in slices. Returns
    /// them and where the next slice starts, `None` after the last.
    pub fn records_from(&self, n: u32, off: u64, bytes: usize) -> io::Result<Slice> {
        let seg = self
            .segments
            .get(&n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no segment"))?;
        let (end, off) = (seg.file.len(), off.max(SEGMENT_HEADER_BYTES as u64));
        let mut want = bytes.max(FRAME_HEADER_BYTES) as u64;
        let mut out = Vec::new();
        loop {
            let len = want.min(end.saturating_sub(off)) as usize;
            let mut data = vec![0u8; len];
            seg.file.read_at(&mut data, off)?;
            let to_end = off + len as u64 == end;
            let mut keep = |loc, r| {
                if !matches!(r, Record::Synced { .. }) {
                    out.push((loc, r))
                }
            };
            let used =
                segment::scan_slice(&data, off, n, to_end, &mut keep).map_err(|(at, why)| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} at {at}: {why}", segment_name(n)),
                    )
                })?;
            if used == 0 && !to_end {
                // The first record is longer than the slice: read it whole.
                want *= 2;
                continue;
            }
            let next = off + used as u64;
            return Ok((out, (next < end).then_some(next)));
        }
    }

    /// Deletes a sealed segment: at once, or handed to the remover, which deletes segments in
    /// the order given (a failure there poisons the log). Callers make sure nothing live
    /// remains in it, and that what superseded its records is durable.
    pub fn remove_segment(&mut self, n: u32) -> Result<(), Poisoned> {
        assert_ne!(n, self.active, "the active segment is never removed");
        let seg = self.segments.remove(&n);
        // A holder left would point at a record about to be lost.
        let live = seg.as_ref().map_or(0, |s| s.live);
        assert_eq!(live, 0, "segment {n} is removed while {live} holders point into it");
        let window = self.window.get_mut();
        if window.seg == Some(n) {
            window.seg = None;
        }
        if let Some(remover) = &self.remover {
            remover.delete(segment_name(n), Box::new(seg));
            return Ok(());
        }
        let r = self.storage.remove(&segment_name(n)).and_then(|()| self.storage.sync_dir());
        r.map_err(|e| self.poison("removing a segment", &e))
    }

    /// Waits until every segment removed so far is gone from the disk (or its removal failed,
    /// which poisoned the log).
    pub fn flush_removals(&self) -> Result<(), Poisoned> {
        if let Some(remover) = &self.remover {
            remover.flush();
        }
        match self.poisoned.get() {
            Some(why) => Err(Poisoned(why.clone())),
            None => Ok(()),
        }
    }
}

/// A write or fsync failed, now or earlier: the log refuses writes until restart. Carries the
/// message of the first failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poisoned(pub String);

impl std::fmt::Display for Poisoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "write-ahead log poisoned: {}", self.0)
    }
}

impl std::error::Error for Poisoned {}

impl From<Poisoned> for Error {
    fn from(p: Poisoned) -> Error {
        Error::Poisoned(p.0)
    }
}

/// Latches the poison flag (the first failure wins) and returns the message in force.
pub fn poison(flag: &OnceLock<String>, msg: String) -> String {
    if flag.set(msg.clone()).is_ok() {
        tracing::error!(error = %msg, "write-ahead log poisoned; refusing writes until restart");
    }
    flag.get().expect("just set").clone()
}

#[cfg(test)]
mod tests;
