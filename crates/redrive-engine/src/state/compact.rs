//! Reclaiming WAL space. A sealed segment that no holder points into is deleted. The oldest
//! sealed segment, once most of its records are dead, is compacted: its live records are appended
//! again at the head, made durable, and the segment deleted. Compaction goes a slice of the
//! segment at a time (`COMPACT_SLICE_BYTES`), one slice per engine step, so that requests are
//! served between slices: done at once, a 64 MB segment held the engine thread (and every
//! request) for 0.7 s. A record is moved if it is still held when its slice is read; one that
//! stops being held before then is simply left behind.
//!
//! Only the oldest segment is ever compacted, and that is what makes dropping tombstones safe: a
//! tombstone exists to shadow older records of its job, and every older record lived in this
//! segment or in one already deleted.

use redrive_core::{Error, Result};

use super::Store;
use crate::wal::record::{EnqueueRecord, Record};
use crate::wal::Loc;

/// Compact the oldest segment when its holders number fewer than this share of its records.
/// (A record can have two holders, so this is a rough measure; low enough that compaction only
/// runs for segments pinned by a few long-lived jobs, not for a backlog being worked off.)
const COMPACT_LIVE_RATIO_MAX: f64 = 0.25;
/// Looks at a segment whose live records are still falling before it is compacted anyway.
const COMPACT_POSTPONE_MAX: u32 = 30;
/// Bytes of a segment read and moved in one step of a compaction (about 3 ms of the engine).
const COMPACT_SLICE_BYTES: usize = 256 * 1024;

/// What the last compaction step saw of the oldest segment: a segment whose live records are
/// falling is being worked off, and compacting it would copy records about to die.
#[derive(Debug, Default)]
pub(crate) struct CompactWatch {
    /// (segment, live records) at the last look.
    seen: Option<(u32, i64)>,
    postponed: u32,
    /// The segment being compacted and the byte its next slice starts at.
    compacting: Option<(u32, u64)>,
}

impl Store {
    /// Does one step of space reclamation; returns whether anything changed on disk. Every record
    /// appended so far is made durable first: deleting a segment is only safe once what
    /// superseded its records is on disk.
    pub fn compact_step(&mut self) -> Result<bool> {
        if let Err(e) = self.writable() {
            // A compaction begun is given up, so that the engine does not spin on a store that
            // refuses writes.
            self.compact_watch.compacting = None;
            return Err(e);
        }
        if let Some((n, off)) = self.compact_watch.compacting {
            // Nothing else is reclaimed meanwhile: the segment stays the oldest until it goes.
            self.compact_slice(n, off)?;
            return Ok(true);
        }
        // Only a prefix of the log is ever deleted. A completed job is forgotten without a
        // tombstone, so its older records must never outlive its newer ones.
        let empty: Vec<u32> = self.wal.sealed().take_while(|s| s.1 == 0).map(|s| s.0).collect();
        let oldest = self.wal.sealed().nth(empty.len());
        let compact = oldest.filter(|&(n, live, records)| {
            live > 0
                && (live as f64) < records as f64 * COMPACT_LIVE_RATIO_MAX
                && !self.compact_watch.draining(n, live)
        });
        if empty.is_empty() && compact.is_none() {
            return Ok(false);
        }
        self.sync_all()?;
        for n in empty {
            self.wal.remove_segment(n)?;
            self.metrics.deleted_segments += 1;
        }
        if let Some((n, _, _)) = compact {
            self.compact_slice(n, 0)?;
        }
        Ok(true)
    }

    /// A compaction is under way: the engine takes its next slice as soon as it is idle.
    pub fn compacting(&self) -> bool {
        self.compact_watch.compacting.is_some()
    }

    /// Moves the live records of the slice of segment `n` that starts at byte `off`; after the
    /// last slice, makes the moved records durable and deletes the segment.
    /// On an error the compaction is given up; a later look starts it over (records already
    /// moved are no longer held in the segment, and are left behind then).
    fn compact_slice(&mut self, n: u32, off: u64) -> Result<()> {
        self.compact_watch.compacting = None;
        let (records, next) = (self.wal.records_from(n, off, COMPACT_SLICE_BYTES))
            .map_err(|e| Error::Internal(format!("compacting: {e}")))?;
        for (loc, rec) in records {
            self.move_record(loc, rec, &mut None)?;
        }
        if let Some(off) = next {
            self.compact_watch.compacting = Some((n, off));
            return Ok(());
        }
        self.sync_all()?;
        self.wal.remove_segment(n)?;
        self.metrics.compacted_segments += 1;
        Ok(())
    }
}

/// Rewrites one stored text (`redrive rekey`): `Some(new)` replaces it, `None` keeps it.
pub type Rewrite<'a> = &'a mut dyn FnMut(&str) -> Result<Option<String>>;

impl Store {
    /// Passes every job's body, attribute values and attempt error texts (message and detail)
    /// through `f`, writing the changed ones again, and deletes every segment that held the
    /// old forms: afterwards no copy of a replaced value is left in the directory. For
    /// `redrive rekey` on a stopped store. Returns how many values changed.
    pub fn rewrite_all(&mut self, f: Rewrite<'_>) -> Result<u64> {
        self.writable()?;
        self.sync_all()?;
        self.wal.roll_now()?;
        let old: Vec<u32> = self.wal.sealed().map(|s| s.0).collect();
        let mut changed = 0;
        // Oldest first, each deleted before the next: the segment compacted is always the
        // oldest, which is what makes dropping its tombstones safe (see the module docs).
        for n in old {
            changed += self.move_live_records(n, Some(&mut *f))?;
            self.sync_all()?;
            self.wal.remove_segment(n)?;
        }
        self.wal.flush_removals()?;
        Ok(changed)
    }
}

impl CompactWatch {
    /// Whether segment `n`, now with `live` records, is being worked off: it lost live records
    /// since the last look (and has not been waited for too long already).
    fn draining(&mut self, n: u32, live: i64) -> bool {
        let falling = matches!(self.seen, Some((seen, before)) if seen == n && live < before);
        let first_look = self.seen.map(|(seen, _)| seen) != Some(n);
        self.seen = Some((n, live));
        if first_look {
            self.postponed = 0;
        }
        if (falling || first_look) && self.postponed < COMPACT_POSTPONE_MAX {
            self.postponed += 1;
            return true;
        }
        false
    }
}

impl Store {
    /// Makes everything appended so far durable, including records whose fsync the
    /// group-commit thread may not have done yet.
    fn sync_all(&mut self) -> Result<()> {
        Ok(self.wal.sync_now()?)
    }

    /// Appends the live records of segment `n` again (through `rewrite`, when given); returns
    /// how many values `rewrite` changed.
    fn move_live_records(&mut self, n: u32, mut rewrite: Option<Rewrite<'_>>) -> Result<u64> {
        let mut changed = 0;
        let records =
            self.wal.records(n).map_err(|e| Error::Internal(format!("compacting: {e}")))?;
        for (loc, rec) in records {
            changed += self.move_record(loc, rec, &mut rewrite)?;
        }
        Ok(changed)
    }

    /// Appends `rec` (read at `loc` of the segment being compacted) again if it is still held
    /// there, through `rewrite` when given; returns how many values `rewrite` changed.
    fn move_record(
        &mut self,
        loc: Loc,
        rec: Record,
        rewrite: &mut Option<Rewrite<'_>>,
    ) -> Result<u64> {
        let mut changed = 0;
        match rec {
            Record::QueuePut { qid, .. } => {
                if self.queues.get(&qid).is_some_and(|q| q.loc == loc) {
                    self.log_queue(qid)?;
                }
            }
            Record::QueueDelete { .. } | Record::Remove { .. } => self.wal.hold_tombstone(loc, -1),
            Record::Synced { .. } => {} // never returned by `records`
            Record::Doc { value: None, .. } => self.wal.hold_tombstone(loc, -1),
            Record::Doc { kind, key, .. } => self.move_doc(loc, kind, &key)?,
            Record::Enqueue(mut e) => {
                // Rewritten whenever it is appended again, so no new copy holds an old form.
                let held =
                    (self.jobs.get(&e.id)).is_some_and(|j| j.body_loc == loc || j.meta_loc == loc);
                if let Some(f) = rewrite.as_deref_mut().filter(|_| held) {
                    changed += rewrite_text(f, &mut e.body)?;
                    for v in e.attributes.values_mut() {
                        changed += rewrite_text(f, v)?;
                    }
                }
                self.move_enqueue(loc, &e)?
            }
            Record::DedupKey { qid, id, enqueued_at, key } => {
                let k = (qid, Box::<str>::from(key.as_str()));
                if self.dedup.get(&k).is_some_and(|d| d.loc == loc) {
                    let new = self.wal.append(|w| w.dedup_key(qid, id, enqueued_at, &key))?;
                    self.dedup.get_mut(&k).expect("checked").loc = new;
                    self.wal.hold(loc, -1);
                    self.wal.hold(new, 1);
                }
            }
            Record::Meta { id, meta, worker } => {
                if self.jobs.get(&id).is_some_and(|j| j.meta_loc == loc) {
                    let new = self.wal.append(|w| w.meta_record(id, &meta, worker.as_deref()))?;
                    self.move_holder(id, loc, new, |j| &mut j.meta_loc);
                }
            }
            Record::Attempts { id, total, mut entries } => {
                if self.jobs.get(&id).is_some_and(|j| j.attempts_loc == loc) {
                    if let Some(f) = rewrite.as_deref_mut() {
                        for err in entries.iter_mut().filter_map(|a| a.error.as_mut()) {
                            changed += rewrite_text(f, &mut err.message)?;
                            if let Some(d) = &mut err.detail {
                                changed += rewrite_text(f, d)?;
                            }
                        }
                    }
                    let new = self.wal.append(|w| w.attempts(id, total, &entries))?;
                    self.move_holder(id, loc, new, |j| &mut j.attempts_loc);
                }
            }
        }
        Ok(changed)
    }

    /// An enqueue record is live while its job holds it (body, or metadata never updated) or
    /// its dedup entry does. When only the dedup entry does, it is kept as a `DedupKey` record.
    fn move_enqueue(&mut self, loc: Loc, e: &EnqueueRecord) -> Result<()> {
        let job = self.jobs.get(&e.id);
        let body = job.is_some_and(|j| j.body_loc == loc);
        let meta = job.is_some_and(|j| j.meta_loc == loc);
        let key = e.idempotency_key.as_deref().map(|k| (e.meta.qid, Box::<str>::from(k)));
        let dedup = key.as_ref().is_some_and(|k| self.dedup.get(k).is_some_and(|d| d.loc == loc));
        if !(body || meta || dedup) {
            return Ok(());
        }
        if !(body || meta) {
            // Only the idempotency key is still needed: keep it, not the job.
            let k = key.expect("dedup implies key");
            let new =
                self.wal.append(|w| w.dedup_key(e.meta.qid, e.id, e.meta.enqueued_at, &k.1))?;
            self.dedup.get_mut(&k).expect("checked").loc = new;
            self.wal.hold(loc, -1);
            self.wal.hold(new, 1);
            return Ok(());
        }
        let new = self.wal.append(|w| {
            w.enqueue(
                e.id,
                &e.meta,
                e.idempotency_key.as_deref(),
                e.traceparent.as_deref(),
                &e.attributes,
                &e.body,
            )
        })?;
        let job = self.jobs.get_mut(&e.id).expect("body or meta implies a job");
        if body {
            job.body_loc = new;
            self.wal.hold(loc, -1);
            self.wal.hold(new, 1);
        }
        if meta {
            job.meta_loc = new;
            self.wal.hold(loc, -1);
            self.wal.hold(new, 1);
        }
        if dedup {
            self.dedup.get_mut(&key.expect("dedup implies key")).expect("checked").loc = new;
            self.wal.hold(loc, -1);
            self.wal.hold(new, 1);
        }
        Ok(())
    }

    fn move_holder(
        &mut self,
        id: u128,
        old: Loc,
        new: Loc,
        field: impl FnOnce(&mut super::Job) -> &mut Loc,
    ) {
        let job = self.jobs.get_mut(&id).expect("live job");
        *field(job) = new;
        self.wal.hold(old, -1);
        self.wal.hold(new, 1);
    }
}

/// Replaces `text` with what `f` makes of it; 1 if it changed.
fn rewrite_text(
    f: &mut dyn FnMut(&str) -> Result<Option<String>>,
    text: &mut String,
) -> Result<u64> {
    match f(text)? {
        Some(new) => {
            *text = new;
            Ok(1)
        }
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_compacted_once_its_live_records_stop_falling() {
        let mut w = CompactWatch::default();
        assert!(w.draining(3, 100), "the first look waits");
        assert!(w.draining(3, 80), "still being worked off");
        assert!(!w.draining(3, 80), "stable: compact it");
        assert!(w.draining(4, 50), "a new oldest segment: its first look waits");
        assert!(!w.draining(4, 50));
        let mut w = CompactWatch::default();
        let waited = (0..100).take_while(|i| w.draining(5, 1000 - i)).count();
        assert_eq!(waited as u32, COMPACT_POSTPONE_MAX, "falling for ever: compacted in the end");
    }
}
