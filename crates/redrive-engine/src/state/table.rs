//! The job table: jobs stored densely in chunks, found through a small id → slot map.
//!
//! A `HashMap<u128, Job>` keeps 145-byte slots in a table that doubles, so at 1 M jobs it holds
//! 2 M slots (~300 MB). Here the map holds 20-byte entries and the jobs sit packed; removal
//! swaps the last job into the hole, so slots never go stale.
//!
//! Nothing here grows by copying everything it holds, which the engine thread would do while
//! every request waits: the jobs live in fixed chunks of [`CHUNK`] (a `Vec` doubling past
//! 131,072 jobs copied 19 MB and faulted in 38 MB at once: a 45–70 ms stall at each power of
//! two), and the id map is split in [`SHARDS`] maps that each rehash a 256th of the ids.

use std::ops::{Index, IndexMut};

use rustc_hash::FxHashMap;

use super::Job;

/// Jobs per chunk (about 600 KB of them).
const CHUNK: usize = 4096;

/// Id maps, picked by the id's low bits (random, or counting up, in the ids the engine hands
/// out: `JobId::next_v7`).
const SHARDS: usize = 256;

fn shard(id: u128) -> usize {
    id as usize % SHARDS
}

pub struct JobTable {
    slot_of: Vec<FxHashMap<u128, u32>>,
    entries: Chunked<(u128, Job)>,
}

impl Default for JobTable {
    fn default() -> JobTable {
        JobTable {
            slot_of: (0..SHARDS).map(|_| FxHashMap::default()).collect(),
            entries: Chunked::default(),
        }
    }
}

impl JobTable {
    pub fn len(&self) -> usize {
        self.entries.len
    }

    fn slots(&self, id: &u128) -> &FxHashMap<u128, u32> {
        &self.slot_of[shard(*id)]
    }

    fn slots_mut(&mut self, id: &u128) -> &mut FxHashMap<u128, u32> {
        &mut self.slot_of[shard(*id)]
    }

    pub fn get(&self, id: &u128) -> Option<&Job> {
        self.slots(id).get(id).map(|&s| &self.entries[s as usize].1)
    }

    pub fn get_mut(&mut self, id: &u128) -> Option<&mut Job> {
        let slot = *self.slots(id).get(id)?;
        Some(&mut self.entries[slot as usize].1)
    }

    /// Inserts or replaces the job with this id (one lookup of the id either way).
    pub fn insert(&mut self, id: u128, job: Job) {
        use std::collections::hash_map::Entry;
        match self.slot_of[shard(id)].entry(id) {
            Entry::Occupied(slot) => self.entries[*slot.get() as usize].1 = job,
            Entry::Vacant(slot) => {
                slot.insert(u32::try_from(self.entries.len).expect("JOBS_COUNT_MAX fits a u32"));
                self.entries.push((id, job));
            }
        }
    }

    pub fn remove(&mut self, id: &u128) -> Option<Job> {
        let slot = self.slots_mut(id).remove(id)? as usize;
        let (_, job) = self.entries.swap_remove(slot);
        if slot < self.entries.len {
            // The last job moved into `slot`, which came out of a map: it fits.
            let moved = self.entries[slot].0;
            self.slots_mut(&moved).insert(moved, slot as u32);
        }
        Some(job)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Job)> {
        self.entries.chunks.iter().flatten().map(|(id, job)| (id, job))
    }
}

/// A vector in chunks of [`CHUNK`]: pushing never moves what is already in it. One empty
/// chunk is kept past the end, so that a count going back and forth over a chunk's edge does
/// not allocate and free a chunk each time.
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Chunked<T> {
        Chunked { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Chunked<T> {
    fn push(&mut self, value: T) {
        let chunk = self.len / CHUNK;
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[chunk].push(value);
        self.len += 1;
    }

    /// Removes element `i`, moving the last one into its place.
    fn swap_remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        self.len -= 1;
        let last = self.chunks[self.len / CHUNK].pop().expect("the last chunk holds the last");
        if self.chunks.len() > self.len.div_ceil(CHUNK) + 1 {
            self.chunks.pop();
        }
        if i == self.len {
            last
        } else {
            std::mem::replace(&mut self[i], last)
        }
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl Index<&u128> for JobTable {
    type Output = Job;

    fn index(&self, id: &u128) -> &Job {
        self.get(id).expect("job exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::Meta;

    fn job(v: u32) -> Job {
        Job::blank(Meta { version: v, ..Meta::default() })
    }

    #[test]
    fn removal_keeps_every_other_job_reachable() {
        let mut t = JobTable::default();
        for id in 0..10u128 {
            t.insert(id, job(id as u32));
        }
        for id in [0u128, 9, 4, 5] {
            assert_eq!(t.remove(&id).unwrap().meta.version, id as u32);
            assert!(t.get(&id).is_none());
        }
        t.insert(3, job(33));
        assert_eq!(t.len(), 6);
        for id in [1u128, 2, 6, 7, 8] {
            assert_eq!(t[&id].meta.version, id as u32);
        }
        assert_eq!(t[&3].meta.version, 33);
        assert_eq!(t.iter().count(), 6);
    }

    /// Past several chunks, removals from anywhere (the last job moving into the hole, across
    /// chunks) leave every other job where its id finds it, and emptied chunks are given back
    /// but one.
    #[test]
    fn jobs_across_chunks_stay_reachable_through_removals() {
        let mut t = JobTable::default();
        let n = 3 * CHUNK as u128 + 5;
        for id in 0..n {
            t.insert(id * 7919, job(id as u32));
        }
        assert_eq!(t.entries.chunks.len(), 4);
        let mut gone = std::collections::BTreeSet::new();
        // From the front, the middle and the end of chunks, and the very last.
        let mut order: Vec<u128> = (0..n).step_by(3).collect();
        order.extend([n - 1, CHUNK as u128 - 1, CHUNK as u128 + 1]);
        for id in order {
            if gone.insert(id) {
                assert_eq!(t.remove(&(id * 7919)).unwrap().meta.version, id as u32);
            }
        }
        assert_eq!(t.len(), (n as usize) - gone.len());
        for id in 0..n {
            let found = t.get(&(id * 7919)).map(|j| j.meta.version);
            assert_eq!(found, (!gone.contains(&id)).then_some(id as u32), "job {id}");
        }
        assert_eq!(t.iter().count(), t.len());
        assert!(t.iter().all(|(id, j)| *id == u128::from(j.meta.version) * 7919));
        while t.len() > 0 {
            let (&id, _) = t.iter().next().unwrap();
            t.remove(&id).unwrap();
        }
        assert!(t.entries.chunks.len() <= 1, "{} chunks kept", t.entries.chunks.len());
        t.insert(1, job(1));
        assert_eq!(t[&1].meta.version, 1);
    }
}
