//! WAL unit tests: framing on disk, torn tails, corruption, poisoning, segment rolling.

use super::*;
use crate::io::{MemStorage, Storage};

fn open(storage: &MemStorage) -> Result<(Wal, Vec<(Loc, Record)>), OpenError> {
    let mut seen = Vec::new();
    let wal = Wal::open(Box::new(storage.clone()), 4096, |loc, r| seen.push((loc, r)))?;
    Ok((wal, seen))
}

fn append_removes(wal: &mut Wal, ids: std::ops::Range<u128>) -> Vec<Loc> {
    ids.map(|id| wal.append(|e| e.remove(id, 1)).unwrap()).collect()
}

#[test]
fn records_survive_reopen_and_read_back() {
    let s = MemStorage::new();
    let (mut wal, seen) = open(&s).unwrap();
    assert!(seen.is_empty());
    let locs = append_removes(&mut wal, 0..3);
    assert!(
        matches!(wal.read(locs[1]).unwrap(), Record::Remove { id: 1, .. }),
        "reads from the buffer"
    );
    wal.commit(Durability::Sync, 0).unwrap();
    assert!(
        matches!(wal.read(locs[2]).unwrap(), Record::Remove { id: 2, .. }),
        "reads from the file"
    );
    drop(wal);
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.iter().map(|(l, _)| *l).collect::<Vec<_>>(), locs);
}

#[test]
fn segments_roll_at_the_size_limit() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let locs = append_removes(&mut wal, 0..400);
    wal.commit(Durability::Sync, 0).unwrap();
    let segments: std::collections::BTreeSet<u32> = locs.iter().map(|l| loc_segment(*l)).collect();
    assert!(segments.len() > 2, "{segments:?}");
    drop(wal);
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 400);
}

#[test]
fn the_active_segment_buffer_never_moves_while_segments_fill_and_roll() {
    // Segments larger than any small first allocation, so that growing the buffer would show.
    let s = MemStorage::new();
    let mut wal = Wal::open(Box::new(s.clone()), 3 << 20, |_, _| {}).unwrap();
    let buffer = wal.mem.as_ptr();
    let (mut id, mut rolls, mut segment) = (0, 0, wal.active);
    while rolls < 2 {
        let loc = wal.append(|e| e.remove(id, 1)).unwrap();
        id += 1;
        if loc_segment(loc) != segment {
            (rolls, segment) = (rolls + 1, loc_segment(loc));
        }
        if id % 1024 == 0 {
            wal.commit(Durability::Sync, 0).unwrap();
            wal.make_room().unwrap();
        }
        assert_eq!(wal.mem.as_ptr(), buffer, "the buffer was reallocated (copied) at record {id}");
    }
}

#[test]
fn torn_tail_is_truncated_and_startup_succeeds() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    append_removes(&mut wal, 0..5);
    wal.commit(Durability::Sync, 0).unwrap();
    append_removes(&mut wal, 5..10);
    wal.write_buf().unwrap(); // written, never synced
    drop(wal);
    // Power cut: keeps 60 of the unsynced bytes: the marker of the first fsync (21 bytes), one
    // whole record (29) and a record cut in two.
    let s = s.crash(60);
    let (mut wal, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 6, "5 synced records and the one whole record of the torn part");
    let loc = wal.append(|e| e.remove(99, 1)).unwrap();
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.last().unwrap().0, loc);
}

#[test]
fn flipped_byte_in_a_middle_record_stops_startup_naming_file_and_offset() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let locs = append_removes(&mut wal, 0..5);
    wal.commit(Durability::Sync, 0).unwrap();
    append_removes(&mut wal, 5..6); // after the fsync: carries a marker of it
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    let name = segment_name(loc_segment(locs[2]));
    let off = (locs[2] & 0xffff_ffff) as usize;
    s.with_file(&name, |d| d[off + FRAME_HEADER_BYTES + 3] ^= 0x40).unwrap();
    let err = open(&s).err().expect("corruption is an error");
    let msg = err.to_string();
    assert!(msg.contains(&name) && msg.contains(&format!("byte {off}")), "{msg}");
    assert!(msg.contains("checksum"), "{msg}");
}

#[test]
fn corruption_in_a_sealed_segment_is_never_taken_for_a_torn_tail() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let locs = append_removes(&mut wal, 0..400);
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    let first = loc_segment(locs[0]);
    let last_in_first = locs.iter().rev().find(|l| loc_segment(**l) == first).unwrap();
    let off = (last_in_first & 0xffff_ffff) as usize;
    s.with_file(&segment_name(first), |d| d[off + FRAME_HEADER_BYTES] ^= 1).unwrap();
    assert!(matches!(open(&s), Err(OpenError::Corrupt { .. })));
}

#[test]
fn fsync_failure_poisons_for_good() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    append_removes(&mut wal, 0..2);
    s.fail_syncs(true);
    let err = wal.commit(Durability::Sync, 0).unwrap_err();
    assert!(err.0.contains("fsync"), "{err}");
    s.fail_syncs(false);
    assert!(wal.append(|e| e.remove(5, 1)).is_err(), "appends refused after a failed fsync");
    assert!(wal.commit(Durability::Sync, 0).is_err(), "no retry of the fsync");
    assert!(wal.poisoned().is_some());
}

#[test]
fn relaxed_durability_syncs_at_most_every_interval() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let relaxed = Durability::Relaxed { interval_ms: 100 };
    append_removes(&mut wal, 0..1);
    assert!(wal.commit(relaxed, 1000).unwrap().is_some(), "first commit syncs");
    append_removes(&mut wal, 1..2);
    assert!(
        wal.commit(relaxed, 1050).unwrap().is_none(),
        "within the interval: written, not synced"
    );
    assert!(wal.commit(relaxed, 1100).unwrap().is_some(), "interval passed: synced");
}

#[test]
fn preallocated_segments_on_real_files_reopen_cleanly_and_seal_to_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let fs = || Box::new(crate::io::FsStorage::new(dir.path()).unwrap());
    let mut seen = Vec::new();
    let mut wal = Wal::open(fs(), 4096, |_, _| {}).unwrap();
    let locs = append_removes(&mut wal, 0..300);
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap()).collect();
    for e in &names {
        let n = e.file_name().into_string().unwrap();
        if let Some(seg) = parse_segment_name(&n) {
            let last = loc_segment(*locs.last().unwrap());
            let len = e.metadata().unwrap().len();
            if seg < last {
                assert!(len <= 4096, "sealed segment {n} is cut to its data: {len}");
            }
        }
    }
    let wal = Wal::open(fs(), 4096, |loc, r| seen.push((loc, r))).unwrap();
    assert_eq!(seen.iter().map(|(l, _)| *l).collect::<Vec<_>>(), locs, "zero tail is not a record");
    drop(wal);
    let wal = Wal::open(fs(), 4096, |_, _| {}).unwrap();
    drop(wal);
}

#[test]
fn newest_segment_whose_header_never_reached_disk_is_discarded() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let locs = append_removes(&mut wal, 0..3);
    wal.commit(Durability::Sync, 0).unwrap();
    let next = loc_segment(locs[0]) + 1;
    drop(wal);
    // A crash between creating (and preallocating) a segment and syncing its header.
    let mut f = s.create(&segment_name(next + 5)).unwrap();
    f.append(&[0u8; 8192]).unwrap();
    f.sync().unwrap();
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 3);
    assert!(!s.list().unwrap().contains(&segment_name(next + 5)));
}

/// Bodies read back from sealed segments through the read window, in log order (the window's
/// case), backwards and scattered, with records smaller than, straddling and larger than the
/// window; a flipped byte in a sealed record is reported for that record only.
#[test]
fn sealed_records_read_back_in_any_order_through_the_read_window() {
    let s = MemStorage::new();
    let mut wal = Wal::open(Box::new(s.clone()), 1 << 20, |_, _| {}).unwrap();
    let size = |i: usize| match i % 50 {
        7 => READ_WINDOW_BYTES + 1000, // larger than the window
        13 => READ_WINDOW_BYTES / 3,   // ends past the window that starts before it
        _ => 100 + i % 300,
    };
    let meta = record::Meta::default();
    let none = BTreeMap::new();
    let bodies: Vec<String> = (0..400).map(|i| format!("{i:>6}").repeat(size(i) / 6)).collect();
    let locs: Vec<Loc> = (0..400)
        .map(|i| {
            wal.append(|e| e.enqueue(i as u128, &meta, None, None, &none, &bodies[i])).unwrap()
        })
        .collect();
    wal.commit(Durability::Sync, 0).unwrap();
    let sealed = locs.iter().filter(|l| loc_segment(**l) != wal.active).count();
    assert!(sealed > 300, "most records are in sealed segments ({sealed})");
    let body_at = |wal: &Wal, i: usize| match wal.read(locs[i]) {
        Ok(Record::Enqueue(e)) => Ok(e.body),
        Ok(other) => panic!("record {i}: {other:?}"),
        Err(e) => Err(e),
    };
    let scattered = (0..400).map(|i| i * 7919 % 400);
    for i in (0..400).chain((0..400).rev()).chain(scattered) {
        assert_eq!(body_at(&wal, i).unwrap(), bodies[i], "record {i}");
    }

    let hit = (100..400).find(|i| i % 50 != 7 && loc_segment(locs[*i]) != wal.active).unwrap();
    let off = (locs[hit] & 0xffff_ffff) as usize;
    s.with_file(&segment_name(loc_segment(locs[hit])), |d| d[off + FRAME_HEADER_BYTES + 40] ^= 1)
        .unwrap();
    // Move the window to another segment, so the flipped bytes are read anew.
    let elsewhere = (0..400).find(|i| loc_segment(locs[*i]) != loc_segment(locs[hit])).unwrap();
    assert_eq!(body_at(&wal, elsewhere).unwrap(), bodies[elsewhere]);
    let err = body_at(&wal, hit).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(body_at(&wal, hit + 1).unwrap(), bodies[hit + 1], "its neighbour still reads");

    // A location at or past a sealed segment's end is an error, not a panic of the engine.
    let seg = loc_segment(locs[0]);
    let len = wal.segments[&seg].file.len();
    for off in [len - 3, len, len + 100] {
        assert!(wal.read(((seg as u64) << 32) | off).is_err(), "offset {off} of {len}");
    }
}

/// A byte flipped in the last record of an idle log: the marker written after the fsync
/// follows it, so start-up refuses instead of truncating an acknowledged record.
#[test]
fn damaged_last_record_after_a_marker_stops_startup_but_a_torn_one_is_truncated() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let locs = append_removes(&mut wal, 0..20);
    wal.commit(Durability::Sync, 0).unwrap();
    assert!(wal.wants_mark());
    assert!(wal.mark_synced().unwrap(), "everything is synced: a marker goes in");
    assert!(!wal.mark_synced().unwrap(), "one marker per write");
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);

    let last = *locs.last().unwrap();
    let name = segment_name(loc_segment(last));
    let off = (last & 0xffff_ffff) as usize;
    s.with_file(&name, |d| d[off + FRAME_HEADER_BYTES + 2] ^= 0x10).unwrap();
    let msg = open(&s).err().expect("damage after a marker is an error").to_string();
    assert!(msg.contains(&format!("byte {off}")) && msg.contains("not a torn write"), "{msg}");
    s.with_file(&name, |d| d[off + FRAME_HEADER_BYTES + 2] ^= 0x10).unwrap();
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 20, "undamaged, it opens; markers are not replayed");

    // The same bytes without the marker behind them read as a torn write: truncated.
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let locs = append_removes(&mut wal, 0..20);
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    let last = *locs.last().unwrap();
    let off = (last & 0xffff_ffff) as usize;
    s.with_file(&segment_name(loc_segment(last)), |d| d[off + FRAME_HEADER_BYTES + 2] ^= 0x10);
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 19);
}

#[test]
fn no_marker_before_the_sync_completes() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    append_removes(&mut wal, 0..3);
    let (handle, upto) = wal.write_for_sync().unwrap().expect("something to sync");
    assert!(!wal.mark_synced().unwrap(), "the fsync has not completed");
    handle.sync().unwrap();
    wal.synced_flag().fetch_max(upto, Ordering::AcqRel);
    assert!(wal.mark_synced().unwrap());
}

#[test]
fn a_record_over_the_size_limit_is_refused_before_anything_is_written() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    append_removes(&mut wal, 0..2);
    wal.commit(Durability::Sync, 0).unwrap();
    let before = s.total_bytes();
    let huge = "x".repeat(limits::RECORD_SIZE_MAX_BYTES as usize + 1);
    let err = wal.append(|e| e.queue_put(1, 1, 0, 0, "q", &huge)).unwrap_err();
    assert!(err.0.contains("RECORD_SIZE_MAX_BYTES"), "{err}");
    assert!(wal.commit(Durability::Sync, 0).is_err(), "fail-stop: nothing after it is written");
    assert_eq!(s.total_bytes(), before);
    drop(wal);
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 2, "the log still opens with what was acknowledged");
}

#[test]
fn a_segment_that_cannot_be_created_refuses_writes_for_now_without_poisoning() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    let mut n = 0;
    while wal.mem.len() + 4096 / 8 <= 4096 {
        append_removes(&mut wal, n..n + 1);
        n += 1;
    }
    wal.commit(Durability::Sync, 0).unwrap();
    s.fail_creates(true);
    let err = wal.make_room().unwrap_err();
    assert!(
        matches!(&err, Error::StoreUnavailable(m) if m.contains("Too many open files")),
        "{err}"
    );
    assert!(wal.poisoned().is_none());
    assert!(matches!(wal.make_room(), Err(Error::StoreUnavailable(_))), "still refused");
    s.fail_creates(false);
    wal.make_room().unwrap();
    let loc = wal.append(|e| e.remove(999, 1)).unwrap();
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len() as u128, n + 1);
    assert_eq!(seen.last().unwrap().0, loc);
}

#[test]
fn a_full_disk_at_start_says_so() {
    let s = MemStorage::new();
    let (mut wal, _) = open(&s).unwrap();
    append_removes(&mut wal, 0..3);
    wal.commit(Durability::Sync, 0).unwrap();
    drop(wal);
    s.set_capacity(Some(s.total_bytes()));
    let msg = open(&s).err().expect("no room for a new segment").to_string();
    assert!(msg.contains("disk is full"), "{msg}");
    s.set_capacity(Some(s.total_bytes() + 100));
    let (_, seen) = open(&s).unwrap();
    assert_eq!(seen.len(), 3, "a little space is enough to start");
}

/// Reading a sealed segment in slices gives every record `records` gives, in order, however the
/// slices cut it (a record longer than a slice is read whole), and a damaged record is an error
/// naming the segment and offset.
#[test]
fn a_sealed_segment_reads_the_same_in_slices() {
    let s = MemStorage::new();
    let mut wal = Wal::open(Box::new(s.clone()), 1 << 20, |_, _| {}).unwrap();
    let meta = record::Meta::default();
    let none = BTreeMap::new();
    let size = |i: usize| if i % 40 == 9 { 20_000 } else { 50 + i % 700 };
    let bodies: Vec<String> = (0..300).map(|i| "b".repeat(size(i))).collect();
    for (i, body) in bodies.iter().enumerate() {
        wal.append(|e| e.enqueue(i as u128, &meta, None, None, &none, body)).unwrap();
    }
    wal.commit(Durability::Sync, 0).unwrap();
    wal.roll_now().unwrap();
    let n = wal.sealed().next().unwrap().0;
    let whole = wal.records(n).unwrap();
    assert_eq!(whole.len(), 300);
    for slice in [100, 4096, 100_000, 1 << 20] {
        let (mut got, mut off, mut reads) = (Vec::new(), 0, 0);
        loop {
            let (records, next) = wal.records_from(n, off, slice).unwrap();
            assert!(!records.is_empty(), "every slice reads at least one record");
            got.extend(records);
            reads += 1;
            match next {
                Some(next) => off = next,
                None => break,
            }
        }
        let locs = |r: &[(Loc, Record)]| r.iter().map(|(l, _)| *l).collect::<Vec<_>>();
        assert_eq!(locs(&got), locs(&whole), "slices of {slice} bytes");
        assert!(slice < 1 << 20 || reads == 1, "{reads} reads of {slice} bytes");
    }
    let (loc, _) = whole[150];
    let off = (loc & 0xffff_ffff) as usize;
    s.with_file(&segment_name(n), |d| d[off + FRAME_HEADER_BYTES + 3] ^= 1).unwrap();
    let damaged = (0..).try_fold(0, |off, _| match wal.records_from(n, off, 4096) {
        Ok((_, Some(next))) => Ok(next),
        Ok((_, None)) => Err("read to the end".to_owned()),
        Err(e) => Err(e.to_string()),
    });
    let err = damaged.unwrap_err();
    assert!(err.contains(&format!("{} at {off}", segment_name(n))), "{err}");
}

/// On real files a removed segment is deleted off the caller's thread: gone once the removals
/// are flushed, and a removal that fails (the file is already gone) poisons the log.
#[test]
fn removed_segments_leave_the_disk_in_the_background_and_a_failure_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal =
        Wal::open(Box::new(crate::io::FsStorage::new(dir.path()).unwrap()), 4096, |_, _| {})
            .unwrap();
    let locs = append_removes(&mut wal, 0..300);
    wal.commit(Durability::Sync, 0).unwrap();
    let (first, second) = (loc_segment(locs[0]), loc_segment(locs[0]) + 1);
    assert!(second < loc_segment(*locs.last().unwrap()), "several sealed segments");
    wal.remove_segment(first).unwrap();
    wal.flush_removals().unwrap();
    assert!(!dir.path().join(segment_name(first)).exists());
    assert!(dir.path().join(segment_name(second)).exists());
    std::fs::remove_file(dir.path().join(segment_name(second))).unwrap();
    wal.remove_segment(second).unwrap();
    let why = wal.flush_removals().unwrap_err().0;
    assert!(why.contains(&format!("removing {} failed", segment_name(second))), "{why}");
    assert!(wal.append(|e| e.remove(1, 1)).is_err(), "a poisoned log refuses writes");
}
