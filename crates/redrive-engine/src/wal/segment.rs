//! The bytes of a segment file: its header (magic, format version, number, nonce) and the scan
//! of its framed records at recovery, which tells a torn tail from damage (see the module
//! docs of `wal`).

use super::record::{self, Record, FRAME_HEADER_BYTES};
use super::Loc;
use redrive_core::limits;

const MAGIC: &[u8; 8] = b"RDRVWAL\0";
/// Version 2 added the segment nonce (header bytes 16..20) and the `Synced` and `Doc` records;
/// version 1 segments still read.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_VERSION_OLDEST: u32 = 1;
pub(super) const SEGMENT_HEADER_BYTES: usize = 24;

pub(super) fn file_header(n: u32, nonce: u32) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&n.to_le_bytes());
    header[16..20].copy_from_slice(&nonce.to_le_bytes());
    let crc = crc32c::crc32c(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

pub(super) fn check_header(data: &[u8], n: u32) -> Result<(), String> {
    if data.len() < SEGMENT_HEADER_BYTES || &data[..8] != MAGIC {
        return Err("not a redrive write-ahead log segment (bad magic)".into());
    }
    if crc32c::crc32c(&data[..20]) != u32::from_le_bytes(data[20..24].try_into().unwrap()) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
    if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version} is not supported (this build reads \
             {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION})"
        ));
    }
    let seq = u32::from_le_bytes(data[12..16].try_into().unwrap());
    if seq != n {
        return Err(format!("header says segment {seq}, file name says {n}"));
    }
    Ok(())
}

/// Parses the records of one segment. Returns the offset where valid data ends.
///
/// `last` is `Some` for the newest segment, with its nonce (`None` inside for a version 1
/// segment). There, a bad record is a torn write and ends the scan unless it lies below the mark
/// of one of the segment's own `Synced` markers found after it: then it was synced, and it is
/// damage. (A version 1 segment has no markers: any valid frame after the bad record makes it
/// damage.) In a sealed segment every bad record is damage. Damage is `Err((offset, reason))`.
pub(super) fn scan(
    data: &[u8],
    n: u32,
    last: Option<Option<u32>>,
    f: &mut dyn FnMut(Loc, Record),
) -> Result<u64, (u64, String)> {
    let mut off = SEGMENT_HEADER_BYTES;
    while off < data.len() {
        if last.is_some() && data[off..].iter().all(|b| *b == 0) {
            return Ok(off as u64); // the unused, preallocated end of the newest segment
        }
        let frame = match frame_at(data, off) {
            Ok(frame) => frame,
            Err(why) => {
                let Some(nonce) = last else { return Err((off as u64, why.to_owned())) };
                return match damage_after(data, off, nonce) {
                    None => Ok(off as u64),
                    Some(proof) => Err((
                        off as u64,
                        format!("{why}; {proof}, so this is damage, not a torn write"),
                    )),
                };
            }
        };
        let rec = record::decode(frame)
            .map_err(|e| (off as u64, format!("undecodable record: {}", e.0)))?;
        f(((n as u64) << 32) | off as u64, rec);
        off += FRAME_HEADER_BYTES + frame.len();
    }
    Ok(off as u64)
}

/// Parses the framed records in `data`, a sealed segment's bytes from offset `base` (past its
/// header). A record that runs past the end of `data` ends the parse before it, unless `data`
/// reaches the end of the segment (`to_end`): then it is damage, as is any bad record. Returns
/// how many bytes of `data` it parsed.
pub(super) fn scan_slice(
    data: &[u8],
    base: u64,
    n: u32,
    to_end: bool,
    f: &mut dyn FnMut(Loc, Record),
) -> Result<usize, (u64, String)> {
    let mut off = 0;
    while off < data.len() {
        let rest = &data[off..];
        let fits = rest.len() >= FRAME_HEADER_BYTES && {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            rest.len() - FRAME_HEADER_BYTES >= len
        };
        if !fits && !to_end {
            return Ok(off);
        }
        let at = base + off as u64;
        let frame = frame_at(data, off).map_err(|why| (at, why.to_owned()))?;
        let rec =
            record::decode(frame).map_err(|e| (at, format!("undecodable record: {}", e.0)))?;
        f(((n as u64) << 32) | at, rec);
        off += FRAME_HEADER_BYTES + frame.len();
    }
    Ok(off)
}

/// Why the bad record at `off` of the newest segment was synced, if it was: a marker of this
/// segment after it whose mark lies past it (or, in a version 1 segment, any valid frame after
/// it).
fn damage_after(data: &[u8], off: usize, nonce: Option<u32>) -> Option<String> {
    let mut frames = (off + 1..data.len()).filter_map(|o| frame_at(data, o).ok());
    let Some(nonce) = nonce else {
        return frames.next().map(|_| "valid records follow it".to_owned());
    };
    let upto = frames
        .filter_map(|frame| match record::decode(frame) {
            Ok(Record::Synced { nonce: n, upto }) if n == nonce => Some(upto),
            _ => None,
        })
        .max()?;
    (upto > off as u64).then(|| format!("the log was synced up to byte {upto}"))
}

/// The payload of the framed record at `off`, if its length is sane and its checksum matches.
fn frame_at(data: &[u8], off: usize) -> Result<&[u8], &'static str> {
    let rest = &data[off..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err("record header cut short");
    }
    let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
    if len == 0 || len > limits::RECORD_SIZE_MAX_BYTES as usize {
        return Err("record length out of range");
    }
    let payload =
        rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len).ok_or("record cut short")?;
    if crc32c::crc32c(payload) != u32::from_le_bytes(rest[4..8].try_into().unwrap()) {
        return Err("checksum mismatch");
    }
    Ok(payload)
}
