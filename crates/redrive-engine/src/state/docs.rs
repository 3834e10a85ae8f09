//! Control-plane documents (triage proposals and policies, SQS move tasks): JSON texts by kind
//! and key, kept in the log like everything else so that they share its durability, group
//! commit and recovery.
//! Each write appends the whole document with a store-wide version; replay keeps the highest
//! version per key, and a deletion is a versioned tombstone held until compaction reaches it.

use redrive_core::broker::DocKind;
use redrive_core::{limits, Error, Result};

use super::Store;
use crate::wal::Loc;

pub(crate) struct Doc {
    pub version: u64,
    pub value: String,
    /// The record holding `value`.
    pub loc: Loc,
}

impl Store {
    /// Stores (`Some`) or deletes (`None`) one document.
    pub fn put_doc(&mut self, kind: DocKind, key: &str, value: Option<&str>) -> Result<()> {
        self.writable()?;
        check_doc(key, value)?;
        let k = (kind as u8, Box::<str>::from(key));
        let Some(value) = value else {
            let Some(old) = self.docs.remove(&k) else { return Ok(()) };
            self.doc_version += 1;
            let loc = self.wal.append(|e| e.doc(kind as u8, key, self.doc_version, None))?;
            self.wal.hold(old.loc, -1);
            self.wal.hold_tombstone(loc, 1); // the tombstone, until compaction reaches it
            return Ok(());
        };
        if !self.docs.contains_key(&k) && self.doc_count(kind) >= kind.count_max() {
            return Err(Error::LimitExceeded {
                limit: kind.limit_name(),
                max: kind.count_max() as u64,
            });
        }
        self.doc_version += 1;
        let version = self.doc_version;
        let loc = self.wal.append(|e| e.doc(kind as u8, key, version, Some(value)))?;
        self.wal.hold(loc, 1);
        let doc = Doc { version, value: value.to_owned(), loc };
        if let Some(old) = self.docs.insert(k, doc) {
            self.wal.hold(old.loc, -1);
        }
        Ok(())
    }

    /// Stores (`Some`) or deletes (`None`) one document if its current value is `expected`
    /// (`None`: there is none); returns whether it did. Atomic because the engine thread is the
    /// only writer: nothing runs between the comparison and the append.
    pub fn put_doc_if(
        &mut self,
        kind: DocKind,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<bool> {
        self.writable()?;
        check_doc(key, value)?;
        let current = self.docs.get(&(kind as u8, Box::<str>::from(key)));
        if current.map(|d| d.value.as_str()) != expected {
            return Ok(false);
        }
        self.put_doc(kind, key, value)?;
        Ok(true)
    }

    /// One document's value.
    pub fn get_doc(&self, kind: DocKind, key: &str) -> Option<String> {
        self.docs.get(&(kind as u8, Box::<str>::from(key))).map(|d| d.value.clone())
    }

    /// Every document of `kind`, by key.
    pub fn list_docs(&self, kind: DocKind) -> Vec<(String, String)> {
        self.docs_of(kind).map(|(k, d)| (k.1.to_string(), d.value.clone())).collect()
    }

    fn doc_count(&self, kind: DocKind) -> usize {
        self.docs_of(kind).count()
    }

    fn docs_of(&self, kind: DocKind) -> impl Iterator<Item = (&(u8, Box<str>), &Doc)> {
        let k = kind as u8;
        self.docs.range((k, Box::<str>::from(""))..).take_while(move |(key, _)| key.0 == k)
    }

    /// Compaction: re-appends a live document found at `loc` (a no-op for older versions).
    pub(crate) fn move_doc(&mut self, loc: Loc, kind: u8, key: &str) -> Result<()> {
        let k = (kind, Box::<str>::from(key));
        let Some(doc) = self.docs.get(&k).filter(|d| d.loc == loc) else { return Ok(()) };
        let (version, value) = (doc.version, doc.value.clone());
        let new = self.wal.append(|e| e.doc(kind, key, version, Some(&value)))?;
        self.docs.get_mut(&k).expect("checked").loc = new;
        self.wal.hold(loc, -1);
        self.wal.hold(new, 1);
        Ok(())
    }
}

/// The bounds every document write checks before anything else.
fn check_doc(key: &str, value: Option<&str>) -> Result<()> {
    if key.is_empty() || key.len() > limits::DOC_KEY_BYTES_MAX {
        let max = limits::DOC_KEY_BYTES_MAX;
        return Err(Error::invalid("key", format!("a document key has 1 to {max} bytes")));
    }
    if value.is_some_and(|v| v.len() > limits::DOC_VALUE_BYTES_MAX) {
        return Err(Error::LimitExceeded {
            limit: "DOC_VALUE_BYTES_MAX",
            max: limits::DOC_VALUE_BYTES_MAX as u64,
        });
    }
    Ok(())
}
