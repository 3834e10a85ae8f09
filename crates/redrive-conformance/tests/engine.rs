//! The behaviour suite against the embedded engine (memory storage, system clock).

use std::sync::Arc;

use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, EngineHandle, MemStorage, Store};

async fn engine() -> EngineHandle {
    let clock = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms())
        .expect("store opens");
    let engine = Engine::start(store, clock);
    let handle = engine.handle.clone();
    // The engine thread lives as long as the test process; each test has its own.
    std::mem::forget(engine);
    handle
}

redrive_conformance::suite!(engine);
