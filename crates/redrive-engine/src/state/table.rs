//! The job table: jobs stored densely in a `Vec`, found through a small id → slot map.
//!
//! A `HashMap<u128, Job>` keeps 145-byte slots in a table that doubles, so at 1 M jobs it holds
//! 2 M slots (~300 MB). Here the map holds 20-byte entries and the jobs sit packed; removal
//! swaps the last job into the hole, so slots never go stale.

use std::ops::Index;

use rustc_hash::FxHashMap;

use super::Job;

#[derive(Default)]
pub struct JobTable {
    slot_of: FxHashMap<u128, u32>,
    ids: Vec<u128>,
    jobs: Vec<Job>,
}

impl JobTable {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn get(&self, id: &u128) -> Option<&Job> {
        self.slot_of.get(id).map(|&s| &self.jobs[s as usize])
    }

    pub fn get_mut(&mut self, id: &u128) -> Option<&mut Job> {
        self.slot_of.get(id).map(|&s| &mut self.jobs[s as usize])
    }

    /// Inserts or replaces the job with this id.
    pub fn insert(&mut self, id: u128, job: Job) {
        match self.slot_of.get(&id) {
            Some(&s) => self.jobs[s as usize] = job,
            None => {
                let slot = u32::try_from(self.jobs.len()).expect("JOBS_COUNT_MAX fits a u32");
                self.slot_of.insert(id, slot);
                self.ids.push(id);
                self.jobs.push(job);
            }
        }
    }

    pub fn remove(&mut self, id: &u128) -> Option<Job> {
        let slot = self.slot_of.remove(id)? as usize;
        self.ids.swap_remove(slot);
        let job = self.jobs.swap_remove(slot);
        if let Some(moved) = self.ids.get(slot) {
            // `slot` came out of `slot_of`: it fits.
            self.slot_of.insert(*moved, slot as u32);
        }
        Some(job)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Job)> {
        self.ids.iter().zip(&self.jobs)
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
}
