//! Conditional document writes in the store: move task documents (kind 3) survive a power cut,
//! and a compare-and-set after recovery compares with the recovered value, so a server that
//! restarts resumes from exactly what the log holds.

use redrive_core::broker::DocKind;
use redrive_engine::{Durability, MemStorage, Store};

fn open(storage: &MemStorage) -> Store {
    Store::open_with(Box::new(storage.clone()), Durability::Sync, 4096, 1_000).expect("opens")
}

#[test]
fn a_compare_and_set_after_a_power_cut_compares_with_the_recovered_value() {
    let storage = MemStorage::new();
    let mut store = open(&storage);
    let m = DocKind::MoveTask;
    assert!(store.put_doc_if(m, "task/1", None, Some("{\"moved\":0}")).unwrap());
    assert!(store.put_doc_if(m, "task/1", Some("{\"moved\":0}"), Some("{\"moved\":5}")).unwrap());
    assert!(!store.put_doc_if(m, "task/1", Some("{\"moved\":0}"), Some("{\"moved\":9}")).unwrap());
    assert!(store.put_doc_if(m, "task/2", None, Some("{}")).unwrap());
    assert!(store.put_doc_if(m, "task/2", Some("{}"), None).unwrap());
    store.commit(1_000).unwrap();
    drop(store);

    let mut store = open(&storage.crash(3));
    assert_eq!(store.list_docs(m), [("task/1".to_owned(), "{\"moved\":5}".to_owned())]);
    assert!(!store.put_doc_if(m, "task/1", None, Some("{}")).unwrap(), "it was recovered");
    assert!(!store.put_doc_if(m, "task/2", Some("{}"), Some("{}")).unwrap(), "it stays deleted");
    assert!(store.put_doc_if(m, "task/1", Some("{\"moved\":5}"), Some("{\"moved\":6}")).unwrap());
}
