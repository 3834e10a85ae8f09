//! Control-plane documents in the store: written with group commit, bounded, surviving power
//! cuts and compaction, deletions staying deleted.

use redrive_core::broker::DocKind;
use redrive_core::{limits, Error};
use redrive_engine::{Durability, MemStorage, Store};

fn open(storage: &MemStorage) -> Store {
    Store::open_with(Box::new(storage.clone()), Durability::Sync, 4096, 1_000).expect("opens")
}

fn docs(store: &Store, kind: DocKind) -> Vec<(String, String)> {
    store.list_docs(kind)
}

#[test]
fn documents_survive_power_cuts_and_compaction_and_deletions_stay_deleted() {
    let mut storage = MemStorage::new();
    let mut store = open(&storage);
    let p = DocKind::TriageProposal;
    store.put_doc(p, "a", Some("{\"v\":1}")).unwrap();
    store.put_doc(p, "b", Some("{\"v\":1}")).unwrap();
    store.put_doc(DocKind::TriagePolicy, "q", Some("{}")).unwrap();
    store.put_doc(p, "a", Some("{\"v\":2}")).unwrap();
    store.put_doc(p, "b", None).unwrap();
    store.put_doc(p, "never-existed", None).unwrap();
    store.commit(1_000).unwrap();
    let want = vec![("a".to_owned(), "{\"v\":2}".to_owned())];
    assert_eq!(docs(&store, p), want);

    // Churn the log through many small segments (overwriting one document) so compaction moves
    // the live documents and drops the segments holding old versions and the tombstone.
    for round in 0..200u64 {
        let churn = format!("{{\"round\":{round},\"pad\":\"{}\"}}", "x".repeat(300));
        store.put_doc(DocKind::TriagePolicy, "churn", Some(&churn)).unwrap();
        store.commit(1_000 + round).unwrap();
        store.compact_step().unwrap();
        store.commit(1_000 + round).unwrap();
    }
    store.put_doc(DocKind::TriagePolicy, "churn", None).unwrap();
    store.commit(2_000).unwrap();
    let (_, segments) = store.wal_size();
    assert!(segments < 8, "compaction dropped the segments worked off: {segments} left");
    drop(store);
    storage = storage.crash(7);
    let store = open(&storage);
    assert_eq!(docs(&store, p), want, "the newest version, and no deleted document");
    assert_eq!(docs(&store, DocKind::TriagePolicy), vec![("q".to_owned(), "{}".to_owned())]);
}

#[test]
fn documents_are_bounded() {
    let storage = MemStorage::new();
    let mut store = open(&storage);
    let p = DocKind::TriageProposal;
    let big = "x".repeat(limits::DOC_VALUE_BYTES_MAX + 1);
    let e = store.put_doc(p, "a", Some(&big)).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { limit: "DOC_VALUE_BYTES_MAX", .. }), "{e}");
    let e = store.put_doc(p, &"k".repeat(limits::DOC_KEY_BYTES_MAX + 1), Some("{}")).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    for i in 0..limits::TRIAGE_PROPOSALS_COUNT_MAX {
        store.put_doc(p, &format!("p{i}"), Some("{}")).unwrap();
    }
    let e = store.put_doc(p, "one-more", Some("{}")).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { limit: "TRIAGE_PROPOSALS_COUNT_MAX", .. }), "{e}");
    store.put_doc(p, "p0", Some("{\"replaced\":true}")).unwrap();
    store.put_doc(DocKind::TriagePolicy, "q", Some("{}")).unwrap();
    store.put_doc(p, "p1", None).unwrap();
    store.put_doc(p, "one-more", Some("{}")).unwrap();
}
