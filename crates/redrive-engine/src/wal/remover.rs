//! Deleting sealed segments on a thread of their own. Unlinking a 64 MB segment takes the file
//! system 10–30 ms (its blocks freed, its cached pages dropped), and the engine thread that did
//! it held every request meanwhile: one stall per segment, about every 100 s at 100,000
//! jobs/min (docs/benchmarks.md).
//!
//! Invariant: segments are deleted in the order they are handed over, each made durable before
//! the next, and none after a failed one. Only a prefix of the log is ever deleted (see
//! `state/compact.rs`): a segment still on disk after a crash is then one the engine had
//! already let go, replayed as if the crash had come just before its removal, which the
//! removal in place allowed too. The caller makes whatever superseded a segment's records
//! durable before handing it over.

use std::any::Any;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crate::io::Remove;

enum Job {
    /// Delete the file; `keep` (the segment's open handles) is dropped after it, so that the
    /// last close, which frees the file, happens on this thread too.
    Delete { name: String, keep: Box<dyn Any + Send> },
    /// Answer once every deletion handed over before is done.
    Flush(mpsc::Sender<()>),
}

pub(super) struct Remover {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Remover {
    /// A failed deletion poisons the log through `poisoned` (see `wal::poison`).
    pub(super) fn spawn(mut remove: Remove, poisoned: Arc<OnceLock<String>>) -> Remover {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("redrive-remove".into())
            .spawn(move || {
                let mut failed = false;
                for job in rx {
                    match job {
                        Job::Delete { name, keep } => {
                            if !failed {
                                if let Err(e) = remove(&name) {
                                    failed = true;
                                    super::poison(
                                        &poisoned,
                                        format!("removing {name} failed: {e}"),
                                    );
                                }
                            }
                            drop(keep);
                        }
                        Job::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .expect("spawning the segment remover");
        Remover { tx: Some(tx), thread: Some(thread) }
    }

    pub(super) fn delete(&self, name: String, keep: Box<dyn Any + Send>) {
        let tx = self.tx.as_ref().expect("open until dropped");
        tx.send(Job::Delete { name, keep }).expect("the remover outlives its sender");
    }

    /// Waits until every deletion handed over so far is done (or failed, which poisoned).
    pub(super) fn flush(&self) {
        let (done, wait) = mpsc::channel();
        let tx = self.tx.as_ref().expect("open until dropped");
        tx.send(Job::Flush(done)).expect("the remover outlives its sender");
        let _ = wait.recv();
    }
}

impl Drop for Remover {
    /// Finishes the deletions handed over: the directory's lock is released after this, and
    /// the next process to open it must not see files vanish as it reads them.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;

    /// Records its drop in the log, as a segment's handles closing would free its file.
    struct Handles(&'static str, Arc<Mutex<Vec<String>>>);

    impl Drop for Handles {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(format!("close {}", self.0));
        }
    }

    #[test]
    fn deletes_in_order_closes_after_and_stops_at_a_failure() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let remove: Remove = Box::new(move |name| {
            seen.lock().unwrap().push(format!("remove {name}"));
            match name {
                "b" => Err(io::Error::other("read-only file system")),
                _ => Ok(()),
            }
        });
        let poisoned = Arc::new(OnceLock::new());
        let remover = Remover::spawn(remove, poisoned.clone());
        for name in ["a", "b", "c"] {
            remover.delete(name.into(), Box::new(Handles(name, log.clone())));
        }
        remover.flush();
        let expected = ["remove a", "close a", "remove b", "close b", "close c"];
        assert_eq!(*log.lock().unwrap(), expected, "nothing removed after a failure");
        let why = poisoned.get().expect("a failed removal poisons");
        assert!(why.contains("removing b failed: read-only file system"), "{why}");
    }

    #[test]
    fn dropping_it_finishes_what_was_handed_over() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let remove: Remove = Box::new(move |name| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen.lock().unwrap().push(name.to_owned());
            Ok(())
        });
        let remover = Remover::spawn(remove, Arc::new(OnceLock::new()));
        remover.delete("a".into(), Box::new(()));
        remover.delete("b".into(), Box::new(()));
        drop(remover);
        assert_eq!(*log.lock().unwrap(), ["a", "b"]);
    }
}
