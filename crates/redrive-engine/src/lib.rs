//! redrive's embedded store: one engine thread owns all queue state, applies requests in
//! batches, and makes each batch durable with one WAL commit before answering it.
//!
//! # Layout
//! - [`io`]: the file layer (real files, or memory with injected faults for tests).
//! - [`wal`]: segments, record framing and layout, recovery scan.
//! - [`state`]: the deterministic queue state machine over the WAL ([`Store`]).
//! - [`engine`]: the thread, the request channel, group commit, long polls ([`Engine`]).
//! - [`metrics`]: counters and histograms the engine keeps.

pub mod engine;
pub mod io;
pub mod metrics;
pub mod state;
pub mod wal;

pub use engine::{Engine, EngineHandle};
pub use io::{FsStorage, MemStorage, Storage};
pub use state::{Store, TOTALS_FLUSH_MS};
pub use wal::{Durability, OpenError};
